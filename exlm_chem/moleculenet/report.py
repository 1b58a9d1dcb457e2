"""The suite's records and reports: results to resume from; results.csv, a markdown table of
features side by side, bar charts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..outputs import atomic_path, atomic_write_text
from .compare import comparison_table


def read_records(path: Path, what: str = "results") -> list[dict]:
    """The records of a results file to resume from ([] when there is none yet)."""
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot resume from it, not a {what} file ({exc})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"{path}: cannot resume from it, not a list of {what}")
    return records


# What makes a run one run: the fields a resumed grid looks a run up by.
RUN_KEY = ("dataset", "features", "featurizer", "split", "seed", "learning_rate", "head")


def merge_runs(runs: list[dict], other: list[dict]) -> list[dict]:
    """``runs`` followed by the runs of ``other`` (made elsewhere: a GPU machine's) that it
    does not have; a run in both is kept as ``runs`` has it."""

    def run_key(run: dict) -> tuple:
        return tuple(run.get(field) for field in RUN_KEY)

    have = {run_key(run) for run in runs}
    return runs + [run for run in other if run_key(run) not in have]


def write_reports(records: list[dict], out: Path) -> None:
    """results.csv, results.md (mean +- std over seeds; each family's read-out and probe chosen
    on validation, compared by paired bootstrap; wall time per dataset) and a bar chart per
    metric."""
    frame = pd.DataFrame(records)
    atomic_write_text(out / "results.csv", frame.to_csv(index=False))
    atomic_write_text(
        out / "results.md",
        "\n".join([markdown_table(frame), comparison_table(records), wall_time_table(frame)]),
    )
    for metric, group in frame.groupby("metric"):
        plot_bars(group, out / f"results_{metric}.png", metric)


def markdown_table(frame) -> str:
    """One row per dataset and probe, one column per feature kind: mean +- std over seeds."""
    summary = (
        frame.groupby(["dataset", "metric", "probe", "features"])["value"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    feature_order = list(dict.fromkeys(frame["features"]))
    lines = []
    for metric, group in summary.groupby("metric", sort=False):
        better = "higher" if metric == "roc_auc" else "lower"
        lines += [
            f"### {metric} ({better} is better)",
            "",
            "| dataset | probe | " + " | ".join(feature_order) + " |",
            "|---|---|" + "---|" * len(feature_order),
        ]
        for (dataset, probe), rows in group.groupby(["dataset", "probe"], sort=False):
            cells = []
            for feature in feature_order:
                row = rows[rows["features"] == feature]
                if row.empty:
                    cells.append("")
                else:
                    mean, std, count = row.iloc[0]["mean"], row.iloc[0]["std"], row.iloc[0]["count"]
                    cells.append(f"{mean:.3f} ± {std:.3f}" if count > 1 else f"{mean:.3f}")
            lines.append(f"| {dataset} | {probe} | " + " | ".join(cells) + " |")
        if metric == "roc_auc":
            means = group.groupby(["probe", "features"])["mean"].mean()
            for probe in dict.fromkeys(group["probe"]):
                cells = [
                    f"{means[(probe, f)]:.3f}" if (probe, f) in means else "" for f in feature_order
                ]
                lines.append(f"| **mean** | {probe} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def wall_time_table(frame) -> str:
    """Seconds per dataset: featurization (each feature set once: the longest of its records,
    since a resumed run reads the cache) apart from fitting, per probe, summed over feature
    sets and seeds (fine-tuning: every run of the learning-rate grid)."""
    frame = frame.copy()
    if "featurize_seconds" not in frame:
        frame["featurize_seconds"] = np.nan
    probes = list(dict.fromkeys(frame["probe"]))
    lines = [
        "### Wall time per dataset (seconds)",
        "",
        "| dataset | featurization | " + " | ".join(f"fit: {p}" for p in probes) + " | total |",
        "|---|---|" + "---|" * (len(probes) + 1),
    ]
    for dataset, rows in frame.groupby("dataset", sort=False):
        featurize = rows.groupby("features")["featurize_seconds"].max().sum()
        fits = rows.groupby("probe")["fit_seconds"].sum()
        cells = [f"{fits[p]:.0f}" if p in fits else "" for p in probes]
        total = featurize + fits.sum()
        lines.append(f"| {dataset} | {featurize:.0f} | " + " | ".join(cells) + f" | {total:.0f} |")
    return "\n".join(lines) + "\n"


def plot_bars(frame, path: Path, metric: str) -> None:
    # pyplot only here, after choosing the file-only backend: no display needed.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = frame.groupby(["dataset", "features", "probe"])["value"].mean().reset_index()
    summary["label"] = summary["features"] + " / " + summary["probe"]
    datasets = list(dict.fromkeys(summary["dataset"]))
    labels = list(dict.fromkeys(summary["label"]))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(datasets)), 4))
    for i, label in enumerate(labels):
        rows = summary[summary["label"] == label].set_index("dataset")
        ax.bar(
            [d + i * width for d in range(len(datasets))],
            [rows["value"].get(name, np.nan) for name in datasets],
            width,
            label=label,
        )
    ax.set_xticks([d + width * (len(labels) - 1) / 2 for d in range(len(datasets))], datasets)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
