"""How far a fine-tuned model's uncertainty can be trusted, on labelled molecules it did not
train on: interval coverage and width, whether the spread ranks the errors, calibration error
before and after scaling, the error in and out of the applicability domain; and the
reliability plot `finetune` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from ..metrics import score
from ..outputs import atomic_path
from .calibration import expected_calibration_error, reliability_bins
from .ensemble import Predictions


def evaluate_uncertainty(task_type: str, y: np.ndarray, predictions: Predictions) -> dict:
    """Measures of ``predictions`` against targets y (n, tasks; NaN: unlabelled)."""
    labelled = ~np.isnan(y)
    w = labelled.astype(float)
    y0 = np.nan_to_num(y)
    report: dict = {"molecules": int(labelled.any(1).sum())}
    if task_type == "regression":
        errors = np.abs(predictions.value - y0)[labelled]
        if predictions.low is not None:
            inside = (predictions.low <= y0) & (y0 <= predictions.high)
            report["coverage"] = float(inside[labelled].mean())
            report["mean_width"] = float((predictions.high - predictions.low)[labelled].mean())
        if predictions.spread is not None and len(errors) > 2:
            report["spread_error_spearman"] = float(
                spearmanr(predictions.spread[labelled], errors).statistic
            )
    else:
        if predictions.uncalibrated is not None:
            report["ece_before"] = expected_calibration_error(predictions.uncalibrated, y)
        report["ece_after"] = expected_calibration_error(predictions.value, y)
    if predictions.in_domain is not None:
        for name, rows in (
            ("in_domain", predictions.in_domain),
            ("out_of_domain", ~predictions.in_domain),
        ):
            report[f"{name}_molecules"] = int(rows.sum())
            if task_type == "regression" and predictions.low is not None:
                held = inside[rows][labelled[rows]]
                report[f"{name}_coverage"] = float(held.mean()) if held.size else None
            value = (
                score(task_type, y0[rows], w[rows], predictions.value[rows])
                if rows.any()
                else np.nan
            )
            # An error either way: RMSE, or 1 - ROC-AUC.
            error = value if task_type == "regression" else 1 - value
            report[f"{name}_error"] = None if np.isnan(error) else float(error)
    return report


def plot_reliability(
    task_type: str, y: np.ndarray, predictions: Predictions, path: str | Path, title: str
) -> Path:
    """Predicted against observed: for classification the mean probability against the
    frequency of positives per probability bin, before and after calibration; for regression
    the interval's half-width against the observed error that the same share of molecules stay
    within, per fifth of the molecules by predicted width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.6, 4.2))
    if task_type == "classification":
        curves = [("calibrated", predictions.value)]
        if predictions.uncalibrated is not None:
            curves.insert(0, ("before calibration", predictions.uncalibrated))
        for label, p in curves:
            mean_p, observed, _ = reliability_bins(p, y)
            ece = expected_calibration_error(p, y)
            axes.plot(mean_p, observed, "o-", label=f"{label} (ECE {ece:.3f})")
        axes.set_xlabel("predicted probability")
        axes.set_ylabel("observed frequency of 1")
        axes.plot([0, 1], [0, 1], ":", color="grey")
    elif predictions.low is not None:
        labelled = ~np.isnan(y)
        half = ((predictions.high - predictions.low) / 2)[labelled]
        errors = np.abs(predictions.value - np.nan_to_num(y))[labelled]
        order = np.argsort(half)
        share = float((errors <= half).mean())
        xs, ys = [], []
        for part in np.array_split(order, 5):
            if len(part):
                xs.append(half[part].mean())
                ys.append(np.quantile(errors[part], share))
        axes.plot(xs, ys, "o-", label=f"observed ({share:.0%} of molecules inside)")
        top = max(max(xs), max(ys)) * 1.1
        axes.plot([0, top], [0, top], ":", color="grey")
        axes.set_xlabel("predicted interval half-width")
        axes.set_ylabel("observed absolute error at the same share")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path
