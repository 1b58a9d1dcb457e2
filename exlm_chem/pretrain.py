"""Pretraining: corpus preparation, length-bucketed batches, the training loop, checkpoints, DDP.

    exlm-chem pretrain --corpus moses_train.csv.gz --out runs/small --max-time 2h
    torchrun --nproc_per_node 2 -m exlm_chem.pretrain --corpus ... --out ...

The corpus is read once, checked with RDKit and tokenized; the valid SMILES are kept in the run
folder as one flat byte array plus offsets, memory-mapped afterwards (the 1.6M-molecule ZINC
corpus takes about 80 MB). Every epoch is a seeded permutation: rank r of N takes every N-th
molecule of it, sorts chunks of it by length and cuts them into batches of at most
``batch_tokens`` padded tokens. Batches, masks and the learning rate are all functions of the
seed and the step, so a resumed run repeats exactly what an uninterrupted one would do.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import re
import resource
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .io import atomic_path, atomic_write_text, read_molecule_chunks
from .model import PRESETS, ExLMConfig, ExLMModel, save_model
from .model.config import OBJECTIVES
from .tokenizer import SmilesTokenizer, canonicalize_smiles, parse_smiles, randomize_smiles, tokenize_smiles

logger = logging.getLogger(__name__)

CHUNK_BATCHES = 50  # batches per length-sorted chunk: long enough to bucket, short enough to mix
VALIDATION_SEED = 12_345


@dataclass
class PretrainConfig:
    """Arguments of a pretraining run (the command-line flags, one for one)."""

    corpus: list[Path]
    out: Path
    objective: str = "exlm"
    preset: str = "small"
    k: int = 4
    max_steps: int | None = None
    max_tokens: int | None = None
    max_time: float | None = None  # seconds
    batch_tokens: int = 6144  # padded tokens per batch (before states expansion)
    grad_accum: int = 1
    lr: float = 1e-3
    warmup: float = 0.06  # fraction of the run
    schedule: str = "linear"  # or "poly" (power 2)
    weight_decay: float = 0.01
    clip: float = 1.0
    val_corpus: Path | None = None
    val_size: int = 5000
    val_every: int = 500
    log_every: int = 50
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    tokenizer: Path | None = None
    corpus_cache: Path | None = None  # where the prepared corpus is kept (default: OUT/corpus)
    smiles_column: str | None = None
    canonicalize: bool = False
    augment: bool = False  # randomized SMILES
    max_length: int = 128
    resume: bool = False
    seed: int = 0
    precision: str = "auto"
    threads: int | None = None
    model_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        self.corpus = [Path(p) for p in self.corpus]
        self.out = Path(self.out)
        self.val_corpus = Path(self.val_corpus) if self.val_corpus else None
        self.tokenizer = Path(self.tokenizer) if self.tokenizer else None
        self.corpus_cache = Path(self.corpus_cache) if self.corpus_cache else None
        if not (self.max_steps or self.max_tokens or self.max_time):
            raise InputError("give a budget: --max-steps, --max-tokens or --max-time")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise InputError(f"--precision must be auto, fp32 or bf16, not {self.precision!r}")
        if self.schedule not in ("linear", "poly"):
            raise InputError(f"--schedule must be linear or poly, not {self.schedule!r}")
        if self.batch_tokens < self.max_length:
            raise InputError(f"--batch-tokens must be at least --max-length ({self.max_length})")
        if not self.corpus:
            raise InputError("give at least one --corpus file")
        if self.objective not in OBJECTIVES:
            raise InputError(f"--objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")
        if self.preset not in PRESETS:
            raise InputError(f"--preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")

    def to_json(self) -> dict:
        return {key: (str(v) if isinstance(v, Path) else [str(p) for p in v] if key == "corpus" else v) for key, v in asdict(self).items()}


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '20m', '2h', '1h30m'."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise InputError(f"cannot read duration {text!r}: use e.g. 90s, 20m, 2h or 1h30m")
    return sum(float(value) * {"h": 3600, "m": 60, "s": 1}[unit] for value, unit in parts)


# -- distributed set-up ------------------------------------------------------------------------


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world_size > 1:
            torch.distributed.barrier()


def setup_distributed() -> Distributed:
    """Under torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPU; otherwise one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world_size == 1:
        return Distributed(device=torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    return Distributed(torch.distributed.get_rank(), world_size, device)


# -- corpus ------------------------------------------------------------------------------------


class PackedCorpus:
    """Valid SMILES as one byte array plus offsets, with their token counts (for bucketing)."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray):
        self.data, self.offsets, self.lengths = data, offsets, lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def smiles(self, indices: Sequence[int]) -> list[str]:
        data, offsets = self.data, self.offsets
        return [bytes(data[offsets[i] : offsets[i + 1]]).decode() for i in indices]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("data", "offsets", "lengths"):
            with atomic_path(directory / f"{name}.npy") as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, getattr(self, name))

    @classmethod
    def load(cls, directory: Path) -> PackedCorpus:
        arrays = [np.load(directory / f"{name}.npy", mmap_mode="r") for name in ("data", "offsets", "lengths")]
        return cls(*arrays)


@dataclass
class CorpusStats:
    read: int = 0
    kept: int = 0
    invalid_rdkit: int = 0
    untokenizable: int = 0
    empty: int = 0


def pack_corpus(paths: Sequence[Path], smiles_column: str | None, canonicalize: bool, limit: int | None = None) -> tuple[PackedCorpus, CorpusStats, list[str]]:
    """Read corpus files; keep SMILES that RDKit parses and the SMILES regex tokenizes.

    Returns the packed corpus, counts of what was skipped, and the distinct tokens seen.
    """
    stats = CorpusStats()
    chunks: list[bytes] = []
    lengths: list[int] = []
    vocabulary: set[str] = set()
    for path in paths:
        for chunk in read_molecule_chunks(path, smiles_column=smiles_column, errors="keep"):
            for record in chunk:
                stats.read += 1
                if record.error:
                    stats.empty += 1
                    continue
                smiles = record.smiles
                if parse_smiles(smiles) is None:
                    stats.invalid_rdkit += 1
                    continue
                if canonicalize:
                    smiles = canonicalize_smiles(smiles)
                try:
                    tokens = tokenize_smiles(smiles)
                except ValueError:
                    stats.untokenizable += 1
                    continue
                vocabulary.update(tokens)
                chunks.append(smiles.encode())
                lengths.append(len(tokens) + 2)
                if limit is not None and len(lengths) >= limit:
                    break
            if limit is not None and len(lengths) >= limit:
                break
    stats.kept = len(lengths)
    if not lengths:
        names = ", ".join(str(p) for p in paths)
        raise InputError(f"{names}: no valid SMILES (read {stats.read} records)")
    sizes = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    data = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    return PackedCorpus(data, offsets, np.asarray(lengths, dtype=np.int32)), stats, sorted(vocabulary)


def corpus_fingerprint(paths: Sequence[Path], **options) -> str:
    """Identifies a corpus and its preparation options, to reuse a prepared copy safely."""
    # By content, not by path and modification time: a copied or re-synced corpus is the same corpus.
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


# -- batches -----------------------------------------------------------------------------------


def epoch_batches(lengths: np.ndarray, epoch: int, seed: int, rank: int, world_size: int, batch_tokens: int) -> list[np.ndarray]:
    """The batches (arrays of corpus indices) of one rank in one epoch.

    A seeded permutation is split across ranks (disjoint), cut into chunks, each sorted by
    length and cut into batches of at most ``batch_tokens`` padded tokens; the batch order is
    then shuffled, so long and short batches alternate.
    """
    rng = np.random.default_rng([seed, epoch])
    mine = rng.permutation(len(lengths))[rank::world_size]
    typical = max(1, batch_tokens // max(1, int(np.median(lengths[mine[:1000]])) if len(mine) else 1))
    chunk_size = typical * CHUNK_BATCHES
    batches = []
    for start in range(0, len(mine), chunk_size):
        chunk = mine[start : start + chunk_size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        chunk_lengths = lengths[chunk]
        begin = 0
        while begin < len(chunk):
            end = begin + 1
            # Sorted ascending, so the padded size of [begin, end) is (end - begin) * length[end - 1].
            while end < len(chunk) and (end + 1 - begin) * chunk_lengths[end] <= batch_tokens:
                end += 1
            batches.append(chunk[begin:end])
            begin = end
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


class BatchStream:
    """Endless batches for one rank, from a position (epoch, batch index) that can be saved."""

    def __init__(self, corpus: PackedCorpus, config: PretrainConfig, dist: Distributed, epoch: int = 0, index: int = 0):
        self.corpus, self.config, self.dist = corpus, config, dist
        self.epoch, self.index = epoch, index
        self._batches = None

    def position(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        c = self.config
        if self._batches is None:
            self._batches = epoch_batches(self.corpus.lengths, self.epoch, c.seed, self.dist.rank, self.dist.world_size, c.batch_tokens)
        if self.index >= len(self._batches):
            self.epoch, self.index, self._batches = self.epoch + 1, 0, None
            return next(self)
        indices = self._batches[self.index]
        self.index += 1
        smiles = self.corpus.smiles(indices)
        if c.augment:
            # Seeded by position, so a resumed run sees the same random SMILES.
            base = (c.seed * 1_000_003 + self.epoch * 7919 + self.index) % (2**31 - 1000)
            smiles = [randomize_smiles(s, seed=base + j) for j, s in enumerate(smiles)]
        return smiles


# -- schedule, precision, checkpoints -------------------------------------------------------------


def learning_rate(config: PretrainConfig, progress: float) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then linear or polynomial decay to 0."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < config.warmup:
        return config.lr * progress / config.warmup
    remaining = (1.0 - progress) / (1.0 - config.warmup)
    return config.lr * (remaining if config.schedule == "linear" else remaining**2)


def run_progress(config: PretrainConfig, step: int, tokens: int, elapsed: float) -> float:
    """How far through its budget the run is: the largest of the step, token and time fractions."""
    fractions = [0.0]
    if config.max_steps:
        fractions.append(step / config.max_steps)
    if config.max_tokens:
        fractions.append(tokens / config.max_tokens)
    if config.max_time:
        fractions.append(elapsed / config.max_time)
    return max(fractions)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 where bf16 matrix maths is native (recent GPUs, CPUs with AMX/AVX-512 BF16)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    from .environment import cpu_has_native_bf16

    return "bf16" if cpu_has_native_bf16() else "fp32"


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
        detail = text.partition("WeightsUnpickler error:")[2].partition("Check the documentation")[0] or text
        detail = " ".join(detail.split())[:200]
        raise InputError(
            f"{path}: corrupt or not an exlm-chem checkpoint ({exc.__class__.__name__}: {detail}); "
            "delete it to resume from the one before"
        ) from None


def describe_hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    return f"{model}, {torch.get_num_threads()} threads"


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


TRIM_EVERY = 10  # steps


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse between steps (glibc only).

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


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc only).

    Batches of ever-changing shapes fragment glibc's heap, and resident memory keeps growing
    (7.5 GB after 20 minutes of the small ExLM preset). Trimming every few steps bounds it;
    trimming every step would bound it tighter but costs about a third of the speed.
    """
    libc = _libc()
    if libc:
        libc.malloc_trim(0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# -- the run -----------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    model: ExLMModel
    step: int
    tokens: int
    elapsed: float
    out: Path
    last_metrics: dict
    rank: int = 0
    stopped: bool = False  # stopped early on SIGTERM / Ctrl-C, with a checkpoint to resume from


class StopSignal:
    """SIGTERM (a scheduler's preemption, ``kill``) or Ctrl-C asks the run to stop after the
    current step, with a checkpoint; a second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _rank0_view(progress: float, stop: bool, dist: Distributed) -> tuple[float, bool]:
    """Rank 0's progress and stop request: every rank takes the same learning rate and stops
    at the same step, whatever its own clock says."""
    if dist.world_size == 1:
        return progress, stop
    shared = torch.tensor([progress, float(stop)], dtype=torch.float64, device=dist.device)
    torch.distributed.broadcast(shared, 0)
    return float(shared[0]), bool(shared[1])


def _prepare_output(config: PretrainConfig) -> None:
    out = config.out
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not out.exists() and not (parent.is_dir() and os.access(parent, os.W_OK)):
        raise InputError(f"{out}: cannot create the output folder ({parent} is missing or not writable)")
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(f"{out}: output folder is not writable")
    for source in config.corpus + ([config.val_corpus] if config.val_corpus else []):
        if out.resolve() in Path(source).resolve().parents:
            raise InputError(f"{source}: a corpus inside the run folder {out} could be overwritten; keep runs and data apart")
    has_checkpoints = out.is_dir() and bool(checkpoint_paths(out))
    if config.resume and not has_checkpoints:
        raise InputError(f"{out}: --resume given but there is no checkpoint in {out / 'checkpoints'}")
    if not config.resume and has_checkpoints:
        raise InputError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")


def _prepare_data(config: PretrainConfig, dist: Distributed):
    """Pack the training and validation corpora (rank 0, once, in the corpus cache) and fix the tokenizer."""
    for path in config.corpus + ([config.val_corpus] if config.val_corpus else []):
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: file is empty")
    data_dir = config.corpus_cache or config.out / "corpus"
    key = corpus_fingerprint(config.corpus, column=config.smiles_column, canonicalize=config.canonicalize)
    if config.val_corpus is not None:
        train_dir = data_dir / f"train-{key}"
        val_key = corpus_fingerprint([config.val_corpus], column=config.smiles_column, canonicalize=config.canonicalize, size=config.val_size)
        val_dir = data_dir / f"validation-{val_key}"
    else:  # the validation molecules are held out of the training set
        train_dir = data_dir / f"train-{key}-without-{config.seed}-{config.val_size}"
        val_dir = data_dir / f"validation-{key}-holdout-{config.seed}-{config.val_size}"
    if dist.is_main:
        if not (train_dir / "stats.json").exists():  # written last: the preparation finished
            logger.info("preparing the corpus (RDKit check and tokenization, once)")
            corpus, stats, vocabulary = pack_corpus(config.corpus, config.smiles_column, config.canonicalize)
            if config.val_corpus is None:
                rng = np.random.default_rng(config.seed)
                held = np.zeros(len(corpus), dtype=bool)
                held[rng.choice(len(corpus), size=min(config.val_size, len(corpus) // 10), replace=False)] = True
                _subset(corpus, np.flatnonzero(held)).save(val_dir)
                corpus = _subset(corpus, np.flatnonzero(~held))
            corpus.save(train_dir)
            atomic_write_text(train_dir / "stats.json", json.dumps({**asdict(stats), "vocabulary": vocabulary}))
        if not (val_dir / "lengths.npy").exists():
            validation, _, _ = pack_corpus([config.val_corpus], config.smiles_column, config.canonicalize, limit=config.val_size)
            validation.save(val_dir)
        tokenizer_path = config.out / "tokenizer.json"
        if not tokenizer_path.exists():
            if config.tokenizer is not None:
                tokenizer = SmilesTokenizer.load(config.tokenizer)
                tokenizer.max_length = config.max_length
            else:
                vocabulary = json.loads((train_dir / "stats.json").read_text())["vocabulary"]
                tokenizer = SmilesTokenizer(vocabulary, max_length=config.max_length)
            tokenizer.save(tokenizer_path)
    dist.barrier()
    stats = json.loads((train_dir / "stats.json").read_text())
    tokenizer = SmilesTokenizer.load(config.out / "tokenizer.json")
    return PackedCorpus.load(train_dir), PackedCorpus.load(val_dir), tokenizer, stats


def _subset(corpus: PackedCorpus, indices: np.ndarray) -> PackedCorpus:
    smiles = corpus.smiles(indices)
    sizes = np.fromiter((len(s) for s in smiles), dtype=np.int64, count=len(smiles))
    return PackedCorpus(
        np.frombuffer("".join(smiles).encode(), dtype=np.uint8),
        np.concatenate([[0], np.cumsum(sizes)]),
        np.asarray(corpus.lengths[indices], dtype=np.int32),
    )


def validate(model: ExLMModel, tokenizer: SmilesTokenizer, corpus: PackedCorpus, config: PretrainConfig, device, autocast) -> dict:
    """Validation loss and masked-token top-1 accuracy, with fixed masks.

    Accuracy: the share of masked tokens predicted exactly. MLM predicts each masked position's
    most probable token; ExLM decodes the best DAG path of M + 2 states (transitions times each
    state's most probable token, without looking at the targets) and reads its inner states.
    """
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(VALIDATION_SEED)
    losses, correct, total, dropped = [], 0, 0, 0
    with torch.no_grad(), autocast:
        for batch in epoch_batches(corpus.lengths, 0, VALIDATION_SEED, 0, 1, config.batch_tokens):
            ids = tokenizer.encode_batch(corpus.smiles(batch))
            masks = model.choose_masks(ids, generator)
            out = model(ids.to(device), masks.to(device), with_predictions=True)
            finite = torch.isfinite(out.molecule_loss)
            losses.append(out.molecule_loss[finite].float().cpu())
            dropped += int((~finite).sum())
            valid = out.target_valid
            correct += int((out.predictions[valid] == out.targets[valid]).sum())
            total += int(valid.sum())
    model.train()
    losses = torch.cat(losses) if losses else torch.zeros(0)
    return {
        # None (JSON null), not NaN, when no molecule gave a finite loss (an empty set, say).
        "val_loss": float(losses.mean()) if len(losses) else None,
        "val_accuracy": correct / max(total, 1),
        "val_dropped": dropped,
    }


def pretrain(config: PretrainConfig) -> PretrainResult:
    """Train a model as ``config`` says; the CLI and ``python -m exlm_chem.pretrain`` call this."""
    _prepare_output(config)
    dist = setup_distributed()
    try:
        return _pretrain(config, dist)
    finally:
        if dist.world_size > 1:
            torch.distributed.destroy_process_group()


def _pretrain(config: PretrainConfig, dist: Distributed) -> PretrainResult:
    if config.threads:
        torch.set_num_threads(config.threads)
    keep_freed_memory()
    out = config.out
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    dist.barrier()

    checkpoint = None
    if config.resume:
        checkpoint = load_checkpoint(checkpoint_paths(out)[-1])
    train_corpus, val_corpus, tokenizer, corpus_stats = _prepare_data(config, dist)

    overrides = dict(config.model_overrides, vocab_size=tokenizer.vocab_size, objective=config.objective, max_length=config.max_length)
    if config.objective == "exlm":
        overrides["k"] = config.k
    model_config = ExLMConfig.from_preset(config.preset, **overrides)
    if checkpoint is not None and checkpoint["model_config"] != model_config.to_dict():
        saved = checkpoint["model_config"]
        differences = ", ".join(f"{key}: {saved.get(key)} vs {value}" for key, value in model_config.to_dict().items() if saved.get(key) != value)
        raise InputError(f"{out}: the checkpoint is of another model ({differences}); use the same --preset and options")

    torch.manual_seed(config.seed)
    model = ExLMModel(model_config, tokenizer).to(dist.device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(0.9, 0.98), eps=1e-6,
    )
    step, tokens, molecules, elapsed, position = 0, 0, 0, 0.0, {"epoch": 0, "index": 0}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step, tokens, molecules, elapsed = checkpoint["step"], checkpoint["tokens"], checkpoint["molecules"], checkpoint["elapsed"]
        position = checkpoint["data_position"][dist.rank] if dist.world_size == len(checkpoint["data_position"]) else None
        if position is None:
            raise InputError(f"{out}: the checkpoint was written by {len(checkpoint['data_position'])} processes, not {dist.world_size}")
        torch.set_rng_state(checkpoint["torch_rng"])

    training_model = model
    if dist.world_size > 1:
        training_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    precision = resolve_precision(config.precision, dist.device)
    autocast = torch.autocast(dist.device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    if dist.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    stream = BatchStream(train_corpus, config, dist, **position)
    log = RunLog(out, dist.is_main, config, step)
    if dist.is_main:
        run_info = {
            "pretrain": config.to_json(),
            "model": model_config.to_dict(),
            "parameters": model.num_parameters(),
            "precision": precision,
            "world_size": dist.world_size,
            "hardware": describe_hardware(dist.device),
            "corpus": {k: v for k, v in corpus_stats.items() if k != "vocabulary"},
        }
        atomic_write_text(out / "run.json", json.dumps(run_info, indent=2))
        log.message(
            f"{config.objective} {config.preset} ({model.num_parameters():,} parameters), {len(train_corpus):,} training molecules "
            f"({corpus_stats['invalid_rdkit']} invalid SMILES skipped), {precision}, {dist.world_size} process(es), device {dist.device}"
        )

    model.train()
    window_tokens, window_loss, window_steps, window_dropped, window_start = 0, 0.0, 0, 0, time.perf_counter()
    last_metrics: dict = {}
    progress, stopped = _rank0_view(run_progress(config, step, tokens, elapsed), False, dist)
    with StopSignal() as stop_signal:
        while progress < 1.0 and not stopped:
            step_start = time.perf_counter()
            lr = learning_rate(config, progress)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_loss, step_tokens, step_molecules, step_dropped = 0.0, 0, 0, 0
            for micro in range(config.grad_accum):
                smiles = next(stream)
                ids = tokenizer.encode_batch(smiles)
                masks = model.choose_masks(ids, torch.Generator().manual_seed(config.seed * 1_000_003 + step * 64 + micro + 1))
                ids, masks = ids.to(dist.device), masks.to(dist.device)
                sync = dist.world_size == 1 or micro == config.grad_accum - 1
                with (nullcontext() if sync else training_model.no_sync()), autocast:
                    output = training_model(ids, masks)
                (output.loss / config.grad_accum).backward()
                step_loss += float(output.loss.detach()) / config.grad_accum
                step_tokens += int((ids != 0).sum())
                step_molecules += len(smiles)
                step_dropped += output.num_dropped
            if config.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % TRIM_EVERY == 0:
                release_free_memory()
            tokens += step_tokens * dist.world_size
            molecules += step_molecules * dist.world_size
            elapsed += time.perf_counter() - step_start
            window_tokens += step_tokens * dist.world_size
            window_loss += step_loss
            window_steps += 1
            window_dropped += step_dropped

            progress, stopped = _rank0_view(run_progress(config, step, tokens, elapsed), stop_signal.received is not None, dist)
            done = progress >= 1.0
            validate_now = step % config.val_every == 0 or done
            if step % config.log_every == 0 or validate_now:
                now = time.perf_counter()
                last_metrics = {
                    "step": step,
                    "tokens": tokens,
                    "molecules": molecules,
                    "epoch": stream.epoch,
                    "loss": window_loss / window_steps,
                    "lr": lr,
                    "tokens_per_second": window_tokens / (now - window_start),
                    "elapsed": elapsed,
                    "progress": progress,
                    "dropped": window_dropped,
                    "peak_rss_mb": peak_rss_mb(),
                }
                if validate_now:
                    dist.barrier()
                    if dist.is_main:
                        last_metrics.update(validate(model, tokenizer, val_corpus, config, dist.device, autocast))
                    dist.barrier()
                log.record(last_metrics)
                window_tokens, window_loss, window_steps, window_dropped, window_start = 0, 0.0, 0, 0, time.perf_counter()
            if step % config.checkpoint_every == 0 or done or stopped:
                positions = _gather_positions(stream.position(), dist)
                if dist.is_main:
                    save_checkpoint(
                        out,
                        {
                            "step": step,
                            "tokens": tokens,
                            "molecules": molecules,
                            "elapsed": elapsed,
                            "data_position": positions,
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "torch_rng": torch.get_rng_state(),
                            "model_config": model_config.to_dict(),
                        },
                        config.keep_checkpoints,
                    )
                dist.barrier()

    if stopped:
        log.message(f"stopped at step {step} with a checkpoint; continue with --resume")
    elif dist.is_main:
        save_model(model, out / "model", tokenizer)
    log.finish()
    return PretrainResult(model, step, tokens, elapsed, out, last_metrics, dist.rank, stopped)


def _gather_positions(position: dict, dist: Distributed) -> list[dict]:
    if dist.world_size == 1:
        return [position]
    gathered: list = [None] * dist.world_size
    torch.distributed.all_gather_object(gathered, position)
    return gathered


class RunLog:
    """metrics.jsonl, a progress bar (or plain lines when not on a terminal), and curves.png."""

    def __init__(self, out: Path, active: bool, config: PretrainConfig, start_step: int):
        self.out, self.active, self.config = out, active, config
        self.bar = None
        if active and sys.stderr.isatty():
            from tqdm import tqdm

            total = config.max_steps if config.max_steps and not (config.max_time or config.max_tokens) else None
            self.bar = tqdm(total=total, initial=start_step, unit="step", dynamic_ncols=True)
        self.last_step = start_step
        metrics = out / "metrics.jsonl"
        if active and metrics.exists():
            # A resumed run drops what was logged after its checkpoint; it will log it again.
            kept = [line for line in metrics.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= start_step]
            atomic_write_text(metrics, "".join(line + "\n" for line in kept))

    def message(self, text: str) -> None:
        if self.active:
            (self.bar.write if self.bar else lambda t: print(t, file=sys.stderr, flush=True))(text)

    def record(self, metrics: dict) -> None:
        if not self.active:
            return
        with open(self.out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(metrics) + "\n")
        remaining = (1 - metrics["progress"]) * metrics["elapsed"] / max(metrics["progress"], 1e-9)
        summary = f"loss {metrics['loss']:.4f}  {metrics['tokens_per_second']:,.0f} tok/s  lr {metrics['lr']:.2e}"
        if "val_accuracy" in metrics:
            summary += f"  val_acc {metrics['val_accuracy']:.4f}"
        if self.bar is not None:
            self.bar.update(metrics["step"] - self.last_step)
            self.bar.set_postfix_str(summary)
        else:
            print(f"step {metrics['step']}  {summary}  {metrics['progress']:.1%} done, eta {remaining / 60:.1f} min", file=sys.stderr, flush=True)
        self.last_step = metrics["step"]
        if "val_accuracy" in metrics:
            plot_curves(self.out / "metrics.jsonl", self.out / "curves.png")

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: Path, png_path: Path, labels: Sequence[str] = ()) -> None:
    """Training loss and validation accuracy against tokens seen (one or several runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = metrics_path if isinstance(metrics_path, (list, tuple)) else [metrics_path]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for i, path in enumerate(paths):
        rows = read_metrics(path)
        label = labels[i] if i < len(labels) else None
        ax_loss.plot([r["tokens"] for r in rows], [r["loss"] for r in rows], label=label)
        val = [r for r in rows if "val_accuracy" in r]
        ax_acc.plot([r["tokens"] for r in val], [r["val_accuracy"] for r in val], marker="o", label=label)
    ax_loss.set(xlabel="tokens seen", ylabel="training loss", title="training loss")
    ax_acc.set(xlabel="tokens seen", ylabel="masked-token accuracy", title="validation accuracy")
    if labels:
        ax_loss.legend()
        ax_acc.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    from .cli import main

    main(["pretrain", *sys.argv[1:]])
