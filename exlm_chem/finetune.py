"""Fine-tuning an encoder end to end on labelled molecules, and predicting with the result.

The protocol is the reference ExLM's for MoleculeNet (itself Uni-Mol's): the first ``<s>``
state through a RoBERTa classification head (or the mean of the token states through a linear
layer); dropout in the head and in the encoder; AdamW with a linear warm-up over 6% of the run,
then linear decay; gradient clipping; the validation metric after every epoch, training stopped
after ``patience`` epochs without improvement and the best validation weights kept. The
learning rate is chosen from a small grid on validation data (`finetune_best_rate`, or over
several splits with `choose_learning_rate`).

Targets may hold several tasks with missing labels (NaN): those entries get no loss, as
DeepChem's zero weights. Classes are balanced per task as DeepChem's ``BalancingTransformer``
does: each labelled example weighted by n / (2 x the size of its class), so that the positives
of a task with 3% of them count as much as its negatives.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .embedding import prepare_smiles
from .environment import resolve_device, resolve_precision
from .errors import InputError
from .metrics import score
from .model import ExLMModel
from .model.io import load_model_directory, save_model
from .outputs import atomic_path, atomic_write_text
from .training.config import learning_rate as scheduled_rate

logger = logging.getLogger(__name__)

HEADS = ("cls", "mean")  # cls: <s> state + RoBERTa head; mean: mean of token states + linear
TASK_TYPES = ("classification", "regression")
LEARNING_RATES = (3e-5, 1e-4, 3e-4, 1e-3)  # the default grid
HEAD_WEIGHTS_FILE, HEAD_CONFIG_FILE = "head.safetensors", "head.json"
HEAD_FORMAT = "exlm-chem prediction head"
PREDICT_BATCH = 128


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


# -- data ---------------------------------------------------------------------------------------


class EncodedMolecules:
    """Molecules tokenized once, as padded ids; batches are row slices."""

    def __init__(self, tokens: list[list[str]], tokenizer):
        self.ids, _ = tokenizer.encode_tokens_with_report(tokens)
        self.lengths = (self.ids != tokenizer.pad_id).sum(1)

    @classmethod
    def from_smiles(cls, smiles, tokenizer, canonicalize: bool = True, label=None):
        """Prepared as `embed` prepares them; an unreadable molecule raises InputError naming
        it by ``label(index)``."""
        smiles = list(smiles)
        prepared = prepare_smiles(smiles, tokenizer, canonicalize)
        for i, tokens in enumerate(prepared.tokens):
            if tokens is None:
                where = label(i) if label else f"index {i}"
                raise InputError(f"{where}: invalid SMILES ({prepared.errors[i]}): {smiles[i]!r}")
        return cls(prepared.tokens, tokenizer)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows) -> EncodedMolecules:
        part = object.__new__(EncodedMolecules)
        rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        part.ids, part.lengths = self.ids[rows], self.lengths[rows]
        return part

    def batch(self, rows) -> torch.Tensor:
        rows = torch.as_tensor(np.asarray(rows))
        return self.ids[rows, : int(self.lengths[rows].max())]


@dataclass
class LabelledMolecules:
    """Encoded molecules with their targets y (n, tasks), NaN where a label is missing."""

    molecules: EncodedMolecules
    y: np.ndarray

    def __post_init__(self):
        y = np.asarray(self.y, dtype=np.float64)
        self.y = y[:, None] if y.ndim == 1 else y
        if len(self.y) != len(self.molecules):
            raise InputError(f"{len(self.molecules)} molecules but {len(self.y)} rows of targets")

    @property
    def w(self) -> np.ndarray:
        """1 where labelled, 0 where missing: DeepChem's weights before balancing."""
        return (~np.isnan(self.y)).astype(np.float64)

    @classmethod
    def from_smiles(cls, smiles, y, tokenizer, canonicalize: bool = True, label=None):
        return cls(EncodedMolecules.from_smiles(smiles, tokenizer, canonicalize, label), y)


def check_targets(y: np.ndarray, task_type: str, tasks: list[str], where: str = "") -> None:
    """InputError unless every task has labels and, for classification, 0/1 labels of both
    classes."""
    if task_type not in TASK_TYPES:
        raise InputError(f"task type must be one of {', '.join(TASK_TYPES)}, not {task_type!r}")
    prefix = f"{where}: " if where else ""
    for t, task in enumerate(tasks):
        labelled = y[~np.isnan(y[:, t]), t]
        if len(labelled) == 0:
            raise InputError(f"{prefix}target {task!r} has no labels")
        if task_type == "classification":
            values = set(np.unique(labelled).tolist())
            if not values <= {0.0, 1.0}:
                raise InputError(
                    f"{prefix}target {task!r} is not 0/1 labels ({sorted(values)[:5]}); "
                    "use --task regression for continuous values"
                )
            if len(values) < 2:
                raise InputError(
                    f"{prefix}target {task!r} has a single class ({int(labelled[0])}): a "
                    "classifier needs examples of both"
                )


def balancing_weights(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per task, each labelled example weighted n / (2 n_class), as DeepChem's balancing."""
    out = np.zeros_like(w)
    for t in range(y.shape[1]):
        labelled = w[:, t] > 0
        n, positives = labelled.sum(), (labelled & (y[:, t] == 1)).sum()
        negatives = n - positives
        if positives and negatives:
            out[labelled & (y[:, t] == 1), t] = n / (2 * positives)
            out[labelled & (y[:, t] == 0), t] = n / (2 * negatives)
        else:
            out[labelled, t] = 1.0
    return out


# -- the model ----------------------------------------------------------------------------------


class RobertaHead(nn.Module):
    """RoBERTa's classification head on one state: dropout, dense, tanh, dropout, projection."""

    def __init__(self, hidden_size: int, outputs: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(x)))))


class LinearHead(nn.Module):
    """Dropout, then one linear layer."""

    def __init__(self, hidden_size: int, outputs: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(x))


class PropertyPredictor(nn.Module):
    """An ExLM model and a prediction head: padded ids (B, L) -> (B, tasks) logits
    (classification) or standardized values (regression); `outputs` turns them into
    probabilities or values in the targets' units."""

    def __init__(
        self,
        base: ExLMModel,
        head: str,
        tasks: list[str],
        task_type: str,
        dropout: float = 0.1,
    ):
        super().__init__()
        if head not in HEADS:
            raise InputError(f"head must be one of {', '.join(HEADS)}, not {head!r}")
        # Rebuilt with the fine-tuning dropout (pretraining runs without), weights copied in.
        self.base = ExLMModel(replace(base.config, dropout=dropout), base.tokenizer)
        self.base.load_state_dict(base.state_dict())
        head_class = RobertaHead if head == "cls" else LinearHead
        self.head = head_class(base.config.hidden_size, len(tasks), dropout)
        self.head.apply(ExLMModel._init_weights)  # normal(0, 0.02), as RoBERTa's heads
        self.register_buffer("target_mean", torch.zeros(len(tasks)))
        self.register_buffer("target_std", torch.ones(len(tasks)))
        self.head_kind, self.tasks, self.task_type = head, list(tasks), task_type
        self.dropout = dropout

    @property
    def tokenizer(self):
        return self.base.tokenizer

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.base.embed_states(ids, pooling=self.head_kind).pooled)

    def outputs(self, raw: torch.Tensor) -> torch.Tensor:
        raw = raw.float()
        if self.task_type == "classification":
            return torch.sigmoid(raw)
        return raw * self.target_std + self.target_mean


def predict_encoded(
    predictor: PropertyPredictor, molecules: EncodedMolecules, precision: str = "auto"
) -> np.ndarray:
    """Probabilities (classification) or values (regression), (n, tasks), in input order."""
    device = next(predictor.parameters()).device
    precision = resolve_precision(precision, device)
    order = np.argsort(molecules.lengths.numpy(), kind="stable")  # similar lengths together
    out = np.empty((len(molecules), len(predictor.tasks)), dtype=np.float64)
    was_training = predictor.training
    predictor.eval()
    with torch.inference_mode(), _autocast(device, precision):
        for start in range(0, len(order), PREDICT_BATCH):
            rows = order[start : start + PREDICT_BATCH]
            ids = molecules.batch(rows).to(device, non_blocking=True)
            out[rows] = predictor.outputs(predictor(ids)).cpu().numpy()
    predictor.train(was_training)
    return out


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# -- training -----------------------------------------------------------------------------------


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
) -> FinetuneResult:
    """Fine-tune a copy of ``model`` (left unchanged) with a new head on ``train``; the epoch
    with the best validation metric (ROC-AUC averaged over tasks, or RMSE) is kept.

    device: cpu, cuda, cuda:N or auto; None: where ``model`` is.
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
        parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    steps_per_epoch = math.ceil(len(train.molecules) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    selection = _selection(task_type, valid)
    rng = np.random.default_rng(settings.seed)
    best_value, best_state, best_epoch, step, history = None, None, 0, 0, []
    for epoch in range(1, settings.epochs + 1):
        epoch_loss = 0.0
        order = rng.permutation(len(train.molecules))
        for first in range(0, len(order), settings.batch_size):
            rows = order[first : first + settings.batch_size]
            ids = train.molecules.batch(rows).to(device, non_blocking=True)
            targets, weights = (t[rows].to(device) for t in (y_all, weight_all))
            labelled = labelled_all[rows].to(device)
            with _autocast(device, precision):
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
            epoch_loss += float(loss.detach()) * len(rows)
        value = _validation_value(predictor, valid, task_type, selection, precision)
        history.append(dict(epoch=epoch, train_loss=epoch_loss / len(train.molecules), valid=value))
        if is_better(value, best_value, selection):
            best_value, best_epoch = value, epoch
            best_state = {k: v.detach().clone() for k, v in predictor.state_dict().items()}
        elif epoch - best_epoch >= settings.patience:
            break
    predictor.load_state_dict(best_state)
    predictor.eval()
    return FinetuneResult(
        predictor,
        float(best_value),
        selection,
        best_epoch,
        len(history),
        time.perf_counter() - start,
        settings,
        history,
    )


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


def _validation_value(predictor, valid, task_type, selection, precision) -> float:
    prediction = predict_encoded(predictor, valid.molecules, precision)
    if selection != "loss":
        return score(task_type, np.nan_to_num(valid.y), valid.w, prediction)
    p = np.clip(prediction, 1e-7, 1 - 1e-7)
    y, labelled = np.nan_to_num(valid.y), valid.w > 0
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p))[labelled].mean())


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
) -> tuple[FinetuneResult, dict[float, dict]]:
    """Fine-tune at each learning rate; the run with the best validation metric, and every
    run's summary by rate."""
    settings = settings or FinetuneSettings()
    best, runs = None, {}
    for rate in learning_rates:
        result = finetune(
            model, train, valid, task_type, replace(settings, learning_rate=rate), tasks, device
        )
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


# -- saving and loading -------------------------------------------------------------------------


def save_predictor(predictor: PropertyPredictor, directory: str | Path, about: dict | None = None):
    """A normal model folder (loadable by `load_model` for embedding) plus the head:
    head.safetensors and head.json, all written atomically."""
    directory = Path(directory)
    save_model(predictor.base, directory)
    state = {
        f"head.{k}": v.detach().to("cpu", torch.float32).contiguous()
        for k, v in predictor.head.state_dict().items()
    }
    state["target_mean"] = predictor.target_mean.detach().cpu().float()
    state["target_std"] = predictor.target_std.detach().cpu().float()
    with atomic_path(directory / HEAD_WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    config = dict(
        format=HEAD_FORMAT,
        head=predictor.head_kind,
        task_type=predictor.task_type,
        tasks=predictor.tasks,
        dropout=predictor.dropout,
        **(about or {}),
    )
    atomic_write_text(directory / HEAD_CONFIG_FILE, json.dumps(config, indent=2, default=str))
    return directory


def load_predictor(directory: str | Path, device=None) -> PropertyPredictor:
    """A fine-tuned model folder written by `save_predictor` (safetensors only)."""
    directory = Path(directory)
    if directory.is_dir() and not (directory / HEAD_CONFIG_FILE).is_file():
        raise InputError(
            f"{directory}: a model without a prediction head ({HEAD_CONFIG_FILE} is missing); "
            "make one with exlm-chem finetune"
        )
    base = load_model_directory(directory)
    try:
        config = json.loads((directory / HEAD_CONFIG_FILE).read_text())
        if config.get("format") != HEAD_FORMAT:
            raise ValueError(f"format is {config.get('format')!r}")
        predictor = PropertyPredictor(
            base, config["head"], config["tasks"], config["task_type"], config["dropout"]
        )
        state = load_file(str(directory / HEAD_WEIGHTS_FILE))
        predictor.head.load_state_dict(
            {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
        )
        predictor.target_mean.copy_(state["target_mean"])
        predictor.target_std.copy_(state["target_std"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise InputError(f"{directory}: unreadable prediction head ({exc})") from None
    predictor.eval()
    device = resolve_device(device)
    return predictor.to(device) if device is not None else predictor


def predict_smiles(
    smiles, predictor: PropertyPredictor, precision: str = "auto", canonicalize: bool = True
) -> tuple[np.ndarray, list[str | None]]:
    """Predictions (n, tasks) for SMILES, NaN rows where a SMILES is invalid, and the reasons
    (None where valid)."""
    smiles = list(smiles)
    prepared = prepare_smiles(smiles, predictor.tokenizer, canonicalize)
    good = [i for i, tokens in enumerate(prepared.tokens) if tokens is not None]
    out = np.full((len(smiles), len(predictor.tasks)), np.nan)
    if good:
        encoded = EncodedMolecules([prepared.tokens[i] for i in good], predictor.tokenizer)
        out[good] = predict_encoded(predictor, encoded, precision)
    return out, prepared.errors
