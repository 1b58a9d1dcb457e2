"""How well a vocabulary reads each MoleculeNet set, as `embed` feeds it to the model.

    python benchmarks/checks/vocabulary_coverage.py --json --model exlm-chem-v1
    python benchmarks/checks/vocabulary_coverage.py --json \
        --corpus DATA/pretrain/broad_corpus.tsv.gz

The vocabulary is a model folder's, or one built from a corpus as `exlm-chem pretrain` builds
it (tokens seen at least --min-token-count times, plus one token per element). For every set
in $EXLM_DATA_DIR/moleculenet, over the molecules RDKit parses: the share with a token read as
`<unk>`, with an atom read through a fallback (`[NH+]` as `[N+]`), with a token the corpus
holds fewer than 10 times (an element token never trained reads no better than `<unk>`; with
--corpus only), and, of those written with stereochemistry, the share whose stereo the model
reads. Goals: `<unk>` in at most 0.5% of every set, rare tokens in at most 2% pooled.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from exlm_chem import SmilesTokenizer, load_model, tokenize_smiles
from exlm_chem.preparation import prepare_smiles
from exlm_chem.smiles import parse_smiles, quiet_rdkit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import print_result, shared_data_dir

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
RARE = 10  # a token seen fewer times than this in the corpus is barely trained
STEREO = ("@", "/", "\\")


def corpus_token_counts(path) -> Counter:
    """Tokens of every SMILES of a corpus table (as written: the broad corpus is canonical)."""
    counts: Counter = Counter()
    with gzip.open(path, "rt") if str(path).endswith(".gz") else open(path) as handle:
        column = next(handle).rstrip("\n").split("\t").index("smiles")
        for line in handle:
            counts.update(tokenize_smiles(line.rstrip("\n").split("\t")[column]))
    return counts


def set_coverage(written: list[str], tokenizer: SmilesTokenizer, counts: Counter | None) -> dict:
    prepared = prepare_smiles(written, tokenizer)
    rows = [(w, t) for w, t in zip(written, prepared.tokens) if t is not None]
    unknown = fallback = rare = stereo_written = stereo_read = 0
    for text, tokens in rows:
        readings = [tokenizer.reading(t) for t in tokens]
        unknown += "<unk>" in readings
        fallback += any(r != t and r != "<unk>" for t, r in zip(tokens, readings))
        if counts is not None:
            rare += any(counts[r] < RARE for r in readings if r != "<unk>")
        if any(s in text for s in STEREO):
            stereo_written += 1
            stereo_read += any(any(s in r for s in STEREO) for r in readings)
    result = {
        "molecules": len(rows),
        "with_unknown": round(unknown / len(rows), 4),
        "with_fallback": round(fallback / len(rows), 4),
        "written_with_stereo": stereo_written,
        "stereo_read": round(stereo_read / max(stereo_written, 1), 4),
    }
    if counts is not None:
        result["with_rare_token"] = round(rare / len(rows), 4)
    return result, rare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the installed default model)")
    parser.add_argument("--corpus", help="build the vocabulary from this corpus table instead")
    parser.add_argument("--min-token-count", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the MoleculeNet files: set EXLM_DATA_DIR")
    counts = None
    if args.corpus:
        counts = corpus_token_counts(args.corpus)
        tokenizer = SmilesTokenizer.from_counts(counts, args.min_token_count)
        result = {"vocabulary": f"{args.corpus}, tokens seen >= {args.min_token_count} times"}
    else:
        tokenizer = load_model(args.model).tokenizer
        result = {"vocabulary": args.model or "default model"}
    result["vocabulary_size"] = tokenizer.vocab_size
    pooled, rare_pooled = 0, 0
    for name, (file, column) in DATASETS.items():
        written = [s.strip() for s in pd.read_csv(data / "moleculenet" / file)[column].astype(str)]
        with quiet_rdkit():
            written = [s for s in written if parse_smiles(s) is not None]
        result[name], rare = set_coverage(written, tokenizer, counts)
        pooled += result[name]["molecules"]
        rare_pooled += rare
    result["worst_with_unknown"] = max(result[n]["with_unknown"] for n in DATASETS)
    if counts is not None:
        result["pooled_with_rare_token"] = round(rare_pooled / pooled, 4)
    print_result(result, args.json)


if __name__ == "__main__":
    main()
