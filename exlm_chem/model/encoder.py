"""Pre-LayerNorm Transformer encoder with two-dimensional rotary positions (section 4-5).

In every head the first half of the query/key dimensions is rotated by p1 and the second half
by p2, each with the standard RoPE frequencies for a half-sized dimension, so attention
scores depend only on differences of p1 and of p2. There is no other position embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ExLMConfig


def rotary_tables(p1: torch.Tensor, p2: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (B, 1, N, head_dim) for positions p1 (first half) and p2 (second half)."""
    quarter = head_dim // 4
    inv_freq = base ** (-torch.arange(quarter, device=p1.device, dtype=torch.float32) / quarter)
    angles = torch.stack((p1, p2), dim=-1).to(torch.float32)[..., None] * inv_freq  # (B, N, 2, quarter)
    angles = torch.cat((angles, angles), dim=-1).flatten(-2)  # (B, N, head_dim): [p1 f, p1 f, p2 f, p2 f]
    return angles.cos()[:, None], angles.sin()[:, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, N, head_dim) by the tables: each half is rotated on its own (NeoX layout)."""
    halves = x.unflatten(-1, (2, 2, -1))  # (..., half, quarter, freq)
    rotated = torch.stack((-halves[..., 1, :], halves[..., 0, :]), dim=-2).flatten(-3)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, config: ExLMConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.dropout

    def forward(self, x, cos, sin, attn_mask):
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, N, D))


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
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, cos, sin, attn_mask):
        x = x + self.dropout(self.attention(self.norm1(x), cos, sin, attn_mask))
        return x + self.dropout(self.ffn(self.norm2(x)))


class Encoder(nn.Module):
    """Token embedding, the blocks and a final LayerNorm."""

    def __init__(self, config: ExLMConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size)

    def forward(self, ids, p1, p2, valid, return_all_layers: bool = False):
        """Hidden states (B, N, d) of the final layer, or a list of every layer's (after its
        block; the last one after the final LayerNorm) with ``return_all_layers``."""
        cos, sin = rotary_tables(p1, p2, self.config.head_dim, self.config.rope_base)
        # Padding keys are masked out; padded queries still attend to the real keys, so no row
        # of the mask is empty (an empty row would give NaN).
        attn_mask = valid[:, None, None, :]
        x = self.dropout(self.embed_tokens(ids))
        layers = []
        for block in self.blocks:
            x = block(x, cos, sin, attn_mask)
            layers.append(x)
        x = self.final_norm(x)
        if return_all_layers:
            return layers[:-1] + [x]
        return x
