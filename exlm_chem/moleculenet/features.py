"""The features compared: ExLM models, ECFP4, and the same network untrained.

``exlm`` (the default model) or ``exlm:DIR``, ``ecfp`` (ECFP4, 2048 bits), ``random`` or
``random:DIR`` (the same architecture, freshly initialized with a fixed seed: the control that
shows what pretraining adds) and ``mlm:DIR`` (a plain-MLM model).
"""

from __future__ import annotations

from dataclasses import dataclass

import deepchem as dc

from ..errors import InputError
from ..featurizer import ExLMFeaturizer
from ..model import load_model


@dataclass
class FeatureSpec:
    name: str  # as shown in tables
    kind: str  # exlm, ecfp, random
    model_dir: str | None = None


def parse_features(text: str) -> list[FeatureSpec]:
    specs = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        kind, _, path = item.partition(":")
        if kind not in ("exlm", "ecfp", "random", "mlm"):
            raise InputError(
                f"unknown features {item!r}: use exlm[:DIR], ecfp, random[:DIR] or mlm:DIR"
            )
        if kind == "mlm" and not path:
            raise InputError("mlm features need a model directory: mlm:DIR")
        if kind == "ecfp" and path:
            raise InputError("ecfp takes no model directory")
        specs.append(
            FeatureSpec(
                item if kind != "mlm" else "mlm", "exlm" if kind == "mlm" else kind, path or None
            )
        )
    if not specs:
        raise InputError("give at least one kind of features")
    return specs


def make_featurizer(spec: FeatureSpec):
    """A DeepChem featurizer for the features; loading a model checks its folder."""
    if spec.kind == "ecfp":
        return dc.feat.CircularFingerprint(radius=2, size=2048)
    model = load_model(spec.model_dir)
    if spec.kind == "random":
        model = model.reinitialized()
    return ExLMFeaturizer(model=model)
