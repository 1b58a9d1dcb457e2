"""`exlm-chem prepare-corpus`: a corpus folder made once from molecule files, optionally a
seeded sample of them, optionally with each molecule's RDKit 2D descriptors (resumable)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..descriptors import DescriptorScaling, compute_descriptors, descriptor_names
from ..errors import InputError
from ..outputs import atomic_write_text
from ..parallel import map_in_order
from .corpus import (
    DESCRIPTORS,
    SCALING,
    CorpusStats,
    PackedCorpus,
    check_corpus_file,
    has_descriptors,
    is_prepared_corpus,
    load_stats,
    pack_corpus,
    save_stats,
)

SCALING_SAMPLE = 200_000  # molecules the descriptor scaling is fitted on


def prepare_corpus(
    paths: Sequence[Path],
    out: Path,
    smiles_column: str | None = None,
    canonicalize: bool = False,
    workers: int = 0,
    overwrite: bool = False,
    sample: int | None = None,
    seed: int = 0,
    descriptors: bool = False,
) -> CorpusStats:
    """Check corpus files with RDKit and tokenize them once, into a folder that
    ``exlm-chem pretrain --corpus`` reads as it is: training from it needs no RDKit and no
    second preparation (another machine, a GPU, many runs). Written beside ``out`` and renamed
    into place, so a stopped preparation leaves no half-made corpus behind.

    sample: keep a seeded random sample of this many molecules (the token counts stay those
    of the whole corpus, so that its vocabulary is the whole corpus's).
    descriptors: add each molecule's RDKit 2D descriptors (`add_descriptors`); run again
    after a stop, it resumes them where they stopped.
    """
    out = Path(out)
    if out.exists() and not is_prepared_corpus(out):
        raise InputError(f"{out}: already exists and is not a prepared corpus; choose another")
    if descriptors and is_prepared_corpus(out) and not has_descriptors(out) and not overwrite:
        add_descriptors(out, workers)  # a preparation stopped while adding them
        return load_stats(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already holds a prepared corpus; pass --overwrite to replace it")
    if sample is not None and sample < 1:
        raise InputError(f"--sample must be at least 1, not {sample}")
    for path in paths:
        check_corpus_file(path)
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    stats = pack_corpus(paths, smiles_column, canonicalize, partial, workers=workers)
    if sample is not None and sample < stats.kept:
        stats = sample_corpus(partial, stats, sample, seed)
    save_stats(stats, partial)
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    if descriptors:
        add_descriptors(out, workers)
    return stats


def sample_corpus(directory: Path, stats: CorpusStats, size: int, seed: int) -> CorpusStats:
    """Replace the corpus in ``directory`` by a seeded random sample of ``size`` molecules."""
    whole = PackedCorpus.load(directory)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(whole), size=size, replace=False))
    sampled = directory.with_name(f"{directory.name}.sample")
    shutil.rmtree(sampled, ignore_errors=True)
    whole.write_subset(chosen, sampled)
    counts = np.bincount(np.asarray(whole.sources)[chosen], minlength=len(whole.source_names))
    stats.kept = size
    stats.sources = {name: int(n) for name, n in zip(whole.source_names, counts) if n}
    del whole
    shutil.rmtree(directory)
    os.replace(sampled, directory)
    return stats


def descriptor_block(job: tuple[int, list[str]]) -> tuple[int, np.ndarray]:
    """In a worker: the raw descriptors of a block of molecules starting at row ``start``."""
    start, smiles = job
    return start, compute_descriptors(smiles)


def add_descriptors(
    directory: Path, workers: int = 0, block: int = 5_000, save_every: float = 30.0
) -> None:
    """Compute RDKit's 2D descriptors of every molecule of a prepared corpus, in ``workers``
    processes, into ``descriptors.npy``, then fit their scaling (`DescriptorScaling`, on up to
    200,000 molecules). Resumable: the rows written are recorded every ``save_every``
    seconds, and a later call continues from there."""
    directory = Path(directory)
    if has_descriptors(directory):
        return
    corpus = PackedCorpus.load(directory)
    names = descriptor_names()
    part, progress = directory / f"{DESCRIPTORS}.part", directory / "descriptors.progress.json"
    shape = (len(corpus), len(names))
    done = 0
    if part.exists() and progress.exists():
        recorded = json.loads(progress.read_text())
        if recorded["names"] == names and tuple(recorded["shape"]) == shape:
            done = recorded["rows"]
    if done:
        values = np.load(part, mmap_mode="r+")
    else:
        values = np.lib.format.open_memmap(part, mode="w+", dtype="<f4", shape=shape)

    def save(values: np.ndarray, rows: int) -> None:
        values.flush()
        state = {"rows": rows, "names": names, "shape": list(shape)}
        atomic_write_text(progress, json.dumps(state))

    jobs = (
        (start, corpus.smiles(range(start, min(start + block, len(corpus)))))
        for start in range(done, len(corpus), block)
    )
    last_save = time.monotonic()
    for start, rows in map_in_order(descriptor_block, jobs, workers):
        values[start : start + len(rows)] = rows
        done = start + len(rows)
        if time.monotonic() - last_save > save_every:
            save(values, done)
            last_save = time.monotonic()
    save(values, done)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(values), size=min(SCALING_SAMPLE, len(values)), replace=False))
    scaling = DescriptorScaling.fit(values[sample], names)
    del values
    os.replace(part, directory / DESCRIPTORS)
    atomic_write_text(directory / SCALING, scaling.to_json())
    progress.unlink()
