"""Feature sets compared the way the suite's goals are stated: each family's read-out and probe
chosen on validation, then paired bootstrap intervals over the seeded splits.

A family is a set of features without its read-out: ``exlm[mean]``, ``exlm[cls]`` and
``exlm[mean+cls]`` are the family ``exlm``; ``exlm[cls]&ecfp`` is ``exlm&ecfp``. For every
dataset, family and mode (``frozen``: the probes; ``finetuned``; ``scratch``: chemprop trained
from scratch), the (features, probe) whose
validation metric averaged over the seeds is best is chosen: the same rule for every family,
and the test part is read only for the choice made.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

BOOTSTRAP_SAMPLES = 10_000
VALIDATION_NOTE = (
    "On validation: the same difference on the validation parts the choices were made on; "
    "a test difference well below it is the optimism of choosing."
)
MODES = {"finetune": "finetuned", "scratch": "scratch"}  # every other probe: frozen


def family(features: str) -> str:
    """``exlm[cls]&ecfp`` -> ``exlm&ecfp``; ``mlm[mean]`` -> ``mlm``."""
    return re.sub(r"\[[^\[\]]*\]", "", features)


def chosen_on_validation(records: list[dict]) -> pd.DataFrame:
    """One row per (dataset, family, mode, seed): the test value of the (features, probe) that
    is best on validation averaged over the seeds, with the choice in columns ``features`` and
    ``probe``. Records without a validation value (older runs) are left out."""
    frame = pd.DataFrame([r for r in records if _finite(r.get("valid_value"))])
    if frame.empty:
        return frame
    frame["family"] = frame["features"].map(family)
    frame["mode"] = frame["probe"].map(MODES).fillna("frozen")
    rows = []
    for (_, fam, mode), group in frame.groupby(["dataset", "family", "mode"], sort=False):
        sign = 1.0 if group["metric"].iloc[0] == "roc_auc" else -1.0
        seeds = set(group["seed"])
        candidates = group.groupby(["features", "probe"], sort=False)
        # Only candidates run on every seed compete, so that each is averaged over the same splits.
        means = {
            key: sign * part["valid_value"].mean()
            for key, part in candidates
            if set(part["seed"]) == seeds
        }
        features, probe = max(means, key=means.get)
        rows.append(candidates.get_group((features, probe)).assign(family=fam, mode=mode))
    return pd.concat(rows, ignore_index=True)


def paired_bootstrap(
    chosen: pd.DataFrame,
    mode: str,
    a: str,
    b: str,
    datasets: list[str],
    seed: int = 0,
    mode_b: str | None = None,
) -> dict | None:
    """Family ``a`` minus family ``b`` (in ``mode``; ``b`` in ``mode_b`` when given, e.g. a
    fine-tuned model against frozen descriptors) on the mean over ``datasets`` and seeds: the
    difference and a 95% interval from resampling each dataset's seeds with replacement, the
    same draws for both (paired). For RMSE the sign is flipped, so that a positive difference
    always means ``a`` is better. None when a dataset lacks either family or their seeds
    differ. A dataset with a single split has no spread to resample, so then there is no
    interval (NaN bounds, not excluding zero) rather than a width of zero."""
    differences = _seed_differences(chosen, mode, a, b, datasets, mode_b)
    if differences is None:
        return None
    difference = float(np.mean([d.mean() for d in differences]))
    if min(len(d) for d in differences) < 2:
        return {"difference": difference, "low": np.nan, "high": np.nan, "excludes_zero": False}
    rng = np.random.default_rng(seed)
    samples = np.mean(
        [d[rng.integers(0, len(d), (BOOTSTRAP_SAMPLES, len(d)))].mean(1) for d in differences],
        axis=0,
    )
    low, high = np.percentile(samples, [2.5, 97.5])
    return {
        "difference": difference,
        "low": float(low),
        "high": float(high),
        "excludes_zero": bool(low > 0 or high < 0),
    }


def _seed_differences(chosen, mode, a, b, datasets, mode_b=None, column="value"):
    """Per dataset, ``a`` minus ``b`` in ``column`` by seed, positive when ``a`` is better;
    None when a dataset lacks either family or their seeds differ."""
    differences = []
    for dataset in datasets:
        paired = _paired_values(chosen, dataset, mode, a, b, mode_b, column)
        if paired is None:
            return None
        values_a, values_b, metric = paired
        sign = 1.0 if metric == "roc_auc" else -1.0
        differences.append(sign * (values_a - values_b.loc[values_a.index]).to_numpy())
    return differences


def datasets_with_both(
    chosen: pd.DataFrame, mode: str, a: str, b: str, datasets: list[str], mode_b: str | None = None
) -> list[str]:
    """The ``datasets`` on which families ``a`` and ``b`` have both run on the same seeds (a
    suite under way has some sets done, not all)."""
    return [d for d in datasets if _paired_values(chosen, d, mode, a, b, mode_b) is not None]


def _paired_values(chosen, dataset, mode, a, b, mode_b, column="value"):
    """One dataset's test (or other ``column``) values of ``a`` and of ``b`` by seed, and its
    metric; None when either family lacks the dataset or their seeds differ."""
    cells = chosen[chosen["dataset"] == dataset]
    values_a = _seed_values(cells, a, mode, column)
    values_b = _seed_values(cells, b, mode_b or mode, column)
    if values_a.empty or values_b.empty or set(values_a.index) != set(values_b.index):
        return None
    return values_a, values_b, cells["metric"].iloc[0]


def _seed_values(cells, family_name: str, mode: str, column: str = "value") -> pd.Series:
    """One dataset's test (or other ``column``) values of a family in a mode, by seed."""
    rows = cells[(cells["family"] == family_name) & (cells["mode"] == mode)]
    return rows.set_index("seed")[column]


def comparison_table(chosen: pd.DataFrame) -> str:
    """Markdown from `chosen_on_validation`'s frame: the chosen (features, probe) and its test
    mean +- std per dataset, family and mode; then, per mode, the pairs of `family_pairs`, on
    the mean ROC-AUC over the classification sets (those where both have run) and on each
    regression set."""
    if chosen.empty:
        return ""
    lines = [
        "### Each family's read-out and probe chosen on validation",
        "",
        "| dataset | mode | family | chosen | test mean ± std |",
        "|---|---|---|---|---|",
    ]
    for (dataset, mode, fam), part in chosen.groupby(["dataset", "mode", "family"], sort=False):
        choice = f"{part['features'].iloc[0]} / {part['probe'].iloc[0]}"
        spread = f" ± {part['value'].std(ddof=1):.3f}" if len(part) > 1 else " (one split)"
        lines.append(
            f"| {dataset} | {mode} | {fam} | {choice} | {part['value'].mean():.3f}{spread} |"
        )
    pairs = family_pairs(list(dict.fromkeys(chosen["family"])))
    lines += [
        "",
        "### Paired bootstrap over the seeded splits",
        "",
        "Difference: the first family's score minus the second's, signed so that positive means "
        "the first is better (RMSE: lower). 95% interval from resampling each dataset's seeds. "
        + VALIDATION_NOTE,
        "",
        "| mode | families | on | difference | 95% interval | excludes 0 | on validation |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in dict.fromkeys(chosen["mode"]):
        for a, b in pairs:
            for label, datasets in _comparisons(chosen):
                cells = _bootstrap_cells(chosen, mode, a, b, label, datasets)
                if cells is not None:
                    lines.append(f"| {mode} | {a} vs {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def family_pairs(families: list[str]) -> list[tuple[str, str]]:
    """The pairs the report compares: the first family against every other one; each hybrid
    against what it joins, where that ran too (what joining adds: ``ecfp-count&rdkit2d`` vs
    ``rdkit2d``, ``exlm&ecfp-count&rdkit2d`` vs ``ecfp-count&rdkit2d``); ECFP counts against
    bits."""
    reference = families[0]
    pairs = [(reference, other) for other in families[1:]]
    for hybrid in families:
        parts = hybrid.split("&")
        for i in range(len(parts) if len(parts) > 1 else 0):
            rest = "&".join(parts[:i] + parts[i + 1 :])  # the hybrid without one of its parts
            if rest in families and {hybrid, rest} not in [set(pair) for pair in pairs]:
                pairs.append((hybrid, rest))
    if "ecfp-count" in families and "ecfp" in families and "ecfp-count" != reference:
        pairs.append(("ecfp-count", "ecfp"))
    return pairs


def _comparisons(chosen: pd.DataFrame, datasets=None) -> list[tuple[str, list[str]]]:
    """What each family pair is compared on: the mean ROC-AUC over the classification sets,
    then each regression set's RMSE (of ``datasets`` only, when given)."""

    def of_metric(metric: str) -> list[str]:
        names = dict.fromkeys(chosen.loc[chosen["metric"] == metric, "dataset"])
        return [d for d in names if datasets is None or d in datasets]

    regression = [(f"{d} RMSE", [d]) for d in of_metric("rmse")]
    return [("mean ROC-AUC", of_metric("roc_auc")), *regression]


def _bootstrap_cells(frame, mode, a, b, label, datasets, mode_b=None) -> list[str] | None:
    """A table row's cells for family ``a`` minus ``b`` on ``datasets`` (those where both
    have run): what, the difference, its 95% interval, whether it excludes 0, and the
    difference on validation (see VALIDATION_NOTE); None when no dataset has both."""
    present = datasets_with_both(frame, mode, a, b, datasets, mode_b)
    if not present:
        return None
    result = paired_bootstrap(frame, mode, a, b, present, mode_b=mode_b)
    if len(present) < len(datasets):  # named, so that a partial mean is not misread
        label += f" ({len(present)} of {len(datasets)} sets: {', '.join(present)})"
    if np.isnan(result["low"]):
        interval, excludes = "none (one split)", ""
    else:
        interval = f"[{result['low']:+.3f}, {result['high']:+.3f}]"
        excludes = "yes" if result["excludes_zero"] else "no"
    validation = _seed_differences(frame, mode, a, b, present, mode_b, "valid_value")
    on_validation = f"{np.mean([d.mean() for d in validation]):+.3f}"
    return [label, f"{result['difference']:+.3f}", interval, excludes, on_validation]


# The features and models a chemist would use instead of ours: each dataset's strongest of
# them, chosen on validation, is the baseline the report leads with.
BASELINES = ("ecfp", "ecfp-count", "rdkit2d", "ecfp&rdkit2d", "ecfp-count&rdkit2d", "chemprop")
STRONGEST = "strongest baseline"


def with_strongest_baseline(chosen: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """``chosen`` plus, per dataset, the rows of its strongest baseline (best validation mean
    over the seeds among BASELINES run on the most seeds) as family ``strongest baseline`` in
    mode ``baseline``; and which baseline that is, per dataset."""
    added, picks = [], {}
    for dataset, cells in chosen.groupby("dataset", sort=False):
        base = cells[cells["family"].isin(BASELINES)]
        if base.empty:
            continue
        sign = 1.0 if base["metric"].iloc[0] == "roc_auc" else -1.0
        groups = base.groupby(["family", "mode"], sort=False)
        most = max(len(part) for _, part in groups)
        means = {
            key: sign * part["valid_value"].mean() for key, part in groups if len(part) == most
        }
        fam, mode = max(means, key=means.get)
        picked = groups.get_group((fam, mode))
        added.append(picked.assign(family=STRONGEST, mode="baseline"))
        picks[dataset] = f"{fam} / {picked['probe'].iloc[0]}"
    if not added:
        return chosen, picks
    return pd.concat([chosen, *added], ignore_index=True), picks


def baseline_table(chosen: pd.DataFrame) -> str:
    """Markdown: each dataset's strongest baseline (chosen on validation) with its test mean,
    then every other family (frozen and fine-tuned) against it: paired differences with 95%
    bootstrap intervals on the mean ROC-AUC of the classification sets and each regression
    set."""
    if chosen.empty:
        return ""
    frame, picks = with_strongest_baseline(chosen)
    if not picks:
        return ""
    lines = [
        "### Against the strongest baseline",
        "",
        "Per dataset, the strongest of " + ", ".join(BASELINES) + " on validation (mean over "
        "the seeds; its own read-out and probe chosen on validation too):",
        "",
        "| dataset | strongest baseline | test mean ± std |",
        "|---|---|---|",
    ]
    for dataset, pick in picks.items():
        values = frame[(frame["dataset"] == dataset) & (frame["family"] == STRONGEST)]["value"]
        spread = f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""
        lines.append(f"| {dataset} | {pick} | {values.mean():.3f}{spread} |")
    lines += [
        "",
        "Difference: the family's score minus the strongest baseline's, positive when the "
        "family is better (RMSE: lower); 95% interval from resampling each dataset's seeds. "
        + VALIDATION_NOTE,
        "",
        "| family | mode | on | difference | 95% interval | excludes 0 | on validation |",
        "|---|---|---|---|---|---|---|",
    ]
    families = [
        (fam, mode)
        for fam, mode in dict.fromkeys(zip(chosen["family"], chosen["mode"]))
        if fam not in BASELINES
    ]
    for fam, mode in families:
        for label, datasets in _comparisons(chosen, picks):
            cells = _bootstrap_cells(frame, mode, fam, STRONGEST, label, datasets, "baseline")
            if cells is not None:
                lines.append(f"| {fam} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def headline_table(chosen: pd.DataFrame) -> str:
    """Markdown: one row per family and mode (each read-out and probe chosen on validation),
    its test mean ROC-AUC over the classification sets and its test RMSE on each regression
    set, and, where the strongest baseline is known, its difference from it on the
    classification mean with the 95% interval. A family that has not run every set yet shows
    the sets it has."""
    if chosen.empty:
        return ""
    frame, picks = with_strongest_baseline(chosen)
    (_, classification), *regression = _comparisons(chosen)
    regression_sets = [datasets[0] for _, datasets in regression]
    header = f"mean ROC-AUC, {_sets(len(classification))}" if classification else None
    columns = [c for c in [header] if c] + [f"{d} RMSE" for d in regression_sets]
    against = bool(picks) and bool(classification)
    if against:
        columns.append("minus the strongest baseline")
    lines = [
        "### Summary",
        "",
        "Test, mean over the splits; each family's read-out and probe chosen on validation.",
        "",
        "| family | mode | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for (fam, mode), rows in frame.groupby(["family", "mode"], sort=False):
        cells = []
        if classification:
            means = rows[rows["dataset"].isin(classification)].groupby("dataset")["value"].mean()
            cells.append(
                ""
                if means.empty
                else f"{means.mean():.3f}"
                + ("" if len(means) == len(classification) else f" ({len(means)} of them)")
            )
        for dataset in regression_sets:
            values = rows[rows["dataset"] == dataset]["value"]
            cells.append(f"{values.mean():.3f}" if len(values) else "")
        if against:
            found = None
            if fam != STRONGEST and fam not in BASELINES:
                found = _bootstrap_cells(
                    frame, mode, fam, STRONGEST, "", classification, "baseline"
                )
            cells.append("" if found is None else f"{found[1]} {found[2]}{found[0]}")
        lines.append(f"| {fam} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _sets(count: int) -> str:
    return f"{count} set" + ("s" if count != 1 else "")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and np.isfinite(value)
