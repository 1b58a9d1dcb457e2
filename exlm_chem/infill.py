"""Infilling: several coherent, valid alternatives for masked fragments of a SMILES.

A template is a SMILES with masked spans: ``<mask:N>`` (or ``{N}``) for up to N tokens,
``<mask>`` (or ``{}``) for up to `DEFAULT_SPAN`. For each number of masks m from 1 to N, the
span becomes m ``<mask>`` tokens, which an ExLM model expands into k m states; a path through
the DAG of expanded states emits a filling (it may emit fewer tokens than it has states).
`decode_dag` searches the paths (a beam over (state, tokens so far), the paths that reach the
same state with the same tokens summed), so a filling comes from the transition matrix and
the emissions together: its tokens are chosen with each other. A plain MLM has one state per
mask and predicts each independently: `decode_mlm` gives the baseline through the same API,
every length from 1 to each span's maximum with a beam over the positions.

Candidates are assembled into SMILES, read by RDKit (canonical SMILES when valid),
deduplicated by molecule (their probabilities summed) and ranked: valid ones first, then by
log-probability.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .model import ExLMModel, load_model
from .model.exlm import BOS_ID, EOS_ID, MASK_ID, PAD_ID
from .model.expansion import expand_states
from .smiles import parse_smiles, quiet_rdkit, tokenize_smiles

DEFAULT_SPAN = 4  # tokens a bare <mask> or {} may be filled with
TOKENS_PER_STATE = 8  # the most probable tokens of each state that the search considers
BEAM_SIZE = 64
MAX_LENGTH_COMBINATIONS = 256  # of span lengths the MLM decoder tries
_SPAN = re.compile(r"<mask(?::([^<>]*))?>|\{(\d*)\}")


@dataclass(frozen=True)
class Template:
    """A SMILES with masked spans: the tokens around the spans, and each span's longest
    filling."""

    text: str
    pieces: tuple[tuple[str, ...], ...]  # tokens before, between and after the spans
    spans: tuple[int, ...]

    def assemble(self, fillings) -> str:
        parts = [*self.pieces[0]]
        for filling, piece in zip(fillings, self.pieces[1:]):
            parts += [*filling, *piece]
        return "".join(parts)

    def tokens(self, lengths) -> list[str]:
        """The model's input: the pieces with ``lengths[j]`` masks in span j."""
        out = list(self.pieces[0])
        for length, piece in zip(lengths, self.pieces[1:]):
            out += ["<mask>"] * length + list(piece)
        return out


@dataclass(frozen=True)
class Candidate:
    rank: int
    smiles: str  # RDKit canonical SMILES when valid, else the text as assembled
    fillings: tuple[str, ...]  # what fills each span (the most probable way to this molecule)
    log_probability: float  # of this molecule: the fillings that give it, summed
    valid: bool


def parse_template(text: str, max_length: int | None = None) -> Template:
    """A template from text; InputError for a template with no mask, unbalanced parentheses
    or unpaired ring bonds outside the masks, a text the SMILES regex cannot split, or one
    longer (with its spans full) than ``max_length`` tokens."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("empty template: give a SMILES with masked spans, e.g. c1ccc(<mask:3>)cc1")
    text = text.strip()
    pieces, spans, position = [], [], 0
    for match in _SPAN.finditer(text):
        pieces.append(text[position : match.start()])
        size = match.group(1) or match.group(2)
        try:
            spans.append(int(size) if size else DEFAULT_SPAN)
        except ValueError:
            raise InputError(
                f"template {text!r}: {match.group(0)} is not <mask:N> with N a whole number"
            ) from None
        position = match.end()
    pieces.append(text[position:])
    if not spans:
        raise InputError(
            f"template {text!r} has no masked span: mark one with <mask:N> (up to N tokens), "
            "<mask> or {}"
        )
    if min(spans) < 1:
        raise InputError(f"template {text!r}: a span needs room for at least 1 token")
    try:
        tokens = [tuple(tokenize_smiles(piece)) if piece else () for piece in pieces]
    except ValueError as exc:
        raise InputError(f"template {text!r}: {exc}") from None
    outside = [t for piece in tokens for t in piece]
    if outside.count("(") != outside.count(")"):
        raise InputError(f"template {text!r}: unbalanced parentheses outside the masks")
    depth = 0
    for token in outside:
        depth += {"(": 1, ")": -1}.get(token, 0)
        if depth < 0:
            raise InputError(f"template {text!r}: ')' before its '(' outside the masks")
    rings = [t for t in outside if t.isdigit() or t.startswith("%")]
    unpaired = sorted({t for t in rings if rings.count(t) % 2})
    if unpaired:
        raise InputError(
            f"template {text!r}: ring bond {', '.join(unpaired)} opened but not closed outside "
            "the masks"
        )
    total = len(outside) + sum(spans) + 2
    if max_length is not None and total > max_length:
        raise InputError(
            f"template {text!r} needs {total} tokens with its spans full; the model reads at "
            f"most {max_length}"
        )
    return Template(text, tuple(tokens), tuple(spans))


def _content_only(log_probs: torch.Tensor, tokenizer) -> torch.Tensor:
    """A copy of log P(token) (..., V) with the special tokens excluded from fillings."""
    content = log_probs.clone()
    content[..., : tokenizer.unk_id + 1] = -math.inf  # pad, <s>, </s>, <mask>, <unk>
    return content


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def _length_combinations(template: Template) -> list[tuple[int, ...]]:
    """Every number of masks per span from 1 to its maximum (capped)."""
    combinations = itertools.product(*(range(1, s + 1) for s in template.spans))
    return list(itertools.islice(combinations, MAX_LENGTH_COMBINATIONS))


def _encode_length_combinations(model: ExLMModel, template: Template):
    """The span-length combinations of ``template`` and their padded ids on the model's
    device, one row per combination."""
    combinations = _length_combinations(template)
    tokens = [template.tokens(c) for c in combinations]
    ids, _ = model.tokenizer.encode_tokens_with_report(tokens)
    return combinations, ids.to(next(model.parameters()).device)


def decode_dag(
    model: ExLMModel, template: Template, beam_size: int = BEAM_SIZE
) -> dict[tuple, float]:
    """Fillings of an ExLM model's DAG: {tuple of token tuples per span: log-probability}.

    Every number of masks from 1 to each span's maximum is tried (pretrained with one mask per
    masked token, the model fills m masks with about m tokens), as `decode_mlm` tries every
    length; a filling's probabilities under the different numbers of masks are summed."""
    tokenizer = model.tokenizer
    combinations, ids = _encode_length_combinations(model, template)
    with torch.inference_mode():
        batch = expand_states(ids, model.config.k, model.expand_ids, PAD_ID)
        hidden = model.encoder(batch.ids, batch.p1, batch.p2, batch.valid)
        dag = model.dag_states(hidden, batch.expanded)
        states, state_valid, transition = dag.states, dag.valid, dag.transition
        content = _content_only(dag.log_probs, tokenizer)
        top_lp, top_id = content.topk(TOKENS_PER_STATE, dim=-1)
        log_transition = transition.clamp(min=1e-30).log().masked_fill(transition == 0, -math.inf)
        source = batch.p1.gather(1, states)  # each state's token in the input
    finished: dict[tuple, float] = {}
    for row, lengths in enumerate(combinations):
        size = int(state_valid[row].sum())
        # Each state's span: <s> copies belong to the first, </s> copies to the last.
        row_ids = ids[row].cpu().numpy()
        span_of_token = np.zeros(len(row_ids), dtype=np.int64)
        span_of_token[row_ids == MASK_ID] = np.repeat(np.arange(len(lengths)), lengths)
        span_of_token[row_ids == EOS_ID] = len(lengths) - 1
        found = _search_paths(
            log_transition[row, :size, :size].cpu().numpy(),
            top_lp[row, :size].cpu().numpy(),
            top_id[row, :size].cpu().numpy(),
            span_of_token[source[row, :size].cpu().numpy()],
            float(dag.log_probs[row, 0, BOS_ID]),
            float(dag.log_probs[row, size - 1, EOS_ID]),
            np.array(lengths),
            beam_size,
        )
        for emitted, lp in found.items():
            filling = _by_span(emitted, len(lengths), tokenizer)
            finished[filling] = _logaddexp(finished.get(filling, -math.inf), lp)
    return finished


def _search_paths(log_e, top_lp, top_id, span_of, start_lp, end_lp, spans, beam_size):
    """Beam search over paths from state 0 to the last state of one DAG: {((span, token id),
    ...): log-probability}. A hypothesis is (state, tokens so far); the paths that reach the
    same hypothesis are summed (the forward algorithm within the beam)."""
    last = len(span_of) - 1
    beam = {(0, ()): start_lp}
    finished: dict[tuple, float] = {}
    for _ in range(int(spans.sum())):
        grown: dict[tuple, float] = {}
        for (u, emitted), lp in beam.items():
            counts = np.bincount([j for j, _ in emitted], minlength=len(spans))
            empty = np.flatnonzero(counts == 0)
            first_empty = empty[0] if len(empty) else len(spans)
            v = np.arange(u + 1, last)
            j = span_of[v]
            # Not into a full span, nor past a span that would stay empty.
            allowed = (counts[j] < spans[j]) & (j <= first_empty)
            scores = lp + log_e[u, v][:, None] + top_lp[v]
            scores[~allowed] = -math.inf
            flat = scores.ravel()
            keep = np.argpartition(-flat, beam_size)[:beam_size] if flat.size > beam_size else None
            for index in np.flatnonzero(np.isfinite(flat)) if keep is None else keep:
                if not np.isfinite(flat[index]):
                    continue
                row, column = divmod(int(index), top_lp.shape[1])
                key = (int(v[row]), (*emitted, (int(j[row]), int(top_id[v[row], column]))))
                grown[key] = _logaddexp(grown.get(key, -math.inf), float(flat[index]))
        beam = dict(sorted(grown.items(), key=lambda item: -item[1])[:beam_size])
        for (u, emitted), lp in beam.items():
            if len({j for j, _ in emitted}) == len(spans):
                total = lp + log_e[u, last] + end_lp
                finished[emitted] = _logaddexp(finished.get(emitted, -math.inf), total)
        if not beam:
            break
    return finished


def _by_span(emitted, n_spans: int, tokenizer) -> tuple:
    return tuple(
        tuple(tokenizer.id_to_token[t] for j, t in emitted if j == span) for span in range(n_spans)
    )


def decode_mlm(
    model: ExLMModel, template: Template, beam_size: int = BEAM_SIZE
) -> dict[tuple, float]:
    """Fillings of a plain MLM (or any model read one state per mask): every combination of
    span lengths up to each span's maximum, a beam over the masked positions of each."""
    if model.config.k != 1:
        raise InputError("decode_mlm reads one state per mask: use it with a plain MLM")
    tokenizer = model.tokenizer
    combinations, ids = _encode_length_combinations(model, template)
    with torch.inference_mode():
        batch = expand_states(ids, 1, model.expand_ids, PAD_ID)  # k = 1: nothing expands
        hidden = model.encoder(batch.ids, batch.p1, batch.p2, batch.valid)
        log_probs = F.log_softmax(model.token_logits(hidden).float(), dim=-1)
        content = _content_only(log_probs, tokenizer)
    finished: dict[tuple, float] = {}
    for row, lengths in enumerate(combinations):
        positions = (ids[row] == MASK_ID).nonzero()[:, 0].tolist()
        top_lp, top_id = content[row, positions].topk(TOKENS_PER_STATE, dim=-1)
        beam = [((), 0.0)]
        for p in range(len(positions)):
            options = [
                ((*seq, token), lp + token_lp)
                for seq, lp in beam
                for token, token_lp in zip(top_id[p].tolist(), top_lp[p].tolist())
            ]
            beam = sorted(options, key=lambda item: -item[1])[:beam_size]
        bounds = np.cumsum((0, *lengths))
        for seq, lp in beam:
            filling = tuple(
                tuple(tokenizer.id_to_token[t] for t in seq[bounds[j] : bounds[j + 1]])
                for j in range(len(lengths))
            )
            finished[filling] = _logaddexp(finished.get(filling, -math.inf), lp)
    return finished


def rank_candidates(
    template: Template, fillings: dict[tuple, float], n: int, valid_only: bool = False
) -> list[Candidate]:
    """The n best molecules: assembled, read by RDKit, deduplicated (probabilities summed),
    valid ones first, then by log-probability."""
    from rdkit import Chem

    molecules: dict[str, list] = {}  # smiles -> [log-probability, best fillings, best lp, valid]
    with quiet_rdkit():
        for filling, lp in fillings.items():
            text = template.assemble(filling)
            mol = parse_smiles(text)
            valid = mol is not None
            if valid:
                text = Chem.MolToSmiles(mol)
            entry = molecules.setdefault(text, [-math.inf, None, -math.inf, valid])
            entry[0] = _logaddexp(entry[0], lp)
            if lp > entry[2]:
                entry[1], entry[2] = filling, lp
    ordered = sorted(molecules.items(), key=lambda item: (not item[1][3], -item[1][0]))
    if valid_only:
        ordered = [item for item in ordered if item[1][3]]
    return [
        Candidate(rank, smiles, tuple("".join(f) for f in best), float(lp), valid)
        for rank, (smiles, (lp, best, _, valid)) in enumerate(ordered[:n], start=1)
    ]


def infill(
    template: str,
    model: ExLMModel | str | None = None,
    n: int = 10,
    beam_size: int = BEAM_SIZE,
    valid_only: bool = False,
    device=None,
) -> list[Candidate]:
    """Up to ``n`` candidate molecules for the masked spans of ``template``, best first.

    model: the default model (None), a model folder or a loaded model; an ExLM model decodes
    its DAG of expanded states, a plain MLM each mask independently (every length tried).
    valid_only: drop the candidates RDKit cannot read (they are ranked last otherwise).
    """
    if not isinstance(n, int) or n < 1:
        raise InputError(f"n must be a whole number of at least 1, not {n!r}")
    if beam_size < 1:
        raise InputError(f"beam size must be at least 1, not {beam_size}")
    model = load_model(model, device).eval()
    if model.config.objective == "descriptors":
        raise InputError(
            f"{model.name or 'the model'}: trained on descriptors alone, its token head never "
            "learned to fill masks; infill needs an exlm or mlm model"
        )
    parsed = parse_template(template, model.config.max_length)
    decode = decode_dag if model.transition_head is not None else decode_mlm
    return rank_candidates(parsed, decode(model, parsed, max(beam_size, n)), n, valid_only)
