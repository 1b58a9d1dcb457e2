"""RDKit's 2D descriptors: the benchmark's ``rdkit2d`` features and the pretraining targets.

The list is DeepChem's ``RDKitDescriptors()`` default: every descriptor of RDKit's
``Descriptors.descList``, sorted by name, ``Ipc`` averaged (217 with RDKit 2024-2026). It is
computed here with RDKit alone, so that corpus preparation needs no DeepChem and both uses
read the same numbers.

For regression targets the raw values are scaled robustly (`DescriptorScaling`): minus the
median, divided by the interquartile range (the standard deviation where the quartiles
coincide, as for most fragment counts), clipped, with values RDKit cannot compute left as
NaN so that the loss can mask them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np

from .smiles import as_molecule, quiet_rdkit

OVERFLOW = 1e30  # beyond float32's range in practice: treated as not computable
CLIP = 6.0  # scaled targets are clipped to [-CLIP, CLIP]


@cache
def _descriptor_functions() -> tuple:
    from rdkit.Chem import Descriptors

    return tuple(sorted(Descriptors.descList))


def descriptor_names() -> list[str]:
    """The descriptors' names, in the order of every array here."""
    return [name for name, _ in _descriptor_functions()]


def molecule_descriptors(mol) -> np.ndarray:
    """(D,) float64 descriptors of one RDKit molecule; NaN where RDKit fails or overflows."""
    values = np.empty(len(_descriptor_functions()))
    for i, (name, function) in enumerate(_descriptor_functions()):
        try:
            values[i] = function(mol, avg=True) if name == "Ipc" else function(mol)
        except Exception:  # RDKit raises on a few exotic molecules: that value is unknown
            values[i] = np.nan
    values[~np.isfinite(values) | (np.abs(values) > OVERFLOW)] = np.nan
    return values


def compute_descriptors(molecules: Sequence) -> np.ndarray:
    """(n, D) float32 descriptors of SMILES or RDKit molecules; a NaN row for a SMILES RDKit
    cannot parse, NaN values for descriptors it cannot compute."""
    out = np.full((len(molecules), len(descriptor_names())), np.nan, dtype=np.float32)
    # A few descriptors overflow in numpy on odd molecules: that value is NaN, not a warning.
    with quiet_rdkit(), np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i, molecule in enumerate(molecules):
            mol = as_molecule(molecule)
            if mol is not None:
                out[i] = molecule_descriptors(mol)
    return out


@dataclass
class DescriptorScaling:
    """Robust per-descriptor scaling, fitted once on a corpus and stored with it."""

    names: list[str]
    median: list[float]
    scale: list[float]
    clip: float = CLIP

    @classmethod
    def fit(cls, values: np.ndarray, names: Sequence[str], clip: float = CLIP):
        """From raw values (n, D) with NaN for unknown ones."""
        values = np.asarray(values, dtype=np.float64)
        with warnings.catch_warnings():  # all-NaN columns: a descriptor never computed
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(values, axis=0)
            q1, q3 = np.nanpercentile(values, [25, 75], axis=0)
            std = np.nanstd(values, axis=0)
        scale = np.where(q3 - q1 > 0, q3 - q1, np.where(std > 0, std, 1.0))
        median = np.where(np.isfinite(median), median, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return cls(list(names), median.tolist(), scale.tolist(), clip)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scaled float32 targets; NaN stays NaN (a masked target)."""
        median = np.asarray(self.median, dtype=np.float32)
        scale = np.asarray(self.scale, dtype=np.float32)
        scaled = (np.asarray(values, dtype=np.float32) - median) / scale
        return np.clip(scaled, -self.clip, self.clip)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DescriptorScaling:
        return cls(**json.loads(text))
