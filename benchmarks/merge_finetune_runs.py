"""Merge fine-tuning runs made elsewhere (a GPU machine's finetune_runs.json) into the suite's,
so that `moleculenet.sh` (``--resume``) takes them up. A run present in both is kept as the
target has it. Stop the suite before merging: it rewrites its file after every run.

    python benchmarks/merge_finetune_runs.py FETCHED/finetune_runs.json \\
        benchmarks/results/moleculenet_v2protocol/finetune_runs.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exlm_chem.moleculenet.finetune_runs import merge_runs
from exlm_chem.moleculenet.report import read_records
from exlm_chem.outputs import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fetched", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    target = read_records(args.target, "runs")
    merged = merge_runs(target, read_records(args.fetched, "runs"))
    atomic_write_text(args.target, json.dumps(merged, indent=1))
    print(f"{len(merged) - len(target)} runs added to {args.target} ({len(merged)} in all)")


if __name__ == "__main__":
    main()
