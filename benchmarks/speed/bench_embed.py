"""Embedding throughput: our `embed` against a Hugging Face RobertaModel of the same shape,
against the matmul FLOP limit of this machine, and against ECFP4 fingerprints, in one run.

    python benchmarks/speed/bench_embed.py --json
    python benchmarks/speed/bench_embed.py --device cuda --n 100000 --json

Every round also times our model alone on molecules prepared once (RDKit and tokenizer outside
the timer, as RoBERTa's), `model_only_ratio_vs_hf_roberta`. On a GPU it also reports the
end-to-end rate (RDKit preparation in worker processes overlapped with the model) against the
model alone, and RoBERTa is fed the same length-sorted batches as our model, in fp32 and bf16.

Both transformers have random weights (speed does not depend on them): ours is the `small`
preset; RoBERTa gets the same depth, width, heads, feed-forward size and vocabulary, and is fed
the molecules the way a typical user loop does (batches in input order, padded, fp32). Both
read out the mean of the last layer; the `layers` read-out (every layer's mean) is timed
against it in the same rounds. Our time is `embed` end to end, RDKit canonicalization and
tokenization included; RoBERTa's token ids are made before its timer starts.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer, embed
from exlm_chem.embedding import default_batch_size, embed_prepared, embed_workers
from exlm_chem.environment import describe_hardware, resolve_device
from exlm_chem.preparation import prepare_smiles

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles, print_result


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_second(device, size: int = 2048, repeats: int = 5) -> float:
    size = size * 4 if device.type == "cuda" else size
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def random_small_model(smiles) -> ExLMModel:
    """The `small` preset with random weights (speed does not depend on them), in eval mode,
    with a vocabulary built from ``smiles``."""
    tokenizer = SmilesTokenizer.from_corpus(smiles)
    return ExLMModel(
        ExLMConfig.from_preset("small", vocab_size=tokenizer.vocab_size), tokenizer
    ).eval()


def hf_roberta_time(
    smiles, tokenizer, config, batch_size, device, dtype=torch.float32, length_sorted=False
) -> float:
    """Seconds for RoBERTa to embed ``smiles`` (mean over real positions), batches in input
    order (a typical user loop) or sorted by length (as `embed` sorts them)."""
    from transformers import RobertaConfig, RobertaModel

    if length_sorted:
        smiles = sorted(smiles, key=lambda s: len(tokenizer.tokenize(s)))
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
    )
    hf = hf.eval().to(device, dtype)
    batches = [
        tokenizer.encode_batch(smiles[i : i + batch_size])
        for i in range(0, len(smiles), batch_size)
    ]
    synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        outputs = []
        for ids in batches:
            ids = ids.to(device, non_blocking=True)
            mask = (ids != 0).long()
            hidden = hf(input_ids=ids, attention_mask=mask).last_hidden_state
            outputs.append(((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).float())
        torch.cat(outputs).cpu()
    return time.perf_counter() - start


def timed(function, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: per device")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--repeats", type=int, default=5, help="interleaved rounds (the median is reported)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    warnings.filterwarnings("ignore")
    device = resolve_device(args.device)
    batch_size = args.batch_size or default_batch_size(device)

    smiles, source = benchmark_smiles(args.n, split="test")
    model = random_small_model(smiles).to(device)
    tokenizer, config = model.tokenizer, model.config

    def ours_embed(pooling="mean", precision="fp32"):
        return embed(smiles, model, pooling, batch_size=batch_size, precision=precision, workers=0)

    embed(smiles[:2000], model, batch_size=batch_size, workers=0)  # warm-up
    hf_roberta_time(smiles[:2000], tokenizer, config, batch_size, device)  # warm-up
    on_gpu = device.type == "cuda"
    prepared = prepare_smiles(smiles, tokenizer)

    def model_only(precision="fp32"):
        return embed_prepared(prepared, model, "mean", batch_size, precision)

    # Ours (fp32, bf16) and RoBERTa interleaved, `repeats` times: the machine's speed drifts,
    # so each ratio is taken within one round, and each one's median over the rounds reported.
    rounds = []
    for _ in range(args.repeats):
        ours = timed(ours_embed, device)
        ours_bf16 = timed(lambda: ours_embed(precision="bf16"), device)
        ours_layers = timed(lambda: ours_embed(pooling="layers"), device)
        ours_model_only = timed(model_only, device)
        theirs = hf_roberta_time(
            smiles, tokenizer, config, batch_size, device, length_sorted=on_gpu
        )
        rounds.append((ours, ours_bf16, theirs, ours_layers, ours_model_only))
    ratios = [r[2] / r[0] for r in rounds]
    bf16_ratios = [r[2] / r[1] for r in rounds]
    model_only_ratios = [r[2] / r[4] for r in rounds]
    ratio, bf16_ratio = float(np.median(ratios)), float(np.median(bf16_ratios))
    ours, ours_bf16, theirs = (float(np.median(column)) for column in list(zip(*rounds))[:3])
    layers_over_mean = float(np.median([r[3] / r[0] for r in rounds]))
    model_only_seconds = float(np.median([r[4] for r in rounds]))
    fp32, bf16 = ours_embed(), ours_embed(precision="bf16")

    result = {
        "n_molecules": len(smiles),
        "source": source,
        "device": str(device),
        "device_name": describe_hardware(device),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "molecules_per_second": round(len(smiles) / ours),
        "ratio_vs_hf_roberta": round(ratio, 3),
        "ratio_vs_hf_roberta_each_round": [round(r, 3) for r in ratios],
        "hf_roberta_molecules_per_second": round(len(smiles) / theirs),
        "model_only_ratio_vs_hf_roberta": round(float(np.median(model_only_ratios)), 3),
        "model_only_ratio_vs_hf_roberta_each_round": [round(r, 3) for r in model_only_ratios],
        "layers_readout_time_over_mean": round(layers_over_mean, 3),
    }
    if on_gpu:
        # The model alone (fp32: the rounds' median; bf16 timed here), against everything
        # (RDKit in workers).
        for precision in ("fp32", "bf16"):
            if precision == "fp32":
                model_seconds = model_only_seconds
            else:
                model_seconds = timed(lambda: model_only("bf16"), device)
            end_to_end = timed(
                lambda p=precision: embed(smiles, model, "mean", batch_size, precision=p),
                device,
            )
            suffix = "" if precision == "fp32" else "_bf16"
            result[f"model_only_mol_per_s{suffix}"] = round(len(smiles) / model_seconds)
            result[f"end_to_end_mol_per_s{suffix}"] = round(len(smiles) / end_to_end)
            result[f"end_to_end_over_model_only{suffix}"] = round(model_seconds / end_to_end, 3)
        hf_bf16 = hf_roberta_time(
            smiles, tokenizer, config, batch_size, device, torch.bfloat16, length_sorted=True
        )
        result["model_only_over_hf_roberta"] = round(
            theirs / (len(smiles) / result["model_only_mol_per_s"]), 3
        )
        result["model_only_bf16_over_hf_roberta_bf16"] = round(
            hf_bf16 / (len(smiles) / result["model_only_mol_per_s_bf16"]), 3
        )
        result["end_to_end_workers"] = embed_workers(device)

    if not on_gpu:
        from rdkit import Chem
        from rdkit.Chem import rdFingerprintGenerator

        generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
        start = time.perf_counter()
        for s in smiles:
            generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s))
        result["ecfp4_molecules_per_second"] = round(len(smiles) / (time.perf_counter() - start))

    # The FLOP limit: every real state through every linear layer, at the peak matmul rate.
    ids = tokenizer.encode_batch(smiles)
    real_states = int((ids != 0).sum()) + len(smiles) * 2 * (config.k - 1)
    # What each model computes per molecule: our real states (<s> and </s> expanded k-fold),
    # RoBERTa's padded positions (batches in input order).
    hf_positions = sum(
        tokenizer.encode_batch(smiles[i : i + batch_size]).numel()
        for i in range(0, len(smiles), batch_size)
    )
    block_parameters = sum(p.numel() for p in model.encoder.blocks.parameters())
    flops = 2 * block_parameters * real_states
    peak = matmul_flops_per_second(device)
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    result.update(
        {
            "fraction_of_flop_limit": round(flops / peak / ours, 3),
            "matmul_gflops": round(peak / 1e9, 1),
            "states_per_molecule": round(real_states / len(smiles), 1),
            "hf_roberta_positions_per_molecule": round(hf_positions / len(smiles), 1),
            "bf16_molecules_per_second": round(len(smiles) / ours_bf16),
            "bf16_ratio_vs_hf_roberta": round(bf16_ratio, 3),
            "bf16_ratio_vs_hf_roberta_each_round": [round(r, 3) for r in bf16_ratios],
            "bf16_mean_cosine_to_fp32": round(float(cosine.mean()), 6),
        }
    )
    print_result(result, args.json)


if __name__ == "__main__":
    main()
