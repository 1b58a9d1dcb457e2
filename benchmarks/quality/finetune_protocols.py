"""The fine-tuning protocol before and after the downstream rework, on the same models and
the same seeded scaffold splits: what the protocol alone changes.

The previous protocol: the mean of the last layer's token states and a linear layer, AdamW at a
constant 1e-4 (no warm-up, no decay), no dropout, no class balancing, at most 20 epochs with
patience 3. The current one (`exlm_chem.finetuning.FinetuneSettings` defaults, as the suite runs
it): the `<s>` state through a RoBERTa head, the rate chosen on validation from four, warm-up
then linear decay, dropout 0.1, balanced classes, up to 60 epochs with patience 10. Its runs are
read from the suite's results.json; this script runs the previous protocol (resuming what is
done) into ``--out`` and compares.

    python benchmarks/quality/finetune_protocols.py \
        --mlm benchmarks/results/default_model_v2/mlm-model \
        --datasets freesolv,esol,bace,clintox,sider,bbbp --seeds 0,1
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np

from exlm_chem.finetuning import FinetuneSettings
from exlm_chem.moleculenet.compare import chosen_on_validation, paired_bootstrap
from exlm_chem.moleculenet.features import parse_features
from exlm_chem.moleculenet.report import read_records
from exlm_chem.moleculenet.suite import run_benchmark
from exlm_chem.outputs import atomic_write_text

PREVIOUS_PROTOCOL = FinetuneSettings(
    head="mean",
    learning_rate=1e-4,
    epochs=20,
    patience=3,
    warmup=0.0,
    schedule="constant",
    dropout=0.0,
    balance_classes=False,
)
CLASSIFICATION = ["bbbp", "bace", "clintox", "tox21", "toxcast", "sider"]
OLD = " (previous protocol)"


def compare(new_records: list[dict], old_records: list[dict]) -> str:
    """Markdown: per dataset and model, the test metric under each protocol on the seeds both
    have run and their paired difference, current minus previous (ROC-AUC: positive is better;
    RMSE: negative is better); then the same on the mean over the classification sets."""
    old_runs = [r for r in old_records if r["probe"] == "finetune"]
    seeds = {(r["dataset"], r["features"], r["seed"]) for r in old_runs}
    old = [dict(r, features=r["features"] + OLD) for r in old_runs]
    new = [
        r
        for r in new_records
        if r["probe"] == "finetune" and (r["dataset"], r["features"], r["seed"]) in seeds
    ]
    chosen = chosen_on_validation(new + old)
    lines = [
        "| dataset | model | metric | seeds | previous | current | current - previous |",
        "|---|---|---|---|---|---|---|",
    ]
    classification_sets: dict[str, list[str]] = {}
    for (dataset, family), cells in chosen.groupby(["dataset", "family"], sort=False):
        if family.endswith(OLD):
            continue
        before = chosen[(chosen["dataset"] == dataset) & (chosen["family"] == family + OLD)]
        if before.empty:
            continue
        metric = cells["metric"].iloc[0]
        paired = cells.set_index("seed")["value"] - before.set_index("seed")["value"]
        lines.append(
            f"| {dataset} | {family} | {metric} | {len(paired)} | {before['value'].mean():.3f} "
            f"| {cells['value'].mean():.3f} | {paired.mean():+.3f} |"
        )
        if dataset in CLASSIFICATION:
            classification_sets.setdefault(family, []).append(dataset)
    lines += [
        "",
        "Mean ROC-AUC over the classification sets, current minus previous protocol "
        "(95% paired bootstrap over seeds; none with one seed per set):",
        "",
    ]
    for family, datasets in classification_sets.items():
        result = paired_bootstrap(chosen, "finetuned", family, family + OLD, datasets)
        interval = (
            f"[{result['low']:+.3f}, {result['high']:+.3f}]"
            if np.isfinite(result["low"])
            else "no interval (one seed)"
        )
        lines.append(f"- {family} on {', '.join(datasets)}: {result['difference']:+.3f} {interval}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("EXLM_DATA_DIR", "../shared/data")) / "moleculenet",
    )
    parser.add_argument("--mlm", type=Path, help="the MLM twin's model folder, if any")
    parser.add_argument("--datasets", default="freesolv,esol,bace,clintox,sider,bbbp")
    parser.add_argument("--seeds", default="0")
    parser.add_argument(
        "--new",
        type=Path,
        default=Path("benchmarks/results/moleculenet_v2protocol/results.json"),
        help="the suite's results.json (current protocol)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/finetune_protocols"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/finetune-protocols-cache"))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("deepchem").setLevel(logging.ERROR)
    features = "exlm,random" + (f",mlm:{args.mlm}" if args.mlm else "")
    run_benchmark(
        args.datasets.split(","),
        parse_features(features),
        [],
        args.out,
        data_dir=args.data_dir,
        split="random_scaffold",
        seeds=[int(s) for s in args.seeds.split(",")],
        finetune=True,
        cache_dir=args.cache_dir,
        resume=True,
        finetune_settings=PREVIOUS_PROTOCOL,
        finetune_rates=[PREVIOUS_PROTOCOL.learning_rate],
        finetune_heads=[PREVIOUS_PROTOCOL.head],
        finetune_jobs=args.jobs,
    )
    table = compare(read_records(args.new), read_records(args.out / "results.json"))
    atomic_write_text(args.out / "comparison.md", table)
    print(table)


if __name__ == "__main__":
    main()
