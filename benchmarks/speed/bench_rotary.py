"""Rotary positions two ways, in float32 and bfloat16: in place on strided quarter views (what
`apply_rotary` does in float32) against a contiguous swapped copy (what it does in bfloat16),
alone on model-sized tensors, inside a whole `embed` call and (bfloat16) inside a pretraining
step under autocast, side by side in one run.

    python benchmarks/speed/bench_rotary.py --json

Each figure is the median over interleaved rounds of (time of the other way) / (time of the
shipped way): above 1 means the shipped choice is faster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from bench_embed import random_small_model
from bench_train_step import pretrain_step

from exlm_chem import embed
from exlm_chem.model import encoder
from exlm_chem.model.encoder import rotary_tables, rotate_on_quarter_views, rotate_on_swapped_copy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles, median_ratio, print_result, replaced

shipped_rotary = encoder.apply_rotary


def other_way(x, cos, sin):
    """The way `apply_rotary` does not take for x's dtype."""
    rotate = rotate_on_swapped_copy if x.dtype == torch.float32 else rotate_on_quarter_views
    return rotate(x, cos.to(x.dtype), sin.to(x.dtype))


def measure(name: str, dtype, model, smiles, rounds: int) -> dict[str, float]:
    """The ratios for one precision: rotary alone on one batch's queries and keys (128
    molecules of 43 states, the benchmark's mean), a whole `embed` call, and in bfloat16 a
    training step."""
    states, heads, head_dim = 128 * 43, model.config.num_heads, model.config.head_dim
    positions = torch.randint(0, 60, (states,)), torch.randint(0, 4, (states,))
    cos, sin = rotary_tables(*positions, head_dim, model.config.rope_base)
    cos, sin = cos[:, None], sin[:, None]
    x = torch.randn(states, 2, heads, head_dim).to(dtype)
    torch.testing.assert_close(
        other_way(x, cos, sin).float(), shipped_rotary(x, cos, sin).float(), rtol=0.02, atol=0.02
    )

    def embed_with(rotary):
        with replaced(encoder, apply_rotary=rotary):
            embed(smiles, model, precision=name, workers=0)

    embed_with(shipped_rotary)  # warm-up
    ratios = {
        f"{name}_rotary_alone_other_over_shipped": median_ratio(
            lambda: shipped_rotary(x, cos, sin), lambda: other_way(x, cos, sin), rounds * 4
        ),
        f"{name}_embed_other_over_shipped": median_ratio(
            lambda: embed_with(shipped_rotary), lambda: embed_with(other_way), rounds
        ),
    }
    if dtype == torch.bfloat16:
        ratios["bf16_train_step_other_over_shipped"] = train_step_ratio(model, smiles, rounds)
    return ratios


def train_step_ratio(model, smiles, rounds: int) -> float:
    """A pretraining step under bf16 autocast, where the projections hand bfloat16 queries and
    keys to the rotation."""
    step = pretrain_step(model, smiles, bf16=True)

    def step_with(rotary):
        with replaced(encoder, apply_rotary=rotary):
            step()

    step_with(shipped_rotary)  # warm-up
    return median_ratio(lambda: step_with(shipped_rotary), lambda: step_with(other_way), rounds * 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="molecules per embed call")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    smiles, source = benchmark_smiles(args.n, split="test")
    model = random_small_model(smiles)
    result = {"n_molecules": len(smiles), "source": source, "threads": torch.get_num_threads()}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        result.update(measure(name, dtype, model, smiles, args.rounds))
    print_result(result, args.json)


if __name__ == "__main__":
    main()
