"""The metrics of the benchmarks and of fine-tuning."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def metric_name(task_type: str) -> str:
    """The metric `score` computes for a task type: ROC-AUC for classification, else RMSE."""
    return "roc_auc" if task_type == "classification" else "rmse"


def score(task_type: str, y, w, prediction) -> float:
    """Mean ROC-AUC over tasks with both classes among the labelled test rows, or RMSE."""
    y, w, prediction = (np.asarray(a).reshape(len(y), -1) for a in (y, w, prediction))
    if task_type == "regression":
        mask = w > 0
        return float(np.sqrt(np.mean((prediction[mask] - y[mask]) ** 2)))
    aucs = roc_auc_per_task(y, w, prediction)
    aucs = aucs[~np.isnan(aucs)]
    return float(np.mean(aucs)) if aucs.size else float("nan")


def roc_auc_per_task(y, w, prediction) -> np.ndarray:
    """ROC-AUC of each task (column) over its labelled rows (``w`` > 0); NaN for a task
    without both classes there."""
    y, w, prediction = (np.asarray(a).reshape(len(y), -1) for a in (y, w, prediction))
    aucs = np.full(y.shape[1], np.nan)
    for t in range(y.shape[1]):
        mask = w[:, t] > 0
        if len(np.unique(y[mask, t])) == 2:
            aucs[t] = roc_auc(y[mask, t], prediction[mask, t])
    return aucs


def roc_auc(labels, scores) -> float:
    """ROC-AUC of two-class ``labels`` (the larger one positive): the chance that a positive
    scores above a negative, ties counting half (the Mann-Whitney statistic), which is the area
    scikit-learn's ``roc_auc_score`` computes. Without its checks it takes 1/15 of the time,
    which matters where fine-tuning scores ToxCast's 617 tasks after every epoch."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    positive = labels == labels.max()
    n_positive = int(positive.sum())
    n_negative = len(labels) - n_positive
    if n_negative == 0:  # as roc_auc_score: the area is undefined
        raise ValueError("ROC-AUC needs labels of both classes; these hold one")
    rank_sum = rankdata(scores)[positive].sum()  # tied scores share their mean rank
    return float((rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))
