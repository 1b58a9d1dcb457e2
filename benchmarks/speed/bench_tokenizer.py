"""Tokenizer throughput: our SmilesTokenizer (padded id tensors) against DeepChem's
BasicSmilesTokenizer (bare token lists), on the same SMILES in one run.

    python benchmarks/speed/bench_tokenizer.py --json
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles, median_time, print_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000, help="number of SMILES")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024, help="SMILES per encode_batch call")
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    from deepchem.feat.smiles_tokenizer import BasicSmilesTokenizer

    from exlm_chem import SmilesTokenizer

    smiles, source = benchmark_smiles(args.n)
    theirs = BasicSmilesTokenizer()
    ours = SmilesTokenizer.from_corpus(smiles[:20_000])
    batches = [smiles[i : i + args.batch_size] for i in range(0, len(smiles), args.batch_size)]

    their_tokens = [theirs.tokenize(s) for s in smiles]
    our_ids = [row for batch in batches for row in ours.encode_batch(batch)]
    agree = all(
        ours.decode(row, skip_special_tokens=True) == s and ours.tokenize(s) == t
        for s, t, row in zip(smiles[:20_000], their_tokens, our_ids)
    )

    # Interleave the two so that machine noise hits both alike.
    their_times, our_times = [], []
    for _ in range(args.repeats):
        their_times.append(median_time(lambda: [theirs.tokenize(s) for s in smiles], 1))
        our_times.append(median_time(lambda: [ours.encode_batch(b) for b in batches], 1))
    their_time, our_time = (
        sorted(their_times)[len(their_times) // 2],
        sorted(our_times)[len(our_times) // 2],
    )
    result = {
        "n_smiles": len(smiles),
        "source": source,
        "tokens_agree_with_deepchem": agree,
        "deepchem_smiles_per_second": round(len(smiles) / their_time),
        "smiles_per_second": round(len(smiles) / our_time),
        "ratio_vs_deepchem": round(their_time / our_time, 3),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
