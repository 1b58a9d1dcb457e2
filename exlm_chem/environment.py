"""The machine: where the shipped default model lives, devices and precision, memory tuning."""

from __future__ import annotations

import functools
import os
import platform
import re
import resource
import sys
from importlib.metadata import PackageNotFoundError, files, version
from pathlib import Path

from .errors import InputError


def import_deepchem_quietly() -> None:
    """Import DeepChem with its import-time warnings silenced (optional back-ends it lacks:
    TensorFlow, PyG...; descriptors it cannot normalize): users see our messages, and
    DeepChem's warnings after its import as they are."""
    import logging

    if "deepchem" in sys.modules:
        return
    quieted = logging.getLogger("deepchem")
    level = quieted.level
    quieted.setLevel(logging.ERROR)
    try:
        import deepchem  # noqa: F401
    finally:
        quieted.setLevel(level)


PACKAGED_MODELS_DIR = Path(__file__).parent / "weights"  # one folder per shipped model
DEFAULT_MODEL = "exlm-chem-v3"
DEFAULT_MODEL_DIR = PACKAGED_MODELS_DIR / DEFAULT_MODEL


def packaged_models() -> list[str]:
    """The names of the models shipped inside the package (``--model NAME`` selects one)."""
    return sorted(p.parent.name for p in PACKAGED_MODELS_DIR.glob("*/config.json"))


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
            build = (
                "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA GPU visible"
            )
            raise InputError(
                f"--device {device}: CUDA is not available here ({build}); use --device cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise InputError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return torch.device(text)


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AMX or AVX-512 BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("amx_bf16", "avx512_bf16"))


def resolve_precision(precision: str, device) -> str:
    """'auto' is bf16 where bf16 matrix maths is native (recent GPUs, CPUs with AMX or
    AVX-512 BF16)."""
    import torch

    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def describe_hardware(device) -> str:
    """The GPU's name, or the CPU's model and torch's thread count."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        "unknown CPU",
    )
    threads = torch.get_num_threads()
    return f"{model}, {threads} thread{'s' if threads > 1 else ''}"


@functools.cache
def _libc():
    """glibc's functions through ctypes, or None where the C library is not glibc."""
    import ctypes
    import ctypes.util

    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse between training steps (glibc only).

    By default glibc serves each allocation above 32 MB with a fresh mmap, so a step whose
    activations exceed that size pays page faults to zero new pages every time: about 9% of
    an ExLM ``small`` step, whose expanded batches have such activations, and nothing of the
    plain-MLM step of the same batch. Above 1 GB the allocations still get their own mapping.
    """
    libc = _libc()
    if libc:
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)  # trimming is left to release_free_memory


KERNEL_CACHE_CAPACITY = 64  # oneDNN kernels kept (its default: 1024)


def limit_kernel_cache() -> None:
    """Hold oneDNN's kernel cache to KERNEL_CACHE_CAPACITY entries, unless the environment sets
    ONEDNN_PRIMITIVE_CACHE_CAPACITY.

    bf16 matrix products on a CPU go through oneDNN, which builds a kernel for every new shape
    and keeps up to 1024 of them: a pretraining process grew by gigabytes of kernels.
    oneDNN reads the setting when it first builds a kernel, so this must run before any
    bf16 work in the process (`exlm-chem pretrain` calls it first thing).
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(KERNEL_CACHE_CAPACITY))


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc only).

    Batches of ever-changing shapes fragment glibc's heap, and resident memory keeps growing
    (7.5 GB after 20 minutes of the small ExLM preset). Trimming every few steps bounds it;
    trimming every step would bound it tighter but costs about a third of the speed.
    """
    libc = _libc()
    if libc:
        libc.malloc_trim(0)


ALLOCATOR_VARIABLE = "EXLM_CHEM_ALLOCATOR"  # set in a process restarted under mimalloc


def mimalloc_library() -> Path | None:
    """libmimalloc from the cmeel-mimalloc wheel (a dependency on Linux), or None."""
    try:
        installed = files("cmeel-mimalloc") or []
    except PackageNotFoundError:
        return None
    for file in installed:
        if re.fullmatch(r"libmimalloc\.so\.\d+", file.name):
            path = Path(file.locate())
            if path.is_file():
                return path
    return None


def restart_under_mimalloc() -> None:
    """Run this command again, in this process, with mimalloc in place of glibc's malloc.

    Batches of changing shapes fragment glibc's heap: over 300 steps of the `small` ExLM the
    peak resident memory was 2,002 MB under glibc's malloc and 1,510 MB under mimalloc, at
    1.08x the speed (benchmarks/speed/bench_pretrain_memory.py). A preloaded library takes effect
    only from a process's start, hence the restart (os.execve: same process id, arguments and
    environment). Returns, doing nothing, where mimalloc is not installed or not Linux, in
    the restarted process, and where this process was not started for the command in
    ``sys.argv`` (a command run from Python, as the tests do, must not replace its caller).
    """
    library = mimalloc_library()
    command = sys.argv[1:]
    started_for_command = bool(command) and sys.orig_argv[-len(command) :] == command
    restarted = bool(os.environ.get(ALLOCATOR_VARIABLE))
    if library is None or sys.platform != "linux" or restarted or not started_for_command:
        return
    preload = " ".join(filter(None, [str(library), os.environ.get("LD_PRELOAD")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(
        sys.executable,
        sys.orig_argv,
        {**os.environ, "LD_PRELOAD": preload, ALLOCATOR_VARIABLE: "mimalloc"},
    )


def allocator_in_use() -> str:
    """mimalloc where this process has it loaded, else the C library's malloc."""
    try:
        with open("/proc/self/maps") as maps:
            if "libmimalloc" in maps.read():
                return "mimalloc"
    except OSError:  # not Linux
        pass
    return "system malloc"


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


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
    default = (
        DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / "config.json").is_file() else "not installed yet"
    )
    return {
        "exlm-chem": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rdkit": _installed("rdkit"),
        "deepchem": _installed("deepchem"),
        "device": device,
        "cpu threads": str(torch.get_num_threads()),
        "cpu native bf16": "yes" if cpu_has_native_bf16() else "no",
        "pretrain allocator": "mimalloc" if mimalloc_library() else "system malloc",
        "default model": str(default),
    }
