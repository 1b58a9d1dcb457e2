"""Writes data/series.csv: a small series of molecules we made up (substituted chains and
rings of fifteen scaffolds), with two properties computed by RDKit, so that the README's
examples train and predict offline: `logp` (Crippen's logP, a regression target) and
`is_acid` (1 for a carboxylic acid). Computed, not measured: a demonstration set, not a
benchmark.

    python data/make_series.py
"""

from pathlib import Path

from rdkit import Chem
from rdkit.Chem import Crippen

GROUPS = ["N", "O", "C(=O)O", "Cl", "F", "C#N", "S", "C(=O)N", "OC", "C(=O)OC"]
ACID = Chem.MolFromSmarts("[CX3](=O)[OX2H1]")


RINGS = [
    "c1ccc(cc1)", "c1ccnc(c1)", "C1CCC(CC1)", "c1ccsc1", "c1ccoc1", "c1ccc2ccccc2c1",
    "C1CCNCC1", "C1COCCN1", "c1cnc2ccccc2c1", "C1CC1", "C1CCCC1", "c1cncnc1", "c1ccc2[nH]ccc2c1",
    "C1CCOC1", "c1ccc(cc1)-c1ccccc1",
]  # fmt: skip
# Six groups per ring: scaffold groups small enough for a scaffold split's validation part.
RING_GROUPS = GROUPS[:6]


def series() -> list[str]:
    chains = ["C" * n + group for n in range(1, 6) for group in GROUPS]
    rings = [f"{ring}{group}" for ring in RINGS for group in RING_GROUPS]
    return chains + rings


def main() -> None:
    lines = ["smiles,logp,is_acid"]
    for smiles in series():
        mol = Chem.MolFromSmiles(smiles)
        canonical = Chem.MolToSmiles(mol)
        lines.append(f"{canonical},{Crippen.MolLogP(mol):.3f},{int(mol.HasSubstructMatch(ACID))}")
    Path(__file__).with_name("series.csv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
