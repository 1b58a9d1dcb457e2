"""The settings of a pretraining run: one dataclass, the one home of every default."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import defaults
from ..environment import packaged_models
from ..errors import InputError

PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("linear", "poly")


@dataclass
class PretrainConfig:
    """Arguments of a pretraining run (the command-line flags, one for one; the CLI reads its
    defaults from here)."""

    corpus: list[Path]
    out: Path
    objective: str = "exlm"
    preset: str = "small"
    k: int | None = None  # states per <mask>, <s>, </s>; None: the objective's own (ExLMConfig)
    mask_rate: float | None = None  # share of tokens masked; None: the model's default (0.15)
    # Weight of the descriptor-regression loss beside the token loss (0: no descriptor head);
    # the corpus must be prepared with descriptors.
    descriptor_weight: float = 0.0
    max_steps: int | None = None
    max_tokens: int | None = None
    max_time: float | None = None  # seconds
    batch_tokens: int = 6144  # padded tokens per batch (before states expansion)
    # Lengths and expanded lengths padded to a multiple of this (1: to the longest molecule).
    # Few distinct batch shapes: oneDNN (bf16 on CPUs) builds and keeps kernels per shape, so
    # with the kernel cache held small (`limit_kernel_cache`) a run's memory stays bounded.
    shape_bucket: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    warmup: float = 0.06  # fraction of the run
    schedule: str = "linear"  # or "poly" (power 2)
    weight_decay: float = 0.01
    clip: float = 1.0
    val_corpus: Path | None = None
    val_size: int = 5000
    val_every: int = 500
    log_every: int = 50
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    tokenizer: Path | None = None
    min_token_count: int = 10  # a token seen fewer times reads as its fallback: too rare to learn
    source_weights: str | None = None  # e.g. "moses=0.5,datagrok500k=2": draws per epoch
    workers: int | None = None  # processes preparing the corpus; None: one per core, at most 8
    corpus_cache: Path | None = None  # where the prepared corpus is kept (default: OUT/corpus)
    smiles_column: str | None = None
    canonicalize: bool = False
    augment: bool = False  # randomized SMILES
    max_length: int = defaults.MAX_LENGTH
    resume: bool = False
    init_from: str | None = None  # a model folder or shipped model's name to start from
    seed: int = 0
    precision: str = "auto"
    threads: int | None = None
    model_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        # The model package imports torch; the CLI reads this class's defaults before any run.
        from ..model.config import OBJECTIVES, PRESETS

        self.corpus = [Path(p) for p in self.corpus]
        self.out = Path(self.out)
        self.val_corpus = Path(self.val_corpus) if self.val_corpus else None
        self.tokenizer = Path(self.tokenizer) if self.tokenizer else None
        self.corpus_cache = Path(self.corpus_cache) if self.corpus_cache else None
        if not (self.max_steps or self.max_tokens or self.max_time):
            raise InputError("give a budget: --max-steps, --max-tokens or --max-time")
        if self.precision not in PRECISIONS:
            raise InputError(
                f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )
        if self.schedule not in SCHEDULES:
            raise InputError(
                f"--schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}"
            )
        if self.batch_tokens < self.max_length:
            raise InputError(f"--batch-tokens must be at least --max-length ({self.max_length})")
        if not self.corpus:
            raise InputError("give at least one --corpus file")
        if self.objective not in OBJECTIVES:
            raise InputError(
                f"--objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}"
            )
        if self.preset not in PRESETS:
            raise InputError(f"--preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        if not isinstance(self.descriptor_weight, (int, float)) or self.descriptor_weight < 0:
            raise InputError(f"--descriptor-weight must be >= 0, not {self.descriptor_weight}")
        if self.objective == "descriptors" and self.descriptor_weight:
            raise InputError(
                "--descriptor-weight weighs the descriptor loss beside a token loss; the "
                "descriptors objective has only the descriptor loss: leave it out"
            )
        # The model's own checks (k, shapes), before any work.
        self.model_config(vocab_size=64, descriptors=1 if self.uses_descriptors else 0)
        if self.shape_bucket < 1:
            raise InputError(f"--shape-bucket must be at least 1, not {self.shape_bucket}")
        if self.min_token_count < 1:
            raise InputError(f"--min-token-count must be at least 1, not {self.min_token_count}")
        parse_source_weights(self.source_weights)  # the spelling; the names once the corpus is read
        if self.init_from and not (
            (Path(self.init_from) / "config.json").is_file() or self.init_from in packaged_models()
        ):
            raise InputError(
                f"--init-from {self.init_from}: not a model folder nor a shipped model "
                f"({', '.join(packaged_models())})"
            )

    @property
    def uses_descriptors(self) -> bool:
        """Whether the run trains a descriptor head (its corpus must have descriptors)."""
        return self.objective == "descriptors" or self.descriptor_weight > 0

    def model_config(self, vocab_size: int, descriptors: int = 0):
        """The ExLMConfig of this run's model (the preset, with this run's settings);
        ``descriptors``: the number of descriptor targets of its corpus, if it uses them."""
        from ..model import ExLMConfig

        overrides = dict(
            self.model_overrides,
            vocab_size=vocab_size,
            objective=self.objective,
            max_length=self.max_length,
            descriptors=descriptors if self.uses_descriptors else 0,
        )
        if self.descriptor_weight:
            overrides["descriptor_weight"] = self.descriptor_weight
        if self.k is not None:
            overrides["k"] = self.k
        if self.mask_rate is not None:
            overrides["mask_rate"] = self.mask_rate
        return ExLMConfig.from_preset(self.preset, **overrides)

    def batch_settings(self) -> dict:
        """The settings that decide which batches a run draws: a resumed run must keep them."""
        names = ("batch_tokens", "shape_bucket", "grad_accum", "seed", "augment", "source_weights")
        return {name: getattr(self, name) for name in names}

    def to_json(self) -> dict:
        return {
            key: (str(v) if isinstance(v, Path) else [str(p) for p in v] if key == "corpus" else v)
            for key, v in asdict(self).items()
        }


def parse_source_weights(text: str | None) -> dict[str, float]:
    """``moses=0.5,chembl=2`` -> {"moses": 0.5, "chembl": 2.0}; sources not named keep 1."""
    weights = {}
    for item in (part.strip() for part in (text or "").split(",") if part.strip()):
        name, _, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not name.strip() or weight < 0:
            raise InputError(f"--source-weights: {item!r} is not NAME=WEIGHT with a weight >= 0")
        weights[name.strip()] = weight
    return weights


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '20m', '2h', '1h30m'."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise InputError(f"cannot read duration {text!r}: use e.g. 90s, 20m, 2h or 1h30m")
    return sum(float(value) * {"h": 3600, "m": 60, "s": 1}[unit] for value, unit in parts)


def learning_rate(peak: float, warmup: float, schedule: str, progress: float) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then linear or polynomial (squared)
    decay to 0, or the peak rate held (constant)."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return peak * progress / warmup
    if schedule == "constant":
        return peak
    remaining = (1.0 - progress) / (1.0 - warmup)
    return peak * (remaining if schedule == "linear" else remaining**2)


def run_progress(config: PretrainConfig, step: int, tokens: int, elapsed: float) -> float:
    """How far through its budget the run is: the largest of the step, token and time fractions."""
    fractions = [0.0]
    if config.max_steps:
        fractions.append(step / config.max_steps)
    if config.max_tokens:
        fractions.append(tokens / config.max_tokens)
    if config.max_time:
        fractions.append(elapsed / config.max_time)
    return max(fractions)
