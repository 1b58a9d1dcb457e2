"""Calibration on scaffold folds: each ensemble member holds out a fold and scores it."""

from dataclasses import replace

import numpy as np
import pytest

from exlm_chem import InputError
from exlm_chem.finetune_settings import FinetuneSettings, UncertaintySettings
from exlm_chem.finetuning import (
    LabelledMolecules,
    finetune_ensemble,
    load_finetuned,
    save_finetuned,
)
from exlm_chem.finetuning.domain import fit_domain, fit_domain_on_folds
from exlm_chem.finetuning.folds import scaffold_folds
from exlm_chem.splits import scaffold_groups

FAST = dict(epochs=6, patience=6, batch_size=16, learning_rate=1e-3, precision="fp32")


def ring_alcohols(ring_sizes, chains=range(6)):
    """A ring of each size with alcohol chains of each length: one scaffold per ring size;
    the target is the number of carbons."""
    smiles = [f"C1{'C' * (r - 2)}C1{'C' * c}O" for r in ring_sizes for c in chains]
    return smiles, np.array([float(r + c) for r in ring_sizes for c in chains])


def test_scaffold_folds_hold_whole_small_groups_and_leave_large_ones_out():
    smiles = ["CCO", "CCCO", "CCCCO", "CCCCCO", "CCCCCCO", "CCCCCCCO"]  # one acyclic group
    smiles += ring_alcohols(range(3, 12), chains=range(2))[0]  # nine groups of two
    folds = scaffold_folds(smiles, 3, seed=0)
    in_folds = np.concatenate(folds)
    assert len(in_folds) == len(set(in_folds.tolist())) == 18  # the 6 acyclic: in no fold
    assert not set(range(6)) & set(in_folds.tolist())
    for group in scaffold_groups(smiles)[1:]:
        assert sum(bool(set(group) & set(f.tolist())) for f in folds) == 1
    assert [len(f) for f in folds] == [6, 6, 6]
    again = scaffold_folds(smiles, 3, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    other = scaffold_folds(smiles, 3, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other))
    with pytest.raises(InputError, match="at least 5 small scaffold groups"):
        scaffold_folds(smiles[:10], 5, seed=0)


def test_the_domain_threshold_on_folds_is_each_fold_against_the_others():
    smiles, _ = ring_alcohols(range(3, 12), chains=range(3))
    folds = scaffold_folds(smiles, 3, seed=0)
    vectors = np.random.default_rng(0).normal(size=(len(smiles), 8))
    reference = fit_domain_on_folds(vectors, smiles, list(range(len(smiles))), folds, 0.0)
    assert reference.train_smiles == smiles
    lowest = []
    for fold in folds:
        others = np.setdiff1d(np.arange(len(smiles)), fold)
        alone = fit_domain(
            vectors[others], [smiles[i] for i in others], others.tolist(),
            vectors[fold], [smiles[i] for i in fold], quantile=0.0,
        )  # fmt: skip
        lowest.append(alone.threshold)
    assert reference.threshold == pytest.approx(min(lowest))


def test_an_ensemble_calibrated_on_folds_scores_every_held_out_molecule(model, tmp_path):
    train = LabelledMolecules.from_smiles(*ring_alcohols(range(3, 15)), model.tokenizer)
    valid = LabelledMolecules.from_smiles(*ring_alcohols(range(15, 18)), model.tokenizer)
    fitted, best, runs, members = finetune_ensemble(
        model, train, valid, "regression", FinetuneSettings(**FAST),
        UncertaintySettings(members=3, calibration="folds"), learning_rates=[1e-3],
        valid_ids=[f"v{i}" for i in range(len(valid.y))],
    )  # fmt: skip
    assert [m["seed"] for m in members] == [0, 1, 2] and len(fitted.members) == 3
    # each member trains the epochs the grid's run chose, whatever its fold says
    assert [(m["best_epoch"], m["epochs_run"]) for m in members] == [(best.best_epoch,) * 2] * 3
    assert all(m is not best.predictor for m in fitted.members)  # the grid's run only chose
    # every molecule is in a fold (no group is larger than half a fold); one score each
    assert len(fitted.calibration.tasks[0].scores) == len(train.y) + len(valid.y)
    assert fitted.calibration.tasks[0].kind == "absolute"
    assert fitted.domain.train_ids[-len(valid.y) :][:2] == ["v0", "v1"]
    assert fitted.domain.train_smiles == train.smiles + valid.smiles
    queries = ["C1CCCCC1CCO", "c1ccc2ccccc2c1"]
    predictions, _ = fitted.predict_smiles(queries, "fp32")
    assert (predictions.low < predictions.value).all() and (
        predictions.value < predictions.high
    ).all()
    assert predictions.in_domain.tolist() == [True, False]
    save_finetuned(fitted, tmp_path / "tuned")
    again, _ = load_finetuned(tmp_path / "tuned").predict_smiles(queries, "fp32")
    np.testing.assert_allclose(again.high, predictions.high, atol=1e-5)


def test_calibration_on_folds_needs_two_members_and_smiles(model):
    with pytest.raises(InputError, match="at least 2 members"):
        UncertaintySettings(members=1, calibration="folds")
    with pytest.raises(InputError, match="calibration must be one of"):
        UncertaintySettings(members=2, calibration="test")
    train = LabelledMolecules.from_smiles(*ring_alcohols(range(3, 15)), model.tokenizer)
    valid = LabelledMolecules.from_smiles(*ring_alcohols(range(15, 18)), model.tokenizer)
    unnamed = LabelledMolecules(train.molecules, train.y)
    with pytest.raises(InputError, match="needs the molecules' SMILES"):
        finetune_ensemble(
            model, unnamed, valid, "regression", FinetuneSettings(**FAST),
            UncertaintySettings(members=2, calibration="folds"), learning_rates=[1e-3],
        )  # fmt: skip


def test_finetune_command_calibrates_on_folds(run_cli, model_dir, tmp_path):
    import json

    import pandas as pd

    smiles, y = ring_alcohols(range(3, 30))
    pd.DataFrame({"smiles": smiles, "carbons": y}).to_csv(tmp_path / "rings.csv", index=False)
    out = tmp_path / "tuned"
    code, _, err = run_cli(
        "finetune", tmp_path / "rings.csv", "--target", "carbons", "--out", out,
        "--model", model_dir, "--lr", "1e-3", "--epochs", "3", "--batch-size", "16",
        "--ensemble", "2", "--calibration", "folds",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "finetune.json").read_text())
    assert report["ensemble"]["calibration"] == "folds"
    assert report["uncertainty"]["part"] == "test"
    calibration = json.loads((out / "calibration.json").read_text())
    assert (
        len(calibration["tasks"][0]["scores"])
        == report["split"]["train"] + report["split"]["valid"]
    )
    code, _, err = run_cli(
        "finetune", tmp_path / "rings.csv", "--target", "carbons", "--out", tmp_path / "x",
        "--model", model_dir, "--calibration", "folds",
    )  # fmt: skip
    assert code == 2 and "at least 2 members" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_run_of_fixed_length_keeps_its_last_epoch_and_the_planned_schedule(model):
    from exlm_chem.finetuning import finetune

    train = LabelledMolecules.from_smiles(*ring_alcohols(range(3, 9)), model.tokenizer)
    valid = LabelledMolecules.from_smiles(*ring_alcohols(range(9, 11)), model.tokenizer)
    settings = FinetuneSettings(**{**FAST, "epochs": 5, "patience": 1})
    stopped = finetune(model, train, valid, "regression", replace(settings, stop_epoch=3))
    assert stopped.best_epoch == stopped.epochs_run == 3
    assert stopped.valid_score == stopped.history[-1]["valid"]
    # the same first three epochs as the full run: the schedule is still planned over 5
    full = finetune(model, train, valid, "regression", replace(settings, patience=5))
    assert [h["train_loss"] for h in full.history[:3]] == pytest.approx(
        [h["train_loss"] for h in stopped.history]
    )
    with pytest.raises(InputError, match="stop epoch must be in"):
        FinetuneSettings(epochs=5, stop_epoch=6)
