"""`torch.compile` on the embedding path: eager against compiled encoder, fp32 and bf16, in
one run, to decide whether `embed` should compile its encoder.

The encoder's forward is compiled with dynamic shapes (batch lengths vary); the compilation
time (first pass over the molecules, both precisions) is reported apart from the timed
rounds, in which eager and compiled alternate and the median round's ratio is reported.

    python benchmarks/speed/bench_compile_embed.py --json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from bench_embed import random_small_model

from exlm_chem import embed
from exlm_chem.environment import describe_hardware

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles, print_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    smiles, source = benchmark_smiles(args.n, split="test")
    model = random_small_model(smiles)
    eager = model.encoder.forward
    compiled = torch.compile(eager, dynamic=True)

    def run(forward, precision):
        model.encoder.forward = forward
        start = time.perf_counter()
        vectors = embed(smiles, model, "mean", precision=precision, workers=0)
        return time.perf_counter() - start, vectors

    result = {
        "n_molecules": len(smiles),
        "source": source,
        "device_name": describe_hardware(torch.device("cpu")),
        "threads": torch.get_num_threads(),
    }
    first_passes = 0.0
    for precision in ("fp32", "bf16"):
        _, reference = run(eager, precision)
        seconds, vectors = run(compiled, precision)
        first_passes += seconds
        result[f"{precision}_max_abs_difference"] = float(np.abs(vectors - reference).max())
    result["compiled_first_passes_seconds"] = round(first_passes, 1)  # compilation included
    for precision in ("fp32", "bf16"):
        rounds = [
            (run(eager, precision)[0], run(compiled, precision)[0]) for _ in range(args.repeats)
        ]
        result[f"{precision}_eager_mol_per_s"] = round(
            len(smiles) / statistics.median(e for e, _ in rounds)
        )
        result[f"{precision}_compiled_mol_per_s"] = round(
            len(smiles) / statistics.median(c for _, c in rounds)
        )
        result[f"{precision}_compiled_speedup"] = round(
            statistics.median(e / c for e, c in rounds), 3
        )
    print_result(result, args.json)


if __name__ == "__main__":
    main()
