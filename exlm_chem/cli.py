"""The ``exlm-chem`` command line: a thin typer layer over the library functions."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .errors import InputError
from .training.config import PretrainConfig, parse_duration

STOPPED_EXIT_CODE = 143  # a pretraining run stopped by SIGTERM / Ctrl-C (128 + SIGTERM), resumable

app = typer.Typer(
    help="SMILES representation learning with ExLM: tokenize, pretrain, embed and benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def info() -> None:
    """Print package, library and device information, and where the default model is."""
    from .environment import describe_environment

    for key, value in describe_environment().items():
        typer.echo(f"{key}: {value}")


@app.command()
def tokenize(
    input: Path | None = typer.Argument(
        None, help="Molecule file (csv, tsv, smi, txt, sdf; optionally .gz)."
    ),
    smiles: str | None = typer.Option(
        None, "--smiles", "-s", help="Tokenize this SMILES instead of a file."
    ),
    smiles_column: str | None = typer.Option(None, help="SMILES column of a CSV/TSV file."),
    ids: bool = typer.Option(False, "--ids", help="Print token ids instead of tokens."),
    tokenizer: Path | None = typer.Option(
        None, help="tokenizer.json for --ids (default: the default model's)."
    ),
) -> None:
    """Print the tokens (or ids) of each molecule, one molecule per line."""
    from .environment import default_model_dir
    from .smiles import tokenize_smiles
    from .tokenizer import SmilesTokenizer, tokenize_file

    if (input is None) == (smiles is None):
        raise InputError("give either an INPUT file or --smiles, not both or neither")
    vocab = None
    if ids:
        vocab = SmilesTokenizer.load(tokenizer or default_model_dir() / "tokenizer.json")
    if smiles is not None:
        try:
            pieces = vocab.encode(smiles) if vocab else tokenize_smiles(smiles)
        except ValueError as exc:
            raise InputError(f"--smiles: {exc}") from None
        typer.echo(" ".join(map(str, pieces)))
        return
    for _, pieces in tokenize_file(input, smiles_column=smiles_column, tokenizer=vocab):
        typer.echo(" ".join(map(str, pieces)))


@app.command()
def embed(
    input: Path = typer.Argument(
        ..., help="Molecule file (csv, tsv, smi, txt, sdf; optionally .gz)."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Output .parquet, .npy or .csv (default: INPUT-STEM.embeddings.parquet beside "
        "the input).",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace an existing output file (atomically, once the new one is complete).",
    ),
    smiles_column: str | None = typer.Option(None, help="SMILES column of a CSV/TSV file."),
    id_column: str | None = typer.Option(None, help="Id column (default: the row number)."),
    model: Path | None = typer.Option(
        None, help="Model directory (default: the model shipped with the package)."
    ),
    pooling: str = typer.Option("mean", help="mean (over the atom-level tokens) or cls."),
    batch_size: int = typer.Option(128, help="Molecules per forward pass."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N or auto (default: cpu)."),
    precision: str = typer.Option(
        "fp32", help="fp32 (reproducible) or bf16 (fast on native-bf16 hardware)."
    ),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Drop invalid SMILES instead of writing NaN rows."
    ),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first invalid SMILES."),
    strict_atoms: bool = typer.Option(
        False,
        "--strict-atoms",
        help="Stop at the first molecule with an atom outside the model's vocabulary or longer "
        "than its maximum length.",
    ),
    canonicalize: bool = typer.Option(
        True,
        help="Embed RDKit's canonical SMILES (one vector per molecule, however it is written).",
    ),
    shard: str | None = typer.Option(
        None, help="I/N: embed only the I-th (0-based) of N contiguous slices."
    ),
) -> None:
    """Write one embedding vector per molecule of INPUT."""
    from .embedding_files import embed_file, parse_shard

    if skip_invalid and strict:
        raise InputError("--skip-invalid and --strict exclude each other")
    counts = embed_file(
        input,
        output,
        smiles_column=smiles_column,
        id_column=id_column,
        model=model,
        pooling=pooling,
        batch_size=batch_size,
        device=device,
        precision=precision,
        invalid="strict" if strict else "skip" if skip_invalid else "keep",
        canonicalize=canonicalize,
        shard=parse_shard(shard),
        overwrite=overwrite,
        strict_atoms=strict_atoms,
    )
    action = "skipped" if skip_invalid else "written as NaN rows"
    typer.echo(
        f"{counts['written']} molecules embedded into {counts['output']}; {counts['invalid']} "
        f"invalid SMILES {action}; "
        f"{counts['unknown_atoms']} with atoms outside the model's vocabulary (column "
        "unknown_atoms), "
        f"{counts['truncated']} truncated (column truncated)",
        err=True,
    )


def _default(name: str):
    """A pretraining setting's default, from its one home (PretrainConfig)."""
    return PretrainConfig.__dataclass_fields__[name].default


@app.command()
def pretrain(
    corpus: list[Path] = typer.Option(
        ..., help="Corpus file(s): any molecule file format; repeat the option for several."
    ),
    out: Path = typer.Option(
        ..., help="Run folder: checkpoints, logs, the final model in OUT/model."
    ),
    objective: str = typer.Option(
        _default("objective"), help="exlm, or mlm for the plain masked-LM baseline."
    ),
    preset: str = typer.Option(_default("preset"), help="Model size: tiny, small or base."),
    k: int | None = typer.Option(
        _default("k"),
        help="States per <mask>, <s> and </s> (ExLM; default 4). The plain MLM is k = 1.",
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
    seed: int = typer.Option(_default("seed")),
    precision: str = typer.Option(
        _default("precision"), help="auto, fp32 or bf16 (auto: bf16 where it is native)."
    ),
    threads: int | None = typer.Option(
        _default("threads"), help="CPU threads (default: torch's choice)."
    ),
) -> None:
    """Pretrain ExLM (or the plain-MLM baseline) on a SMILES corpus; resumable; torchrun-ready."""
    from .training.loop import pretrain as run_pretraining

    _show_progress_messages()
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


@app.command()
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
) -> None:
    """Export a run's model (final, or its latest checkpoint) as a model folder with a card."""
    import torch

    from .model_card import export_model

    if not run.is_dir():
        raise InputError(f"{run}: not a run folder")
    facts = export_model(
        run, to, dtype=torch.float16 if fp16 else torch.float32, overwrite=overwrite
    )
    typer.echo(
        f"exported step {facts['step']} to {to}; embeddings within "
        f"{facts['embedding_max_abs_difference']:.1e} of float32",
        err=True,
    )


@app.command()
def benchmark(
    datasets: str = typer.Option(
        "bbbp,bace,clintox,tox21,toxcast,sider,esol,freesolv,lipo",
        help="Comma-separated MoleculeNet sets: bbbp, bace, clintox, tox21, toxcast, sider, "
        "hiv, muv, esol, freesolv, lipo.",
    ),
    data_dir: Path | None = typer.Option(
        None, help="Folder with the MoleculeNet files (DeepChem downloads what is missing)."
    ),
    features: str = typer.Option(
        "exlm,ecfp,random", help="exlm[:DIR], ecfp, random[:DIR], mlm:DIR (comma-separated)."
    ),
    probe: str = typer.Option(
        "logreg", help="Probes on frozen features: logreg, rf, mlp, deepchem (comma-separated)."
    ),
    finetune: bool = typer.Option(
        False, "--finetune", help="Also fine-tune each model end to end."
    ),
    split: str = typer.Option(
        "scaffold", help="scaffold (DeepChem's, deterministic) or random_scaffold (seeded)."
    ),
    seeds: str = typer.Option("0", help="Comma-separated seeds."),
    out: Path = typer.Option(..., help="Output folder: results.json/.csv/.md and plots."),
    cache_dir: Path | None = typer.Option(None, help="Featurized-data cache (default: OUT/cache)."),
    resume: bool = typer.Option(
        False, help="Keep the results already in OUT/results.json; compute only the missing ones."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start again in an OUT that already holds results."
    ),
) -> None:
    """Run MoleculeNet benchmarks: ExLM next to ECFP4, MLM and the random-init control."""
    import logging

    # The MoleculeNet package imports DeepChem, slow to import: only for this command.
    from .moleculenet.datasets import DATASETS
    from .moleculenet.features import parse_features
    from .moleculenet.probes import PROBES
    from .moleculenet.suite import parse_list, run_benchmark

    _show_progress_messages()
    # DeepChem warns about optional back-ends it lacks (TensorFlow, JAX) and per-molecule
    # details; the benchmark reports the molecules kept per dataset instead.
    logging.getLogger("deepchem").setLevel(logging.ERROR)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds must be comma-separated integers, not {seeds!r}") from None
    run_benchmark(
        parse_list(datasets, DATASETS, "datasets"),
        parse_features(features),
        parse_list(probe, PROBES, "probes"),
        out,
        data_dir=data_dir,
        split=split,
        seeds=seed_list,
        finetune=finetune,
        cache_dir=cache_dir,
        resume=resume,
        overwrite=overwrite,
    )
    typer.echo(f"results in {out / 'results.md'}", err=True)


def _show_progress_messages() -> None:
    """Our progress messages on stderr; other libraries' (DeepChem logs every epoch) stay quiet."""
    import logging

    class CurrentStderr(logging.StreamHandler):
        """Writes to sys.stderr as it is at each message (tests and notebooks replace it)."""

        stream = property(lambda self: sys.stderr, lambda self, value: None)

    logger = logging.getLogger("exlm_chem")
    if not any(type(h).__name__ == "CurrentStderr" for h in logger.handlers):
        handler = CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _click_exceptions():
    """click's exception classes, as the installed typer uses them (recent typers bundle click)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; bad input (ours or a usage error) becomes one line starting
    with ``error:`` and exit status 2, Ctrl-C the line ``interrupted`` and status 130."""
    click = _click_exceptions()
    try:
        status = app(args=argv, standalone_mode=False)
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help(), err=True)
        sys.exit(2)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "exlm-chem"
        typer.echo(f"error: {exc.format_message()} (see {command} --help)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code or 1)
    except (KeyboardInterrupt, typer.Abort):
        status = 130
    if status == 130:  # typer turns Ctrl-C into exit status 130 without a word
        typer.echo("interrupted", err=True)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
