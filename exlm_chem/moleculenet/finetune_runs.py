"""Fine-tuning in the suite: every (head, learning rate, seed) run, kept for resuming, and the
head and rate chosen on validation averaged over the seeds (all, or the ones named to choose)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..environment import describe_hardware, resolve_device
from ..errors import InputError
from ..finetuning import (
    EncodedMolecules,
    FinetuneSettings,
    LabelledMolecules,
    choose_learning_rate,
    finetune_each,
    predict_encoded,
)
from ..metrics import metric_name, score
from ..model import ExLMModel
from ..outputs import atomic_write_text
from .datasets import DATASETS, cached_split
from .features import FIXED, TRAINED, FeatureSpec
from .report import read_records

logger = logging.getLogger(__name__)


def tunable(spec: FeatureSpec) -> bool:
    """A model's own features: fingerprints and descriptors have no network, a join's is its
    model's, and chemprop trains its own."""
    return spec.kind not in FIXED + TRAINED and spec.fingerprint is None and not spec.descriptors


@dataclass
class ModelToTune:
    """A model of the suite to fine-tune on one dataset: its features spec, weights, name for
    the records, the dataset as its featurizer read it, its split cache and the seeds wanted."""

    spec: FeatureSpec
    model: ExLMModel
    featurizer_name: str
    dataset: object  # a DeepChem dataset (ids: the SMILES)
    splits: dict
    seeds: list[int]
    parts: dict = field(default_factory=dict)  # seed -> (train, valid, test) LabelledMolecules

    def labelled_parts(self, split: str, seed: int) -> list[LabelledMolecules]:
        if seed not in self.parts:
            whole = cached_split(self.splits, self.dataset, split, seed)
            self.parts[seed] = [_labelled(part, self.model.tokenizer) for part in whole]
        return self.parts[seed]


def run_settings(settings: FinetuneSettings) -> dict:
    """What a suite's runs share (their key holds head, rate and seed): kept with each run."""
    shared = asdict(settings)
    for varied in ("head", "learning_rate", "seed"):
        del shared[varied]
    return shared


def check_run_settings(runs_path: Path, settings: FinetuneSettings) -> None:
    """Refuse to resume from runs made with other settings (more epochs, other dropout...):
    the suite would take them up as if made with these. Runs that record no settings are
    from before they were recorded, and taken as they are."""
    wanted = run_settings(settings)
    for run in read_records(runs_path, "runs"):
        kept = run.get("settings", wanted)
        if kept != wanted:
            differences = ", ".join(
                f"{name} {kept.get(name)!r}, not {value!r}"
                for name, value in wanted.items()
                if kept.get(name) != value
            )
            raise InputError(
                f"{runs_path}: holds fine-tuning runs made with other settings ({differences}); "
                "write these runs to another folder"
            )


def finetune_results(
    name: str,
    models: list[ModelToTune],
    split: str,
    runs_path: Path,
    settings: FinetuneSettings,
    rates,
    device,
    heads: list[str] | None = None,
    choice_seeds: list[int] | None = None,
    jobs: int = 1,
    checkpoint_dir: Path | None = None,
) -> list[dict]:
    """The records of each model's seeds fine-tuned at its chosen head and rate.

    Every (head, rate) is run on each of ``choice_seeds`` (default: the model's seeds); the
    head and rate whose validation metric averaged over those seeds is best is chosen, and the
    other seeds are run at that choice only. Runs are kept in and resumed from ``runs_path``,
    so seeds added later are chosen for by the same runs. Every model's grid goes in one batch
    of runs and every model's other seeds in a second, ``jobs`` runs at a time (see
    `finetune_each`): few workers idle at the end of a batch. A run saves its state in
    ``checkpoint_dir`` as it goes (a file named after its key), continues from it when started
    again, and deletes it once the run is in ``runs_path``."""
    heads = heads or [settings.head]
    grid = [(head, rate) for head in heads for rate in rates]
    task_type = DATASETS[name].task_type
    metric = metric_name(task_type)
    runs = read_records(runs_path, "runs")

    def key(tuned: ModelToTune) -> dict:
        return dict(
            dataset=name, features=tuned.spec.name, featurizer=tuned.featurizer_name, split=split
        )

    def run_missing(wanted: list[tuple[ModelToTune, int, str, float]]) -> None:
        missing = [
            (tuned, dict(key(tuned), seed=seed, learning_rate=rate, head=head))
            for tuned, seed, head, rate in wanted
        ]
        missing = [(t, k) for t, k in missing if not any(_matches(r, k) for r in runs)]
        if not missing:
            return
        work = [
            (
                tuned.model,
                *tuned.labelled_parts(split, k["seed"])[:2],
                replace(settings, learning_rate=k["learning_rate"], head=k["head"], seed=k["seed"]),
            )
            for tuned, k in missing
        ]
        place = resolve_device(device) or next(missing[0][0].model.parameters()).device
        hardware = describe_hardware(place)
        checkpoints = [_checkpoint_path(checkpoint_dir, k) for _, k in missing]
        results = finetune_each(work, task_type, device=device, jobs=jobs, checkpoints=checkpoints)
        for (tuned, run_key), result, checkpoint in zip(missing, results, checkpoints):
            test = tuned.labelled_parts(split, run_key["seed"])[2]
            run = dict(
                run_key,
                **_run_outcome(result, test, task_type, settings.precision),
                # The seconds are this machine's, ``jobs`` runs at a time.
                device=place.type,
                hardware=hardware,
                jobs=jobs,
                settings=run_settings(settings),
            )
            logger.info(
                "%s  %s  finetune  seed %d  %s head  lr %g: validation %s %.4f, test %s %.4f "
                "(%d epochs, %.0f s)",
                name,
                tuned.spec.name,
                run_key["seed"],
                run_key["head"],
                run_key["learning_rate"],
                result.selection,
                result.valid_score,
                metric,
                run["value"],
                result.epochs_run,
                result.seconds,
            )
            runs.append(run)
            atomic_write_text(runs_path, json.dumps(runs, indent=1))
            if checkpoint is not None:
                checkpoint.unlink(missing_ok=True)

    def choice_seeds_of(tuned: ModelToTune) -> list[int]:
        return list(choice_seeds or tuned.seeds)

    run_missing(
        [(t, seed, *choice) for t in models for seed in choice_seeds_of(t) for choice in grid]
    )
    choices = {
        tuned.spec.name: _chosen_head_and_rate(
            [
                r
                for r in runs
                if _matches(r, key(tuned))
                and r["seed"] in choice_seeds_of(tuned)
                and (r["head"], r["learning_rate"]) in grid
            ],
            metric,
        )
        for tuned in models
    }
    run_missing([(t, seed, *choices[t.spec.name]) for t in models for seed in t.seeds])
    records = []
    for tuned in models:
        head, rate = choices[tuned.spec.name]
        ours = [
            r for r in runs if _matches(r, key(tuned)) and (r["head"], r["learning_rate"]) in grid
        ]
        chosen = {r["seed"]: r for r in ours if (r["head"], r["learning_rate"]) == (head, rate)}
        records += [
            dict(
                dataset=name,
                features=tuned.spec.name,
                probe="finetune",
                seed=seed,
                split=split,
                metric=metric,
                value=chosen[seed]["value"],
                learning_rate=rate,
                head=head,
                valid_value=chosen[seed]["valid_value"],
                fit_seconds=sum(r["fit_seconds"] for r in ours if r["seed"] == seed),
                featurizer=tuned.featurizer_name,
            )
            for seed in tuned.seeds
        ]
    return records


def _run_outcome(result, test, task_type: str, precision: str) -> dict:
    """What a fine-tuning run scored on validation and test, and how long it ran."""
    if result.diverged:  # no model: its validation and test values are not numbers
        prediction = np.full(test.y.shape, np.nan)
    else:
        prediction = predict_encoded(result.predictor, test.molecules, precision)
    return dict(
        valid_value=result.valid_score,
        selection=result.selection,
        value=score(task_type, np.nan_to_num(test.y), test.w, prediction),
        best_epoch=result.best_epoch,
        epochs_run=result.epochs_run,
        fit_seconds=round(result.seconds, 1),
        # Every epoch's validation metric, so that a cheaper stopping rule (fewer epochs of
        # patience) can be read off the runs without training again.
        valid_history=[round(epoch["valid"], 6) for epoch in result.history],
    )


def _chosen_head_and_rate(runs: list[dict], metric: str) -> tuple[str, float]:
    """The (head, rate) of the best validation value averaged over the choice seeds' runs."""
    # Pooled over the seeds: the metric where every seed's validation set defines it, else
    # the validation loss.
    selection = metric if all(r["selection"] == metric for r in runs) else "loss"
    # Keyed by (head, rate): both chosen by the rule that chooses a rate.
    by_choice: dict[tuple[str, float], list[float]] = {}
    for r in runs:
        by_choice.setdefault((r["head"], r["learning_rate"]), []).append(
            r["valid_value"] if r["selection"] == selection else float("nan")
        )
    return choose_learning_rate(by_choice, selection)


def _checkpoint_path(directory: Path | None, run_key: dict) -> Path | None:
    """Where a run keeps its checkpoint: named by a digest of its key (features names hold
    paths)."""
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(json.dumps(run_key, sort_keys=True).encode()).hexdigest()[:20]
    return directory / f"{digest}.pt"


def _matches(record: dict, key: dict) -> bool:
    return all(record.get(field) == value for field, value in key.items())


def _labelled(dataset, tokenizer) -> LabelledMolecules:
    """A DeepChem dataset as molecules tokenized once, labels NaN where its weight is 0."""
    y = np.where(dataset.w > 0, dataset.y, np.nan)
    return LabelledMolecules(EncodedMolecules.from_smiles(dataset.ids, tokenizer), y)
