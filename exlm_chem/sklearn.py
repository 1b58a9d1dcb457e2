"""ExLMTransformer: ExLM embeddings as a scikit-learn transformer (SMILES in, vectors out)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import defaults
from .embedding import embed
from .model import load_model, vector_names


class ExLMTransformer(TransformerMixin, BaseEstimator):
    """Embed SMILES with an ExLM model; drops into Pipeline and GridSearchCV.

    X: a sequence of SMILES, a pandas Series, a one-column DataFrame/array, or one SMILES
    string (one row). An invalid SMILES raises an error naming its row and the reason
    (``errors="raise"``, the default: scikit-learn estimators downstream reject NaN), or gives
    a NaN row (``errors="ignore"``, for a pipeline that imputes or drops them).

    Parameters
    ----------
    model: a model directory, or None for the default model.
    pooling: the read-out: ``mean`` (over the atom-level token states), ``cls`` (the first
    ``<s>`` state) or ``mean+cls`` (both, side by side: twice as many features).
    batch_size, device, precision, canonicalize: as in `exlm_chem.embed`.
    """

    def __init__(
        self,
        model=None,
        pooling: str = defaults.POOLING,
        batch_size: int = defaults.BATCH_SIZE,
        device=None,
        precision: str = defaults.PRECISION,
        errors: str = "raise",
        canonicalize: bool = True,
    ):
        self.model = model
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.errors = errors
        self.canonicalize = canonicalize

    def fit(self, X=None, y=None):
        model = load_model(self.model, self.device)
        self.model_ = model
        self.feature_names_out_ = vector_names(model.config.hidden_size, self.pooling)
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        return embed(
            _as_smiles(X),
            self.model_,
            self.pooling,
            self.batch_size,
            precision=self.precision,
            errors=self.errors,
            canonicalize=self.canonicalize,
        )

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return np.array(self.feature_names_out_, dtype=object)

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
