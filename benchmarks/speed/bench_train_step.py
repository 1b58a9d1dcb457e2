"""Training-step cost of ExLM (k = 4) against plain MLM, on the same batches, in one run.

Forward + backward + AdamW step of the `small` preset on batches of real ZINC SMILES,
the two objectives interleaved step by step; medians over the timed steps. The memory
allocator and kernel cache are set up as `exlm-chem pretrain` sets them up (`keep_freed_memory`,
`limit_kernel_cache`). On a GPU it also reports `exlm_bf16_gpu_busy_fraction`: over the timed
batches run back to back (bf16, no synchronisation between steps), the share of the GPU's
timeline in which a kernel or copy runs (the profiler's device records).

    python benchmarks/speed/bench_train_step.py --json
    python benchmarks/speed/bench_train_step.py --device cuda --batch-tokens 32768 --json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer, tokenize_smiles
from exlm_chem.environment import (
    describe_hardware,
    keep_freed_memory,
    limit_kernel_cache,
    resolve_device,
)
from exlm_chem.model.exlm import MASK_ID, PAD_ID
from exlm_chem.model.expansion import expand_states
from exlm_chem.training.batches import epoch_batches

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles, print_result


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_step(model, optimizer, ids, masks, bf16=False) -> None:
    """One optimizer step, without waiting for the device."""
    autocast = (
        torch.autocast(ids.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    optimizer.zero_grad(set_to_none=True)
    with autocast:
        loss = model(ids, masks).loss
    loss.backward()
    optimizer.step()


def pretrain_step(model, smiles, bf16: bool = True):
    """A pretraining step (forward, backward, AdamW) of a training copy of ``model`` on the
    first 150 of ``smiles`` (about 6,000 tokens) with fixed masks, as a function of no
    arguments."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = model.tokenizer.encode_batch(smiles[:150])
    masks = model.choose_masks(ids, torch.Generator().manual_seed(0))
    return lambda: run_step(model, optimizer, ids, masks, bf16)


def timed_step(model, optimizer, ids, masks, bf16=False) -> float:
    synchronize(ids.device)
    start = time.perf_counter()
    run_step(model, optimizer, ids, masks, bf16)
    synchronize(ids.device)
    return time.perf_counter() - start


def covered_length(intervals) -> float:
    """Length of the union of (start, end) intervals: the time in which at least one runs."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def gpu_busy_fraction(model, optimizer, device_batches) -> float | None:
    """Share of the GPU's timeline, from the first kernel of back-to-back bf16 steps (no
    synchronisation between them, as in pretraining) to the last, in which some kernel or copy
    runs: what is left is the GPU waiting for Python and kernel launches. None where the
    profiler recorded nothing on the device (no CUPTI), so that the other figures still come."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    synchronize(device_batches[0][0].device)
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        for ids, masks in device_batches:
            run_step(model, optimizer, ids, masks, bf16=True)
        synchronize(ids.device)
    on_gpu = [
        (event.start_ns(), event.start_ns() + event.duration_ns())
        for event in profiler.profiler.kineto_results.events()
        if event.device_type() == DeviceType.CUDA
    ]
    if not on_gpu:
        return None
    span = max(end for _, end in on_gpu) - min(start for start, _ in on_gpu)
    return round(covered_length(on_gpu) / span, 3)


def dag_part_time(model, ids, masks) -> float:
    """Forward + backward of what ExLM adds after the encoder: the token head on the gathered
    states, the transition head and the DAG loss (the encoder's output taken as given)."""
    masked = ids.masked_fill(masks, MASK_ID)
    batch = expand_states(masked, model.config.k, model.expand_ids, PAD_ID)
    with torch.no_grad():
        hidden = model.encoder(batch.ids, batch.p1, batch.p2, batch.valid)
    synchronize(ids.device)
    start = time.perf_counter()
    hidden.requires_grad_(True)
    model._exlm_loss(hidden, batch.expanded, ids, masks, with_predictions=False).loss.backward()
    synchronize(ids.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="small")
    parser.add_argument(
        "--batch-tokens", type=int, default=6144, help="padded tokens per batch, as in pretraining"
    )
    parser.add_argument("--steps", type=int, default=12, help="timed steps per objective")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = resolve_device(args.device)
    keep_freed_memory()  # the allocator and kernel-cache settings of pretraining
    limit_kernel_cache()

    n_batches = args.steps + args.warmup
    smiles, source = benchmark_smiles(20_000)
    tokenizer = SmilesTokenizer.from_corpus(smiles)
    # Length-bucketed batches of a token budget, cut exactly as pretraining cuts them.
    lengths = np.array([len(tokenize_smiles(s)) + 2 for s in smiles], dtype=np.int32)
    batch_indices = epoch_batches(
        lengths, epoch=0, seed=0, rank=0, world_size=1, batch_tokens=args.batch_tokens
    )[:n_batches]
    batches = [tokenizer.encode_batch([smiles[i] for i in rows]) for rows in batch_indices]

    models, optimizers = {}, {}
    for objective in ("exlm", "mlm"):
        config = ExLMConfig.from_preset(
            args.preset, vocab_size=tokenizer.vocab_size, objective=objective
        )
        models[objective] = ExLMModel(config).train().to(device)
        optimizers[objective] = torch.optim.AdamW(models[objective].parameters(), lr=1e-4)
    exlm = models["exlm"]

    times = {"exlm": [], "mlm": [], "exlm_bf16": [], "dag": []}
    token_ratios, real_tokens, timed_batches = [], [], []
    for step, ids in enumerate(batches):
        masks = exlm.choose_masks(ids, torch.Generator().manual_seed(step))
        ids, masks = ids.to(device), masks.to(device)
        expanded = expand_states(
            ids.masked_fill(masks, MASK_ID), exlm.config.k, exlm.expand_ids, PAD_ID
        )
        token_ratios.append(expanded.valid.sum().item() / (ids != PAD_ID).sum().item())
        real_tokens.append((ids != PAD_ID).sum().item())
        sample = {
            "exlm": timed_step(exlm, optimizers["exlm"], ids, masks),
            "mlm": timed_step(models["mlm"], optimizers["mlm"], ids, masks),
            "exlm_bf16": timed_step(exlm, optimizers["exlm"], ids, masks, bf16=True),
            "dag": dag_part_time(exlm, ids, masks),
        }
        if step >= args.warmup:
            for key, value in sample.items():
                times[key].append(value)
            timed_batches.append((ids, masks))  # on the device, for the GPU-busy fraction

    median = {key: statistics.median(values) for key, values in times.items()}
    tokens = statistics.mean(real_tokens[args.warmup :])
    token_ratio = statistics.mean(token_ratios[args.warmup :])
    result = {
        "preset": args.preset,
        "device": str(device),
        "device_name": describe_hardware(device),
        "source": source,
        "batch_tokens": args.batch_tokens,
        "mean_molecules_per_batch": round(statistics.mean(len(b) for b in batches), 1),
        "timed_steps": args.steps,
        "threads": torch.get_num_threads(),
        "exlm_over_mlm_step_time": round(median["exlm"] / median["mlm"], 3),
        "token_ratio": round(token_ratio, 3),
        "goal_exlm_over_mlm_max": round(1.1 * token_ratio, 3),
        "dag_share": round(median["dag"] / median["exlm"], 3),
        "mlm_tokens_per_second": round(tokens / median["mlm"]),
        "exlm_tokens_per_second": round(tokens / median["exlm"]),
        "bf16_speedup": round(median["exlm"] / median["exlm_bf16"], 3),
        "exlm_bf16_tokens_per_second": round(tokens / median["exlm_bf16"]),
    }
    if device.type == "cuda":
        result["exlm_bf16_gpu_busy_fraction"] = gpu_busy_fraction(
            exlm, optimizers["exlm"], timed_batches
        )
    print_result(result, args.json)


if __name__ == "__main__":
    main()
