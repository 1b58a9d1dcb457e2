"""The baselines: features and models that do not depend on the model under test
(fingerprints, descriptors, chemprop trained from scratch). Each result is computed once per
dataset, split, seed and probe, kept in the cache folder, and reused by every later run that
shares it."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..errors import InputError
from ..metrics import metric_name, score
from ..outputs import atomic_write_text
from .chemprop import chemprop_predictions
from .datasets import DATASETS, cached_split, load_dataset
from .features import FIXED, TRAINED, FeatureSpec, MorganCounts, parse_features
from .probes import PROBE_SETTINGS

logger = logging.getLogger(__name__)

SCRATCH = "scratch"  # the probe name of a model trained from scratch (chemprop)
# The fields that name a result (`record_key`).
KEY_FIELDS = ("dataset", "features", "featurizer", "probe", "seed", "split", "probe_settings")


def make_record(key, metric, task_type, valid, test, valid_prediction, prediction, start) -> dict:
    """A result: the test and validation metrics of a (dataset, features, probe, seed)."""
    return dict(
        key,
        metric=metric,
        value=score(task_type, test.y, test.w, prediction),
        valid_value=score(task_type, valid.y, valid.w, valid_prediction),
        fit_seconds=round(time.perf_counter() - start, 1),
    )


def is_baseline(spec: FeatureSpec) -> bool:
    """Features that do not depend on a model: their results are the same for every run."""
    return spec.kind in FIXED or spec.kind in TRAINED


def _baseline_path(cache_dir: Path, key: dict) -> Path:
    name = "-".join(str(key[k]) for k in ("features", "probe", "split", "seed"))
    return cache_dir / "baselines" / key["dataset"] / f"{name}.json"


def cached_baseline(cache_dir: Path, key: dict) -> dict | None:
    """A baseline's record made earlier with the same featurizer and probe settings."""
    path = _baseline_path(cache_dir, key)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if all(record.get(k) == v for k, v in key.items()) else None


def keep_baseline(cache_dir: Path, record: dict) -> None:
    path = _baseline_path(cache_dir, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1))


def baseline_records(folders) -> list[dict]:
    """The baseline records (fingerprints, descriptors, chemprop; today's probe settings) of
    earlier benchmark folders, read from their results.json. The records name their features,
    probe, split and seed, not the data files: take them only from runs on the same
    MoleculeNet files."""
    found = []
    for folder in map(Path, folders):
        path = folder / "results.json"
        if not path.is_file():
            raise InputError(f"--baselines-from {folder}: no results.json there")
        try:
            records = json.loads(path.read_text())
        except ValueError as exc:
            raise InputError(f"--baselines-from {path}: not a results file ({exc})") from None
        if not isinstance(records, list):
            raise InputError(f"--baselines-from {path}: not a results file (not a list)")
        found += [r for r in records if isinstance(r, dict) and _is_baseline_record(r)]
    return found


def import_baselines(records: list[dict], cache_dir: Path) -> int:
    """Keep ``records`` in ``cache_dir`` where it has none for the same key, so that a run
    beside them pays for its own features only; the number kept is returned."""
    copied = 0
    for record in records:
        if cached_baseline(cache_dir, {k: record[k] for k in KEY_FIELDS}) is None:
            keep_baseline(cache_dir, record)
            copied += 1
    return copied


def _is_baseline_record(record: dict) -> bool:
    try:
        (spec,) = parse_features(str(record.get("features")))
    except (InputError, ValueError):
        return False
    current = record.get("probe_settings") == PROBE_SETTINGS.get(record.get("probe"))
    return current and is_baseline(spec) and all(k in record for k in (*KEY_FIELDS, "value"))


def scratch_records(name, spec, trainer, split, seeds, done, data_dir, cache_dir) -> list[dict]:
    """chemprop (``trainer``: its name and version) trained from scratch on each seed's split
    of the molecules RDKit reads (the fingerprint baselines' rows and splits), scored like
    every probe."""
    task_type = DATASETS[name].task_type
    keys = [record_key(name, spec.name, trainer, SCRATCH, seed, split) for seed in seeds]
    keys = [key for key in keys if result_key(key) not in done]
    if not keys:
        return []
    splits, made, dataset = {}, [], None
    for key in keys:
        record = cached_baseline(cache_dir, key)
        if record is None:
            if dataset is None:  # read only when something is to be trained
                _, dataset = load_dataset(name, MorganCounts(), data_dir, cache_dir)
            train, valid, test = cached_split(splits, dataset, split, key["seed"])
            start = time.perf_counter()
            valid_prediction, prediction = chemprop_predictions(
                task_type, train, valid, test, key["seed"]
            )
            record = make_record(
                key, metric_name(task_type), task_type, valid, test, valid_prediction,
                prediction, start,
            )  # fmt: skip
            record["featurize_seconds"] = 0.0
            keep_baseline(cache_dir, record)
        log_result(record, "trained in")
        made.append(record)
    return made


def log_result(record: dict, timing: str = "fit") -> None:
    """One line per result, validation first: it is what every choice is made on."""
    logger.info(
        "%s  %s  %s  seed %d: validation %s %.4f, test %s %.4f (%s %.0f s)",
        record["dataset"], record["features"], record["probe"], record["seed"],
        record["metric"], record.get("valid_value", float("nan")),
        record["metric"], record["value"], timing, record["fit_seconds"],
    )  # fmt: skip


def record_key(dataset, features, featurizer, probe, seed, split) -> dict:
    """The fields that name a result, and the settings of its probe."""
    return dict(
        dataset=dataset, features=features, featurizer=featurizer, probe=probe, seed=seed,
        split=split, probe_settings=PROBE_SETTINGS.get(probe),
    )  # fmt: skip


def result_key(record: dict) -> tuple:
    """What makes a result one result: a resumed suite looks results up by it."""
    return tuple(
        record.get(field)
        for field in ("dataset", "features", "featurizer", "probe", "seed", "split")
    )
