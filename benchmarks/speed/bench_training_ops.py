"""Two choices for training on a CPU, each against PyTorch's own operation, side by side in one
run:
- attention in bfloat16: `scaled_dot_product_attention` (the fused kernel) against two matrix
  products (what `attention` takes there), forward and backward;
- dropout: `torch.nn.functional.dropout` against `dropout` (16 random bits per element, four to
  a 64-bit draw), forward and backward;
each alone on fine-tuning and pretraining sized tensors, then inside whole steps under bf16
autocast: a pretraining step (no dropout) and a fine-tuning step (dropout 0.1, `cls` head).

    python benchmarks/speed/bench_training_ops.py --json

Each figure is the median over interleaved rounds of (time with PyTorch's operation) / (time
of the shipped way): above 1 means the shipped choice is faster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_embed import random_small_model
from bench_train_step import pretrain_step

from exlm_chem.finetuning.data import EncodedMolecules
from exlm_chem.finetuning.predictor import PropertyPredictor
from exlm_chem.model import encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles, median_ratio, print_result, replaced

SHIPPED = {"attention": encoder.attention, "dropout": encoder.dropout}


def torch_attention(q, k, v, mask, dropout_p=0.0):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def torch_dropout(x, p, training=True):
    return F.dropout(x, p, training)


TORCH = {"attention": torch_attention, "dropout": torch_dropout}


def forward_backward_ratio(name: str, inputs: list[torch.Tensor], call, rounds: int) -> float:
    """PyTorch's ``name`` over ours, ``call(function, *inputs)`` forward and backward."""
    upstream = torch.randn(inputs[0].shape).to(inputs[0].dtype)

    def run(function):
        leaves = [t.detach().requires_grad_() for t in inputs]
        call(function, *leaves).backward(upstream)

    return median_ratio(lambda: run(SHIPPED[name]), lambda: run(TORCH[name]), rounds * 4)


def attention_alone_ratio(molecules: int, states: int, rounds: int) -> float:
    """One layer's attention (4 heads of 64) in bfloat16 on molecules of ``states // 2`` to
    ``states`` states."""
    g = torch.Generator().manual_seed(0)
    qkv = [torch.randn(molecules, 4, states, 64, generator=g).bfloat16() for _ in range(3)]
    lengths = torch.randint(states // 2, states + 1, (molecules,), generator=g)
    mask = (torch.arange(states) < lengths[:, None])[:, None, None, :]
    return forward_backward_ratio(
        "attention", qkv, lambda attention, q, k, v: attention(q, k, v, mask), rounds
    )


def dropout_alone_ratio(shape: tuple[int, ...], rounds: int) -> float:
    """Dropout 0.1 on a bfloat16 tensor of ``shape``."""
    x = torch.randn(shape).bfloat16()
    return forward_backward_ratio("dropout", [x], lambda dropout, x: dropout(x, 0.1), rounds)


def with_torch(names: tuple[str, ...], step):
    """Runs ``step`` with the encoder's ``names`` replaced by PyTorch's operations."""
    with replaced(encoder, **{name: TORCH[name] for name in names}):
        step()


def step_ratio(step, names: tuple[str, ...], rounds: int) -> float:
    step()  # warm-up
    return median_ratio(step, lambda: with_torch(names, step), rounds)


def finetune_step(model, smiles):
    """A fine-tuning step (forward, backward, AdamW) on 32 molecules, dropout 0.1."""
    predictor = PropertyPredictor(model, "cls", ["target"], "classification", 0.1).train()
    optimizer = torch.optim.AdamW(predictor.parameters(), lr=1e-4, fused=True)
    ids = EncodedMolecules.from_smiles(smiles[:32], model.tokenizer).batch(torch.arange(32))
    targets = torch.randint(0, 2, (32, 1), generator=torch.Generator().manual_seed(0)).float()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            raw = predictor(ids).float()
        F.binary_cross_entropy_with_logits(raw, targets).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    smiles, source = benchmark_smiles(2000)
    model = random_small_model(smiles)
    rounds = args.rounds
    pretrain, finetune = pretrain_step(model, smiles, bf16=True), finetune_step(model, smiles)
    result = {
        "source": source,
        "threads": torch.get_num_threads(),
        "bf16_attention_32x45_torch_over_shipped": attention_alone_ratio(32, 45, rounds),
        "bf16_attention_150x60_torch_over_shipped": attention_alone_ratio(150, 60, rounds),
        "bf16_dropout_1440x256_torch_over_shipped": dropout_alone_ratio((1440, 256), rounds),
        "bf16_dropout_6000x256_torch_over_shipped": dropout_alone_ratio((6000, 256), rounds),
        "bf16_pretrain_step_torch_attention_over_shipped": step_ratio(
            pretrain, ("attention",), rounds * 2
        ),
        "bf16_finetune_step_torch_attention_over_shipped": step_ratio(
            finetune, ("attention",), rounds * 4
        ),
        "bf16_finetune_step_torch_dropout_over_shipped": step_ratio(
            finetune, ("dropout",), rounds * 4
        ),
        "bf16_finetune_step_both_torch_over_shipped": step_ratio(
            finetune, ("attention", "dropout"), rounds * 4
        ),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
