"""Corpus preparation: read, check with RDKit, tokenize once, keep as memory-mapped arrays.

The valid SMILES are kept as one flat byte array plus offsets, with their token counts (for
length bucketing) and their source (for sampling weights), memory-mapped afterwards (2.4M
molecules take about 150 MB). Preparation streams: chunks of molecules are parsed in worker
processes and appended to files, so memory does not grow with the corpus.

A corpus may also hold each molecule's RDKit 2D descriptors (``descriptors.npy``, float32,
NaN where RDKit cannot compute one) and their robust scaling (``descriptors.json``, written
last): the targets of pretraining with a descriptor-regression head.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..descriptors import DescriptorScaling
from ..errors import InputError
from ..molecule_files import read_molecule_chunks, table_columns
from ..outputs import NpyAppender, atomic_write_text
from ..parallel import map_in_order
from ..smiles import parse_smiles, quiet_rdkit, tokenize_smiles

SOURCE_COLUMN = "source"  # a corpus table's column naming where each molecule comes from
PREPARATION_VERSION = 2  # part of the cache key: a new layout is prepared anew
ARRAYS = ("data", "offsets", "lengths", "sources")
DESCRIPTORS, SCALING = "descriptors.npy", "descriptors.json"


class PackedCorpus:
    """Valid SMILES as one byte array plus offsets, with their token counts (for bucketing)
    and the index of their source in ``source_names``."""

    def __init__(
        self,
        data,
        offsets,
        lengths,
        sources,
        source_names: list[str],
        descriptors: np.ndarray | None = None,
        scaling: DescriptorScaling | None = None,
    ):
        self.data, self.offsets, self.lengths, self.sources = data, offsets, lengths, sources
        self.source_names = source_names
        self.descriptors, self.scaling = descriptors, scaling  # raw (n, D) and their scaling

    def __len__(self) -> int:
        return len(self.lengths)

    def smiles(self, indices: Sequence[int]) -> list[str]:
        data, offsets = self.data, self.offsets
        return [bytes(data[offsets[i] : offsets[i + 1]]).decode() for i in indices]

    def descriptor_targets(self, indices: Sequence[int]) -> np.ndarray:
        """Scaled descriptors (len(indices), D) of the molecules at ``indices``; NaN where
        unknown."""
        return self.scaling.transform(self.descriptors[np.asarray(indices)])

    @classmethod
    def load(cls, directory: Path) -> PackedCorpus:
        directory = Path(directory)
        arrays = [np.load(directory / f"{name}.npy", mmap_mode="r") for name in ARRAYS]
        names = json.loads((directory / "sources.json").read_text())
        descriptors = scaling = None
        if has_descriptors(directory):
            descriptors = np.load(directory / DESCRIPTORS, mmap_mode="r")
            scaling = DescriptorScaling.from_json((directory / SCALING).read_text())
        return cls(*arrays, names, descriptors, scaling)

    def write_subset(self, indices: np.ndarray, directory: Path) -> None:
        """Save the molecules at ``indices`` (sorted) as a corpus of their own, block by
        block: no list of all their SMILES is ever built."""
        writer = CorpusWriter(directory)
        for start in range(0, len(indices), 100_000):
            rows = np.asarray(indices[start : start + 100_000])
            begin, end = self.offsets[rows], self.offsets[rows + 1]
            sizes = end - begin
            # The byte positions of the chosen molecules, in order, without a Python loop.
            shift = np.repeat(begin - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
            data = self.data[np.arange(int(sizes.sum())) + shift]
            writer.append(np.asarray(data).tobytes(), sizes, self.lengths[rows], self.sources[rows])
            if self.descriptors is not None:
                writer.append_descriptors(np.asarray(self.descriptors[rows]))
        writer.close(self.source_names, self.scaling)


class CorpusWriter:
    """Appends molecules to a corpus folder, each array straight into its .npy file (renamed
    into place on close): memory does not grow with the corpus."""

    DTYPES = {"data": "|u1", "offsets": "<i8", "lengths": "<i4", "sources": "<i2"}

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.files = {name: open(directory / f"{name}.npy.part", "wb") for name in ARRAYS}
        self.arrays = {name: NpyAppender(self.files[name], self.DTYPES[name]) for name in ARRAYS}
        self.end = 0  # bytes of SMILES written so far
        self.arrays["offsets"].append(np.zeros(1, dtype="<i8").tobytes(), 1)
        self.descriptors: NpyAppender | None = None  # opened by the first descriptor rows

    def append_descriptors(self, values: np.ndarray) -> None:
        if self.descriptors is None:
            self.files["descriptors"] = open(self.directory / f"{DESCRIPTORS}.part", "wb")
            self.descriptors = NpyAppender(self.files["descriptors"], "<f4", values.shape[1:])
        self.descriptors.append(np.ascontiguousarray(values, dtype="<f4").tobytes(), len(values))

    def append(self, blob: bytes, sizes, lengths, sources) -> None:
        offsets = self.end + np.cumsum(np.asarray(sizes, dtype="<i8"))
        self.end += len(blob)
        for name, values in (("offsets", offsets), ("lengths", lengths), ("sources", sources)):
            array = np.asarray(values, dtype=self.DTYPES[name])
            self.arrays[name].append(array.tobytes(), len(array))
        self.arrays["data"].append(blob, len(blob))

    def close(self, source_names: list[str], scaling: DescriptorScaling | None = None) -> None:
        for name in ARRAYS:
            self.arrays[name].finish()
            self.files[name].close()
            os.replace(self.directory / f"{name}.npy.part", self.directory / f"{name}.npy")
        atomic_write_text(self.directory / "sources.json", json.dumps(source_names))
        if self.descriptors is not None:
            self.descriptors.finish()
            self.files["descriptors"].close()
            os.replace(self.directory / f"{DESCRIPTORS}.part", self.directory / DESCRIPTORS)
            atomic_write_text(self.directory / SCALING, scaling.to_json())


@dataclass
class CorpusStats:
    read: int = 0
    kept: int = 0
    invalid_rdkit: int = 0
    untokenizable: int = 0
    empty: int = 0
    files: list = field(default_factory=list)  # the names of the files read
    canonical: bool | None = None  # SMILES rewritten in RDKit's canonical form (None: unrecorded)
    sources: dict = field(default_factory=dict)  # molecules kept per source
    token_counts: dict = field(default_factory=dict)  # occurrences of each token


def prepare_chunk(job: tuple[list[str], bool]) -> tuple:
    """In a worker: parse each SMILES once, write it canonically (``canonicalize``) and
    tokenize it. Returns the kept SMILES as one blob, their sizes and token counts, which
    were kept, the token counts, and the numbers rejected by RDKit and by the tokenizer."""
    from rdkit import Chem

    smiles_list, canonicalize = job
    kept, sizes, lengths, tokens = [], [], [], Counter()
    mask = np.zeros(len(smiles_list), dtype=bool)
    invalid = untokenizable = 0
    with quiet_rdkit():
        for i, smiles in enumerate(smiles_list):
            mol = parse_smiles(smiles)
            if mol is None:
                invalid += 1
                continue
            text = Chem.MolToSmiles(mol) if canonicalize else smiles.strip()
            try:
                pieces = tokenize_smiles(text)
            except ValueError:
                untokenizable += 1
                continue
            encoded = text.encode()
            kept.append(encoded)
            sizes.append(len(encoded))
            lengths.append(len(pieces) + 2)
            tokens.update(pieces)
            mask[i] = True
    return b"".join(kept), sizes, lengths, mask, tokens, invalid, untokenizable


def pack_corpus(
    paths: Sequence[Path],
    smiles_column: str | None,
    canonicalize: bool,
    directory: Path,
    limit: int | None = None,
    workers: int = 0,
) -> CorpusStats:
    """Read corpus files into a corpus folder; keep SMILES that RDKit parses and the SMILES
    regex tokenizes. Each molecule's source is the file's ``source`` column, or the file's
    name. Parsing runs in ``workers`` processes (0: here), a chunk at a time."""
    stats = CorpusStats(files=[Path(path).name for path in paths], canonical=canonicalize)
    writer = CorpusWriter(directory)
    token_counts: Counter = Counter()
    code_of: dict[str, int] = {}  # source name -> its index
    chunk_sources: deque = deque()  # the sources of the chunks sent to the workers, in order

    def jobs():
        """The SMILES of each chunk, for a worker; their sources wait in ``chunk_sources``."""
        for path in paths:
            has_source = SOURCE_COLUMN in table_columns(path)
            name = Path(path).name.split(".")[0]
            column = SOURCE_COLUMN if has_source else None
            for chunk in read_molecule_chunks(
                path, smiles_column=smiles_column, id_column=column, invalid="keep"
            ):
                usable = [r for r in chunk if not r.error]
                stats.read += len(chunk)
                stats.empty += len(chunk) - len(usable)
                chunk_sources.append([r.id if has_source else name for r in usable])
                yield [r.smiles for r in usable], canonicalize

    for result in map_in_order(prepare_chunk, jobs(), workers):
        blob, sizes, lengths, mask, tokens, invalid, untokenizable = result
        sources = [s for s, keep in zip(chunk_sources.popleft(), mask) if keep]
        if limit is not None and stats.kept + len(sizes) > limit:
            take = limit - stats.kept
            blob, sizes = blob[: sum(sizes[:take])], sizes[:take]
            lengths, sources = lengths[:take], sources[:take]
        writer.append(blob, sizes, lengths, [code_of.setdefault(s, len(code_of)) for s in sources])
        token_counts.update(tokens)
        stats.invalid_rdkit += invalid
        stats.untokenizable += untokenizable
        stats.kept += len(sizes)
        for name in sources:
            stats.sources[name] = stats.sources.get(name, 0) + 1
        if limit is not None and stats.kept >= limit:
            break
    writer.close(list(code_of))
    if not stats.kept:
        names = ", ".join(str(p) for p in paths)
        raise InputError(f"{names}: no valid SMILES (read {stats.read} records)")
    stats.token_counts = dict(token_counts.most_common())
    return stats


def has_descriptors(directory: Path) -> bool:
    """Whether a prepared corpus holds complete descriptors (the scaling is written last)."""
    return (Path(directory) / SCALING).is_file()


def check_corpus_file(path: Path) -> None:
    """A corpus file must exist and hold something (before any worker starts)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: file not found")
    if Path(path).stat().st_size == 0:
        raise InputError(f"{path}: file is empty")


def is_prepared_corpus(path: Path) -> bool:
    """A folder written by ``prepare_corpus`` (stats.json comes last: the folder is whole)."""
    return Path(path).is_dir() and (Path(path) / "stats.json").is_file()


def corpus_content_files(paths: Sequence[Path]) -> list[Path]:
    """The files whose bytes identify a corpus: corpus files as they are, a prepared corpus
    folder by its arrays and source names."""
    files = []
    for path in paths:
        if Path(path).is_dir():
            files += [Path(path) / f"{name}.npy" for name in ARRAYS]
            files.append(Path(path) / "sources.json")
            if has_descriptors(path):
                files += [Path(path) / DESCRIPTORS, Path(path) / SCALING]
        else:
            files.append(Path(path))
    return files


def corpus_fingerprint(paths: Sequence[Path], **options) -> str:
    """Identifies a corpus and its preparation options, to reuse a prepared copy safely."""
    # By content, not by path and modification time: a copied or re-synced corpus is the
    # same corpus.
    options = dict(options, version=PREPARATION_VERSION)
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def load_stats(directory: Path) -> CorpusStats:
    return CorpusStats(**json.loads((Path(directory) / "stats.json").read_text()))


def save_stats(stats: CorpusStats, directory: Path) -> None:
    """stats.json, written last: its presence says the folder is complete."""
    atomic_write_text(directory / "stats.json", json.dumps(asdict(stats)))
