"""``exlm-chem finetune`` and ``exlm-chem predict``: a model fine-tuned on a labelled table,
and its predictions for a molecule file."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from ..finetune_settings import LEARNING_RATES, FinetuneSettings, UncertaintySettings
from .app import show_progress_messages

DEFAULT_RATES = ",".join(f"{rate:g}" for rate in LEARNING_RATES)


def _default(name: str):
    """A fine-tuning setting's default, from its one home (FinetuneSettings)."""
    return FinetuneSettings.__dataclass_fields__[name].default


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InputError(f"--lr must be comma-separated numbers, not {text!r}") from None
    if not rates or any(not rate > 0 for rate in rates):
        raise InputError(f"--lr must be one or more positive numbers, not {text!r}")
    return rates


def finetune(
    data: Path = typer.Argument(..., help="Labelled molecules: a .csv or .tsv (optionally .gz)."),
    target: list[str] = typer.Option(
        ..., "--target", "-t", help="Target column; repeat for several tasks (NaN: missing)."
    ),
    out: Path = typer.Option(..., help="Folder for the fine-tuned model and finetune.json."),
    smiles_column: str | None = typer.Option(None, help="SMILES column (default: smiles/mol)."),
    task: str = typer.Option(
        "auto", help="classification, regression, or auto (classification when all are 0/1)."
    ),
    model: Path | None = typer.Option(
        None, help="Model directory to start from (default: the model shipped with the package)."
    ),
    head: str = typer.Option(
        _default("head"),
        help="cls (the <s> state, RoBERTa head), mean (last layer's token mean, linear) or "
        "layers (every layer's token mean averaged, linear).",
    ),
    lr: str = typer.Option(
        DEFAULT_RATES, help="Learning rate, or comma-separated rates chosen on validation."
    ),
    epochs: int = typer.Option(_default("epochs"), help="At most this many epochs."),
    patience: int = typer.Option(
        _default("patience"), help="Stop after this many epochs without improvement."
    ),
    batch_size: int = typer.Option(_default("batch_size"), help="Molecules per step."),
    dropout: float = typer.Option(_default("dropout"), help="Dropout in the head and the encoder."),
    schedule: str = typer.Option(
        "linear", help="Learning rate after the 6% warm-up: linear (decay to 0) or constant."
    ),
    split: str = typer.Option("scaffold", help="scaffold (seeded scaffold groups) or random."),
    valid_fraction: float = typer.Option(0.1, help="Share of molecules for validation."),
    test_fraction: float = typer.Option(0.1, help="Share held out for the reported test score."),
    seed: int = typer.Option(_default("seed"), help="Seed of the split, the head and the batches."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N or auto (default: cpu)."),
    precision: str = typer.Option("auto", help="auto (bf16 where native), fp32 or bf16."),
    ensemble: int = typer.Option(
        1, help="Members of the ensemble: runs at the chosen rate with seeds SEED, SEED+1, ..."
    ),
    coverage: float = typer.Option(
        0.9, help="Coverage of the regression intervals, calibrated on the validation part."
    ),
    calibration: str = typer.Option(
        "validation",
        help="Where the uncertainty is calibrated: validation (the validation part) or folds "
        "(each ensemble member holds out a scaffold fold of the training and validation "
        "molecules and scores it: more molecules, steadier intervals).",
    ),
    jobs: int = typer.Option(
        1,
        help="Learning rates (or ensemble members) trained at a time, in worker processes "
        "(on a CPU each on its share of the threads; on a GPU all on the device).",
    ),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Leave out rows whose SMILES is invalid (else: an error)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what is in OUT."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue a stopped run from the checkpoints in OUT (same data and options).",
    ),
) -> None:
    """Fine-tune a model end to end on a labelled table; keep the best validation run."""
    from ..finetuning.files import finetune_table

    show_progress_messages()
    settings = FinetuneSettings(
        head=head,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        dropout=dropout,
        schedule=schedule,
        precision=precision,
        seed=seed,
    )
    uncertainty = UncertaintySettings(members=ensemble, coverage=coverage, calibration=calibration)
    if task not in ("auto", "classification", "regression"):
        raise InputError(f"--task must be auto, classification or regression, not {task!r}")
    report = finetune_table(
        data,
        target,
        out,
        smiles_column=smiles_column,
        task_type=task,
        model=model,
        settings=settings,
        learning_rates=parse_rates(lr),
        uncertainty=uncertainty,
        split=split,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
        device=device,
        overwrite=overwrite,
        invalid="skip" if skip_invalid else "raise",
        jobs=jobs,
        resume=resume,
    )
    chosen = report["chosen"]
    test = report["test_score"]
    typer.echo(
        f"{report['task_type']}: learning rate {chosen['learning_rate']:g}, best epoch "
        f"{chosen['best_epoch']}, validation {report['metric']} "
        + (f"{report['valid_score']:.4f}" if report["valid_score"] is not None else "undefined")
        + (f", test {report['metric']} {test:.4f}" if test is not None else "")
        + (f" ({ensemble} members)" if ensemble > 1 else "")
        + f"; model in {out}",
        err=True,
    )


def predict(
    input: Path = typer.Argument(..., help="Molecule file (csv, tsv, smi, txt, sdf; .gz)."),
    model: Path = typer.Option(..., help="A fine-tuned model folder (from exlm-chem finetune)."),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Output .csv, .tsv or .parquet (default: INPUT-STEM.predictions.csv).",
    ),
    smiles_column: str | None = typer.Option(None, help="SMILES column of a CSV/TSV file."),
    id_column: str | None = typer.Option(None, help="Id column (default: the row number)."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N or auto (default: cpu)."),
    precision: str = typer.Option("auto", help="auto (bf16 where native), fp32 or bf16."),
    coverage: float | None = typer.Option(
        None, help="Coverage of regression intervals (default: the model's, 0.9 unless set)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> None:
    """Predict the fine-tuned tasks for every molecule of INPUT: the value (or probability),
    its spread over an ensemble's members, a regression interval, and how like the training
    molecules each one is (the applicability domain)."""
    from ..finetuning.files import predict_file

    show_progress_messages()
    written = predict_file(
        input,
        model,
        output,
        smiles_column=smiles_column,
        id_column=id_column,
        device=device,
        precision=precision,
        overwrite=overwrite,
        coverage=coverage,
    )
    typer.echo(f"predictions in {written}", err=True)
