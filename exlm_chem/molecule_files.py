"""Reading molecule files as streams of records.

Supported inputs (each may be gzipped, ``.gz``):

- ``.csv`` / ``.tsv``: a SMILES column chosen by name; by default the first column named
  smiles, mol or canonical_smiles (any case);
- ``.smi`` / ``.smiles`` / ``.txt`` and files without a known extension: one molecule per line,
  SMILES first, an optional name second (whitespace-separated). A ZINC tranche header line
  (``smiles zinc_id``) is skipped; PubChem ``CID-SMILES`` files (``cid<TAB>smiles``, no header)
  are recognised by their integer first field;
- ``.sdf`` / ``.sd``: read with RDKit, written out as canonical SMILES.

Files are read in chunks, so a file of any size streams in bounded memory. Every record keeps
its row number (1-based line number in text files, where a CSV header is line 1; 1-based
record number in SDF files) so that errors can name it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .errors import InputError
from .smiles import check_invalid_policy, quiet_rdkit

if TYPE_CHECKING:
    import numpy as np

DEFAULT_SMILES_COLUMNS = ("smiles", "mol", "canonical_smiles")
MISSING_VALUES = {"", "nan", "na", "none", "null"}
MAX_SMILES_CHARS = 4096
DEFAULT_CHUNK_SIZE = 10_000


class MoleculeRecord(NamedTuple):
    """One molecule read from a file. ``error`` says why the record is unusable, or is None."""

    row: int
    id: str
    smiles: str
    error: str | None = None


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _open_text(path: Path):
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    # Undecodable bytes become U+FFFD so that the record holding them can be named.
    # utf-8-sig: a byte-order mark at the start is not part of the first SMILES.
    return opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a molecule file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    _check_text(path)


def _check_text(path: Path, size: int = 8192) -> None:
    """A molecule file is text: its first bytes (decompressed) hold no NUL byte and are mostly
    UTF-8 (a stray byte is a row's error, named later); an SD file's first record ends its
    molecule block (``M  END``) or itself (``$$$$``)."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(size)
    except (EOFError, OSError, zlib.error):
        return  # a damaged archive: the reader names the record where it breaks
    text = head.decode("utf-8", errors="replace")
    undecodable = text.count("\ufffd")
    if b"\0" in head or (undecodable > 32 and undecodable > len(text) / 10):
        raise InputError(f"{path}: not a text file (binary data in its first bytes)")
    if _base_suffix(path) in (".sdf", ".sd") and not (
        "M  END" in text or "$$$$" in text or len(head) == size
    ):
        raise InputError(f"{path}: not an SD file (its first record has no 'M  END' or '$$$$')")


def _make_record(path: Path, row: int, mol_id: str, smiles: str, max_chars: int) -> MoleculeRecord:
    smiles = smiles.strip()
    error = None
    if "\ufffd" in smiles or "\ufffd" in mol_id:
        raise InputError(f"{path}: row {row}: bytes that are not valid UTF-8")
    if smiles.lower() in MISSING_VALUES:
        smiles, error = "", "empty SMILES"
    elif len(smiles) > max_chars:
        error = f"SMILES of {len(smiles)} characters is longer than the limit of {max_chars}"
    return MoleculeRecord(row, mol_id, smiles, error)


def _resolve_column(path: Path, columns: list[str], wanted: str | None, what: str) -> str:
    # Column names are shown quoted where they hold a newline or other unprintable text, so
    # that the message stays on one line.
    shown = ", ".join(c if c.isprintable() else repr(c) for c in columns)
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise InputError(f"{path}: no {what} column {wanted!r}; the columns are: {shown}")
    for candidate in DEFAULT_SMILES_COLUMNS:
        for column in columns:
            if column.strip().lower() == candidate:
                return column
    raise InputError(
        f"{path}: no SMILES column (looked for {', '.join(DEFAULT_SMILES_COLUMNS)}); "
        f"the columns are: {shown}; choose one with --smiles-column"
    )


def _read_table(
    path, smiles_column, id_column, chunk_size, max_chars
) -> Iterator[list[MoleculeRecord]]:
    import pandas as pd

    sep = "\t" if _base_suffix(path) == ".tsv" else ","
    options = dict(
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        skip_blank_lines=False,
        encoding="utf-8",
        encoding_errors="replace",
    )
    try:
        columns = list(pd.read_csv(path, nrows=0, **options).columns)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read as a table: {exc}") from None
    smiles_column = _resolve_column(path, columns, smiles_column, "SMILES")
    if id_column is not None:
        id_column = _resolve_column(path, columns, id_column, "id")
    usecols = [smiles_column] + ([id_column] if id_column and id_column != smiles_column else [])
    row = 2  # the header is line 1
    try:
        for frame in pd.read_csv(path, usecols=usecols, chunksize=chunk_size, **options):
            smiles_values = frame[smiles_column].tolist()
            ids = (
                frame[id_column].tolist()
                if id_column
                else [str(row + i) for i in range(len(frame))]
            )
            yield [
                _make_record(path, row + i, str(mol_id), s, max_chars)
                for i, (mol_id, s) in enumerate(zip(ids, smiles_values))
            ]
            row += len(frame)
    except (pd.errors.ParserError, EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read as a table near row {row}: {exc}") from None


def _in_chunks(records: Iterator[MoleculeRecord], size: int) -> Iterator[list[MoleculeRecord]]:
    chunk: list[MoleculeRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _read_lines(path, max_chars) -> Iterator[MoleculeRecord]:
    pubchem = None  # decided on the first data line
    try:
        with _open_text(path) as handle:
            for row, line in enumerate(handle, start=1):
                fields = line.split()
                if not fields or fields[0].startswith("#"):
                    continue
                if pubchem is None:
                    if fields[0].lower() in ("smiles", "smi"):
                        continue  # a header line, as in ZINC tranche files
                    pubchem = fields[0].isdigit() and len(fields) >= 2
                if pubchem:
                    mol_id, smiles = fields[0], fields[1] if len(fields) > 1 else ""
                else:
                    smiles, mol_id = fields[0], fields[1] if len(fields) > 1 else str(row)
                yield _make_record(path, row, mol_id, smiles, max_chars)
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None


def _read_sdf(path, id_column, max_chars) -> Iterator[MoleculeRecord]:
    from rdkit import Chem

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    prop = id_column or "_Name"
    row = 0
    try:
        with opener(path, "rb") as handle, quiet_rdkit():
            for row, mol in enumerate(Chem.ForwardSDMolSupplier(handle), start=1):
                if mol is None:
                    yield MoleculeRecord(row, str(row), "", "RDKit cannot read this SDF record")
                else:
                    mol_id = mol.GetProp(prop) if mol.HasProp(prop) else ""
                    yield _make_record(
                        path, row, mol_id or str(row), Chem.MolToSmiles(mol), max_chars
                    )
    except (EOFError, OSError, zlib.error, RuntimeError, SystemError) as exc:
        # A damaged or truncated (gzipped) file; RDKit's reader raises SystemError for it.
        reason = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        raise InputError(f"{path}: cannot read after record {row}: {reason}") from None


def read_molecule_chunks(
    path: str | os.PathLike,
    smiles_column: str | None = None,
    id_column: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    invalid: str = "raise",
    max_smiles_chars: int = MAX_SMILES_CHARS,
) -> Iterator[list[MoleculeRecord]]:
    """Stream a molecule file as lists of at most ``chunk_size`` records.

    ``invalid="raise"`` stops at the first empty or over-long SMILES with an `InputError` that
    names the file and row; ``invalid="keep"`` yields such records with their ``error`` set.
    Bytes that are not UTF-8 always raise. A file with no molecules raises `InputError`.
    """
    check_invalid_policy(invalid, ("raise", "keep"))
    path = Path(path)
    _check_readable(path)
    suffix = _base_suffix(path)
    if suffix in (".csv", ".tsv"):
        chunks = _read_table(path, smiles_column, id_column, chunk_size, max_smiles_chars)
    elif suffix in (".sdf", ".sd"):
        chunks = _in_chunks(_read_sdf(path, id_column, max_smiles_chars), chunk_size)
    else:
        chunks = _in_chunks(_read_lines(path, max_smiles_chars), chunk_size)
    found = False
    for chunk in chunks:
        if invalid == "raise":
            for record in chunk:
                if record.error:
                    raise InputError(f"{path}: row {record.row}: {record.error}")
        found = found or bool(chunk)
        yield chunk
    if not found:
        raise InputError(f"{path}: no molecules found")


def table_columns(path: str | os.PathLike) -> list[str]:
    """The header of a ``.csv``/``.tsv`` file (optionally gzipped); [] for other formats."""
    import pandas as pd

    path = Path(path)
    if _base_suffix(path) not in (".csv", ".tsv"):
        return []
    sep = "\t" if _base_suffix(path) == ".tsv" else ","
    try:
        return list(pd.read_csv(path, nrows=0, sep=sep, dtype=str).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read as a table: {exc}") from None


def estimate_records(path: str | os.PathLike) -> int:
    """About how many molecules a file holds, counted cheaply: its lines (less a table's
    header) or its SDF record ends. For progress reports, not for logic."""
    path = Path(path)
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    suffix = _base_suffix(path)
    count = 0
    try:
        with opener(path, "rb") as handle:
            if suffix in (".sdf", ".sd"):
                count = sum(line.startswith(b"$$$$") for line in handle)
            else:
                while block := handle.read(1 << 24):
                    count += block.count(b"\n")
    except (EOFError, OSError, zlib.error):
        pass  # the reader itself reports a damaged file, with its row
    return max(count - (suffix in (".csv", ".tsv")), 0)


def read_molecules(path: str | os.PathLike, **options) -> Iterator[MoleculeRecord]:
    """Stream a molecule file record by record (options as in `read_molecule_chunks`)."""
    for chunk in read_molecule_chunks(path, **options):
        yield from chunk


def read_smiles(path: str | os.PathLike, **options) -> list[str]:
    """All SMILES of a file as a list (for files that fit in memory)."""
    return [record.smiles for record in read_molecules(path, **options)]


def read_labelled_table(
    path: str | os.PathLike, targets: list[str], smiles_column: str | None = None
) -> tuple[list[str], np.ndarray]:
    """SMILES and numeric targets (n, len(targets)) of a ``.csv``/``.tsv`` file, NaN where a
    target cell is empty. InputError naming the file, column and line for a missing or
    non-numeric target, or a row without a SMILES."""
    import numpy as np  # noqa: F811 (imported for type checkers above)
    import pandas as pd

    path = Path(path)
    _check_readable(path)
    if _base_suffix(path) not in (".csv", ".tsv"):
        raise InputError(f"{path}: labelled data must be a .csv or .tsv file (optionally .gz)")
    columns = table_columns(path)
    smiles_column = _resolve_column(path, columns, smiles_column, "SMILES")
    if not targets:
        raise InputError(f"{path}: give at least one target column (--target)")
    for target in targets:
        _resolve_column(path, columns, target, "target")
    sep = "\t" if _base_suffix(path) == ".tsv" else ","
    try:
        frame = pd.read_csv(
            path, sep=sep, usecols=[smiles_column, *targets], dtype=str, keep_default_na=False
        )
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError, zlib.error) as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read as a table: {reason}") from None
    y = np.full((len(frame), len(targets)), np.nan)
    for t, target in enumerate(targets):
        for i, text in enumerate(frame[target]):
            if text.strip().lower() in MISSING_VALUES:
                continue
            try:
                y[i, t] = float(text)
            except ValueError:
                raise InputError(
                    f"{path}: line {i + 2}: target {target!r} is not a number: {text!r}"
                ) from None
            if not np.isfinite(y[i, t]):
                raise InputError(f"{path}: line {i + 2}: target {target!r} is {text!r}")
    smiles = [s.strip() for s in frame[smiles_column]]
    for i, s in enumerate(smiles):
        if s.lower() in MISSING_VALUES:
            raise InputError(f"{path}: line {i + 2}: empty SMILES")
    if not smiles:
        raise InputError(f"{path}: no molecules found")
    return smiles, y
