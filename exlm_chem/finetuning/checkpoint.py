"""A fine-tuning run's checkpoint: the weights, the best weights so far, AdamW's state, both
random generators and the run's progress, so that a run started again from it ends as the
uninterrupted run would. Written atomically; read without running pickles."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..model import model_fingerprint
from ..outputs import atomic_path
from ..training.checkpoints import load_checkpoint

# A checkpoint holds the weights three times over (current, best, and AdamW's two moments
# beside them): written after an epoch at most this often, and when the run ends.
CHECKPOINT_SECONDS = 60.0


@dataclass
class RunProgress:
    """How far a run is, besides its weights and generators."""

    best_value: float | None = None  # the best validation metric so far
    best_loss: float | None = None  # its validation loss (ties on the metric go to the lower)
    best_state: dict | None = None  # the weights that scored it
    best_epoch: int = 0
    improved_epoch: int = 0  # the last epoch the metric itself improved: patience counts from it
    step: int = 0
    history: list = field(default_factory=list)  # a dict per epoch
    seconds: float = 0.0  # of training, over every start of the run
    finished: bool = False


def run_identity(model, train, valid, task_type, tasks, settings) -> str:
    """A digest of everything a run's course depends on: a checkpoint is only continued by
    the run that wrote it."""
    digest = hashlib.sha256(
        json.dumps([model_fingerprint(model), task_type, tasks, asdict(settings)]).encode()
    )
    for part in (train, valid):
        digest.update(part.molecules.ids.numpy().tobytes())
        digest.update(np.ascontiguousarray(part.y).tobytes())
    return digest.hexdigest()


def read_run_state(path: Path, identity: str) -> dict | None:
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


def restore_run(saved: dict, predictor, optimizer, rng: np.random.Generator, device) -> RunProgress:
    """Load a checkpoint's weights and generators into the run; its progress."""
    predictor.load_state_dict(saved["predictor"])
    optimizer.load_state_dict(saved["optimizer"])
    rng.bit_generator.state = json.loads(saved["numpy_rng"])
    torch.set_rng_state(saved["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in saved:
        torch.cuda.set_rng_state(saved["cuda_rng"], device)
    progress = RunProgress(**{f.name: saved[f.name] for f in fields(RunProgress)})
    progress.best_state = {k: v.to(device) for k, v in progress.best_state.items()}
    return progress


def save_run(
    path: Path,
    identity: str,
    predictor,
    optimizer,
    rng: np.random.Generator,
    device,
    progress: RunProgress,
) -> None:
    """Write the run's state to ``path``."""
    state = dict(
        vars(progress),  # not asdict: that would deep-copy the best weights
        identity=identity,
        predictor=predictor.state_dict(),
        optimizer=optimizer.state_dict(),
        numpy_rng=json.dumps(rng.bit_generator.state),
        torch_rng=torch.get_rng_state(),
    )
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
