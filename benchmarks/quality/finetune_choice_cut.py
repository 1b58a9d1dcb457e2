"""Can the suite's fine-tuning grid be cut without changing what it chooses?

From a suite's finetune_runs.json (every rate of the grid run on the choice seeds, the chosen
rate on the others), for cheaper choices of the learning rate (fewer rates, fewer seeds
choosing): per data set and model, the rate the full grid chose, the rate the cheaper one
chooses, and the validation cost of the difference (the full grid's pooled validation metric
of its rate minus that of the cheaper choice's rate, on the full grid's choice seeds; positive
means the cheaper choice is worse) against the spread of the chosen rate's validation metric
between splits. Validation only: the test parts are not read. Also the share of the grid's
epochs each cheaper choice runs. The cheapest choices fix one rate in advance (no grid).

    python benchmarks/quality/finetune_choice_cut.py \
        benchmarks/results/moleculenet_v2protocol/finetune_runs.json \
        --out benchmarks/results/finetune_choice_cut.md
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

CHOICES = {
    # name: (rates tried, seeds whose validation chooses)
    "full: 4 rates, seeds 0+1": ((3e-5, 1e-4, 3e-4, 1e-3), (0, 1)),
    "4 rates, seed 0": ((3e-5, 1e-4, 3e-4, 1e-3), (0,)),
    "2 rates (1e-4, 3e-4), seeds 0+1": ((1e-4, 3e-4), (0, 1)),
    "2 rates (1e-4, 3e-4), seed 0": ((1e-4, 3e-4), (0,)),
    # No grid: one rate fixed in advance, nothing chosen on validation.
    "1e-4 fixed": ((1e-4,), ()),
    "3e-4 fixed": ((3e-4,), ()),
}


def choose(runs: list[dict], rates, seeds, sign: float) -> float | None:
    if len(rates) == 1:
        return rates[0]
    pooled = {}
    for rate in rates:
        values = [
            r["valid_value"] for r in runs if r["learning_rate"] == rate and r["seed"] in seeds
        ]
        if len(values) == len(seeds):
            pooled[rate] = np.mean(values)
    return max(pooled, key=lambda rate: sign * pooled[rate]) if pooled else None


def analyse(runs: list[dict]) -> tuple[list[str], dict]:
    groups = defaultdict(list)
    for run in runs:
        groups[(run["dataset"], run["features"])].append(run)
    (full_name, (full_rates, full_seeds)), *cheaper = CHOICES.items()
    lines = [
        "| data set | model | metric | full grid's rate | "
        + " | ".join(f"{name}: rate, validation cost" for name, _ in cheaper)
        + " | spread between splits |",
        "|---|---|---|---|" + "---|" * len(cheaper) + "---|",
    ]
    summary = {
        name: {"same": 0, "within_spread": 0, "cases": 0, "epochs": 0.0, "auc_costs": []}
        for name, _ in cheaper
    }
    total_epochs = 0.0
    for (dataset, model), group in groups.items():
        metric = group[0]["selection"]
        sign = 1.0 if metric == "roc_auc" else -1.0
        full = choose(group, full_rates, full_seeds, sign)
        pooled = {
            rate: np.mean(
                [
                    r["valid_value"]
                    for r in group
                    if r["learning_rate"] == rate and r["seed"] in full_seeds
                ]
            )
            for rate in full_rates
        }
        chosen_runs = [r["valid_value"] for r in group if r["learning_rate"] == full]
        spread = float(np.std(chosen_runs, ddof=1))
        seeds = sorted({r["seed"] for r in group})
        total_epochs += sum(r["epochs_run"] for r in group)
        cells = []
        for name, (rates, choice_seeds) in cheaper:
            rate = choose(group, rates, choice_seeds, sign)
            cost = sign * (pooled[full] - pooled[rate])
            cells.append(f"{rate:g}, {cost:+.4f}")
            record = summary[name]
            record["cases"] += 1
            record["same"] += rate == full
            record["within_spread"] += cost < spread
            if metric == "roc_auc":
                record["auc_costs"].append(cost)
            # Epochs: the grid's runs on the choice seeds, then one run (of the mean length)
            # on each other seed.
            grid = [r for r in group if r["seed"] in choice_seeds and r["learning_rate"] in rates]
            per_run = np.mean([r["epochs_run"] for r in group])
            record["epochs"] += sum(r["epochs_run"] for r in grid) + per_run * (
                len(seeds) - len(choice_seeds)
            )
        lines.append(
            f"| {dataset} | {model} | {metric} | {full:g} | "
            + " | ".join(cells)
            + f" | {spread:.4f} |"
        )
    for record in summary.values():
        record["epoch_share"] = record.pop("epochs") / total_epochs
    return lines, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines, summary = analyse(json.loads(args.runs.read_text()))
    text = [
        "# Cutting the fine-tuning grid: what it chooses, on validation",
        "",
        "```bash",
        f"python benchmarks/quality/finetune_choice_cut.py {args.runs}"
        + (f" --out {args.out}" if args.out else ""),
        "```",
        "",
        "Each cheaper choice is read off the same runs: nothing was retrained, so it says which "
        "rate a cheaper grid would choose and what that choice costs on validation, not what "
        "epochs or schedules would change. Validation only. Cost: how much worse the cheaper "
        "choice's rate is on the full grid's pooled validation metric (positive: worse; RMSE "
        "in its units).",
        "",
    ]
    text += lines
    text += [
        "",
        "| cheaper choice | same rate | cost below the spread | mean cost (ROC-AUC sets) "
        "| largest cost (ROC-AUC sets) | share of the grid's epochs |",
        "|---|---|---|---|---|---|",
    ]
    for name, record in summary.items():
        costs = record["auc_costs"]
        text.append(
            f"| {name} | {record['same']} of {record['cases']} | {record['within_spread']} of "
            f"{record['cases']} | {np.mean(costs):+.4f} | {max(costs):+.4f} | "
            f"{record['epoch_share']:.2f} |"
        )
    output = "\n".join(text) + "\n"
    print(output)
    if args.out:
        args.out.write_text(output)


if __name__ == "__main__":
    main()
