"""``exlm-chem infill``: fill masked fragments of a SMILES with candidate molecules."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError


def infill(
    template: str | None = typer.Argument(
        None, help="A SMILES with masked spans: <mask:N> or {N} for up to N tokens, <mask> or {}."
    ),
    file: Path | None = typer.Option(None, "--file", "-f", help="Templates, one per line."),
    n: int = typer.Option(10, "-n", help="Candidates per template."),
    model: Path | None = typer.Option(
        None, help="Model directory (default: the model shipped with the package)."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the table as CSV."),
    png: Path | None = typer.Option(None, help="Draw the valid candidates into a PNG grid."),
    valid_only: bool = typer.Option(
        False, "--valid-only", help="Only candidates RDKit can read (else ranked last)."
    ),
    beam_size: int = typer.Option(64, help="Partial fillings kept at each step of the search."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N or auto (default: cpu)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Suggest molecules for the masked spans of a template (R-groups, linkers, fragments)."""
    from ..infill import infill as infill_template
    from ..infill_files import candidates_table, draw_grid, read_templates, write_table
    from ..model import load_model
    from ..outputs import check_output_file

    if (template is None) == (file is None):
        raise InputError("give either a TEMPLATE or --file, not both or neither")
    templates = [template] if template is not None else read_templates(file)
    for path in (output, png):
        if path is not None:
            check_output_file(path, inputs=[file] if file else [], overwrite=overwrite)
    loaded = load_model(model, device)
    results = {
        t: infill_template(t, loaded, n=n, beam_size=beam_size, valid_only=valid_only)
        for t in templates
    }
    table = candidates_table(results)
    shown = table if len(templates) > 1 else table.drop(columns="template")
    typer.echo(shown.to_string(index=False))
    if output is not None:
        write_table(results, output, overwrite=overwrite)
        typer.echo(f"candidates in {output}", err=True)
    if png is not None:
        draw_grid(results, png)
        typer.echo(f"picture in {png}", err=True)
