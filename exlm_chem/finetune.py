"""Fine-tuning an encoder end to end on labelled molecules."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import defaults
from .embedding import load_model, prepare_smiles
from .environment import cpu_has_native_bf16
from .errors import InputError
from .metrics import score


class EncodedMolecules:
    """Molecules prepared and tokenized once, as padded ids; batches are row slices."""

    def __init__(self, smiles, tokenizer):
        prepared = prepare_smiles(list(smiles), tokenizer)
        unreadable = [s for s, tokens in zip(smiles, prepared.tokens) if tokens is None]
        if unreadable:
            raise InputError(
                f"{len(unreadable)} molecules cannot be read by the model, e.g. {unreadable[0]!r}"
            )
        self.ids, _ = tokenizer.encode_tokens_with_report(prepared.tokens)
        self.lengths = (self.ids != tokenizer.pad_id).sum(1)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, rows) -> torch.Tensor:
        rows = torch.as_tensor(rows)
        return self.ids[rows, : int(self.lengths[rows].max())]


def finetune_predictions(
    model_dir,
    task_type,
    train,
    valid,
    test,
    seed,
    random_init=False,
    max_epochs=20,
    patience=3,
    lr=1e-4,
    batch_size=32,
):
    """Train the encoder end to end with a linear head on the mean-pooled states; early stopping
    on the validation metric. Returns test predictions of the best epoch.

    train, valid, test: DeepChem datasets whose ids are the molecules' SMILES.
    """
    torch.manual_seed(seed)
    base = load_model(model_dir)
    if random_init:
        base = base.reinitialized()
        torch.manual_seed(seed)
    base.train()
    n_tasks = train.y.shape[1]
    head = torch.nn.Linear(base.config.hidden_size, n_tasks)
    parameters = list(base.encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    y_mean, y_std = (
        (train.y.mean(0), train.y.std(0) + 1e-6) if task_type == "regression" else (0.0, 1.0)
    )
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if cpu_has_native_bf16()
        else torch.autocast("cpu", enabled=False)
    )
    train_ids, valid_ids, test_ids = (
        EncodedMolecules(d.ids, base.tokenizer) for d in (train, valid, test)
    )

    def predict(encoded: EncodedMolecules):
        base.eval()
        outputs = []
        with torch.inference_mode(), autocast:
            for i in range(0, len(encoded), defaults.BATCH_SIZE):
                ids = encoded.batch(range(i, min(i + defaults.BATCH_SIZE, len(encoded))))
                outputs.append(head(base.embed_states(ids).pooled).float())
        base.train()
        out = torch.cat(outputs).numpy()
        return 1 / (1 + np.exp(-out)) if task_type == "classification" else out * y_std + y_mean

    rng = np.random.default_rng(seed)
    best_value, best_prediction, waited = None, None, 0
    for _ in range(max_epochs):
        order = rng.permutation(len(train))
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            ids = train_ids.batch(rows)
            y = torch.tensor((train.y[rows] - y_mean) / y_std, dtype=torch.float32)
            w = torch.tensor(train.w[rows], dtype=torch.float32)
            with autocast:
                logits = head(base.embed_states(ids).pooled).float()
            if task_type == "classification":
                loss = (
                    F.binary_cross_entropy_with_logits(logits, y, reduction="none") * (w > 0)
                ).sum() / (w > 0).sum().clamp(min=1)
            else:
                loss = (((logits - y) ** 2) * (w > 0)).sum() / (w > 0).sum().clamp(min=1)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
        value = score(task_type, valid.y, valid.w, predict(valid_ids))
        value = value if task_type == "classification" else -value
        if best_value is None or value > best_value:
            best_value, best_prediction, waited = value, predict(test_ids), 0
        else:
            waited += 1
            if waited >= patience:
                break
    return best_prediction
