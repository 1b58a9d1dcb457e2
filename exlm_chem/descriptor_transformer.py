"""RDKit's 2D descriptors as a scikit-learn transformer: the benchmark's ``rdkit2d``, its
strongest frozen baseline under a random forest, to use alone or beside `ExLMTransformer` in a
`sklearn.pipeline.FeatureUnion`."""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .descriptors import compute_descriptors, descriptor_names
from .errors import InputError
from .smiles import check_invalid_policy, parse_smiles, quiet_rdkit, smiles_column, smiles_problem


class DescriptorTransformer(TransformerMixin, BaseEstimator):
    """SMILES in, RDKit's 2D descriptors out (217 with current RDKit): DeepChem's
    ``RDKitDescriptors`` list, as the benchmark's ``rdkit2d`` and the pretraining targets
    (`exlm_chem.descriptors`).

    X: as `ExLMTransformer` takes it (a sequence or column of SMILES, or one string).
    An invalid SMILES raises an error naming its row (``invalid="raise"``) or gives a NaN row
    (``invalid="keep"``). A descriptor RDKit cannot compute for a molecule (rare) is
    ``missing``: 0.0 by default, as in the benchmark; ``float("nan")`` leaves it to an imputer
    or to a random forest, which takes NaN. The values are raw: a linear model wants a
    `StandardScaler` after them, a forest does not. About 13 ms a molecule on one core.
    """

    def __init__(self, invalid: str = "raise", missing: float = 0.0):
        self.invalid = invalid
        self.missing = missing

    def fit(self, X=None, y=None):
        check_invalid_policy(self.invalid, ("keep", "raise"))
        self.feature_names_out_ = descriptor_names()
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        smiles = smiles_column(X)
        with quiet_rdkit():
            molecules = [parse_smiles(s) for s in smiles]
        invalid = [i for i, mol in enumerate(molecules) if mol is None]
        if invalid and self.invalid == "raise":
            i = invalid[0]
            why = smiles_problem(smiles[i]) or "RDKit cannot parse it"
            raise InputError(f"invalid SMILES at index {i} ({why}): {smiles[i]!r}")
        values = np.full((len(smiles), self.n_features_out_), np.nan, dtype=np.float32)
        valid = [i for i, mol in enumerate(molecules) if mol is not None]
        if valid:
            values[valid] = compute_descriptors([molecules[i] for i in valid])
            if not math.isnan(self.missing):
                values[valid] = np.nan_to_num(values[valid], nan=self.missing)
        return values

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return np.array(self.feature_names_out_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags
