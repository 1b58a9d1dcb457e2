"""Ensembles, calibrated uncertainty and the applicability domain of fine-tuned models."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import amine_task

from exlm_chem import InputError
from exlm_chem.finetune_settings import FinetuneSettings, UncertaintySettings
from exlm_chem.finetuning import (
    LabelledMolecules,
    Predictions,
    finetune,
    finetune_ensemble,
    load_finetuned,
    save_finetuned,
    save_predictor,
)
from exlm_chem.finetuning.calibration import (
    conformal_quantile,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
)
from exlm_chem.finetuning.domain import _cosine_block, _tanimoto_block, fit_domain
from exlm_chem.finetuning.reliability import evaluate_uncertainty

FAST = dict(epochs=8, patience=8, batch_size=16, learning_rate=1e-3, precision="fp32")


def chain_lengths(lengths):
    """Alkyl alcohols, the target their chain length: learnable, and each one's Tanimoto to
    the others falls with the difference in length."""
    smiles = [s for k in lengths for s in ("C" * k + "O", "O" + "C" * k)]
    return smiles, np.array([float(k) for k in lengths for _ in (0, 1)])


@pytest.fixture(scope="module")
def chains(model):
    train = LabelledMolecules.from_smiles(*chain_lengths(range(1, 30)), model.tokenizer)
    valid = LabelledMolecules.from_smiles(*chain_lengths(range(2, 30, 3)), model.tokenizer)
    return train, valid


def test_conformal_intervals_cover_exchangeable_data_at_the_asked_rate():
    rng = np.random.default_rng(0)
    for coverage in (0.8, 0.9):
        covered = []
        for _ in range(200):
            # members (5, n, 1) around a mean; the targets are the mean plus noise
            mean = rng.normal(size=(200, 1))
            members = mean + rng.normal(scale=0.1, size=(5, 200, 1))
            y = mean + rng.normal(size=(200, 1))
            calibration = fit_calibration("regression", y[:100], members[:, :100], coverage)
            low, high = calibration.intervals(
                members[:, 100:].mean(0), members[:, 100:].std(0, ddof=1)
            )
            covered.append(((low <= y[100:]) & (y[100:] <= high)).mean())
        # Split conformal covers at least the coverage on average, and not much more; choosing
        # between the absolute and the scaled score on the same molecules costs a little
        # (about 0.004 in 2,000 repeats where the spread tells nothing).
        assert coverage - 0.01 <= np.mean(covered) <= coverage + 0.03


def test_the_spread_scales_intervals_only_where_it_tracks_the_error():
    rng = np.random.default_rng(1)
    spread = rng.uniform(0.1, 2.0, size=(400, 1))
    members = rng.normal(size=(5, 400, 1)) * spread  # the members' std follows `spread`
    mean = members.mean(0)
    tracking = mean + rng.normal(size=(400, 1)) * spread * 2
    unrelated = mean + rng.normal(size=(400, 1))
    assert fit_calibration("regression", tracking, members, 0.9).tasks[0].kind == "scaled"
    assert fit_calibration("regression", unrelated, members, 0.9).tasks[0].kind == "absolute"
    # one member has no spread: absolute scores
    assert fit_calibration("regression", tracking, members[:1], 0.9).tasks[0].kind == "absolute"


def test_conformal_quantile_takes_the_finite_sample_rank():
    scores = np.arange(1.0, 11.0)  # 10 scores
    assert conformal_quantile(scores, 0.9) == 10.0  # ceil(11 * 0.9) = 10th
    assert conformal_quantile(scores, 0.5) == 6.0  # ceil(5.5) = 6th
    assert conformal_quantile(scores, 0.99) == 10.0  # beyond n: the largest


def test_temperature_scaling_undoes_overconfidence_and_lowers_calibration_error():
    rng = np.random.default_rng(2)
    true_logits = rng.normal(scale=1.5, size=4000)
    labels = (rng.uniform(size=4000) < 1 / (1 + np.exp(-true_logits))).astype(float)
    overconfident = 3 * true_logits
    temperature = fit_temperature(overconfident, labels)
    assert 2.6 < temperature < 3.4
    before = expected_calibration_error(1 / (1 + np.exp(-overconfident)), labels)
    after = expected_calibration_error(1 / (1 + np.exp(-overconfident / temperature)), labels)
    assert after < before / 2
    assert fit_temperature(overconfident, np.ones(4000)) == 1.0  # one class: nothing to fit


def test_expected_calibration_error_of_known_cases():
    y = np.array([0.0, 1.0] * 50)
    assert expected_calibration_error(np.full(100, 0.5), y) == pytest.approx(0.0)
    assert expected_calibration_error(np.ones(100), np.zeros(100)) == pytest.approx(1.0)
    # unlabelled entries (NaN) are left out
    assert expected_calibration_error(np.array([1.0, 0.2]), np.array([1.0, np.nan])) == 0.0


def test_chunked_similarity_search_equals_the_whole_matrix(monkeypatch):
    import torch

    from exlm_chem.finetuning import domain

    monkeypatch.setattr(domain, "QUERY_CHUNK", 7)
    monkeypatch.setattr(domain, "TRAIN_CHUNK", 5)
    rng = np.random.default_rng(3)
    queries = (rng.uniform(size=(30, 64)) < 0.2).astype(np.float32)
    train = (rng.uniform(size=(23, 64)) < 0.2).astype(np.float32)
    for block in (_cosine_block, _tanimoto_block):
        whole = block(torch.from_numpy(queries), torch.from_numpy(train)).numpy()
        best, where = domain._chunked_max(queries, train, block)
        np.testing.assert_allclose(best, whole.max(1), rtol=1e-6)
        np.testing.assert_allclose(whole[np.arange(30), where], whole.max(1), rtol=1e-6)


def test_domain_tanimoto_is_rdkits_and_the_threshold_comes_from_validation():
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    train = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC"]
    valid = ["CCCO", "c1ccccc1N", "CCCCCCCCCC"]
    rng = np.random.default_rng(4)
    reference = fit_domain(rng.normal(size=(4, 8)), train, [10, 11, 12, 13],
                           rng.normal(size=(3, 8)), valid, quantile=0.0)  # fmt: skip
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    queries = ["CC(=O)Nc1ccc(OC)cc1", "CCO", "[Na+].[Cl-]"]
    sims = reference.similarities(rng.normal(size=(3, 8)), queries)
    for q, query in enumerate(queries):
        fp = generator.GetFingerprint(Chem.MolFromSmiles(query))
        expected = [
            DataStructs.TanimotoSimilarity(fp, generator.GetFingerprint(Chem.MolFromSmiles(t)))
            for t in train
        ]
        assert sims.max_tanimoto[q] == pytest.approx(max(expected), abs=1e-6)
        assert sims.nearest[q] == int(np.argmax(expected))
    assert sims.max_tanimoto[1] == 1.0 and reference.train_ids[sims.nearest[1]] == 10
    # quantile 0: the least similar validation molecule sits exactly at the threshold
    valid_sims = reference.similarities(rng.normal(size=(3, 8)), valid).max_tanimoto
    assert reference.threshold == pytest.approx(valid_sims.min())
    assert reference.in_domain(sims).tolist() == [
        s >= reference.threshold for s in sims.max_tanimoto
    ]


def test_an_ensemble_is_calibrated_saved_and_loaded(model, chains, tmp_path):
    train, valid = chains
    settings = FinetuneSettings(**FAST)
    fitted, best, runs, members = finetune_ensemble(
        model, train, valid, "regression", settings, UncertaintySettings(members=3),
        learning_rates=[1e-3], jobs=2,
    )  # fmt: skip
    assert len(fitted.members) == 3 and [m["seed"] for m in members] == [0, 1, 2]
    assert fitted.members[0] is best.predictor and set(runs) == {1e-3}
    assert fitted.calibration is not None and fitted.domain is not None
    queries = ["CCCCCO", "OCCCCCCCCCC", "c1ccc2ccccc2c1", "C1CC"]
    predictions, errors = fitted.predict_smiles(queries, "fp32")
    assert errors[3] and np.isnan(predictions.value[3]).all()
    assert (predictions.spread[:3] > 0).all()
    assert (predictions.low[:3] < predictions.value[:3]).all()
    assert (predictions.value[:3] < predictions.high[:3]).all()
    wider, _ = fitted.predict_smiles(queries[:3], "fp32", coverage=0.99)
    assert (wider.high - wider.low >= predictions.high[:3] - predictions.low[:3] - 1e-9).all()
    # a training molecule is its own nearest neighbour; naphthalene is like none of them
    assert predictions.similarities.max_tanimoto[0] == 1.0 and predictions.in_domain[0]
    assert fitted.domain.train_smiles[predictions.similarities.nearest[0]] == "CCCCCO"
    assert not predictions.in_domain[2]

    save_finetuned(fitted, tmp_path / "tuned")
    loaded = load_finetuned(tmp_path / "tuned")
    again, _ = loaded.predict_smiles(queries, "fp32")
    for name in ("value", "spread", "low", "high"):
        np.testing.assert_allclose(getattr(again, name), getattr(predictions, name), atol=1e-5)
    np.testing.assert_array_equal(again.in_domain, predictions.in_domain)
    with pytest.raises(InputError, match="this model classifies"):
        classifier = finetune_ensemble(
            model, LabelledMolecules(train.molecules, train.y > 10, train.smiles),
            LabelledMolecules(valid.molecules, valid.y > 10, valid.smiles), "classification",
            settings, learning_rates=[1e-3],
        )[0]  # fmt: skip
        classifier.predict_smiles(queries[:1], coverage=0.9)


def test_a_classifier_ensemble_has_calibrated_probabilities_and_a_spread(model):
    def amines(lengths):
        return LabelledMolecules.from_smiles(*amine_task(lengths), model.tokenizer)

    fitted, *_ = finetune_ensemble(
        model, amines(range(1, 40, 2)), amines(range(2, 40, 6)), "classification",
        FinetuneSettings(**FAST), UncertaintySettings(members=2), learning_rates=[1e-3],
    )  # fmt: skip
    predictions, _ = fitted.predict_smiles(["CCCCCO", "CCCCCN"], "fp32")
    assert fitted.calibration.tasks[0].temperature > 0
    assert predictions.value[0, 0] < 0.5 < predictions.value[1, 0]
    assert predictions.uncalibrated.shape == predictions.spread.shape == (2, 1)
    assert predictions.low is None


def test_finetune_and_predict_commands_with_an_ensemble(run_cli, model_dir, tmp_path):
    smiles, y = chain_lengths(range(1, 40))
    pd.DataFrame({"smiles": smiles, "length": y}).to_csv(tmp_path / "chains.csv", index=False)
    out = tmp_path / "tuned"
    code, _, err = run_cli(
        "finetune", tmp_path / "chains.csv", "--target", "length", "--out", out,
        "--model", model_dir, "--lr", "1e-3", "--epochs", "6", "--batch-size", "16",
        "--ensemble", "2", "--coverage", "0.8", "--split", "random",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "finetune.json").read_text())
    assert len(report["ensemble"]["members"]) == 2 and report["ensemble"]["coverage"] == 0.8
    assert report["uncertainty"]["part"] == "test" and 0 <= report["uncertainty"]["coverage"] <= 1
    assert (out / "reliability.png").stat().st_size > 1000
    assert (out / "members" / "1" / "head.json").is_file()
    molecules = tmp_path / "new.smi"
    molecules.write_text("CCCCCO\nc1ccc2ccccc2c1\nC1CC\n")
    code, _, err = run_cli("predict", molecules, "--model", out, "--coverage", "0.95")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "new.predictions.csv")
    assert list(table.columns) == [
        "id", "smiles", "length", "length_std", "length_low", "length_high", "max_cosine",
        "max_tanimoto", "nearest_train", "nearest_train_smiles", "in_domain", "error",
    ]  # fmt: skip
    assert table["length_low"][0] < table["length"][0] < table["length_high"][0]
    assert table["nearest_train"][0].startswith("line ") and table["in_domain"].tolist()[:2] == [
        True,
        False,
    ]
    assert table.iloc[2][["length", "in_domain"]].isna().all()


def test_a_model_folder_from_before_predicts_without_the_new_columns(
    run_cli, model, chains, tmp_path
):
    train, valid = chains
    result = finetune(model, train, valid, "regression", FinetuneSettings(**FAST))
    save_predictor(result.predictor, tmp_path / "old")  # the folder as it was written before
    molecules = tmp_path / "m.smi"
    molecules.write_text("CCCO\n")
    code, _, err = run_cli("predict", molecules, "--model", tmp_path / "old")
    assert code == 0, err
    assert "without spread, intervals or domain columns" in err
    table = pd.read_csv(tmp_path / "m.predictions.csv")
    assert list(table.columns) == ["id", "smiles", "task_0", "error"]
    code, _, err = run_cli(
        "predict", molecules, "--model", tmp_path / "old", "-o", tmp_path / "x.csv",
        "--coverage", "0.9",
    )  # fmt: skip
    assert code == 2 and "no calibration" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ensemble", "0"], "ensemble must be at least 1 member"),
        (["--coverage", "1.5"], "coverage must be between 0 and 1"),
    ],
)
def test_finetune_refuses_bad_uncertainty_options(
    run_cli, model_dir, amine_csv, tmp_path, args, message
):
    code, _, err = run_cli(
        "finetune", amine_csv, "--target", "is_amine", "--out", tmp_path / "o", "--model",
        model_dir, *args,
    )  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_an_interval_asked_of_a_classifier_is_one_line(run_cli, model_dir, amine_csv, tmp_path):
    out = tmp_path / "tuned"
    code, _, err = run_cli(
        "finetune", amine_csv, "--target", "is_amine", "--out", out, "--model", model_dir,
        "--lr", "1e-3", "--epochs", "2", "--split", "random",
    )  # fmt: skip
    assert code == 0, err
    molecules = tmp_path / "m.smi"
    molecules.write_text("CCCN\n")
    code, _, err = run_cli("predict", molecules, "--model", out, "--coverage", "0.9")
    assert code == 2 and "this model classifies" in err and len(err.strip().splitlines()) == 1


def test_estimators_give_spread_intervals_and_domain_and_still_clone_and_pickle(model_dir):
    from sklearn.base import clone

    from exlm_chem import ExLMClassifier, ExLMRegressor

    smiles, y = chain_lengths(range(1, 40))
    regressor = ExLMRegressor(
        model=model_dir, learning_rate=1e-3, epochs=6, batch_size=16, split="random",
        precision="fp32", ensemble=2, coverage=0.8,
    )  # fmt: skip
    regressor.fit(smiles, y)
    mean, std = regressor.predict(smiles[:4], return_std=True)
    assert mean.shape == std.shape == (4,) and (std > 0).all()
    low, high = regressor.predict_interval(smiles[:4])
    assert (low < mean).all() and (mean < high).all()
    low95, high95 = regressor.predict_interval(smiles[:4], coverage=0.95)
    assert (high95 - low95 >= high - low - 1e-9).all()
    domain = regressor.applicability_domain(["CCCCO", "c1ccc2ccccc2c1"])
    assert list(domain.columns) == [
        "max_cosine", "max_tanimoto", "nearest_train", "nearest_train_smiles", "in_domain",
    ]  # fmt: skip
    assert domain["max_tanimoto"][0] == 1.0 and smiles[domain["nearest_train"][0]] == "CCCCO"
    restored = pickle.loads(pickle.dumps(regressor))
    np.testing.assert_allclose(restored.predict(smiles[:4]), mean)
    assert clone(regressor).get_params() == regressor.get_params()

    classifier = ExLMClassifier(
        model=model_dir, learning_rate=1e-3, epochs=4, batch_size=16, split="random",
        precision="fp32",
    )  # fmt: skip
    classifier.fit(smiles, y > 20)
    with pytest.raises(InputError, match="needs an ensemble"):
        classifier.predict_proba(smiles[:2], return_std=True)
    with pytest.raises(InputError, match="this model classifies"):
        classifier._predictions(smiles[:2], coverage=0.9)


def test_interval_coverage_is_reported_in_and_out_of_domain():
    y = np.array([[0.0], [0.0], [0.0], [0.0], [np.nan]] * 2)
    low = np.array([[-1.0], [1.0], [-1.0], [-1.0], [-1.0]] + [[0.5]] * 5)  # 2nd, last 5 miss
    predictions = Predictions(
        np.zeros((10, 1)), low=low, high=np.ones((10, 1)),
        in_domain=np.array([1, 1, 0, 0, 0] * 2, dtype=bool),  # the unlabelled count nowhere
    )  # fmt: skip
    report = evaluate_uncertainty("regression", y, predictions)
    assert report["in_domain_coverage"] == pytest.approx(1 / 4)
    assert report["out_of_domain_coverage"] == pytest.approx(2 / 4)
