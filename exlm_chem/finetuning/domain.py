"""Applicability domain: how like the training molecules a molecule is.

For each molecule: its highest cosine similarity to the training molecules' vectors (the
vector the fine-tuned model's head reads), its highest Tanimoto similarity on ECFP4 bits, the
training molecule with that Tanimoto, and ``in_domain``: Tanimoto at least the threshold set on
the validation part (the validation molecules' ``domain_quantile`` quantile of the same
similarity, so that about that share of molecules as unlike the training set as the validation
ones falls outside; calibrated on folds, each fold's molecules against the other folds').
Tanimoto on ECFP4 decides, as the measure chemists read and the one whose link to prediction
error is best documented; the cosine is reported beside it.

The training set's vectors are kept as float16 and its bits packed (256 bytes a molecule); both
searches are matrix products over chunks of queries and of training molecules, so memory stays
bounded for any file size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from ..fingerprints import ecfp4_bits
from ..outputs import atomic_path, atomic_write_text

DOMAIN_WEIGHTS_FILE, DOMAIN_CONFIG_FILE = "domain.safetensors", "domain.json"
QUERY_CHUNK, TRAIN_CHUNK = 2048, 8192


@dataclass
class Similarities:
    max_cosine: np.ndarray  # (n,)
    max_tanimoto: np.ndarray  # (n,); NaN where a molecule has no fingerprint
    nearest: np.ndarray  # (n,) index of the training molecule with the highest Tanimoto


@dataclass
class DomainReference:
    vectors: np.ndarray  # (n_train, d) float16, unit rows
    fingerprints: np.ndarray  # (n_train, 256) uint8, packed ECFP4 bits
    train_ids: list  # what names each training molecule (a file's line, an index of X)
    train_smiles: list[str]
    threshold: float  # on max_tanimoto
    quantile: float

    def similarities(self, vectors: np.ndarray, smiles: list[str]) -> Similarities:
        """Similarities of molecules (their vectors from the same model, and SMILES)."""
        max_cosine, _ = _chunked_max(_unit(vectors), self.vectors.astype(np.float32), _cosine_block)
        bits = ecfp4_bits(smiles)
        missing = np.isnan(bits[:, 0])
        bits[missing] = 0
        max_tanimoto, nearest = _chunked_max(
            bits, np.unpackbits(self.fingerprints, axis=1).astype(np.float32), _tanimoto_block
        )
        max_tanimoto[missing] = np.nan
        return Similarities(max_cosine, max_tanimoto, nearest)

    def in_domain(self, similarities: Similarities) -> np.ndarray:
        return similarities.max_tanimoto >= self.threshold

    def save(self, directory: Path) -> None:
        with atomic_path(directory / DOMAIN_WEIGHTS_FILE) as tmp:
            save_file(
                {"vectors": self.vectors, "fingerprints": self.fingerprints},
                str(tmp),
            )
        about = dict(
            threshold=self.threshold,
            quantile=self.quantile,
            measure="max Tanimoto on ECFP4 bits",
            train_ids=self.train_ids,
            train_smiles=self.train_smiles,
        )
        atomic_write_text(directory / DOMAIN_CONFIG_FILE, json.dumps(about))

    @classmethod
    def load(cls, directory: Path) -> DomainReference:
        arrays = load_file(str(directory / DOMAIN_WEIGHTS_FILE))
        about = json.loads((directory / DOMAIN_CONFIG_FILE).read_text())
        return cls(
            arrays["vectors"],
            arrays["fingerprints"],
            about["train_ids"],
            about["train_smiles"],
            float(about["threshold"]),
            float(about["quantile"]),
        )


def fit_domain(
    train_vectors: np.ndarray,
    train_smiles: list[str],
    train_ids: list,
    valid_vectors: np.ndarray,
    valid_smiles: list[str],
    quantile: float,
) -> DomainReference:
    """The training molecules' reference, with its threshold from the validation molecules."""
    reference = _reference(
        train_vectors, ecfp4_bits(train_smiles), train_smiles, train_ids, quantile
    )
    valid = reference.similarities(valid_vectors, valid_smiles).max_tanimoto
    reference.threshold = _threshold(valid, quantile)
    return reference


def fit_domain_on_folds(
    vectors: np.ndarray, smiles: list[str], ids: list, folds: list[np.ndarray], quantile: float
) -> DomainReference:
    """Every molecule as the reference, with its threshold from each fold's molecules against
    the molecules of the other folds (what each ensemble member was trained on)."""
    bits = ecfp4_bits(smiles)
    missing = np.isnan(bits[:, 0])
    reference = _reference(vectors, bits, smiles, ids, quantile)
    held_out = np.full(len(smiles), np.nan, dtype=np.float32)  # in no fold: not scored
    for fold in folds:
        others = np.setdiff1d(np.arange(len(smiles)), fold)
        held_out[fold] = _chunked_max(bits[fold], bits[others], _tanimoto_block)[0]
    held_out[missing] = np.nan
    reference.threshold = _threshold(held_out, quantile)
    return reference


def _reference(vectors, bits: np.ndarray, smiles: list[str], ids: list, quantile: float):
    """The reference of molecules with their ECFP4 ``bits`` (NaN rows, molecules RDKit cannot
    read, are set to 0 in place: valid for the model, they match nothing)."""
    bits[np.isnan(bits[:, 0])] = 0
    return DomainReference(
        _unit(vectors).astype(np.float16),
        np.packbits(bits.astype(np.uint8), axis=1),
        list(ids),
        list(smiles),
        threshold=0.0,
        quantile=quantile,
    )


def _threshold(similarities: np.ndarray, quantile: float) -> float:
    similarities = similarities[~np.isnan(similarities)]
    return float(np.quantile(similarities, quantile)) if len(similarities) else 0.0


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _cosine_block(queries: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    return queries @ train.T


def _tanimoto_block(queries: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    shared = queries @ train.T  # bits in both (exact in float32: at most 2,048)
    union = queries.sum(1, keepdim=True) + train.sum(1) - shared
    return torch.where(union > 0, shared / union.clamp(min=1), torch.zeros_like(shared))


def _chunked_max(queries: np.ndarray, train: np.ndarray, block) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the highest ``block`` similarity to any training row and where."""
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    where = np.zeros(len(queries), dtype=np.int64)
    train_chunks = [
        torch.from_numpy(train[s : s + TRAIN_CHUNK]) for s in range(0, len(train), TRAIN_CHUNK)
    ]
    with torch.inference_mode():
        for start in range(0, len(queries), QUERY_CHUNK):
            q = torch.from_numpy(np.ascontiguousarray(queries[start : start + QUERY_CHUNK]))
            rows = slice(start, start + len(q))
            offset = 0
            for chunk in train_chunks:
                value, index = block(q, chunk).max(1)
                value, index = value.numpy(), index.numpy() + offset
                better = value > best[rows]
                best[rows] = np.where(better, value, best[rows])
                where[rows] = np.where(better, index, where[rows])
                offset += len(chunk)
    return best, where
