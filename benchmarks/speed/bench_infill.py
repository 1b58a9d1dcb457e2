"""Infilling: recover masked spans of MOSES test molecules, ExLM's DAG decoder vs a plain MLM.

For each molecule (RDKit canonical SMILES, the form the models read), one contiguous span of
1-6 tokens (seeded) is masked; both models get a span of exactly that many tokens at most
(the ExLM path may emit fewer; the MLM tries every length from 1 to it) and return n = 10
candidates, unconstrained (invalid candidates are counted, not filtered). Reported: top-1 and
top-10 recovery of the original molecule, validity of the top-1 and of all candidates, distinct
valid candidates per template, and templates per second.

    python benchmarks/speed/bench_infill.py --exlm DIR --mlm DIR --json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles, print_result  # noqa: E402

from exlm_chem import load_model  # noqa: E402
from exlm_chem.infill import Template, decode_dag, decode_mlm, rank_candidates  # noqa: E402
from exlm_chem.smiles import canonicalize_smiles, tokenize_smiles  # noqa: E402


def masked_templates(smiles: list[str], seed: int, max_span: int = 6):
    """(template, original canonical SMILES) pairs: one random span of 1-max_span tokens."""
    rng = np.random.default_rng(seed)
    out = []
    for text in smiles:
        canonical = canonicalize_smiles(text)
        tokens = tokenize_smiles(canonical)
        length = int(rng.integers(1, min(max_span, len(tokens)) + 1))
        start = int(rng.integers(0, len(tokens) - length + 1))
        template = Template(
            f"{''.join(tokens[:start])}<mask:{length}>{''.join(tokens[start + length :])}",
            (tuple(tokens[:start]), tuple(tokens[start + length :])),
            (length,),
        )
        out.append((template, canonical))
    return out


def evaluate(model, decode, templates, n: int) -> dict:
    top1 = top_n = top1_valid = valid = total = 0
    distinct_valid = []
    start = time.perf_counter()
    for template, original in templates:
        candidates = rank_candidates(template, decode(model, template), n)
        smiles = [c.smiles for c in candidates]
        top1 += bool(smiles) and smiles[0] == original
        top_n += original in smiles
        top1_valid += bool(candidates) and candidates[0].valid
        valid += sum(c.valid for c in candidates)
        total += len(candidates)
        distinct_valid.append(sum(c.valid for c in candidates))
    seconds = time.perf_counter() - start
    count = len(templates)
    return dict(
        top1_recovery=round(top1 / count, 4),
        top10_recovery=round(top_n / count, 4),
        top1_validity=round(top1_valid / count, 4),
        candidate_validity=round(valid / max(total, 1), 4),
        distinct_valid_per_template=round(float(np.mean(distinct_valid)), 3),
        molecules_per_second=round(count / seconds, 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exlm", help="ExLM model folder (default: the shipped model)")
    parser.add_argument("--mlm", required=True, help="its plain-MLM twin")
    parser.add_argument("--molecules", type=int, default=1000)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_grad_enabled(False)
    smiles, source = benchmark_smiles(args.molecules, split="test")
    templates = masked_templates(smiles, args.seed)
    exlm, mlm = load_model(args.exlm), load_model(args.mlm)
    result = dict(molecules=len(templates), source=source, n=args.n, seed=args.seed)
    for name, model, decode in (("exlm", exlm, decode_dag), ("mlm", mlm, decode_mlm)):
        for key, value in evaluate(model, decode, templates, args.n).items():
            result[f"{name}_{key}"] = value
    result["exlm_distinct_valid_per_template"] = result.pop("exlm_distinct_valid_per_template")
    result["molecules_per_second"] = result["exlm_molecules_per_second"]
    result["models"] = dict(exlm=args.exlm or "shipped default", mlm=args.mlm)
    print_result(result, args.json)


if __name__ == "__main__":
    main()
