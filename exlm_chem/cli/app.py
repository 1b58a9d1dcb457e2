"""The command-line application, its small commands, and how errors reach the user."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer

from ..errors import InputError, TrainingFailed

app = typer.Typer(
    help="SMILES representation learning with ExLM: tokenize, pretrain, embed and benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def info() -> None:
    """Print package, library and device information, and where the default model is."""
    from ..environment import describe_environment

    for key, value in describe_environment().items():
        typer.echo(f"{key}: {value}")


def tokenize(
    input: Path | None = typer.Argument(
        None, help="Molecule file (csv, tsv, smi, txt, sdf; optionally .gz)."
    ),
    smiles: str | None = typer.Option(
        None, "--smiles", "-s", help="Tokenize this SMILES instead of a file."
    ),
    smiles_column: str | None = typer.Option(None, help="SMILES column of a CSV/TSV file."),
    ids: bool = typer.Option(False, "--ids", help="Print token ids instead of tokens."),
    fallbacks: bool = typer.Option(
        False,
        "--fallbacks",
        help="Show how a model reads each token outside its vocabulary: [NH+]->[N+] (its "
        "nearest known form), *-><unk>.",
    ),
    model: str | None = typer.Option(
        None,
        help="Model folder or shipped model (exlm-chem-v1, ...) whose vocabulary --ids and "
        "--fallbacks use (default: the default model's).",
    ),
    tokenizer: Path | None = typer.Option(
        None, help="A tokenizer.json for --ids and --fallbacks, instead of a model's."
    ),
) -> None:
    """Print the tokens (or ids) of each molecule, one molecule per line."""
    from ..model import model_tokenizer_path
    from ..smiles import tokenize_smiles
    from ..tokenizer import SmilesTokenizer, tokenize_file

    if (input is None) == (smiles is None):
        raise InputError("give either an INPUT file or --smiles, not both or neither")
    if ids and fallbacks:
        raise InputError("--ids and --fallbacks exclude each other")
    if model and tokenizer:
        raise InputError("--model and --tokenizer exclude each other: a model has its own")
    vocab = None
    if ids or fallbacks:
        vocab = SmilesTokenizer.load(tokenizer or model_tokenizer_path(model))

    def shown(pieces: list) -> str:
        if fallbacks:
            readings = (vocab.reading(t) for t in pieces)
            pieces = [t if r == t else f"{t}->{r}" for t, r in zip(pieces, readings)]
        return " ".join(map(str, pieces))

    encoder = vocab if ids else None
    if smiles is not None:
        try:
            pieces = encoder.encode(smiles) if encoder else tokenize_smiles(smiles)
        except ValueError as exc:
            raise InputError(f"--smiles: {exc}") from None
        typer.echo(shown(pieces))
        return
    for _, pieces in tokenize_file(input, smiles_column=smiles_column, tokenizer=encoder):
        typer.echo(shown(pieces))


def show_progress_messages() -> None:
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit, ``kill``), raised where the command is, so
    that it cleans up as after Ctrl-C: temporary files removed, worker processes stopped.
    Pretraining handles SIGTERM itself (a checkpoint, then a stop)."""


_signals: dict = {}  # what the command received: {"SIGTERM": True}


def _terminate(signum, frame) -> None:
    _signals["SIGTERM"] = True
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; bad input (ours or a usage error) becomes one line starting
    with ``error:`` and exit status 2, Ctrl-C the line ``interrupted`` and status 130, SIGTERM
    the line ``terminated`` and status 143."""
    click = _click_exceptions()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        status = _run(argv, click)
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(status)


def _run(argv, click) -> int:
    try:
        status = app(args=argv, standalone_mode=False)
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except TrainingFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
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
    if status == 130 and _signals.pop("SIGTERM", False):  # our handler raised it: SIGTERM
        typer.echo("terminated", err=True)
        return 143
    if status == 130:  # typer turns Ctrl-C into exit status 130 without a word
        typer.echo("interrupted", err=True)
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    main()
