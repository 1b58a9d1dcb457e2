"""Merge fine-tuning runs made elsewhere (a GPU machine's finetune_runs.json) into the suite's,
so that `moleculenet.sh` (``--resume``) takes them up. A run present in both is kept as the
target has it. Stop the suite before merging: it rewrites its file after every run.

    python benchmarks/gpu/merge_finetune_runs.py FETCHED/finetune_runs.json \\
        benchmarks/results/moleculenet_v2protocol/finetune_runs.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from exlm_chem.errors import InputError
from exlm_chem.moleculenet.report import merge_runs, read_records
from exlm_chem.outputs import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fetched", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    try:
        if not args.fetched.is_file():
            raise InputError(f"{args.fetched}: no such file")
        target = read_records(args.target, "runs")
        merged = merge_runs(target, read_records(args.fetched, "runs"))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    atomic_write_text(args.target, json.dumps(merged, indent=1))
    print(f"{len(merged) - len(target)} runs added to {args.target} ({len(merged)} in all)")


if __name__ == "__main__":
    main()
