"""Fine-tuning: the protocol learns, keeps its best validation weights, masks missing labels,
saves and loads; the finetune/predict commands and the scikit-learn estimators on top."""

import pickle
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import amine_task, chains

from exlm_chem import InputError, load_model
from exlm_chem.finetuning import (
    FinetuneSettings,
    LabelledMolecules,
    balancing_weights,
    choose_learning_rate,
    finetune,
    finetune_each,
    load_predictor,
    predict_encoded,
    predict_smiles,
    save_predictor,
)
from exlm_chem.metrics import score
from exlm_chem.splits import random_scaffold_split, scaffold_groups, split_rows

FAST = dict(epochs=12, patience=12, batch_size=16, learning_rate=1e-3, precision="fp32")


@pytest.fixture(scope="module")
def amines(model):
    train = LabelledMolecules.from_smiles(*amine_task(range(1, 40, 2)), model.tokenizer)
    valid = LabelledMolecules.from_smiles(*amine_task(range(2, 40, 6)), model.tokenizer)
    return train, valid


@pytest.mark.parametrize("head", ["cls", "mean", "layers"])
def test_finetuning_learns_an_easy_task_and_keeps_the_best_epoch(model, amines, head):
    train, valid = amines
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune(model, train, valid, "classification", FinetuneSettings(head=head, **FAST))
    assert result.selection == "roc_auc" and result.valid_score > 0.9
    # The weights kept are those of the best epoch: their validation score is the one reported.
    prediction = predict_encoded(result.predictor, valid.molecules, "fp32")
    assert score("classification", valid.y, valid.w, prediction) == pytest.approx(
        result.valid_score
    )
    assert result.valid_score == max(h["valid"] for h in result.history)
    assert result.history[result.best_epoch - 1]["valid"] == result.valid_score
    # Among epochs tied on the best score (ROC-AUC saturates at 1.0 on a small validation
    # set), the one with the lowest validation loss is kept, not the earliest.
    tied = [h["valid_loss"] for h in result.history if h["valid"] == result.valid_score]
    assert result.history[result.best_epoch - 1]["valid_loss"] == min(tied)
    # The model handed in is left as it was.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_early_stopping_stops_after_patience(model, amines):
    train, valid = amines
    settings = FinetuneSettings(**{**FAST, "epochs": 40, "patience": 2, "learning_rate": 1e-6})
    result = finetune(model, train, valid, "classification", settings)
    values = [h["valid"] for h in result.history]
    last_gain = max(i + 1 for i, v in enumerate(values) if i == 0 or v > max(values[:i]))
    assert result.epochs_run - last_gain == 2 and result.epochs_run < 40
    assert last_gain <= result.best_epoch <= result.epochs_run


def test_runs_in_worker_processes_equal_runs_in_this_process(model, amines):
    train, valid = amines
    settings = FinetuneSettings(**{**FAST, "epochs": 3})
    runs = [
        (model, train, valid, settings),
        (model, train, valid, replace(settings, learning_rate=1e-4, seed=1)),
    ]
    threads = torch.get_num_threads()
    jobs = 2
    torch.set_num_threads(max(1, threads // jobs))  # the workers' share of the threads
    try:
        here = list(finetune_each(runs, "classification"))
    finally:
        torch.set_num_threads(threads)
    there = list(finetune_each(runs, "classification", jobs=jobs))
    assert [r.settings for r in there] == [run[-1] for run in runs]  # in order
    for a, b in zip(here, there):
        assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
        assert a.best_epoch == b.best_epoch and a.valid_score == b.valid_score
        for name, value in a.predictor.state_dict().items():
            assert torch.equal(value, b.predictor.state_dict()[name]), name
    # The two runs differ (rate and seed): the comparison above can tell runs apart.
    assert here[0].history[-1]["train_loss"] != here[1].history[-1]["train_loss"]
    with pytest.raises(InputError, match="jobs"):
        list(finetune_each(runs, "classification", jobs=0))


def test_an_interrupted_run_continues_from_its_checkpoint_as_if_never_stopped(
    model, amines, tmp_path, monkeypatch
):
    from exlm_chem.finetuning import train as train_module

    train, valid = amines
    settings = FinetuneSettings(**{**FAST, "epochs": 6})
    whole = finetune(model, train, valid, "classification", settings)
    checkpoint = tmp_path / "run.pt"
    # Stopped (as by Ctrl-C or the end of a job's time) in the validation of epoch 4: the
    # checkpoint holds epoch 3.
    validate, calls = train_module._validation_values, []

    def stopped_at_epoch_4(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return validate(*args)

    monkeypatch.setattr(train_module, "_validation_values", stopped_at_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        finetune(
            model,
            train,
            valid,
            "classification",
            settings,
            checkpoint=checkpoint,
            checkpoint_seconds=0,
        )
    monkeypatch.setattr(train_module, "_validation_values", validate)
    assert checkpoint.exists()
    continued = finetune(model, train, valid, "classification", settings, checkpoint=checkpoint)
    assert continued.history == whole.history and continued.best_epoch == whole.best_epoch
    for name, value in whole.predictor.state_dict().items():
        assert torch.equal(value, continued.predictor.state_dict()[name]), name
    # A finished run's checkpoint gives its result back without training.
    again = finetune(model, train, valid, "classification", settings, checkpoint=checkpoint)
    assert again.history == whole.history and again.seconds == continued.seconds
    # Another run's checkpoint is refused, naming the file.
    with pytest.raises(InputError, match="run.pt: a checkpoint of another fine-tuning run"):
        finetune(
            model, train, valid, "classification", replace(settings, seed=1), checkpoint=checkpoint
        )


def test_missing_labels_get_no_loss(model):
    smiles, y = amine_task(range(1, 30, 2))
    second = np.where(np.arange(len(y)) % 2 == 0, 1 - y, np.nan)  # half the labels missing
    targets = np.column_stack([y, second])
    train = LabelledMolecules.from_smiles(smiles, targets, model.tokenizer)
    valid = LabelledMolecules.from_smiles(smiles[:20], targets[:20], model.tokenizer)
    result = finetune(model, train, valid, "classification", FinetuneSettings(**FAST))
    assert predict_encoded(result.predictor, valid.molecules).shape == (20, 2)
    # The missing labels (NaN) neither reach the loss nor the validation metric.
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["valid"]) for h in result.history)
    assert train.w[1, 1] == 0 and train.w[0, 1] == 1


def test_balancing_weights_give_both_classes_equal_weight():
    y = np.array([[1.0, 0], [0, 0], [0, 1], [0, 0], [0, 0], [1.0, 0]])
    w = np.ones_like(y)
    w[0, 1] = 0
    balanced = balancing_weights(y, w)
    for t in range(2):
        labelled = w[:, t] > 0
        positive = balanced[labelled & (y[:, t] == 1), t].sum()
        negative = balanced[labelled & (y[:, t] == 0), t].sum()
        assert positive == pytest.approx(negative) and balanced[~labelled, t].sum() == 0


def test_learning_rate_is_chosen_on_pooled_validation():
    scores = {1e-4: [0.9, 0.5], 1e-3: [0.7, 0.8]}
    assert choose_learning_rate(scores, "roc_auc") == 1e-3  # mean 0.75 beats 0.70
    assert choose_learning_rate({1e-4: [1.0, 2.0], 1e-3: [1.2, 1.4]}, "rmse") == 1e-3


def test_single_class_and_non_binary_labels_are_refused(model, amines):
    _, valid = amines
    smiles, _ = amine_task(range(1, 10))
    one_class = LabelledMolecules.from_smiles(smiles, np.ones(len(smiles)), model.tokenizer)
    with pytest.raises(InputError, match="single class"):
        finetune(model, one_class, valid, "classification", FinetuneSettings(**FAST))
    counts = LabelledMolecules.from_smiles(smiles, np.arange(len(smiles)), model.tokenizer)
    with pytest.raises(InputError, match="not 0/1 labels"):
        finetune(model, counts, valid, "classification", FinetuneSettings(**FAST))


def test_saved_predictor_predicts_the_same_and_is_a_model_folder(model, amines, tmp_path):
    train, valid = amines
    result = finetune(model, train, valid, "classification", FinetuneSettings(**FAST))
    save_predictor(result.predictor, tmp_path / "tuned")
    loaded = load_predictor(tmp_path / "tuned")
    smiles = ["CCCCN", "OCCC", "not a smiles"]
    expected, _ = predict_smiles(smiles, result.predictor, "fp32")
    got, errors = predict_smiles(smiles, loaded, "fp32")
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.isnan(got[2]).all() and errors[2] and errors[0] is None
    assert load_model(tmp_path / "tuned").config.hidden_size == model.config.hidden_size


def test_regression_predicts_in_the_targets_units(model):
    lengths = range(1, 40)
    smiles = chains(lengths, "O")
    y = np.array([100.0 + k for k in lengths for _ in (0, 1)])
    data = LabelledMolecules.from_smiles(smiles, y, model.tokenizer)
    result = finetune(model, data, data, "regression", FinetuneSettings(**FAST))
    prediction = predict_encoded(result.predictor, data.molecules)
    assert result.selection == "rmse"
    assert 90 < prediction.mean() < 150  # de-standardized: not around 0


def test_scaffold_splits_are_seeded_disjoint_and_keep_big_groups_in_training():
    smiles = ["c1ccccc1" + "C" * k for k in range(1, 40)] + ["C" * k + "O" for k in range(1, 80)]
    smiles += [f"C1CC{'C' * (k % 5)}1" + "N" * (k % 3) for k in range(30)]
    groups = scaffold_groups(smiles)
    train, valid, test = random_scaffold_split(groups, seed=3)
    assert len(train) + len(valid) + len(test) == len(smiles) and len(valid) and len(test)
    owner = {i: g for g, group in enumerate(groups) for i in group}
    assert not {owner[i] for i in train} & {owner[i] for i in np.concatenate([valid, test])}
    acyclic = groups[0]  # the 79 chains share the empty scaffold: the largest group
    assert set(acyclic) <= set(train.tolist())
    again = split_rows(smiles, "scaffold", 3, 0.1, 0.1)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, valid, test)))
    random_parts = split_rows(smiles, "random", 0, 0.2, 0.0)
    assert len(random_parts[1]) == round(0.2 * len(smiles)) and len(random_parts[2]) == 0


def test_finetune_and_predict_commands(run_cli, model_dir, amine_csv, tmp_path):
    import json

    out = tmp_path / "tuned"
    code, _, err = run_cli(
        "finetune", amine_csv, "--target", "is_amine", "--out", out, "--model", model_dir,
        "--split", "random", "--lr", "1e-3", "--epochs", "6", "--batch-size", "16",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "finetune.json").read_text())
    assert report["task_type"] == "classification" and report["chosen"]["learning_rate"] == 1e-3
    assert report["split"]["train"] + report["split"]["valid"] + report["split"]["test"] == 156
    assert "learning rate 0.001" in err and "test roc_auc" in err
    # Progress as it trains: the first epoch's line at least (in a log, then every 30 s).
    assert "learning rate 0.001, epoch 1 of at most 6: training loss" in err, err
    molecules = tmp_path / "new.smi"
    molecules.write_text("CCCCCN\nOCCCCC\nC1CC\n")
    code, _, err = run_cli("predict", molecules, "--model", out)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "new.predictions.csv")
    domain = ["max_cosine", "max_tanimoto", "nearest_train", "nearest_train_smiles", "in_domain"]
    assert list(table.columns) == ["id", "smiles", "is_amine", *domain, "error"]
    assert table["is_amine"][0] > table["is_amine"][1] and np.isnan(table["is_amine"][2])
    assert table["error"].fillna("")[2] != ""
    # The output's name says its format; a name of no table format is refused.
    for suffix, read in (
        (".parquet", pd.read_parquet),
        (".tsv", lambda p: pd.read_csv(p, sep="\t")),
    ):
        code, _, err = run_cli("predict", molecules, "--model", out, "-o", tmp_path / f"p{suffix}")
        assert code == 0, err
        written = read(tmp_path / f"p{suffix}")
        assert list(written.columns) == list(table.columns)
        np.testing.assert_allclose(written["is_amine"], table["is_amine"])
    code, _, err = run_cli("predict", molecules, "--model", out, "-o", tmp_path / "p.txt")
    assert code == 2 and "--output" in err and "p.txt: must end in .csv, .tsv, .parquet" in err
    assert not (tmp_path / "p.txt").exists()
    # Asked again, an existing output and an existing model folder are refused.
    code, _, err = run_cli("predict", molecules, "--model", out)
    assert code == 2 and "already exists" in err
    code, _, err = run_cli("finetune", amine_csv, "--target", "is_amine", "--out", out)
    assert code == 2 and "--overwrite" in err
    # A finished run leaves no checkpoints, and has nothing to resume.
    assert not (out / "checkpoints").exists()
    code, _, err = run_cli("finetune", amine_csv, "--target", "is_amine", "--out", out, "--resume")
    assert code == 2 and "no stopped run to resume" in err


def test_a_stopped_finetune_command_resumes(run_cli, model_dir, amine_csv, tmp_path, monkeypatch):
    import json

    from exlm_chem.finetuning import files

    args = (
        "finetune", amine_csv, "--target", "is_amine", "--model", model_dir, "--split", "random",
        "--lr", "1e-3,3e-4", "--epochs", "4", "--batch-size", "16", "--precision", "fp32",
        "--ensemble", "2",
    )  # fmt: skip
    code, _, err = run_cli(*args, "--out", tmp_path / "whole")
    assert code == 0, err
    whole = json.loads((tmp_path / "whole" / "finetune.json").read_text())
    # Stopped after training, before the model is saved: both rates' runs and the second
    # ensemble member are checkpointed.
    out = tmp_path / "stopped"
    save = files.save_finetuned

    def stopped(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "save_finetuned", stopped)
    code, _, _ = run_cli(*args, "--out", out)
    assert code == 130  # as Ctrl-C
    monkeypatch.setattr(files, "save_finetuned", save)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "lr-0.0003.pt",
        "lr-0.001.pt",
        "member-1.pt",
    ]
    code, _, err = run_cli(*args, "--out", out)
    assert code == 2 and "--resume to continue" in err
    code, _, err = run_cli(*args, "--out", out, "--resume")
    assert code == 0, err
    resumed = json.loads((out / "finetune.json").read_text())

    def without_seconds(report):
        runs = [report["chosen"], *report["runs_by_learning_rate"].values()]
        return [{k: v for k, v in run.items() if k != "seconds"} for run in runs]

    assert without_seconds(resumed) == without_seconds(whole)
    assert resumed["test_score"] == whole["test_score"]
    assert (
        resumed["ensemble"]["members"][1]["valid_score"]
        == whole["ensemble"]["members"][1]["valid_score"]
    )
    assert not (out / "checkpoints").exists()


@pytest.mark.parametrize(
    "table, args, message",
    [
        ({"smiles": ["CCO", "CCN"], "y": [0, 1]}, ["--target", "activity"], "no target column"),
        ({"smiles": ["CCO", "CCN"], "y": ["0", "high"]}, ["--target", "y"], "line 3: target"),
        ({"smiles": ["CCO", "CCN"], "y": [1, 1]}, ["--target", "y"], "single class"),
        ({"smiles": ["CCO", "C1CC"], "y": [0, 1]}, ["--target", "y"], "line 3: invalid SMILES"),
    ],
)
def test_finetune_bad_input_is_one_line(run_cli, model_dir, tmp_path, table, args, message):
    path = tmp_path / "data.csv"
    pd.DataFrame(table).to_csv(path, index=False)
    code, _, err = run_cli(
        "finetune", path, *args, "--out", tmp_path / "out", "--model", model_dir,
        "--task", "classification",
    )  # fmt: skip
    assert code == 2 and message in err and str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_finetune_refuses_an_unknown_schedule(run_cli, model_dir, tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"smiles": ["CCO", "CCN"], "y": [0, 1]}).to_csv(path, index=False)
    code, _, err = run_cli(
        "finetune", path, "--target", "y", "--out", tmp_path / "out", "--model", model_dir,
        "--schedule", "cosine",
    )  # fmt: skip
    assert code == 2 and "schedule must be one of linear, constant, not 'cosine'" in err
    assert not (tmp_path / "out").exists()


def test_predict_needs_a_model_with_a_head(run_cli, model_dir, tmp_path):
    molecules = tmp_path / "m.smi"
    molecules.write_text("CCO\n")
    code, _, err = run_cli("predict", molecules, "--model", model_dir)
    assert code == 2 and "without a prediction head" in err and str(model_dir) in err


def test_sklearn_estimators_fit_predict_clone_and_pickle(model_dir):
    from sklearn.base import clone

    from exlm_chem import ExLMClassifier, ExLMRegressor

    smiles, y = amine_task(range(1, 40))
    labels = np.where(y == 1, "amine", "alcohol")
    classifier = ExLMClassifier(
        model=model_dir, learning_rate=[3e-4, 1e-3], epochs=6, batch_size=16, split="random",
        precision="fp32", n_jobs=-1,  # the two rates in worker processes, one per core
    )  # fmt: skip
    classifier.fit(smiles, labels)
    assert set(classifier.runs_) == {3e-4, 1e-3} and classifier.learning_rate_ in classifier.runs_
    assert list(classifier.classes_) == ["alcohol", "amine"]
    probabilities = classifier.predict_proba(["CCCCCN", "OCCCCC"])
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(1), 1)
    assert classifier.score(smiles, labels) > 0.8
    restored = pickle.loads(pickle.dumps(classifier))
    np.testing.assert_allclose(
        restored.predict_proba(smiles[:4]), classifier.predict_proba(smiles[:4])
    )
    assert clone(classifier).get_params() == classifier.get_params()
    with pytest.raises(InputError, match="two classes"):
        clone(classifier).fit(smiles, ["a"] * len(smiles))
    with pytest.raises(InputError, match="index 1"):
        classifier.predict(["CCO", "C1CC"])

    regressor = ExLMRegressor(model=model_dir, epochs=3, split="random", precision="fp32")
    targets = np.column_stack([y, np.where(y == 1, np.nan, 2.0)])
    regressor.fit(smiles, targets)
    assert regressor.predict(smiles[:3]).shape == (3, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_finetuning_on_the_gpu_matches_the_cpu_protocol(model, amines):
    train, valid = amines
    result = finetune(
        model, train, valid, "classification", FinetuneSettings(**FAST), device="cuda"
    )
    assert next(result.predictor.parameters()).device.type == "cuda"
    assert result.valid_score > 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_in_worker_processes_share_the_gpu(model, amines):
    train, valid = amines
    settings = FinetuneSettings(**FAST)
    runs = [(model, train, valid, replace(settings, seed=seed)) for seed in range(3)]
    results = list(finetune_each(runs, "classification", device="cuda", jobs=3))
    assert [r.settings.seed for r in results] == [0, 1, 2]  # in order
    for result in results:
        assert next(result.predictor.parameters()).device.type == "cuda"
        assert result.valid_score > 0.9
    # Each run is the run this process makes (up to CUDA's non-deterministic sums).
    here = finetune(model, train, valid, "classification", runs[1][-1], device="cuda")
    assert here.valid_score == pytest.approx(results[1].valid_score, abs=0.05)


def test_length_bucketed_batches_cover_every_row_once_with_little_padding():
    from exlm_chem.finetuning.train import length_bucketed_batches

    lengths = np.random.default_rng(0).lognormal(3.5, 0.5, 3000).astype(int) + 1
    batches = length_bucketed_batches(lengths, 32, np.random.default_rng(1), chunk_batches=20)
    assert sorted(np.concatenate(batches).tolist()) == list(range(3000))
    assert max(len(b) for b in batches) == 32
    padded = sum(len(b) * lengths[b].max() for b in batches)
    order = np.random.default_rng(1).permutation(3000)
    random_padded = sum(32 * lengths[order[i : i + 32]].max() for i in range(0, 3000, 32))
    assert padded < 0.7 * random_padded
    # Seeded: the same generator state gives the same epoch; batch order is shuffled.
    again = length_bucketed_batches(lengths, 32, np.random.default_rng(1), chunk_batches=20)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    firsts = [lengths[b].max() for b in batches]
    assert firsts != sorted(firsts)


def test_an_almost_binary_column_is_a_data_error_not_a_regression(run_cli, model_dir, tmp_path):
    smiles, y = amine_task(range(1, 40))
    labels = y.astype(float)
    labels[7] = 2.0  # one stray label among 0/1
    path = tmp_path / "typo.csv"
    pd.DataFrame({"smiles": smiles, "is_amine": labels}).to_csv(path, index=False)
    code, _, err = run_cli("finetune", path, "--target", "is_amine", "--out", tmp_path / "a")
    assert code == 2 and "typo.csv: line 9: label 2 in 'is_amine'" in err, err
    assert "--task regression" in err and not (tmp_path / "a").exists()
    code, _, err = run_cli(
        "finetune", path, "--target", "is_amine", "--out", tmp_path / "b", "--task",
        "classification",
    )  # fmt: skip
    assert code == 2 and "is not 0/1 labels" in err
    # A real regression target that holds some 0s and 1s is still a regression.
    from exlm_chem.finetuning.files import infer_task_type

    values = np.r_[np.zeros(5), np.ones(5), np.linspace(0.05, 0.95, 20)][:, None]
    assert infer_task_type(values) == "regression"


def test_a_head_file_that_is_not_safetensors_is_one_line(run_cli, model, amines, tmp_path, capsys):
    from exlm_chem.finetuning.predictor import HEAD_WEIGHTS_FILE

    train, valid = amines
    result = finetune(model, train, valid, "classification", FinetuneSettings(**FAST))
    save_predictor(result.predictor, tmp_path / "tuned")
    (tmp_path / "tuned" / HEAD_WEIGHTS_FILE).write_bytes(b"not safetensors at all" * 10)
    molecules = tmp_path / "m.smi"
    molecules.write_text("CCO\n")
    capsys.readouterr()  # what the fine-tuning above printed
    code, _, err = run_cli("predict", molecules, "--model", tmp_path / "tuned")
    assert code == 2 and "tuned: unreadable prediction head" in err, err
    assert len(err.strip().splitlines()) == 1
    # A shipped model has no head: said so, not "no such folder".
    code, _, err = run_cli("predict", molecules, "--model", "exlm-chem-v2")
    assert code == 2 and "exlm-chem-v2: a shipped model, without a prediction head" in err, err
    assert "no such folder" not in err


def test_a_diverging_learning_rate_is_skipped_and_reported(run_cli, model_dir, amine_csv, tmp_path):
    import json

    common = ("--target", "is_amine", "--model", model_dir, "--split", "random", "--epochs", "2")
    out = tmp_path / "grid"
    code, _, err = run_cli("finetune", amine_csv, *common, "--lr", "1e6,1e-3", "--out", out)
    assert code == 0, err
    report = json.loads((out / "finetune.json").read_text())
    assert report["chosen"]["learning_rate"] == 1e-3
    diverged = report["runs_by_learning_rate"]["1000000.0"]
    assert diverged["diverged_at"] is not None and diverged["valid_score"] is None
    assert "learning rate 1e+06: diverged" in err and not (out / "checkpoints").exists()
    alone = tmp_path / "alone"
    code, _, err = run_cli("finetune", amine_csv, *common, "--lr", "1e6", "--out", alone)
    assert code == 1 and "every learning rate diverged (1e+06" in err, err
    assert "Traceback" not in err and not (alone / "checkpoints").exists()


def test_a_labelled_table_pandas_cannot_parse_is_one_line(run_cli, tmp_path):
    path = tmp_path / "quote.csv"
    path.write_text('smiles,y\nCCO,"1\nCCN,0\n')  # a quote never closed
    code, _, err = run_cli("finetune", path, "--target", "y", "--out", tmp_path / "m")
    assert code == 2 and "quote.csv: cannot read as a table: " in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


def test_the_command_the_benchmark_and_the_estimators_share_one_set_of_defaults():
    import inspect

    from exlm_chem import ExLMClassifier, ExLMRegressor
    from exlm_chem.cli.benchmark import benchmark
    from exlm_chem.cli.finetune import finetune as finetune_command
    from exlm_chem.finetune_settings import LEARNING_RATES
    from exlm_chem.finetune_settings import FinetuneSettings as Settings

    def option(function, name):
        return inspect.signature(function).parameters[name].default.default

    for name in ("head", "epochs", "patience", "batch_size", "dropout", "seed"):
        assert option(finetune_command, name) == getattr(Settings, name), name
    for name in ("head", "epochs", "patience"):
        assert option(benchmark, f"finetune_{name}") == getattr(Settings, name), name
    rates = [float(r) for r in option(finetune_command, "lr").split(",")]
    assert (
        rates
        == list(LEARNING_RATES)
        == [float(r) for r in option(benchmark, "finetune_lr").split(",")]
    )
    for estimator in (ExLMClassifier(), ExLMRegressor()):
        params = estimator.get_params()
        for name in ("head", "epochs", "patience", "batch_size", "dropout", "precision"):
            assert params[name] == getattr(Settings, name), name
