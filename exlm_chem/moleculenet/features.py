"""The features compared: ExLM models, ECFP4, and the same network untrained.

``exlm`` (the default model) or ``exlm:DIR``, ``ecfp`` (ECFP4, 2048 bits), ``random`` or
``random:DIR`` (the same architecture, freshly initialized with a fixed seed: the control that
shows what pretraining adds) and ``mlm:DIR`` (a plain-MLM model); a model's read-out in
brackets: ``exlm[cls]``, ``mlm:DIR[mean+cls]`` (mean when left out). A model's features
followed by ``&ecfp`` are the hybrid: its vector and the ECFP4 bits side by side
(``exlm[cls]&ecfp``; see `exlm_chem.fingerprints`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import deepchem as dc

from .. import defaults
from ..errors import InputError
from ..featurizer import ExLMFeaturizer
from ..model import check_pooling, load_model

# kind, then :DIR for a model folder, then [READ-OUT]: exlm[cls], mlm:runs/mlm/model[mean+cls]
_SPEC = re.compile(r"(?P<kind>[a-z]+)(?::(?P<path>[^\[\]]+))?(?:\[(?P<readout>[^\[\]]+)\])?")
KINDS = ("exlm", "ecfp", "random", "mlm")


@dataclass
class FeatureSpec:
    name: str  # as shown in tables
    kind: str  # exlm, ecfp, random
    model_dir: str | None = None
    pooling: str = defaults.POOLING  # the read-out of a model's vectors
    fingerprint: str | None = None  # ecfp4 for the hybrid of a model's vector and ECFP4 bits


def parse_features(text: str) -> list[FeatureSpec]:
    """``exlm[:DIR][READ-OUT]``, ``random[:DIR][READ-OUT]``, ``mlm:DIR[READ-OUT]`` or
    ``ecfp``, comma-separated; READ-OUT is mean (the default), cls or mean+cls; a model's
    features followed by ``&ecfp`` are its hybrid with ECFP4."""
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
                f"unknown features {item!r}: use exlm[:DIR][READ-OUT], ecfp, "
                "random[:DIR][READ-OUT] or mlm:DIR[READ-OUT], e.g. exlm[cls]"
            )
        kind, path, readout = match["kind"], match["path"], match["readout"]
        if kind == "mlm" and not path:
            raise InputError("mlm features need a model directory: mlm:DIR")
        if kind == "ecfp" and (path or readout):
            raise InputError("ecfp takes no model directory and no read-out")
        if kind == "ecfp" and hybrid:
            raise InputError("ecfp&ecfp is ECFP4 twice; join ecfp with a model: exlm&ecfp")
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
    model = load_model(spec.model_dir)
    if spec.kind == "random":
        model = model.reinitialized()
    return ExLMFeaturizer(model=model, pooling=spec.pooling, fingerprint=spec.fingerprint)
