"""Masking and states expansion of a padded batch (sections 2-4 of the method).

Every ``<s>``, ``</s>`` and ``<mask>`` becomes k consecutive copies of itself; other tokens stay
single. Each state gets two rotary positions: p1, the index of its source token in the
unexpanded sequence, and p2, the copy index 1..k for expanded states and 0 for single tokens
(0 everywhere when k = 1, the plain-MLM case). Everything is vectorized over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ExpandedBatch:
    ids: torch.Tensor  # (B, N) token ids of the states, pad beyond each molecule's length
    p1: torch.Tensor  # (B, N) source-token index
    p2: torch.Tensor  # (B, N) copy index (0 for single tokens)
    valid: torch.Tensor  # (B, N) True for real states, False for padding
    expanded: torch.Tensor  # (B, N) True for the copies of <s>, </s> and <mask>


def choose_mask_positions(
    ids: torch.Tensor,
    rate: float,
    special_ids: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool (B, L): a uniformly random subset of each molecule's real tokens to mask.

    As in the reference implementation, a molecule of n real tokens gets floor(rate * n + u)
    masks (u uniform in [0, 1)), at least one: each token is masked with probability ``rate``,
    and the number of masks, hence the number of expanded states, is fixed by the length up to
    one. Length-sorted batches then stay nearly free of padding after the expansion (with an
    independent draw per token the expanded lengths of equally long molecules spread by about
    (k - 1) * sqrt(n * rate)).
    """
    real = ~torch.isin(ids, special_ids)
    n = real.sum(1)
    u = torch.rand(n.shape, generator=generator, device=ids.device)
    count = torch.minimum(torch.floor(rate * n + u).long().clamp(min=1), n)
    noise = torch.rand(ids.shape, generator=generator, device=ids.device).masked_fill(~real, 2.0)
    rank = noise.argsort(1).argsort(1)  # 0 for the real token with the smallest noise, ...
    return rank < count[:, None]


def expand_states(
    ids: torch.Tensor, k: int, expand_ids: torch.Tensor, pad_id: int, multiple: int = 1
) -> ExpandedBatch:
    """Expand a padded (B, L) batch: tokens whose id is in ``expand_ids`` become k states,
    padded to the longest row's states rounded up to a multiple of ``multiple``."""
    B, L = ids.shape
    device = ids.device
    real = ids != pad_id
    to_expand = torch.isin(ids, expand_ids) & real
    copies = torch.where(to_expand, k, 1) * real  # states per token, 0 for padding
    ends = copies.cumsum(1)
    lengths = ends[:, -1]
    N = -(-int(lengths.max()) // multiple) * multiple if B else 0
    starts = ends - copies

    flat_copies = copies.flatten()
    total = int(flat_copies.sum())
    source = torch.repeat_interleave(
        torch.arange(B * L, device=device), flat_copies, output_size=total
    )
    rank = _copy_rank(flat_copies, total, device)  # copy index within the source token
    row = source // L
    column = starts.flatten()[source] + rank
    is_copy = to_expand.flatten()[source]

    out_ids = torch.full((B, N), pad_id, dtype=ids.dtype, device=device)
    p1 = torch.zeros((B, N), dtype=torch.long, device=device)
    p2 = torch.zeros((B, N), dtype=torch.long, device=device)
    expanded = torch.zeros((B, N), dtype=torch.bool, device=device)
    out_ids[row, column] = ids.flatten()[source]
    p1[row, column] = source % L
    expanded[row, column] = is_copy
    if k > 1:
        p2[row, column] = torch.where(is_copy, rank + 1, 0)
    valid = torch.arange(N, device=device) < lengths[:, None]
    return ExpandedBatch(out_ids, p1, p2, valid, expanded)


def _copy_rank(counts: torch.Tensor, total: int, device) -> torch.Tensor:
    """For groups of sizes ``counts`` laid end to end, each element's index within its group."""
    group_start = torch.repeat_interleave(counts.cumsum(0) - counts, counts, output_size=total)
    return torch.arange(total, device=device) - group_start


def pack_selected(selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack the selected positions of each row to the front, in order.

    ``selected`` (B, N) bool; returns ``index`` (B, S) and ``valid`` (B, S), S the largest count
    in a row: row b of ``index`` lists the selected positions of row b, then filler.
    """
    counts = selected.sum(1)
    width = int(counts.max()) if selected.shape[0] else 0
    # A stable sort puts the selected positions first, keeping their order.
    index = torch.argsort((~selected).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=selected.device) < counts[:, None]
    return index, valid
