"""Fine-tuning in the suite: every (learning rate, seed) run, kept for resuming, and the rate
chosen on validation averaged over the seeds."""

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
    finetune,
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
) -> list[dict]:
    """Fine-tune at every (head, rate, seed), resuming from ``runs_path``; the records of the
    head and rate whose validation metric, averaged over the seeds, is best."""
    heads = heads or [settings.head]
    task_type = DATASETS[name].task_type
    metric = "roc_auc" if task_type == "classification" else "rmse"
    runs = read_records(runs_path, "runs")
    key = dict(dataset=name, features=spec.name, featurizer=featurizer_name, split=split)
    chosen_runs = {}
    for seed in seeds:
        keys = [
            dict(key, seed=seed, learning_rate=rate, head=head) for head in heads for rate in rates
        ]
        missing = [
            k for k in keys if not any(all(r.get(f) == v for f, v in k.items()) for r in runs)
        ]
        if not missing:
            continue
        whole_parts = cached_split(splits, dataset, split, seed)
        parts = [_labelled(part, model.tokenizer) for part in whole_parts]
        for run_key in missing:
            rate, head = run_key["learning_rate"], run_key["head"]
            result = finetune(
                model,
                parts[0],
                parts[1],
                task_type,
                replace(settings, learning_rate=rate, head=head, seed=seed),
                device=device,
            )
            test = whole_parts[2]
            prediction = predict_encoded(result.predictor, parts[2].molecules, settings.precision)
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
                "%s  %s  finetune  seed %d  lr %g: validation %s %.4f, test %s %.4f (%d epochs, "
                "%.0f s)",
                name,
                spec.name,
                seed,
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
    mine = [
        r
        for r in runs
        if all(r.get(k) == v for k, v in key.items())
        and r["seed"] in seeds
        and r["learning_rate"] in rates
        and r["head"] in heads
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
    for r in mine:
        if (r["head"], r["learning_rate"]) == (head, rate):
            chosen_runs[r["seed"]] = r
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
            fit_seconds=sum(r["fit_seconds"] for r in mine if r["seed"] == seed),
            featurizer=featurizer_name,
        )
        for seed in seeds
    ]


def _labelled(dataset, tokenizer) -> LabelledMolecules:
    """A DeepChem dataset as molecules tokenized once, labels NaN where its weight is 0."""
    y = np.where(dataset.w > 0, dataset.y, np.nan)
    return LabelledMolecules(EncodedMolecules.from_smiles(dataset.ids, tokenizer), y)
