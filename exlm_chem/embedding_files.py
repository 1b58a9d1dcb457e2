"""Embedding whole molecule files: streamed in chunks, written atomically, flagged per row."""

from __future__ import annotations

from collections import Counter, deque
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import defaults
from .embedding import embed_chunks, embed_workers
from .errors import InputError
from .model import ExLMModel, check_pooling, load_model, model_fingerprint, vector_names
from .molecule_files import estimate_records, read_molecule_chunks
from .outputs import NpyAppender, atomic_path, check_output_file, molecule_file_stem
from .progress import Progress
from .smiles import check_invalid_policy

OUTPUT_FORMATS = (".parquet", ".npy", ".csv")


def default_output_path(input_path: Path) -> Path:
    """``screen.plate1.csv.gz`` -> ``screen.plate1.embeddings.parquet`` beside it."""
    return input_path.with_name(f"{molecule_file_stem(input_path)}.embeddings.parquet")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' (0 <= I < N) -> (I, N)."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like I/N (e.g. 0/4), not {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise InputError(f"--shard {text}: need 0 <= I < N")
    return index, count


class _EmbeddingWriter:
    """Appends chunks of rows (id, smiles, flags, vector) to a temporary file in one format.

    names: the vector's numbers (CSV columns); metadata: what made the file (Parquet)."""

    def __init__(self, path: Path, suffix: str, names: list[str], metadata: dict[str, str]):
        self.path, self.suffix, self.names, self.metadata = path, suffix, names, metadata
        self.dim, self.rows = len(names), 0
        dim = self.dim
        self._parquet = None
        self._raw = self._npy = None
        if suffix == ".npy":
            self._raw = open(path, "wb")
            self._npy = NpyAppender(self._raw, "<f4", (dim,))

    def write(self, columns: dict, vectors: np.ndarray) -> None:
        """``columns``: per-row values (id, smiles, valid, ...) in output order."""
        if self.suffix == ".parquet":
            embedding = pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1), type=pa.float32()), self.dim
            )
            table = pa.table({**columns, "embedding": embedding}, metadata=self.metadata)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        elif self.suffix == ".npy":
            self._npy.append(
                np.ascontiguousarray(vectors, dtype=np.float32).tobytes(), len(vectors)
            )
        else:
            frame = pd.concat(
                [
                    pd.DataFrame(columns),
                    pd.DataFrame(vectors, columns=self.names),
                ],
                axis=1,
            )
            frame.to_csv(
                self.path, mode="a", header=self.rows == 0, index=False, float_format="%.7g"
            )
        self.rows += len(vectors)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._raw is not None:
            self._npy.finish()
            self._raw.close()


def _chunks_in_slice(chunks, first: int, last: int | None):
    """The chunks cut to records first..last-1 (to the end when ``last`` is None)."""
    seen = 0
    for chunk in chunks:
        begin, seen = seen, seen + len(chunk)
        end = len(chunk) if last is None else max(last - begin, 0)
        chunk = chunk[max(first - begin, 0) : end]
        if chunk:
            yield chunk


def embed_file(
    input_path: str | Path,
    output_path: str | Path | None = None,
    smiles_column: str | None = None,
    id_column: str | None = None,
    model: ExLMModel | str | Path | None = None,
    pooling: str = defaults.POOLING,
    batch_size: int | None = None,
    device: str | None = None,
    precision: str = defaults.PRECISION,
    invalid: str = "keep",
    canonicalize: bool = True,
    shard: tuple[int, int] | None = None,
    chunk_size: int = 10_000,
    progress: bool | None = None,
    overwrite: bool = False,
    strict_atoms: bool = False,
    workers: int | None = None,
) -> dict:
    """Embed a molecule file into ``.parquet``, ``.npy`` or ``.csv`` (chosen by extension).

    Streams: chunks are read, embedded and appended, so memory stays flat on any file size.
    invalid: ``keep`` (rows flagged invalid with NaN vectors), ``skip`` (dropped) or ``raise``
    (InputError at the first, naming its row). strict_atoms: InputError at the first molecule
    with an atom outside the model's vocabulary or longer than its maximum length.
    canonicalize: as in `embed`; the output keeps the SMILES as read. shard (I, N): only the
    I-th of N contiguous slices of the input. workers: processes that parse and tokenize the
    next chunks while the model embeds the current one (0: all in this process; default: see
    `embed_workers`); the output is the same whatever their number.

    The output (default: ``INPUT-STEM.embeddings.parquet`` beside the input) may not be the
    input; an existing file is replaced only with ``overwrite``, and only once the new one is
    complete (temp file + rename). Parquet and CSV outputs carry, per molecule, ``valid``,
    ``unknown_atoms``, ``fallback_atoms`` and ``truncated`` beside the vector.
    Returns counts: molecules read, written, invalid, with unknown atoms, truncated, and the
    output path.
    """
    check_invalid_policy(invalid)
    if workers is not None and workers < 0:
        raise InputError(f"--workers must be 0 (none) or more, not {workers}")
    input_path = Path(input_path)
    output_path = Path(output_path) if output_path else default_output_path(input_path)
    suffix = output_path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InputError(f"{output_path}: output must end in {', '.join(OUTPUT_FORMATS)}")
    check_output_file(output_path, [input_path], overwrite)
    check_pooling(pooling)
    model = load_model(model, device)
    reader = dict(
        smiles_column=smiles_column, id_column=id_column, chunk_size=chunk_size, invalid="keep"
    )
    total = estimate_records(input_path)
    first, last = 0, None
    if shard is not None:
        # Cut at the cheap count (no record parsed to count it), the last shard running to
        # the end: any count that every shard shares gives disjoint slices covering the file.
        index, count = shard
        first = total * index // count
        last = total * (index + 1) // count if index < count - 1 else None
    expected = (total if last is None else last) - first
    counts = Counter(
        molecules=0, written=0, invalid=0, unknown_atoms=0, fallback_atoms=0, truncated=0
    )
    workers = embed_workers(next(model.parameters()).device) if workers is None else workers
    records_ahead: deque = deque()  # the record chunks whose SMILES are being prepared

    def smiles_of(chunks):
        for chunk in chunks:
            records_ahead.append(chunk)
            yield ["" if r.error else r.smiles for r in chunk]  # a flagged record: no vector

    chunks = _chunks_in_slice(read_molecule_chunks(input_path, **reader), first, last)
    with (
        atomic_path(output_path) as tmp,
        Progress(expected, "molecules", enabled=progress) as bar,
        closing(  # stops the workers on an error
            embed_chunks(
                smiles_of(chunks),
                model,
                pooling,
                batch_size,
                precision,
                canonicalize,
                workers,
                on_batch=bar.update,
            )
        ) as results,
    ):
        names = vector_names(model.config.hidden_size, pooling)
        made_by = {
            "exlm_chem.pooling": pooling,
            "exlm_chem.model": model.name or "a model loaded in Python",
            "exlm_chem.weights": model_fingerprint(model),
        }
        writer = _EmbeddingWriter(tmp, suffix, names, made_by)
        try:
            for result in results:
                chunk = records_ahead.popleft()
                smiles = [r.smiles for r in chunk]
                errors = [r.error or error for r, error in zip(chunk, result.errors)]
                result = result._replace(errors=errors)
                bar.update(len(chunk) - int(result.valid.sum()))  # the molecules not embedded
                valid = result.valid
                if invalid == "raise" and not valid.all():
                    i = int(np.flatnonzero(~valid)[0])
                    raise InputError(
                        f"{input_path}: row {chunk[i].row}: {result.errors[i]}: "
                        f"{chunk[i].smiles[:80]!r}"
                    )
                lossy = np.flatnonzero(result.not_read_in_full)
                if strict_atoms and len(lossy):
                    i = int(lossy[0])
                    raise InputError(
                        f"{input_path}: row {chunk[i].row}: not read in full "
                        f"({result.not_read_in_full_reason(i)}): "
                        f"{chunk[i].smiles[:80]!r}; drop --strict-atoms to embed it anyway"
                    )
                keep = np.flatnonzero(valid) if invalid == "skip" else np.arange(len(chunk))
                columns = {
                    "id": [chunk[i].id for i in keep],
                    "smiles": [smiles[i] for i in keep],
                    "valid": valid[keep],
                    "unknown_atoms": result.unknown_atoms[keep],
                    "fallback_atoms": result.fallback_atoms[keep],
                    "truncated": result.truncated[keep],
                }
                writer.write(columns, result.vectors[keep])
                counts.update(result.counts())
                counts["written"] += len(keep)
        finally:
            writer.close()
        if counts["written"] == 0:
            raise InputError(f"{input_path}: no valid molecules to write")
    return {**counts, "output": str(output_path)}
