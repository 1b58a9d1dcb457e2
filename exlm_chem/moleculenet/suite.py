"""The suite: every (data set, features, probe, seed), resumable, reported as it goes."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

from ..errors import InputError
from ..finetuning import LEARNING_RATES, FinetuneSettings
from ..metrics import metric_name
from ..outputs import atomic_write_text
from .baselines import (
    baseline_records,
    cached_baseline,
    import_baselines,
    is_baseline,
    keep_baseline,
    log_result,
    make_record,
    record_key,
    result_key,
    scratch_records,
)
from .chemprop import check_chemprop
from .datasets import (
    DATASETS,
    SPLITS,
    cached_split,
    dropped_rows,
    load_features,
)
from .features import (
    TRAINED,
    FeatureSpec,
    ReadableRows,
    feature_blocks,
    make_featurizer,
)
from .finetune_runs import ModelToTune, check_run_settings, finetune_results, tunable
from .probes import PROBE_SETTINGS, probe_predictions
from .report import read_records, write_reports

logger = logging.getLogger(__name__)


def parse_list(text: str | None, allowed: tuple | dict, what: str) -> list[str]:
    items = [item.strip() for item in (text or "").split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise InputError(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(allowed)}")
    if not items:
        raise InputError(f"give at least one of the {what}")
    return items


def run_benchmark(
    datasets: list[str],
    features: list[FeatureSpec],
    probes: list[str],
    out: Path,
    data_dir: Path | None = None,
    split: str = "scaffold",
    seeds: list[int] = (0,),
    finetune: bool = False,
    cache_dir: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    finetune_settings: FinetuneSettings | None = None,
    finetune_rates=LEARNING_RATES,
    device=None,
    finetune_heads: list[str] | None = None,
    finetune_choice_seeds: list[int] | None = None,
    finetune_jobs: int = 1,
    baselines_from: list[Path] = (),
) -> list[dict]:
    """Run every (dataset, features, probe, seed); write results.json/.csv/.md and plots to
    ``out``.

    results.json is rewritten after every result. With ``resume``, results already in it for
    the same dataset, features (same weights), probe, seed and split are kept, not recomputed;
    an ``out`` that holds results is otherwise refused unless ``overwrite``. Every argument is
    checked before ``out`` is created.

    With ``finetune``, each model is also fine-tuned (`exlm_chem.finetune`) at every rate of
    ``finetune_rates`` on every seed's split; the rate with the best validation metric averaged
    over the seeds is chosen, and its runs are the ``finetune`` results. ``finetune_heads``
    (default: the settings' head) are chosen the same way, jointly with the rate.
    ``finetune_choice_seeds`` (default: ``seeds``) are the seeds whose validation makes that
    choice: only they run the whole grid, the others the chosen head and rate (a CPU budget).
    Every run is kept in finetune_runs.json, so an interrupted grid resumes where it stopped,
    and a run stopped part-way continues from its checkpoint in ``cache_dir``; runs there made
    with other ``finetune_settings`` are refused, not taken up.
    ``finetune_jobs`` runs go at a time (see `exlm_chem.finetuning.finetune_each`).
    The baselines' records of the folders ``baselines_from`` are taken into the cache first
    (`import_baselines`).
    """
    out = Path(out)
    _check_places(split, out, data_dir, resume, overwrite)
    finetune_settings = finetune_settings or FinetuneSettings()
    # A model trained from scratch is named by its version where features name their weights.
    trained = {
        spec.name: f"chemprop-{check_chemprop()}" for spec in features if spec.kind in TRAINED
    }
    if finetune:
        check_run_settings(out / "finetune_runs.json", finetune_settings)
    featurizers = {
        spec.name: trained.get(spec.name) or make_featurizer(spec) for spec in features
    }  # a bad model folder fails here
    reused = baseline_records(baselines_from)
    out.mkdir(parents=True, exist_ok=True)
    with _only_writer(out):  # another run writing here would overwrite what this one adds
        records = read_records(out / "results.json") if resume else []
        cache_dir = Path(cache_dir) if cache_dir else out / "cache"
        if reused:
            copied = import_baselines(reused, cache_dir)
            logger.info("%d baseline results taken into the cache from --baselines-from", copied)
        # A record made with other probe settings (a random forest of 200 trees, not 500) is not
        # done: it is made again, and replaced when it is.
        done = {result_key(r) for r in records if _current_settings(r)}
        reported: set = set()
        reports_written = False
        for name in datasets:
            before = list(records)
            task_type = DATASETS[name].task_type
            to_tune: list[ModelToTune] = []
            for spec in features:
                featurizer = featurizers[spec.name]
                records = _without_other_weights(records, name, spec.name, str(featurizer))
                if spec.kind in TRAINED:
                    made = scratch_records(
                        name, spec, featurizer, split, seeds, done, data_dir, cache_dir
                    )
                    records += made
                    if made:
                        atomic_write_text(out / "results.json", json.dumps(records, indent=1))
                    continue
                spec_probes = [*probes, *(["finetune"] if finetune and tunable(spec) else [])]
                todo = [
                    (seed, probe)
                    for seed in seeds
                    for probe in spec_probes
                    if result_key(record_key(name, spec.name, str(featurizer), probe, seed, split))
                    not in done
                ]
                if not todo:
                    continue
                baseline = is_baseline(spec)
                kept = {
                    (seed, probe): cached_baseline(
                        cache_dir, record_key(name, spec.name, str(featurizer), probe, seed, split)
                    )
                    for seed, probe in todo
                    if baseline
                }
                if baseline and all(kept.values()):  # every result is kept: no features needed
                    for record in kept.values():
                        records = _add_record(records, record, out)
                    continue
                start = time.perf_counter()
                # Fine-tuning alone needs the rows, not the vectors.
                only_finetune = all(probe == "finetune" for _, probe in todo)
                loading = ReadableRows(featurizer) if only_finetune else featurizer
                _, dataset = load_features(name, loading, data_dir, cache_dir)
                featurize_seconds = round(time.perf_counter() - start, 1)
                logger.info(
                    "%s / %s: %d molecules featurized (or read from the cache) in %.0f s",
                    name,
                    spec.name,
                    len(dataset),
                    featurize_seconds,
                )
                _report_reading(
                    name,
                    spec.name,
                    dropped_rows(name, data_dir, dataset.ids),
                    getattr(loading, "counts", None),
                    reported,
                )
                splits, seed_free = {}, {}
                for seed, probe in todo:
                    if probe == "finetune":
                        continue  # after the probes: the learning rate is chosen over every seed
                    record = kept.get((seed, probe))
                    if record is None:
                        key = record_key(name, spec.name, str(featurizer), probe, seed, split)
                        record = _probe_record(
                            key, task_type, dataset, splits, seed_free, feature_blocks(featurizer)
                        )
                        record["featurize_seconds"] = featurize_seconds
                        if baseline:
                            keep_baseline(cache_dir, record)
                    records = _add_record(records, record, out)
                finetune_seeds = [seed for seed, probe in todo if probe == "finetune"]
                if finetune_seeds:
                    to_tune.append(
                        ModelToTune(
                            spec,
                            featurizer.model,  # loaded (and for `random`, reinitialized) once
                            str(featurizer),
                            dataset,
                            splits,
                            finetune_seeds,
                        )
                    )
            if to_tune:  # every model of this dataset together, after the probes
                records += finetune_results(
                    name,
                    to_tune,
                    split,
                    out / "finetune_runs.json",
                    finetune_settings,
                    finetune_rates,
                    device,
                    finetune_heads,
                    finetune_choice_seeds or seeds,
                    finetune_jobs,
                    cache_dir / "finetune-checkpoints" / name,
                )
                atomic_write_text(out / "results.json", json.dumps(records, indent=1))
            if records != before:  # after each dataset: a run of days keeps its reports current
                write_reports(records, out)
                reports_written = True
        if not reports_written:  # nothing new: the report is still rewritten, in today's form
            write_reports(records, out)
        return records


def _add_record(records: list[dict], record: dict, out: Path) -> list[dict]:
    """``records`` with ``record`` in place of any earlier one of the same key, logged and
    written to ``out``/results.json at once (a stopped run keeps it)."""
    log_result(record)
    records = [r for r in records if result_key(r) != result_key(record)] + [record]
    atomic_write_text(out / "results.json", json.dumps(records, indent=1))
    return records


@contextlib.contextmanager
def _only_writer(out: Path):
    """An exclusive lock on ``out`` while inside: two benchmark runs writing one folder would
    each rewrite results.json from what they read at their start, and the later write would
    drop the other's results."""
    import fcntl

    with open(out / ".writing", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"{out}: another exlm-chem benchmark is writing its results there; wait for it "
                "to finish or choose another --out"
            ) from None
        yield


def _probe_record(key: dict, task_type: str, dataset, splits, seed_free, blocks) -> dict:
    """The record of one probe fitted on one seed's split (splits: made once per seed)."""
    probe, seed, split = key["probe"], key["seed"], key["split"]
    # DeepChem's scaffold split is deterministic, and so is the linear probe on it.
    deterministic = split == "scaffold" and probe == "logreg"
    train, valid, test = cached_split(splits, dataset, split, seed)
    start = time.perf_counter()
    if deterministic and probe in seed_free:
        valid_prediction, prediction = seed_free[probe]
    else:
        valid_prediction, prediction = probe_predictions(
            probe, task_type, train, valid, test, seed, blocks=blocks
        )
    if deterministic:
        seed_free[probe] = valid_prediction, prediction
    return make_record(
        key, metric_name(task_type), task_type, valid, test, valid_prediction, prediction, start
    )


def _check_places(split: str, out: Path, data_dir, resume: bool, overwrite: bool) -> None:
    """InputError for a split we do not know, an output that is a file or already holds
    results (without resume or overwrite), or a data folder that does not exist."""
    if split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise InputError(f"{data_dir}: data folder does not exist")
    if (out / "results.json").exists() and not (resume or overwrite):
        raise InputError(
            f"{out}: already holds results; pass --resume to add to them or --overwrite to "
            "start again"
        )


def _without_other_weights(records: list[dict], dataset: str, features: str, featurizer: str):
    """The records less those of ``features`` on ``dataset`` made by other weights (a replaced
    default model, say), which would otherwise be averaged with the new ones."""
    current = [
        r
        for r in records
        if not (
            r["dataset"] == dataset
            and r["features"] == features
            and r.get("featurizer") != featurizer
        )
    ]
    if len(current) < len(records):
        logger.info(
            "%s / %s: dropping %d results of other weights",
            dataset,
            features,
            len(records) - len(current),
        )
    return current


def _current_settings(record: dict) -> bool:
    """Whether a record was made with today's settings of its probe."""
    return record.get("probe_settings") == PROBE_SETTINGS.get(record["probe"])


def _report_reading(name: str, features: str, dropped: list[int], counts, reported: set) -> None:
    """One line for the rows a featurizer dropped (once per dataset and set of rows), one for
    the molecules an ExLM model could not read in full."""
    if dropped and (name, tuple(dropped)) not in reported:
        reported.add((name, tuple(dropped)))
        shown = ", ".join(map(str, dropped[:15])) + (" ..." if len(dropped) > 15 else "")
        logger.warning(
            "%s / %s: %d rows of %s cannot be featurized and are left out (lines %s)",
            name,
            features,
            len(dropped),
            DATASETS[name].file,
            shown,
        )
    if counts and (counts["unknown_atoms"] or counts["truncated"]):
        logger.warning(
            "%s / %s: of %d molecules, %d have atoms outside the model's vocabulary and %d "
            "were truncated",
            name,
            features,
            counts["molecules"] - counts["invalid"],
            counts["unknown_atoms"],
            counts["truncated"],
        )
    if counts:  # each dataset's line counts its own molecules
        counts.clear()
