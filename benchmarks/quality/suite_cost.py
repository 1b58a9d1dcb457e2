"""What the MoleculeNet suite costs for one model (`benchmarks/quality/moleculenet.sh`): per
dataset, the seconds spent featurizing its read-outs, fitting the frozen probes on them (the
hybrid with ECFP4 included) and fine-tuning it (every run of the learning-rate grid), read from a
suite's results.json and finetune_runs.json; the parts not run yet are projected from the
parts done, in seconds per molecule (fine-tuning: per training molecule and run, from the
sets of the same task type), and marked ``~``. Fine-tuning runs made on a GPU (``device``
cuda in finetune_runs.json) count at the CPU's seconds per training molecule and epoch, from
the same set's CPU runs (else its task type's), times their epochs: also marked ``~``.

Times are summed as recorded, so a run paused for a while counts in full (the suite README
lists those), and the rates come from the machine that ran the parts. Molecule counts are the
rows of the datasets' files ($EXLM_DATA_DIR/moleculenet); the training part is 80% of them.

    python benchmarks/quality/suite_cost.py benchmarks/results/moleculenet_v2protocol
    python benchmarks/quality/suite_cost.py benchmarks/results/moleculenet_standard_exlm-chem-v3 \
        --model exlm:exlm-chem-v3 --runs-per-set 5 \
        --finetune-datasets bbbp,bace,clintox,tox21,sider,esol,freesolv,lipo
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import shared_data_dir  # noqa: E402

from exlm_chem.moleculenet.compare import family  # noqa: E402
from exlm_chem.moleculenet.datasets import DATASETS  # noqa: E402
from exlm_chem.moleculenet.report import read_records  # noqa: E402

SUITE = ["bbbp", "bace", "clintox", "tox21", "toxcast", "sider", "esol", "freesolv", "lipo"]
TRAIN_FRACTION = 0.8


def molecule_count(data_dir: Path, name: str) -> int:
    return len(pd.read_csv(data_dir / DATASETS[name].file, usecols=[0]))


def suite_cost(
    records: list[dict],
    runs: list[dict],
    molecules: dict[str, int],
    model: str = "exlm",
    runs_per_set: int = 11,
    seeds: int = 5,
    datasets: list[str] = SUITE,
    finetune_datasets: list[str] | None = None,
) -> list[dict]:
    """Per dataset: featurization, frozen fits and fine-tuning seconds of ``model`` (its
    family's read-outs and its hybrids with fingerprints or descriptors), measured where all
    their records are there, else projected (``projected`` names the parts). Sets outside
    ``finetune_datasets`` (None: all) are not fine-tuned."""
    rows = []
    for name in datasets:
        mine = [
            r
            for r in records
            if r["dataset"] == name
            and r["probe"] != "finetune"
            and family(r["features"]).split("&")[0] == model
        ]
        features = {r["features"] for r in mine}
        tuned = [r for r in runs if r["dataset"] == name and r["features"] == model]
        on_cpu = [r for r in tuned if r.get("device", "cpu") == "cpu"]
        on_gpu = [r for r in tuned if r.get("device", "cpu") != "cpu"]
        cpu_seconds = sum(r["fit_seconds"] for r in on_cpu)
        train_molecules = TRAIN_FRACTION * molecules[name]
        rows.append(
            dict(
                dataset=name,
                task_type=DATASETS[name].task_type,
                molecules=molecules[name],
                feature_sets=len(features),
                multitask=any(r["probe"] == "deepchem" for r in mine),
                frozen_records=len(mine),
                featurize=sum(
                    max(r["featurize_seconds"] for r in mine if r["features"] == f)
                    for f in features
                ),
                frozen_fit=sum(r["fit_seconds"] for r in mine),
                finetune_runs=len(tuned),
                finetune=cpu_seconds,
                cpu_epoch_rate=(
                    cpu_seconds / (train_molecules * sum(r["epochs_run"] for r in on_cpu))
                    if on_cpu
                    else None
                ),
                gpu_epochs=sum(r["epochs_run"] for r in on_gpu),
            )
        )
    # Complete parts set the rates: the most feature sets any dataset probed the same way has
    # (ToxCast's multitask network reads fewer of them), all seeds of each.
    for row in rows:
        most = max(r["feature_sets"] for r in rows if r["multitask"] == row["multitask"])
        row["frozen_done"] = (
            most > 0 and row["feature_sets"] == most and row["frozen_records"] >= most * seeds
        )
        row["finetune_done"] = row["finetune_runs"] >= runs_per_set or (
            finetune_datasets is not None and row["dataset"] not in finetune_datasets
        )
    for row in rows:  # GPU runs at the CPU's rate first: the projections below read them
        row["projected"] = []
        if row["gpu_epochs"] and row["finetune_done"]:
            rate = row["cpu_epoch_rate"] or _median(
                [
                    r["cpu_epoch_rate"]
                    for r in rows
                    if r["cpu_epoch_rate"] and r["task_type"] == row["task_type"]
                ]
            )
            row["finetune"] += rate * row["gpu_epochs"] * TRAIN_FRACTION * row["molecules"]
            row["projected"].append("finetune")
    for row in rows:
        same_kind = [r for r in rows if r["task_type"] == row["task_type"]]
        if not row["frozen_done"]:
            for part in ("featurize", "frozen_fit"):
                done = [r[part] / r["molecules"] for r in same_kind if r["frozen_done"]]
                row[part] = _median(done) * row["molecules"]
            row["projected"] += ["featurize", "frozen_fit"]
        if not row["finetune_done"]:
            # From the sets measured in full on the CPU.
            done = [
                r["finetune"] / (TRAIN_FRACTION * r["molecules"] * r["finetune_runs"])
                for r in same_kind
                if r["finetune_done"] and not r["gpu_epochs"]
            ]
            row["finetune"] = _median(done) * TRAIN_FRACTION * row["molecules"] * runs_per_set
            row["projected"].append("finetune")
        row["total"] = row["featurize"] + row["frozen_fit"] + row["finetune"]
    return rows


def _median(rates: list[float]) -> float:
    return statistics.median(rates) if rates else float("nan")  # nothing of its kind done yet


def markdown(rows: list[dict], model: str) -> str:
    def cell(row, part):
        return ("~" if part in row["projected"] else "") + f"{row[part]:,.0f}"

    lines = [
        f"Seconds for `{model}` (~: projected from the sets done of the same task type)",
        "",
        "| dataset | molecules | featurization | frozen fits | fine-tuning | total |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['dataset']} | {row['molecules']:,} | {cell(row, 'featurize')} | "
            f"{cell(row, 'frozen_fit')} | {cell(row, 'finetune')} | {row['total']:,.0f} |"
        )
    measured = sum(
        row[part]
        for row in rows
        for part in ("featurize", "frozen_fit", "finetune")
        if part not in row["projected"]
    )
    total = sum(row["total"] for row in rows)
    lines += [
        "",
        f"Nine sets: {total:,.0f} s = {total / 3600:.1f} h of run time "
        f"({measured / 3600:.1f} h measured, {(total - measured) / 3600:.1f} h projected).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", type=Path, help="a suite's output folder")
    parser.add_argument("--model", default="exlm", help="the model's family name in the records")
    parser.add_argument("--runs-per-set", type=int, default=11, help="fine-tuning runs per set")
    parser.add_argument(
        "--finetune-datasets",
        help="the sets the suite fine-tunes on, comma-separated (default: all)",
    )
    parser.add_argument("--data-dir", type=Path, help="default: $EXLM_DATA_DIR")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data_dir = args.data_dir or shared_data_dir()
    if data_dir is None:
        sys.exit("suite_cost.py: set EXLM_DATA_DIR or pass --data-dir (molecule counts)")
    records = read_records(args.suite / "results.json")
    runs = read_records(args.suite / "finetune_runs.json", "runs")
    molecules = {name: molecule_count(data_dir / "moleculenet", name) for name in SUITE}
    finetune_datasets = args.finetune_datasets.split(",") if args.finetune_datasets else None
    rows = suite_cost(
        records, runs, molecules, args.model, args.runs_per_set, finetune_datasets=finetune_datasets
    )
    print(json.dumps(rows, indent=1) if args.json else markdown(rows, args.model))


if __name__ == "__main__":
    main()
