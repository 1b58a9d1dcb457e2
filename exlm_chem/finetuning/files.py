"""Fine-tuning on a labelled table and predicting for a molecule file: the library functions
behind ``exlm-chem finetune`` and ``exlm-chem predict``."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ..environment import describe_hardware
from ..errors import InputError, TrainingFailed
from ..finetune_settings import UncertaintySettings
from ..metrics import metric_name, score
from ..model import load_model
from ..molecule_files import read_labelled_table, read_molecules
from ..outputs import atomic_path, atomic_write_text, check_output_file, molecule_file_stem
from ..preparation import prepare_smiles
from ..smiles import check_invalid_policy
from ..splits import split_rows
from . import (
    LEARNING_RATES,
    EncodedMolecules,
    FinetuneSettings,
    LabelledMolecules,
    check_targets,
)
from .ensemble import FinetunedModel, Predictions, finetune_ensemble, load_finetuned, save_finetuned
from .reliability import evaluate_uncertainty, plot_reliability

logger = logging.getLogger(__name__)

REPORT_FILE, RELIABILITY_FILE = "finetune.json", "reliability.png"
CHECKPOINT_FOLDER = "checkpoints"  # in the output folder while a run is under way


ALMOST_BINARY = 0.9  # share of 0/1 labels above which other values are taken for typos


def infer_task_type(y: np.ndarray, targets: list[str] | None = None, where: str = "") -> str:
    """classification when every label is 0 or 1, regression otherwise. A column that is
    almost all 0/1 (over 90% of its labels) with a few other values is a data error, not a
    regression target: InputError naming the first odd label's line (pass the task type to
    train anyway)."""
    for t in range(y.shape[1]):
        labels = y[:, t]
        labelled = ~np.isnan(labels)
        binary = np.isin(labels, (0.0, 1.0))
        if binary[labelled].all() or binary[labelled].mean() <= ALMOST_BINARY:
            continue
        row = int(np.flatnonzero(labelled & ~binary)[0])
        name = targets[t] if targets else f"target {t}"
        raise InputError(
            f"{where + ': ' if where else ''}line {row + 2}: label {labels[row]:g} in {name!r}, "
            f"whose other labels are {binary[labelled].mean():.0%} 0/1; fix it, or pass "
            "--task regression (or classification) to say what the column is"
        )
    labels = y[~np.isnan(y)]
    return "classification" if np.isin(labels, (0.0, 1.0)).all() else "regression"


def finetune_table(
    path: str | Path,
    targets: list[str],
    out: str | Path,
    smiles_column: str | None = None,
    task_type: str = "auto",
    model=None,
    settings: FinetuneSettings | None = None,
    learning_rates=LEARNING_RATES,
    uncertainty: UncertaintySettings | None = None,
    split: str = "scaffold",
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    device=None,
    overwrite: bool = False,
    invalid: str = "raise",
    jobs: int = 1,
    resume: bool = False,
) -> dict:
    """Fine-tune on the SMILES and target columns of a CSV/TSV file; save the model with the
    best validation metric (over ``learning_rates``) in ``out``, with a report (finetune.json)
    holding the validation metric of every rate and the test metric of the one kept.
    ``uncertainty``: the ensemble's size, the intervals' coverage and the domain's quantile
    (see `exlm_chem.finetuning.ensemble`); the model folder keeps every member, the
    calibration and the domain, and a reliability plot (reliability.png) on the test part.

    The rows are split once (``split``, ``settings.seed``) into train, validation (early
    stopping and the learning rate) and test (reported only; ``test_fraction=0`` keeps none).
    An invalid SMILES raises InputError naming its line (``invalid="raise"``), or is left out
    (``"skip"``).

    While it runs, each rate's run keeps a checkpoint in ``out/checkpoints`` (removed at the
    end); ``resume`` continues a stopped call from them, with the same data and settings.
    """
    settings = settings or FinetuneSettings()
    uncertainty = uncertainty or UncertaintySettings()
    check_invalid_policy(invalid, ("raise", "skip"))
    path, out = Path(path), Path(out)
    checkpoints = prepare_output_folder(out, overwrite, resume)
    smiles, y = read_labelled_table(path, targets, smiles_column)
    if task_type == "auto":
        task_type = infer_task_type(y, targets, str(path))
    check_targets(y, task_type, targets, str(path))
    base = load_model(model, device)
    start = time.perf_counter()
    encoded, kept = encode_rows(path, smiles, base.tokenizer, invalid)
    smiles, y = [smiles[i] for i in kept], y[kept]
    parts = split_rows(smiles, split, settings.seed, valid_fraction, test_fraction)
    whole = LabelledMolecules(encoded, y, smiles)
    train, valid, test = (whole.subset(rows) for rows in parts)
    if len(train.molecules) == 0 or len(valid.molecules) == 0:
        raise InputError(f"{path}: too few molecules ({len(smiles)}) to split off validation data")
    check_targets(train.y, task_type, targets, f"{path} (training part of the split)")
    logger.info(
        "%s: %d molecules, %s on %s; %d train / %d validation / %d test (%s split, seed %d)",
        path,
        len(smiles),
        task_type,
        ", ".join(targets),
        len(train.molecules),
        len(valid.molecules),
        len(test.molecules),
        split,
        settings.seed,
    )
    try:
        fitted, best, runs, members = finetune_ensemble(
            base, train, valid, task_type, settings, uncertainty, learning_rates, targets,
            device, jobs, checkpoints, train_ids=[f"line {kept[i] + 2}" for i in parts[0]],
            valid_ids=[f"line {kept[i] + 2}" for i in parts[1]],
        )  # fmt: skip
    except TrainingFailed:
        shutil.rmtree(checkpoints, ignore_errors=True)  # nothing to resume: no rate trains
        raise
    # Scored on the test part, or (without one) the validation part the calibration saw
    # (and, calibrated on folds, the members trained on).
    held_out, held_out_name = (test, "test") if len(test.molecules) else (valid, "validation")
    predictions = fitted.predict(held_out.molecules, held_out.smiles, settings.precision)
    test_score, single_test_score = scores_on_test(fitted.task_type, test, predictions)
    metric = metric_name(task_type)
    report = dict(
        data=str(path),
        targets=targets,
        task_type=task_type,
        molecules=len(smiles),
        split=dict(
            kind=split,
            seed=settings.seed,
            train=len(train.molecules),
            valid=len(valid.molecules),
            test=len(test.molecules),
        ),
        settings=asdict(replace(settings, learning_rate=best.settings.learning_rate)),
        runs_by_learning_rate={str(rate): run for rate, run in runs.items()},
        chosen=best.summary(),
        metric=metric,
        valid_score=best.valid_score if best.selection == metric else None,
        test_score=test_score,
        ensemble=dict(
            members=members,
            single_member_test_score=single_test_score,
            coverage=uncertainty.coverage,
            calibration=uncertainty.calibration,
            domain_threshold=fitted.domain.threshold if fitted.domain else None,
        ),
        uncertainty=dict(
            part=held_out_name, **evaluate_uncertainty(task_type, held_out.y, predictions)
        ),
        hardware=describe_hardware(next(best.predictor.parameters()).device),
        seconds=round(time.perf_counter() - start, 1),
    )
    save_finetuned(fitted, out, about=dict(trained_on=str(path), metric=metric))
    plot_reliability(
        task_type, held_out.y, predictions, out / RELIABILITY_FILE,
        f"{path.name}, {held_out_name} part ({len(held_out.molecules)} molecules)",
    )  # fmt: skip
    atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=2))
    shutil.rmtree(checkpoints)
    return report


def prepare_output_folder(out: Path, overwrite: bool, resume: bool) -> Path:
    """Check what ``out`` holds against ``overwrite`` and ``resume``; its checkpoint folder."""
    checkpoints = out / CHECKPOINT_FOLDER
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    holds_files = out.is_dir() and any(out.iterdir())
    if holds_files and not (overwrite or resume):
        stopped = checkpoints.is_dir()
        raise InputError(
            f"{out}: already exists; pass "
            + ("--resume to continue the run stopped there, or " if stopped else "")
            + "--overwrite to replace what is in it"
        )
    if resume and holds_files and not checkpoints.is_dir():
        raise InputError(
            f"{out}: holds no stopped run to resume (no {CHECKPOINT_FOLDER} folder); pass "
            "--overwrite to replace what is in it"
        )
    if overwrite and not resume and checkpoints.is_dir():
        shutil.rmtree(checkpoints)
    return checkpoints


def encode_rows(path: Path, smiles: list[str], tokenizer, invalid: str):
    """The table's molecules encoded once, and the rows kept: an invalid SMILES raises
    InputError naming its line (``invalid="raise"``) or is left out with a warning."""
    prepared = prepare_smiles(smiles, tokenizer)
    rejected = [i for i, tokens in enumerate(prepared.tokens) if tokens is None]
    if rejected and invalid == "raise":
        i = rejected[0]
        raise InputError(
            f"{path}: line {i + 2}: invalid SMILES ({prepared.errors[i]}): {smiles[i]!r}; "
            "pass --skip-invalid to leave such rows out"
        )
    if rejected:
        shown = ", ".join(str(i + 2) for i in rejected[:15]) + " ..." * (len(rejected) > 15)
        logger.warning("%s: %d invalid SMILES left out (lines %s)", path, len(rejected), shown)
    kept = [i for i, tokens in enumerate(prepared.tokens) if tokens is not None]
    return EncodedMolecules.from_tokens([prepared.tokens[i] for i in kept], tokenizer), kept


def scores_on_test(task_type: str, test: LabelledMolecules, predictions: Predictions):
    """The ensemble's test metric and its first member's alone, from the predictions of the
    test part (None, None without one)."""
    if not len(test.molecules):
        return None, None
    y = np.nan_to_num(test.y)
    return tuple(
        score(task_type, y, test.w, values)
        for values in (predictions.value, predictions.first_member)
    )


def prediction_columns(fitted: FinetunedModel, predictions: Predictions) -> dict:
    """Per task: TASK (the ensemble's mean, or its calibrated probability of 1), TASK_std (the
    spread over members, for an ensemble), TASK_low and TASK_high (the regression interval);
    then the applicability domain: max_cosine, max_tanimoto, nearest_train (the training
    molecule with that Tanimoto: its line in the training file) and its SMILES, in_domain."""
    import pandas as pd

    columns = {}
    for t, task in enumerate(fitted.tasks):
        columns[task] = predictions.value[:, t]
        for suffix, values in (("std", predictions.spread), ("low", predictions.low)):
            if values is not None:
                columns[f"{task}_{suffix}"] = values[:, t]
        if predictions.high is not None:
            columns[f"{task}_high"] = predictions.high[:, t]
    sims = predictions.similarities
    if sims is not None:
        columns["max_cosine"], columns["max_tanimoto"] = sims.max_cosine, sims.max_tanimoto
        known = sims.nearest >= 0
        pick = lambda names: np.array(  # noqa: E731
            [names[i] if ok else "" for i, ok in zip(sims.nearest, known)], dtype=object
        )
        columns["nearest_train"] = pick(fitted.domain.train_ids)
        columns["nearest_train_smiles"] = pick(fitted.domain.train_smiles)
        columns["in_domain"] = pd.array(
            [bool(v) if ok else None for v, ok in zip(predictions.in_domain, known)],
            dtype="boolean",
        )
    return columns


def default_predictions_path(input_path: Path) -> Path:
    return input_path.with_name(f"{molecule_file_stem(input_path)}.predictions.csv")


PREDICTION_FORMATS = (".csv", ".tsv", ".parquet")


def predict_file(
    path: str | Path,
    model: str | Path,
    out: str | Path | None = None,
    smiles_column: str | None = None,
    id_column: str | None = None,
    device=None,
    precision: str = "auto",
    overwrite: bool = False,
    coverage: float | None = None,
) -> Path:
    """Write a table of predictions for every molecule of a file: id, smiles, the columns of
    `prediction_columns`, and ``error`` (why a row has no prediction). The output's name says
    its format: .csv, .tsv or .parquet. ``coverage``: of the regression intervals (default:
    the one the model was calibrated for)."""
    import pandas as pd

    path = Path(path)
    out = Path(out) if out is not None else default_predictions_path(path)
    if out.suffix.lower() not in PREDICTION_FORMATS:
        raise InputError(
            f"--output {out}: must end in {', '.join(PREDICTION_FORMATS)} (the format is "
            "taken from the name)"
        )
    check_output_file(out, inputs=[path], overwrite=overwrite)
    fitted = load_finetuned(model, device)
    try:
        fitted.check_coverage(coverage)
    except InputError as exc:
        raise InputError(f"--coverage {coverage}: {model}: {exc}") from None
    if fitted.calibration is None and fitted.domain is None:
        logger.warning(
            "%s: fine-tuned before ensembles, calibration and the applicability domain were "
            "saved; predictions come without spread, intervals or domain columns",
            model,
        )
    records = list(
        read_molecules(path, smiles_column=smiles_column, id_column=id_column, invalid="keep")
    )
    predictions, errors = fitted.predict_smiles([r.smiles for r in records], precision, coverage)
    errors = [record.error or error for record, error in zip(records, errors)]
    frame = pd.DataFrame({"id": [r.id for r in records], "smiles": [r.smiles for r in records]})
    predicted = np.array([e is None for e in errors])
    for name, column in prediction_columns(fitted, predictions).items():
        frame[name] = np.where(predicted, column, np.nan) if column.dtype == float else column
    frame["error"] = [e or "" for e in errors]
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, sep="\t" if out.suffix.lower() == ".tsv" else ",")
    failed = sum(e is not None for e in errors)
    if failed:
        logger.warning(
            "%s: %d of %d molecules have no prediction (see the error column)",
            out,
            failed,
            len(records),
        )
    return out
