"""Calibrated uncertainty for a fine-tuned model, fitted on the validation part.

Regression: split conformal prediction. The nonconformity score of a validation molecule is
its absolute error |y - mean| ("absolute"), or, for an ensemble, that error divided by the
spread (std over members) plus the median spread ("scaled": the added median keeps a molecule
on which the members happen to agree from getting a zero-width interval). The interval at
coverage c is mean ± the ceil((n + 1) c)-th smallest of the n validation scores (times the
molecule's spread + median, when scaled): it covers a new molecule's value with probability at
least c when the molecule is exchangeable with the validation ones (scaffold splits make test
molecules less alike, so the benchmark measures the coverage on test). Of the two scores, the
one that gives the narrower mean interval is kept, per task, judged across the halves of the
validation part. The validation
scores are stored, so `predict` can draw intervals at any coverage.

Classification: temperature scaling (one temperature per task, fitted by the negative
log-likelihood of the validation labels), applied to the members' mean logit. One parameter per
task, not Platt's two: validation parts of small sets hold a few dozen positives.

Both are written by hand in a few lines: MAPIE and crepes wrap scikit-learn estimators and
refit them, where these models are fitted once and only their validation outputs are needed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar

from ..errors import InputError

RELIABILITY_BINS = 10


@dataclass
class TaskCalibration:
    """One task's calibration: ``temperature`` (classification), or the conformal scores
    (regression) with how they were scaled."""

    temperature: float = 1.0
    kind: str = "absolute"  # regression: absolute or scaled
    offset: float = 0.0  # scaled: added to the spread (the validation median spread)
    scores: list[float] = field(default_factory=list)  # regression: sorted validation scores


@dataclass
class Calibration:
    task_type: str
    coverage: float  # the default coverage of intervals
    tasks: list[TaskCalibration]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        return cls(
            data["task_type"], data["coverage"], [TaskCalibration(**t) for t in data["tasks"]]
        )

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from (..., n, tasks) logits."""
        temperatures = np.array([t.temperature for t in self.tasks])
        return sigmoid(logits / temperatures)

    def intervals(
        self, mean: np.ndarray, spread: np.ndarray | None, coverage: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(low, high), each (n, tasks), at ``coverage`` (default: the one fitted for)."""
        if self.task_type != "regression":
            raise InputError("prediction intervals are for regression models; this one classifies")
        coverage = self.coverage if coverage is None else coverage
        half = np.empty_like(mean)
        for t, task in enumerate(self.tasks):
            q = conformal_quantile(np.asarray(task.scores), coverage)
            scale = (spread[:, t] + task.offset) if task.kind == "scaled" else 1.0
            half[:, t] = q * scale
        return mean - half, mean + half


def conformal_quantile(sorted_scores: np.ndarray, coverage: float) -> float:
    """The ceil((n + 1) coverage)-th smallest score (the largest when that exceeds n: too few
    validation molecules for the coverage asked)."""
    n = len(sorted_scores)
    if n == 0:
        return math.inf
    k = min(math.ceil((n + 1) * coverage), n)
    return float(sorted_scores[k - 1])


def fit_calibration(
    task_type: str,
    y: np.ndarray,
    members: np.ndarray,
    coverage: float,
) -> Calibration:
    """Calibration from validation targets y (n, tasks; NaN: unlabelled) and the members'
    outputs (members, n, tasks): values for regression, logits for classification."""
    tasks = []
    for t in range(y.shape[1]):
        labelled = ~np.isnan(y[:, t])
        target, outputs = y[labelled, t], members[:, labelled, t]
        if task_type == "classification":
            tasks.append(TaskCalibration(temperature=fit_temperature(outputs.mean(0), target)))
        else:
            tasks.append(_fit_conformal(target, outputs, coverage))
    return Calibration(task_type, coverage, tasks)


def _fit_conformal(target: np.ndarray, outputs: np.ndarray, coverage: float) -> TaskCalibration:
    errors = np.abs(target - outputs.mean(0))
    absolute = TaskCalibration(kind="absolute", scores=sorted(errors.tolist()))
    if len(outputs) < 2 or len(target) < 4:
        return absolute
    spread = outputs.std(0, ddof=1)
    offset = float(np.median(spread))
    if not offset > 0:
        return absolute
    scale = spread + offset
    scaled = TaskCalibration(kind="scaled", offset=offset, scores=sorted((errors / scale).tolist()))
    # Which kind is narrower is judged across the two halves of the validation part (each
    # half's quantile applied to the other half's molecules), not on the molecules that set
    # the quantile: picking the narrower of two on the same molecules would favour whichever
    # happened to fit them best and cover new molecules less often than asked. What is left
    # of that costs about 0.004 of coverage where the spread tells nothing (simulated).
    halves = np.array_split(np.random.default_rng(0).permutation(len(target)), 2)
    widths = {"absolute": 0.0, "scaled": 0.0}
    for fit_rows, use_rows in (halves, halves[::-1]):
        q_absolute = conformal_quantile(np.sort(errors[fit_rows]), coverage)
        q_scaled = conformal_quantile(np.sort(errors[fit_rows] / scale[fit_rows]), coverage)
        widths["absolute"] += q_absolute * len(use_rows)
        widths["scaled"] += q_scaled * scale[use_rows].sum()
    return scaled if widths["scaled"] < widths["absolute"] else absolute


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimizing the negative log-likelihood of sigmoid(logits / T); 1 when
    the labels hold one class (nothing to fit)."""
    if len(np.unique(labels)) < 2:
        return 1.0

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        # log(1 + e^z) - y z, computed stably
        return float(np.mean(np.logaddexp(0, z) - labels * z))

    best = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(best.x))


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS
) -> float:
    """Mean |observed frequency - mean probability| over equal-width probability bins,
    weighted by the bin's share of the predictions (labelled entries of every task pooled)."""
    p, y = _labelled(probabilities, labels)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.sum() * abs(y[in_bin].mean() - p[in_bin].mean())
    return float(total / max(len(p), 1))


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin: the mean probability, the observed frequency and the
    count."""
    p, y = _labelled(probabilities, labels)
    which = np.minimum((p * bins).astype(int), bins - 1)
    kept = [b for b in range(bins) if (which == b).any()]
    return (
        np.array([p[which == b].mean() for b in kept]),
        np.array([y[which == b].mean() for b in kept]),
        np.array([(which == b).sum() for b in kept]),
    )


def _labelled(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labelled = ~np.isnan(labels)
    return np.asarray(probabilities)[labelled], np.asarray(labels)[labelled]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # no overflow warning for large |z|
