"""``exlm-chem pretrain`` and ``exlm-chem export``: train a model, ship it with a card."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import defaults
from ..errors import InputError
from ..training.config import PretrainConfig, parse_duration
from .app import show_progress_messages

STOPPED_EXIT_CODE = 143  # a pretraining run stopped by SIGTERM / Ctrl-C (128 + SIGTERM), resumable


def _default(name: str):
    """A pretraining setting's default, from its one home (PretrainConfig)."""
    return PretrainConfig.__dataclass_fields__[name].default


def pretrain(
    corpus: list[Path] = typer.Option(
        ...,
        help="Corpus file(s): any molecule file format; repeat the option for several. Or one "
        "folder made by exlm-chem prepare-corpus.",
    ),
    out: Path = typer.Option(
        ..., help="Run folder: checkpoints, logs, the final model in OUT/model."
    ),
    objective: str = typer.Option(
        _default("objective"),
        help="exlm, mlm for the plain masked-LM baseline, or descriptors (no masks: only the "
        "regression of RDKit descriptors; needs a corpus prepared with --descriptors).",
    ),
    preset: str = typer.Option(_default("preset"), help="Model size: tiny, small or base."),
    k: int | None = typer.Option(
        _default("k"),
        help=f"States per <mask>, <s> and </s> (ExLM; default {defaults.K}); the plain MLM is 1.",
    ),
    mask_rate: float | None = typer.Option(
        _default("mask_rate"), help="Share of the tokens masked (default 0.15); 0 < rate < 1."
    ),
    descriptor_weight: float = typer.Option(
        _default("descriptor_weight"),
        help="Add a head regressing the molecule vector onto its RDKit 2D descriptors, its "
        "loss weighted so beside the token loss (0: none; needs a corpus prepared with "
        "exlm-chem prepare-corpus --descriptors).",
    ),
    max_steps: int | None = typer.Option(
        _default("max_steps"), help="Stop after this many optimizer steps."
    ),
    max_tokens: int | None = typer.Option(
        _default("max_tokens"), help="Stop after this many training tokens."
    ),
    max_time: str | None = typer.Option(
        None, help="Stop after this much training time, e.g. 20m, 2h, 1h30m."
    ),
    batch_tokens: int = typer.Option(
        _default("batch_tokens"), help="Padded tokens per batch (per process)."
    ),
    shape_bucket: int = typer.Option(
        _default("shape_bucket"),
        help="Pad token and expanded lengths to a multiple of N and size batches by the padded "
        "length: few distinct batch shapes (oneDNN keeps kernels per shape for bf16 on CPUs); "
        "1: pad to the longest molecule only.",
    ),
    grad_accum: int = typer.Option(_default("grad_accum"), help="Batches per optimizer step."),
    lr: float = typer.Option(_default("lr"), help="Peak learning rate."),
    warmup: float = typer.Option(_default("warmup"), help="Warm-up, as a fraction of the run."),
    schedule: str = typer.Option(_default("schedule"), help="Decay after warm-up: linear or poly."),
    weight_decay: float = typer.Option(_default("weight_decay")),
    clip: float = typer.Option(_default("clip"), help="Gradient-norm clipping (0: off)."),
    val_corpus: Path | None = typer.Option(
        _default("val_corpus"),
        help="Validation molecules (default: a held-out slice of the corpus).",
    ),
    val_size: int = typer.Option(_default("val_size"), help="Validation molecules used."),
    val_every: int = typer.Option(_default("val_every"), help="Validate every N steps."),
    log_every: int = typer.Option(_default("log_every"), help="Log every N steps."),
    checkpoint_every: int = typer.Option(
        _default("checkpoint_every"), help="Checkpoint every N steps."
    ),
    keep_checkpoints: int = typer.Option(_default("keep_checkpoints"), help="Checkpoints kept."),
    min_token_count: int = typer.Option(
        _default("min_token_count"),
        help="Vocabulary: the corpus's tokens seen at least this often (rarer ones are read as "
        "their nearest known form), plus one token per element.",
    ),
    source_weights: str | None = typer.Option(
        _default("source_weights"),
        help="Draws per epoch of each source's molecules (the corpus's source column, or the "
        "file's name), e.g. moses=0.5,datagrok500k=2; unnamed sources: 1.",
    ),
    workers: int | None = typer.Option(
        _default("workers"),
        help="Processes preparing the corpus (default: one per core, at most 8; 0: this one).",
    ),
    tokenizer: Path | None = typer.Option(
        _default("tokenizer"),
        help="A tokenizer.json to use instead of building one from the corpus.",
    ),
    corpus_cache: Path | None = typer.Option(
        _default("corpus_cache"),
        help="Folder for the prepared corpus, shareable between runs (default: OUT/corpus).",
    ),
    smiles_column: str | None = typer.Option(
        _default("smiles_column"), help="SMILES column of CSV/TSV corpora."
    ),
    canonicalize: bool = typer.Option(
        _default("canonicalize"), help="RDKit-canonicalize the corpus."
    ),
    augment: bool = typer.Option(_default("augment"), help="Randomized-SMILES augmentation."),
    max_length: int = typer.Option(
        _default("max_length"), help="Longest token sequence, <s> and </s> included."
    ),
    resume: bool = typer.Option(
        _default("resume"), help="Continue the run in OUT from its latest checkpoint."
    ),
    init_from: str | None = typer.Option(
        _default("init_from"),
        help="Start from this model's weights (a folder or a shipped model's name, e.g. "
        "exlm-chem-v3): same preset; new tokens start from the atom it reads them as.",
    ),
    seed: int = typer.Option(_default("seed")),
    precision: str = typer.Option(
        _default("precision"), help="auto, fp32 or bf16 (auto: bf16 where it is native)."
    ),
    threads: int | None = typer.Option(
        _default("threads"), help="CPU threads (default: torch's choice)."
    ),
    allocator: str = typer.Option(
        "mimalloc",
        help="mimalloc (Linux, where installed: a quarter less peak memory than glibc's malloc, "
        "no slower; the command restarts itself under it) or system.",
    ),
) -> None:
    """Pretrain ExLM (or the plain-MLM baseline) on a SMILES corpus; resumable; torchrun-ready."""
    from ..environment import restart_under_mimalloc
    from ..training.loop import pretrain as run_pretraining

    if allocator not in ("mimalloc", "system"):
        raise InputError(f"--allocator must be mimalloc or system, not {allocator!r}")
    if allocator == "mimalloc":
        restart_under_mimalloc()
    show_progress_messages()
    # Every option above is a PretrainConfig field of the same name: pass them on as they are.
    settings = {
        name: value
        for name, value in locals().items()
        if name in PretrainConfig.__dataclass_fields__
    }
    settings["max_time"] = parse_duration(max_time) if max_time else None
    result = run_pretraining(PretrainConfig(**settings))
    if result.stopped:
        raise typer.Exit(STOPPED_EXIT_CODE)
    if result.rank == 0:
        typer.echo(
            f"done: {result.step} steps, {result.tokens:,} tokens; model in {result.out / 'model'}"
        )


def prepare_corpus(
    corpus: list[Path] = typer.Argument(
        ..., help="Corpus file(s): any molecule file format, with an optional source column."
    ),
    out: Path = typer.Option(..., help="Folder to write the prepared corpus to."),
    smiles_column: str | None = typer.Option(None, help="SMILES column of CSV/TSV corpora."),
    canonicalize: bool = typer.Option(False, help="RDKit-canonicalize the corpus."),
    workers: int | None = typer.Option(
        None, help="Processes preparing the corpus (default: one per core, at most 8; 0: this one)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a prepared corpus already in OUT."
    ),
    sample: int | None = typer.Option(
        None, help="Keep a seeded random sample of this many molecules (default: all)."
    ),
    seed: int = typer.Option(0, help="Seed of --sample."),
    descriptors: bool = typer.Option(
        False,
        "--descriptors",
        help="Add each molecule's RDKit 2D descriptors, the targets of pretrain "
        "--descriptor-weight (about 7 ms a molecule per core); run again to resume them.",
    ),
    substructures: int = typer.Option(
        0,
        help="With --descriptors: also count this many Morgan environments (radius 0-2, the "
        "most common in the corpus) in each molecule, as more descriptor targets; asked of a "
        "corpus prepared with descriptors, adds them.",
    ),
) -> None:
    """Check a corpus with RDKit and tokenize it once, for `pretrain --corpus` without RDKit."""
    from ..parallel import default_workers
    from ..training.prepare import prepare_corpus as prepare

    show_progress_messages()
    stats = prepare(
        corpus,
        out,
        smiles_column=smiles_column,
        canonicalize=canonicalize,
        workers=default_workers() if workers is None else workers,
        overwrite=overwrite,
        sample=sample,
        seed=seed,
        descriptors=descriptors,
        substructures=substructures,
    )
    typer.echo(
        f"{out}: {stats.kept:,} molecules kept of {stats.read:,} read ({stats.invalid_rdkit:,} "
        f"rejected by RDKit, {stats.untokenizable:,} untokenizable, {stats.empty:,} empty), "
        f"{len(stats.token_counts)} distinct tokens",
        err=True,
    )


def export(
    run: Path = typer.Argument(..., help="A pretraining run folder (OUT of exlm-chem pretrain)."),
    to: Path = typer.Option(
        ...,
        "--to",
        help="Model folder to write: weights, config, tokenizer, curves, MODEL_CARD.md.",
    ),
    fp16: bool = typer.Option(
        False, "--fp16", help="Store the weights in float16 (half the size)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a model already in the --to folder."
    ),
    coverage: Path | None = typer.Option(
        None,
        "--coverage",
        help="JSON of benchmarks/checks/vocabulary_coverage.py for this model: a table on the "
        "card.",
    ),
) -> None:
    """Export a run's model (final, or its latest checkpoint) as a model folder with a card."""
    import torch

    from ..model_card import export_model

    if not run.is_dir():
        raise InputError(f"{run}: not a run folder")
    figures = _coverage_figures(coverage) if coverage else None
    facts = export_model(
        run,
        to,
        dtype=torch.float16 if fp16 else torch.float32,
        overwrite=overwrite,
        coverage=figures,
    )
    typer.echo(
        f"exported step {facts['step']} to {to}; embeddings within "
        f"{facts['embedding_max_abs_difference']:.1e} of float32",
        err=True,
    )


def _coverage_figures(path: Path) -> dict:
    import json

    try:
        figures = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"--coverage {path}: not a readable JSON file ({error})") from error
    if not isinstance(figures, dict):
        raise InputError(f"--coverage {path}: expected a JSON object")
    return figures
