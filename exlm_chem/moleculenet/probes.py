"""Probes on frozen features: a tuned linear model, a random forest, an MLP, DeepChem's
multitask network; one per task on its labelled rows."""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import deepchem as dc
import numpy as np
import torch
from scipy.linalg import LinAlgWarning
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..finetuning.train import is_better
from ..fingerprints import block_weights
from ..metrics import metric_name, score
from ..parallel import default_workers

PROBES = ("logreg", "rf", "mlp", "deepchem")
RF_TREES = 500  # as published benchmarks of fingerprints + descriptors run it
PATH_PATIENCE = 3  # the linear probe's grid values past the best that do not beat it
# What a record of each probe was made with: a resumed suite recomputes records made otherwise.
PROBE_SETTINGS = {"rf": {"trees": RF_TREES}, "logreg": {"path_patience": PATH_PATIENCE}}


def _task_rows(dataset, X, t):
    """The rows of ``X`` (``dataset``'s features, scaled) labelled for task ``t``, and labels."""
    mask = dataset.w[:, t] > 0
    return X[mask], dataset.y[mask, t]


def probe_predictions(
    probe: str, task_type: str, train, valid, test, seed: int, blocks=None, jobs: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one probe per task on the labelled training rows; the predictions on the validation
    and test parts, (n_valid, n_tasks) and (n_test, n_tasks).

    blocks: the widths of the blocks of a hybrid's columns; after standardization each block
    is weighted by 1 / sqrt(its width), so that 2,048 fingerprint bits do not outweigh 256
    ExLM numbers under the L2 penalty (see `exlm_chem.fingerprints`).

    The linear probe also fits the features as they are, and keeps, per task, whichever input
    scores better on validation: the same rule for every feature set. Standardizing helps
    numbers in different units (descriptors) but lifts a fingerprint bit set in one molecule
    of a thousand to about 30, so that the rarest substructures dominate the penalty.

    jobs: tasks fitted at a time by the linear probe (None: one per core, as
    `exlm_chem.parallel.default_workers` counts them), each on one BLAS thread, so the
    predictions do not depend on it; the random forest spreads its trees over the cores
    itself."""
    scaler = _BlockScaler(blocks).fit(train.X)
    if probe == "deepchem":
        return _deepchem_predictions(task_type, train, valid, test, seed, scaler)
    # Each input is prepared once: each task takes its labelled rows of the same arrays.
    inputs = [[scaler.transform(d.X) for d in (train, valid, test)]]
    if probe == "logreg":
        inputs.append([np.asarray(d.X, dtype=np.float64) for d in (train, valid, test)])

    def fit_task(t: int) -> tuple[np.ndarray, np.ndarray]:
        return _task_predictions(probe, task_type, train, valid, inputs, t, seed)

    tasks = range(train.y.shape[1])
    jobs = 1 if probe != "logreg" else jobs or default_workers()
    with quiet_linear_fits():  # here, not per fit: the filters are global, not per thread
        if jobs > 1 and len(tasks) > 1:
            # Threads: no start-up, nothing to pickle; the GIL holds the gain to 1.2x on 2
            # cores (`benchmarks/speed/bench_probe_tasks.py`; worker processes 1.5x once started).
            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(jobs) as pool:
                columns = list(pool.map(fit_task, tasks))
        else:
            columns = [fit_task(t) for t in tasks]
    return np.stack([c[0] for c in columns], 1), np.stack([c[1] for c in columns], 1)


@contextlib.contextmanager
def quiet_linear_fits():
    """Silence what the linear path's weakest regularizations warn of. Ridge: an
    ill-conditioned system (collinear features: concatenated layers, descriptors) or a singular
    one (more fingerprint bits than molecules, some molecules alike); lbfgs: stopping at
    max_iter on unscaled descriptors. Each such fit is scored on validation like every other,
    so the warnings would only fill the suite's log."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        warnings.filterwarnings("ignore", "Singular matrix in solving dual problem")
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _task_predictions(probe, task_type, train, valid, inputs, t, seed):
    """Task ``t``'s validation and test predictions from the probe fitted on its labelled
    training rows (of whichever input scores better on validation)."""
    classification = task_type == "classification"
    y_train = train.y[train.w[:, t] > 0, t]
    if classification and len(np.unique(y_train)) < 2:  # one class only: its rate
        rate = y_train.mean() if len(y_train) else 0.0
        return np.full(len(valid.X), rate), np.full(len(inputs[0][2]), rate)
    labelled = valid.w[:, t] > 0
    best = None  # (validation value, model, validation prediction, test input)
    for train_X, valid_X, test_X in inputs:
        X_train, y_train = _task_rows(train, train_X, t)
        X_valid, y_valid = _task_rows(valid, valid_X, t)
        model = _fit_probe(probe, task_type, X_train, y_train, X_valid, y_valid, seed)
        valid_prediction = _predict(model, valid_X, classification)
        value = score(task_type, y_valid, np.ones_like(y_valid), valid_prediction[labelled])
        if best is None or is_better(value, best[0], metric_name(task_type)):
            best = (value, model, valid_prediction, test_X)
    _, model, valid_prediction, test_X = best
    return valid_prediction, _predict(model, test_X, classification)


def _predict(model, X, classification: bool) -> np.ndarray:
    return model.predict_proba(X)[:, 1] if classification else model.predict(X)


class _BlockScaler:
    """StandardScaler, then each block of a hybrid weighted by 1 / sqrt(its width)."""

    def __init__(self, blocks=None):
        self.scaler = StandardScaler()
        self.weights = block_weights(blocks) if blocks is not None and len(blocks) > 1 else 1.0

    def fit(self, X) -> _BlockScaler:
        self.scaler.fit(X)
        return self

    def transform(self, X) -> np.ndarray:
        return self.scaler.transform(X) * self.weights


REGULARIZATION = (
    1e-4,
    1e-3,
    0.01,
    0.1,
    1.0,
    10.0,
    100.0,
)  # logistic regression's C; ridge's alpha is 1 / C
REGULARIZATION_LIMITS = (
    1e-7,
    1e5,
)  # how far the grid is extended while the best C sits on its edge


def _fit_linear_probe(classification, X_train, y_train, X_valid, y_valid, blas_threads=1):
    """Logistic regression or ridge with the regularization that scores best on validation.

    blas_threads: BLAS threads for the fits (None: the library's default). One is the
    default because the products here are small (thousands of rows by hundreds of columns):
    threads spend more time waiting for each other than multiplying (on a busy 2-core
    machine: 3.6x slower in `benchmarks/speed/bench_linear_probe.py`, about 20x on Tox21)."""
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        path = LinearPath(classification, X_train, y_train, X_valid, y_valid)
        return path.models[choose_regularization(path.value)]


def choose_regularization(value, patience: int | None = PATH_PATIENCE) -> float:
    """The C (ridge: alpha = 1 / C) with the best validation ``value(C)`` (higher is better).

    The grid is walked from the strongest regularization up and left once ``patience`` values
    past the best have not beaten it (None: the whole grid): the weakest regularizations are
    the slowest fits, and past a peak validation rarely rises again (at the default of 3, on
    eight MoleculeNet sets every validation score moved by under 0.3 of the spread between
    splits: `benchmarks/results/linear_path_stop/`). The grid is then extended by factors of 10
    past whichever end holds the best value, so that the choice never rests on the grid's
    edge (a strong baseline is not understated)."""
    tried: dict[float, float] = {}
    for c in REGULARIZATION:
        tried[c] = value(c)
        best = max(tried, key=tried.get)
        if patience is not None and sum(other > best for other in tried) >= patience:
            break
    while True:
        best = max(tried, key=tried.get)
        if best == min(tried) and best / 10 >= REGULARIZATION_LIMITS[0]:
            tried[best / 10] = value(best / 10)
        elif best == max(tried) and best * 10 <= REGULARIZATION_LIMITS[1]:
            tried[best * 10] = value(best * 10)
        else:
            return best


class LinearPath:
    """Logistic regression (ridge for regression) fitted at the regularizations asked for,
    each fit starting from the previous solution (a path costs little more than one fit);
    ``value(C)`` is the validation ROC-AUC (minus the RMSE), and ``models`` and ``seconds``
    keep each fit."""

    def __init__(self, classification, X_train, y_train, X_valid, y_valid):
        self.classification = classification
        self.data = (X_train, y_train, X_valid, y_valid)
        self.model = (
            LogisticRegression(max_iter=2000, warm_start=True) if classification else Ridge()
        )
        self.values: dict[float, float] = {}
        self.models: dict[float, object] = {}
        self.seconds: dict[float, float] = {}

    def value(self, c: float) -> float:
        if c in self.values:
            return self.values[c]
        X_train, y_train, X_valid, y_valid = self.data
        start = time.perf_counter()
        self.model.set_params(**({"C": c} if self.classification else {"alpha": 1 / c}))
        self.model.fit(X_train, y_train)
        if not self.classification:
            predicted = self.model.predict(X_valid)
            value = -score("regression", y_valid, np.ones_like(y_valid), predicted)
        elif len(np.unique(y_valid)) == 2:
            predicted = self.model.predict_proba(X_valid)[:, 1]
            value = score("classification", y_valid, np.ones_like(y_valid), predicted)
        else:
            value = -abs(np.log10(c) + 1)  # no validation signal: prefer C = 0.1
        self.seconds[c] = time.perf_counter() - start
        self.values[c], self.models[c] = value, copy.deepcopy(self.model)
        return value


def _fit_probe(probe, task_type, X_train, y_train, X_valid, y_valid, seed):
    classification = task_type == "classification"
    if probe == "logreg":
        return _fit_linear_probe(classification, X_train, y_train, X_valid, y_valid)
    if probe == "rf":
        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(n_estimators=RF_TREES, n_jobs=-1, random_state=seed).fit(X_train, y_train)
    cls = MLPClassifier if classification else MLPRegressor
    return cls(hidden_layer_sizes=(256,), early_stopping=True, max_iter=300, random_state=seed).fit(
        X_train, y_train
    )


def _deepchem_predictions(task_type, train, valid, test, seed, scaler):
    torch.manual_seed(seed)
    n_tasks, n_features = train.y.shape[1], train.X.shape[1]
    # As for the other probes. A fingerprint bit that is constant in the training set keeps
    # its scale (dividing by a tiny standard deviation would blow it up wherever it is set).
    scale = lambda d: dc.data.NumpyDataset(scaler.transform(d.X), d.y, d.w, d.ids)  # noqa: E731
    train, valid, test = scale(train), scale(valid), scale(test)
    if task_type == "classification":
        model = dc.models.MultitaskClassifier(
            n_tasks, n_features, layer_sizes=[512], dropouts=0.2, learning_rate=1e-3, batch_size=64
        )
    else:
        model = dc.models.MultitaskRegressor(
            n_tasks, n_features, layer_sizes=[512], dropouts=0.2, learning_rate=1e-3, batch_size=64
        )
    best, best_value = None, None
    for _ in range(30):  # epochs, keeping the best on validation
        model.fit(train, nb_epoch=1)
        prediction = _deepchem_output(model, valid, task_type)
        value = score(task_type, valid.y, valid.w, prediction)
        value = value if task_type == "classification" else -value
        if best_value is None or (not math.isnan(value) and value > best_value):
            best_value, best = value, (prediction, _deepchem_output(model, test, task_type))
    return best


def _deepchem_output(model, dataset, task_type):
    output = model.predict(dataset)
    if task_type == "classification":
        return output[..., 1]  # (n, tasks, classes)
    return output.reshape(len(dataset), -1)
