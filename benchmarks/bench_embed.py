"""Embedding throughput: our `embed` against a Hugging Face RobertaModel of the same shape,
against the matmul FLOP limit of this machine, and against ECFP4 fingerprints, in one run.

    python benchmarks/bench_embed.py --json

Both transformers have random weights (speed does not depend on them): ours is the `small`
preset; RoBERTa gets the same depth, width, heads, feed-forward size and vocabulary, and is fed
the molecules the way a typical user loop does (batches in input order, padded, fp32).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from common import benchmark_smiles, print_result

from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer, embed


def matmul_flops_per_second(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def random_small_model(smiles) -> ExLMModel:
    """The `small` preset with random weights (speed does not depend on them), in eval mode,
    with a vocabulary built from ``smiles``."""
    tokenizer = SmilesTokenizer.from_corpus(smiles)
    return ExLMModel(
        ExLMConfig.from_preset("small", vocab_size=tokenizer.vocab_size), tokenizer
    ).eval()


def hf_roberta_time(smiles, tokenizer, config, batch_size) -> float:
    from transformers import RobertaConfig, RobertaModel

    hf = RobertaModel(
        RobertaConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.ffn_multiplier * config.hidden_size,
            max_position_embeddings=config.max_length + 4,
            pad_token_id=0,
        ),
        add_pooling_layer=False,
    ).eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(smiles), batch_size):
            ids = tokenizer.encode_batch(smiles[i : i + batch_size])
            mask = (ids != 0).long()
            hidden = hf(input_ids=ids, attention_mask=mask).last_hidden_state
            (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    warnings.filterwarnings("ignore")

    smiles, source = benchmark_smiles(args.n, split="test")
    model = random_small_model(smiles)
    tokenizer, config = model.tokenizer, model.config

    embed(smiles[:500], model)  # warm-up
    start = time.perf_counter()
    fp32 = embed(smiles, model, batch_size=args.batch_size)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    bf16 = embed(smiles, model, batch_size=args.batch_size, precision="bf16")
    ours_bf16 = time.perf_counter() - start
    hf_roberta_time(smiles[:500], tokenizer, config, args.batch_size)  # warm-up
    theirs = hf_roberta_time(smiles, tokenizer, config, args.batch_size)

    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    start = time.perf_counter()
    for s in smiles:
        generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s))
    ecfp = time.perf_counter() - start

    # The FLOP limit: every real state through every linear layer, at the peak matmul rate.
    ids = tokenizer.encode_batch(smiles)
    real_states = int((ids != 0).sum()) + len(smiles) * 2 * (config.k - 1)
    # What each model computes per molecule: our real states (<s> and </s> expanded k-fold),
    # RoBERTa's padded positions (batches in input order).
    hf_positions = sum(
        tokenizer.encode_batch(smiles[i : i + args.batch_size]).numel()
        for i in range(0, len(smiles), args.batch_size)
    )
    block_parameters = sum(p.numel() for p in model.encoder.blocks.parameters())
    flops = 2 * block_parameters * real_states
    peak = matmul_flops_per_second()

    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    result = {
        "n_molecules": len(smiles),
        "source": source,
        "threads": torch.get_num_threads(),
        "molecules_per_second": round(len(smiles) / ours),
        "ratio_vs_hf_roberta": round(theirs / ours, 3),
        "hf_roberta_molecules_per_second": round(len(smiles) / theirs),
        "fraction_of_flop_limit": round(flops / peak / ours, 3),
        "matmul_gflops": round(peak / 1e9, 1),
        "states_per_molecule": round(real_states / len(smiles), 1),
        "hf_roberta_positions_per_molecule": round(hf_positions / len(smiles), 1),
        "bf16_molecules_per_second": round(len(smiles) / ours_bf16),
        "bf16_ratio_vs_hf_roberta": round(theirs / ours_bf16, 3),
        "bf16_mean_cosine_to_fp32": round(float(cosine.mean()), 6),
        "ecfp4_molecules_per_second": round(len(smiles) / ecfp),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
