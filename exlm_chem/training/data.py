"""A run's data: its corpora prepared once (rank 0) and shared by content key, its tokenizer,
and how often each source's molecules are drawn."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..tokenizer import SmilesTokenizer
from .corpus import (
    CorpusStats,
    PackedCorpus,
    check_corpus_file,
    corpus_content_files,
    corpus_fingerprint,
    is_prepared_corpus,
    load_stats,
    pack_corpus,
    save_stats,
)
from .distributed import Distributed

logger = logging.getLogger(__name__)


@dataclass
class CorpusSources:
    """Where a run's molecules come from and how they are read (narrow: no budget, no model)."""

    corpus: list[Path]
    val_corpus: Path | None
    val_size: int
    smiles_column: str | None
    canonicalize: bool
    seed: int
    workers: int


def check_corpus_inputs(sources: CorpusSources) -> None:
    """Each corpus is a readable file or a prepared corpus folder; a folder comes alone (its
    preparation already chose the column and the canonical form)."""
    for path in sources.corpus + ([sources.val_corpus] if sources.val_corpus else []):
        if path.is_dir():
            if not is_prepared_corpus(path):
                raise InputError(
                    f"{path}: a folder but not a prepared corpus (no stats.json); make one "
                    "with exlm-chem prepare-corpus"
                )
        else:
            check_corpus_file(path)
    if any(path.is_dir() for path in sources.corpus):
        if len(sources.corpus) > 1:
            raise InputError(
                "--corpus: a prepared corpus folder comes alone; prepare the files together "
                "with exlm-chem prepare-corpus"
            )
        if sources.canonicalize or sources.smiles_column:
            raise InputError(
                f"{sources.corpus[0]}: a prepared corpus was read when it was prepared; give "
                "--canonicalize and --smiles-column to exlm-chem prepare-corpus instead"
            )
    val = sources.val_corpus
    if val is not None and val.is_dir():
        canonical, val_canonical = training_canonical(sources), load_stats(val).canonical
        if None not in (canonical, val_canonical) and canonical != val_canonical:
            written = "canonical" if val_canonical else "as given (not canonical)"
            raise InputError(
                f"{val}: its SMILES were prepared {written}, unlike the training corpus's; "
                "prepare the validation molecules the way the training ones were"
            )


def training_canonical(sources: CorpusSources) -> bool | None:
    """Whether the training SMILES are written canonically (a prepared folder says so itself;
    None: a folder prepared before it was recorded)."""
    first = sources.corpus[0]
    return load_stats(first).canonical if first.is_dir() else sources.canonicalize


def write_validation(corpus: PackedCorpus, indices: np.ndarray, directory: Path) -> None:
    """The molecules at ``indices`` as the run's validation corpus."""
    corpus.write_subset(indices, directory)
    save_stats(CorpusStats(read=len(indices), kept=len(indices)), directory)


def prepare_corpora(
    sources: CorpusSources, cache: Path, dist: Distributed
) -> tuple[PackedCorpus, PackedCorpus, dict]:
    """Pack the training and validation corpora once (rank 0) in ``cache``; every rank then
    memory-maps them. A prepared corpus folder is read in place. Returns (training,
    validation, the training corpus's statistics)."""
    check_corpus_inputs(sources)
    prepared = sources.corpus[0] if sources.corpus[0].is_dir() else None
    # A validation file is read the way the training molecules were.
    canonicalize = bool(training_canonical(sources))
    reading = dict(column=sources.smiles_column, canonicalize=canonicalize)

    def fingerprint(paths, **extra) -> str:
        return corpus_fingerprint(corpus_content_files(paths), **reading, **extra)

    if sources.val_corpus is not None:
        # A prepared training folder is used in place: no key, so its bytes are not hashed.
        key = None if prepared else fingerprint(sources.corpus)
        train_dir = prepared or cache / f"train-{key}"
        val_dir = cache / f"validation-{fingerprint([sources.val_corpus], size=sources.val_size)}"
    else:  # the validation molecules are held out of the training set
        key = fingerprint(sources.corpus)
        train_dir = cache / f"train-{key}-without-{sources.seed}-{sources.val_size}"
        val_dir = cache / f"validation-{key}-holdout-{sources.seed}-{sources.val_size}"
    if dist.is_main and not (train_dir / "stats.json").exists():  # written last: complete
        holdout = sources.val_corpus is None
        if prepared:  # only a hold-out is left to make
            packed = prepared
            stats = load_stats(prepared)
        else:
            logger.info("preparing the corpus (RDKit check and tokenization, once)")
            packed = cache / f"all-{key}" if holdout else train_dir
            stats = pack_corpus(
                sources.corpus, sources.smiles_column, sources.canonicalize, packed,
                workers=sources.workers,
            )  # fmt: skip
        if holdout:
            corpus = PackedCorpus.load(packed)
            size = min(sources.val_size, len(corpus) // 10)
            rng = np.random.default_rng(sources.seed)
            held = np.zeros(len(corpus), dtype=bool)
            held[rng.choice(len(corpus), size=size, replace=False)] = True
            write_validation(corpus, np.flatnonzero(held), val_dir)
            corpus.write_subset(np.flatnonzero(~held), train_dir)
            stats.kept -= size  # the training molecules (the counts by source include the held)
            del corpus
            if not prepared:
                shutil.rmtree(packed)
        save_stats(stats, train_dir)
    if dist.is_main and sources.val_corpus is not None and not (val_dir / "stats.json").exists():
        if sources.val_corpus.is_dir():  # its first val_size molecules, as from a file
            whole = PackedCorpus.load(sources.val_corpus)
            write_validation(whole, np.arange(min(sources.val_size, len(whole))), val_dir)
        else:
            stats = pack_corpus(
                [sources.val_corpus],
                sources.smiles_column,
                canonicalize,
                val_dir,
                limit=sources.val_size,
                workers=sources.workers,
            )
            save_stats(stats, val_dir)
    dist.barrier()
    stats = json.loads((train_dir / "stats.json").read_text())
    return PackedCorpus.load(train_dir), PackedCorpus.load(val_dir), stats


def write_run_tokenizer(
    path: Path, given: Path | None, token_counts: dict[str, int], min_count: int, max_length: int
) -> None:
    """Fix the run's tokenizer at ``path`` the first time: the one ``given``, or the corpus's
    tokens seen at least ``min_count`` times and one token per element. A resumed run keeps
    the one it started with."""
    if path.exists():
        return
    if given is not None:
        tokenizer = SmilesTokenizer.load(given)
        tokenizer.max_length = max_length
    else:
        tokenizer = SmilesTokenizer.from_counts(token_counts, min_count, max_length=max_length)
    tokenizer.save(path)


def molecule_weights(corpus: PackedCorpus, weights: dict[str, float]) -> np.ndarray | None:
    """How many times each molecule is drawn per epoch, on average (None: once each)."""
    if not weights:
        return None
    unknown = sorted(set(weights) - set(corpus.source_names))
    if unknown:
        raise InputError(
            f"--source-weights names no source of the corpus: {', '.join(unknown)}; "
            f"its sources are {', '.join(corpus.source_names)}"
        )
    by_source = np.array([weights.get(name, 1.0) for name in corpus.source_names])
    return by_source[np.asarray(corpus.sources)]
