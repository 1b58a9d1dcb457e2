"""A fine-tuned model that says how sure it is: an ensemble of runs, calibrated on the
validation part (`calibration`), with an applicability domain (`domain`).

The learning rate is chosen once, on validation, by the grid (`finetune_best_rate`); its best
run is the first member and the others train at that rate with seeds seed + 1, seed + 2, ...
(the same split); calibrated on folds, the members are trained on folds instead (`folds`).
The prediction is the members' mean (for classification, the sigmoid of the
mean logit, temperature-scaled); the spread is the standard deviation over members.

A folder holds the first member as any fine-tuned model folder (loadable by `load_model` for
embedding, by `load_predictor` alone), the others under ``members/K``, and beside them
``calibration.json`` and the domain's ``domain.safetensors`` / ``domain.json``. A folder
written before these existed loads as a one-member model without them.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError, TrainingFailed
from ..finetune_settings import (
    LEARNING_RATES,
    FinetuneSettings,
    UncertaintySettings,
    check_coverage,
)
from ..outputs import atomic_write_text
from ..preparation import prepare_smiles
from .calibration import Calibration, fit_calibration, sigmoid
from .data import EncodedMolecules, LabelledMolecules
from .domain import DOMAIN_CONFIG_FILE, DomainReference, Similarities, fit_domain
from .folds import finetune_fold_members
from .grid import finetune_best_rate, finetune_each
from .predictor import (
    HEAD_CONFIG_FILE,
    PropertyPredictor,
    load_predictor,
    predict_encoded,
    save_predictor,
)
from .train import FinetuneResult

logger = logging.getLogger(__name__)

MEMBERS_FOLDER, CALIBRATION_FILE = "members", "calibration.json"


@dataclass
class Predictions:
    """What a fine-tuned model says about n molecules, each array (n, tasks) unless noted."""

    value: np.ndarray  # the mean value, or the calibrated probability of 1
    spread: np.ndarray | None = None  # std over members (None: one member)
    low: np.ndarray | None = None  # regression interval (None: not calibrated)
    high: np.ndarray | None = None
    uncalibrated: np.ndarray | None = None  # classification: the probability before scaling
    similarities: Similarities | None = None  # (n,) each; None: no domain stored
    in_domain: np.ndarray | None = None  # (n,) bool
    first_member: np.ndarray | None = None  # the first member's own value or probability


@dataclass
class FinetunedModel:
    members: list[PropertyPredictor]
    calibration: Calibration | None = None
    domain: DomainReference | None = None

    @property
    def tasks(self) -> list[str]:
        return self.members[0].tasks

    @property
    def task_type(self) -> str:
        return self.members[0].task_type

    @property
    def tokenizer(self):
        return self.members[0].tokenizer

    def check_coverage(self, coverage: float | None) -> None:
        """InputError unless intervals at ``coverage`` (None: the default) can be drawn."""
        if coverage is None:
            return
        check_coverage(coverage)
        if self.task_type == "classification":
            raise InputError("a coverage is for regression intervals; this model classifies")
        if self.calibration is None:
            raise InputError(
                "no calibration in this model (fine-tuned before intervals existed); "
                "fine-tune it again for intervals"
            )

    def predict(
        self,
        molecules: EncodedMolecules,
        smiles: list[str] | None = None,
        precision: str = "auto",
        coverage: float | None = None,
    ) -> Predictions:
        """Predictions for encoded molecules; the domain needs their SMILES."""
        self.check_coverage(coverage)
        outputs, vectors = [], None
        for k, member in enumerate(self.members):
            if k == 0 and self.domain is not None and smiles is not None:
                values, vectors = predict_encoded(
                    member, molecules, precision, logits=True, vectors=True
                )
            else:
                values = predict_encoded(member, molecules, precision, logits=True)
            outputs.append(values)
        outputs = np.stack(outputs)
        result = self._combine(outputs, coverage)
        if vectors is not None:
            result.similarities = self.domain.similarities(vectors, smiles)
            result.in_domain = self.domain.in_domain(result.similarities)
        return result

    def _combine(self, outputs: np.ndarray, coverage: float | None) -> Predictions:
        several = len(outputs) > 1
        if self.task_type == "classification":
            mean_logit = outputs.mean(0)
            uncalibrated = sigmoid(mean_logit)
            if self.calibration is None:
                members = sigmoid(outputs)
                value = uncalibrated
            else:
                members = self.calibration.probabilities(outputs)
                value = self.calibration.probabilities(mean_logit)
            spread = members.std(0, ddof=1) if several else None
            first = sigmoid(outputs[0])  # as the run alone predicts: not calibrated
            return Predictions(value, spread, uncalibrated=uncalibrated, first_member=first)
        mean = outputs.mean(0)
        spread = outputs.std(0, ddof=1) if several else None
        low, high = (None, None)
        if self.calibration is not None:
            low, high = self.calibration.intervals(mean, spread, coverage)
        return Predictions(mean, spread, low, high, first_member=outputs[0])

    def predict_smiles(
        self, smiles, precision: str = "auto", coverage: float | None = None
    ) -> tuple[Predictions, list[str | None]]:
        """Predictions for SMILES (NaN rows where one is invalid) and the reasons (None where
        valid)."""
        smiles = list(smiles)
        prepared = prepare_smiles(smiles, self.tokenizer)
        good = [i for i, tokens in enumerate(prepared.tokens) if tokens is not None]
        if not good:
            nothing = np.full((len(smiles), len(self.tasks)), np.nan)
            return Predictions(nothing), prepared.errors
        encoded = EncodedMolecules.from_tokens([prepared.tokens[i] for i in good], self.tokenizer)
        kept = self.predict(encoded, [prepared.smiles[i] for i in good], precision, coverage)
        return _scatter(kept, good, len(smiles)), prepared.errors


def predict_smiles(
    smiles, predictor: PropertyPredictor, precision: str = "auto"
) -> tuple[np.ndarray, list[str | None]]:
    """One fine-tuned model's predictions (n, tasks) for SMILES, NaN rows where a SMILES is
    invalid, and the reasons (None where valid)."""
    predictions, errors = FinetunedModel([predictor]).predict_smiles(smiles, precision)
    return predictions.value, errors


def _scatter(kept: Predictions, rows: list[int], n: int) -> Predictions:
    """Predictions of the rows ``rows`` placed in n rows (NaN / False elsewhere)."""

    def place(a):
        if a is None:
            return None
        fill = False if a.dtype == bool else (-1 if a.dtype.kind == "i" else np.nan)
        out = np.full((n, *a.shape[1:]), fill, dtype=a.dtype if a.dtype.kind in "bi" else float)
        out[rows] = a
        return out

    sims = kept.similarities
    return Predictions(
        *(place(a) for a in (kept.value, kept.spread, kept.low, kept.high, kept.uncalibrated)),
        None if sims is None else Similarities(*(place(a) for a in vars(sims).values())),
        place(kept.in_domain),
        place(kept.first_member),
    )


def finetune_ensemble(
    model,
    train: LabelledMolecules,
    valid: LabelledMolecules,
    task_type: str,
    settings: FinetuneSettings | None = None,
    uncertainty: UncertaintySettings | None = None,
    learning_rates=LEARNING_RATES,
    tasks: list[str] | None = None,
    device=None,
    jobs: int = 1,
    checkpoint_dir: Path | None = None,
    train_ids: list | None = None,
    valid_ids: list | None = None,
) -> tuple[FinetunedModel, FinetuneResult, dict[float, dict], list[dict]]:
    """The grid's best run and ``uncertainty.members - 1`` more at its rate, calibrated on
    ``valid``; with the training and validation SMILES (``train.smiles``, ``valid.smiles``),
    the applicability domain too (``train_ids`` name its molecules). With calibration on
    folds, the members are trained on folds instead (`folds`) and the domain holds the
    validation molecules too (``valid_ids``). Returns the model, the grid's best run, every
    grid run's summary by rate and each member's summary."""
    settings, uncertainty = settings or FinetuneSettings(), uncertainty or UncertaintySettings()
    folds = uncertainty.calibration == "folds"
    if folds and (train.smiles is None or valid.smiles is None):
        raise InputError(
            "calibration on folds needs the molecules' SMILES (folds follow scaffolds)"
        )
    best, runs = finetune_best_rate(
        model, train, valid, task_type, settings, learning_rates, tasks, device, jobs,
        checkpoint_dir,
    )  # fmt: skip
    chosen = best.settings
    if folds:
        ids = list(range(len(train.y))) if train_ids is None else list(train_ids)
        ids += list(
            range(len(train.y), len(train.y) + len(valid.y)) if valid_ids is None else valid_ids
        )
        results, calibration, domain = finetune_fold_members(
            model, train, valid, task_type, replace(chosen, stop_epoch=best.best_epoch),
            uncertainty, tasks, device, jobs, checkpoint_dir, ids,
        )  # fmt: skip
        members = [r.predictor for r in results if not r.diverged]
        fitted = FinetunedModel(members, calibration, domain)
        return fitted, best, runs, [dict(seed=r.settings.seed, **r.summary()) for r in results]
    more = [
        (model, train, valid, replace(chosen, seed=chosen.seed + k))
        for k in range(1, uncertainty.members)
    ]
    checkpoints = None
    if checkpoint_dir is not None:
        checkpoints = [Path(checkpoint_dir) / f"member-{k}.pt" for k in range(1, len(more) + 1)]
    results = [best, *finetune_each(more, task_type, tasks, device, jobs, checkpoints)]
    trained = [r for r in results if not r.diverged]
    for r in results:
        if r.diverged:
            logger.warning("ensemble member with seed %d diverged; left out", r.settings.seed)
    if not trained:
        raise TrainingFailed("every ensemble member diverged; try smaller rates")
    members = [r.predictor for r in trained]
    fitted = calibrate(FinetunedModel(members), train, valid, uncertainty, train_ids)
    return fitted, best, runs, [dict(seed=r.settings.seed, **r.summary()) for r in results]


def calibrate(
    model: FinetunedModel,
    train: LabelledMolecules,
    valid: LabelledMolecules,
    uncertainty: UncertaintySettings,
    train_ids: list | None = None,
) -> FinetunedModel:
    """The model with its calibration and (when both parts carry SMILES) its domain."""
    outputs = np.stack([predict_encoded(m, valid.molecules, logits=True) for m in model.members])
    calibration = fit_calibration(model.task_type, valid.y, outputs, uncertainty.coverage)
    domain = None
    if train.smiles is not None and valid.smiles is not None:
        first = model.members[0]
        _, train_vectors = predict_encoded(first, train.molecules, vectors=True)
        _, valid_vectors = predict_encoded(first, valid.molecules, vectors=True)
        domain = fit_domain(
            train_vectors,
            train.smiles,
            train_ids if train_ids is not None else list(range(len(train.smiles))),
            valid_vectors,
            valid.smiles,
            uncertainty.domain_quantile,
        )
    return FinetunedModel(model.members, calibration, domain)


def save_finetuned(model: FinetunedModel, directory: str | Path, about: dict | None = None):
    """The first member as a fine-tuned model folder, the others in ``members/K``, the
    calibration and the domain beside them (each file written atomically)."""
    directory = Path(directory)
    about = dict(about or {}, ensemble=len(model.members))
    save_predictor(model.members[0], directory, about)
    shutil.rmtree(directory / MEMBERS_FOLDER, ignore_errors=True)
    for k, member in enumerate(model.members[1:], start=1):
        save_predictor(member, directory / MEMBERS_FOLDER / str(k))
    if model.calibration is not None:
        text = json.dumps(model.calibration.to_json())
        atomic_write_text(directory / CALIBRATION_FILE, text)
    if model.domain is not None:
        model.domain.save(directory)
    return directory


def load_finetuned(directory: str | Path, device=None) -> FinetunedModel:
    """A folder written by `save_finetuned` (or by `save_predictor`: one member, no
    calibration or domain)."""
    directory = Path(directory)
    first = load_predictor(directory, device)
    about = json.loads((directory / HEAD_CONFIG_FILE).read_text())
    members = [first] + [
        load_predictor(directory / MEMBERS_FOLDER / str(k), device)
        for k in range(1, int(about.get("ensemble", 1)))
    ]
    try:
        calibration = (
            Calibration.from_json(json.loads((directory / CALIBRATION_FILE).read_text()))
            if (directory / CALIBRATION_FILE).is_file()
            else None
        )
        domain = (
            DomainReference.load(directory) if (directory / DOMAIN_CONFIG_FILE).is_file() else None
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{directory}: unreadable calibration or domain ({exc})") from None
    return FinetunedModel(members, calibration, domain)
