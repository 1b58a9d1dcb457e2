"""Labelled molecules for fine-tuning: tokenized once, targets with missing labels (NaN), and
DeepChem-style class balancing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..model.exlm import PAD_ID
from ..preparation import prepare_smiles

TASK_TYPES = ("classification", "regression")


class EncodedMolecules:
    """Molecules tokenized once, as padded ids; batches are row slices."""

    def __init__(self, ids: torch.Tensor):
        self.ids = ids
        self.lengths = (ids != PAD_ID).sum(1)

    @classmethod
    def from_tokens(cls, tokens: list[list[str]], tokenizer) -> EncodedMolecules:
        return cls(tokenizer.encode_tokens_with_report(tokens)[0])

    @classmethod
    def from_smiles(cls, smiles, tokenizer, canonicalize: bool = True, label=None):
        """Prepared as `embed` prepares them; an unreadable molecule raises InputError naming
        it by ``label(index)``."""
        smiles = list(smiles)
        prepared = prepare_smiles(smiles, tokenizer, canonicalize)
        for i, tokens in enumerate(prepared.tokens):
            if tokens is None:
                where = label(i) if label else f"index {i}"
                raise InputError(f"{where}: invalid SMILES ({prepared.errors[i]}): {smiles[i]!r}")
        return cls.from_tokens(prepared.tokens, tokenizer)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows) -> EncodedMolecules:
        return EncodedMolecules(self.ids[torch.as_tensor(np.asarray(rows, dtype=np.int64))])

    def batch(self, rows) -> torch.Tensor:
        rows = torch.as_tensor(np.asarray(rows))
        return self.ids[rows, : int(self.lengths[rows].max())]


@dataclass
class LabelledMolecules:
    """Encoded molecules with their targets y (n, tasks), NaN where a label is missing, and
    optionally the SMILES they were read from (the applicability domain needs them)."""

    molecules: EncodedMolecules
    y: np.ndarray
    smiles: list[str] | None = None

    def __post_init__(self):
        y = np.asarray(self.y, dtype=np.float64)
        self.y = y[:, None] if y.ndim == 1 else y
        if len(self.y) != len(self.molecules):
            raise InputError(f"{len(self.molecules)} molecules but {len(self.y)} rows of targets")
        if self.smiles is not None and len(self.smiles) != len(self.molecules):
            raise InputError(f"{len(self.molecules)} molecules but {len(self.smiles)} SMILES")

    @property
    def w(self) -> np.ndarray:
        """1 where labelled, 0 where missing: DeepChem's weights before balancing."""
        return (~np.isnan(self.y)).astype(np.float64)

    @classmethod
    def from_smiles(cls, smiles, y, tokenizer, canonicalize: bool = True, label=None):
        smiles = list(smiles)
        return cls(EncodedMolecules.from_smiles(smiles, tokenizer, canonicalize, label), y, smiles)

    def subset(self, rows) -> LabelledMolecules:
        smiles = None if self.smiles is None else [self.smiles[i] for i in rows]
        return LabelledMolecules(self.molecules.subset(rows), self.y[rows], smiles)


def check_targets(y: np.ndarray, task_type: str, tasks: list[str], where: str = "") -> None:
    """InputError unless every task has labels and, for classification, 0/1 labels of both
    classes."""
    if task_type not in TASK_TYPES:
        raise InputError(f"task type must be one of {', '.join(TASK_TYPES)}, not {task_type!r}")
    prefix = f"{where}: " if where else ""
    for t, task in enumerate(tasks):
        labelled = y[~np.isnan(y[:, t]), t]
        if len(labelled) == 0:
            raise InputError(f"{prefix}target {task!r} has no labels")
        if task_type == "classification":
            values = set(np.unique(labelled).tolist())
            if not values <= {0.0, 1.0}:
                raise InputError(
                    f"{prefix}target {task!r} is not 0/1 labels ({sorted(values)[:5]}); "
                    "use --task regression for continuous values"
                )
            if len(values) < 2:
                raise InputError(
                    f"{prefix}target {task!r} has a single class ({int(labelled[0])}): a "
                    "classifier needs examples of both"
                )


def balancing_weights(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per task, each labelled example weighted n / (2 n_class), as DeepChem's balancing."""
    out = np.zeros_like(w)
    for t in range(y.shape[1]):
        labelled = w[:, t] > 0
        n, positives = labelled.sum(), (labelled & (y[:, t] == 1)).sum()
        negatives = n - positives
        if positives and negatives:
            out[labelled & (y[:, t] == 1), t] = n / (2 * positives)
            out[labelled & (y[:, t] == 0), t] = n / (2 * negatives)
        else:
            out[labelled, t] = 1.0
    return out
