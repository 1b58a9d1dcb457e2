"""Is the linear probe's choice on validation optimistic, and would choosing inside the training
part do better? Measured on validation data only.

The benchmark's linear probe (`exlm_chem.moleculenet.probes`) chooses, per task, the
regularization C and whether to standardize the columns by the validation ROC-AUC, and
reports that validation value beside the test one. On the v3 quick profile it lost 0.05-0.07
from validation to test on every feature set, against 0.03-0.05 for the 500-tree forest,
which chooses nothing (`../results/moleculenet_quick_exlm-chem-v3/README.md`).

Here each split's validation part is cut in two halves of whole scaffold groups (seeded); on
each half in turn the probe chooses as the benchmark does with the other half as its
validation part, and is scored on this half, which it never saw. Beside it, the same features
with C chosen by 3-fold cross-validation inside the training part (standardized columns, the
grid of the benchmark's probe; `LogisticRegressionCV`), scored on the same half. Each rule's
score is its mean over both halves; the benchmark's rule also gives its optimism, the value on
the half it chose on minus the value on the other. Choosing on half a validation part is
noisier than on the whole, so the benchmark's rule is measured here at a disadvantage; the
optimism is measured as it is.

    EXLM_DATA_DIR=../shared/data python benchmarks/quality/probe_choice.py \
        --features "exlm:exlm-chem-v3[layers],ecfp-count" --out benchmarks/results/probe_choice
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import REPO, shared_data_dir  # noqa: E402

CLASSIFICATION_SETS = "bbbp,bace,clintox,tox21,sider"


def halves(dataset, seed: int):
    """The rows of ``dataset`` in two halves of whole Murcko-scaffold groups: the groups in a
    seeded random order, largest first, each to the half with fewer rows so far."""
    from exlm_chem.moleculenet.datasets import _groups

    groups = _groups(dataset)
    order = np.random.default_rng(seed).permutation(len(groups))
    parts: tuple[list, list] = ([], [])
    for i in sorted(order, key=lambda i: -len(groups[i])):  # stable: ties keep the random order
        min(parts, key=len).extend(groups[i])
    return tuple(dataset.select(np.array(sorted(part))) for part in parts)


def cv_probe_scores(train, held_out, seed: int) -> np.ndarray:
    """Per task: ROC-AUC on ``held_out`` of logistic regression with C chosen by 3-fold
    cross-validation in ``train`` (standardized columns); NaN where a part lacks a class."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    from exlm_chem.metrics import roc_auc
    from exlm_chem.moleculenet.probes import REGULARIZATION, quiet_linear_fits

    scaler = StandardScaler().fit(train.X)
    X_train, X_held = scaler.transform(train.X), scaler.transform(held_out.X)
    scores = []
    for t in range(train.y.shape[1]):
        tr, ho = train.w[:, t] > 0, held_out.w[:, t] > 0
        y_train, y_held = train.y[tr, t], held_out.y[ho, t]
        if min(np.bincount(y_train.astype(int), minlength=2)) < 3 or len(set(y_held)) < 2:
            scores.append(np.nan)
            continue
        folds = StratifiedKFold(3, shuffle=True, random_state=seed)
        with quiet_linear_fits(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.8's notices
            model = LogisticRegressionCV(
                Cs=list(REGULARIZATION), cv=folds, scoring="roc_auc", max_iter=2000
            ).fit(X_train[tr], y_train)
        predicted = model.predict_proba(X_held[ho])[:, 1]
        scores.append(roc_auc(y_held, predicted))
    return np.array(scores)


def compare(features: str, datasets: list[str], seeds: list[int], data_dir, cache_dir) -> list:
    from exlm_chem.metrics import roc_auc_per_task
    from exlm_chem.moleculenet.datasets import load_features, split_dataset
    from exlm_chem.moleculenet.features import feature_blocks, make_featurizer, parse_feature
    from exlm_chem.moleculenet.probes import probe_predictions

    featurizer = make_featurizer(parse_feature(features))
    blocks = feature_blocks(featurizer)
    records = []
    for name in datasets:
        _, dataset = load_features(name, featurizer, data_dir, cache_dir)
        for seed in seeds:
            train, valid, _ = split_dataset(dataset, "random_scaffold", seed)
            a, b = halves(valid, seed)
            rows = {"benchmark": [], "cross-validation": [], "chosen-on": []}
            for choose, score_on in ((a, b), (b, a)):
                chosen, held = probe_predictions(
                    "logreg", "classification", train, choose, score_on, seed, blocks
                )
                rows["benchmark"].append(roc_auc_per_task(score_on.y, score_on.w, held))
                rows["chosen-on"].append(roc_auc_per_task(choose.y, choose.w, chosen))
                rows["cross-validation"].append(cv_probe_scores(train, score_on, seed))
            record = dict(features=features, dataset=name, seed=seed)
            for rule, values in rows.items():
                record[rule] = float(np.nanmean(np.concatenate(values)))
            records.append(record)
            print(json.dumps(record), flush=True)
    return records


def summary(records: list[dict]) -> str:
    """Markdown: per feature set, each rule's mean over sets and seeds and the paired
    difference (cross-validation minus the benchmark's rule) with a 95% interval from
    resampling each set's seeds (`exlm_chem.moleculenet.compare.paired_bootstrap`)."""
    import pandas as pd

    from exlm_chem.moleculenet.compare import paired_bootstrap

    frame = pd.DataFrame(records)
    lines = [
        "| features | benchmark's rule (held-out half) | its value where it chose | optimism "
        "| C by cross-validation in training | cross-validation minus benchmark [95%] |",
        "|---|---|---|---|---|---|",
    ]
    for features, part in frame.groupby("features", sort=False):
        rules = part.melt(["dataset", "seed"], ["benchmark", "cross-validation"], "family")
        rules = rules.assign(mode="frozen", metric="roc_auc")
        result = paired_bootstrap(
            rules, "frozen", "cross-validation", "benchmark", sorted(set(part["dataset"]))
        )
        means = (
            part.groupby("dataset")[["benchmark", "chosen-on", "cross-validation"]].mean().mean()
        )
        lines.append(
            f"| {features} | {means['benchmark']:.4f} | {means['chosen-on']:.4f} | "
            f"{means['chosen-on'] - means['benchmark']:+.4f} | {means['cross-validation']:.4f} | "
            f"{result['difference']:+.4f} [{result['low']:+.4f}, {result['high']:+.4f}] |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="comma-separated, as the benchmark's")
    parser.add_argument("--datasets", default=CLASSIFICATION_SETS)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "runs" / "moleculenet-cache")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from exlm_chem.outputs import atomic_write_text

    data_dir = shared_data_dir() / "moleculenet"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = {(r["features"], r["dataset"], r["seed"]) for r in records}
    seeds = [int(s) for s in args.seeds.split(",")]
    for features in args.features.split(","):
        for name in args.datasets.split(","):
            todo = [s for s in seeds if (features, name, s) not in done]
            if todo:
                records += compare(features, [name], todo, data_dir, args.cache_dir)
                atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    atomic_write_text(args.out / "results.md", summary(records))
    print(summary(records))


if __name__ == "__main__":
    main()
