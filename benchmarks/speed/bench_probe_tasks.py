"""The linear probe on a multi-task set, its tasks fitted one after another (``jobs=1``)
against one per core in threads (the default), interleaved so that machine noise hits both
alike: SIDER (27 tasks) with ECFP4 bits, seeded scaffold split 0, from the shared MoleculeNet
files. The predictions must be identical: each fit runs on one BLAS thread either way.

    EXLM_DATA_DIR=../shared/data python benchmarks/speed/bench_probe_tasks.py --json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from exlm_chem.moleculenet.datasets import load_dataset, split_dataset
from exlm_chem.moleculenet.features import make_featurizer, parse_features
from exlm_chem.moleculenet.probes import probe_predictions
from exlm_chem.parallel import default_workers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import print_result, seconds, shared_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="sider")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared MoleculeNet files: set EXLM_DATA_DIR")
    featurizer = make_featurizer(parse_features("ecfp")[0])
    with tempfile.TemporaryDirectory() as cache:
        tasks, dataset = load_dataset(args.dataset, featurizer, data / "moleculenet", Path(cache))
    parts = split_dataset(dataset, "random_scaffold", 0)

    predictions = {}

    def run(jobs: int) -> None:
        predictions[jobs] = probe_predictions("logreg", "classification", *parts, seed=0, jobs=jobs)

    workers = default_workers()
    times = {1: [], workers: []}
    for _ in range(args.repeats):
        for jobs in times:
            times[jobs].append(seconds(lambda j=jobs: run(j)))
    median = {jobs: statistics.median(values) for jobs, values in times.items()}
    result = {
        "dataset": args.dataset,
        "tasks": len(tasks),
        "train_molecules": len(parts[0]),
        "features": "ecfp (2048 bits)",
        "workers": workers,
        "one_at_a_time_seconds": round(median[1], 2),
        "threaded_seconds": round(median[workers], 2),
        "speedup": round(median[1] / median[workers], 2),
        "identical_predictions": all(
            np.array_equal(a, b) for a, b in zip(predictions[1], predictions[workers])
        ),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
