"""Fine-tuning in the suite: every (head, learning rate, seed) run, kept for resuming, and the
head and rate chosen on validation averaged over the seeds (all, or the ones named to choose)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..finetuning import (
    EncodedMolecules,
    FinetuneSettings,
    LabelledMolecules,
    choose_learning_rate,
    finetune_each,
    predict_encoded,
)
from ..metrics import score
from ..model import ExLMModel
from ..outputs import atomic_write_text
from .datasets import DATASETS, cached_split
from .features import FIXED, FeatureSpec
from .report import read_records

logger = logging.getLogger(__name__)


def tunable(spec: FeatureSpec) -> bool:
    """A model's own features: ECFP4 and descriptors have no network, and a hybrid's is its
    model's."""
    return spec.kind not in FIXED and spec.fingerprint is None


def finetune_results(
    name: str,
    spec: FeatureSpec,
    model: ExLMModel,
    featurizer_name: str,
    dataset,
    split: str,
    seeds: list[int],
    splits: dict,
    runs_path: Path,
    settings: FinetuneSettings,
    rates,
    device,
    heads: list[str] | None = None,
    choice_seeds: list[int] | None = None,
    jobs: int = 1,
) -> list[dict]:
    """The records of ``seeds`` fine-tuned at the chosen head and rate.

    Every (head, rate) is run on each of ``choice_seeds`` (default: ``seeds``); the head and
    rate whose validation metric averaged over those seeds is best is chosen, and the other
    seeds are run at that choice only. Runs are kept in and resumed from ``runs_path``, so
    seeds added later are chosen for by the same runs; ``jobs`` of them at a time (see
    `finetune_each`)."""
    heads = heads or [settings.head]
    choice_seeds = list(choice_seeds or seeds)
    task_type = DATASETS[name].task_type
    metric = "roc_auc" if task_type == "classification" else "rmse"
    runs = read_records(runs_path, "runs")
    key = dict(dataset=name, features=spec.name, featurizer=featurizer_name, split=split)

    def run_missing(run_seeds: list[int], choices: list[tuple[str, float]]) -> None:
        keys = [
            dict(key, seed=seed, learning_rate=rate, head=head)
            for seed in run_seeds
            for head, rate in choices
        ]
        missing = [k for k in keys if not any(_matches(r, k) for r in runs)]
        whole_parts = {
            seed: cached_split(splits, dataset, split, seed)
            for seed in {k["seed"] for k in missing}
        }
        parts = {
            seed: [_labelled(part, model.tokenizer) for part in whole]
            for seed, whole in whole_parts.items()
        }
        work = [
            (
                *parts[k["seed"]][:2],
                replace(settings, learning_rate=k["learning_rate"], head=k["head"], seed=k["seed"]),
            )
            for k in missing
        ]
        results = finetune_each(model, work, task_type, device=device, jobs=jobs)
        for run_key, result in zip(missing, results):
            seed, rate, head = run_key["seed"], run_key["learning_rate"], run_key["head"]
            test = whole_parts[seed][2]
            prediction = predict_encoded(
                result.predictor, parts[seed][2].molecules, settings.precision
            )
            run = dict(
                run_key,
                valid_value=result.valid_score,
                selection=result.selection,
                value=score(task_type, test.y, test.w, prediction),
                best_epoch=result.best_epoch,
                epochs_run=result.epochs_run,
                fit_seconds=round(result.seconds, 1),
            )
            logger.info(
                "%s  %s  finetune  seed %d  %s head  lr %g: validation %s %.4f, test %s %.4f "
                "(%d epochs, %.0f s)",
                name,
                spec.name,
                seed,
                head,
                rate,
                result.selection,
                result.valid_score,
                metric,
                run["value"],
                result.epochs_run,
                result.seconds,
            )
            runs.append(run)
            atomic_write_text(runs_path, json.dumps(runs, indent=1))

    grid = [(head, rate) for head in heads for rate in rates]
    run_missing(choice_seeds, grid)
    mine = [
        r
        for r in runs
        if _matches(r, key)
        and r["seed"] in choice_seeds
        and (r["head"], r["learning_rate"]) in grid
    ]
    # Pooled over the seeds: the metric where every seed's validation set defines it, else the
    # validation loss.
    selection = metric if all(r["selection"] == metric for r in mine) else "loss"
    # Keyed by (head, rate): both chosen by the rule that chooses a rate.
    by_choice: dict[tuple[str, float], list[float]] = {}
    for r in mine:
        by_choice.setdefault((r["head"], r["learning_rate"]), []).append(
            r["valid_value"] if r["selection"] == selection else float("nan")
        )
    head, rate = choose_learning_rate(by_choice, selection)
    run_missing(seeds, [(head, rate)])
    ours = [r for r in runs if _matches(r, key) and (r["head"], r["learning_rate"]) in grid]
    chosen_runs = {r["seed"]: r for r in ours if (r["head"], r["learning_rate"]) == (head, rate)}
    return [
        dict(
            dataset=name,
            features=spec.name,
            probe="finetune",
            seed=seed,
            split=split,
            metric=metric,
            value=chosen_runs[seed]["value"],
            learning_rate=rate,
            head=head,
            valid_value=chosen_runs[seed]["valid_value"],
            fit_seconds=sum(r["fit_seconds"] for r in ours if r["seed"] == seed),
            featurizer=featurizer_name,
        )
        for seed in seeds
    ]


def _matches(record: dict, key: dict) -> bool:
    return all(record.get(field) == value for field, value in key.items())


def _labelled(dataset, tokenizer) -> LabelledMolecules:
    """A DeepChem dataset as molecules tokenized once, labels NaN where its weight is 0."""
    y = np.where(dataset.w > 0, dataset.y, np.nan)
    return LabelledMolecules(EncodedMolecules.from_smiles(dataset.ids, tokenizer), y)
