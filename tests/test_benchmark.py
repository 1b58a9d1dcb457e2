import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from exlm_chem import ExLMConfig, ExLMModel, InputError, SmilesTokenizer
from exlm_chem.metrics import roc_auc, score
from exlm_chem.model import save_model
from exlm_chem.moleculenet.datasets import DATASETS, split_dataset
from exlm_chem.moleculenet.features import parse_features
from exlm_chem.moleculenet.report import markdown_table, wall_time_table
from exlm_chem.moleculenet.suite import parse_list


def test_score_skips_tasks_without_both_classes_and_missing_labels():
    y = np.array([[0, 1], [1, 1], [0, 1], [1, 0]])
    w = np.array([[1, 1], [1, 1], [1, 0], [1, 0]])
    prediction = np.array([[0.1, 0.5], [0.9, 0.5], [0.2, 0.5], [0.8, 0.5]])
    assert (
        score("classification", y, w, prediction) == 1.0
    )  # task 2 has one class among labelled rows
    assert score(
        "regression", np.array([1.0, 2.0]), np.ones(2), np.array([1.0, 4.0])
    ) == pytest.approx(np.sqrt(2))


@settings(max_examples=300, deadline=None)
@given(
    labels=st.lists(st.sampled_from([0.0, 1.0]), min_size=2, max_size=60),
    data=st.data(),
)
def test_roc_auc_is_scikit_learns_with_ties_and_either_label_order(labels, data):
    from sklearn.metrics import roc_auc_score

    assume(len(set(labels)) == 2)
    # Scores from a few values, so that ties within and across the classes are common.
    scores = data.draw(
        st.lists(
            st.sampled_from([0.0, 0.25, 0.5, 0.9, 1e-9]), min_size=len(labels), max_size=len(labels)
        )
    )
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert roc_auc(labels, -np.asarray(scores)) == pytest.approx(
        1 - roc_auc(labels, scores), abs=1e-12
    )


def test_roc_auc_reads_labels_of_any_two_values():
    assert roc_auc([-1, 1, 1, -1], [0.1, 0.9, 0.4, 0.4]) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1, 1], [0.1, 0.9, 0.4])


def test_parsers_reject_unknown_names():
    assert [f.name for f in parse_features("exlm,ecfp,random,mlm:/x")] == [
        "exlm",
        "ecfp",
        "random",
        "mlm",
    ]
    with pytest.raises(InputError, match="mlm features need a model directory"):
        parse_features("mlm")
    assert parse_features("rdkit2d")[0].kind == "rdkit2d"
    with pytest.raises(InputError, match="rdkit2d takes no model directory and no read-out"):
        parse_features("rdkit2d[cls]")
    assert parse_features("rdkit2d&ecfp")[0].name == "ecfp&rdkit2d"
    with pytest.raises(InputError, match="unknown datasets: qm9"):
        parse_list("bbbp,qm9", DATASETS, "datasets")


def test_random_scaffold_split_is_seeded_and_disjoint():
    import deepchem as dc

    smiles = [
        "c1ccccc1C",
        "c1ccccc1CC",
        "C1CCCCC1",
        "C1CCCCC1O",
        "c1ccncc1",
        "CCO",
        "CCN",
        "c1ccc2ccccc2c1",
        "C1CCNCC1",
        "C1CCOC1",
    ] * 3
    dataset = dc.data.NumpyDataset(
        np.zeros((len(smiles), 1)), np.zeros(len(smiles)), ids=np.array(smiles)
    )
    parts = split_dataset(dataset, "random_scaffold", seed=1)
    again = split_dataset(dataset, "random_scaffold", seed=1)
    assert [list(p.ids) for p in parts] == [list(p.ids) for p in again]
    assert sum(len(p) for p in parts) == len(smiles)
    from deepchem.splits.splitters import _generate_scaffold

    scaffolds = [set(_generate_scaffold(s) for s in p.ids) for p in parts]
    assert not (scaffolds[0] & scaffolds[1]) and not (scaffolds[0] & scaffolds[2])


def test_selection_split_leaves_out_every_reported_test_molecule():
    import deepchem as dc

    from exlm_chem.moleculenet.datasets import selection_split

    # 40 scaffolds (benzene, a linker of n carbons, cyclopentane), 3 molecules each.
    smiles = [f"c1ccccc1{'C' * n}C1CCCC1{tail}" for n in range(1, 41) for tail in ("", "O", "N")]
    dataset = dc.data.NumpyDataset(
        np.zeros((len(smiles), 1)), np.zeros(len(smiles)), ids=np.array(smiles)
    )
    tested = set()
    for seed in (0, 1, 2):
        tested.update(split_dataset(dataset, "random_scaffold", seed)[2].ids)
    for seed in (0, 7):  # a reported seed, and one that is not
        train, valid = selection_split(dataset, seed, reported_seeds=(0, 1, 2))
        full_train, full_valid, _ = split_dataset(dataset, "random_scaffold", seed)
        assert not (set(train.ids) | set(valid.ids)) & tested
        assert set(valid.ids) == set(full_valid.ids) - tested and len(valid) > 0
        assert set(train.ids) == set(full_train.ids) - tested
    assert len(tested) > len(split_dataset(dataset, "random_scaffold", 0)[2])  # seeds differ


def test_markdown_table_puts_features_side_by_side():
    frame = pd.DataFrame(
        [
            dict(dataset="bbbp", features=f, probe="logreg", seed=s, metric="roc_auc", value=v)
            for f, s, v in [("exlm", 0, 0.7), ("exlm", 1, 0.8), ("ecfp", 0, 0.6)]
        ]
    )
    table = markdown_table(frame)
    assert "| dataset | probe | exlm | ecfp |" in table
    assert "| bbbp | logreg | 0.750 ± 0.071 | 0.600 |" in table


def test_wall_time_counts_each_featurization_once_and_every_fit():
    rows = [
        # (dataset, features, probe, seed, featurize_seconds, fit_seconds)
        ("bbbp", "exlm", "logreg", 0, 30.0, 2.0),
        ("bbbp", "exlm", "rf", 0, 30.0, 5.0),
        ("bbbp", "exlm", "logreg", 1, 0.1, 3.0),  # resumed: the cache read
        ("bbbp", "ecfp", "logreg", 0, 4.0, 1.0),
        ("bbbp", "exlm", "finetune", 0, None, 100.0),  # fine-tuning records have no featurization
        ("esol", "ecfp", "rf", 0, 2.0, 7.0),
    ]
    frame = pd.DataFrame(
        [
            dict(dataset=d, features=f, probe=p, seed=s, featurize_seconds=fs, fit_seconds=t)
            for d, f, p, s, fs, t in rows
        ]
    )
    table = wall_time_table(frame)
    assert "| dataset | featurization | fit: logreg | fit: rf | fit: finetune | total |" in table
    assert "| bbbp | 34 | 6 | 5 | 100 | 145 |" in table
    assert "| esol | 2 |  | 7 |  | 9 |" in table


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, shared_data):
    import gzip

    with gzip.open(shared_data / "zinc" / "moses_test.csv.gz", "rt") as handle:
        next(handle)
        smiles = [next(handle).strip() for _ in range(2000)]
    bbbp = pd.read_csv(shared_data / "moleculenet" / "BBBP.csv")["smiles"].tolist()
    tokenizer = SmilesTokenizer.from_corpus(smiles + bbbp)
    torch.manual_seed(0)
    model = ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size), tokenizer)
    path = tmp_path_factory.mktemp("bench") / "tiny"
    save_model(model, path)
    return path


def test_benchmark_command_on_bbbp_and_esol(run_cli, tiny_model_dir, shared_data, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(
        "benchmark",
        "--datasets",
        "bbbp,esol",
        "--data-dir",
        shared_data / "moleculenet",
        "--features",
        f"exlm:{tiny_model_dir},ecfp,random:{tiny_model_dir},exlm:{tiny_model_dir}[cls]&ecfp",
        "--probe",
        "logreg",
        "--seeds",
        "0",
        "--out",
        out,
    )
    assert code == 0, err
    records = json.loads((out / "results.json").read_text())
    bbbp_ecfp = next(r for r in records if r["features"] == "ecfp" and r["dataset"] == "bbbp")
    line = f"bbbp  ecfp  logreg  seed 0: validation roc_auc {bbbp_ecfp['valid_value']:.4f}, test"
    assert line in err  # the log leads with the value choices are made on
    assert {(r["dataset"], r["features"]) for r in records} == {
        (d, f)
        for d in ("bbbp", "esol")
        for f in (
            f"exlm:{tiny_model_dir}",
            "ecfp",
            f"random:{tiny_model_dir}",
            f"exlm:{tiny_model_dir}[cls]&ecfp",
        )
    }
    for r in records:
        assert r["metric"] == ("roc_auc" if r["dataset"] == "bbbp" else "rmse")
        assert (0.5 < r["value"] <= 1.0) if r["metric"] == "roc_auc" else (0.3 < r["value"] < 3.0)
    assert (out / "results.md").read_text().count("| bbbp | logreg |") == 1
    assert all(np.isfinite(r["valid_value"]) for r in records)
    assert "| frozen | exlm:" in (out / "results.md").read_text()  # the paired comparisons
    assert "| esol | " in (out / "results.md").read_text().split("Wall time per dataset")[1]
    assert (out / "results_roc_auc.png").exists() and (out / "results_rmse.png").exists()
    # A second run reuses the featurized datasets.
    cached = sorted(
        p.name
        for p in (out / "cache").rglob("*")
        if p.is_dir() and p.name.startswith("ExLMFeaturizer_")
    )
    assert len(cached) >= 2

    # --resume keeps what results.json holds and computes only what is missing; the linear
    # probe on DeepChem's deterministic scaffold split gives the same value for every seed.
    # A result under the same features name from other weights is dropped, not averaged in.
    records[0]["value"] = 0.123
    stale = dict(
        next(r for r in records if r["features"] == "ecfp"),
        featurizer="CircularFingerprint_of_other_settings",
    )
    (out / "results.json").write_text(json.dumps(records + [stale]))
    code, _, err = run_cli(
        "benchmark",
        "--datasets",
        "bbbp,esol",
        "--data-dir",
        shared_data / "moleculenet",
        "--features",
        "ecfp",
        "--probe",
        "logreg",
        "--seeds",
        "0,1",
        "--out",
        out,
        "--resume",
    )
    assert code == 0, err
    resumed = json.loads((out / "results.json").read_text())
    assert resumed[: len(records)] == records
    added = resumed[len(records) :]
    assert {(r["dataset"], r["features"], r["seed"]) for r in added} == {
        ("bbbp", "ecfp", 1),
        ("esol", "ecfp", 1),
    }
    for r in added:
        first = next(
            p
            for p in records
            if (p["dataset"], p["features"], p["seed"]) == (r["dataset"], "ecfp", 0)
        )
        assert r["value"] == first["value"]
    # A run with nothing left to compute still rewrites the report (say, in a newer form).
    (out / "results.md").write_text("stale")
    args = ["--data-dir", shared_data / "moleculenet", "--features", "ecfp", "--probe", "logreg"]
    code, _, err = run_cli("benchmark", "--datasets", "bbbp", *args, "--out", out, "--resume")
    assert code == 0 and "| bbbp | logreg |" in (out / "results.md").read_text(), err
    (out / "results.json").write_text("{not json")
    code, _, err = run_cli(
        "benchmark",
        "--datasets",
        "bbbp",
        "--data-dir",
        shared_data / "moleculenet",
        "--features",
        "ecfp",
        "--out",
        out,
        "--resume",
    )
    assert code == 2 and "results.json: cannot resume" in err


def test_benchmark_finetune_chooses_one_rate_over_the_seeds(tiny_model_dir, shared_data, tmp_path):
    from exlm_chem.finetuning import FinetuneSettings
    from exlm_chem.moleculenet.report import merge_runs
    from exlm_chem.moleculenet.suite import run_benchmark

    out = tmp_path / "out"

    def run(resume: bool, out=out, epochs=2) -> list[dict]:
        return run_benchmark(
            ["freesolv"],
            parse_features(f"exlm:{tiny_model_dir}"),
            [],
            out,
            data_dir=shared_data / "moleculenet",
            split="random_scaffold",
            seeds=[0, 1],
            finetune=True,
            finetune_settings=FinetuneSettings(epochs=epochs, patience=1, batch_size=64),
            finetune_rates=[1e-4, 1e-3],
            resume=resume,
        )

    records = run(resume=False)
    runs = json.loads((out / "finetune_runs.json").read_text())
    assert len(runs) == 4 and {r["learning_rate"] for r in runs} == {1e-4, 1e-3}
    chosen = [r for r in records if r["probe"] == "finetune"]
    assert [r["seed"] for r in chosen] == [0, 1]
    rate = chosen[0]["learning_rate"]
    assert chosen[1]["learning_rate"] == rate  # one rate for every seed
    pooled = {
        lr: np.mean([r["valid_value"] for r in runs if r["learning_rate"] == lr])
        for lr in (1e-4, 1e-3)
    }
    assert pooled[rate] == min(pooled.values())  # RMSE: lower is better
    assert all(np.isfinite(r["value"]) and r["value"] < 10 for r in chosen)
    # Every epoch's validation RMSE is kept; the run's value is its best epoch's.
    for r in runs:
        assert len(r["valid_history"]) == r["epochs_run"]
        assert r["valid_history"][r["best_epoch"] - 1] == pytest.approx(r["valid_value"], abs=1e-6)
    # Each run's checkpoint was written in the cache and deleted once the run was recorded.
    checkpoints = out / "cache" / "finetune-checkpoints" / "freesolv"
    assert checkpoints.is_dir() and not list(checkpoints.iterdir())
    # Resumed: nothing is trained again, the same results come back.
    again = run(resume=True)
    assert again == records
    # Runs made in two places (a GPU machine's, say), merged: the suite takes them all up.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    merged = merge_runs(runs[:2], runs[1:])  # run 1 in both: kept once
    assert merged == runs
    (elsewhere / "finetune_runs.json").write_text(json.dumps(merged))
    assert run(resume=True, out=elsewhere) == records
    assert json.loads((elsewhere / "finetune_runs.json").read_text()) == runs
    # Runs made with other settings are not taken up as if made with these: refused.
    with pytest.raises(InputError, match=r"finetune_runs.json: holds .* \(epochs 2, not 3\)"):
        run(resume=True, epochs=3)


def finetune_cls_and_layers_on_freesolv(model_dir, shared_data, tmp_path, seeds, **options):
    """The suite's fine-tuning of a tiny model on FreeSolv, heads cls and layers at one rate,
    two short epochs; results in tmp_path/out."""
    from exlm_chem.finetuning import FinetuneSettings
    from exlm_chem.moleculenet.suite import run_benchmark

    return run_benchmark(
        ["freesolv"],
        parse_features(f"exlm:{model_dir}"),
        [],
        tmp_path / "out",
        data_dir=shared_data / "moleculenet",
        split="random_scaffold",
        seeds=seeds,
        finetune=True,
        finetune_settings=FinetuneSettings(epochs=2, patience=1, batch_size=64),
        finetune_rates=[1e-3],
        finetune_heads=["cls", "layers"],
        **options,
    )


def test_benchmark_finetune_chooses_the_head_with_the_rate(tiny_model_dir, shared_data, tmp_path):
    records = finetune_cls_and_layers_on_freesolv(tiny_model_dir, shared_data, tmp_path, [0, 1])
    runs = json.loads((tmp_path / "out" / "finetune_runs.json").read_text())
    assert sorted((r["head"], r["seed"]) for r in runs) == [
        ("cls", 0),
        ("cls", 1),
        ("layers", 0),
        ("layers", 1),
    ]
    chosen = [r for r in records if r["probe"] == "finetune"]
    assert {r["head"] for r in chosen} == {chosen[0]["head"]}  # one head for every seed
    pooled = {
        h: np.mean([r["valid_value"] for r in runs if r["head"] == h]) for h in ("cls", "layers")
    }
    assert pooled[chosen[0]["head"]] == min(pooled.values())  # RMSE: lower is better
    by_seed = {r["seed"]: r for r in runs if r["head"] == chosen[0]["head"]}
    assert all(r["value"] == by_seed[r["seed"]]["value"] for r in chosen)


def test_benchmark_finetune_runs_the_grid_on_the_choice_seeds_only(
    tiny_model_dir, shared_data, tmp_path
):
    # Two runs at a time: the grid's on seed 1, then seeds 0 and 2 at the choice.
    records = finetune_cls_and_layers_on_freesolv(
        tiny_model_dir, shared_data, tmp_path, [0, 1, 2], finetune_choice_seeds=[1], finetune_jobs=2
    )
    runs = json.loads((tmp_path / "out" / "finetune_runs.json").read_text())
    on_seed_1 = {r["head"]: r["valid_value"] for r in runs if r["seed"] == 1}
    head = min(on_seed_1, key=on_seed_1.get)  # RMSE: lower is better
    assert sorted((r["seed"], r["head"]) for r in runs) == sorted(
        [(1, "cls"), (1, "layers"), (0, head), (2, head)]
    )
    chosen = [r for r in records if r["probe"] == "finetune"]
    assert sorted(r["seed"] for r in chosen) == [0, 1, 2] and {r["head"] for r in chosen} == {head}


def test_benchmark_finetunes_every_model_of_a_dataset_together(
    tiny_model_dir, shared_data, tmp_path
):
    from exlm_chem.finetuning import FinetuneSettings
    from exlm_chem.moleculenet.suite import run_benchmark

    def run() -> list[dict]:
        return run_benchmark(
            ["freesolv"],
            parse_features(f"exlm:{tiny_model_dir},random:{tiny_model_dir}"),
            [],
            tmp_path / "out",
            data_dir=shared_data / "moleculenet",
            split="random_scaffold",
            seeds=[0, 1],
            finetune=True,
            finetune_settings=FinetuneSettings(epochs=1, patience=1, batch_size=64),
            finetune_rates=[1e-4, 1e-3],
            finetune_choice_seeds=[0],
            finetune_jobs=2,
            resume=True,
        )

    records = run()
    runs = json.loads((tmp_path / "out" / "finetune_runs.json").read_text())
    assert len(runs) == 6  # per model: both rates on seed 0, then seed 1 at the chosen rate
    for features in (f"exlm:{tiny_model_dir}", f"random:{tiny_model_dir}"):
        mine = [r for r in runs if r["features"] == features]
        grid = {r["learning_rate"]: r["valid_value"] for r in mine if r["seed"] == 0}
        rate = min(grid, key=grid.get)  # each model's own choice (RMSE: lower is better)
        assert [(r["seed"], r["learning_rate"]) for r in mine if r["seed"] == 1] == [(1, rate)]
        chosen = [r for r in records if r["features"] == features and r["probe"] == "finetune"]
        assert sorted(r["seed"] for r in chosen) == [0, 1]
        assert {r["learning_rate"] for r in chosen} == {rate}
    assert (
        run() == records
        and len(json.loads((tmp_path / "out" / "finetune_runs.json").read_text())) == 6
    )


def test_benchmark_rejects_choice_seeds_that_are_not_integers(run_cli, tmp_path):
    code, _, err = run_cli(
        "benchmark", "--features", "ecfp", "--finetune-choice-seeds", "0,x", "--out", tmp_path
    )
    assert code == 2 and "--finetune-choice-seeds must be comma-separated integers" in err


def test_missing_dataset_file_that_cannot_be_downloaded_names_it(run_cli, tmp_path, monkeypatch):
    import urllib.error

    import deepchem as dc

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(dc.utils.data_utils, "download_url", offline)
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(
        "benchmark",
        "--datasets",
        "freesolv",
        "--data-dir",
        tmp_path / "empty",
        "--features",
        "ecfp",
        "--out",
        tmp_path / "out",
    )
    assert code == 2
    assert "freesolv: SAMPL.csv is not in" in err and "downloading it failed" in err


@pytest.mark.parametrize("probe", ["deepchem", "rf", "logreg"])
def test_probes_are_not_thrown_by_a_bit_never_set_in_training(probe):
    # A fingerprint bit absent from every training molecule and set in a test molecule.
    import deepchem as dc

    from exlm_chem.moleculenet.probes import probe_predictions

    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(160, 16)).astype(np.float32)
    y = (X[:, 1:4].sum(1, keepdims=True) - 1.5).astype(np.float32)
    X[:120, 0] = 0
    X[120:, 0] = 1
    make = lambda rows: dc.data.NumpyDataset(X[rows], y[rows], np.ones_like(y[rows]))  # noqa: E731
    valid_prediction, prediction = probe_predictions(
        probe,
        "regression",
        make(slice(0, 100)),
        make(slice(100, 120)),
        make(slice(120, 160)),
        seed=0,
    )
    assert np.abs(prediction - y[120:]).max() < 3
    assert valid_prediction.shape == (20, 1) and np.abs(valid_prediction - y[100:120]).max() < 3


def test_linear_probe_keeps_per_task_the_input_scaling_that_scores_better_on_validation():
    # Sparse bits: one bit carries the first task, 39 of mixed rarity the second; on this data
    # each task prefers a different input, so trying only one of them fails.
    import deepchem as dc
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from exlm_chem.moleculenet.probes import _fit_linear_probe, probe_predictions

    rng = np.random.default_rng(1)
    X = (rng.random((600, 300)) < rng.uniform(0.002, 0.3, 300)).astype(np.float32)
    logits = np.column_stack([3 * X[:, 0] - 1 + rng.normal(0, 1, 600), X[:, 1:40].sum(1) - 4])
    y = (logits > 0).astype(np.float32)
    parts = [
        dc.data.NumpyDataset(X[r], y[r], np.ones_like(y[r]))
        for r in np.split(np.arange(600), [400, 500])
    ]
    valid_prediction, _ = probe_predictions("logreg", "classification", *parts, seed=0)
    scaler = StandardScaler().fit(parts[0].X)
    for t in range(2):
        candidates = []
        for f in (scaler.transform, lambda a: np.asarray(a, dtype=np.float64)):
            model = _fit_linear_probe(True, f(parts[0].X), y[:400, t], f(parts[1].X), y[400:500, t])
            candidates.append(
                roc_auc_score(y[400:500, t], model.predict_proba(f(parts[1].X))[:, 1])
            )
        assert roc_auc_score(y[400:500, t], valid_prediction[:, t]) == pytest.approx(
            max(candidates)
        )


def test_linear_probe_on_one_blas_thread_fits_the_same_model_and_restores_the_threads():
    from threadpoolctl import threadpool_info

    from exlm_chem.moleculenet.probes import _fit_linear_probe

    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 64))
    y = (X[:, :8].sum(1) + rng.standard_normal(700) > 1).astype(float)
    before = [i["num_threads"] for i in threadpool_info()]
    models = [_fit_linear_probe(True, X[:600], y[:600], X[600:], y[600:], n) for n in (1, None)]
    assert [i["num_threads"] for i in threadpool_info()] == before
    assert models[0].C == models[1].C
    np.testing.assert_allclose(
        models[0].predict_proba(X[600:]), models[1].predict_proba(X[600:]), atol=1e-8
    )


def test_ridge_probe_stays_quiet_at_the_weak_end_of_its_path_and_still_fits():
    import warnings

    import deepchem as dc

    from exlm_chem.moleculenet.probes import probe_predictions

    # More bits than molecules, every molecule three times and noiseless targets: at the path's
    # weakest alphas ridge's systems are ill-conditioned (float32) or singular (the dual).
    rows = np.random.default_rng(0).integers(0, 2, (100, 1000)).astype(np.float32)
    X = np.vstack([rows, rows, rows])
    y = np.column_stack([X[:, :5].sum(1), X[:, 5:9].sum(1)])
    parts = [
        dc.data.NumpyDataset(X[r], y[r], np.ones_like(y[r]))
        for r in np.split(np.arange(300), [200, 250])
    ]
    for jobs in (1, 2):  # the filters must hold in the worker threads too
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            valid, _ = probe_predictions("logreg", "regression", *parts, seed=0, jobs=jobs)
        for t in range(2):
            assert np.corrcoef(valid[:, t], parts[1].y[:, t])[0, 1] > 0.99


def test_linear_probe_fits_tasks_in_threads_with_the_same_predictions():
    import deepchem as dc
    from threadpoolctl import threadpool_info

    from exlm_chem.moleculenet.probes import probe_predictions

    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 48)).astype(np.float32)
    y = (X[:, :6] + rng.normal(0, 1, (500, 6)) > 0.5).astype(np.float32)
    w = (rng.random((500, 6)) > 0.2).astype(np.float32)  # missing labels, as in Tox21
    y[:, 5] = 0  # a task with one class in training
    parts = [dc.data.NumpyDataset(X[r], y[r], w[r]) for r in np.split(np.arange(500), [350, 425])]
    before = [i["num_threads"] for i in threadpool_info()]
    one, two = (
        probe_predictions("logreg", "classification", *parts, seed=0, jobs=jobs) for jobs in (1, 3)
    )
    assert [i["num_threads"] for i in threadpool_info()] == before
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    assert one[1].shape == (75, 6) and np.all(one[1][:, 5] == 0)


def test_probes_give_each_block_of_a_hybrid_the_same_total_variance():
    from exlm_chem.moleculenet.probes import _BlockScaler

    rng = np.random.default_rng(0)
    X = np.hstack([rng.normal(0, 5, (200, 16)), rng.integers(0, 2, (200, 128))])
    scaled = _BlockScaler([16, 128]).fit(X).transform(X)
    assert scaled[:, :16].var(0).sum() == pytest.approx(1, rel=1e-6)
    assert scaled[:, 16:].var(0).sum() == pytest.approx(1, rel=1e-6)
    plain = _BlockScaler([16]).fit(X).transform(X)  # one block: standardized only
    assert plain.var(0).sum() == pytest.approx(144, rel=1e-6)


def test_readable_rows_are_the_rows_the_model_featurizer_keeps():
    from exlm_chem.moleculenet.features import ReadableRows, make_featurizer

    featurizer = make_featurizer(parse_features("exlm")[0])
    # Valid, unparsable (ring not closed), empty, whitespace inside, a salt, a dative bond.
    smiles = ["CCO", "C1CC", "", "C C", "[Na+].[Cl-]", "C[N+](C)(C)[O-]", "[NH3]->[Pt]"]
    vectors = featurizer.featurize(smiles)
    rows = ReadableRows(featurizer).featurize(smiles)
    kept = [np.size(v) > 0 for v in vectors]
    assert [np.size(r) > 0 for r in rows] == kept
    assert any(kept) and not all(kept)
    assert ReadableRows(featurizer).featurize(["CCO", "CCN"]).shape == (2, 1)
    assert str(ReadableRows(featurizer)) == f"rows_{featurizer}"


def test_rdkit_descriptors_are_finite_for_every_molecule():
    from exlm_chem.moleculenet.features import make_featurizer

    featurizer = make_featurizer(parse_features("rdkit2d")[0])
    # A radical, a metal salt and a large macrocycle, beside an ordinary drug.
    X = featurizer.featurize(
        ["CC(=O)Oc1ccccc1C(=O)O", "[CH3]", "[Na+].[Cl-]", "C1CCCCCCCCCCCCCCCCCCCCCCCCCCC1"]
    )
    assert X.shape == (4, 217) and X.dtype == np.float32 and np.isfinite(X).all()
    assert X[0].std() > 0


def _record(dataset, features, probe, seed, value, valid_value, metric="roc_auc"):
    return dict(
        dataset=dataset,
        features=features,
        probe=probe,
        seed=seed,
        metric=metric,
        value=value,
        valid_value=valid_value,
    )


def test_each_family_is_read_on_the_read_out_and_probe_best_on_validation():
    from exlm_chem.moleculenet.compare import chosen_on_validation

    records = []
    for seed in range(3):
        # cls is best on validation, mean on test: cls must be chosen and its test value shown.
        records += [
            _record("bbbp", "exlm[mean]", "logreg", seed, 0.90, 0.70),
            _record("bbbp", "exlm[cls]", "logreg", seed, 0.80, 0.75),
            _record("bbbp", "exlm[cls]", "rf", seed, 0.85, 0.72),
            _record("bbbp", "ecfp", "logreg", seed, 0.70, 0.70),
            _record("bbbp", "exlm", "finetune", seed, 0.60, 0.99),
            # RMSE: lower is better on validation.
            _record("esol", "exlm[mean]", "rf", seed, 1.0, 0.9, "rmse"),
            _record("esol", "exlm[cls]", "rf", seed, 2.0, 1.1, "rmse"),
        ]
    records.append(_record("bbbp", "exlm[mean+cls]", "logreg", 0, 0.99, 0.99))  # one seed only
    chosen = chosen_on_validation(records).drop_duplicates(["dataset", "family", "mode"])
    picks = {
        (r.dataset, r.family, r.mode): (r.features, r.probe, r.value) for r in chosen.itertuples()
    }
    assert picks == {
        ("bbbp", "exlm", "frozen"): ("exlm[cls]", "logreg", 0.80),
        ("bbbp", "ecfp", "frozen"): ("ecfp", "logreg", 0.70),
        ("bbbp", "exlm", "finetuned"): ("exlm", "finetune", 0.60),
        ("esol", "exlm", "frozen"): ("exlm[mean]", "rf", 1.0),
    }


def test_paired_bootstrap_interval_excludes_zero_only_for_a_consistent_difference():
    from exlm_chem.moleculenet.compare import (
        chosen_on_validation,
        comparison_table,
        paired_bootstrap,
    )

    rng = np.random.default_rng(0)
    records = []
    for dataset in ("bbbp", "bace"):
        for seed in range(5):
            base = 0.7 + rng.normal(0, 0.05)  # the split moves both alike: paired
            records += [
                _record(dataset, "exlm[cls]", "logreg", seed, base + 0.03, 0.8),
                _record(dataset, "ecfp", "logreg", seed, base, 0.8),
                _record(dataset, "random[cls]", "logreg", seed, base + rng.normal(0, 0.05), 0.8),
            ]
        for seed in range(5):
            rmse = 1.0 + rng.normal(0, 0.2)
            records += [
                _record("esol", "exlm[cls]", "rf", seed, rmse - 0.1, 1.0, "rmse"),
                _record("esol", "ecfp", "rf", seed, rmse, 1.0, "rmse"),
            ]
    chosen = chosen_on_validation(records)
    better = paired_bootstrap(chosen, "frozen", "exlm", "ecfp", ["bbbp", "bace"])
    assert better["difference"] == pytest.approx(0.03) and better["excludes_zero"]
    assert better["low"] == pytest.approx(0.03) and better["high"] == pytest.approx(0.03)
    noisy = paired_bootstrap(chosen, "frozen", "exlm", "random", ["bbbp", "bace"])
    assert noisy["low"] < noisy["difference"] < noisy["high"]
    lower_rmse = paired_bootstrap(chosen, "frozen", "exlm", "ecfp", ["esol"])
    assert lower_rmse["difference"] == pytest.approx(0.1) and lower_rmse["excludes_zero"]
    assert paired_bootstrap(chosen, "finetuned", "exlm", "ecfp", ["bbbp"]) is None
    # A fine-tuned family against a frozen one (descriptors have no network to fine-tune).
    rmse = 1.0 + rng.normal(0, 0.2, 5)
    mixed = [_record("lipo", "rdkit2d", "rf", s, rmse[s], 1.0, "rmse") for s in range(5)]
    mixed += [_record("lipo", "exlm", "finetune", s, rmse[s] - 0.2, 1.0, "rmse") for s in range(5)]
    mixed_chosen = chosen_on_validation(mixed)
    across = paired_bootstrap(
        mixed_chosen, "finetuned", "exlm", "rdkit2d", ["lipo"], mode_b="frozen"
    )
    assert across["difference"] == pytest.approx(0.2) and across["excludes_zero"]
    assert paired_bootstrap(mixed_chosen, "finetuned", "exlm", "rdkit2d", ["lipo"]) is None
    table = comparison_table(chosen)
    assert "| frozen | exlm vs ecfp | mean ROC-AUC | +0.030 |" in table
    assert "| frozen | exlm vs ecfp | esol RMSE | +0.100 |" in table
    # A set that only one family has reached yet (a suite under way): the mean is over the
    # sets where both ran, and says so.
    partial = comparison_table(
        chosen_on_validation(records + [_record("tox21", "ecfp", "logreg", 0, 0.7, 0.7)])
    )
    assert "| frozen | exlm vs ecfp | mean ROC-AUC (2 of 3 sets: bbbp, bace) | +0.030 |" in partial


def test_report_shows_each_difference_on_validation_beside_test():
    """A family chosen for its lead on validation that does not hold on test: both show."""
    from exlm_chem.moleculenet.compare import baseline_table, chosen_on_validation, comparison_table

    records = []
    for dataset in ("bbbp", "bace"):
        for seed in range(3):
            records += [
                _record(dataset, "exlm[layers]", "logreg", seed, 0.78, 0.86),
                _record(dataset, "ecfp", "rf", seed, 0.80, 0.82),
            ]
    records += [_record("esol", "exlm[layers]", "rf", s, 1.2, 0.9, "rmse") for s in range(3)]
    records += [_record("esol", "ecfp", "rf", s, 1.0, 1.0, "rmse") for s in range(3)]
    chosen = chosen_on_validation(records)
    table = comparison_table(chosen)
    assert "| exlm vs ecfp | mean ROC-AUC | -0.020 | [-0.020, -0.020] | yes | +0.040 |" in table
    assert "| exlm vs ecfp | esol RMSE | -0.200 | [-0.200, -0.200] | yes | +0.100 |" in table
    against = baseline_table(chosen)
    assert "| exlm | frozen | mean ROC-AUC | -0.020 | [-0.020, -0.020] | yes | +0.040 |" in against


def test_report_compares_each_hybrid_with_what_it_joins_and_counts_with_bits():
    from exlm_chem.moleculenet.compare import chosen_on_validation, comparison_table

    scores = {  # test values, the same on every split; joining descriptors adds 0.02
        "exlm[layers]": 0.75,
        "ecfp": 0.80,
        "ecfp-count": 0.81,
        "rdkit2d": 0.84,
        "ecfp-count&rdkit2d": 0.86,
        "exlm[layers]&rdkit2d": 0.86,
        "exlm[layers]&ecfp-count&rdkit2d": 0.85,
    }
    records = [
        _record(dataset, features, "rf", seed, value, value)
        for dataset in ("bbbp", "bace")
        for seed in range(3)
        for features, value in scores.items()
    ]
    table = comparison_table(chosen_on_validation(records))
    for row in (
        "| frozen | ecfp-count vs ecfp | mean ROC-AUC | +0.010 |",
        "| frozen | ecfp-count&rdkit2d vs rdkit2d | mean ROC-AUC | +0.020 |",
        "| frozen | ecfp-count&rdkit2d vs ecfp-count | mean ROC-AUC | +0.050 |",
        "| frozen | exlm&rdkit2d vs rdkit2d | mean ROC-AUC | +0.020 |",
        "| frozen | exlm&ecfp-count&rdkit2d vs ecfp-count&rdkit2d | mean ROC-AUC | -0.010 |",
    ):
        assert row in table
    # Each pair once, whichever way it first came up.
    assert "| frozen | rdkit2d vs ecfp-count&rdkit2d |" not in table
    assert "exlm&ecfp-count&rdkit2d vs rdkit2d |" not in table


def test_one_split_gives_no_interval_and_no_spread():
    from exlm_chem.moleculenet.compare import (
        chosen_on_validation,
        comparison_table,
        paired_bootstrap,
    )

    records = []
    for dataset, base in (("bbbp", 0.70), ("bace", 0.80)):
        records += [
            _record(dataset, "exlm[cls]", "logreg", 0, base + 0.03, 0.8),
            _record(dataset, "ecfp", "logreg", 0, base, 0.8),
        ]
    chosen = chosen_on_validation(records)
    result = paired_bootstrap(chosen, "frozen", "exlm", "ecfp", ["bbbp", "bace"])
    assert result["difference"] == pytest.approx(0.03) and not result["excludes_zero"]
    assert np.isnan(result["low"]) and np.isnan(result["high"])
    table = comparison_table(chosen)
    assert "| frozen | exlm vs ecfp | mean ROC-AUC | +0.030 | none (one split) |  |" in table
    assert "| bbbp | frozen | exlm | exlm[cls] / logreg | 0.730 (one split) |" in table
    assert "nan" not in table


def test_model_card_section_shows_each_family_as_chosen_on_validation_and_replaces_itself():
    from exlm_chem.moleculenet.card import evaluation_section, with_section

    records = []
    for seed in range(3):
        records += [
            # cls is best on validation, mean on test: the card shows cls's test value.
            _record("bbbp", "exlm[mean]", "logreg", seed, 0.90, 0.60),
            _record("bbbp", "exlm[cls]", "logreg", seed, 0.70 + 0.03 * seed, 0.70),
            _record("bbbp", "ecfp", "rf", seed, 0.80, 0.70),
            _record("bbbp", "exlm", "finetune", seed, 0.75, 0.80),
            _record("bace", "exlm[cls]", "logreg", seed, 0.60, 0.70),
            _record("esol", "exlm[cls]", "rf", seed, 1.5, 1.1, "rmse"),
            _record("esol", "rdkit2d", "rf", seed, 0.9, 0.8, "rmse"),
        ]
    records = [dict(r, split="random_scaffold") for r in records]
    section = evaluation_section(records, "results.json")
    rows = {line.split(" | ")[0]: line for line in section.splitlines() if line.startswith("| ")}
    assert "| features | bbbp | bace | esol | mean ROC-AUC (2 sets) |" in section
    assert rows["| this model, frozen"] == "| this model, frozen | 0.730 | 0.600 | 1.500 | 0.665 |"
    # Fine-tuned only on BBBP, ECFP4 only on BBBP: no mean over sets they lack.
    assert rows["| this model, fine-tuned"] == "| this model, fine-tuned | 0.750 |  |  |  |"
    assert rows["| ECFP4, frozen"] == "| ECFP4, frozen | 0.800 |  |  |  |"
    assert rows["| RDKit 2D descriptors, frozen"].endswith("|  |  | 0.900 |  |")
    assert "3 seeded scaffold splits" in section
    with pytest.raises(InputError, match="mlm"):
        evaluation_section(records, "results.json", "mlm")
    # A named model: its own untrained network, its twin and chemprop have rows of their own.
    named = [
        dict(r, features=r["features"].replace("exlm", "exlm:v3"))
        for r in records
        if r["features"].startswith("exlm")
    ]
    for seed in range(3):
        named += [
            _record("bbbp", "random:v3[cls]", "logreg", seed, 0.65, 0.66),
            _record("bbbp", "random:v2[cls]", "logreg", seed, 0.10, 0.10),  # another network's
            _record("bbbp", "mlm:runs/twin[cls]", "logreg", seed, 0.68, 0.67),
            _record("bbbp", "chemprop", "scratch", seed, 0.77, 0.76),
        ]
    named = [dict(r, split="random_scaffold") for r in named]
    rows = {
        line.split(" | ")[0]: line
        for line in evaluation_section(named, "results.json", "exlm:v3").splitlines()
        if line.startswith("| ")
    }
    assert rows["| this model, frozen"].startswith("| this model, frozen | 0.730 |")
    assert rows["| same network, untrained, frozen"].startswith(
        "| same network, untrained, frozen | 0.650 |"
    )
    assert rows["| plain-MLM twin, frozen"].startswith("| plain-MLM twin, frozen | 0.680 |")
    assert rows["| chemprop, trained from scratch"].startswith(
        "| chemprop, trained from scratch | 0.770 |"
    )

    card = "# model\n\n## Limits\n\n- small\n\n## Licence\n\nMIT\n"
    once = with_section(card, section)
    assert once.startswith(card) and once.endswith(section)
    newer = section.replace("0.730", "0.731")
    assert with_section(once, newer) == with_section(card, newer)  # replaced, not appended
    middle = card.replace("## Licence", section + "\n## Licence")
    assert with_section(middle, newer) == card.replace("## Licence", newer + "\n## Licence")


def test_reports_show_each_family_chosen_on_validation_frozen_before_fine_tuned(tmp_path):
    from exlm_chem.moleculenet.compare import chosen_on_validation
    from exlm_chem.moleculenet.report import _chart_rows, write_reports

    records = []
    for dataset in ("bbbp", "bace"):
        for seed in range(3):
            records += [
                _record(dataset, "exlm", "finetune", seed, 0.85, 0.80),
                _record(dataset, "exlm[mean]", "logreg", seed, 0.90, 0.60),
                _record(dataset, "exlm[cls]", "logreg", seed, 0.75, 0.70),  # chosen
                _record(dataset, "ecfp", "rf", seed, 0.80, 0.70),
            ]
    records += [_record("esol", "ecfp", "rf", seed, 1.2, 1.1, "rmse") for seed in range(3)]
    rows = _chart_rows(records, chosen_on_validation(records))
    assert list(dict.fromkeys(rows["label"])) == ["exlm, frozen", "ecfp, frozen", "exlm, finetuned"]
    assert set(rows.loc[rows["label"] == "exlm, frozen", "features"]) == {"exlm[cls]"}

    write_reports([dict(r, fit_seconds=2.0) for r in records], tmp_path)
    assert len(pd.read_csv(tmp_path / "results.csv")) == len(records)
    report = (tmp_path / "results.md").read_text()
    assert "### roc_auc (higher is better)" in report and "### rmse (lower is better)" in report
    assert "| frozen | exlm vs ecfp | mean ROC-AUC | -0.050 |" in report
    assert "| bbbp | 0 | 6 | 12 | 6 | 24 |" in report  # fits per probe: finetune, logreg, rf
    for metric in ("roc_auc", "rmse"):
        assert (tmp_path / f"results_{metric}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "results.csv",
        "results.md",
        "results_rmse.png",
        "results_roc_auc.png",
    ]


def test_merge_finetune_runs_adds_the_runs_made_elsewhere_and_names_a_bad_file(
    benchmark_script, tmp_path, monkeypatch, capsys
):
    merge = benchmark_script("merge_finetune_runs")

    def run(*names) -> int:
        monkeypatch.setattr("sys.argv", ["merge", *map(str, names)])
        try:
            merge.main()
        except SystemExit as exc:
            return exc.code
        return 0

    def a_run(seed, rate, value):
        key = dict(dataset="bace", features="exlm", featurizer="exlm:abc", split="random_scaffold")
        return dict(key, seed=seed, learning_rate=rate, head="cls", value=value)

    ours, theirs, target = tmp_path / "ours.json", tmp_path / "theirs.json", tmp_path / "t.json"
    ours.write_text(json.dumps([a_run(0, 1e-4, 0.8), a_run(1, 1e-4, 0.7)]))
    # Their copy of seed 1's run differs: ours is kept; seed 2's run is new.
    theirs.write_text(json.dumps([a_run(1, 1e-4, 0.6), a_run(2, 1e-4, 0.9)]))
    target.write_text(ours.read_text())
    assert run(theirs, target) == 0
    merged = json.loads(target.read_text())
    assert [(r["seed"], r["value"]) for r in merged] == [(0, 0.8), (1, 0.7), (2, 0.9)]
    (tmp_path / "bad.json").write_text("{")
    assert run(tmp_path / "bad.json", target) == 2
    assert "bad.json" in capsys.readouterr().err
    assert json.loads(target.read_text()) == merged  # untouched


def test_descriptors_beside_the_model_join_the_molecules_both_hold(benchmark_script):
    import deepchem as dc

    side_by_side = benchmark_script("hybrid_descriptors").side_by_side

    first = dc.data.NumpyDataset(
        np.array([[1.0], [2.0], [3.0]]), np.array([0, 1, 0]), ids=np.array(["a", "b", "c"])
    )
    second = dc.data.NumpyDataset(
        np.array([[30.0, 31.0], [10.0, 11.0]]), np.array([9, 9]), ids=np.array(["c", "a"])
    )
    both = side_by_side(first, second)
    assert list(both.ids) == ["a", "c"]  # first's order; "b" has no second row
    np.testing.assert_array_equal(both.X, [[1.0, 10.0, 11.0], [3.0, 30.0, 31.0]])
    np.testing.assert_array_equal(both.y.ravel(), [0, 0])  # first's labels


def _probe_records(dataset, features, probes, fit_seconds, featurize_seconds=7.0):
    """A frozen probe's records on 5 seeds, as `exlm-chem benchmark` writes them."""
    return [
        dict(
            dataset=dataset,
            features=features,
            probe=probe,
            seed=seed,
            fit_seconds=fit_seconds,
            featurize_seconds=featurize_seconds,
        )
        for probe in probes
        for seed in range(5)
    ]


def test_suite_cost_projects_the_parts_not_run_from_the_sets_done(benchmark_script):
    suite_cost = benchmark_script("suite_cost").suite_cost

    def frozen(dataset, features, seconds):
        return _probe_records(dataset, features, ("logreg", "rf"), seconds)

    records = frozen("bbbp", "exlm[mean]", 2.0) + frozen("bbbp", "exlm[mean]&ecfp", 1.0)
    records += frozen("bbbp", "ecfp", 100.0)  # another family: not the model's cost
    records += frozen("bace", "exlm[mean]", 2.0)  # one of its two feature sets: not done
    runs = [dict(dataset="bbbp", features="exlm", fit_seconds=80.0, epochs_run=8)] * 11
    runs += [dict(dataset="bbbp", features="mlm", fit_seconds=999.0, epochs_run=8)]
    # clintox: 3 runs on this CPU, 8 on a GPU (their seconds are not this CPU's).
    runs += [dict(dataset="clintox", features="exlm", fit_seconds=100.0, epochs_run=10)] * 3
    gpu = dict(dataset="clintox", features="exlm", fit_seconds=5.0, epochs_run=20, device="cuda")
    runs += [gpu] * 8
    molecules = {"bbbp": 1000, "bace": 500, "clintox": 500}
    bbbp, bace, clintox = suite_cost(records, runs, molecules, datasets=list(molecules))
    # 300 s over 400 training molecules x 30 epochs on the CPU; the GPU ran 160 epochs.
    assert clintox["finetune"] == pytest.approx(300.0 + 300.0 / (400 * 30) * 400 * 160)
    assert "finetune" in clintox["projected"]
    assert bbbp["projected"] == [] and bbbp["featurize"] == 14.0
    assert bbbp["frozen_fit"] == 30.0 and bbbp["finetune"] == 880.0
    assert bace["projected"] == ["featurize", "frozen_fit", "finetune"]
    assert bace["frozen_fit"] == 15.0  # bbbp's seconds per molecule, half the molecules
    assert bace["finetune"] == pytest.approx(440.0)  # per training molecule and run
    assert bace["total"] == pytest.approx(7.0 + 15.0 + 440.0)


def test_suite_cost_counts_every_hybrid_and_the_sets_a_profile_fine_tunes(benchmark_script):
    suite_cost = benchmark_script("suite_cost").suite_cost

    def frozen(dataset, features, probe, seconds):
        return _probe_records(dataset, features, (probe,), seconds)

    model = "exlm:v3"
    records = []
    for features in (f"{model}[layers]", f"{model}[layers]&ecfp", f"{model}[layers]&rdkit2d"):
        records += frozen("bbbp", features, "logreg", 2.0)
    records += frozen("bbbp", "rdkit2d", "rf", 50.0)  # a baseline: not the model's cost
    # ToxCast: the multitask network reads two of the three feature sets, and is complete.
    records += frozen("toxcast", f"{model}[layers]", "deepchem", 4.0)
    records += frozen("toxcast", f"{model}[layers]&ecfp", "deepchem", 4.0)
    runs = [dict(dataset="bbbp", features=model, fit_seconds=10.0, epochs_run=5)] * 5
    bbbp, toxcast = suite_cost(
        records,
        runs,
        {"bbbp": 100, "toxcast": 100},
        model,
        runs_per_set=5,
        datasets=["bbbp", "toxcast"],
        finetune_datasets=["bbbp"],
    )
    assert bbbp["frozen_fit"] == 30.0 and bbbp["finetune"] == 50.0
    assert toxcast["projected"] == []  # nothing projected: not fine-tuned in this profile
    assert toxcast["frozen_fit"] == 40.0 and toxcast["finetune"] == 0


def test_baseline_cost_sums_each_cached_baseline_over_its_seeds(benchmark_script, tmp_path):
    script = benchmark_script("baseline_cost")

    def keep(dataset, features, probe, seed, seconds, split="random_scaffold"):
        folder = tmp_path / "baselines" / dataset
        folder.mkdir(parents=True, exist_ok=True)
        record = dict(dataset=dataset, features=features, probe=probe, seed=seed, split=split,
                      fit_seconds=seconds, predictions=[0.1, 0.2])  # fmt: skip
        (folder / f"{features}-{probe}-{split}-{seed}.json").write_text(json.dumps(record))

    for seed in range(3):
        keep("bbbp", "rdkit2d", "rf", seed, 10.0)
        keep("bbbp", "chemprop", "scratch", seed, 100.0)
    keep("bbbp", "rdkit2d", "rf", 0, 999.0, split="scaffold")  # another split: not counted
    rows = script.baseline_cost(script.read_baselines([tmp_path]))
    assert {(r["features"], r["seeds"], r["fit"]) for r in rows} == {
        ("rdkit2d", 3, 30.0),
        ("chemprop", 3, 300.0),
    }
    # A benchmark folder's results.json: its baselines, once each, beside the cache's.
    from exlm_chem.moleculenet.baselines import record_key

    def result(features, probe, seed, seconds):
        key = record_key("bbbp", features, features, probe, seed, "random_scaffold")
        return dict(key, value=0.8, fit_seconds=seconds)

    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps([
        result("ecfp-count", "rf", 0, 5.0), result("ecfp-count", "rf", 0, 5.0),
        result("exlm", "logreg", 0, 7.0),  # a model's result: not a baseline
    ]))  # fmt: skip
    rows = script.baseline_cost(script.read_baselines([tmp_path, folder]))
    assert {(r["features"], r["seeds"], r["fit"]) for r in rows} == {
        ("rdkit2d", 3, 30.0),
        ("chemprop", 3, 300.0),
        ("ecfp-count", 1, 5.0),
    }
    text = script.markdown(rows)
    assert "chemprop: 300 s = 0.1 h" in text and "fingerprints and descriptors: 35 s" in text


def test_the_report_leads_with_each_family_against_the_strongest_baseline():
    from exlm_chem.moleculenet.compare import (
        STRONGEST,
        baseline_table,
        chosen_on_validation,
        headline_table,
        with_strongest_baseline,
    )

    records = []
    for seed in range(3):
        records += [
            # On BBBP the descriptors are best on validation (not on test): they are the bar.
            _record("bbbp", "ecfp", "rf", seed, 0.80, 0.70),
            _record("bbbp", "rdkit2d", "rf", seed, 0.75, 0.90),
            _record("bbbp", "chemprop", "scratch", seed, 0.85, 0.80),
            _record("bbbp", "exlm", "logreg", seed, 0.77 + 0.01 * seed, 0.80),
            # On ESOL chemprop is (lower RMSE on validation).
            _record("esol", "rdkit2d", "rf", seed, 0.9, 1.0, "rmse"),
            _record("esol", "chemprop", "scratch", seed, 0.7, 0.8, "rmse"),
            _record("esol", "exlm", "logreg", seed, 1.0, 1.2, "rmse"),
        ]
    chosen = chosen_on_validation(records)
    assert set(chosen.loc[chosen["family"] == "chemprop", "mode"]) == {"scratch"}
    frame, picks = with_strongest_baseline(chosen)
    assert picks == {"bbbp": "rdkit2d / rf", "esol": "chemprop / scratch"}
    bar = frame[frame["family"] == STRONGEST].set_index(["dataset", "seed"])["value"]
    assert bar[("bbbp", 0)] == 0.75 and bar[("esol", 2)] == 0.7
    table = baseline_table(chosen)
    rows = [line for line in table.splitlines() if line.startswith("| exlm | frozen")]
    # ExLM minus the descriptors on BBBP: 0.78 - 0.75; on ESOL the RMSE is 0.3 worse.
    assert rows[0].startswith("| exlm | frozen | mean ROC-AUC | +0.030 | [+0.020, +0.040] | yes |")
    assert rows[1].startswith("| exlm | frozen | esol RMSE | -0.300 |")
    assert not any(line.startswith("| rdkit2d |") for line in table.splitlines())
    # The summary: one row per family, its test means, and ExLM against the bar.
    summary = headline_table(chosen)
    assert "| family | mode | mean ROC-AUC, 1 set | esol RMSE | minus the strongest" in summary
    assert "| exlm | frozen | 0.780 | 1.000 | +0.030 [+0.020, +0.040] |" in summary
    assert "| chemprop | scratch | 0.850 | 0.700 |  |" in summary
    assert "| strongest baseline | baseline | 0.750 | 0.700 |  |" in summary
    # A family that has not reached every classification set says how many it has.
    partial = headline_table(
        chosen_on_validation(records + [_record("bace", "exlm", "logreg", 0, 0.9, 0.9)])
    )
    assert "| rdkit2d | frozen | 0.750 (1 of them) | 0.900 |" in partial


def test_each_datasets_reading_line_counts_its_own_molecules(caplog):
    from collections import Counter

    from exlm_chem.moleculenet.suite import _report_reading

    counts = Counter(molecules=600, invalid=0, unknown_atoms=0, truncated=0)  # nothing to say
    with caplog.at_level("WARNING", logger="exlm_chem.moleculenet.suite"):
        _report_reading("esol", "exlm", [], counts, set())
        counts.update(molecules=4200, truncated=3)
        _report_reading("lipo", "exlm", [], counts, set())
    assert "lipo / exlm: of 4200 molecules, 0 have atoms outside" in caplog.text
    assert "esol" not in caplog.text
