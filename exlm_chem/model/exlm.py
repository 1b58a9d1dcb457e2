"""The ExLM model: pretraining loss (ExLM or plain MLM) and the embedding forward."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import defaults
from ..errors import InputError
from ..tokenizer import SmilesTokenizer
from ..tokenizer_json import BOS_ID, EOS_ID, MASK_ID, PAD_ID
from .config import ExLMConfig
from .dag import TransitionHead, dag_best_path, dag_log_likelihood_from_probabilities
from .encoder import Encoder
from .expansion import choose_mask_positions, expand_states, pack_selected

UNTRAINED_SEED = 0  # the weights of the untrained control network
# The molecule vector the descriptor head reads in pretraining: the default read-out, so that
# the vector users embed is the one trained to carry the descriptors.
DESCRIPTOR_READOUT = defaults.POOLING
# The read-outs of a molecule vector; combined ones sit side by side, always in this order.
POOLINGS = ("mean", "cls", "layers", "mean+cls", "mean+layers", "cls+layers", "mean+cls+layers")


class LMHead(nn.Module):
    """RoBERTa-style token prediction: dense, GELU, LayerNorm, then the tied embedding and a
    bias."""

    def __init__(self, config: ExLMConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        x = self.norm(F.gelu(self.dense(hidden)))
        return F.linear(x, embedding_weight.to(x.dtype), self.bias.to(x.dtype))


class DescriptorHead(nn.Module):
    """Regression of a molecule's scaled RDKit descriptors from its vector: dense, GELU,
    LayerNorm, linear. Used in pretraining only; embedding never reads it."""

    def __init__(self, config: ExLMConfig):
        super().__init__()
        width = config.hidden_size * len(DESCRIPTOR_READOUT.split("+"))
        self.dense = nn.Linear(width, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.descriptors)

    def forward(self, vector: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(F.gelu(self.dense(vector))))


@dataclass
class PretrainOutput:
    loss: torch.Tensor  # scalar: the token loss plus the weighted descriptor loss
    molecule_loss: torch.Tensor  # (B,) per-molecule loss, possibly inf for ExLM
    num_dropped: int | torch.Tensor  # molecules whose loss was not finite (a 0-d tensor: no sync)
    token_loss: torch.Tensor | None = None  # scalar: mean of the finite per-molecule token losses
    descriptor_loss: torch.Tensor | None = None  # scalar: masked mean squared error
    predictions: torch.Tensor | None = None  # (B, M_max) predicted tokens at the masked positions
    targets: torch.Tensor | None = None  # (B, M_max) original tokens at the masked positions
    target_valid: torch.Tensor | None = None  # (B, M_max)


@dataclass
class DagStates:
    states: torch.Tensor  # (B, S) positions of the expanded states in the hidden states
    valid: torch.Tensor  # (B, S) False for padding
    log_probs: torch.Tensor  # (B, S, V) each state's token log-probabilities
    transition: torch.Tensor  # (B, S, S) the learned transition matrix


@dataclass
class EmbeddingOutput:
    hidden: torch.Tensor  # (B, N, d)
    token_states: torch.Tensor  # (B, N) True for the states of real tokens (not <s>, </s>, padding)
    valid: torch.Tensor  # (B, N) True for non-padding states
    pooled: torch.Tensor | None = None  # (B, d)


class ExLMModel(nn.Module):
    """Encoder, token-prediction head and (for ExLM) the transition head."""

    def __init__(self, config: ExLMConfig, tokenizer: SmilesTokenizer | None = None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.name: str | None = None  # a shipped model's name or the folder it was loaded from
        self.encoder = Encoder(config)
        self.lm_head = LMHead(config)
        self.transition_head = (
            TransitionHead(config.hidden_size, config.transition_heads, config.max_states)
            if config.objective == "exlm"
            else None
        )
        self.descriptor_head = DescriptorHead(config) if config.descriptors else None
        self.register_buffer(
            "expand_ids", torch.tensor([BOS_ID, EOS_ID, MASK_ID]), persistent=False
        )
        self.register_buffer(
            "special_ids", torch.tensor([PAD_ID, BOS_ID, EOS_ID, MASK_ID]), persistent=False
        )
        self.apply(self.init_weights)

    @staticmethod
    def init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def reinitialized(self, seed: int = UNTRAINED_SEED) -> ExLMModel:
        """A model of the same shape and tokenizer with fresh weights drawn with ``seed``: the
        untrained control that shows what pretraining adds (the same weights in the frozen
        and the fine-tuning benchmarks). Leaves torch's RNG seeded."""
        torch.manual_seed(seed)
        model = ExLMModel(self.config, self.tokenizer).eval()
        model.name = f"untrained {self.name}" if self.name else None
        return model

    def token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden, self.encoder.embed_tokens.weight)

    # -- pretraining ------------------------------------------------------------------------

    def choose_masks(
        self, ids: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Mask positions for pretraining: rate ``config.mask_rate``, at least one per molecule
        (none for the descriptors objective)."""
        if self.config.objective == "descriptors":
            return torch.zeros_like(ids, dtype=torch.bool)
        # Drawn where ``ids`` is (the CPU in pretraining, with a CPU generator): the same masks
        # whatever device the model runs on.
        return choose_mask_positions(
            ids, self.config.mask_rate, self.special_ids.to(ids.device), generator
        )

    def forward(
        self,
        ids: torch.Tensor,
        mask_positions: torch.Tensor,
        with_predictions: bool = False,
        state_multiple: int = 1,
        descriptors: torch.Tensor | None = None,
    ) -> PretrainOutput:
        """Pretraining loss of a padded batch ``ids`` (B, L) with ``mask_positions`` (B, L)
        masked; the expanded states padded to a multiple of ``state_multiple``.

        descriptors: (B, D) scaled descriptor targets, NaN where unknown, for a model with a
        descriptor head; its masked mean squared error is added ``descriptor_weight`` times.
        """
        masked_ids = ids.masked_fill(mask_positions, MASK_ID)
        batch = expand_states(masked_ids, self.config.k, self.expand_ids, PAD_ID, state_multiple)
        with_head = self.descriptor_head is not None and descriptors is not None
        if self.config.objective == "descriptors" and not with_head:
            raise ValueError("the descriptors objective needs descriptor targets")
        layers = None
        if with_head and "layers" in DESCRIPTOR_READOUT:
            layers = self.encoder(batch.ids, batch.p1, batch.p2, batch.valid, every_layer=True)
            hidden = layers[-1]
        else:
            hidden = self.encoder(batch.ids, batch.p1, batch.p2, batch.valid)
        if self.config.objective == "descriptors":
            output = None
        elif self.transition_head is None:
            output = self._mlm_loss(hidden, ids, mask_positions, with_predictions)
        else:
            output = self._exlm_loss(hidden, batch.expanded, ids, mask_positions, with_predictions)
        if not with_head:
            return output
        # Read from the unmasked tokens' states, as the embedding read-out is.
        vector = pool_states(hidden, batch.valid & ~batch.expanded, DESCRIPTOR_READOUT, layers)
        known = torch.isfinite(descriptors)
        error = (self.descriptor_head(vector).float() - descriptors.nan_to_num()).square() * known
        descriptor_loss = error.sum() / known.sum().clamp(min=1)
        if output is None:
            molecule_loss = error.sum(1) / known.sum(1).clamp(min=1)
            return PretrainOutput(descriptor_loss, molecule_loss, 0, None, descriptor_loss)
        output.token_loss = output.loss
        output.descriptor_loss = descriptor_loss
        output.loss = output.loss + self.config.descriptor_weight * descriptor_loss
        return output

    def _mlm_loss(self, hidden, ids, mask_positions, with_predictions) -> PretrainOutput:
        # k = 1: states and tokens coincide, so the masked positions index the hidden states
        # (past the longest molecule of the batch there are no states, only padding).
        ids, mask_positions = ids[:, : hidden.shape[1]], mask_positions[:, : hidden.shape[1]]
        rows = mask_positions.nonzero()[:, 0]
        logits = self.token_logits(hidden[mask_positions]).float()
        token_loss = F.cross_entropy(logits, ids[mask_positions], reduction="none")
        counts = mask_positions.sum(1).to(token_loss.dtype)
        molecule_loss = torch.zeros_like(counts).index_add_(0, rows, token_loss) / counts.clamp(
            min=1
        )
        output = PretrainOutput(molecule_loss.mean(), molecule_loss, 0)
        if with_predictions:
            index, valid = pack_selected(mask_positions)
            predicted = torch.zeros_like(ids)
            predicted[mask_positions] = logits.argmax(-1)
            output.predictions = predicted.gather(1, index)
            output.targets, output.target_valid = ids.gather(1, index), valid
        return output

    def dag_states(self, hidden: torch.Tensor, expanded: torch.Tensor) -> DagStates:
        """The DAG over the expanded states of an encoded batch: only they take part,
        gathered to the front, with their token log-probabilities and transition matrix."""
        states, state_valid = pack_selected(expanded)  # (B, S)
        state_hidden = hidden.gather(1, states[..., None].expand(-1, -1, hidden.shape[-1]))
        log_probs = F.log_softmax(self.token_logits(state_hidden).float(), dim=-1)  # (B, S, V)
        transition = self.transition_head(state_hidden, states, state_valid)
        return DagStates(states, state_valid, log_probs, transition)

    def _exlm_loss(self, hidden, expanded, ids, mask_positions, with_predictions) -> PretrainOutput:
        dag = self.dag_states(hidden, expanded)
        states, state_valid, log_probs, transition = (
            dag.states,
            dag.valid,
            dag.log_probs,
            dag.transition,
        )
        # Target Y = [<s>, masked tokens in order, </s>].
        in_target = mask_positions | (ids == BOS_ID) | (ids == EOS_ID)
        target_index, target_valid = pack_selected(in_target)
        targets = ids.gather(1, target_index)  # (B, T)
        emission = log_probs.gather(
            2, targets[:, None, :].expand(-1, states.shape[1], -1)
        ).exp()  # (B, S, T)
        num_states, target_len = state_valid.sum(1), target_valid.sum(1)
        log_likelihood = dag_log_likelihood_from_probabilities(
            emission, transition, num_states, target_len
        )
        molecule_loss = -log_likelihood / target_len
        finite = torch.isfinite(molecule_loss)
        # The mean of the finite losses (0 when none is), without asking the device which.
        kept = torch.where(finite, molecule_loss, torch.zeros_like(molecule_loss))
        loss = kept.sum() / finite.sum().clamp(min=1)
        output = PretrainOutput(loss, molecule_loss, (~finite).sum())
        if with_predictions:
            # Decode without looking at the targets: the best path of M + 2 states, scoring
            # each state by its most probable token; its inner states predict the masked tokens.
            best_logp, best_token = log_probs.max(-1)  # (B, S)
            path = dag_best_path(
                best_logp[..., None].expand(-1, -1, targets.shape[1]),
                transition.log(),
                num_states,
                target_len,
            )
            predicted = best_token.gather(1, path)  # (B, T)
            inner = target_valid.clone()
            inner[:, 0] = False
            inner[torch.arange(len(ids), device=ids.device), target_len - 1] = False
            index, valid = pack_selected(inner)
            output.predictions = predicted.gather(1, index)
            output.targets, output.target_valid = targets.gather(1, index), valid
        return output

    # -- embedding --------------------------------------------------------------------------

    def embed_states(
        self, ids: torch.Tensor, pooling: str | None = defaults.POOLING
    ) -> EmbeddingOutput:
        """Hidden states of unmasked molecules; ``<s>`` and ``</s>`` expanded as in pretraining.

        pooling: a read-out of `pool_states` (e.g. ``mean``, ``cls``, ``mean+cls``), or None.
        """
        batch = expand_states(ids, self.config.k, self.expand_ids, PAD_ID)
        layers = None
        if pooling is not None and "layers" in check_pooling(pooling).split("+"):
            layers = self.encoder(batch.ids, batch.p1, batch.p2, batch.valid, every_layer=True)
            hidden = layers[-1]
        else:
            hidden = self.encoder(batch.ids, batch.p1, batch.p2, batch.valid)
        token_states = batch.valid & ~batch.expanded
        output = EmbeddingOutput(hidden, token_states, batch.valid)
        if pooling is not None:
            output.pooled = pool_states(hidden, token_states, pooling, layers)
        return output


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    return pooling


def pooled_size(hidden_size: int, pooling: str) -> int:
    """The length of a molecule vector of a read-out: ``mean+cls`` is two vectors side by side."""
    return hidden_size * len(check_pooling(pooling).split("+"))


def vector_names(hidden_size: int, pooling: str) -> list[str]:
    """Names of a read-out's numbers, as columns and feature names: ``exlm_mean_0`` ..."""
    return [
        f"exlm_{part}_{i}" for part in check_pooling(pooling).split("+") for i in range(hidden_size)
    ]


def pool_states(
    hidden: torch.Tensor,
    token_states: torch.Tensor,
    pooling: str,
    layers: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Molecule vectors from hidden states (B, N, d), in float32.

    ``mean``: the mean over the real-token states; ``cls``: the first ``<s>`` state (in ExLM
    it starts every DAG path and emits ``<s>``, so it is trained); ``layers``: the ``mean`` of
    every layer's states (the argument ``layers``: the token embedding's and each block's, each
    through the final LayerNorm) averaged over the layers, since the middle layers of a
    pretrained encoder often carry more of a molecule's structure than its last, which is
    shaped for token prediction.
    Combined read-outs (``mean+cls``) sit side by side (B, 2d).
    """
    weights = token_states.float()[..., None]

    def token_mean(states):
        return (states.float() * weights).sum(1) / weights.sum(1).clamp(min=1)

    parts = []
    for part in check_pooling(pooling).split("+"):
        if part == "cls":
            parts.append(hidden[:, 0].float())
        elif part == "mean":
            parts.append(token_mean(hidden))
        else:
            if layers is None:
                raise ValueError("the layers read-out needs every layer's states")
            parts.append(torch.stack([token_mean(states) for states in layers]).mean(0))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
