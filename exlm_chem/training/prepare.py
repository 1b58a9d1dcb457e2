"""`exlm-chem prepare-corpus`: a corpus folder made once from molecule files, optionally a
seeded sample of them, optionally with each molecule's RDKit 2D descriptors (resumable) and
counts of its common Morgan environments, the targets of the descriptor head."""

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
from ..fingerprints import substructure_counts, substructure_vocabulary
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
VOCABULARY_SAMPLE = 50_000  # molecules the substructure vocabulary is chosen on
SUBSTRUCTURE = "morgan2:"  # the name of a substructure column: this, then its identifier


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
    substructures: int = 0,
) -> CorpusStats:
    """Check corpus files with RDKit and tokenize them once, into a folder that
    ``exlm-chem pretrain --corpus`` reads as it is: training from it needs no RDKit and no
    second preparation (another machine, a GPU, many runs). Written beside ``out`` and renamed
    into place, so a stopped preparation leaves no half-made corpus behind.

    sample: keep a seeded random sample of this many molecules (the token counts stay those
    of the whole corpus, so that its vocabulary is the whole corpus's).
    descriptors: add each molecule's RDKit 2D descriptors (`add_descriptors`); run again
    after a stop, it resumes them where they stopped.
    substructures: with the descriptors, also count this many Morgan environments in each
    molecule (`add_substructures`); asked of a corpus prepared with descriptors, it adds them.
    """
    out = Path(out)
    if out.exists() and not is_prepared_corpus(out):
        raise InputError(f"{out}: already exists and is not a prepared corpus; choose another")
    if substructures < 0 or (substructures and not descriptors):
        raise InputError("--substructures needs --descriptors and a count of at least 1")
    if descriptors and is_prepared_corpus(out) and not overwrite:
        if not has_descriptors(out) or (substructures and not has_substructures(out)):
            add_descriptors(out, workers)  # finishes what a stop left (nothing if complete)
            if substructures:
                add_substructures(out, substructures, workers)
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
    if substructures:
        add_substructures(out, substructures, workers)
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


def substructure_block(job: tuple[int, list[str], list[int]]) -> tuple[int, np.ndarray]:
    """In a worker: the substructure counts of a block of molecules starting at row ``start``."""
    start, smiles, vocabulary = job
    return start, substructure_counts(smiles, vocabulary)


def has_substructures(directory: Path) -> bool:
    """Whether a corpus's descriptor targets include substructure counts."""
    scaling = DescriptorScaling.from_json((Path(directory) / SCALING).read_text())
    return any(name.startswith(SUBSTRUCTURE) for name in scaling.names)


def add_substructures(directory: Path, size: int, workers: int = 0, block: int = 5_000) -> None:
    """Append to a corpus's descriptor targets the counts of ``size`` Morgan environments
    (radius 0-2, chosen on a seeded sample of 50,000 of its molecules: those found in the most
    molecules, short of nearly all; `substructure_vocabulary`), scaled as the descriptors
    are: the descriptor head then also learns which substructures a molecule holds, what
    ECFP4 tells a probe. Columns named ``morgan2:IDENTIFIER``. Written beside the descriptors
    and renamed into place (a stop leaves them as they were; run it again)."""
    directory = Path(directory)
    if not has_descriptors(directory):
        raise InputError(f"{directory}: add descriptors first (--descriptors)")
    if has_substructures(directory):
        return
    corpus = PackedCorpus.load(directory)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(corpus), size=min(VOCABULARY_SAMPLE, len(corpus)), replace=False)
    vocabulary = substructure_vocabulary(corpus.smiles(np.sort(chosen)), size)
    descriptors, scaling = corpus.descriptors, corpus.scaling
    shape = (len(corpus), descriptors.shape[1] + len(vocabulary))
    part = directory / f"{DESCRIPTORS}.part"
    values = np.lib.format.open_memmap(part, mode="w+", dtype="<f4", shape=shape)
    jobs = (
        (start, corpus.smiles(range(start, min(start + block, len(corpus)))), vocabulary)
        for start in range(0, len(corpus), block)
    )
    width = descriptors.shape[1]
    for start, counts in map_in_order(substructure_block, jobs, workers):
        values[start : start + len(counts), :width] = descriptors[start : start + len(counts)]
        values[start : start + len(counts), width:] = counts
    values.flush()
    sample = np.sort(rng.choice(len(values), size=min(SCALING_SAMPLE, len(values)), replace=False))
    names = [f"{SUBSTRUCTURE}{identifier}" for identifier in vocabulary]
    added = DescriptorScaling.fit(values[sample, width:], names)
    merged = DescriptorScaling(
        scaling.names + names, scaling.median + added.median, scaling.scale + added.scale,
        scaling.clip,
    )  # fmt: skip
    del values, descriptors, corpus
    os.replace(part, directory / DESCRIPTORS)
    atomic_write_text(directory / SCALING, merged.to_json())
