"""Molecule embeddings: load a model, embed SMILES, and embed whole files in a stream."""

from __future__ import annotations

import copy
import sys
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .model import ExLMModel, load_model_directory


DEFAULT_BATCH_SIZE = 128
PRECISIONS = ("fp32", "bf16")
OUTPUT_FORMATS = (".parquet", ".npy", ".csv")


def load_model(path: str | Path | None = None, device: str | torch.device | None = None) -> ExLMModel:
    """A model directory, or with no path the default model shipped inside the package.

    The tokenizer comes with it as ``model.tokenizer``. The model is in eval mode. Each call
    returns a model of its own: fine-tuning one leaves the next one as shipped.
    """
    if path is None:
        # The default model is read once per process; callers get copies.
        return copy.deepcopy(_load_default_model(str(device) if device is not None else None))
    return load_model_directory(path, device=device)


@lru_cache(maxsize=2)
def _load_default_model(device: str | None) -> ExLMModel:
    from .environment import default_model_dir

    return load_model_directory(default_model_dir(), device=device)


def resolve_model(model: ExLMModel | str | Path | None, device=None) -> ExLMModel:
    """An ExLMModel as given, or loaded from a directory / the default."""
    if isinstance(model, ExLMModel):
        if model.tokenizer is None:
            raise InputError("the model has no tokenizer attached; load it with exlm_chem.load_model")
        return model.to(device) if device is not None else model
    return load_model(model, device=device)


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


def prepare_smiles(smiles: Sequence[str], tokenizer, canonicalize: bool = True) -> list[str | None]:
    """The SMILES the model reads for each input; None where RDKit cannot parse it or it cannot
    be tokenized.

    canonicalize: write RDKit's canonical SMILES, the form the pretraining corpus is in, so
    that every way of writing a molecule gets the same vector; stereochemistry is kept only
    when the model's vocabulary has stereo tokens (a model that never saw ``@``, ``/`` or
    ``\\`` would read them as unknown tokens and lose the atom). Otherwise, or where the
    canonical SMILES cannot be tokenized (RDKit writes dative bonds as ``->``), the SMILES is
    used as given, without surrounding whitespace.
    """
    from rdkit import Chem

    from .tokenizer import parse_smiles

    stereo = any("@" in token or token in ("/", "\\") for token in tokenizer.id_to_token)
    prepared: list[str | None] = []
    for s in smiles:
        text = s.strip() if isinstance(s, str) else ""
        mol = parse_smiles(text) if text else None
        if mol is None:
            prepared.append(None)
            continue
        candidates = [Chem.MolToSmiles(mol, isomericSmiles=stereo), text] if canonicalize else [text]
        prepared.append(next((c for c in candidates if _tokenizes(c, tokenizer)), None))
    return prepared


def _tokenizes(smiles: str, tokenizer) -> bool:
    try:
        tokenizer.tokenize(smiles)
    except ValueError:
        return False
    return True


def embed(
    smiles: Iterable[str],
    model: ExLMModel | str | Path | None = None,
    pooling: str = "mean",
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    errors: str = "warn",
    canonicalize: bool = True,
) -> np.ndarray:
    """Embed SMILES as an (n, d) float32 array, rows in input order.

    Molecules are embedded in batches of similar length (sorted, embedded, put back in order)
    under ``torch.inference_mode``. A SMILES that RDKit cannot parse (or that cannot be
    tokenized) gets a row of NaN and a warning listing the indices (``errors="warn"``), a row of
    NaN silently (``"ignore"``), or an InputError (``"raise"``).

    precision: ``fp32`` (reproducible across runs and batch sizes) or ``bf16`` (autocast, the
    fast path on CPUs and GPUs with native bf16 matrix maths).

    canonicalize: embed RDKit's canonical SMILES of each molecule (see `prepare_smiles`), so
    that different SMILES of one molecule get the same vector; False embeds the text as given.
    """
    if errors not in ("warn", "ignore", "raise"):
        raise InputError(f"errors must be 'warn', 'ignore' or 'raise', not {errors!r}")
    smiles = list(smiles)
    model = resolve_model(model, device)
    prepared = prepare_smiles(smiles, model.tokenizer, canonicalize)
    valid = np.array([p is not None for p in prepared], dtype=bool)
    invalid = np.flatnonzero(~valid)
    if len(invalid):
        if errors == "raise":
            raise InputError(f"invalid SMILES at index {invalid[0]}: {smiles[invalid[0]]!r}")
        if errors == "warn":
            shown = ", ".join(map(str, invalid[:20])) + (" ..." if len(invalid) > 20 else "")
            warnings.warn(f"{len(invalid)} invalid SMILES got NaN embeddings (indices {shown})", stacklevel=2)
    out = np.full((len(smiles), model.config.hidden_size), np.nan, dtype=np.float32)
    good = np.flatnonzero(valid)
    out[good] = embed_valid([prepared[i] for i in good], model, pooling, batch_size, precision)
    return out


def embed_valid(smiles: Sequence[str], model: ExLMModel, pooling: str, batch_size: int, precision: str) -> np.ndarray:
    """Embeddings of SMILES already prepared by `prepare_smiles` (no checks), in input order."""
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
    order = np.argsort([len(s) for s in smiles], kind="stable")
    out = np.empty((len(smiles), model.config.hidden_size), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids = tokenizer.encode_batch([smiles[i] for i in rows]).to(device)
            pooled = model.embed_states(ids, pooling=pooling).pooled
            out[rows] = pooled.float().cpu().numpy()
    model.train(was_training)
    return out


# -- files ---------------------------------------------------------------------------------------


def default_output_path(input_path: Path) -> Path:
    """``molecules.csv.gz`` -> ``molecules.embeddings.parquet`` beside it."""
    name = input_path.name
    for suffix in reversed(input_path.suffixes):
        name = name.removesuffix(suffix)
    return input_path.with_name(f"{name}.embeddings.parquet")


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
    """Appends chunks of (ids, smiles, valid, vectors) to a temporary file in one format."""

    def __init__(self, path: Path, suffix: str, dim: int):
        self.path, self.suffix, self.dim, self.rows = path, suffix, dim, 0
        self._parquet = None
        self._raw = open(path, "wb") if suffix == ".npy" else None

    def write(self, ids, smiles, valid, vectors) -> None:
        if self.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), self.dim)
            table = pa.table({"id": pa.array(ids, pa.string()), "smiles": pa.array(smiles, pa.string()), "valid": pa.array(valid), "embedding": embedding})
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        elif self.suffix == ".npy":
            self._raw.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        else:
            import pandas as pd

            frame = pd.DataFrame(vectors, columns=[f"exlm_{i}" for i in range(self.dim)])
            frame.insert(0, "valid", valid)
            frame.insert(0, "smiles", smiles)
            frame.insert(0, "id", ids)
            frame.to_csv(self.path, mode="a", header=self.rows == 0, index=False, float_format="%.7g")
        self.rows += len(vectors)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._raw is not None:
            self._raw.close()
            # Prepend the .npy header now that the row count is known, streaming the rows.
            raw = self.path.with_suffix(".raw")
            self.path.rename(raw)
            with open(self.path, "wb") as out, open(raw, "rb") as source:
                np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dim)})
                while block := source.read(1 << 24):
                    out.write(block)
            raw.unlink()


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
) -> dict:
    """Embed a molecule file into ``.parquet``, ``.npy`` or ``.csv`` (chosen by extension).

    Streams: chunks are read, embedded and appended, so memory stays flat on any file size.
    invalid: ``keep`` (rows flagged invalid with NaN vectors), ``skip`` (dropped) or ``strict``
    (InputError at the first, naming its row). canonicalize: as in `embed`; the output keeps
    the SMILES as read. shard (I, N): only the I-th of N contiguous
    slices of the input. The output appears only when complete (temp file + rename).
    Returns counts: molecules written, invalid, and the output path.
    """
    from .io import atomic_path, check_writable_dir, read_molecule_chunks

    if invalid not in ("keep", "skip", "strict"):
        raise InputError(f"invalid must be 'keep', 'skip' or 'strict', not {invalid!r}")
    input_path = Path(input_path)
    output_path = Path(output_path) if output_path else default_output_path(input_path)
    suffix = output_path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InputError(f"{output_path}: output must end in {', '.join(OUTPUT_FORMATS)}")
    check_writable_dir(output_path.parent if str(output_path.parent) else Path("."))
    model = resolve_model(model, device)
    reader = dict(smiles_column=smiles_column, id_column=id_column, chunk_size=chunk_size, errors="keep")
    first, last = 0, None
    if shard is not None:
        total = sum(len(chunk) for chunk in read_molecule_chunks(input_path, **reader))
        first, last = total * shard[0] // shard[1], total * (shard[0] + 1) // shard[1]
    show = sys.stderr.isatty() if progress is None else progress
    counts = {"molecules": 0, "invalid": 0, "written": 0}
    from tqdm import tqdm

    bar = tqdm(total=(last - first) if last is not None else None, unit="mol", disable=not show, file=sys.stderr)
    seen = 0
    with atomic_path(output_path) as tmp:
        writer = _EmbeddingWriter(tmp, suffix, model.config.hidden_size)
        try:
            for chunk in read_molecule_chunks(input_path, **reader):
                begin, seen = seen, seen + len(chunk)
                if last is not None:
                    chunk = chunk[max(first - begin, 0) : max(last - begin, 0)]
                if not chunk:
                    continue
                smiles = [r.smiles for r in chunk]
                prepared = prepare_smiles(smiles, model.tokenizer, canonicalize)
                valid = np.array([p is not None and r.error is None for p, r in zip(prepared, chunk)], dtype=bool)
                if invalid == "strict" and not valid.all():
                    record = chunk[int(np.flatnonzero(~valid)[0])]
                    reason = record.error or "not a valid SMILES"
                    raise InputError(f"{input_path}: row {record.row}: {reason}: {record.smiles[:80]!r}")
                vectors = np.full((len(chunk), model.config.hidden_size), np.nan, dtype=np.float32)
                good = np.flatnonzero(valid)
                vectors[good] = embed_valid([prepared[i] for i in good], model, pooling, batch_size, precision)
                keep = good if invalid == "skip" else np.arange(len(chunk))
                writer.write([chunk[i].id for i in keep], [smiles[i] for i in keep], valid[keep], vectors[keep])
                counts["molecules"] += len(chunk)
                counts["invalid"] += int((~valid).sum())
                counts["written"] += len(keep)
                bar.update(len(chunk))
        finally:
            writer.close()
            bar.close()
        if counts["written"] == 0:
            raise InputError(f"{input_path}: no valid molecules to write")
    counts["output"] = str(output_path)
    return counts
