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
    """Validation loss and masked-token top-1 accuracy, with fixed masks; for a model with a
    descriptor head and a corpus with descriptors, the descriptor loss too.

    Accuracy: the share of masked tokens predicted exactly. MLM predicts each masked position's
    most probable token; ExLM decodes the best DAG path of M + 2 states (transitions times each
    state's most probable token, without looking at the targets) and reads its inner states.
    ``val_loss`` is the token loss (the descriptor loss alone for the descriptors objective).
    """
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(VALIDATION_SEED)
    tokens_predicted = model.config.objective != "descriptors"
    with_descriptors = model.descriptor_head is not None and corpus.descriptors is not None
    losses, correct, total, dropped = [], 0, 0, 0
    descriptor_error, descriptor_count = 0.0, 0
    with torch.no_grad(), autocast:
        for batch in epoch_batches(corpus.lengths, 0, VALIDATION_SEED, 0, 1, batch_tokens):
            ids = tokenizer.encode_batch(corpus.smiles(batch))
            masks = model.choose_masks(ids, generator)
            targets = None
            if with_descriptors:
                targets = torch.from_numpy(corpus.descriptor_targets(batch)).to(device)
            out = model(
                ids.to(device), masks.to(device), with_predictions=tokens_predicted,
                descriptors=targets,
            )  # fmt: skip
            if with_descriptors:
                known = int(torch.isfinite(targets).sum())
                descriptor_error += float(out.descriptor_loss) * known
                descriptor_count += known
            finite = torch.isfinite(out.molecule_loss)
            losses.append(out.molecule_loss[finite].float().cpu())
            dropped += int((~finite).sum())
            if tokens_predicted:
                valid = out.target_valid
                correct += int((out.predictions[valid] == out.targets[valid]).sum())
                total += int(valid.sum())
    model.train()
    losses = torch.cat(losses) if losses else torch.zeros(0)
    metrics = {
        # None (JSON null), not NaN, when no molecule gave a finite loss (an empty set, say).
        "val_loss": float(losses.mean()) if len(losses) else None,
        "val_dropped": dropped,
    }
    if tokens_predicted:
        metrics["val_accuracy"] = correct / max(total, 1)
    if with_descriptors:
        metrics["val_descriptor_loss"] = descriptor_error / max(descriptor_count, 1)
    return metrics
