"""Calibration on folds: ensemble members that each hold out a different fold of the
training and validation molecules, so that every one of those molecules is predicted once by a
member that never saw it (cross-conformal calibration).

With calibration on the validation part alone, intervals rest on its few dozen or hundred
molecules, and a split whose validation part happens to be easier than new molecules covers
less than asked (`benchmarks/results/uncertainty`). On folds, the calibration scores come from
all the training and validation molecules at no extra training: the K members are trained
anyway. The folds are drawn as the scaffold split draws its validation and test parts (whole
small scaffold groups; a large group stays in every member's training data), so that a held-out
molecule is as new to its member as a test molecule is to the ensemble. Each member trains
for the epochs the grid's run chose on the validation part, not stopping early on its fold:
errors on the molecules that chose the epoch are too small. The prediction is
still the members' mean, usually more accurate than the single member that scored each
held-out molecule, which leans the intervals wide (measured: ESOL over-covers, FreeSolv still
falls a little short; `benchmarks/results/uncertainty_folds`). Regression scores are absolute
errors only: a held-out molecule has one prediction, no spread.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, TrainingFailed
from ..model.exlm import PAD_ID
from ..splits import scaffold_groups
from .calibration import fit_calibration
from .data import EncodedMolecules, LabelledMolecules
from .domain import fit_domain_on_folds
from .grid import finetune_each
from .predictor import predict_encoded

logger = logging.getLogger(__name__)


def scaffold_folds(smiles: list[str], k: int, seed: int) -> list[np.ndarray]:
    """``k`` folds of row indices, no scaffold in two, drawn as the scaffold split draws its
    validation and test parts: a scaffold group larger than half a fold is in no fold (every
    member trains on it, as the split puts such groups in training), the others follow in an
    order shuffled with ``seed``, each into the fold with fewest rows."""
    groups = scaffold_groups(smiles)
    small = [g for g in groups if len(g) <= len(smiles) / k / 2]
    if len(small) < k:
        raise InputError(
            f"{k} folds need at least {k} small scaffold groups; these molecules have {len(small)}"
        )
    folds: list[list[int]] = [[] for _ in range(k)]
    for i in np.random.default_rng(seed).permutation(len(small)):
        min(folds, key=len).extend(small[i])
    return [np.array(sorted(f), dtype=np.int64) for f in folds]


def join(first: LabelledMolecules, second: LabelledMolecules) -> LabelledMolecules:
    """The molecules of both parts, in that order (padded ids widened to the longer)."""
    width = max(first.molecules.ids.shape[1], second.molecules.ids.shape[1])
    ids = [torch.nn.functional.pad(m.molecules.ids, (0, width - m.molecules.ids.shape[1]),
                                   value=PAD_ID) for m in (first, second)]  # fmt: skip
    smiles = None
    if first.smiles is not None and second.smiles is not None:
        smiles = list(first.smiles) + list(second.smiles)
    return LabelledMolecules(
        EncodedMolecules(torch.cat(ids)), np.vstack([first.y, second.y]), smiles
    )


def finetune_fold_members(
    model, train, valid, task_type, chosen, uncertainty, tasks, device, jobs, checkpoint_dir, ids,
):  # fmt: skip
    """Members trained at the ``chosen`` settings (seeds seed, seed + 1, ...), member k on
    the training and validation molecules outside fold k, for the epochs the grid's run chose
    on validation (``chosen.stop_epoch``; stopped early on fold k, fold k's errors would be
    chosen on and so too small); calibrated on every member's fold. ``ids`` name the training
    then the validation molecules. Returns the members' results, the calibration and the
    domain."""
    pooled = join(train, valid)
    folds = scaffold_folds(pooled.smiles, uncertainty.members, chosen.seed)
    runs = []
    for k, fold in enumerate(folds):
        rest = np.setdiff1d(np.arange(len(pooled.y)), fold)
        runs.append(
            (model, pooled.subset(rest), pooled.subset(fold), replace(chosen, seed=chosen.seed + k))
        )
    checkpoints = None
    if checkpoint_dir is not None:
        checkpoints = [Path(checkpoint_dir) / f"fold-member-{k}.pt" for k in range(len(folds))]
    results = list(finetune_each(runs, task_type, tasks, device, jobs, checkpoints))
    held_out = np.full(pooled.y.shape, np.nan)
    scored = np.zeros(len(pooled.y), dtype=bool)
    for result, fold, (_, _, fold_part, _) in zip(results, folds, runs):
        if result.diverged:
            logger.warning("ensemble member with seed %d diverged; left out", result.settings.seed)
            continue
        held_out[fold] = predict_encoded(result.predictor, fold_part.molecules, logits=True)
        scored[fold] = True
    if not scored.any():
        raise TrainingFailed("every ensemble member diverged; try smaller rates")
    calibration = fit_calibration(
        task_type, pooled.y[scored], held_out[None, scored], uncertainty.coverage
    )
    first = next(r.predictor for r in results if not r.diverged)
    _, vectors = predict_encoded(first, pooled.molecules, vectors=True)
    domain = fit_domain_on_folds(vectors, pooled.smiles, ids, folds, uncertainty.domain_quantile)
    return results, calibration, domain
