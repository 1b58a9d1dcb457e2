"""``exlm-chem embed``: one vector per molecule of a file."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import defaults
from ..errors import InputError


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
    pooling: str = typer.Option(
        defaults.POOLING,
        help="Read-out: layers (every layer's mean over the atom-level tokens, averaged), mean "
        "(the last layer's), cls (the first <s> state) or several side by side (mean+cls).",
    ),
    batch_size: int | None = typer.Option(
        None,
        help=f"Molecules per forward pass (default: {defaults.BATCH_SIZE} on a CPU, "
        f"{defaults.GPU_BATCH_SIZE} on a GPU).",
    ),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N or auto (default: cpu)."),
    precision: str = typer.Option(
        defaults.PRECISION, help="fp32 (reproducible) or bf16 (fast on native-bf16 hardware)."
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
    workers: int | None = typer.Option(
        None,
        help="Processes preparing molecules (RDKit) while the model embeds (default: one per "
        "core on a GPU; none on a CPU under 8 cores; 0: none).",
    ),
    shard: str | None = typer.Option(
        None, help="I/N: embed only the I-th (0-based) of N contiguous slices."
    ),
) -> None:
    """Write one embedding vector per molecule of INPUT."""
    from ..embedding_files import embed_file, parse_shard

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
        invalid="raise" if strict else "skip" if skip_invalid else "keep",
        canonicalize=canonicalize,
        shard=parse_shard(shard),
        overwrite=overwrite,
        strict_atoms=strict_atoms,
        workers=workers,
    )
    action = "skipped" if skip_invalid else "written as NaN rows"
    typer.echo(
        f"{counts['written']} molecules embedded into {counts['output']}; "
        f"{counts['invalid']} invalid SMILES {action}; "
        f"{counts['unknown_atoms']} with atoms outside the model's vocabulary "
        f"(column unknown_atoms), {counts['fallback_atoms']} with atoms read as a nearby known "
        f"token (column fallback_atoms), {counts['truncated']} truncated (column truncated)",
        err=True,
    )
