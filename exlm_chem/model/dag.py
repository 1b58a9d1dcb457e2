"""The transition head and the DAG dynamic programme (sections 5-6 of the method).

Both work on the expanded states of each molecule only, gathered to the front of a
(B, S) tensor: S = k (M + 2) states per molecule, in sequence order, padded to the largest S
of the batch. The dynamic programme always runs in float32 (or float64 when given float64),
outside autocast, in log space.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Stands for log 0 inside the computations: unlike -inf it keeps every gradient finite
# (logsumexp over an all -inf row has a NaN gradient), and exp() of it is exactly 0.
NEG = -1e9


class TransitionHead(nn.Module):
    """log E(i -> j) over the expanded states of each molecule.

    f_i = [h_i ; e_i] (final hidden state and a learned embedding of the state's index in the
    expanded sequence); H attention-like heads score successors j > i, softmax over the allowed
    j, and a per-state gate mixes the heads: E(i -> j) = sum_c g_ic A_c(i -> j).
    """

    def __init__(self, hidden_size: int, num_heads: int, max_states: int):
        super().__init__()
        self.num_heads = num_heads
        self.state_embedding = nn.Embedding(max_states, hidden_size)
        self.query = nn.Linear(2 * hidden_size, hidden_size)
        self.key = nn.Linear(2 * hidden_size, hidden_size)
        self.gate = nn.Linear(2 * hidden_size, num_heads)

    def _project(self, hidden: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor):
        """q, k and gate logits of f = [h ; e], computed as W_h h + (W_e E)[position]: the
        same numbers with half the work, the e-part computed once per position, the h-part
        on the real states only."""
        from .encoder import PackedLayout

        d = hidden.shape[-1]
        weight = torch.cat((self.query.weight, self.key.weight, self.gate.weight))  # (2d + H, 2d)
        bias = torch.cat((self.query.bias, self.key.bias, self.gate.bias))
        used = int(positions.max()) + 1 if positions.numel() else 1
        position_part = F.linear(self.state_embedding.weight[:used], weight[:, d:], bias)
        layout = PackedLayout(valid)
        packed = F.linear(layout.pack(hidden), weight[:, :d].to(hidden.dtype))
        packed = packed + position_part.to(packed.dtype)[layout.pack(positions)]
        return layout.pad(packed).split((d, d, self.num_heads), dim=-1)

    def forward(self, hidden: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """hidden (B, S, d), positions (B, S) index in the expanded sequence, valid (B, S).

        Returns log E (B, S, S) in float32, -inf where a transition is not allowed.
        """
        B, S, d = hidden.shape
        q, k, gate_logits = self._project(hidden, positions, valid)
        head_dim = d // self.num_heads
        q = q.reshape(B, S, self.num_heads, head_dim).transpose(1, 2)
        k = k.reshape(B, S, self.num_heads, head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(head_dim)  # (B, H, S, S)
        later = torch.ones(S, S, dtype=torch.bool, device=hidden.device).triu(1)
        allowed = later & valid[:, :, None] & valid[:, None, :]  # (B, S, S)
        log_a = F.log_softmax(scores.masked_fill(~allowed[:, None], NEG), dim=-1)
        log_gate = F.log_softmax(gate_logits.float(), dim=-1)  # (B, S, H)
        log_e = torch.logsumexp(log_a + log_gate.transpose(1, 2)[..., None], dim=1)
        return log_e.masked_fill(~allowed, float("-inf"))


def _prepare(emission_logp, transition_logp):
    dtype = torch.promote_types(torch.promote_types(emission_logp.dtype, transition_logp.dtype), torch.float32)
    return emission_logp.to(dtype).clamp(min=NEG), transition_logp.to(dtype).clamp(min=NEG)


def dag_log_likelihood(
    emission_logp: torch.Tensor,
    transition_logp: torch.Tensor,
    num_states: torch.Tensor,
    target_len: torch.Tensor,
) -> torch.Tensor:
    """log P(Y) of each molecule: the log-sum over all paths through its DAG of states.

    emission_logp (B, S, T): log P_u(Y_i) of state u emitting target token i.
    transition_logp (B, S, S): log E(v -> u), -inf where not allowed.
    num_states (B,): S_b; target_len (B,): T_b = M_b + 2.

    A path starts at state 0, ends at state S_b - 1 and visits T_b states in increasing order,
    the i-th emitting Y_i. Returns (B,) log-likelihoods, -inf where no path exists.
    """
    with torch.autocast(emission_logp.device.type, enabled=False):
        emission, transition = _prepare(emission_logp, transition_logp)
        B, S, T = emission.shape
        last_state = (num_states - 1).clamp(min=0)[:, None]
        alpha = torch.full((B, S), NEG, dtype=emission.dtype, device=emission.device)
        alpha = torch.cat((emission[:, :1, 0], alpha[:, 1:]), dim=1)
        at_last_state = [alpha.gather(1, last_state)]
        for i in range(1, T):
            # alpha_i(u) = log P_u(Y_i) + logsumexp_v (alpha_{i-1}(v) + log E(v -> u))
            alpha = emission[:, :, i] + torch.logsumexp(alpha[:, :, None] + transition, dim=1)
            at_last_state.append(alpha.gather(1, last_state))
        result = torch.cat(at_last_state, dim=1).gather(1, (target_len - 1).clamp(min=0)[:, None])[:, 0]
        return result.masked_fill(result < NEG / 2, float("-inf"))


def dag_best_path(
    emission_logp: torch.Tensor,
    transition_logp: torch.Tensor,
    num_states: torch.Tensor,
    target_len: torch.Tensor,
) -> torch.Tensor:
    """The most probable path (Viterbi) through each DAG, as (B, T) state indices.

    Arguments as in `dag_log_likelihood`; entries past T_b repeat the last state.
    """
    with torch.no_grad(), torch.autocast(emission_logp.device.type, enabled=False):
        emission, transition = _prepare(emission_logp, transition_logp)
        B, S, T = emission.shape
        alpha = torch.full((B, S), NEG, dtype=emission.dtype, device=emission.device)
        alpha[:, 0] = emission[:, 0, 0]
        back = []
        for i in range(1, T):
            best, previous = (alpha[:, :, None] + transition).max(dim=1)
            alpha = emission[:, :, i] + best
            back.append(previous)
        path = torch.empty((B, T), dtype=torch.long, device=emission.device)
        state = (num_states - 1).clamp(min=0)
        rows = torch.arange(B, device=emission.device)
        for i in range(T - 1, -1, -1):
            path[:, i] = state
            if i > 0:  # step back only within the molecule's own path
                step_back = back[i - 1][rows, state]
                state = torch.where(i <= target_len - 1, step_back, state)
        return path
