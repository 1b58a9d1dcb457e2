"""What the baselines cost once: the seconds of every fixed baseline (fingerprints, descriptors,
their hybrids, chemprop trained from scratch) kept in the suite's cache or in benchmark folders'
results.json, per dataset, feature set and probe, and how many of the seeds are done (a result
in several places counts once). These are paid once per dataset, split and seed and then
reused by every later run and model, so they are reported apart from a model's own cost
(`suite_cost.py`).

Fits only: the features themselves are kept in the feature cache, so most records read them
back rather than compute them (RDKit's descriptors, the slowest, take about 13 ms a molecule on
one core); chemprop's featurization is inside its training. Times are summed as recorded, so
they are the seconds of the machine and load the runs had.

    python benchmarks/quality/baseline_cost.py runs/moleculenet-cache
    python benchmarks/quality/baseline_cost.py benchmarks/results/moleculenet_baselines
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from exlm_chem.moleculenet.baselines import KEY_FIELDS, baseline_records


def read_baselines(folders: list[Path], split: str = "random_scaffold") -> list[dict]:
    """Every baseline record of ``split`` in the cache folders (their ``baselines/``) and
    benchmark folders (their results.json) given, once each (prediction arrays left out)."""
    records = {}
    for folder in folders:
        if (folder / "results.json").is_file():
            found = baseline_records([folder])
        else:
            found = [json.loads(p.read_text()) for p in sorted(folder.glob("baselines/*/*.json"))]
        for record in found:
            if record.get("split") == split:
                key = tuple(str(record.get(k)) for k in KEY_FIELDS)
                records[key] = {k: v for k, v in record.items() if not isinstance(v, list)}
    return list(records.values())


def baseline_cost(records: list[dict]) -> list[dict]:
    """One row per (dataset, features, probe): the seeds done and their fits' seconds."""
    groups = defaultdict(list)
    for record in records:
        groups[(record["dataset"], record["features"], record["probe"])].append(record)
    return [
        dict(dataset=dataset, features=features, probe=probe, seeds=len(group),
             fit=sum(r["fit_seconds"] for r in group))
        for (dataset, features, probe), group in groups.items()
    ]  # fmt: skip


def markdown(rows: list[dict]) -> str:
    lines = [
        "| dataset | features | probe | seeds | seconds |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['dataset']} | {row['features']} | {row['probe']} | {row['seeds']} | "
            f"{row['fit']:,.0f} |"
        )
    totals = defaultdict(float)
    for row in rows:
        kind = "chemprop" if row["features"] == "chemprop" else "fingerprints and descriptors"
        totals[kind] += row["fit"]
    lines.append("")
    lines += [
        f"{kind}: {seconds:,.0f} s = {seconds / 3600:.1f} h" for kind, seconds in totals.items()
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folders", type=Path, nargs="+", help="the suite's --cache-dir or benchmark folders"
    )
    parser.add_argument("--split", default="random_scaffold")
    args = parser.parse_args()
    print(markdown(baseline_cost(read_baselines(args.folders, args.split))))


if __name__ == "__main__":
    main()
