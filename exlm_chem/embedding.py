"""Molecule embeddings: load a model, embed SMILES, and embed whole files in a stream."""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .errors import InputError
from .model import ExLMModel, load_model


DEFAULT_BATCH_SIZE = 128
PRECISIONS = ("fp32", "bf16")
OUTPUT_FORMATS = (".parquet", ".npy", ".csv")


def model_fingerprint(model: ExLMModel) -> str:
    """A short hash of a model's weights and config: a cache key for featurized data."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update("".join(model.tokenizer.id_to_token).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class PreparedSmiles(NamedTuple):
    """What the model reads for each input molecule, or why it cannot read it."""

    smiles: list[str | None]  # the SMILES read; None where the molecule is invalid
    tokens: list[list[str] | None]  # its tokens, so that nothing is tokenized twice
    errors: list[str | None]  # the reason, None where valid


def prepare_smiles(molecules: Sequence, tokenizer, canonicalize: bool = True) -> PreparedSmiles:
    """The SMILES (and tokens) the model reads for each input, or the reason it is invalid.

    molecules: SMILES strings or RDKit molecules. Each string is parsed by RDKit once and each
    chosen SMILES tokenized once. Invalid: not a string, empty, whitespace inside (``C C`` is
    not methane), not parsed by RDKit, or not tokenizable.

    canonicalize: write RDKit's canonical SMILES, the form the pretraining corpus is in, so
    that every way of writing a molecule gets the same vector; stereochemistry is kept only
    when the model's vocabulary has stereo tokens (a model that never saw ``@``, ``/`` or
    ``\\`` would read them as unknown tokens and lose the atom). Otherwise, or where the
    canonical SMILES cannot be tokenized (RDKit writes dative bonds as ``->``), the SMILES is
    used as given, without surrounding whitespace.
    """
    from .tokenizer import quiet_rdkit

    stereo = any("@" in token or token in ("/", "\\") for token in tokenizer.id_to_token)
    prepared = PreparedSmiles([], [], [])
    with quiet_rdkit():
        for molecule in molecules:
            for column, value in zip(prepared, _prepare_one(molecule, tokenizer, canonicalize, stereo)):
                column.append(value)
    return prepared


def _prepare_one(molecule, tokenizer, canonicalize: bool, stereo: bool) -> tuple[str | None, list[str] | None, str | None]:
    from rdkit import Chem

    from .tokenizer import parse_smiles, smiles_problem

    if isinstance(molecule, Chem.Mol):
        mol, text = molecule, Chem.MolToSmiles(molecule, isomericSmiles=stereo)
    else:
        problem = smiles_problem(molecule)
        if problem is not None:
            return None, None, problem
        text = molecule.strip()
        mol = parse_smiles(text)
        if mol is None:
            return None, None, "RDKit cannot parse it"
    candidates = [Chem.MolToSmiles(mol, isomericSmiles=stereo), text] if canonicalize else [text]
    for candidate in dict.fromkeys(candidates):
        try:
            return candidate, tokenizer.tokenize(candidate), None
        except ValueError:
            continue
    return None, None, "cannot be tokenized"


class Embedded(NamedTuple):
    """Vectors of a list of molecules in input order, with what was lost reading each."""

    vectors: np.ndarray  # (n, d) float32; NaN rows for invalid molecules
    errors: list[str | None]  # why a molecule is invalid, None where valid
    unknown_atoms: np.ndarray  # (n,) int: tokens outside the vocabulary, read as <unk>
    truncated: np.ndarray  # (n,) bool: cut to the model's max_length
    fallback_atoms: np.ndarray  # (n,) int: atoms read as a nearby known token (none yet)

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
            parts.append(f"{counts['unknown_atoms']} with atoms outside the model's vocabulary (read as <unk>)")
        if counts["fallback_atoms"]:
            parts.append(f"{counts['fallback_atoms']} with atoms read as a nearby known token")
        if counts["truncated"]:
            parts.append(f"{counts['truncated']} truncated to {max_length} tokens")
        valid = counts["molecules"] - counts["invalid"]
        return f"of {valid} valid molecules, " + "; ".join(parts) if parts else None


def embed_molecules(
    smiles: Sequence[str], model: ExLMModel, pooling: str, batch_size: int, precision: str, canonicalize: bool
) -> Embedded:
    """Prepare, embed the valid molecules, and put them back in input order: the one path
    behind `embed`, `embed_file` and `ExLMFeaturizer`."""
    prepared = prepare_smiles(smiles, model.tokenizer, canonicalize)
    n = len(prepared.smiles)
    vectors = np.full((n, model.config.hidden_size), np.nan, dtype=np.float32)
    unknown = np.zeros(n, dtype=np.int64)
    truncated = np.zeros(n, dtype=bool)
    good = np.array([i for i, p in enumerate(prepared.tokens) if p is not None], dtype=np.int64)
    if len(good):
        vectors[good], unknown[good], truncated[good] = _embed_tokens(
            [prepared.tokens[i] for i in good], model, pooling, batch_size, precision
        )
    return Embedded(vectors, prepared.errors, unknown, truncated, np.zeros(n, dtype=np.int64))


def embed(
    smiles: Iterable[str] | str,
    model: ExLMModel | str | Path | None = None,
    pooling: str = "mean",
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    errors: str = "warn",
    canonicalize: bool = True,
    strict_atoms: bool = False,
) -> np.ndarray:
    """Embed SMILES as an (n, d) float32 array, rows in input order.

    A single string is one molecule: ``embed("CCO")`` has shape (1, d).

    Molecules are embedded in batches of similar length (sorted, embedded, put back in order)
    under ``torch.inference_mode``. A SMILES that is invalid (see `prepare_smiles`) gets a row
    of NaN and a warning listing the indices (``errors="warn"``), a row of NaN silently
    (``"ignore"``), or an InputError (``"raise"``). Molecules with atoms outside the model's
    vocabulary or cut at its maximum length are embedded and counted in one warning (unless
    ``errors="ignore"``); ``strict_atoms=True`` raises an InputError naming the first instead.

    precision: ``fp32`` (reproducible across runs and batch sizes) or ``bf16`` (the fast path
    on CPUs and GPUs with native bf16 matrix maths).

    canonicalize: embed RDKit's canonical SMILES of each molecule (see `prepare_smiles`), so
    that different SMILES of one molecule get the same vector; False embeds the text as given.
    """
    if errors not in ("warn", "ignore", "raise"):
        raise InputError(f"errors must be 'warn', 'ignore' or 'raise', not {errors!r}")
    smiles = [smiles] if isinstance(smiles, str) else list(smiles)
    model = load_model(model, device)
    result = embed_molecules(smiles, model, pooling, batch_size, precision, canonicalize)
    invalid = np.flatnonzero(~result.valid)
    if len(invalid) and errors == "raise":
        i = int(invalid[0])
        raise InputError(f"invalid SMILES at index {i} ({result.errors[i]}): {smiles[i]!r}")
    if len(invalid) and errors == "warn":
        shown = ", ".join(map(str, invalid[:20])) + (" ..." if len(invalid) > 20 else "")
        warnings.warn(f"{len(invalid)} invalid SMILES got NaN embeddings (indices {shown})", stacklevel=2)
    lossy = np.flatnonzero(result.not_read_in_full)
    if strict_atoms and len(lossy):
        i = int(lossy[0])
        raise InputError(f"SMILES at index {i} is not read in full ({result.not_read_in_full_reason(i)}): {smiles[i]!r}")
    summary = result.summary(model.config.max_length)
    if summary and errors != "ignore":
        warnings.warn(summary, stacklevel=2)
    return result.vectors


def _embed_tokens(tokens: Sequence[list[str]], model: ExLMModel, pooling: str, batch_size: int, precision: str):
    """Vectors, unknown-token counts and truncation flags of molecules tokenized by `prepare_smiles`."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, not {batch_size}")
    tokenizer = model.tokenizer
    device = next(model.parameters()).device
    if precision == "bf16":
        # A bfloat16 copy of the weights for this call: under autocast every layer would cast
        # its weights and its float32 activations again for every batch.
        model = copy.deepcopy(model).to(torch.bfloat16)
    # Sort by length so that each batch holds molecules of similar size.
    order = np.argsort([len(t) for t in tokens], kind="stable")
    out = np.empty((len(tokens), model.config.hidden_size), dtype=np.float32)
    unknown = np.zeros(len(tokens), dtype=np.int64)
    truncated = np.zeros(len(tokens), dtype=bool)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, report = tokenizer.encode_tokens_with_report([tokens[i] for i in rows])
            pooled = model.embed_states(ids.to(device), pooling=pooling).pooled
            out[rows] = pooled.float().cpu().numpy()
            unknown[rows], truncated[rows] = report.unknown_tokens, report.truncated
    model.train(was_training)
    return out, unknown, truncated


# -- files ---------------------------------------------------------------------------------------


def default_output_path(input_path: Path) -> Path:
    """``screen.plate1.csv.gz`` -> ``screen.plate1.embeddings.parquet`` beside it."""
    from .io import molecule_file_stem

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


_NPY_HEADER_BYTES = 128  # room for any (rows, dim) shape, so the header is rewritten in place


def _npy_header(rows: int, dim: int) -> bytes:
    """A .npy version 1.0 header of fixed size for a C-ordered float32 (rows, dim) array."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    body = text.ljust(_NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


class _EmbeddingWriter:
    """Appends chunks of rows (id, smiles, flags, vector) to a temporary file in one format."""

    def __init__(self, path: Path, suffix: str, dim: int):
        self.path, self.suffix, self.dim, self.rows = path, suffix, dim, 0
        self._parquet = None
        self._raw = None
        if suffix == ".npy":
            # The header's row count is written again when the file is complete.
            self._raw = open(path, "wb")
            self._raw.write(_npy_header(0, dim))

    def write(self, columns: dict, vectors: np.ndarray) -> None:
        """``columns``: per-row values (id, smiles, valid, ...) in output order."""
        if self.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), self.dim)
            table = pa.table({**columns, "embedding": embedding})
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        elif self.suffix == ".npy":
            self._raw.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        else:
            import pandas as pd

            frame = pd.concat([pd.DataFrame(columns), pd.DataFrame(vectors, columns=[f"exlm_{i}" for i in range(self.dim)])], axis=1)
            frame.to_csv(self.path, mode="a", header=self.rows == 0, index=False, float_format="%.7g")
        self.rows += len(vectors)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._raw is not None:
            self._raw.seek(0)
            self._raw.write(_npy_header(self.rows, self.dim))
            self._raw.close()


def embed_file(
    input_path: str | Path,
    output_path: str | Path | None = None,
    smiles_column: str | None = None,
    id_column: str | None = None,
    model: ExLMModel | str | Path | None = None,
    pooling: str = "mean",
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | None = None,
    precision: str = "fp32",
    invalid: str = "keep",
    canonicalize: bool = True,
    shard: tuple[int, int] | None = None,
    chunk_size: int = 10_000,
    progress: bool | None = None,
    overwrite: bool = False,
    strict_atoms: bool = False,
) -> dict:
    """Embed a molecule file into ``.parquet``, ``.npy`` or ``.csv`` (chosen by extension).

    Streams: chunks are read, embedded and appended, so memory stays flat on any file size.
    invalid: ``keep`` (rows flagged invalid with NaN vectors), ``skip`` (dropped) or ``strict``
    (InputError at the first, naming its row). strict_atoms: InputError at the first molecule
    with an atom outside the model's vocabulary or longer than its maximum length.
    canonicalize: as in `embed`; the output keeps the SMILES as read. shard (I, N): only the
    I-th of N contiguous slices of the input.

    The output (default: ``INPUT-STEM.embeddings.parquet`` beside the input) may not be the
    input; an existing file is replaced only with ``overwrite``, and only once the new one is
    complete (temp file + rename). Parquet and CSV outputs carry, per molecule, ``valid``,
    ``unknown_atoms``, ``fallback_atoms`` and ``truncated`` beside the vector.
    Returns counts: molecules read, written, invalid, with unknown atoms, truncated, and the
    output path.
    """
    from .io import atomic_path, check_output_file, estimate_records, read_molecule_chunks
    from .progress import Progress

    if invalid not in ("keep", "skip", "strict"):
        raise InputError(f"invalid must be 'keep', 'skip' or 'strict', not {invalid!r}")
    input_path = Path(input_path)
    output_path = Path(output_path) if output_path else default_output_path(input_path)
    suffix = output_path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InputError(f"{output_path}: output must end in {', '.join(OUTPUT_FORMATS)}")
    check_output_file(output_path, [input_path], overwrite)
    model = load_model(model, device)
    reader = dict(smiles_column=smiles_column, id_column=id_column, chunk_size=chunk_size, errors="keep")
    first, last = 0, None
    if shard is not None:
        total = sum(len(chunk) for chunk in read_molecule_chunks(input_path, **reader))
        first, last = total * shard[0] // shard[1], total * (shard[0] + 1) // shard[1]
    expected = last - first if last is not None else estimate_records(input_path)
    counts = Counter(molecules=0, written=0, invalid=0, unknown_atoms=0, fallback_atoms=0, truncated=0)
    seen = 0
    with atomic_path(output_path) as tmp, Progress(expected, "molecules", enabled=progress) as bar:
        writer = _EmbeddingWriter(tmp, suffix, model.config.hidden_size)
        try:
            for chunk in read_molecule_chunks(input_path, **reader):
                begin, seen = seen, seen + len(chunk)
                if last is not None:
                    chunk = chunk[max(first - begin, 0) : max(last - begin, 0)]
                if not chunk:
                    continue
                smiles = [r.smiles for r in chunk]
                result = embed_molecules(smiles, model, pooling, batch_size, precision, canonicalize)
                # The reader's reasons (an over-long SMILES, say) come first.
                result = result._replace(errors=[r.error or e for r, e in zip(chunk, result.errors)])
                valid = result.valid
                if invalid == "strict" and not valid.all():
                    i = int(np.flatnonzero(~valid)[0])
                    raise InputError(f"{input_path}: row {chunk[i].row}: {result.errors[i]}: {chunk[i].smiles[:80]!r}")
                lossy = np.flatnonzero(result.not_read_in_full)
                if strict_atoms and len(lossy):
                    i = int(lossy[0])
                    raise InputError(
                        f"{input_path}: row {chunk[i].row}: not read in full ({result.not_read_in_full_reason(i)}): "
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
                bar.update(len(chunk))
        finally:
            writer.close()
        if counts["written"] == 0:
            raise InputError(f"{input_path}: no valid molecules to write")
    return {**counts, "output": str(output_path)}
