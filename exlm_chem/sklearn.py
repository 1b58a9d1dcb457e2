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


class ExLMTransformer(TransformerMixin, BaseEstimator):
    """Embed SMILES with an ExLM model; drops into Pipeline and GridSearchCV.

    X: a sequence of SMILES, a pandas Series, a one-column DataFrame/array, or one SMILES
    string (one row). An invalid SMILES raises an error naming its row and the reason
    (``errors="raise"``, the default: scikit-learn estimators downstream reject NaN), or gives
    a NaN row (``errors="ignore"``, for a pipeline that imputes or drops them).

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
        errors: str = "raise",
        canonicalize: bool = True,
        workers: int | None = None,
    ):
        self.model = model
        self.pooling = pooling
        self.fingerprint = fingerprint
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.errors = errors
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
        smiles = _as_smiles(X)
        vectors = embed(
            smiles,
            self.model_,
            self.pooling,
            self.batch_size,
            precision=self.precision,
            errors=self.errors,
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


def _as_smiles(X) -> list:
    if isinstance(X, str):
        return [X]
    if hasattr(X, "columns"):  # DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"ExLMTransformer takes one column of SMILES, got {X.shape[1]} columns"
            )
        X = X.iloc[:, 0]
    array = np.asarray(X, dtype=object)
    if array.ndim == 2:
        if array.shape[1] != 1:
            raise ValueError(f"ExLMTransformer takes one column of SMILES, got shape {array.shape}")
        array = array[:, 0]
    return list(array)  # anything but a string is reported as invalid, with its row


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
    random_state: seed of the split, the head and the batches.
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

    def _fit(self, X, targets: np.ndarray):
        from .finetuning import EncodedMolecules, LabelledMolecules, finetune_best_rate
        from .splits import split_rows

        smiles = _as_smiles(X)
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
        rates = np.atleast_1d(np.asarray(self.learning_rate, dtype=float)).tolist()
        base = load_model(self.model, self.device)
        encoded = EncodedMolecules.from_smiles(smiles, base.tokenizer)
        train_rows, valid_rows, _ = split_rows(
            smiles, self.split, self.random_state, self.validation_fraction, 0.0
        )
        train = LabelledMolecules(encoded.subset(train_rows), targets[train_rows])
        valid = LabelledMolecules(encoded.subset(valid_rows), targets[valid_rows])
        tasks = [f"task_{t}" for t in range(targets.shape[1])]
        best, runs = finetune_best_rate(
            base,
            train,
            valid,
            self._task_type,
            settings,
            rates,
            tasks,
            self.device,
            effective_n_jobs(self.n_jobs),
        )
        self.predictor_ = best.predictor
        self.learning_rate_ = best.settings.learning_rate
        self.best_epoch_ = best.best_epoch
        self.validation_score_ = best.valid_score
        self.runs_ = runs
        return self

    def _outputs(self, X) -> np.ndarray:
        from .finetuning import predict_smiles

        check_is_fitted(self, "predictor_")
        smiles = _as_smiles(X)
        outputs, errors = predict_smiles(smiles, self.predictor_, self.precision)
        for i, error in enumerate(errors):
            if error is not None:
                raise InputError(f"invalid SMILES at index {i} ({error}): {smiles[i]!r}")
        return outputs

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

    def predict_proba(self, X) -> np.ndarray:
        p = self._outputs(X)
        return p if self.multitask_ else np.column_stack([1 - p[:, 0], p[:, 0]])

    def predict(self, X) -> np.ndarray:
        p = self._outputs(X)
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

    def predict(self, X) -> np.ndarray:
        outputs = self._outputs(X)
        return outputs if self.multitask_ else outputs[:, 0]
