"""Where the shipped default model lives, and what this installation runs on."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .errors import InputError

DEFAULT_MODEL_DIR = Path(__file__).parent / "weights"


def default_model_dir() -> Path:
    """The default model shipped inside the package; InputError if this installation lacks it."""
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise InputError(
            f"the default model is missing from this installation ({DEFAULT_MODEL_DIR}): "
            "reinstall exlm-chem, or pass a model directory (--model DIR)"
        )
    return DEFAULT_MODEL_DIR


def resolve_device(device):
    """A torch.device from ``cpu``, ``cuda``, ``cuda:N``, ``auto`` (a GPU where there is one)
    or a torch.device; None stays None (the model's own device). InputError for anything else,
    or for a GPU this machine does not have."""
    import torch

    if device is None or isinstance(device, torch.device):
        return device
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise InputError(f"--device must be cpu, cuda, cuda:N or auto, not {device!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA GPU visible"
            raise InputError(f"--device {device}: CUDA is not available here ({build}); use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(text)


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AMX or AVX-512 BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("amx_bf16", "avx512_bf16"))


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def describe_environment() -> dict[str, str]:
    """Versions and devices, without importing the heavy libraries (DeepChem is slow to import)."""
    import torch

    from . import __version__

    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU)"
    else:
        device = "cpu (no CUDA GPU)"
    default = DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / "config.json").is_file() else "not installed yet"
    return {
        "exlm-chem": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rdkit": _installed("rdkit"),
        "deepchem": _installed("deepchem"),
        "device": device,
        "cpu threads": str(torch.get_num_threads()),
        "cpu native bf16": "yes" if cpu_has_native_bf16() else "no",
        "default model": str(default),
    }
