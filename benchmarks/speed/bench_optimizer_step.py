"""AdamW's step on the default model's parameters: PyTorch's fused kernel (what pretraining
and fine-tuning use) against its per-parameter loop and its foreach loop, interleaved, with
the same random gradients; the largest difference in the updated weights.

    python benchmarks/speed/bench_optimizer_step.py --json
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

from exlm_chem.model.storage import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import print_result

VARIANTS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.manual_seed(0)

    base = load_model()
    gradients = [torch.randn_like(p) for p in base.parameters()]
    models, optimizers = {}, {}
    for name, options in VARIANTS.items():
        models[name] = copy.deepcopy(base)
        for p, g in zip(models[name].parameters(), gradients):
            p.grad = g.clone()
        optimizers[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4, **options)

    times = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            times[name].append((time.perf_counter() - start) / args.steps)
    ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
    difference = max(
        (a - b).abs().max().item()
        for a, b in zip(models["loop"].parameters(), models["fused"].parameters())
    )
    result = {
        "parameters": sum(p.numel() for p in base.parameters()),
        "threads": torch.get_num_threads(),
        **{f"{name}_ms_per_step": round(value, 1) for name, value in ms.items()},
        "fused_speedup_vs_loop": round(ms["loop"] / ms["fused"], 2),
        "fused_speedup_vs_foreach": round(ms["foreach"] / ms["fused"], 2),
        "max_weight_difference_fused_vs_loop": difference,
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
