"""Checkpoints: written atomically, the last few kept, read without running pickles."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from ..model import ExLMModel
from ..outputs import atomic_path
from .distributed import Distributed


@dataclass
class Counters:
    """How far a run is: saved in every checkpoint."""

    step: int = 0
    tokens: int = 0
    molecules: int = 0
    elapsed: float = 0.0  # seconds of training


def checkpoint_paths(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step-*.pt"))


def save_checkpoint(out: Path, state: dict, keep: int) -> Path:
    directory = out / "checkpoints"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{state['step']:09d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in checkpoint_paths(out)[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path) -> dict:
    """Our own checkpoint; read with torch's weights-only loader (no arbitrary pickles)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        # Not torch's advice to retry with weights_only=False: that would run the file's pickles.
        text = str(exc)
        detail = (
            text.partition("WeightsUnpickler error:")[2].partition("Check the documentation")[0]
            or text
        )
        detail = " ".join(detail.split())[:200]
        raise InputError(
            f"{path}: corrupt or not an exlm-chem checkpoint ({exc.__class__.__name__}: {detail}); "
            "delete it to resume from the one before"
        ) from None


def check_run_folder(out: Path, resume: bool, inputs: list[Path]) -> None:
    """Refuse, before any work, a run folder that cannot be written, one that holds a run
    (unless ``resume``), a resume with nothing to resume, and inputs that live inside it."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not out.exists() and not (parent.is_dir() and os.access(parent, os.W_OK)):
        raise InputError(
            f"{out}: cannot create the output folder ({parent} is missing or not writable)"
        )
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(f"{out}: output folder is not writable")
    for source in inputs:
        if out.resolve() in (Path(source).resolve(), *Path(source).resolve().parents):
            raise InputError(
                f"{source}: a corpus inside the run folder {out} could be overwritten; keep "
                "runs and data apart"
            )
    has_checkpoints = out.is_dir() and bool(checkpoint_paths(out))
    if resume and not has_checkpoints:
        raise InputError(
            f"{out}: --resume given but there is no checkpoint in {out / 'checkpoints'}"
        )
    if not resume and has_checkpoints:
        raise InputError(
            f"{out}: already holds a run; pass --resume to continue it or choose another --out"
        )


def restore(
    checkpoint: dict,
    model: ExLMModel,
    optimizer,
    dist: Distributed,
    out: Path,
    batch_settings: dict,
) -> tuple[Counters, dict]:
    """Load a checkpoint into the model and optimizer; the counters and this rank's position.

    ``batch_settings``: this run's (`PretrainConfig.batch_settings`); a checkpoint that was
    drawing other batches is refused, since a resumed run must repeat an uninterrupted one."""
    saved = checkpoint["model_config"]
    if saved != model.config.to_dict():
        differences = ", ".join(
            f"{key}: {saved.get(key)} vs {value}"
            for key, value in model.config.to_dict().items()
            if saved.get(key) != value
        )
        raise InputError(
            f"{out}: the checkpoint is of another model ({differences}); use the same --preset "
            "and options"
        )
    saved_batches = checkpoint.get("batch_settings", batch_settings)  # older checkpoints: none
    if saved_batches != batch_settings:
        differences = ", ".join(
            f"--{key.replace('_', '-')} {saved_batches.get(key)} (now {value})"
            for key, value in batch_settings.items()
            if saved_batches.get(key) != value
        )
        raise InputError(
            f"{out}: the run was started with {differences}; resume it with the same options"
        )
    if dist.world_size != len(checkpoint["data_position"]):
        raise InputError(
            f"{out}: the checkpoint was written by {len(checkpoint['data_position'])} "
            f"processes, not {dist.world_size}"
        )
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["torch_rng"])
    counters = Counters(
        checkpoint["step"], checkpoint["tokens"], checkpoint["molecules"], checkpoint["elapsed"]
    )
    return counters, checkpoint["data_position"][dist.rank]
