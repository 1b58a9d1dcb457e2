"""The fine-tuned model: an ExLM encoder with a prediction head; predicting, saving, loading."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..environment import resolve_device, resolve_precision
from ..errors import InputError
from ..finetune_settings import HEADS
from ..model import ExLMModel
from ..model.encoder import Dropout
from ..model.storage import load_model_directory, save_model, shipped_model_dir
from ..outputs import atomic_path, atomic_write_text
from .data import EncodedMolecules

# cls: the <s> state + RoBERTa head; mean: the last layer's token mean + linear; layers: every
# layer's token mean, averaged (the default frozen read-out) + linear.
HEAD_WEIGHTS_FILE, HEAD_CONFIG_FILE = "head.safetensors", "head.json"
HEAD_FORMAT = "exlm-chem prediction head"
PREDICT_BATCH = 128


class RobertaHead(nn.Module):
    """RoBERTa's classification head on one state: dropout, dense, tanh, dropout, projection."""

    def __init__(self, hidden_size: int, outputs: int, dropout: float):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(x)))))


class LinearHead(nn.Module):
    """Dropout, then one linear layer."""

    def __init__(self, hidden_size: int, outputs: int, dropout: float):
        super().__init__()
        self.dropout = Dropout(dropout)
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
        self.head.apply(ExLMModel.init_weights)  # normal(0, 0.02), as RoBERTa's heads
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
    predictor: PropertyPredictor,
    molecules: EncodedMolecules,
    precision: str = "auto",
    logits: bool = False,
    vectors: bool = False,
):
    """Probabilities (classification; logits with ``logits``) or values (regression),
    (n, tasks), in input order; with ``vectors``, also the (n, hidden) molecule vectors the
    head reads, from the same pass."""
    device = next(predictor.parameters()).device
    precision = resolve_precision(precision, device)
    order = np.argsort(molecules.lengths.numpy(), kind="stable")  # similar lengths together
    out = np.empty((len(molecules), len(predictor.tasks)), dtype=np.float64)
    hidden = predictor.base.config.hidden_size
    pooled_out = np.empty((len(molecules), hidden), dtype=np.float32) if vectors else None
    keep_logits = logits and predictor.task_type == "classification"
    was_training = predictor.training
    predictor.eval()
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, len(order), PREDICT_BATCH):
            rows = order[start : start + PREDICT_BATCH]
            ids = molecules.batch(rows).to(device, non_blocking=True)
            pooled = predictor.base.embed_states(ids, pooling=predictor.head_kind).pooled
            raw = predictor.head(pooled)
            out[rows] = (raw.float() if keep_logits else predictor.outputs(raw)).cpu().numpy()
            if vectors:
                pooled_out[rows] = pooled.float().cpu().numpy()
    predictor.train(was_training)
    return (out, pooled_out) if vectors else out


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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
    if shipped_model_dir(directory) is not None:
        raise InputError(
            f"{directory}: a shipped model, without a prediction head; make one with "
            f"exlm-chem finetune --model {directory}"
        )
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
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise InputError(f"{directory}: unreadable prediction head ({exc})") from None
    predictor.eval()
    device = resolve_device(device)
    return predictor.to(device) if device is not None else predictor
