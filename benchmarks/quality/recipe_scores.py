"""Score pretrained models on MoleculeNet *validation* data only, for choosing a recipe.

For each model (NAME=DIR), and for the same network untrained (``--untrained NAME``: the
weights of that model's shape and tokenizer drawn afresh), every set is embedded once with the
``mean+cls+layers`` read-out (three read-outs from one pass), split by the benchmark's seeded
random scaffold split, and probed per task on the training part with a logistic regression
(ridge for regression) whose regularization is chosen by 3-fold cross-validation *within the
training part*; the score is taken on the validation part. The test part is never read.
Standardized features, as the benchmark's probes. With ``--outside-test`` every molecule of a
reported split's test part (seeds 0-4 of the benchmark) is left out of both parts, so that what
is chosen here leaks into no reported test score (a seed's validation part holds other seeds'
test molecules); the seeds scored may then be others (``--seeds 5,6,7,8,9``). The parts then
shrink (seed 5: training parts to 45-55% of each set, validation parts to 35-70% of theirs:
BBBP 137 molecules, BACE 101, ClinTox 83, SIDER 76, Tox21 340, Lipophilicity 286, ESOL 39), and
FreeSolv keeps 5 validation molecules (its small scaffold groups nearly all fall in some test
part), so leave FreeSolv out.

Prints one JSON object per model; with ``--out`` writes results.json, results.md (mean
validation ROC-AUC over classification sets and seeds per model and read-out; RMSE per
regression set) and, from each model folder's run (``DIR/../metrics.jsonl``), the validation
curves of pretraining (curves.png).

    python benchmarks/quality/recipe_scores.py exlm-0.15=runs/recipe/exlm-mask0.15/model ... \
        --untrained exlm-0.15 --out benchmarks/results/recipe_study
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import REPO, shared_data_dir  # noqa: E402

DEFAULT_SETS = "bbbp,bace,clintox,tox21,sider,esol,freesolv,lipo"
C_GRID = (0.01, 0.1, 1.0)  # standardized features: the range the benchmark probes pick from
POOLING = "mean+cls+layers"  # every read-out from one pass, split into columns below
SELECTIONS = {False: "validation", True: "outside-test"}  # which molecules score the models


def probe_validation_scores(task_type, train, valid, columns) -> list[float]:
    """Per-task validation ROC-AUC (classification) or RMSE of a probe fitted on train."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train.X[:, columns])
    X_train, X_valid = scaler.transform(train.X[:, columns]), scaler.transform(valid.X[:, columns])
    scores = []
    for t in range(train.y.shape[1]):
        tr, va = train.w[:, t] > 0, valid.w[:, t] > 0
        y_train, y_valid = train.y[tr, t], valid.y[va, t]
        if task_type == "regression":
            model = RidgeCV(alphas=[1 / c for c in C_GRID]).fit(X_train[tr], y_train)
            scores.append(float(np.sqrt(np.mean((model.predict(X_valid[va]) - y_valid) ** 2))))
            continue
        # A task needs both classes in training (3 of each for 3 folds) and in validation.
        if min(np.bincount(y_train.astype(int), minlength=2)) < 3 or len(set(y_valid)) < 2:
            continue
        model = LogisticRegressionCV(Cs=list(C_GRID), cv=3, scoring="roc_auc", max_iter=2000)
        model.fit(X_train[tr], y_train)
        scores.append(float(roc_auc_score(y_valid, model.predict_proba(X_valid[va])[:, 1])))
    return scores


def score_model(
    name, model, datasets, seeds, data_dir, cache_dir, done=(), save=None, outside_test=False
) -> list:
    """Records of one model on every dataset; datasets in ``done`` are skipped and ``save`` is
    called with each dataset's records as soon as they are complete (resumable per dataset)."""
    from exlm_chem.featurizer import ExLMFeaturizer
    from exlm_chem.metrics import metric_name
    from exlm_chem.moleculenet.datasets import (
        DATASETS,
        load_dataset,
        selection_split,
        split_dataset,
    )

    featurizer = ExLMFeaturizer(model=model, pooling=POOLING)
    width = model.config.hidden_size
    readouts = {
        part: slice(i * width, (i + 1) * width) for i, part in enumerate(POOLING.split("+"))
    }
    records = []
    for dataset_name in datasets:
        if dataset_name in done:
            continue
        found = []
        task_type = DATASETS[dataset_name].task_type
        start = time.perf_counter()
        _, dataset = load_dataset(dataset_name, featurizer, data_dir, cache_dir)
        featurize_seconds = time.perf_counter() - start
        for seed in seeds:
            if outside_test:
                train, valid = selection_split(dataset, seed)
            else:
                train, valid, _ = split_dataset(dataset, "random_scaffold", seed)
            for readout, columns in readouts.items():
                start = time.perf_counter()
                scores = probe_validation_scores(task_type, train, valid, columns)
                found.append(
                    dict(
                        model=name,
                        dataset=dataset_name,
                        seed=seed,
                        readout=readout,
                        metric=metric_name(task_type),
                        value=float(np.mean(scores)) if scores else float("nan"),
                        tasks_scored=len(scores),
                        fit_seconds=round(time.perf_counter() - start, 1),
                        featurize_seconds=round(featurize_seconds, 1),
                        featurizer=str(featurizer),
                        selection=SELECTIONS[outside_test],
                    )
                )
        records += found
        if save is not None:
            save(found)
        print(f"{name} {dataset_name}: done", file=sys.stderr, flush=True)
    return records


def paired_differences(frame, baselines: list[str]) -> list[str]:
    """Markdown rows: each model's read-out against the same read-out of the untrained control
    and of each of ``baselines``, each ExLM against the MLM of the same mask rate, and each
    mask rate against the objective's first, on the mean validation ROC-AUC over the
    classification sets, with paired bootstrap intervals over the seeds."""
    from exlm_chem.moleculenet.compare import paired_bootstrap

    scores = frame[frame.metric == "roc_auc"].assign(
        mode="frozen", family=frame.model + "[" + frame.readout + "]"
    )
    datasets = sorted(set(scores.dataset))
    models = list(dict.fromkeys(scores.model))
    controls = [m for m in models if m.startswith("untrained") or m in baselines]
    pairs = [(m, c) for m in models if m not in controls for c in controls]
    pairs += [(m, "mlm-" + m[5:]) for m in models if m.startswith("exlm-")]
    for objective in ("exlm-", "mlm-"):  # each mask rate against the objective's first
        runs = [m for m in models if m.startswith(objective)]
        pairs += [(m, runs[0]) for m in runs[1:]]
    rows = []
    for a, b in dict.fromkeys(pairs):  # a pair named by two rules is shown once
        for readout in dict.fromkeys(scores.readout):
            result = paired_bootstrap(
                scores, "frozen", f"{a}[{readout}]", f"{b}[{readout}]", datasets
            )
            if result is not None:
                rows.append(
                    f"| {a} | {b} | {readout} | {result['difference']:+.4f} | "
                    f"[{result['low']:+.4f}, {result['high']:+.4f}] |"
                )
    return rows


def summary_table(records: list[dict], baselines: list[str] = ()) -> str:
    import pandas as pd

    frame = pd.DataFrame(records)
    # Only the sets scored for every model, so that every mean is over the same sets.
    scored = frame.groupby("dataset")["model"].nunique()
    frame = frame[frame.dataset.isin(scored[scored == frame.model.nunique()].index)]
    lines = [
        f"Sets scored for every model: {', '.join(sorted(set(frame.dataset)))}.",
        "",
        "| model | read-out | mean validation ROC-AUC (classification) | ",
    ]
    regression = sorted(set(frame[frame.metric == "rmse"].dataset))
    lines[2] += " | ".join(f"{d} RMSE" for d in regression) + " |"
    lines.append("|---|---|---|" + "---|" * len(regression))
    for (model, readout), rows in frame.groupby(["model", "readout"], sort=False):
        auc = rows[rows.metric == "roc_auc"].groupby("dataset")["value"].mean()
        cells = [f"{auc.mean():.4f}"] + [
            f"{rows[rows.dataset == d]['value'].mean():.3f}" for d in regression
        ]
        lines.append(f"| {model} | {readout} | " + " | ".join(cells) + " |")
    per_set = frame[frame.metric == "roc_auc"].pivot_table(
        index=["model", "readout"], columns="dataset", values="value", sort=False
    )
    lines += ["", "Validation ROC-AUC per classification set (mean over seeds):", ""]
    lines.append("| model | read-out | " + " | ".join(per_set.columns) + " |")
    lines.append("|---|---|" + "---|" * len(per_set.columns))
    for (model, readout), row in per_set.iterrows():
        lines.append(f"| {model} | {readout} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    pairs = paired_differences(frame, list(baselines))
    if pairs:
        lines += [
            "",
            "Paired differences (a - b) in mean validation ROC-AUC over the classification sets, "
            "with 95% intervals from resampling each set's seeds (10,000 draws, the same for a "
            "and b):",
            "",
            "| a | b | read-out | difference | 95% interval |",
            "|---|---|---|---|---|",
            *pairs,
        ]
    return "\n".join(lines) + "\n"


def plot_curves(models: dict[str, Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, directory in models.items():
        metrics = directory.parent / "metrics.jsonl"
        if not metrics.is_file():
            continue
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r.get("val_accuracy") is not None]
        ax.plot([r["tokens"] / 1e6 for r in rows], [r["val_accuracy"] for r in rows], label=name)
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("validation masked-token accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    from exlm_chem.outputs import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="NAME=DIR model folders")
    parser.add_argument("--untrained", action="append", default=[], help="NAME of a model above")
    parser.add_argument(
        "--baseline", action="append", default=[], help="NAME of a model to compare each with"
    )
    parser.add_argument("--datasets", default=DEFAULT_SETS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cache-dir", default=str(REPO / "runs" / "moleculenet-cache"))
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--outside-test", action="store_true", help="leave out every reported test molecule"
    )
    args = parser.parse_args()

    import logging
    import warnings

    from exlm_chem import load_model
    from exlm_chem.outputs import atomic_write_text

    warnings.filterwarnings("ignore", category=FutureWarning)  # scikit-learn's API changes

    logging.getLogger("deepchem").setLevel(logging.ERROR)
    data = shared_data_dir()
    if data is None:
        sys.exit("error: the shared data folder is needed (set EXLM_DATA_DIR)")
    models = dict(item.split("=", 1) for item in args.models)
    seeds = [int(s) for s in args.seeds.split(",")]
    datasets = args.datasets.split(",")
    records = []
    if args.out and (args.out / "results.json").is_file():
        records = json.loads((args.out / "results.json").read_text())
        # Scores of other read-outs are stale: every model is scored again on the same ones.
        records = [r for r in records if r["featurizer"].endswith(f"_{POOLING}")]

    def scored_here() -> list[dict]:  # scores on other molecules are kept, and not mixed in
        selection = SELECTIONS[args.outside_test]
        return [r for r in records if r.get("selection", "validation") == selection]

    def save(found: list[dict]) -> None:
        records.extend(found)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.out / "results.json", json.dumps(records, indent=1))

    from exlm_chem.model import model_fingerprint

    jobs = [(name, Path(path), False) for name, path in models.items()]
    jobs += [(f"untrained ({name})", Path(models[name]), True) for name in args.untrained]
    for name, path, untrained in jobs:
        model = load_model(path)
        model = model.reinitialized() if untrained else model
        key = f"_{model_fingerprint(model)}_"
        done = {r["dataset"] for r in scored_here() if key in r["featurizer"]}
        score_model(
            name, model, datasets, seeds, data / "moleculenet", Path(args.cache_dir), done, save,
            args.outside_test,
        )  # fmt: skip
        print(json.dumps(dict(model=name, datasets_done=len(done))))
    if args.out:
        atomic_write_text(args.out / "results.md", summary_table(scored_here(), args.baseline))
        plot_curves({n: Path(p) for n, p in models.items()}, args.out / "curves.png")
    print(summary_table(scored_here(), args.baseline))


if __name__ == "__main__":
    main()
