"""The pretraining loop: build the model, step, validate, log and checkpoint, resumably."""

from __future__ import annotations

import time
from contextlib import closing, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ..environment import (
    keep_freed_memory,
    limit_kernel_cache,
    peak_rss_mb,
    release_free_memory,
    resolve_precision,
)
from ..errors import InputError
from ..model import ExLMConfig, ExLMModel, load_model, save_model
from ..parallel import default_workers
from ..tokenizer import SmilesTokenizer
from .batches import BatchStream
from .checkpoints import (
    Counters,
    check_run_folder,
    checkpoint_paths,
    load_checkpoint,
    restore,
    save_checkpoint,
)
from .config import PretrainConfig, learning_rate, parse_source_weights, run_progress
from .data import (
    CorpusSources,
    molecule_weights,
    prepare_corpora,
    write_run_tokenizer,
)
from .distributed import Distributed, gather_positions, rank0_view, setup_distributed
from .prefetch import BatchPrefetcher
from .runlog import RunLog, Window, describe_run
from .stopping import StopSignal
from .validation import validate
from .warm_start import warm_start

TRIM_EVERY = 10  # steps between handing freed memory back to the OS


@dataclass
class PretrainResult:
    model: ExLMModel
    step: int
    tokens: int
    out: Path
    rank: int = 0
    stopped: bool = False  # stopped early on SIGTERM / Ctrl-C, with a checkpoint to resume from


def pretrain(config: PretrainConfig) -> PretrainResult:
    """Train a model as ``config`` says; ``exlm-chem pretrain`` and ``torchrun -m
    exlm_chem.training`` call this."""
    check_run_folder(
        config.out,
        config.resume,
        config.corpus + ([config.val_corpus] if config.val_corpus else []),
    )
    dist = setup_distributed()
    try:
        return _run(config, dist)
    finally:
        if dist.world_size > 1:
            torch.distributed.destroy_process_group()


def build_model(
    model_config: ExLMConfig, tokenizer: SmilesTokenizer, device: torch.device, seed: int
) -> ExLMModel:
    torch.manual_seed(seed)
    return ExLMModel(model_config, tokenizer).to(device)


def build_optimizer(model: ExLMModel, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with RoBERTa's betas and eps; no weight decay on biases and norms."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused: one kernel per parameter instead of a dozen, 3-7x faster steps on 2 CPU cores
    # (benchmarks/speed/bench_optimizer_step.py).
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6, fused=True)


@dataclass
class StepStats:
    loss: float | torch.Tensor  # a device tensor until logged
    parts: dict  # the token and descriptor losses, when the model has a descriptor head
    tokens: int
    molecules: int
    dropped: int | torch.Tensor
    position: dict | None = None  # the data position after the step's batches


def train_step(
    model, training_model, optimizer, batches: BatchPrefetcher, grad_accum: int, clip, autocast
) -> StepStats:
    """One optimizer step over ``grad_accum`` prepared batches. Nothing here waits for the
    device: the loss stays a device tensor until it is logged."""
    stats = StepStats(0.0, {}, 0, 0, 0)
    for micro in range(grad_accum):
        batch = batches.next_batch()
        sync = training_model is model or micro == grad_accum - 1
        with nullcontext() if sync else training_model.no_sync(), autocast:
            output = training_model(
                batch.ids,
                batch.masks,
                state_multiple=batches.shape_bucket,
                descriptors=batch.descriptors,
            )
        (output.loss / grad_accum).backward()
        stats.loss = stats.loss + output.loss.detach() / grad_accum
        for name in ("token_loss", "descriptor_loss"):
            if getattr(output, name) is not None:
                part = getattr(output, name).detach() / grad_accum
                stats.parts[name] = stats.parts.get(name, 0.0) + part
        stats.tokens += batch.tokens
        stats.molecules += batch.molecules
        stats.dropped = stats.dropped + output.num_dropped
        stats.position = batch.position
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return stats


def _run(config: PretrainConfig, dist: Distributed) -> PretrainResult:
    if config.threads:
        torch.set_num_threads(config.threads)
    keep_freed_memory()
    limit_kernel_cache()
    out = config.out
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    checkpoint = load_checkpoint(checkpoint_paths(out)[-1]) if config.resume else None
    train_corpus, val_corpus, corpus_stats, tokenizer = _corpora_and_tokenizer(config, dist)
    descriptors = 0
    if config.uses_descriptors:
        descriptors = check_descriptor_targets(train_corpus, config.corpus[0])
    model = build_model(
        config.model_config(tokenizer.vocab_size, descriptors), tokenizer, dist.device, config.seed
    )
    optimizer = build_optimizer(model, config.lr, config.weight_decay)
    counters, position = Counters(), {"epoch": 0, "index": 0}
    started = None
    if checkpoint is not None:
        counters, position = restore(
            checkpoint, model, optimizer, dist, out, config.batch_settings()
        )
    elif config.init_from:
        started = warm_start(model, load_model(config.init_from), config.init_from)
    training_model = _distributed(model, config, dist)
    precision = resolve_precision(config.precision, dist.device)
    autocast = _autocast(precision, dist.device)

    stream = BatchStream(
        train_corpus,
        config.batch_tokens,
        config.seed,
        dist.rank,
        dist.world_size,
        config.augment,
        molecule_weights(train_corpus, parse_source_weights(config.source_weights)),
        **position,
        shape_bucket=config.shape_bucket,
    )
    steps_only = config.max_steps and not (config.max_time or config.max_tokens)
    log = RunLog(out, dist.is_main, config.max_steps if steps_only else None, counters.step)
    if dist.is_main:
        describe_run(config, model, precision, dist, corpus_stats, len(train_corpus), log)
        if started is not None:
            log.message(
                f"started from {config.init_from}: {started.copied} tensors copied; token rows: "
                f"{started.tokens_copied} copied, {started.tokens_from_fallback} from the atom "
                f"it read them as, {started.tokens_fresh} fresh"
            )

    model.train()
    batches = BatchPrefetcher(
        stream, tokenizer, model, config.seed, counters.step, config.grad_accum, dist.device
    )
    data_position = stream.position()  # of the batches trained on, for checkpoints
    window = Window()
    progress, stopped = rank0_view(
        run_progress(config, counters.step, counters.tokens, counters.elapsed), False, dist
    )
    with StopSignal() as stop_signal, closing(batches):
        while progress < 1.0 and not stopped:
            step_start = time.perf_counter()
            lr = learning_rate(config.lr, config.warmup, config.schedule, progress)
            for group in optimizer.param_groups:
                group["lr"] = lr
            stats = train_step(
                model, training_model, optimizer, batches, config.grad_accum, config.clip, autocast
            )
            data_position = stats.position
            counters.step += 1
            if counters.step % TRIM_EVERY == 0:
                release_free_memory()
            counters.tokens += stats.tokens * dist.world_size
            counters.molecules += stats.molecules * dist.world_size
            counters.elapsed += time.perf_counter() - step_start
            window.add(stats.loss, stats.tokens * dist.world_size, stats.dropped, stats.parts)

            progress, stopped = rank0_view(
                run_progress(config, counters.step, counters.tokens, counters.elapsed),
                stop_signal.received is not None,
                dist,
            )
            done = progress >= 1.0
            validate_now = counters.step % config.val_every == 0 or done
            if counters.step % config.log_every == 0 or validate_now:
                metrics = {
                    **vars(counters),
                    "epoch": data_position["epoch"],
                    **window.metrics(),
                    "lr": lr,
                    "progress": progress,
                    "peak_rss_mb": peak_rss_mb(),
                }
                if validate_now:
                    dist.barrier()
                    if dist.is_main:
                        metrics.update(
                            validate(
                                model,
                                tokenizer,
                                val_corpus,
                                config.batch_tokens,
                                dist.device,
                                autocast,
                            )
                        )
                    dist.barrier()
                log.record(metrics)
                window = Window()
            if counters.step % config.checkpoint_every == 0 or done or stopped:
                _checkpoint(config, dist, model, optimizer, counters, data_position)

    if stopped:
        log.message(f"stopped at step {counters.step} with a checkpoint; continue with --resume")
    elif dist.is_main:
        save_model(model, out / "model", tokenizer)
    log.finish()
    return PretrainResult(model, counters.step, counters.tokens, out, dist.rank, stopped)


def _corpora_and_tokenizer(config: PretrainConfig, dist: Distributed):
    """The training and validation corpora (prepared once, cached), their statistics, and
    the run's tokenizer (written by the main process beside the run)."""
    sources = CorpusSources(
        config.corpus,
        config.val_corpus,
        config.val_size,
        config.smiles_column,
        config.canonicalize,
        config.seed,
        default_workers() if config.workers is None else config.workers,
    )
    train_corpus, val_corpus, stats = prepare_corpora(
        sources, config.corpus_cache or config.out / "corpus", dist
    )
    path = config.out / "tokenizer.json"
    if dist.is_main:
        write_run_tokenizer(
            path, config.tokenizer, stats["token_counts"], config.min_token_count, config.max_length
        )
    dist.barrier()
    return train_corpus, val_corpus, stats, SmilesTokenizer.load(path)


def _distributed(model: ExLMModel, config: PretrainConfig, dist: Distributed):
    """The model the steps run: itself, or wrapped for data-parallel training."""
    if dist.world_size == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model,
        device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
        # The descriptors objective leaves the token-prediction head out of the loss.
        find_unused_parameters=config.objective == "descriptors",
    )


def _autocast(precision: str, device: torch.device):
    """The autocast context of the run's precision; on a GPU, TF32 matrix products enabled too."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )


def _checkpoint(config, dist, model, optimizer, counters: Counters, data_position: dict) -> None:
    """Everything an exact resume needs; every rank's data position, written by the main one."""
    positions = gather_positions(data_position, dist)
    if dist.is_main:
        state = {
            **vars(counters),
            "data_position": positions,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "model_config": model.config.to_dict(),
            "batch_settings": config.batch_settings(),
        }
        save_checkpoint(config.out, state, config.keep_checkpoints)
    dist.barrier()


def check_descriptor_targets(corpus, path: Path) -> int:
    """The number of descriptors of a training corpus prepared with them."""
    if corpus.descriptors is None:
        raise InputError(
            f"{path}: has no descriptors; prepare the corpus with exlm-chem prepare-corpus "
            "--descriptors for --descriptor-weight or --objective descriptors"
        )
    return corpus.descriptors.shape[1]
