"""The linear probe's regularization path with BLAS on one thread (the default) against
BLAS's own thread count, on a Tox21-sized task (6,258 training rows by 256 features,
standardized, a linear signal plus noise), interleaved so that machine noise hits both alike.

    python benchmarks/speed/bench_linear_probe.py --json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from exlm_chem.moleculenet.probes import _fit_linear_probe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import print_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=6258)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows + 800, args.features))
    logits = X @ rng.standard_normal(args.features) * 0.3 + rng.standard_normal(len(X))
    y = (logits > np.quantile(logits, 0.9)).astype(float)  # a Tox21-like 10% positive rate
    train, valid = slice(0, args.rows), slice(args.rows, None)

    def fit(threads):
        start = time.perf_counter()
        model = _fit_linear_probe(True, X[train], y[train], X[valid], y[valid], threads)
        return time.perf_counter() - start, model

    times = {None: [], 1: []}
    models = {}
    for _ in range(args.repeats):
        for threads in times:
            seconds, models[threads] = fit(threads)
            times[threads].append(seconds)
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    p_default = models[None].predict_proba(X[valid])[:, 1]
    p_one = models[1].predict_proba(X[valid])[:, 1]
    result = {
        "rows": args.rows,
        "features": args.features,
        "blas": [(i["internal_api"], i["num_threads"]) for i in threadpool_info()],
        "default_threads_seconds": round(median[None], 3),
        "one_thread_seconds": round(median[1], 3),
        "speedup_one_thread": round(median[None] / median[1], 2),
        "same_C": models[None].C == models[1].C,
        "max_probability_difference": float(np.abs(p_default - p_one).max()),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
