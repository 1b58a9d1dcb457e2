"""Scaffold splits: molecules grouped by Bemis-Murcko scaffold, so that no scaffold is on both
sides of a split (the test set then asks for generalization to new chemical series)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError
from .smiles import parse_smiles, quiet_rdkit

SPLITS = ("scaffold", "random")  # of a user's rows: seeded scaffold groups, or seeded rows


def scaffold_groups(smiles: Sequence[str]) -> list[list[int]]:
    """Row indices grouped by the molecules' Murcko scaffold (chirality ignored), largest group
    first; rows RDKit cannot parse form one group of their own each."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    groups: dict[str, list[int]] = {}
    with quiet_rdkit():
        for i, text in enumerate(smiles):
            mol = parse_smiles(text)
            key = (
                MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)
                if mol is not None
                else f"unparsed {i}"
            )
            groups.setdefault(key, []).append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def random_scaffold_split(
    groups: list[list[int]], seed: int, fractions: tuple[float, float] = (0.8, 0.1)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/valid/test row indices, balanced as chemprop's ``scaffold_balanced``: groups larger
    than half the validation or test size go to training (a group of 320 acyclic molecules in
    FreeSolv would otherwise fill validation and leave the test set empty), the others follow
    in an order shuffled with ``seed``, each into the first part with room for it (train up to
    ``fractions[0]`` of the rows, valid up to ``fractions[1]``, test takes the rest)."""
    n = sum(len(g) for g in groups)
    train_size, valid_size = fractions[0] * n, fractions[1] * n
    test_size = n - train_size - valid_size
    rng = np.random.default_rng(seed)
    big = [g for g in groups if len(g) > min(valid_size, test_size) / 2]
    small = [g for g in groups if len(g) <= min(valid_size, test_size) / 2]
    order = [big[i] for i in rng.permutation(len(big))] + [
        small[i] for i in rng.permutation(len(small))
    ]
    parts: list[list[int]] = [[], [], []]
    for group in order:
        if len(parts[0]) + len(group) <= train_size:
            parts[0].extend(group)
        elif len(parts[1]) + len(group) <= valid_size:
            parts[1].extend(group)
        else:
            parts[2].extend(group)
    return tuple(np.array(sorted(p), dtype=np.int64) for p in parts)


def split_rows(
    smiles: list[str], split: str, seed: int, valid_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/valid/test row indices: seeded scaffold groups (no scaffold in two parts) or
    seeded random rows."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if not (
        0 < valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1
    ):
        raise InputError(
            f"the validation fraction ({valid_fraction}) must be in (0, 1), the test fraction "
            f"({test_fraction}) in [0, 1), and their sum below 1"
        )
    fractions = (1 - valid_fraction - test_fraction, valid_fraction)
    if split == "scaffold":
        return random_scaffold_split(scaffold_groups(smiles), seed, fractions)
    order = np.random.default_rng(seed).permutation(len(smiles))
    cut1 = round(fractions[0] * len(order))
    cut2 = round((fractions[0] + fractions[1]) * len(order))
    return tuple(np.sort(part) for part in (order[:cut1], order[cut1:cut2], order[cut2:]))
