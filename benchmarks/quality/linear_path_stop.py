"""Does stopping the linear probe's regularization path early change what it chooses?

    EXLM_DATA_DIR=../shared/data python benchmarks/quality/linear_path_stop.py --features \
        "exlm:exlm-chem-v2[layers],exlm:exlm-chem-v2[layers]&ecfp,random:exlm-chem-v2[layers]"

The suite's `logreg` probe fits, per task and per input (standardized columns, and the
features as they are), logistic regression (ridge for regression) along C = 1e-4 ... 100 and
keeps the C with the best validation value. The weakest regularizations are the slowest
fits. This script walks the whole grid once per task and input, on the **validation** parts
of the seeded scaffold splits only (test parts are not read), records every C's validation
value and fit time (paths.jsonl: one line per dataset, features and seed, with every task's
paths; a stopped run continues after the last line written), and reports for each patience (grid
values past the best that do not beat it before the walk stops):
- how often it chooses the same C as the whole grid, and the same (input, C) per task;
- the validation score of what it chooses (best input per task, averaged over the tasks)
  against the whole grid's, beside the spread of that score between the splits;
- the share of fit time it saves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from exlm_chem.metrics import metric_name
from exlm_chem.moleculenet.datasets import DATASETS, load_features, split_dataset
from exlm_chem.moleculenet.features import feature_blocks, make_featurizer, parse_features
from exlm_chem.moleculenet.probes import (
    LinearPath,
    _BlockScaler,
    _task_rows,
    choose_regularization,
    quiet_linear_fits,
)
from exlm_chem.outputs import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import shared_data_dir

PATIENCES = (1, 2, 3)


def task_paths(task_type: str, train, valid, blocks) -> list[list[dict]]:
    """Per task, per input: the whole path's values and seconds, and each patience's choice
    with the C values it fitted."""
    classification = task_type == "classification"
    scaler = _BlockScaler(blocks).fit(train.X)
    inputs = [
        (scaler.transform(train.X), scaler.transform(valid.X)),
        (np.asarray(train.X, dtype=np.float64), np.asarray(valid.X, dtype=np.float64)),
    ]
    tasks = []
    for t in range(train.y.shape[1]):
        y_train = train.y[train.w[:, t] > 0, t]
        if classification and len(np.unique(y_train)) < 2:
            continue  # the suite predicts the training rate: no path
        paths = []
        for train_X, valid_X in inputs:
            X_train, y_train = _task_rows(train, train_X, t)
            X_valid, y_valid = _task_rows(valid, valid_X, t)
            path = LinearPath(classification, X_train, y_train, X_valid, y_valid)
            choices = {"full": choose_regularization(path.value, None)}
            fitted = {"full": sorted(path.values)}
            for patience in PATIENCES:
                asked: set[float] = set()

                def value(c: float, asked=asked, path=path) -> float:
                    asked.add(c)
                    return path.value(c)

                choices[str(patience)] = choose_regularization(value, patience)
                fitted[str(patience)] = sorted(asked)
            paths.append(
                {
                    "task": t,
                    "values": {repr(c): v for c, v in path.values.items()},
                    "seconds": {repr(c): s for c, s in path.seconds.items()},
                    "choices": choices,
                    "fitted": fitted,
                }
            )
        tasks.append(paths)
    return tasks


def measure(args) -> None:
    data = shared_data_dir() / "moleculenet"
    lines_file = args.out / "paths.jsonl"
    done = set()
    if lines_file.exists():
        for line in lines_file.read_text().splitlines():
            row = json.loads(line)
            done.add((row["dataset"], row["features"], row["seed"]))
    for name in args.datasets.split(","):
        task_type = DATASETS[name].task_type
        for spec in parse_features(args.features):
            seeds = [s for s in args.seeds if (name, spec.name, s) not in done]
            if not seeds:
                continue
            featurizer = make_featurizer(spec)
            _, dataset = load_features(name, featurizer, data, args.cache_dir)
            for seed in seeds:
                train, valid, _ = split_dataset(dataset, "random_scaffold", seed)
                with threadpool_limits(limits=1, user_api="blas"), quiet_linear_fits():
                    tasks = task_paths(task_type, train, valid, feature_blocks(featurizer))
                row = {"dataset": name, "features": spec.name, "seed": seed, "tasks": tasks}
                with open(lines_file, "a") as handle:  # one whole line per split
                    handle.write(json.dumps(row) + "\n")
                seconds = sum(sum(p["seconds"].values()) for paths in tasks for p in paths)
                print(f"{name} {spec.name} seed {seed}: {seconds:.0f} s of fits", flush=True)


def chosen_value(paths: list[dict], rule: str) -> tuple[float, tuple[int, str]]:
    """The validation value of the input (and its C) a rule picks for one task: the suite
    keeps the input whose chosen C scores best."""
    picks = [
        (p["values"][repr(p["choices"][rule])], i, p["choices"][rule]) for i, p in enumerate(paths)
    ]
    value, i, c = max(picks, key=lambda pick: (pick[0], -pick[1]))
    return value, (i, repr(c))


def summarize(args) -> str:
    rows = [json.loads(line) for line in (args.out / "paths.jsonl").read_text().splitlines()]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["features"]), []).append(row)
    out = [
        "| set | features | splits | paths | patience | same C | same (input, C) per task "
        "| validation, whole grid | validation, stopped (difference) | spread between splits "
        "| fit time saved |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    totals = {str(p): [0.0, 0.0] for p in PATIENCES}
    worst = {str(p): (0.0, "") for p in PATIENCES}  # largest validation loss / split spread
    for (name, features), group in groups.items():
        sign = -1 if metric_name(DATASETS[name].task_type) == "rmse" else 1
        paths = [p for row in group for task in row["tasks"] for p in task]
        full_seconds = sum(sum(p["seconds"].values()) for p in paths)
        per_split_full = [
            np.mean([chosen_value(task, "full")[0] for task in row["tasks"]]) for row in group
        ]
        for patience in map(str, PATIENCES):
            same_c = np.mean([p["choices"][patience] == p["choices"]["full"] for p in paths])
            tasks = [task for row in group for task in row["tasks"]]
            same_pick = np.mean(
                [chosen_value(t, patience)[1] == chosen_value(t, "full")[1] for t in tasks]
            )
            per_split = [
                np.mean([chosen_value(task, patience)[0] for task in row["tasks"]]) for row in group
            ]
            seconds = sum(sum(p["seconds"][repr(c)] for c in p["fitted"][patience]) for p in paths)
            totals[patience][0] += full_seconds
            totals[patience][1] += seconds
            full, stopped = sign * np.mean(per_split_full), sign * np.mean(per_split)
            spread = np.std(per_split_full, ddof=1) if len(group) > 1 else float("nan")
            share = abs(stopped - full) / spread if spread > 0 else 0.0
            if share > worst[patience][0]:
                worst[patience] = (share, f"{name} `{features}`")
            out.append(
                f"| {name} | `{features}` | {len(group)} | {len(paths)} | {patience} "
                f"| {same_c:.3f} | {same_pick:.3f} | {full:.4f} "
                f"| {stopped:.4f} ({stopped - full:+.4f}) | {spread:.4f} "
                f"| {1 - seconds / full_seconds:.0%} |"
            )
    out.append("")
    for patience, (full, stopped) in totals.items():
        out.append(
            f"Patience {patience}: fits take {stopped:.0f} s against {full:.0f} s for the whole "
            f"grid ({stopped / full:.2f} of the time); its largest change of a validation score "
            f"is {worst[patience][0]:.2f} of the spread between splits ({worst[patience][1]})."
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", required=True)
    parser.add_argument("--datasets", default="bbbp,bace,clintox,tox21,sider,esol,freesolv,lipo")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/moleculenet-cache"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/linear_path_stop"))
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarize_only:
        measure(args)
    table = summarize(args)
    atomic_write_text(args.out / "results.md", table)
    print(table)


if __name__ == "__main__":
    main()
