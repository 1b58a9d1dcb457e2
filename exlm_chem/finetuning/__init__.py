"""Fine-tuning an encoder end to end on labelled molecules, and predicting with the result:
`data` (molecules tokenized once, labels, class balancing), `predictor` (the heads, the
fine-tuned model, saving and loading), `train` (the protocol, one run), `checkpoint` (a run's
state, to continue it), `grid` (several runs, a grid of rates), `ensemble` (members at the
chosen rate, with `calibration` and an applicability `domain`; `reliability` measures them),
`files` (a labelled table in, a fine-tuned model folder out; predictions for a molecule file).

The protocol is the reference ExLM's for MoleculeNet (itself Uni-Mol's): the first ``<s>``
state through a RoBERTa classification head (or the mean of the token states through a linear
layer); dropout in the head and in the encoder; AdamW with a linear warm-up over 6% of the run,
then linear decay; gradient clipping; the validation metric after every epoch, training stopped
after ``patience`` epochs without improvement and the best validation weights kept (on a tie,
those with the lower validation loss). Batches hold molecules of similar length. The
learning rate is chosen from a small grid on validation data (`finetune_best_rate`, or over
several splits with `choose_learning_rate`).

Targets may hold several tasks with missing labels (NaN): those entries get no loss, as
DeepChem's zero weights. Classes are balanced per task as DeepChem's ``BalancingTransformer``
does: each labelled example weighted by n / (2 x the size of its class), so that the positives
of a task with 3% of them count as much as its negatives.
"""

from .data import EncodedMolecules, LabelledMolecules, balancing_weights, check_targets
from .ensemble import (
    FinetunedModel,
    Predictions,
    finetune_ensemble,
    load_finetuned,
    predict_smiles,
    save_finetuned,
)
from .grid import LEARNING_RATES, choose_learning_rate, finetune_best_rate, finetune_each
from .predictor import (
    HEADS,
    PropertyPredictor,
    load_predictor,
    predict_encoded,
    save_predictor,
)
from .train import FinetuneResult, FinetuneSettings, finetune

__all__ = [
    "HEADS",
    "LEARNING_RATES",
    "EncodedMolecules",
    "FinetuneResult",
    "FinetuneSettings",
    "FinetunedModel",
    "LabelledMolecules",
    "Predictions",
    "PropertyPredictor",
    "balancing_weights",
    "check_targets",
    "choose_learning_rate",
    "finetune",
    "finetune_best_rate",
    "finetune_each",
    "finetune_ensemble",
    "load_finetuned",
    "load_predictor",
    "predict_encoded",
    "predict_smiles",
    "save_finetuned",
    "save_predictor",
]
