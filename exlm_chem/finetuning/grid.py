"""Several fine-tuning runs: at once in worker processes (`finetune_each`), over a grid of
learning rates (`finetune_best_rate`), and the choice of a rate over several splits
(`choose_learning_rate`)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..environment import resolve_device
from ..errors import InputError, TrainingFailed
from ..finetune_settings import LEARNING_RATES
from ..model import ExLMModel
from ..parallel import map_in_order
from .data import LabelledMolecules
from .train import FinetuneResult, FinetuneSettings, finetune, is_better

logger = logging.getLogger(__name__)


def finetune_each(
    runs: list[tuple[ExLMModel, LabelledMolecules, LabelledMolecules, FinetuneSettings]],
    task_type: str,
    tasks: list[str] | None = None,
    device=None,
    jobs: int = 1,
    checkpoints: list[Path | None] | None = None,
) -> Iterator[FinetuneResult]:
    """`finetune` for each (model, train, valid, settings) of ``runs``, results in that order;
    ``checkpoints``: each run's checkpoint file (see `finetune`), or None.

    jobs: runs at a time, each in a worker process. On a CPU each worker gets its share of
    this process's threads: a small model's matrix products use two cores poorly, so on 2
    cores two runs on one thread each finish 1.2x sooner than the same runs one after the
    other on two (`benchmarks/speed/bench_finetune_jobs.py`), and the results equal those of runs on
    that many threads in this process. On a GPU every worker trains on the same device, which
    one run's small batches leave mostly idle between kernel launches (how many runs pay
    there is not measured yet). The predictors come back on ``device``."""
    if jobs < 1:
        raise InputError(f"jobs must be at least 1, not {jobs}")
    if not runs:
        return
    device = resolve_device(device) or next(runs[0][0].parameters()).device
    checkpoints = checkpoints or [None] * len(runs)
    if jobs == 1 or len(runs) < 2:
        for (model, train, valid, settings), checkpoint in zip(runs, checkpoints):
            yield finetune(model, train, valid, task_type, settings, tasks, device, checkpoint)
        return
    jobs = min(jobs, len(runs))
    # A GPU worker's thread only launches kernels and batches ids.
    threads = max(1, torch.get_num_threads() // jobs) if device.type == "cpu" else 1
    # A CPU copy of each model is what is pickled to the workers (the caller's stays put).
    on_cpu = {id(m): copy.deepcopy(m).cpu() for m, *_ in runs}
    work = [
        (on_cpu[id(model)], train, valid, settings, task_type, tasks, threads, str(device), path)
        for (model, train, valid, settings), path in zip(runs, checkpoints)
    ]
    for result in map_in_order(_finetune_in_worker, work, jobs, ahead=2):
        result.predictor.to(device)
        yield result


def _finetune_in_worker(work) -> FinetuneResult:
    """One run of `finetune_each` in a worker process; the predictor comes back on the CPU
    (a CUDA tensor cannot be pickled to another process without IPC handles that die with
    this one)."""
    model, train, valid, settings, task_type, tasks, threads, device, checkpoint = work
    torch.set_num_threads(threads)
    result = finetune(model, train, valid, task_type, settings, tasks, device, checkpoint)
    result.predictor.cpu()
    return result


def choose_learning_rate(valid_scores: dict[float, list[float]], selection: str) -> float:
    """The rate whose validation metric, averaged over splits, is best (the smaller rate on a
    tie). Pooling over splits matters: one split's validation set can hold a handful of
    positives."""
    means = {rate: float(np.nanmean(values)) for rate, values in sorted(valid_scores.items())}
    best = None
    for rate, value in means.items():
        if best is None or is_better(value, means[best], selection):
            best = rate
    return best


def finetune_best_rate(
    model: ExLMModel,
    train: LabelledMolecules,
    valid: LabelledMolecules,
    task_type: str,
    settings: FinetuneSettings | None = None,
    learning_rates=LEARNING_RATES,
    tasks: list[str] | None = None,
    device=None,
    jobs: int = 1,
    checkpoint_dir: Path | None = None,
) -> tuple[FinetuneResult, dict[float, dict]]:
    """Fine-tune at each learning rate (``jobs`` at a time, see `finetune_each`); the run with
    the best validation metric, and every run's summary by rate. With ``checkpoint_dir``, each
    rate's run keeps its checkpoint there (``lr-RATE.pt``) and continues from it."""
    settings = settings or FinetuneSettings()
    best, runs = None, {}
    grid = [(model, train, valid, replace(settings, learning_rate=rate)) for rate in learning_rates]
    checkpoints = None
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        checkpoints = [Path(checkpoint_dir) / f"lr-{rate:g}.pt" for rate in learning_rates]
    for result in finetune_each(grid, task_type, tasks, device, jobs, checkpoints):
        rate = result.settings.learning_rate
        runs[rate] = result.summary()
        if result.diverged:
            logger.warning(
                "learning rate %g: diverged (training loss not finite at epoch %d); skipped",
                rate,
                result.diverged_at,
            )
            continue
        logger.info(
            "learning rate %g: validation %s %.4f at epoch %d of %d (%.0f s)",
            rate,
            result.selection,
            result.valid_score,
            result.best_epoch,
            result.epochs_run,
            result.seconds,
        )
        if best is None or is_better(result.valid_score, best.valid_score, result.selection):
            best = result
    if best is None:
        raise TrainingFailed(
            f"every learning rate diverged ({', '.join(f'{r:g}' for r in learning_rates)}: the "
            "training loss was not finite); try smaller rates"
        )
    return best, runs
