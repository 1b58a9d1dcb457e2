"""Write (or rewrite) the MoleculeNet section of a model folder's MODEL_CARD.md from a suite's
results.json: the model's test scores beside ECFP4, RDKit descriptors, the untrained network
and the plain-MLM twin, each family's read-out and probe chosen on validation. Rerun it when
the suite has more results.

    python benchmarks/quality/model_card_evaluation.py exlm_chem/weights/exlm-chem-v2 \\
        benchmarks/results/moleculenet_v2protocol/results.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exlm_chem.errors import InputError
from exlm_chem.moleculenet.card import evaluation_section, with_section
from exlm_chem.moleculenet.report import read_records
from exlm_chem.outputs import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--family", default="exlm", help="the model's features in the suite")
    args = parser.parse_args()
    card_path = args.model_dir / "MODEL_CARD.md"
    try:
        if not card_path.is_file():
            raise InputError(f"{card_path}: no model card")
        if not args.results.is_file():
            raise InputError(f"{args.results}: no such file")
        section = evaluation_section(read_records(args.results), str(args.results), args.family)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    atomic_write_text(card_path, with_section(card_path.read_text(), section))
    print(section)


if __name__ == "__main__":
    main()
