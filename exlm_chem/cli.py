"""The ``exlm-chem`` command line: a thin typer layer over the library functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import InputError

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
    input: Optional[Path] = typer.Argument(None, help="Molecule file (csv, tsv, smi, txt, sdf; optionally .gz)."),
    smiles: Optional[str] = typer.Option(None, "--smiles", "-s", help="Tokenize this SMILES instead of a file."),
    smiles_column: Optional[str] = typer.Option(None, help="SMILES column of a CSV/TSV file."),
    ids: bool = typer.Option(False, "--ids", help="Print token ids instead of tokens."),
    tokenizer: Optional[Path] = typer.Option(None, help="tokenizer.json for --ids (default: the default model's)."),
) -> None:
    """Print the tokens (or ids) of each molecule, one molecule per line."""
    from .environment import default_model_dir
    from .tokenizer import SmilesTokenizer, tokenize_file, tokenize_smiles

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


def main() -> None:
    """Entry point: run the app and turn bad input into a one-line error and exit status 2."""
    try:
        app()
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
