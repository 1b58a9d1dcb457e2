"""Model folders: safetensors weights, a JSON config and the tokenizer; saving and loading.

`load_model` is the one public way in: the shipped default model, a model folder, or a model
already loaded. Weights are read with safetensors only, never from a pickle.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..environment import PACKAGED_MODELS_DIR, default_model_dir, packaged_models, resolve_device
from ..errors import InputError
from ..outputs import atomic_path, atomic_write_text
from ..smiles import standardization
from ..tokenizer import SmilesTokenizer
from .config import ExLMConfig
from .exlm import ExLMModel

WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE = "model.safetensors", "config.json", "tokenizer.json"
FORMAT_NAME = "exlm-chem"


def load_model(
    model: ExLMModel | str | Path | None = None, device: str | torch.device | None = None
) -> ExLMModel:
    """The default model shipped inside the package (None), a shipped model by name
    (``exlm-chem-v1``), a model folder, or a loaded model, on ``device`` (cpu, cuda, cuda:N or
    auto; None keeps it where it is, the CPU for files).

    The tokenizer comes with it as ``model.tokenizer``; a folder's model is in eval mode. Each
    call for the default model returns a copy of its own: fine-tuning one leaves the next one
    as shipped.
    """
    device = resolve_device(device)
    if isinstance(model, ExLMModel):
        if model.tokenizer is None:
            raise InputError(
                "the model has no tokenizer attached; load it with exlm_chem.load_model"
            )
        return model.to(device) if device is not None else model
    if model is None:
        # The default model is read once per process; callers get copies.
        return copy.deepcopy(_load_default_model(str(device) if device is not None else None))
    return load_model_directory(shipped_model_dir(model) or model, device=device)


def shipped_model_dir(model: str | Path) -> Path | None:
    """The folder of a shipped model named ``model`` (``exlm-chem-v1``), or None when
    ``model`` is not one's name or a path of that name exists (a folder of the user's)."""
    if not Path(model).exists() and str(model) in packaged_models():
        return PACKAGED_MODELS_DIR / str(model)
    return None


@lru_cache(maxsize=2)
def _load_default_model(device: str | None) -> ExLMModel:
    return load_model_directory(default_model_dir(), device=device)


def save_model(
    model: ExLMModel,
    directory: str | Path,
    tokenizer: SmilesTokenizer | None = None,
    dtype=torch.float32,
) -> Path:
    """Write safetensors weights, a JSON config and the tokenizer into ``directory``
    (atomically)."""
    tokenizer = tokenizer or model.tokenizer
    if tokenizer is None:
        raise InputError("save_model needs the tokenizer the model was trained with")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        name: tensor.detach().to("cpu", dtype).contiguous()
        for name, tensor in model.state_dict().items()
    }
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    tokenizer.save(directory / TOKENIZER_FILE)
    config = {
        "format": FORMAT_NAME,
        "format_version": 1,
        "dtype": str(dtype).removeprefix("torch."),
        "config": model.config.to_dict(),
        "input": standardization(tokenizer.reads_stereo),
    }
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=2))
    return directory


def model_tokenizer_path(model: str | Path | None = None) -> Path:
    """The tokenizer file of a model folder, a shipped model by name, or (None) the default
    model, without loading the model."""
    if model is None:
        return default_model_dir() / TOKENIZER_FILE
    model = shipped_model_dir(model) or model
    if not (Path(model) / TOKENIZER_FILE).is_file():
        shipped = ", ".join(packaged_models())
        raise InputError(
            f"--model {model}: not a model folder (no {TOKENIZER_FILE}) nor a shipped model "
            f"({shipped})"
        )
    return Path(model) / TOKENIZER_FILE


def load_model_directory(
    directory: str | Path, device: str | torch.device | None = None
) -> ExLMModel:
    """Read a model directory written by `save_model`; the tokenizer is at ``model.tokenizer``.

    Weights are read with safetensors only (never a pickle); a missing, truncated or
    mismatched file raises InputError naming it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        shipped = ", ".join(packaged_models())
        raise InputError(
            f"{directory}: not a model directory (no such folder) nor a shipped model ({shipped})"
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
        if not (directory / name).is_file():
            raise InputError(f"{directory}: not a model directory ({name} is missing)")
    try:
        meta = json.loads((directory / CONFIG_FILE).read_text())
        if meta.get("format") != FORMAT_NAME:
            raise ValueError(f"format is {meta.get('format')!r}, not {FORMAT_NAME!r}")
        config = ExLMConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{directory / CONFIG_FILE}: not an exlm-chem model config ({exc})"
        ) from None
    tokenizer = SmilesTokenizer.load(directory / TOKENIZER_FILE)
    if tokenizer.vocab_size != config.vocab_size:
        raise InputError(
            f"{directory}: the tokenizer has {tokenizer.vocab_size} tokens but the config says "
            f"{config.vocab_size}"
        )
    weights_path = directory / WEIGHTS_FILE
    try:
        with safe_open(str(weights_path), "pt") as weights:
            stored = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{weights_path}: unreadable or truncated weights ({exc})") from None
    # Shapes from the file's header first: a config that does not match the weights (a
    # hidden_size of 65536, say) is refused before anything of its size is allocated.
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in ExLMModel(config).state_dict().items()}
    for name, shape in expected.items():
        if stored.get(name, shape) != shape:
            raise InputError(
                f"{directory}: the weights do not match the config ({name} is {stored[name]} "
                f"in {WEIGHTS_FILE}, {shape} by {CONFIG_FILE})"
            )
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{weights_path}: unreadable or truncated weights ({exc})") from None
    model = ExLMModel(config, tokenizer)
    # What outputs record as the model: a shipped model's name, else the folder.
    model.name = directory.name if directory.parent == PACKAGED_MODELS_DIR else str(directory)
    try:
        model.load_state_dict({name: tensor.float() for name, tensor in state.items()})
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(
            f"{directory / WEIGHTS_FILE}: weights do not match the config ({' '.join(first[:2])})"
        ) from None
    model.eval()
    return model.to(device) if device is not None else model


def model_fingerprint(model: ExLMModel) -> str:
    """A short hash of a model's weights and config: a cache key for featurized data."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update("".join(model.tokenizer.id_to_token).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_label(model: ExLMModel, width: int = 24) -> str:
    """The model's name (a shipped model's, or the folder it came from; the end of it) in
    characters safe in a file name: part of the featurizer's cache name."""
    label = re.sub(r"[^A-Za-z0-9.+-]+", "-", model.name or "in-memory").strip("-")
    return label[-width:].lstrip("-") or "model"
