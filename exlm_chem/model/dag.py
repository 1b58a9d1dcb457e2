"""The transition head and the DAG dynamic programme (sections 5-6 of the method).

Both work on the expanded states of each molecule only, gathered to the front of a
(B, S) tensor: S = k (M + 2) states per molecule, in sequence order, padded to the largest S
of the batch. The dynamic programme always runs in float32 (or float64 when given float64),
outside autocast: the likelihood as a scaled forward algorithm on probabilities, the best
path (Viterbi) in log space.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Stands for log 0 inside the computations: unlike -inf it keeps every gradient finite
# (logsumexp over an all -inf row has a NaN gradient), and exp() of it is exactly 0.
NEG = -1e9
_TINY = 1e-30  # stands for 0 where a logarithm or a division needs a positive number


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
        packed = packed + F.embedding(layout.pack(positions), position_part.to(packed.dtype))
        return layout.pad(packed).split((d, d, self.num_heads), dim=-1)

    def forward(
        self, hidden: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """hidden (B, S, d), positions (B, S) index in the expanded sequence, valid (B, S).

        Returns E (B, S, S) in float32: transition probabilities, 0 where not allowed.
        """
        B, S, d = hidden.shape
        q, k, gate_logits = self._project(hidden, positions, valid)
        head_dim = d // self.num_heads
        q = q.reshape(B, S, self.num_heads, head_dim).transpose(1, 2)
        k = k.reshape(B, S, self.num_heads, head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(head_dim)  # (B, H, S, S)
        later = torch.ones(S, S, dtype=torch.bool, device=hidden.device).triu(1)
        allowed = later & valid[:, :, None] & valid[:, None, :]  # (B, S, S)
        with torch.autocast(hidden.device.type, enabled=False):
            heads = F.softmax(scores.masked_fill(~allowed[:, None], NEG), dim=-1)
            gate = F.softmax(gate_logits.float(), dim=-1)  # (B, S, H)
            mixed = (heads * gate.transpose(1, 2)[..., None]).sum(1)
        # Rows without an allowed successor (the last state, padding) came out uniform: zero them.
        return mixed * allowed


def _prepare(emission_logp, transition_logp):
    dtype = torch.promote_types(
        torch.promote_types(emission_logp.dtype, transition_logp.dtype), torch.float32
    )
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
        dtype = torch.promote_types(
            torch.promote_types(emission_logp.dtype, transition_logp.dtype), torch.float32
        )
        return dag_log_likelihood_from_probabilities(
            emission_logp.to(dtype).exp(), transition_logp.to(dtype).exp(), num_states, target_len
        )


def dag_log_likelihood_from_probabilities(
    emission: torch.Tensor,
    transition: torch.Tensor,
    num_states: torch.Tensor,
    target_len: torch.Tensor,
) -> torch.Tensor:
    """`dag_log_likelihood` with probabilities P_u(Y_i) and E(v -> u) (0 where not allowed).

    The scaled forward algorithm: alpha_i(u) = P_u(Y_i) sum_v alpha_{i-1}(v) E(v -> u), one
    batched vector-matrix product per target token, renormalized at every step with the log of
    the normalizers summed aside. It computes the same number as the log-space recursion, with
    one pass over E per step instead of several and a (B, S) tensor kept per step for the
    backward pass instead of a (B, S, S) one.
    """
    with torch.autocast(emission.device.type, enabled=False):
        dtype = torch.promote_types(
            torch.promote_types(emission.dtype, transition.dtype), torch.float32
        )
        emission, transition = emission.to(dtype), transition.to(dtype)
        B, S, T = emission.shape
        last_state = (num_states - 1).clamp(min=0)[:, None]
        alpha = F.pad(emission[:, :1, 0], (0, S - 1))  # only state 0 starts a path
        log_scale = torch.zeros(B, dtype=dtype, device=emission.device)
        reachable = torch.ones(B, dtype=torch.bool, device=emission.device)
        at_last_state, last_reachable = [], []
        for i in range(T):
            if i > 0:
                alpha = torch.bmm(alpha[:, None, :], transition)[:, 0] * emission[:, :, i]
            total = alpha.sum(1)
            reachable = reachable & (total > 0)
            # Where nothing is reachable any more the clamp keeps every gradient finite; those
            # molecules come out -inf below.
            total = total.clamp(min=_TINY)
            alpha = alpha / total[:, None]
            log_scale = log_scale + total.log()
            end = alpha.gather(1, last_state)[:, 0]
            at_last_state.append(log_scale + end.clamp(min=_TINY).log())
            last_reachable.append(reachable & (end > 0))
        pick = (target_len - 1).clamp(min=0)[:, None]
        result = torch.stack(at_last_state, dim=1).gather(1, pick)[:, 0]
        possible = torch.stack(last_reachable, dim=1).gather(1, pick)[:, 0]
        return result.masked_fill(~possible, float("-inf"))


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
