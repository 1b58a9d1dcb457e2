"""scikit-learn estimators on SMILES: `ExLMTransformer` (frozen embeddings, SMILES in,
vectors out), `ExLMClassifier` and `ExLMRegressor` (the model fine-tuned end to end)."""

from __future__ import annotations

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import defaults
from .embedding import embed
from .errors import InputError
from .finetune_settings import FinetuneSettings
from .fingerprints import check_fingerprint, fingerprint_block, fingerprint_names, hybrid
from .model import load_model, model_fingerprint, vector_names
from .smiles import smiles_column


class ExLMTransformer(TransformerMixin, BaseEstimator):
    """Embed SMILES with an ExLM model; drops into Pipeline and GridSearchCV.

    X: a sequence of SMILES, a pandas Series, a one-column DataFrame/array, or one SMILES
    string (one row). An invalid SMILES raises an error naming its row and the reason
    (``invalid="raise"``, the default: scikit-learn estimators downstream reject NaN), or gives
    a NaN row (``invalid="keep"``, for a pipeline that imputes or drops them).

    Parameters
    ----------
    model: a model directory, or None for the default model.
    pooling: the read-out: ``layers`` (every layer's mean over the atom-level token states,
    averaged over the layers; the default), ``mean`` (the last layer's), ``cls`` (the first
    ``<s>`` state) or several side by side (``mean+cls``: twice as many features).
    fingerprint: None, or ``"ecfp4"`` for the hybrid: the ExLM vector and the ECFP4 bits side
    by side, each block of unit norm per molecule (see `exlm_chem.fingerprints`);
    ``"ecfp4-count"``: the same with Morgan counts.
    batch_size, device, precision, canonicalize, workers: as in `exlm_chem.embed`.
    """

    def __init__(
        self,
        model=None,
        pooling: str = defaults.POOLING,
        fingerprint: str | None = None,
        batch_size: int | None = None,
        device=None,
        precision: str = defaults.PRECISION,
        invalid: str = "raise",
        canonicalize: bool = True,
        workers: int | None = None,
    ):
        self.model = model
        self.pooling = pooling
        self.fingerprint = fingerprint
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.invalid = invalid
        self.canonicalize = canonicalize
        self.workers = workers

    def fit(self, X=None, y=None):
        check_fingerprint(self.fingerprint)
        model = load_model(self.model, self.device)
        self.model_ = model
        self.model_name_, self.weights_hash_ = model.name, model_fingerprint(model)
        self.feature_names_out_ = vector_names(model.config.hidden_size, self.pooling) + (
            fingerprint_names(self.fingerprint) if self.fingerprint else []
        )
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        smiles = smiles_column(X)
        vectors = embed(
            smiles,
            self.model_,
            self.pooling,
            self.batch_size,
            precision=self.precision,
            invalid=self.invalid,
            canonicalize=self.canonicalize,
            workers=self.workers,
        )
        return (
            hybrid(vectors, fingerprint_block(self.fingerprint, smiles))
            if self.fingerprint
            else vectors
        )

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return np.array(self.feature_names_out_, dtype=object)

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        text = super().__repr__(N_CHAR_MAX)
        if hasattr(self, "weights_hash_"):  # fitted: say which weights make the vectors
            text += (
                f"  # model {self.model_name_ or 'loaded in Python'}, weights {self.weights_hash_}"
            )
        return text

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        return tags


class _FinetunedEstimator(BaseEstimator):
    """An ExLM model fine-tuned end to end (see `exlm_chem.finetune`) on SMILES X and targets
    y: (n,) or (n, tasks), NaN where a label is missing.

    Parameters
    ----------
    model: a model directory, or None for the default model.
    head: ``cls`` (the ``<s>`` state, RoBERTa head), ``mean`` (the last layer's token mean,
    linear) or ``layers`` (every layer's token mean averaged, linear).
    learning_rate: one rate, or a sequence of rates chosen on the validation part.
    epochs, patience, batch_size, dropout, precision: as in
    `exlm_chem.finetune_settings.FinetuneSettings`, where their defaults live.
    validation_fraction: share of the molecules held out for early stopping (and the rate),
    split by scaffold (``split="scaffold"``) or at random (``"random"``).
    device, precision: where and how to train (``auto`` precision: bf16 where native).
    n_jobs: learning rates tried at a time, in worker processes (None: one; -1: as many as
    there are cores, as joblib counts them); see `exlm_chem.finetuning.finetune_each`.
    random_state: seed of the split, the head and the batches (members: +1, +2, ...).
    ensemble: members trained at the chosen rate; their spread is ``return_std``.
    coverage: of the regression intervals (`ExLMRegressor.predict_interval`), calibrated by
    conformal prediction on the validation part; classifiers' probabilities are
    temperature-scaled there. `applicability_domain` says how like the training molecules
    each molecule is. calibration: ``"folds"`` calibrates on scaffold folds of all the
    molecules instead, one held out by each member (see `exlm_chem.finetuning.folds`).
    """

    _task_type = ""

    def __init__(
        self,
        model=None,
        head: str = FinetuneSettings.head,
        learning_rate=FinetuneSettings.learning_rate,  # one rate; a list is a grid
        epochs: int = FinetuneSettings.epochs,
        patience: int = FinetuneSettings.patience,
        batch_size: int = FinetuneSettings.batch_size,
        dropout: float = FinetuneSettings.dropout,
        validation_fraction: float = 0.1,
        split: str = "scaffold",
        device=None,
        precision: str = FinetuneSettings.precision,
        n_jobs: int | None = None,
        random_state: int = 0,
        ensemble: int = 1,
        coverage: float = 0.9,
        calibration: str = "validation",
    ):
        self.model = model
        self.head = head
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.dropout = dropout
        self.validation_fraction = validation_fraction
        self.split = split
        self.device = device
        self.precision = precision
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.ensemble = ensemble
        self.coverage = coverage
        self.calibration = calibration

    def _fit(self, X, targets: np.ndarray):
        from .finetune_settings import UncertaintySettings
        from .finetuning import EncodedMolecules, LabelledMolecules, finetune_ensemble
        from .splits import split_rows

        smiles = smiles_column(X)
        if len(targets) != len(smiles):
            raise ValueError(f"X has {len(smiles)} molecules but y has {len(targets)} rows")
        settings = FinetuneSettings(
            head=self.head,
            epochs=self.epochs,
            patience=self.patience,
            batch_size=self.batch_size,
            dropout=self.dropout,
            precision=self.precision,
            seed=self.random_state,
        )
        uncertainty = UncertaintySettings(
            members=self.ensemble, coverage=self.coverage, calibration=self.calibration
        )
        rates = np.atleast_1d(np.asarray(self.learning_rate, dtype=float)).tolist()
        base = load_model(self.model, self.device)
        encoded = EncodedMolecules.from_smiles(smiles, base.tokenizer)
        train_rows, valid_rows, _ = split_rows(
            smiles, self.split, self.random_state, self.validation_fraction, 0.0
        )
        whole = LabelledMolecules(encoded, targets, smiles)
        train, valid = whole.subset(train_rows), whole.subset(valid_rows)
        tasks = [f"task_{t}" for t in range(targets.shape[1])]
        fitted, best, runs, _ = finetune_ensemble(
            base, train, valid, self._task_type, settings, uncertainty, rates, tasks,
            self.device, effective_n_jobs(self.n_jobs), train_ids=train_rows.tolist(),
            valid_ids=valid_rows.tolist(),
        )  # fmt: skip
        self.finetuned_ = fitted
        self.learning_rate_ = best.settings.learning_rate
        self.best_epoch_ = best.best_epoch
        self.validation_score_ = best.valid_score
        self.runs_ = runs
        return self

    def _predictions(self, X, coverage: float | None = None):
        check_is_fitted(self, "finetuned_")
        smiles = smiles_column(X)
        predictions, errors = self.finetuned_.predict_smiles(smiles, self.precision, coverage)
        for i, error in enumerate(errors):
            if error is not None:
                raise InputError(f"invalid SMILES at index {i} ({error}): {smiles[i]!r}")
        return predictions

    def _spread(self, predictions) -> np.ndarray:
        if predictions.spread is None:
            raise InputError(
                f"return_std needs an ensemble: fit with ensemble >= 2 (this one has "
                f"{len(self.finetuned_.members)} member)"
            )
        return predictions.spread

    def applicability_domain(self, X):
        """A DataFrame with one row per molecule: max_cosine (to the training molecules'
        vectors), max_tanimoto (ECFP4), nearest_train (the row of the training X with that
        Tanimoto), nearest_train_smiles and in_domain (see
        `exlm_chem.finetuning.domain`)."""
        import pandas as pd

        predictions = self._predictions(X)
        sims, domain = predictions.similarities, self.finetuned_.domain
        return pd.DataFrame(
            {
                "max_cosine": sims.max_cosine,
                "max_tanimoto": sims.max_tanimoto,
                "nearest_train": [domain.train_ids[i] for i in sims.nearest],
                "nearest_train_smiles": [domain.train_smiles[i] for i in sims.nearest],
                "in_domain": predictions.in_domain,
            }
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags


class ExLMClassifier(ClassifierMixin, _FinetunedEstimator):
    """Fine-tuned ExLM classifier on SMILES. y: two classes (any labels), or a 0/1 matrix of
    several tasks with NaN where a label is missing (then `predict_proba` gives each task's
    probability of 1, as scikit-learn's multilabel MLPClassifier)."""

    _task_type = "classification"

    def fit(self, X, y):
        y = np.asarray(y)
        self.multitask_ = y.ndim == 2
        if y.ndim == 1:
            self.classes_ = np.unique(y)
            if len(self.classes_) != 2:
                raise InputError(
                    f"ExLMClassifier needs two classes in y, found {len(self.classes_)}: "
                    f"{self.classes_[:5].tolist()}"
                )
            targets = (y == self.classes_[1]).astype(np.float64)[:, None]
        else:
            self.classes_ = np.array([0, 1])
            targets = y.astype(np.float64)
        return self._fit(X, targets)

    def predict_proba(self, X, return_std: bool = False):
        """Calibrated probabilities; with ``return_std``, also their spread over the members."""
        predictions = self._predictions(X)
        p = predictions.value
        proba = p if self.multitask_ else np.column_stack([1 - p[:, 0], p[:, 0]])
        if not return_std:
            return proba
        spread = self._spread(predictions)
        return proba, spread if self.multitask_ else np.column_stack([spread[:, 0]] * 2)

    def predict(self, X) -> np.ndarray:
        p = self._predictions(X).value
        return (
            (p >= 0.5).astype(int)
            if self.multitask_
            else self.classes_[(p[:, 0] >= 0.5).astype(int)]
        )


class ExLMRegressor(RegressorMixin, _FinetunedEstimator):
    """Fine-tuned ExLM regressor on SMILES; y of shape (n,) or (n, tasks) (NaN: missing)."""

    _task_type = "regression"

    def fit(self, X, y):
        y = np.asarray(y, dtype=np.float64)
        self.multitask_ = y.ndim == 2
        return self._fit(X, y.reshape(len(y), -1))

    def predict(self, X, return_std: bool = False):
        """The members' mean; with ``return_std``, also their spread (scikit-learn's
        convention, as GaussianProcessRegressor)."""
        predictions = self._predictions(X)
        mean = self._shaped(predictions.value)
        return (mean, self._shaped(self._spread(predictions))) if return_std else mean

    def predict_interval(self, X, coverage: float | None = None):
        """(low, high): split-conformal intervals at ``coverage`` (default: the fitted one)."""
        predictions = self._predictions(X, coverage)
        return self._shaped(predictions.low), self._shaped(predictions.high)

    def _shaped(self, values: np.ndarray) -> np.ndarray:
        return values if self.multitask_ else values[:, 0]
