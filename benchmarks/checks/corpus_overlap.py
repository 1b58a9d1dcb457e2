"""How many pretraining-corpus molecules share a standardized parent with an evaluation set.

    python benchmarks/checks/corpus_overlap.py --json

Parent: the largest fragment, neutralized, without stereochemistry or isotopes, as canonical
SMILES (RDKit's MolStandardize). Compared: the broad corpus against each MoleculeNet file and
against the validation corpus (MOSES test). A pretraining corpus must not hold evaluation
molecules, so every count should be 0.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import pandas as pd

from exlm_chem.parallel import default_workers, map_in_order
from exlm_chem.smiles import quiet_rdkit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import print_result, shared_data_dir

EVALUATION = {  # file and SMILES column, as DeepChem's loaders read them
    "bbbp": ("moleculenet/BBBP.csv", "smiles"),
    "bace": ("moleculenet/bace.csv", "mol"),
    "clintox": ("moleculenet/clintox.csv.gz", "smiles"),
    "tox21": ("moleculenet/tox21.csv.gz", "smiles"),
    "toxcast": ("moleculenet/toxcast_data.csv.gz", "smiles"),
    "sider": ("moleculenet/sider.csv.gz", "smiles"),
    "esol": ("moleculenet/delaney-processed.csv", "smiles"),
    "freesolv": ("moleculenet/SAMPL.csv", "smiles"),
    "lipo": ("moleculenet/Lipophilicity.csv", "smiles"),
    "moses_test (validation corpus)": ("zinc/moses_test.csv.gz", "SMILES"),
}


def parents(smiles: list[str]) -> list[str]:
    """The standardized parent of each SMILES ("" where RDKit cannot read it)."""
    from rdkit import Chem
    from rdkit.Chem.MolStandardize import rdMolStandardize

    chooser, uncharger = rdMolStandardize.LargestFragmentChooser(), rdMolStandardize.Uncharger()
    out = []
    with quiet_rdkit():
        for s in smiles:
            mol = Chem.MolFromSmiles(s)
            if mol is None:
                out.append("")
                continue
            mol = uncharger.uncharge(chooser.choose(mol))
            for atom in mol.GetAtoms():
                atom.SetIsotope(0)
            out.append(Chem.MolToSmiles(mol, isomericSmiles=False))
    return out


def corpus_chunks(path, size: int = 20_000):
    with gzip.open(path, "rt") as handle:
        next(handle)
        chunk = []
        for line in handle:
            chunk.append(line.split("\t", 1)[0])
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder: set EXLM_DATA_DIR")
    start = time.perf_counter()
    sets = {}
    for name, (file, column) in EVALUATION.items():
        smiles = pd.read_csv(data / file, usecols=[column])[column].astype(str).tolist()
        sets[name] = set(parents(smiles)) - {""}
    shared = {name: 0 for name in sets}
    corpus_molecules = 0
    for chunk in map_in_order(
        parents, corpus_chunks(data / "pretrain" / "broad_corpus.tsv.gz"), args.workers
    ):
        corpus_molecules += len(chunk)
        for name, known in sets.items():
            shared[name] += sum(p in known for p in chunk if p)
    result = {
        "corpus": "pretrain/broad_corpus.tsv.gz",
        "corpus_molecules": corpus_molecules,
        "parents_per_set": {name: len(known) for name, known in sets.items()},
        "corpus_molecules_sharing_a_parent": shared,
        "seconds": round(time.perf_counter() - start),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
