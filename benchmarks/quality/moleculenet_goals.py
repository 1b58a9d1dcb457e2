"""The default model's goals, read from a suite's results.json
(`benchmarks/quality/moleculenet.sh`):
each family's read-out and probe chosen on validation, then paired bootstrap differences
over the seeded scaffold splits (positive: the first family is better; RMSE: lower).

Goals (ROC-AUC mean over the classification sets; RMSE per regression set):
- frozen ExLM >= ECFP4, and >= the untrained network + 0.02;
- fine-tuned ExLM >= the fine-tuned untrained network + 0.03, and >= the fine-tuned MLM;
  on regression, lower RMSE than RDKit 2D descriptors (frozen) on at least 2 of 3 sets;
- the ExLM + ECFP4 hybrid > ECFP4 on the mean and on at least 5 of the 6 classification sets.

A goal whose runs are missing is reported as such; a mean over fewer sets than planned names
the sets it covers.

    python benchmarks/quality/moleculenet_goals.py \
        benchmarks/results/moleculenet_v2protocol/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exlm_chem.moleculenet.compare import (
    chosen_on_validation,
    datasets_with_both,
    paired_bootstrap,
)

CLASSIFICATION = ["bbbp", "bace", "clintox", "tox21", "toxcast", "sider"]
REGRESSION = ["esol", "freesolv", "lipo"]


def comparison(chosen, label, a, b, datasets, mode="frozen", mode_b=None, margin=0.0, strict=False):
    """One line of the goals: a - b on ``datasets`` where both have run; met when the
    difference is at least ``margin`` (``strict``: above it)."""
    present = datasets_with_both(chosen, mode, a, b, datasets, mode_b)
    result = paired_bootstrap(chosen, mode, a, b, present, mode_b=mode_b) if present else None
    if result is None:
        return dict(goal=label, status="not run yet")
    return dict(
        goal=label,
        datasets=present,
        # Unrounded: printed to 3 places once, as results.md prints them.
        difference=result["difference"],
        interval=[result["low"], result["high"]],
        margin=margin,
        met=result["difference"] > margin if strict else result["difference"] >= margin,
        interval_excludes_zero=result["excludes_zero"],
    )


def goals(records: list[dict]) -> list[dict]:
    chosen = chosen_on_validation(records)
    lines = [
        comparison(chosen, "frozen ExLM vs ECFP4", "exlm", "ecfp", CLASSIFICATION),
        comparison(
            chosen, "frozen ExLM vs untrained", "exlm", "random", CLASSIFICATION, margin=0.02
        ),
        comparison(
            chosen,
            "fine-tuned ExLM vs fine-tuned untrained",
            "exlm",
            "random",
            CLASSIFICATION,
            "finetuned",
            margin=0.03,
        ),
        comparison(
            chosen, "fine-tuned ExLM vs fine-tuned MLM", "exlm", "mlm", CLASSIFICATION, "finetuned"
        ),
    ]
    lines += [
        comparison(
            chosen,
            f"fine-tuned ExLM vs RDKit 2D (frozen), {d} RMSE",
            "exlm",
            "rdkit2d",
            [d],
            "finetuned",
            mode_b="frozen",
        )
        for d in REGRESSION
    ]
    lines.append(
        comparison(chosen, "hybrid vs ECFP4", "exlm&ecfp", "ecfp", CLASSIFICATION, strict=True)
    )
    lines += [
        comparison(chosen, f"hybrid vs ECFP4, {d}", "exlm&ecfp", "ecfp", [d], strict=True)
        for d in CLASSIFICATION
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path, help="a suite's results.json")
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    args = parser.parse_args()
    lines = goals(json.loads(args.results.read_text()))
    for line in lines:
        if "difference" not in line:
            print(f"{line['goal']}: {line['status']}")
            continue
        sets = line["datasets"]
        print(
            f"{line['goal']}: {line['difference']:+.3f} "
            f"[{line['interval'][0]:+.3f}, {line['interval'][1]:+.3f}] "
            f"({'met' if line['met'] else 'missed'}"
            + (f", goal {line['margin']:+.2f}" if line["margin"] else "")
            + f"; interval {'excludes' if line['interval_excludes_zero'] else 'includes'} 0; "
            f"{len(sets)} set{'s' if len(sets) > 1 else ''}: {', '.join(sets)})"
        )
    hybrid = [x for x in lines if x["goal"].startswith("hybrid vs ECFP4, ") and "met" in x]
    print(f"hybrid above ECFP4 on {sum(x['met'] for x in hybrid)} of {len(hybrid)} sets run")
    if args.json:
        print(json.dumps(lines))


if __name__ == "__main__":
    main()
