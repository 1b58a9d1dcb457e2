"""Model configuration: one dataclass, three presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import defaults
from ..errors import InputError

PRESETS = {
    # For tests: trains in seconds, well under 1M parameters.
    "tiny": dict(num_layers=2, hidden_size=64, num_heads=4, dropout=0.0),
    # The CPU default: 4 layers x 256 trains at a few thousand tokens/s on 2 cores. A few CPU
    # hours see less than one epoch of ZINC, so dropout only slows learning (and its random
    # masks are a visible share of a CPU step): it is off.
    "small": dict(num_layers=4, hidden_size=256, num_heads=4, dropout=0.0),
    # The paper's (BERT-base) size and dropout.
    "base": dict(num_layers=12, hidden_size=768, num_heads=12, dropout=0.1),
}
# exlm: the DAG loss over expanded masks; mlm: the plain masked LM (k = 1); descriptors: no
# masks, only the descriptor-regression loss (the network and expansion of ExLM).
OBJECTIVES = ("exlm", "mlm", "descriptors")


@dataclass
class ExLMConfig:
    """Everything that fixes the shape and the training objective of a model.

    ``k`` is the number of states each ``<mask>``, ``<s>`` and ``</s>`` expands into: 4 by
    default for ExLM; the plain-MLM objective is k = 1 (left unset, it is; any other value is
    refused). ``max_length`` is the longest token sequence, ``<s>`` and ``</s>``
    included; the transition head learns one embedding per expanded-sequence position, up to
    ``max_length * k``.

    ``descriptors``: the number of RDKit descriptors a regression head predicts from the
    molecule vector in pretraining (0: no head); its loss counts ``descriptor_weight`` times
    beside the token loss (alone with the ``descriptors`` objective).
    """

    vocab_size: int = 64
    num_layers: int = 4
    hidden_size: int = 256
    num_heads: int = 4
    ffn_multiplier: int = 4
    dropout: float = 0.1
    k: int | None = None  # None: defaults.K for ExLM, 1 for the plain MLM
    objective: str = "exlm"
    mask_rate: float = 0.15
    max_length: int = defaults.MAX_LENGTH
    transition_heads: int = 4
    rope_base: float = 10_000.0
    descriptors: int = 0
    descriptor_weight: float = 1.0
    preset: str | None = None

    def __post_init__(self):
        if self.k is None:
            self.k = 1 if self.objective == "mlm" else defaults.K
        # Checked before any use: a config file is user input, and a zero or a string here
        # would fail deep inside the model with a traceback.
        for name in (
            "vocab_size",
            "num_layers",
            "hidden_size",
            "num_heads",
            "ffn_multiplier",
            "k",
            "max_length",
            "transition_heads",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(self.descriptors, int) or self.descriptors < 0:
            raise InputError(f"descriptors must be an integer >= 0, not {self.descriptors!r}")
        for name in ("dropout", "mask_rate", "rope_base", "descriptor_weight"):
            if not isinstance(getattr(self, name), (int, float)) or isinstance(
                getattr(self, name), bool
            ):
                raise InputError(f"{name} must be a number, not {getattr(self, name)!r}")
        if not 0 <= self.dropout < 1:
            raise InputError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {OBJECTIVES}, not {self.objective!r}")
        if self.objective == "mlm" and self.k != 1:
            raise InputError(
                f"the plain-MLM objective is k = 1, not k = {self.k}; leave --k out with "
                "--objective mlm"
            )
        if self.k < 1:
            raise InputError(f"k must be at least 1, not {self.k}")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 4:
            raise InputError("hidden_size / num_heads must be a multiple of 4 (two rotary halves)")
        if self.hidden_size % self.transition_heads:
            raise InputError("hidden_size must be a multiple of transition_heads")
        if not 0 < self.mask_rate < 1:
            raise InputError(f"mask_rate must be between 0 and 1, not {self.mask_rate}")
        if self.descriptor_weight < 0:
            raise InputError(f"descriptor_weight must be >= 0, not {self.descriptor_weight}")
        if self.objective == "descriptors" and not self.descriptors:
            raise InputError("the descriptors objective needs descriptors (their number) > 0")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_states(self) -> int:
        return self.max_length * self.k

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ExLMConfig:
        """A preset (tiny, small, base) with any field overridden."""
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        values = dict(PRESETS[name], transition_heads=PRESETS[name]["num_heads"], preset=name)
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ExLMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**values)
