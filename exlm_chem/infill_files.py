"""The infill command's files: templates read from a file, results written as a table and as a
grid picture of the candidate molecules."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .infill import Candidate
from .outputs import atomic_path, atomic_write_text

CELL = (260, 220)  # pixels per molecule in the grid


def read_templates(path: str | Path) -> list[str]:
    """One template per line; blank lines and lines starting with # are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the templates ({exc})") from None
    templates = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not templates:
        raise InputError(f"{path}: no templates (one SMILES with masked spans per line)")
    return templates


def candidates_table(results: dict[str, list[Candidate]]):
    """A pandas DataFrame: template, rank, smiles, filling (spans joined by |),
    log_probability, valid."""
    import pandas as pd

    return pd.DataFrame(
        [
            dict(
                template=template,
                rank=c.rank,
                smiles=c.smiles,
                filling="|".join(c.fillings),
                log_probability=round(c.log_probability, 4),
                valid=c.valid,
            )
            for template, candidates in results.items()
            for c in candidates
        ],
        columns=["template", "rank", "smiles", "filling", "log_probability", "valid"],
    )


def write_table(results: dict[str, list[Candidate]], path: Path, overwrite: bool = False) -> None:
    from .outputs import check_output_file

    check_output_file(path, overwrite=overwrite)
    atomic_write_text(path, candidates_table(results).to_csv(index=False))


def draw_grid(results: dict[str, list[Candidate]], path: Path, per_row: int | None = None):
    """A PNG: one row per template, its valid candidates labelled with rank and
    log-probability (RDKit's Cairo drawer, no image library needed)."""
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D

    rows = [[c for c in candidates if c.valid] for candidates in results.values()]
    per_row = per_row or max((len(r) for r in rows), default=1) or 1
    molecules, legends = [], []
    for row in rows:
        row = row[:per_row]
        molecules += [Chem.MolFromSmiles(c.smiles) for c in row] + [None] * (per_row - len(row))
        legends += [f"{c.rank}. log p {c.log_probability:.2f}" for c in row]
        legends += [""] * (per_row - len(row))
    width, height = CELL
    drawer = rdMolDraw2D.MolDraw2DCairo(width * per_row, height * max(len(rows), 1), width, height)
    drawer.drawOptions().legendFontSize = 16
    drawer.DrawMolecules([m if m is not None else Chem.Mol() for m in molecules], legends=legends)
    drawer.FinishDrawing()
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(drawer.GetDrawingText())
