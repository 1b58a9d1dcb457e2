"""Would restoring the training prior calibrate the classifiers better than temperature scaling?

Fine-tuning balances the classes of each task (each labelled example weighted n / (2 n_class)),
which moves every logit by log(n_negative / n_positive) of the training part: the model
predicts as if each task's classes were equally common. Temperature scaling cannot undo a
shift, only stretch the logits. This reads the test predictions that `uncertainty.py` stored and
prints the expected calibration error (ECE) three ways per (set, seed):
- before calibration (the members' mean logit);
- temperature scaled on the validation part (what `predict` gives);
- the training prior restored: log(n_positive / n_negative) of the split's training part added
  to the mean logit, nothing fitted.

A diagnostic on test parts that chooses nothing: a change of the calibration must be chosen on
validation outputs, which the stored runs do not keep.

    EXLM_DATA_DIR=../shared/data python benchmarks/quality/calibration_prior_check.py \
        --out benchmarks/results/uncertainty > benchmarks/results/uncertainty/prior_shift_check.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import shared_data_dir  # noqa: E402


def training_log_odds(dataset, seed: int) -> np.ndarray:
    """Per task, log(n_positive / n_negative) of the labelled molecules of ``seed``'s training
    part."""
    from exlm_chem.moleculenet.datasets import split_dataset

    train = split_dataset(dataset, "random_scaffold", seed)[0]
    labelled = train.w > 0
    positives = ((train.y == 1) & labelled).sum(0)
    return np.log(positives / (labelled.sum(0) - positives))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/uncertainty"))
    parser.add_argument("--cache", type=Path, default=Path("runs/moleculenet-cache"))
    args = parser.parse_args()
    from exlm_chem import ExLMFeaturizer, load_model
    from exlm_chem.finetuning.calibration import expected_calibration_error, sigmoid
    from exlm_chem.moleculenet.datasets import load_dataset
    from exlm_chem.moleculenet.features import ReadableRows

    data_dir = shared_data_dir() / "moleculenet" if shared_data_dir() else None
    records = [json.loads(line) for line in (args.out / "runs.jsonl").open()]
    records = [r for r in records if r["task_type"] == "classification"]
    featurizer = ReadableRows(ExLMFeaturizer(load_model(records[0]["model"])))
    lines = [
        "# Calibration error on the test parts: before, temperature scaled, prior restored",
        "",
        "`EXLM_DATA_DIR=../shared/data python benchmarks/quality/calibration_prior_check.py "
        f"--out {args.out} > {args.out}/prior_shift_check.md`",
        "",
        "| set | seed | training positives (per task) | ECE before | ECE temperature scaled"
        " | ECE training prior restored |",
        "|---|---|---|---|---|---|",
    ]
    by_set: dict[str, list[tuple[float, float, float]]] = {}
    datasets = {}  # each set read once, for all its seeds
    for r in sorted(records, key=lambda r: (r["dataset"], r["seed"])):
        if r["dataset"] not in datasets:
            datasets[r["dataset"]] = load_dataset(r["dataset"], featurizer, data_dir, args.cache)[1]
        arrays = np.load(args.out / "predictions" / f"{r['dataset']}-{r['seed']}.npz")
        log_odds = training_log_odds(datasets[r["dataset"]], r["seed"])
        p = np.clip(arrays["uncalibrated"], 1e-7, 1 - 1e-7)
        restored = sigmoid(np.log(p / (1 - p)) + log_odds)
        eces = tuple(
            expected_calibration_error(q, arrays["y"])
            for q in (arrays["uncalibrated"], arrays["value"], restored)
        )
        by_set.setdefault(r["dataset"], []).append(eces)
        shares = ", ".join(f"{s:.2f}" for s in sigmoid(log_odds))
        cells = " | ".join(f"{e:.3f}" for e in eces)
        lines.append(f"| {r['dataset']} | {r['seed']} | {shares} | {cells} |")
    for name, eces in by_set.items():
        cells = " | ".join(f"**{m:.3f}**" for m in np.mean(eces, axis=0))
        lines.append(f"| **{name}** | mean of {len(eces)} | | {cells} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
