"""The features compared: ExLM models, fingerprints, RDKit descriptors, their joins, the same
network untrained, and chemprop trained from scratch.

``exlm`` (the default model) or ``exlm:DIR``, ``ecfp`` (ECFP4, 2,048 bits), ``ecfp-count``
(Morgan counts, radius 2, 2,048 folded), ``rdkit2d`` (RDKit's 2D descriptors as DeepChem
computes them: the strong baseline for regression), ``random`` or ``random:DIR`` (the same
architecture, freshly initialized with a fixed seed: the control that shows what pretraining
adds), ``mlm:DIR`` (a plain-MLM model) and ``chemprop`` (a message-passing network trained
from scratch on each split; no frozen features). A model's read-out in brackets: ``exlm[cls]``,
``mlm:DIR[mean+cls]`` (layers when left out).

Joins, with ``&``: a model's vector with a fingerprint (``exlm&ecfp``, ``exlm&ecfp-count``;
see `exlm_chem.fingerprints`), with descriptors (``exlm&rdkit2d``) or both
(``exlm&ecfp-count&rdkit2d``), and a fingerprint with descriptors (``ecfp-count&rdkit2d``).
The probes standardize each column and weight each block by 1 / sqrt(its width), as for the
ECFP4 hybrid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import deepchem as dc
import numpy as np

from .. import defaults
from ..descriptors import molecule_descriptors
from ..errors import InputError
from ..featurizer import ExLMFeaturizer, rows_for_deepchem
from ..fingerprints import ECFP_BITS, ecfp4_counts
from ..model import check_pooling, load_model
from ..preparation import prepare_smiles

# kind, then :DIR for a model folder, then [READ-OUT]: exlm[cls], mlm:runs/mlm/model[mean+cls]
_SPEC = re.compile(
    r"(?P<kind>[a-z][a-z0-9-]*)(?::(?P<path>[^\[\]]+))?(?:\[(?P<readout>[^\[\]]+)\])?"
)
KINDS = ("exlm", "ecfp", "ecfp-count", "rdkit2d", "random", "mlm", "chemprop")
FIXED = ("ecfp", "ecfp-count", "rdkit2d")  # features without a model
FINGERPRINT_OF = {"ecfp": "ecfp4", "ecfp-count": "ecfp4-count"}  # as ExLMFeaturizer names them
TRAINED = ("chemprop",)  # models trained from scratch on each split, not features


@dataclass
class FeatureSpec:
    name: str  # as shown in tables
    kind: str  # exlm, ecfp, ecfp-count, rdkit2d, random, chemprop
    model_dir: str | None = None
    pooling: str = defaults.POOLING  # the read-out of a model's vectors
    fingerprint: str | None = None  # ecfp4 or ecfp4-count beside a model's vector
    descriptors: bool = False  # RDKit 2D descriptors joined after the rest


def parse_features(text: str) -> list[FeatureSpec]:
    """``exlm[:DIR][READ-OUT]``, ``random[:DIR][READ-OUT]``, ``mlm:DIR[READ-OUT]``, ``ecfp``,
    ``ecfp-count``, ``rdkit2d`` or ``chemprop``, comma-separated, and joins with ``&`` (see
    the module's docstring); READ-OUT is layers (the default), mean, cls or several side by
    side (mean+cls)."""
    specs = [parse_feature(item) for item in (p.strip() for p in text.split(",")) if item]
    if not specs:
        raise InputError("--features: give at least one kind of features")
    return specs


def parse_feature(item: str) -> FeatureSpec:
    first, *joined = [part.strip() for part in item.split("&")]
    match = _SPEC.fullmatch(first)
    if match is None or match["kind"] not in KINDS:
        raise InputError(
            f"--features: unknown features {first!r}: use exlm[:DIR][READ-OUT], ecfp, "
            "ecfp-count, rdkit2d, random[:DIR][READ-OUT], mlm:DIR[READ-OUT] or chemprop, "
            "e.g. exlm[cls]"
        )
    kind, path, readout = match["kind"], match["path"], match["readout"]
    if kind == "mlm" and not path:
        raise InputError("--features: mlm features need a model directory: mlm:DIR")
    if kind in FIXED + TRAINED and (path or readout):
        raise InputError(f"--features: {kind} takes no model directory and no read-out")
    if kind in TRAINED and joined:
        raise InputError(
            f"--features {item}: {kind} is a model trained from scratch; it joins nothing"
        )
    unknown = [part for part in joined if part not in FIXED]
    if unknown:
        raise InputError(
            f"--features {item}: {unknown[0]!r} cannot be joined; join ecfp, ecfp-count or "
            "rdkit2d, e.g. exlm&ecfp-count&rdkit2d"
        )
    parts = ([kind] if kind in FIXED else []) + joined
    fingerprints = [part for part in parts if part in FINGERPRINT_OF]
    if len(parts) != len(set(parts)):
        raise InputError(f"--features {item}: a feature set joined with itself")
    if len(fingerprints) > 1:
        raise InputError(
            f"--features {item}: {' and '.join(fingerprints)} are the same environments twice; "
            "join one fingerprint with rdkit2d or a model"
        )
    pooling = check_pooling(readout or defaults.POOLING)
    # One spelling however it is written: a fingerprint first, then the descriptors.
    ordered = fingerprints + ["rdkit2d"] * ("rdkit2d" in parts)
    if kind in FIXED:
        return FeatureSpec("&".join(ordered), ordered[0], descriptors=len(ordered) > 1)
    name = f"mlm[{readout}]" if kind == "mlm" and readout else "mlm" if kind == "mlm" else first
    fingerprint = FINGERPRINT_OF[fingerprints[0]] if fingerprints else None
    return FeatureSpec(
        name + "".join(f"&{part}" for part in ordered), "exlm" if kind == "mlm" else kind,
        path, pooling, fingerprint, "rdkit2d" in ordered,
    )  # fmt: skip


def make_featurizer(spec: FeatureSpec):
    """A DeepChem featurizer for the features (`JoinedFeatures` for a join with descriptors;
    None for a model trained from scratch); loading a model checks its folder."""
    if spec.kind in TRAINED:
        return None
    if spec.kind == "ecfp":
        featurizer = dc.feat.CircularFingerprint(radius=2, size=2048)
    elif spec.kind == "ecfp-count":
        featurizer = MorganCounts()
    elif spec.kind == "rdkit2d":
        featurizer = FiniteRDKitDescriptors()
    else:
        model = load_model(spec.model_dir)
        if spec.kind == "random":
            model = model.reinitialized()
        featurizer = ExLMFeaturizer(model=model, pooling=spec.pooling, fingerprint=spec.fingerprint)
    return (
        JoinedFeatures([featurizer, FiniteRDKitDescriptors()]) if spec.descriptors else featurizer
    )


def feature_blocks(featurizer) -> list[int] | None:
    """The widths of the blocks of a featurizer's vectors, for the probes' block weights."""
    if isinstance(featurizer, JoinedFeatures):
        return featurizer.blocks
    return getattr(featurizer, "blocks", None)


class JoinedFeatures:
    """Feature sets side by side, each computed (and cached) by its own featurizer; the
    suite loads each and keeps the molecules every one of them could read."""

    def __init__(self, parts: list):
        self.parts = parts

    @property
    def blocks(self) -> list[int]:
        return [width for part in self.parts for width in _part_blocks(part)]

    def __str__(self) -> str:
        return "&".join(str(part) for part in self.parts)


def _part_blocks(featurizer) -> list[int]:
    if isinstance(featurizer, ExLMFeaturizer):
        return featurizer.blocks
    if isinstance(featurizer, FiniteRDKitDescriptors):
        return [len(featurizer.reqd_properties)]
    return [ECFP_BITS]


class ReadableRows(dc.feat.MolecularFeaturizer):
    """The rows an `ExLMFeaturizer` keeps, without embedding them: one 0 for each molecule its
    model can read, an empty array (dropped by DeepChem's loaders) for one it cannot, decided
    by the same `prepare_smiles`. Fine-tuning tokenizes its molecules itself and needs only
    the rows, and the same rows give the same splits; embedding a set first took minutes on a
    GPU (ToxCast: 74-98 s per model)."""

    def __init__(self, featurizer: ExLMFeaturizer):
        self.tokenizer = featurizer.get_model().tokenizer
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


class MorganCounts(dc.feat.MolecularFeaturizer):
    """Morgan counts, radius 2, folded to 2,048 (`exlm_chem.fingerprints.ecfp4_counts`)."""

    def _featurize(self, datapoint, **kwargs) -> np.ndarray:
        return ecfp4_counts([datapoint])[0]

    def __str__(self) -> str:
        return "MorganCounts_r2_2048"
