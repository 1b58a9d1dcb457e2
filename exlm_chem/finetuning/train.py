"""The fine-tuning protocol: one run at one learning rate (`finetune`), several runs at once
(`finetune_each`), a grid of rates (`finetune_best_rate`), and the choice of a rate over
several splits (`choose_learning_rate`). A run given a checkpoint file saves its state there
as it goes and, started again, continues from it."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..environment import resolve_device, resolve_precision
from ..errors import InputError
from ..metrics import score
from ..model import ExLMModel, model_fingerprint
from ..outputs import atomic_path
from ..parallel import map_in_order
from ..training.batches import CHUNK_BATCHES
from ..training.checkpoints import load_checkpoint
from ..training.config import learning_rate as scheduled_rate
from .data import LabelledMolecules, balancing_weights, check_targets
from .predictor import HEADS, PropertyPredictor, autocast, predict_encoded

logger = logging.getLogger(__name__)

LEARNING_RATES = (3e-5, 1e-4, 3e-4, 1e-3)  # the default grid
# A checkpoint holds the weights three times over (current, best, and AdamW's two moments
# beside them): written after an epoch at most this often, and when the run ends.
CHECKPOINT_SECONDS = 60.0


@dataclass
class FinetuneSettings:
    """How one fine-tuning run trains (the learning rate is one value; grids live outside)."""

    head: str = "cls"
    learning_rate: float = 1e-4
    epochs: int = 60
    patience: int = 10  # epochs without a better validation metric before stopping
    batch_size: int = 32
    warmup: float = 0.06  # fraction of the planned run
    dropout: float = 0.1  # in the head and the encoder
    weight_decay: float = 0.01
    clip: float = 1.0  # gradient norm
    balance_classes: bool = True
    precision: str = "auto"  # auto: bf16 where the CPU or GPU has native bf16 matrix maths
    seed: int = 0

    def __post_init__(self):
        if self.head not in HEADS:
            raise InputError(f"head must be one of {', '.join(HEADS)}, not {self.head!r}")
        if not self.learning_rate > 0:
            raise InputError(f"learning rate must be positive, not {self.learning_rate}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.patience < 1:
            raise InputError(f"patience must be at least 1, not {self.patience}")
        if not (0 <= self.warmup < 1 and 0 <= self.dropout < 1):
            raise InputError("warmup and dropout must be in [0, 1)")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise InputError(f"precision must be auto, fp32 or bf16, not {self.precision!r}")


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

    def summary(self) -> dict:
        return dict(
            learning_rate=self.settings.learning_rate,
            valid_score=self.valid_score,
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
    if len(tasks) != train.y.shape[1] or valid.y.shape[1] != train.y.shape[1]:
        raise InputError(
            f"{len(tasks)} task names, {train.y.shape[1]} training and {valid.y.shape[1]} "
            "validation target columns: they must agree"
        )
    check_targets(train.y, task_type, tasks, "training data")
    if len(valid.molecules) == 0:
        raise InputError("fine-tuning needs validation molecules (early stopping reads them)")
    device = resolve_device(device) or next(model.parameters()).device
    precision = resolve_precision(settings.precision, device)
    start = time.perf_counter()
    identity = _run_identity(model, train, valid, task_type, tasks, settings) if checkpoint else ""
    saved = _read_run_state(Path(checkpoint), identity) if checkpoint else None
    torch.manual_seed(settings.seed)
    predictor = PropertyPredictor(model, settings.head, tasks, task_type, settings.dropout)
    predictor.to(device).train()

    w = train.w
    y = np.nan_to_num(train.y)
    if task_type == "regression":
        mean = np.array([train.y[w[:, t] > 0, t].mean() for t in range(len(tasks))])
        std = np.array([train.y[w[:, t] > 0, t].std() for t in range(len(tasks))])
        std = np.where(std > 0, std, 1.0)
        predictor.target_mean.copy_(torch.as_tensor(mean))
        predictor.target_std.copy_(torch.as_tensor(std))
        y = np.where(w > 0, (y - mean) / std, 0.0)
        loss_weights = w
    else:
        loss_weights = balancing_weights(train.y, w) if settings.balance_classes else w
    y_all = torch.as_tensor(y, dtype=torch.float32)
    weight_all = torch.as_tensor(loss_weights, dtype=torch.float32)
    labelled_all = torch.as_tensor(w, dtype=torch.float32)

    parameters = [*predictor.base.encoder.parameters(), *predictor.head.parameters()]
    optimizer = torch.optim.AdamW(
        parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True
    )
    steps_per_epoch = math.ceil(len(train.molecules) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    selection = _selection(task_type, valid)
    rng = np.random.default_rng(settings.seed)
    lengths = train.molecules.lengths.numpy()
    best_value, best_loss, best_state, best_epoch, step, history = None, None, None, 0, 0, []
    improved_epoch, earlier_seconds, finished = 0, 0.0, False
    seconds = 0.0  # of training, over every start of the run
    if saved is not None:
        predictor.load_state_dict(saved["predictor"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = json.loads(saved["numpy_rng"])
        torch.set_rng_state(saved["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        best_state = {k: v.to(device) for k, v in saved["best_state"].items()}
        best_value, best_loss, best_epoch = (
            saved["best_value"],
            saved["best_loss"],
            saved["best_epoch"],
        )
        improved_epoch, step, history = saved["improved_epoch"], saved["step"], saved["history"]
        earlier_seconds, finished = saved["seconds"], saved["finished"]
        seconds = earlier_seconds
        logger.info("%s: continuing from epoch %d", checkpoint, len(history) + 1)
    last_save = time.perf_counter()
    last_epoch = len(history) if finished else settings.epochs
    for epoch in range(len(history) + 1, last_epoch + 1):
        epoch_loss = torch.zeros((), device=device)  # read once per epoch: no sync per step
        for rows in length_bucketed_batches(lengths, settings.batch_size, rng):
            ids = train.molecules.batch(rows).to(device, non_blocking=True)
            targets, weights = (t[rows].to(device) for t in (y_all, weight_all))
            labelled = labelled_all[rows].to(device)
            with autocast(device, precision):
                raw = predictor(ids).float()
            if task_type == "classification":
                losses = F.binary_cross_entropy_with_logits(raw, targets, reduction="none")
            else:
                losses = (raw - targets) ** 2
            loss = (losses * weights).sum() / labelled.sum().clamp(min=1)
            for group in optimizer.param_groups:
                group["lr"] = scheduled_rate(
                    settings.learning_rate, settings.warmup, "linear", step / total_steps
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, settings.clip)
            optimizer.step()
            step += 1
            epoch_loss += loss.detach() * len(rows)
        value, valid_loss = _validation_values(predictor, valid, task_type, selection, precision)
        history.append(
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
        improved = is_better(value, best_value, selection)
        if improved or (value == best_value and valid_loss < best_loss):
            best_value, best_loss, best_epoch = value, valid_loss, epoch
            best_state = {k: v.detach().clone() for k, v in predictor.state_dict().items()}
        improved_epoch = epoch if improved else improved_epoch
        finished = epoch - improved_epoch >= settings.patience or epoch == settings.epochs
        seconds = earlier_seconds + time.perf_counter() - start
        if checkpoint and (finished or time.perf_counter() - last_save >= checkpoint_seconds):
            state = dict(
                identity=identity,
                predictor=predictor.state_dict(),
                optimizer=optimizer.state_dict(),
                numpy_rng=json.dumps(rng.bit_generator.state),
                torch_rng=torch.get_rng_state(),
                best_state=best_state,
                best_value=best_value,
                best_loss=best_loss,
                best_epoch=best_epoch,
                improved_epoch=improved_epoch,
                step=step,
                history=history,
                seconds=seconds,
                finished=finished,
            )
            if device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state(device)
            with atomic_path(checkpoint) as tmp:
                torch.save(state, tmp)
            last_save = time.perf_counter()
        if finished:
            break
    predictor.load_state_dict(best_state)
    predictor.eval()
    return FinetuneResult(
        predictor,
        float(best_value),
        selection,
        best_epoch,
        len(history),
        seconds,
        settings,
        history,
    )


def _run_identity(model, train, valid, task_type, tasks, settings) -> str:
    """A digest of everything a run's course depends on: a checkpoint is only continued by
    the run that wrote it."""
    digest = hashlib.sha256(
        json.dumps([model_fingerprint(model), task_type, tasks, asdict(settings)]).encode()
    )
    for part in (train, valid):
        digest.update(part.molecules.ids.numpy().tobytes())
        digest.update(np.ascontiguousarray(part.y).tobytes())
    return digest.hexdigest()


def _read_run_state(path: Path, identity: str) -> dict | None:
    """The state saved in ``path`` (None when there is none yet), if this run wrote it."""
    if not path.exists():
        return None
    saved = load_checkpoint(path)
    if not isinstance(saved, dict) or saved.get("identity") != identity:
        raise InputError(
            f"{path}: a checkpoint of another fine-tuning run (other model, data or settings); "
            "delete it to start this run afresh"
        )
    return saved


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
    other on two (`benchmarks/bench_finetune_jobs.py`), and the results equal those of runs on
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
    (`benchmarks/bench_finetune_batches.py`)."""
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
    return best, runs
