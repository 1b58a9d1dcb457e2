"""The features compared: ExLM models, ECFP4, RDKit descriptors, the same network untrained.

``exlm`` (the default model) or ``exlm:DIR``, ``ecfp`` (ECFP4, 2048 bits), ``rdkit2d``
(RDKit's 2D descriptors as DeepChem computes them: the strong baseline for regression),
``random`` or ``random:DIR`` (the same architecture, freshly initialized with a fixed seed:
the control that shows what pretraining adds) and ``mlm:DIR`` (a plain-MLM model); a model's
read-out in brackets: ``exlm[cls]``, ``mlm:DIR[mean+cls]`` (layers when left out). A model's
features followed by ``&ecfp`` are the hybrid: its vector and the ECFP4 bits side by side
(``exlm[cls]&ecfp``; see `exlm_chem.fingerprints`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import deepchem as dc
import numpy as np

from .. import defaults
from ..descriptors import molecule_descriptors
from ..embedding import prepare_smiles
from ..errors import InputError
from ..featurizer import ExLMFeaturizer, rows_for_deepchem
from ..model import check_pooling, load_model

# kind, then :DIR for a model folder, then [READ-OUT]: exlm[cls], mlm:runs/mlm/model[mean+cls]
_SPEC = re.compile(
    r"(?P<kind>[a-z][a-z0-9]*)(?::(?P<path>[^\[\]]+))?(?:\[(?P<readout>[^\[\]]+)\])?"
)
KINDS = ("exlm", "ecfp", "rdkit2d", "random", "mlm")
FIXED = ("ecfp", "rdkit2d")  # features without a model


@dataclass
class FeatureSpec:
    name: str  # as shown in tables
    kind: str  # exlm, ecfp, rdkit2d, random
    model_dir: str | None = None
    pooling: str = defaults.POOLING  # the read-out of a model's vectors
    fingerprint: str | None = None  # ecfp4 for the hybrid of a model's vector and ECFP4 bits


def parse_features(text: str) -> list[FeatureSpec]:
    """``exlm[:DIR][READ-OUT]``, ``random[:DIR][READ-OUT]``, ``mlm:DIR[READ-OUT]``, ``ecfp``
    or ``rdkit2d``, comma-separated; READ-OUT is layers (the default), mean, cls or several
    side by side (mean+cls); a model's features followed by ``&ecfp`` are its hybrid with
    ECFP4."""
    specs = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        item, hybrid, extra = item.partition("&")
        if hybrid and extra.strip() != "ecfp":
            raise InputError(
                f"unknown hybrid {item}&{extra}: a model's features can be joined with ecfp "
                "only, e.g. exlm[cls]&ecfp"
            )
        match = _SPEC.fullmatch(item.strip())
        if match is None or match["kind"] not in KINDS:
            raise InputError(
                f"unknown features {item!r}: use exlm[:DIR][READ-OUT], ecfp, rdkit2d, "
                "random[:DIR][READ-OUT] or mlm:DIR[READ-OUT], e.g. exlm[cls]"
            )
        kind, path, readout = match["kind"], match["path"], match["readout"]
        if kind == "mlm" and not path:
            raise InputError("mlm features need a model directory: mlm:DIR")
        if kind in FIXED and (path or readout):
            raise InputError(f"{kind} takes no model directory and no read-out")
        if kind == "ecfp" and hybrid:
            raise InputError("ecfp&ecfp is ECFP4 twice; join ecfp with a model: exlm&ecfp")
        if kind in FIXED and hybrid:
            raise InputError(f"{kind}&ecfp: join ecfp with a model only, e.g. exlm&ecfp")
        pooling = check_pooling(readout or defaults.POOLING)
        name = f"mlm[{readout}]" if kind == "mlm" and readout else "mlm" if kind == "mlm" else item
        fingerprint = "ecfp4" if hybrid else None
        name += "&ecfp" if hybrid else ""
        specs.append(
            FeatureSpec(name, "exlm" if kind == "mlm" else kind, path, pooling, fingerprint)
        )
    if not specs:
        raise InputError("give at least one kind of features")
    return specs


def make_featurizer(spec: FeatureSpec):
    """A DeepChem featurizer for the features; loading a model checks its folder."""
    if spec.kind == "ecfp":
        return dc.feat.CircularFingerprint(radius=2, size=2048)
    if spec.kind == "rdkit2d":
        return FiniteRDKitDescriptors()
    model = load_model(spec.model_dir)
    if spec.kind == "random":
        model = model.reinitialized()
    return ExLMFeaturizer(model=model, pooling=spec.pooling, fingerprint=spec.fingerprint)


class ReadableRows(dc.feat.MolecularFeaturizer):
    """The rows an `ExLMFeaturizer` keeps, without embedding them: one 0 for each molecule its
    model can read, an empty array (dropped by DeepChem's loaders) for one it cannot, decided
    by the same `prepare_smiles`. Fine-tuning tokenizes its molecules itself and needs only
    the rows, and the same rows give the same splits; embedding a set first took minutes on a
    GPU (ToxCast: 74-98 s per model)."""

    def __init__(self, featurizer: ExLMFeaturizer):
        self.tokenizer = featurizer._model().tokenizer
        self.canonicalize = featurizer.canonicalize
        self.name = f"rows_{featurizer}"

    def featurize(self, datapoints, log_every_n: int = 1000, **kwargs) -> np.ndarray:
        if isinstance(datapoints, str):
            datapoints = [datapoints]
        errors = prepare_smiles(list(datapoints), self.tokenizer, self.canonicalize).errors
        valid = np.array([error is None for error in errors], dtype=bool)
        return rows_for_deepchem(np.zeros((len(errors), 1), dtype=np.float32), valid)

    def __str__(self) -> str:
        return self.name


class FiniteRDKitDescriptors(dc.feat.RDKitDescriptors):
    """DeepChem's RDKit 2D descriptors (217, computed by `exlm_chem.descriptors`, as the
    pretraining targets are), with the rare value RDKit cannot compute (NaN) or that
    overflows float32 set to 0, so that the probes' scaling stays finite."""

    def _featurize(self, datapoint, **kwargs) -> np.ndarray:
        return np.nan_to_num(molecule_descriptors(datapoint), nan=0.0).astype(np.float32)

    def __str__(self) -> str:
        return "RDKitDescriptors_finite"
