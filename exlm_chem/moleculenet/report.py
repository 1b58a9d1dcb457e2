"""The suite's records and reports: results to resume from; results.csv, a markdown table of
features side by side, a chart per metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..outputs import atomic_path, atomic_write_text
from .compare import baseline_table, chosen_on_validation, comparison_table, headline_table


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
    """results.csv, results.md (a summary per family; mean +- std over seeds; each family's
    read-out and probe chosen on validation, compared by paired bootstrap; wall time per
    dataset) and a chart per metric of the families chosen on validation."""
    frame = pd.DataFrame(records)
    chosen = chosen_on_validation(records)
    atomic_write_text(out / "results.csv", frame.to_csv(index=False))
    atomic_write_text(
        out / "results.md",
        "\n".join(
            [
                headline_table(chosen),
                baseline_table(chosen),
                markdown_table(frame),
                comparison_table(chosen),
                wall_time_table(frame),
            ]
        ),
    )
    chart_rows = _chart_rows(records, chosen)
    for metric in frame["metric"].unique():
        plot_chosen(chart_rows, out / f"results_{metric}.png", metric)


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


def _chart_rows(records: list[dict], chosen: pd.DataFrame) -> pd.DataFrame:
    """The records the charts show, each with its row's ``label``: per family and mode, the
    read-out and probe chosen on validation (``chosen``, from `chosen_on_validation`); where no
    record has a validation value (older results), every (features, probe)."""
    frame = chosen.copy()
    if frame.empty:
        frame = pd.DataFrame(records)
        frame["label"] = frame["features"] + " / " + frame["probe"]
        return frame
    # The frozen rows first, then the fine-tuned, each family in the records' order.
    frame["label"] = frame["family"] + ", " + frame["mode"]
    return frame.sort_values("mode", key=lambda mode: mode == "finetuned", kind="stable")


def plot_chosen(chart_rows: pd.DataFrame, path: Path, metric: str) -> None:
    """One panel per dataset of ``metric``, one row per label of ``chart_rows`` (see
    `_chart_rows`): its test values, each seed a dot, the mean with +- one standard
    deviation."""
    # pyplot only here, after choosing the file-only backend: no display needed.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = chart_rows[chart_rows["metric"] == metric]
    datasets = list(dict.fromkeys(frame["dataset"]))
    labels = list(dict.fromkeys(frame["label"]))
    columns = min(3, len(datasets))
    rows = -(-len(datasets) // columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(3.2 * columns + 2.5, 0.28 * len(labels) * rows + 1.0),
        sharey=True,
        squeeze=False,
    )
    colors = plt.get_cmap("tab10")
    for ax, dataset in zip(axes.flat, datasets):
        part = frame[frame["dataset"] == dataset]
        for y, label in enumerate(labels):
            values = part.loc[part["label"] == label, "value"].to_numpy()
            if len(values) == 0:
                continue
            color = colors(y % 10)
            ax.scatter(values, np.full(len(values), y), s=8, color=color, alpha=0.4)
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            ax.errorbar(values.mean(), y, xerr=std, fmt="o", color=color, ms=4, capsize=2)
        ax.set_title(dataset, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(datasets) :]:
        ax.axis("off")
    axes[0, 0].set_yticks(range(len(labels)), labels)
    axes[0, 0].invert_yaxis()
    better = "higher" if metric == "roc_auc" else "lower"
    fig.supxlabel(f"test {metric} ({better} is better)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
