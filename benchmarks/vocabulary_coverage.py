"""How much of each MoleculeNet set a model's vocabulary covers, as written and as embedded.

    python benchmarks/vocabulary_coverage.py --model exlm_chem/weights

For every set in $EXLM_DATA_DIR/moleculenet (or shared/data beside the repository): the share
of molecules with at least one token outside the vocabulary (read as `<unk>`), and the share
of such tokens, once for the SMILES as written in the file and once for what `embed` feeds the
model (`prepare_smiles`: RDKit's canonical SMILES, without stereochemistry for a vocabulary
that has none). Molecules RDKit cannot parse are left out of both.
"""

from __future__ import annotations

import argparse

import pandas as pd
from common import print_result, shared_data_dir

from exlm_chem import load_model, tokenize_smiles
from exlm_chem.embedding import prepare_smiles
from exlm_chem.smiles import parse_smiles

# file and SMILES column of each set, as DeepChem's loaders read them
DATASETS = {
    "bbbp": ("BBBP.csv", "smiles"),
    "bace": ("bace.csv", "mol"),
    "clintox": ("clintox.csv.gz", "smiles"),
    "tox21": ("tox21.csv.gz", "smiles"),
    "toxcast": ("toxcast_data.csv.gz", "smiles"),
    "sider": ("sider.csv.gz", "smiles"),
    "esol": ("delaney-processed.csv", "smiles"),
    "freesolv": ("SAMPL.csv", "smiles"),
    "lipo": ("Lipophilicity.csv", "smiles"),
}


def coverage(smiles: list[str], vocabulary: set[str]) -> tuple[float, float]:
    """(share of molecules with an unknown token, share of unknown tokens)."""
    with_unknown, unknown, total = 0, 0, 0
    for s in smiles:
        missing = sum(token not in vocabulary for token in tokenize_smiles(s))
        with_unknown += missing > 0
        unknown += missing
        total += len(tokenize_smiles(s))
    return with_unknown / len(smiles), unknown / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the installed default model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the MoleculeNet files: set EXLM_DATA_DIR")
    model = load_model(args.model)
    vocabulary = set(model.tokenizer.id_to_token)
    result = {"model": args.model or "default", "vocabulary_size": len(vocabulary)}
    for name, (file, column) in DATASETS.items():
        written = [s.strip() for s in pd.read_csv(data / "moleculenet" / file)[column].astype(str)]
        written = [s for s in written if parse_smiles(s) is not None]
        embedded = [p for p in prepare_smiles(written, model.tokenizer).smiles if p is not None]
        as_written, as_embedded = coverage(written, vocabulary), coverage(embedded, vocabulary)
        result[name] = {
            "molecules": len(written),
            "molecules_with_unknown_as_written": round(as_written[0], 3),
            "molecules_with_unknown_as_embedded": round(as_embedded[0], 3),
            "unknown_tokens_as_written": round(as_written[1], 4),
            "unknown_tokens_as_embedded": round(as_embedded[1], 4),
        }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
