"""The fine-tuning protocol for one run at one learning rate (`finetune`); several runs and
grids of rates are in `grid`. A run given a checkpoint file saves its state there as it goes
and, started again, continues from it."""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..environment import resolve_device, resolve_precision
from ..errors import InputError
from ..finetune_settings import FinetuneSettings
from ..metrics import score
from ..model import ExLMModel
from ..training.batches import CHUNK_BATCHES
from ..training.config import learning_rate as scheduled_rate
from .checkpoint import (
    CHECKPOINT_SECONDS,
    RunProgress,
    read_run_state,
    restore_run,
    run_identity,
    save_run,
)
from .data import LabelledMolecules, balancing_weights, check_targets
from .predictor import PropertyPredictor, autocast, predict_encoded

logger = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    predictor: PropertyPredictor  # with the best validation weights
    valid_score: float  # its validation ROC-AUC / RMSE (or loss where the metric is undefined)
    selection: str  # what picked the epoch: roc_auc, rmse or loss
    best_epoch: int
    epochs_run: int
    seconds: float
    settings: FinetuneSettings
    history: list[dict] = field(default_factory=list)
    # The epoch whose training loss was not finite (the run stopped there, with no model), or
    # None for a run that trained.
    diverged_at: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    def summary(self) -> dict:
        return dict(
            learning_rate=self.settings.learning_rate,
            valid_score=None if self.diverged else self.valid_score,
            diverged_at=self.diverged_at,
            selection=self.selection,
            best_epoch=self.best_epoch,
            epochs_run=self.epochs_run,
            seconds=round(self.seconds, 1),
        )


def finetune(
    model: ExLMModel,
    train: LabelledMolecules,
    valid: LabelledMolecules,
    task_type: str,
    settings: FinetuneSettings | None = None,
    tasks: list[str] | None = None,
    device=None,
    checkpoint: str | Path | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> FinetuneResult:
    """Fine-tune a copy of ``model`` (left unchanged) with a new head on ``train``; the epoch
    with the best validation metric (ROC-AUC averaged over tasks, or RMSE) is kept.

    device: cpu, cuda, cuda:N or auto; None: where ``model`` is.
    checkpoint: a file for the run's state, written (atomically) after an epoch at most every
    ``checkpoint_seconds`` and when the run ends. If it exists, the run continues from it and
    ends as the uninterrupted run would (a finished one returns at once); a checkpoint of
    another run (other model, data or settings) is refused. The caller deletes it when done.
    """
    settings = settings or FinetuneSettings()
    tasks = tasks or [f"task_{t}" for t in range(train.y.shape[1])]
    _check_data(train, valid, task_type, tasks)
    device = resolve_device(device) or next(model.parameters()).device
    precision = resolve_precision(settings.precision, device)
    start = time.perf_counter()
    identity = run_identity(model, train, valid, task_type, tasks, settings) if checkpoint else ""
    saved = read_run_state(Path(checkpoint), identity) if checkpoint else None
    torch.manual_seed(settings.seed)
    predictor = PropertyPredictor(model, settings.head, tasks, task_type, settings.dropout)
    predictor.to(device).train()

    targets = _training_targets(predictor, train, task_type, settings.balance_classes)

    parameters = [*predictor.base.encoder.parameters(), *predictor.head.parameters()]
    optimizer = torch.optim.AdamW(
        parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True
    )
    steps_per_epoch = math.ceil(len(train.molecules) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    selection = _selection(task_type, valid)
    rng = np.random.default_rng(settings.seed)
    lengths = train.molecules.lengths.numpy()
    run = RunProgress()
    if saved is not None:
        run = restore_run(saved, predictor, optimizer, rng, device)
        logger.info("%s: continuing from epoch %d", checkpoint, len(run.history) + 1)
    earlier_seconds, last_save = run.seconds, time.perf_counter()
    last_line = time.perf_counter()
    diverged_at = None  # the epoch whose training loss was not finite
    last_epoch = len(run.history) if run.finished else settings.epochs
    for epoch in range(len(run.history) + 1, last_epoch + 1):
        batches = length_bucketed_batches(lengths, settings.batch_size, rng)
        epoch_loss = _train_epoch(
            predictor, optimizer, parameters, train, targets, batches, run, settings, total_steps,
            task_type, device, precision,
        )  # fmt: skip
        if not math.isfinite(float(epoch_loss)):  # diverged: a result, not an error
            run.seconds = earlier_seconds + time.perf_counter() - start
            diverged_at = epoch
            break
        value, valid_loss = _validation_values(predictor, valid, task_type, selection, precision)
        run.history.append(
            dict(
                epoch=epoch,
                train_loss=float(epoch_loss) / len(train.molecules),
                valid=value,
                valid_loss=valid_loss,
            )
        )
        # A small validation set's ROC-AUC saturates (often at 1.0) within a few epochs, while
        # the outputs are still near-constant; on a tie the lower validation loss wins, so the
        # run does not keep its earliest, least trained epoch. Patience counts from the last
        # gain in the metric itself.
        if settings.stop_epoch is None:
            _keep_if_best(run, predictor, epoch, value, valid_loss, selection)
            run.finished = (
                epoch - run.improved_epoch >= settings.patience or epoch == settings.epochs
            )
        else:  # a length fixed in advance: the validation part is watched, not chosen on
            run.finished = epoch == settings.stop_epoch
            if run.finished:
                _keep(run, predictor, epoch, value, valid_loss)
        run.seconds = earlier_seconds + time.perf_counter() - start
        # A line per epoch on a terminal; in a log the first, then one every 30 s.
        if sys.stderr.isatty() or epoch == 1 or time.perf_counter() - last_line >= 30:
            last_line = time.perf_counter()
            logger.info(
                "learning rate %g, epoch %d of at most %d: training loss %.4f, validation %s %.4f",
                settings.learning_rate, epoch, settings.epochs, run.history[-1]["train_loss"],
                selection, value,
            )  # fmt: skip
        if checkpoint and (run.finished or time.perf_counter() - last_save >= checkpoint_seconds):
            save_run(Path(checkpoint), identity, predictor, optimizer, rng, device, run)
            last_save = time.perf_counter()
        if run.finished:
            break
    if diverged_at is None and run.best_state is None:  # never a finite validation metric
        diverged_at = len(run.history)
    if diverged_at is not None:  # no model
        return FinetuneResult(
            None, math.nan, selection, 0, diverged_at, run.seconds, settings, run.history,
            diverged_at,
        )  # fmt: skip
    predictor.load_state_dict(run.best_state)
    predictor.eval()
    return FinetuneResult(
        predictor,
        float(run.best_value),
        selection,
        run.best_epoch,
        len(run.history),
        run.seconds,
        settings,
        run.history,
    )


def _check_data(train, valid, task_type: str, tasks: list[str]) -> None:
    if len(tasks) != train.y.shape[1] or valid.y.shape[1] != train.y.shape[1]:
        raise InputError(
            f"{len(tasks)} task names, {train.y.shape[1]} training and {valid.y.shape[1]} "
            "validation target columns: they must agree"
        )
    check_targets(train.y, task_type, tasks, "training data")
    if len(valid.molecules) == 0:
        raise InputError("fine-tuning needs validation molecules (early stopping reads them)")


def _training_targets(predictor, train, task_type: str, balance_classes: bool) -> tuple:
    """(targets, loss weights, labelled) for every training row. Regression targets are
    standardized per task, and the predictor is given the scale to undo it."""
    w = train.w
    y = np.nan_to_num(train.y)
    if task_type == "regression":
        tasks = range(train.y.shape[1])
        mean = np.array([train.y[w[:, t] > 0, t].mean() for t in tasks])
        std = np.array([train.y[w[:, t] > 0, t].std() for t in tasks])
        std = np.where(std > 0, std, 1.0)
        predictor.target_mean.copy_(torch.as_tensor(mean))
        predictor.target_std.copy_(torch.as_tensor(std))
        y = np.where(w > 0, (y - mean) / std, 0.0)
        loss_weights = w
    else:
        loss_weights = balancing_weights(train.y, w) if balance_classes else w
    return tuple(torch.as_tensor(a, dtype=torch.float32) for a in (y, loss_weights, w))


def _train_epoch(
    predictor, optimizer, parameters, train, targets, batches, run, settings, total_steps,
    task_type, device, precision,
) -> torch.Tensor:  # fmt: skip
    """One epoch's steps; the training loss summed over its molecules (a device tensor, read
    once per epoch: no sync per step)."""
    y_all, weight_all, labelled_all = targets
    epoch_loss = torch.zeros((), device=device)
    for rows in batches:
        ids = train.molecules.batch(rows).to(device, non_blocking=True)
        y, weights = (t[rows].to(device) for t in (y_all, weight_all))
        labelled = labelled_all[rows].to(device)
        with autocast(device, precision):
            raw = predictor(ids).float()
        if task_type == "classification":
            losses = F.binary_cross_entropy_with_logits(raw, y, reduction="none")
        else:
            losses = (raw - y) ** 2
        loss = (losses * weights).sum() / labelled.sum().clamp(min=1)
        for group in optimizer.param_groups:
            group["lr"] = scheduled_rate(
                settings.learning_rate, settings.warmup, settings.schedule, run.step / total_steps
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, settings.clip)
        optimizer.step()
        run.step += 1
        epoch_loss += loss.detach() * len(rows)
    return epoch_loss


def _keep_if_best(run, predictor, epoch: int, value: float, valid_loss: float, selection: str):
    """Keeps the epoch's weights if its validation metric is the best so far."""
    improved = is_better(value, run.best_value, selection)
    if improved or (value == run.best_value and valid_loss < run.best_loss):
        _keep(run, predictor, epoch, value, valid_loss)
    run.improved_epoch = epoch if improved else run.improved_epoch


def _keep(run, predictor, epoch: int, value: float, valid_loss: float) -> None:
    run.best_value, run.best_loss, run.best_epoch = value, valid_loss, epoch
    run.best_state = {k: v.detach().clone() for k, v in predictor.state_dict().items()}


def length_bucketed_batches(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    chunk_batches: int = CHUNK_BATCHES,
) -> list[np.ndarray]:
    """One epoch's batches of row indices: a seeded permutation cut into chunks of
    ``chunk_batches`` batches, each chunk sorted by length and cut into batches, the batch
    order shuffled. A batch is padded to its longest molecule, and SMILES lengths have a long
    tail (MoleculeNet: mean 39 tokens, longest 128 and more), so batches of random rows are
    mostly padding; sorted chunks cut the tokens computed to less than half
    (`benchmarks/speed/bench_finetune_batches.py`)."""
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * chunk_batches):
        chunk = order[start : start + batch_size * chunk_batches]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _selection(task_type: str, valid: LabelledMolecules) -> str:
    """What the epochs are chosen by: ROC-AUC where some validation task has both classes,
    RMSE for regression, otherwise the validation loss."""
    if task_type == "regression":
        return "rmse"
    labelled = valid.w > 0
    for t in range(valid.y.shape[1]):
        if len(np.unique(valid.y[labelled[:, t], t])) == 2:
            return "roc_auc"
    return "loss"


def _validation_values(predictor, valid, task_type, selection, precision) -> tuple[float, float]:
    """The validation metric the epochs are chosen by, and the validation loss (mean binary
    cross-entropy over labelled entries; for regression the RMSE itself)."""
    prediction = predict_encoded(predictor, valid.molecules, precision)
    y, labelled = np.nan_to_num(valid.y), valid.w > 0
    if task_type == "regression":
        value = score(task_type, y, valid.w, prediction)
        return value, value
    p = np.clip(prediction, 1e-7, 1 - 1e-7)
    loss = float(-(y * np.log(p) + (1 - y) * np.log(1 - p))[labelled].mean())
    return (loss if selection == "loss" else score(task_type, y, valid.w, prediction)), loss


def is_better(a: float, b: float | None, selection: str) -> bool:
    """True when validation value ``a`` beats ``b`` (None: nothing to beat)."""
    if b is None or math.isnan(b):
        return not math.isnan(a)
    return a > b if selection == "roc_auc" else a < b
