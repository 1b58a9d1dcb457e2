"""ECFP4 bits or counts beside ExLM vectors: the hybrid features.

The bits are those of the ECFP4 baseline (DeepChem's ``CircularFingerprint(radius=2,
size=2048)``: RDKit Morgan bits, radius 2, 2,048 bits, bond types, no chirality), computed
with RDKit directly so that the scikit-learn transformer does not need DeepChem. The counts
(``ecfp4-count``) are the same environments, each folded position counting how many times it
occurs: published benchmarks find counts ahead of bits on most data sets.

Each block is scaled to unit Euclidean norm per molecule: the ExLM vector divided by its
norm, the bits by the square root of the number set. Without it, the block with the larger
numbers or the more columns decides every distance and dot product (hidden states have norms
of tens, bits are 0 or 1; 256 numbers against 2,048 bits); with it, both blocks weigh the same
in kernels, nearest neighbours and unscaled linear models, and the scaling needs no statistics
of a data set (a DeepChem featurizer is never fitted). The benchmark's probes standardize each
column and then weight each block by 1 / sqrt(its width) (see `block_weights`), so that under
an L2 penalty each block also gets the same share of the prior.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from .errors import InputError
from .smiles import as_molecule, quiet_rdkit

FINGERPRINTS = ("ecfp4", "ecfp4-count")
ECFP_BITS = 2048


def check_fingerprint(fingerprint: str | None) -> str | None:
    if fingerprint is not None and fingerprint not in FINGERPRINTS:
        raise InputError(
            f"fingerprint must be one of {', '.join(FINGERPRINTS)} or None, not {fingerprint!r}"
        )
    return fingerprint


def ecfp4_bits(molecules: Sequence) -> np.ndarray:
    """(n, 2048) float32 Morgan bits, radius 2, of SMILES or RDKit molecules; NaN rows where
    RDKit cannot parse a SMILES."""
    return _morgan(molecules, counts=False)


def ecfp4_counts(molecules: Sequence) -> np.ndarray:
    """(n, 2048) float32 Morgan counts, radius 2 (folded), of SMILES or RDKit molecules; NaN
    rows where RDKit cannot parse a SMILES."""
    return _morgan(molecules, counts=True)


def fingerprint_block(fingerprint: str, molecules: Sequence) -> np.ndarray:
    """The block of ``fingerprint`` (one of FINGERPRINTS) for each molecule."""
    return ecfp4_counts(molecules) if fingerprint == "ecfp4-count" else ecfp4_bits(molecules)


def _morgan(molecules: Sequence, counts: bool) -> np.ndarray:
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=ECFP_BITS)
    compute = generator.GetCountFingerprintAsNumPy if counts else generator.GetFingerprintAsNumPy
    out = np.full((len(molecules), ECFP_BITS), np.nan, dtype=np.float32)
    with quiet_rdkit():
        for i, molecule in enumerate(molecules):
            mol = as_molecule(molecule)
            if mol is not None:
                out[i] = compute(mol)
    return out


def morgan_environments(molecules: Sequence) -> list[dict[int, int] | None]:
    """Each molecule's Morgan environments of radius 0 to 2 (ECFP4's, not folded): identifier
    -> how many times it occurs; None where RDKit cannot parse a SMILES."""
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2)
    found = []
    with quiet_rdkit():
        for molecule in molecules:
            mol = as_molecule(molecule)
            found.append(
                None
                if mol is None
                else generator.GetSparseCountFingerprint(mol).GetNonzeroElements()
            )
    return found


def substructure_vocabulary(molecules: Sequence, size: int, most: float = 0.95) -> list[int]:
    """The ``size`` Morgan environments found in the most of ``molecules``, leaving out those
    in more than ``most`` of them (present nearly everywhere, they say nothing), most common
    first: the substructures a pretraining head learns to count."""
    environments = [e for e in morgan_environments(molecules) if e is not None]
    molecules_with = Counter(identifier for e in environments for identifier in e)
    common = [
        identifier
        for identifier, count in molecules_with.most_common()
        if count <= most * len(environments)
    ]
    return common[:size]


def substructure_counts(molecules: Sequence, vocabulary: Sequence[int]) -> np.ndarray:
    """(n, len(vocabulary)) float32: how many times each environment of ``vocabulary`` occurs
    in each molecule; NaN rows where RDKit cannot parse a SMILES."""
    column = {identifier: j for j, identifier in enumerate(vocabulary)}
    out = np.full((len(molecules), len(vocabulary)), np.nan, dtype=np.float32)
    for i, environments in enumerate(morgan_environments(molecules)):
        if environments is not None:
            out[i] = 0.0
            for identifier, count in environments.items():
                if identifier in column:
                    out[i, column[identifier]] = count
    return out


def unit_rows(block: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm (an all-zero row stays zero, NaN stays NaN)."""
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    return block / np.where(norms > 0, norms, 1.0)


def hybrid(vectors: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """ExLM vectors and ECFP4 bits (or counts) side by side, each block of unit norm per
    molecule."""
    return np.concatenate([unit_rows(vectors), unit_rows(bits)], axis=1).astype(np.float32)


def fingerprint_names(fingerprint: str) -> list[str]:
    return [f"{fingerprint}_{i}" for i in range(ECFP_BITS)]


def block_weights(widths: Sequence[int]) -> np.ndarray:
    """1 / sqrt(width) for each column of each block: standardized columns then give every
    block a total variance of 1, whatever its width."""
    return np.concatenate([np.full(w, 1 / np.sqrt(w)) for w in widths])
