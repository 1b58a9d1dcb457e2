"""The metrics of the benchmarks and of fine-tuning."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def metric_name(task_type: str) -> str:
    """The metric `score` computes for a task type: ROC-AUC for classification, else RMSE."""
    return "roc_auc" if task_type == "classification" else "rmse"


def score(task_type: str, y, w, prediction) -> float:
    """Mean ROC-AUC over tasks with both classes among the labelled test rows, or RMSE."""
    y, w, prediction = (np.asarray(a).reshape(len(y), -1) for a in (y, w, prediction))
    if task_type == "regression":
        mask = w > 0
        return float(np.sqrt(np.mean((prediction[mask] - y[mask]) ** 2)))
    aucs = []
    for t in range(y.shape[1]):
        mask = w[:, t] > 0
        if len(np.unique(y[mask, t])) == 2:
            aucs.append(roc_auc_score(y[mask, t], prediction[mask, t]))
    return float(np.mean(aucs)) if aucs else float("nan")
