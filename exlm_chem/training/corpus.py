"""Corpus preparation: read, check with RDKit, tokenize once, keep as memory-mapped arrays.

The valid SMILES are kept as one flat byte array plus offsets, with their token counts (for
length bucketing), memory-mapped afterwards (the 1.6M-molecule ZINC corpus takes about 80 MB),
in a folder named by the corpus's content and the preparation options, so a prepared corpus
is reused by any run that reads the same files the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import read_molecule_chunks
from ..outputs import atomic_path, atomic_write_text
from ..smiles import parse_smiles, quiet_rdkit, tokenize_smiles
from ..tokenizer import SmilesTokenizer
from .distributed import Distributed

logger = logging.getLogger(__name__)


class PackedCorpus:
    """Valid SMILES as one byte array plus offsets, with their token counts (for bucketing)."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray):
        self.data, self.offsets, self.lengths = data, offsets, lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def smiles(self, indices: Sequence[int]) -> list[str]:
        data, offsets = self.data, self.offsets
        return [bytes(data[offsets[i] : offsets[i + 1]]).decode() for i in indices]

    def subset(self, indices: np.ndarray) -> PackedCorpus:
        smiles = self.smiles(indices)
        sizes = np.fromiter((len(s) for s in smiles), dtype=np.int64, count=len(smiles))
        return PackedCorpus(
            np.frombuffer("".join(smiles).encode(), dtype=np.uint8),
            np.concatenate([[0], np.cumsum(sizes)]),
            np.asarray(self.lengths[indices], dtype=np.int32),
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("data", "offsets", "lengths"):
            with atomic_path(directory / f"{name}.npy") as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, getattr(self, name))

    @classmethod
    def load(cls, directory: Path) -> PackedCorpus:
        arrays = [
            np.load(directory / f"{name}.npy", mmap_mode="r")
            for name in ("data", "offsets", "lengths")
        ]
        return cls(*arrays)


@dataclass
class CorpusStats:
    read: int = 0
    kept: int = 0
    invalid_rdkit: int = 0
    untokenizable: int = 0
    empty: int = 0


def pack_corpus(
    paths: Sequence[Path], smiles_column: str | None, canonicalize: bool, limit: int | None = None
) -> tuple[PackedCorpus, CorpusStats, list[str]]:
    """Read corpus files; keep SMILES that RDKit parses and the SMILES regex tokenizes.

    Each SMILES is parsed once (and written canonically from that parse with
    ``canonicalize``). Returns the packed corpus, counts of what was skipped, and the distinct
    tokens seen.
    """
    from rdkit import Chem

    stats = CorpusStats()
    chunks: list[bytes] = []
    lengths: list[int] = []
    vocabulary: set[str] = set()
    with quiet_rdkit():
        for path in paths:
            for chunk in read_molecule_chunks(path, smiles_column=smiles_column, errors="keep"):
                for record in chunk:
                    stats.read += 1
                    if record.error:
                        stats.empty += 1
                        continue
                    mol = parse_smiles(record.smiles)
                    if mol is None:
                        stats.invalid_rdkit += 1
                        continue
                    smiles = Chem.MolToSmiles(mol) if canonicalize else record.smiles
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
    return (
        PackedCorpus(data, offsets, np.asarray(lengths, dtype=np.int32)),
        stats,
        sorted(vocabulary),
    )


def corpus_fingerprint(paths: Sequence[Path], **options) -> str:
    """Identifies a corpus and its preparation options, to reuse a prepared copy safely."""
    # By content, not by path and modification time: a copied or re-synced corpus is the
    # same corpus.
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@dataclass
class CorpusSources:
    """Where a run's molecules come from and how they are read (narrow: no budget, no model)."""

    corpus: list[Path]
    val_corpus: Path | None
    val_size: int
    smiles_column: str | None
    canonicalize: bool
    seed: int


def prepare_corpora(
    sources: CorpusSources, cache: Path, dist: Distributed
) -> tuple[PackedCorpus, PackedCorpus, dict]:
    """Pack the training and validation corpora once (rank 0) in ``cache``; every rank then
    memory-maps them. Returns (training, validation, statistics with the vocabulary)."""
    for path in sources.corpus + ([sources.val_corpus] if sources.val_corpus else []):
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: file is empty")
    reading = dict(column=sources.smiles_column, canonicalize=sources.canonicalize)
    key = corpus_fingerprint(sources.corpus, **reading)
    if sources.val_corpus is not None:
        train_dir = cache / f"train-{key}"
        val_key = corpus_fingerprint([sources.val_corpus], **reading, size=sources.val_size)
        val_dir = cache / f"validation-{val_key}"
    else:  # the validation molecules are held out of the training set
        train_dir = cache / f"train-{key}-without-{sources.seed}-{sources.val_size}"
        val_dir = cache / f"validation-{key}-holdout-{sources.seed}-{sources.val_size}"
    if dist.is_main:
        if not (train_dir / "stats.json").exists():  # written last: the preparation finished
            logger.info("preparing the corpus (RDKit check and tokenization, once)")
            corpus, stats, vocabulary = pack_corpus(
                sources.corpus, sources.smiles_column, sources.canonicalize
            )
            if sources.val_corpus is None:
                rng = np.random.default_rng(sources.seed)
                held = np.zeros(len(corpus), dtype=bool)
                held[
                    rng.choice(
                        len(corpus), size=min(sources.val_size, len(corpus) // 10), replace=False
                    )
                ] = True
                corpus.subset(np.flatnonzero(held)).save(val_dir)
                corpus = corpus.subset(np.flatnonzero(~held))
            corpus.save(train_dir)
            atomic_write_text(
                train_dir / "stats.json", json.dumps({**asdict(stats), "vocabulary": vocabulary})
            )
        if not (val_dir / "lengths.npy").exists():
            validation, _, _ = pack_corpus(
                [sources.val_corpus],
                sources.smiles_column,
                sources.canonicalize,
                limit=sources.val_size,
            )
            validation.save(val_dir)
    dist.barrier()
    stats = json.loads((train_dir / "stats.json").read_text())
    return PackedCorpus.load(train_dir), PackedCorpus.load(val_dir), stats


def write_run_tokenizer(
    path: Path, given: Path | None, vocabulary: list[str], max_length: int
) -> None:
    """Fix the run's tokenizer at ``path`` the first time: the one ``given``, or one of the
    corpus's vocabulary. A resumed run keeps the one it started with."""
    if path.exists():
        return
    if given is not None:
        tokenizer = SmilesTokenizer.load(given)
        tokenizer.max_length = max_length
    else:
        tokenizer = SmilesTokenizer(vocabulary, max_length=max_length)
    tokenizer.save(path)
