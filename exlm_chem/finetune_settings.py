"""How a fine-tuning run trains: one settings object, read by `exlm-chem finetune`, the
benchmark's fine-tuning and the scikit-learn estimators alike. Nothing heavy is imported here,
so that the command line shows these defaults in its help without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

HEADS = ("cls", "mean", "layers")  # the fine-tuning heads (see exlm_chem.finetuning.predictor)
LEARNING_RATES = (3e-5, 1e-4, 3e-4, 1e-3)  # the default grid, chosen on validation
SCHEDULES = ("linear", "constant")
CALIBRATIONS = ("validation", "folds")  # where a model's uncertainty is calibrated


@dataclass
class FinetuneSettings:
    """How one fine-tuning run trains (the learning rate is one value; grids live outside)."""

    head: str = "cls"
    learning_rate: float = 1e-4
    epochs: int = 60
    patience: int = 10  # epochs without a better validation metric before stopping
    # Train exactly this many of the planned epochs and keep the last weights: no early
    # stopping, so the validation molecules' errors are not chosen on (None: stop early).
    stop_epoch: int | None = None
    batch_size: int = 32
    warmup: float = 0.06  # fraction of the planned run
    schedule: str = "linear"  # after warm-up: linear decay to 0 over the run, or constant
    dropout: float = 0.1  # in the head and the encoder
    weight_decay: float = 0.01
    clip: float = 1.0  # gradient norm
    balance_classes: bool = True
    precision: str = "auto"  # auto: bf16 where the CPU or GPU has native bf16 matrix maths
    seed: int = 0

    def __post_init__(self):
        if self.head not in HEADS:
            raise InputError(f"head must be one of {', '.join(HEADS)}, not {self.head!r}")
        if not self.learning_rate > 0:
            raise InputError(f"learning rate must be positive, not {self.learning_rate}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.stop_epoch is not None and not 1 <= self.stop_epoch <= self.epochs:
            raise InputError(f"stop epoch must be in [1, {self.epochs}], not {self.stop_epoch}")
        if self.patience < 1:
            raise InputError(f"patience must be at least 1, not {self.patience}")
        if not (0 <= self.warmup < 1 and 0 <= self.dropout < 1):
            raise InputError("warmup and dropout must be in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise InputError(
                f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}"
            )
        if self.precision not in ("auto", "fp32", "bf16"):
            raise InputError(f"precision must be auto, fp32 or bf16, not {self.precision!r}")


@dataclass
class UncertaintySettings:
    """How a fine-tuned model says how sure it is: an ensemble of ``members`` runs (seeds
    seed, seed + 1, ...), regression intervals at ``coverage``, and an applicability domain
    whose threshold leaves out ``domain_quantile`` of the validation molecules (those least
    like the training molecules). ``calibration``: on the validation part, or on ``folds``
    (each member holds out a fold of the training and validation molecules and scores it; see
    `exlm_chem.finetuning.folds`)."""

    members: int = 1
    coverage: float = 0.9
    domain_quantile: float = 0.1
    calibration: str = "validation"

    def __post_init__(self):
        if not (isinstance(self.members, int) and self.members >= 1):
            raise InputError(f"ensemble must be at least 1 member, not {self.members}")
        check_coverage(self.coverage)
        if not 0 <= self.domain_quantile < 1:
            raise InputError(f"domain quantile must be in [0, 1), not {self.domain_quantile}")
        if self.calibration not in CALIBRATIONS:
            raise InputError(
                f"calibration must be one of {', '.join(CALIBRATIONS)}, not {self.calibration!r}"
            )
        if self.calibration == "folds" and self.members < 2:
            raise InputError("calibration on folds needs an ensemble of at least 2 members")


def check_coverage(coverage: float) -> float:
    if not 0 < coverage < 1:
        raise InputError(f"coverage must be between 0 and 1 (e.g. 0.9), not {coverage}")
    return coverage
