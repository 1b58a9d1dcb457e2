"""Molecule embeddings: molecules prepared once (`preparation`), embedded in length-sorted
batches, with what the model could not read."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from . import defaults
from .errors import InputError
from .model import ExLMModel, load_model, pooled_size
from .parallel import WorkerPool, default_workers
from .preparation import PreparedSmiles, prepare_job
from .smiles import check_invalid_policy
from .tokenizer import EncodingReport

PRECISIONS = ("fp32", "bf16")


class Embedded(NamedTuple):
    """Vectors of a list of molecules in input order, with what was lost reading each."""

    vectors: np.ndarray  # (n, d) float32; NaN rows for invalid molecules
    errors: list[str | None]  # why a molecule is invalid, None where valid
    unknown_atoms: np.ndarray  # (n,) int: tokens outside the vocabulary, read as <unk>
    truncated: np.ndarray  # (n,) bool: cut to the model's max_length
    fallback_atoms: np.ndarray  # (n,) int: atoms outside the vocabulary read as a known neighbour

    @property
    def valid(self) -> np.ndarray:
        return np.array([e is None for e in self.errors], dtype=bool)

    @property
    def not_read_in_full(self) -> np.ndarray:
        """Valid molecules with an atom outside the vocabulary or cut at the maximum length."""
        return self.valid & ((self.unknown_atoms > 0) | self.truncated)

    def counts(self) -> dict[str, int]:
        """Molecules in all, invalid, and valid ones with unknown atoms, fallbacks or truncated."""
        valid = self.valid
        return {
            "molecules": len(valid),
            "invalid": int((~valid).sum()),
            "unknown_atoms": int(np.count_nonzero(valid & (self.unknown_atoms > 0))),
            "fallback_atoms": int(np.count_nonzero(valid & (self.fallback_atoms > 0))),
            "truncated": int(np.count_nonzero(valid & self.truncated)),
        }

    def not_read_in_full_reason(self, i: int) -> str:
        if self.unknown_atoms[i]:
            return f"{self.unknown_atoms[i]} tokens outside the model's vocabulary"
        return "longer than the model's maximum length"

    def summary(self, max_length: int) -> str | None:
        """One line on the valid molecules the model could not read in full, or None."""
        counts = self.counts()
        parts = []
        if counts["unknown_atoms"]:
            parts.append(
                f"{counts['unknown_atoms']} with atoms outside the model's vocabulary (read as "
                "<unk>)"
            )
        if counts["fallback_atoms"]:
            parts.append(f"{counts['fallback_atoms']} with atoms read as a nearby known token")
        if counts["truncated"]:
            parts.append(f"{counts['truncated']} truncated to {max_length} tokens")
        valid = counts["molecules"] - counts["invalid"]
        return f"of {valid} valid molecules, " + "; ".join(parts) if parts else None


def embed_workers(device) -> int:
    """Preparation processes for a device: on a GPU the model outpaces RDKit on one core, so
    one per core (at most 8); on a CPU they would take cores from the model, so none below 8
    cores and a quarter of them above."""
    cores = default_workers()
    if device.type == "cuda":
        return cores
    return 0 if cores < 8 else cores // 4


def embed_molecules(
    smiles: Sequence,
    model: ExLMModel,
    pooling: str,
    batch_size: int | None,
    precision: str,
    canonicalize: bool,
    workers: int | WorkerPool = 0,
) -> Embedded:
    """Prepare, embed the valid molecules, and put them back in input order (see
    `embed_chunks`, cut into chunks for the workers)."""
    pooled_size(model.config.hidden_size, pooling)  # checks the read-out before any work
    count = workers.workers if isinstance(workers, WorkerPool) else workers
    chunk = worker_chunk(len(smiles), count)
    chunks = [smiles[i : i + chunk] for i in range(0, len(smiles), chunk)] or [smiles]
    workers = workers if len(chunks) > 1 else 0  # one chunk: no process to wait for
    parts = list(embed_chunks(chunks, model, pooling, batch_size, precision, canonicalize, workers))
    return Embedded(*(_joined([getattr(p, f) for p in parts]) for f in Embedded._fields))


def embed_chunks(
    chunks: Iterable[Sequence],
    model: ExLMModel,
    pooling: str,
    batch_size: int | None,
    precision: str,
    canonicalize: bool,
    workers: int | WorkerPool = 0,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[Embedded]:
    """Each chunk of molecules prepared and embedded, in order: the one path behind `embed`,
    `embed_file` and `ExLMFeaturizer`. With ``workers`` (a number, or a `WorkerPool` kept
    between calls), the next chunks are prepared in that many processes while the model embeds
    the current one; closing the generator early stops them."""
    pool = workers if isinstance(workers, WorkerPool) else WorkerPool(workers)
    jobs = ((chunk, model.tokenizer, canonicalize) for chunk in chunks)
    try:
        with closing(pool.imap(prepare_job, jobs)) as prepared_chunks:
            for prepared in prepared_chunks:
                yield embed_prepared(prepared, model, pooling, batch_size, precision, on_batch)
    finally:
        if pool is not workers:  # started for this call
            pool.close()


def worker_chunk(molecules: int, workers: int) -> int:
    """Molecules per job sent to a worker: about two jobs per worker, so that every worker is
    busy and the model starts after the first chunk, between `MIN_WORKER_CHUNK` (fewer would
    not pay for the transfer) and `WORKER_CHUNK` (memory)."""
    if workers <= 0:
        return max(molecules, 1)
    return max(MIN_WORKER_CHUNK, min(WORKER_CHUNK, -(-molecules // (2 * workers))))


WORKER_CHUNK = 10_000  # the most molecules a worker prepares at a time
MIN_WORKER_CHUNK = 500


def _joined(parts: list):
    return (
        [x for part in parts for x in part] if isinstance(parts[0], list) else np.concatenate(parts)
    )


def embed_prepared(
    prepared: PreparedSmiles,
    model: ExLMModel,
    pooling: str,
    batch_size: int,
    precision: str,
    on_batch: Callable[[int], None] | None = None,
) -> Embedded:
    """Embed molecules prepared by `prepare_smiles` (here or in a worker process);
    ``on_batch(n)`` is called after each batch of n molecules (a progress bar's update)."""
    width = pooled_size(model.config.hidden_size, pooling)
    n = len(prepared.smiles)
    vectors = np.full((n, width), np.nan, dtype=np.float32)
    unknown, fallback = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    truncated = np.zeros(n, dtype=bool)
    good = np.array([i for i, p in enumerate(prepared.tokens) if p is not None], dtype=np.int64)
    if len(good):
        vectors[good], report = _embed_tokens(
            [prepared.tokens[i] for i in good], model, pooling, batch_size, precision, on_batch
        )
        unknown[good], truncated[good] = report.unknown_tokens, report.truncated
        fallback[good] = report.fallback_tokens
    return Embedded(vectors, prepared.errors, unknown, truncated, fallback)


def embed(
    smiles: Iterable[str] | str,
    model: ExLMModel | str | Path | None = None,
    pooling: str = defaults.POOLING,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = defaults.PRECISION,
    invalid: str = "keep",
    canonicalize: bool = True,
    strict_atoms: bool = False,
    workers: int | None = None,
) -> np.ndarray:
    """Embed SMILES as an (n, d) float32 array, rows in input order.

    A single string is one molecule: ``embed("CCO")`` has shape (1, d).

    Molecules are embedded in batches of similar length (sorted, embedded, put back in order)
    under ``torch.inference_mode``. A SMILES that is invalid (see `prepare_smiles`) gets a row
    of NaN and a warning listing the indices (``invalid="keep"``), or an InputError naming it
    (``"raise"``). Molecules with atoms outside the model's vocabulary or cut at its maximum
    length are embedded and counted in one warning; ``strict_atoms=True`` raises an InputError
    naming the first instead. (Warnings are Python's: ``warnings.simplefilter("ignore")``
    silences them.)

    batch_size: molecules per forward pass (default: 128 on a CPU, 1024 on a GPU).

    precision: ``fp32`` (reproducible across runs and batch sizes) or ``bf16`` (the fast path
    on CPUs and GPUs with native bf16 matrix maths).

    canonicalize: embed RDKit's canonical SMILES of each molecule (see `prepare_smiles`), so
    that different SMILES of one molecule get the same vector; False embeds the text as given.

    workers: processes preparing molecules (RDKit) while the model embeds (0: none; default:
    see `embed_workers`); the vectors are the same whatever their number.
    """
    check_invalid_policy(invalid, ("keep", "raise"))
    smiles = [smiles] if isinstance(smiles, str) else list(smiles)
    model = load_model(model, device)
    workers = embed_workers(next(model.parameters()).device) if workers is None else workers
    result = embed_molecules(smiles, model, pooling, batch_size, precision, canonicalize, workers)
    rejected = np.flatnonzero(~result.valid)
    if len(rejected) and invalid == "raise":
        i = int(rejected[0])
        raise InputError(f"invalid SMILES at index {i} ({result.errors[i]}): {smiles[i]!r}")
    if len(rejected):
        shown = ", ".join(map(str, rejected[:20])) + (" ..." if len(rejected) > 20 else "")
        warnings.warn(
            f"{len(rejected)} invalid SMILES got NaN embeddings (indices {shown})", stacklevel=2
        )
    lossy = np.flatnonzero(result.not_read_in_full)
    if strict_atoms and len(lossy):
        i = int(lossy[0])
        raise InputError(
            f"SMILES at index {i} is not read in full ({result.not_read_in_full_reason(i)}): "
            f"{smiles[i]!r}"
        )
    summary = result.summary(model.config.max_length)
    if summary:
        warnings.warn(summary, stacklevel=2)
    return result.vectors


GPU_BATCHES_IN_FLIGHT = 16  # batches whose vectors stay on the GPU before one copy back


def default_batch_size(device) -> int:
    """Molecules per forward pass: larger on a GPU, where per-batch overhead dominates."""
    return defaults.GPU_BATCH_SIZE if device.type == "cuda" else defaults.BATCH_SIZE


def _collect(pending: list, out: np.ndarray) -> None:
    """Copy vectors computed on the device into ``out`` (one synchronisation for all)."""
    if pending:
        vectors = torch.cat([v for _, v in pending]).cpu().numpy()
        out[np.concatenate([rows for rows, _ in pending])] = vectors
        pending.clear()


def _embed_tokens(
    tokens: Sequence[list[str]],
    model: ExLMModel,
    pooling: str,
    batch_size: int,
    precision: str,
    on_batch: Callable[[int], None] | None = None,
):
    """Vectors of molecules tokenized by `prepare_smiles`, and what encoding lost of each
    (an `EncodingReport` in input order)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    tokenizer = model.tokenizer
    device = next(model.parameters()).device
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, not {batch_size}")
    if precision == "bf16":
        # A bfloat16 copy of the weights for this call: under autocast every layer would cast
        # its weights and its float32 activations again for every batch.
        model = copy.deepcopy(model).to(torch.bfloat16)
    # Sort by length so that each batch holds molecules of similar size.
    order = np.argsort([len(t) for t in tokens], kind="stable")
    out = np.empty((len(tokens), pooled_size(model.config.hidden_size, pooling)), np.float32)
    report = EncodingReport(*(np.zeros(len(tokens), dtype=d) for d in (np.int64, bool, np.int64)))
    on_gpu = device.type == "cuda"
    pending: list[tuple[np.ndarray, torch.Tensor]] = []  # vectors still on the device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, batch_report = tokenizer.encode_tokens_with_report([tokens[i] for i in rows])
            # On a GPU: copies from pinned memory overlap the model, and the vectors come back
            # a few batches at a time, so that the host never waits for each batch.
            ids = ids.pin_memory().to(device, non_blocking=True) if on_gpu else ids
            pending.append((rows, model.embed_states(ids, pooling=pooling).pooled.float()))
            if len(pending) >= (GPU_BATCHES_IN_FLIGHT if on_gpu else 1):
                _collect(pending, out)
            for column, values in zip(report, batch_report):
                column[rows] = values
            if on_batch is not None:
                on_batch(len(rows))
        _collect(pending, out)
    model.train(was_training)
    return out, report
