"""Where the time of an fp32 embedding call goes: our `embed` next to the Hugging Face
RobertaModel loop of bench_embed.py, op by op (torch.profiler, self CPU time), in one run.

    python benchmarks/speed/profile_embed.py --json

Ops are grouped into matmul (the linear layers), attention, layer norm, GELU, element-wise
(residual adds, rotary positions, pooling, ...) and the rest; what no op accounts for is Python:
RDKit canonicalization, tokenization, batching. The last line bounds what removing overheads can
give: our speed relative to RoBERTa if everything but our matmuls took no time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from bench_embed import hf_roberta_time, random_small_model

from exlm_chem import embed
from exlm_chem.embedding import default_batch_size

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles, print_result

CPU = torch.device("cpu")

GROUPS = {
    "matmul": ("aten::addmm", "aten::mm", "aten::bmm"),
    "attention": ("aten::_scaled_dot_product", "aten::_softmax", "aten::baddbmm"),
    "layer_norm": ("aten::native_layer_norm",),
    "gelu": ("aten::gelu",),
    "element_wise": (
        "aten::add",
        "aten::mul",
        "aten::addcmul",
        "aten::sub",
        "aten::div",
        "aten::sum",
        "aten::cat",
        "aten::copy_",
        "aten::index",
    ),
}


def group_of(op: str) -> str:
    return next(
        (group for group, prefixes in GROUPS.items() if op.startswith(prefixes)), "other_ops"
    )


def profile(run) -> tuple[float, dict[str, float]]:
    """Wall-clock seconds of run() under the profiler, and its self CPU seconds per op group."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run()
        wall = time.perf_counter() - start
    groups: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        groups[group_of(event.key)] += event.self_cpu_time_total / 1e6
    # Self times of ops running on both threads can add up to more than the wall clock; the
    # shares are of the summed op time plus what no op accounts for.
    ops = sum(groups.values())
    groups["python_rdkit_tokenizer"] = max(wall - ops, 0.0)
    return wall, dict(groups)


def shares(groups: dict[str, float]) -> dict[str, float]:
    total = sum(groups.values())
    return {
        name: round(value / total, 3)
        for name, value in sorted(groups.items(), key=lambda kv: -kv[1])
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=default_batch_size(CPU))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    smiles, source = benchmark_smiles(args.n, split="test")
    torch.manual_seed(0)
    model = random_small_model(smiles)
    tokenizer, config = model.tokenizer, model.config
    embed(smiles[:500], model, batch_size=args.batch_size)  # warm-up
    hf_roberta_time(smiles[:500], tokenizer, config, args.batch_size, CPU)

    ours_wall, ours = profile(lambda: embed(smiles, model, batch_size=args.batch_size))
    theirs_wall, theirs = profile(
        lambda: hf_roberta_time(smiles, tokenizer, config, args.batch_size, CPU)
    )
    our_shares, their_shares = shares(ours), shares(theirs)
    result = {
        "n_molecules": len(smiles),
        "source": source,
        "threads": torch.get_num_threads(),
        "ratio_vs_hf_roberta_profiled": round(theirs_wall / ours_wall, 3),
        "ours_shares": our_shares,
        "hf_roberta_shares": their_shares,
        "ours_matmul_seconds_over_hf_matmul_seconds": round(ours["matmul"] / theirs["matmul"], 3),
        # Our matmul time alone, against RoBERTa's whole loop: the ratio if nothing else cost time.
        "ratio_vs_hf_roberta_if_only_our_matmuls_took_time": round(
            theirs_wall / (ours_wall * our_shares["matmul"]), 3
        ),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
