"""Validation of a pretraining run: loss and masked-token accuracy with fixed masks."""

from __future__ import annotations

import torch

from ..model import ExLMModel
from ..tokenizer import SmilesTokenizer
from .batches import epoch_batches
from .corpus import PackedCorpus

VALIDATION_SEED = 12_345  # the same batches and masks at every validation of every run


def validate(
    model: ExLMModel,
    tokenizer: SmilesTokenizer,
    corpus: PackedCorpus,
    batch_tokens: int,
    device,
    autocast,
) -> dict:
    """Validation loss and masked-token top-1 accuracy, with fixed masks.

    Accuracy: the share of masked tokens predicted exactly. MLM predicts each masked position's
    most probable token; ExLM decodes the best DAG path of M + 2 states (transitions times each
    state's most probable token, without looking at the targets) and reads its inner states.
    """
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(VALIDATION_SEED)
    losses, correct, total, dropped = [], 0, 0, 0
    with torch.no_grad(), autocast:
        for batch in epoch_batches(corpus.lengths, 0, VALIDATION_SEED, 0, 1, batch_tokens):
            ids = tokenizer.encode_batch(corpus.smiles(batch))
            masks = model.choose_masks(ids, generator)
            out = model(ids.to(device), masks.to(device), with_predictions=True)
            finite = torch.isfinite(out.molecule_loss)
            losses.append(out.molecule_loss[finite].float().cpu())
            dropped += int((~finite).sum())
            valid = out.target_valid
            correct += int((out.predictions[valid] == out.targets[valid]).sum())
            total += int(valid.sum())
    model.train()
    losses = torch.cat(losses) if losses else torch.zeros(0)
    return {
        # None (JSON null), not NaN, when no molecule gave a finite loss (an empty set, say).
        "val_loss": float(losses.mean()) if len(losses) else None,
        "val_accuracy": correct / max(total, 1),
        "val_dropped": dropped,
    }
