"""Pre-LayerNorm Transformer encoder with two-dimensional rotary positions (section 4-5).

In every head the first half of the query/key dimensions is rotated by p1 and the second half
by p2, each with the standard RoPE frequencies for a half-sized dimension, so attention
scores depend only on differences of p1 and of p2. There is no other position embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ExLMConfig


class PackedLayout:
    """Where the real states of a padded (B, N) batch sit, to move between the padded layout
    and the packed (T, ...) layout of real states only. Linear layers run on the packed
    states, so padding costs nothing there. When padding is rare (length-sorted batches),
    packing would cost more than it saves: the padded states are then kept (``dense``) and
    ``pack``/``pad`` are free reshapes."""

    def __init__(self, valid: torch.Tensor, dense_below: float = 0.125):
        self.shape = valid.shape
        real = int(valid.sum())
        self.dense = real >= (1 - dense_below) * valid.numel()
        self.index = None if self.dense else valid.flatten().nonzero().squeeze(1)
        # Padding keys are masked out; padded queries still attend to the real keys, so no
        # row of the mask is empty (an empty row would give NaN); their outputs are dropped.
        self.attn_mask = None if real == valid.numel() else valid[:, None, None, :]

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        flat = padded.flatten(0, 1)
        return flat if self.dense else flat.index_select(0, self.index)

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        if self.dense:
            return packed.unflatten(0, self.shape)
        out = packed.new_zeros((self.shape[0] * self.shape[1], *packed.shape[1:]))
        return out.index_copy_(0, self.index, packed).unflatten(0, self.shape)


def rotary_tables(
    p1: torch.Tensor, p2: torch.Tensor, head_dim: int, base: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin tables (..., 1, head_dim) for p1 (first half) and p2 (second half).

    Within each half the layout is NeoX's: dimensions j and j + quarter rotate together. The
    sin table carries the rotation's sign, so `apply_rotary` needs only a swap of quarters.
    """
    quarter = head_dim // 4
    inv_freq = base ** (-torch.arange(quarter, device=p1.device, dtype=torch.float32) / quarter)
    angles = (
        torch.stack((p1, p2), dim=-1).to(torch.float32)[..., None] * inv_freq
    )  # (..., 2, quarter)
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1).flatten(-2)  # [p1 f, p1 f, p2 f, p2 f]
    sin = torch.cat((-angles.sin(), angles.sin()), dim=-1).flatten(-2)
    return cos[..., None, :], sin[..., None, :]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., head_dim) by the tables: [a, b] -> [a cos - b sin, b cos + a sin] per half,
    each dtype its faster way (benchmarks/speed/bench_rotary.py)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if x.dtype == torch.float32:
        return rotate_on_quarter_views(x, cos, sin)
    return rotate_on_swapped_copy(x, cos, sin)


def rotate_on_quarter_views(x, cos, sin):
    """In place on strided quarter views: in float32 1.2-1.3x faster than the swapped copy."""
    out = x * cos
    quarters, x_quarters, sin_quarters = (t.unflatten(-1, (2, 2, -1)) for t in (out, x, sin))
    quarters[..., 0, :].addcmul_(x_quarters[..., 1, :], sin_quarters[..., 0, :])
    quarters[..., 1, :].addcmul_(x_quarters[..., 0, :], sin_quarters[..., 1, :])
    return out


def rotate_on_swapped_copy(x, cos, sin):
    """Contiguous ops on a swapped [b, a] copy: in bfloat16 and float16, where strided
    element-wise ops are not vectorized, about 2.5x faster than the quarter views."""
    x_quarters = x.unflatten(-1, (2, 2, -1))
    swapped = torch.stack((x_quarters[..., 1, :], x_quarters[..., 0, :]), dim=-2).flatten(-3)
    return x * cos + swapped * sin


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout. On a CPU the mask comes from 16 random bits per element, four to one
    64-bit draw: PyTorch's CPU dropout draws once per element, 29% of the time of a profiled
    fine-tuning step (`benchmarks/speed/bench_training_ops.py` compares the two). An element is
    dropped with probability round(p * 65536) / 65536, within 1e-5 of p, and the kept ones are
    scaled to match."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    threshold = round(p * 65536)
    draws = torch.empty(math.ceil(x.numel() / 4), dtype=torch.int64)
    bits = draws.random_(-(2**63), 2**63 - 1).view(torch.int16)[: x.numel()]
    keep = bits.view(x.shape) >= threshold - 32768
    return x * keep * (65536 / (65536 - threshold))


class Dropout(nn.Module):
    """`dropout` as a layer, like `nn.Dropout`."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(q, k, v, mask, dropout_p: float = 0.0):
    """Scaled dot-product attention, (B, H, N, hd) -> (B, H, N, hd); ``mask`` (True: attend)
    broadcasts to (B, H, N, N). PyTorch's fused kernel, except when training on a CPU in
    bfloat16 or float16, where its backward is 4-8x slower than the same maths as two matrix
    products (`benchmarks/speed/bench_training_ops.py`), or with dropout, where PyTorch falls
    back to those products anyway and drops out more slowly than `dropout`."""
    if (
        q.requires_grad
        and q.device.type == "cpu"
        and (dropout_p > 0 or q.dtype in (torch.bfloat16, torch.float16))
    ):
        return attention_by_hand(q, k, v, mask, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def attention_by_hand(q, k, v, mask, dropout_p: float = 0.0):
    """Attention as two matrix products. The softmax stays in the inputs' dtype (PyTorch
    computes it in float32 inside and rounds once): a float32 copy, kept for the backward pass,
    raised a bf16 pretraining run's peak memory from 1,610 to 1,780 MB
    (`benchmarks/results/bench_pretrain_memory.txt`)."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return dropout(torch.softmax(scores, dim=-1), dropout_p) @ v


class SelfAttention(nn.Module):
    """Multi-head attention over packed states: projections run on the real states only,
    the attention itself on a padded (B, H, N, head_dim) layout."""

    def __init__(self, config: ExLMConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.dropout

    def forward(self, x, cos, sin, layout: PackedLayout):
        T, D = x.shape
        H = self.num_heads
        # Queries and keys (rotated together) apart from values: the rows of one weight
        # matrix, so that no concatenation is needed after the rotation.
        weight, bias = self.qkv.weight, self.qkv.bias
        qk = F.linear(x, weight[: 2 * D], bias[: 2 * D]).view(T, 2, H, D // H)
        qk = layout.pad(apply_rotary(qk, cos[:, None], sin[:, None]))  # (B, N, 2, H, hd)
        v = layout.pad(F.linear(x, weight[2 * D :], bias[2 * D :])).unflatten(
            -1, (H, D // H)
        )  # (B, N, H, hd)
        B, N = layout.shape
        q, k = qk.permute(2, 0, 3, 1, 4)
        v = v.transpose(1, 2)
        y = attention(q, k, v, layout.attn_mask, self.dropout if self.training else 0.0)
        return self.out(layout.pack(y.transpose(1, 2).reshape(B, N, D)))


class Block(nn.Module):
    def __init__(self, config: ExLMConfig):
        super().__init__()
        d = config.hidden_size
        self.norm1 = nn.LayerNorm(d)
        self.attention = SelfAttention(config)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.ffn_multiplier * d),
            nn.GELU(),
            nn.Linear(config.ffn_multiplier * d, d),
        )
        self.dropout = Dropout(config.dropout)

    def forward(self, x, cos, sin, layout):
        x = x + self.dropout(self.attention(self.norm1(x), cos, sin, layout))
        return x + self.dropout(self.ffn(self.norm2(x)))


class Encoder(nn.Module):
    """Token embedding, the blocks and a final LayerNorm."""

    def __init__(self, config: ExLMConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size)

    def forward(self, ids, p1, p2, valid, every_layer: bool = False):
        """Hidden states (B, N, d) of the final layer, after its LayerNorm; zeros at padding.

        every_layer: return instead the list of the states after the token embedding and after
        each block, each through the final LayerNorm (the last one is the usual output).
        """
        layout = PackedLayout(valid)
        cos, sin = rotary_tables(
            layout.pack(p1), layout.pack(p2), self.config.head_dim, self.config.rope_base
        )
        x = self.dropout(self.embed_tokens(layout.pack(ids)))  # (T, d)
        layers = [x]
        for block in self.blocks:
            x = block(x, cos, sin, layout)
            if every_layer:
                layers.append(x)
        if every_layer:
            return [self._finish(state, layout, valid) for state in layers]
        return self._finish(x, layout, valid)

    def _finish(self, packed, layout, valid):
        hidden = layout.pad(self.final_norm(packed))
        return hidden * valid[..., None].to(hidden.dtype) if layout.dense else hidden
