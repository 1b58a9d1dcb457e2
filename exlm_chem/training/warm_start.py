"""Start a pretraining run from another model's weights, across vocabularies and objectives.

A model trained on one corpus can go on training on a broader one whose vocabulary has more
tokens (charged atoms, stereo marks). Every weight of the same name and shape is copied; the
token embeddings and the output biases are copied row by row, by token. A token the source
model lacks starts from the row of the token the source model reads it as (its nearest known
atom: ``[N+]`` from ``N``), or keeps its fresh initialization where the source reads it as
``<unk>``. The transition head is copied when both models have one of the same shape (an
ExLM run started from an ExLM model); a plain-MLM run started from an ExLM model takes the
encoder and the token head, which is how both objectives start from the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..model import ExLMModel

BY_TOKEN = ("encoder.embed_tokens.weight", "lm_head.bias")  # one row per vocabulary token
SHAPE = ("hidden_size", "num_layers", "num_heads", "ffn_multiplier", "max_length")


@dataclass
class WarmStart:
    copied: int  # tensors copied whole
    tokens_copied: int  # vocabulary rows from the same token
    tokens_from_fallback: int  # rows from the token the source reads a new token as
    tokens_fresh: int  # rows left at their fresh initialization


def warm_start(model: ExLMModel, source: ExLMModel, source_name: str) -> WarmStart:
    """Copy ``source``'s weights into the fresh ``model`` (see the module's docstring)."""
    different = [
        f"{name} {getattr(source.config, name)} vs {getattr(model.config, name)}"
        for name in SHAPE
        if getattr(source.config, name) != getattr(model.config, name)
    ]
    if different:
        raise InputError(
            f"--init-from {source_name}: its shape differs from this run's model "
            f"({'; '.join(different)}); choose the same --preset and --max-length"
        )
    rows, from_fallback, fresh = _token_rows(model, source)
    have = torch.tensor([new for new, _ in rows], dtype=torch.long)
    read = torch.tensor([old for _, old in rows], dtype=torch.long)
    target = model.state_dict()
    copied = 0
    with torch.no_grad():
        for name, value in source.state_dict().items():
            if name in BY_TOKEN:
                target[name][have] = value[read].to(target[name].dtype)
            elif name in target and target[name].shape == value.shape:
                target[name].copy_(value)
                copied += 1
    return WarmStart(copied, len(rows) - from_fallback, from_fallback, fresh)


def _token_rows(model: ExLMModel, source: ExLMModel) -> tuple[list[tuple[int, int]], int, int]:
    """(row in model, row in source) for every token that gets a source row; how many of them
    come from a fallback; how many tokens get none."""
    new, old = model.tokenizer, source.tokenizer
    unk = old.token_to_id["<unk>"]
    rows, from_fallback, fresh = [], 0, 0
    for token, i in new.token_to_id.items():
        if token in old.token_to_id:
            rows.append((i, old.token_to_id[token]))
            continue
        reading = old.token_to_id.get(old.reading(token), unk)
        if reading == unk:
            fresh += 1
        else:
            rows.append((i, reading))
            from_fallback += 1
    return rows, from_fallback, fresh
