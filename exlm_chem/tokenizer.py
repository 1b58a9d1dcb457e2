"""The vocabulary, and encoding molecules to padded id tensors.

`SmilesTokenizer` saves to and loads from the Hugging Face `tokenizer.json` format (a WordLevel
model behind a regex Split pre-tokenizer), so `tokenizers.Tokenizer.from_file` reads our files.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from . import defaults
from .errors import InputError
from .molecule_files import read_molecules
from .smiles import (
    ELEMENT_TOKENS,
    SMILES_REGEX,
    atom_fallbacks,
    canonicalize_smiles,
    randomize_smiles,
    regex_tokens,
    tokenize_smiles,
)
from .tokenizer_json import SELFIES_REGEX, SPECIAL_TOKENS, tokenizer_json

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# For whole batches joined by newlines: the same tokens as SMILES_REGEX with the single
# characters folded into one class (faster), plus the newline as a separator that no bracket
# atom may swallow.
_SMILES_BATCH_RE = re.compile(
    r"\[[^\]\n]+]|Br?|Cl?|>>?|%[0-9]{2}|[NOSPFIbcnosp()=#+\\/:~@?*$.0-9\n-]"
)
_SELFIES_RE = re.compile(SELFIES_REGEX)


class EncodingReport(NamedTuple):
    """What encoding lost, per SMILES of a batch."""

    unknown_tokens: np.ndarray  # int: tokens outside the vocabulary, read as <unk>
    truncated: np.ndarray  # bool: cut to the tokenizer's max_length
    fallback_tokens: np.ndarray  # int: atoms outside the vocabulary read as a nearby known token


class _TokenIds(dict):
    """Token -> id, filled in on first sight for tokens outside the vocabulary: the id of the
    nearest known stand-in (see `atom_fallbacks`) coded as ``-(id + 2)``, or ``<unk>``'s id."""

    def __init__(self, token_to_id: dict[str, int], unk_id: int):
        super().__init__(token_to_id)
        self["\n"] = -1  # the row separator of batch encoding
        self.unk_id = unk_id

    def __missing__(self, token: str) -> int:
        known = next((self[c] for c in atom_fallbacks(token) if c in self and self[c] >= 0), None)
        self[token] = self.unk_id if known is None else -(known + 2)
        return self[token]


class SmilesTokenizer:
    """Vocabulary and encoder for SMILES (or SELFIES) strings.

    Ids 0-4 are the special tokens ``<pad> <s> </s> <mask> <unk>``. A sequence is encoded as
    ``<s> t1 ... tn </s>``, truncated to ``max_length`` ids (special tokens included).
    Tokens outside the vocabulary become ``<unk>``; both unknown tokens and truncations are
    counted in ``unknown_count`` and ``truncated_count``.

    Parameters
    ----------
    tokens: the vocabulary in id order; special tokens are put first if missing.
    max_length: the longest encoded sequence, special tokens included.
    mode: ``"smiles"`` (atom-level regex) or ``"selfies"`` (SMILES converted with `selfies`).
    canonicalize: rewrite each SMILES to RDKit's canonical form before tokenizing.
    randomize: rewrite each SMILES to a random equivalent SMILES (training augmentation).
    """

    def __init__(
        self,
        tokens: Sequence[str],
        *,
        max_length: int = defaults.MAX_LENGTH,
        mode: str = "smiles",
        canonicalize: bool = False,
        randomize: bool = False,
    ):
        if mode not in ("smiles", "selfies"):
            raise InputError(f"tokenizer mode must be 'smiles' or 'selfies', not {mode!r}")
        if max_length < 3:
            raise InputError(f"max_length must be at least 3, not {max_length}")
        ordered = list(SPECIAL_TOKENS) + [t for t in tokens if t not in SPECIAL_TOKENS]
        if len(set(ordered)) != len(ordered):
            raise InputError("the vocabulary lists a token twice")
        self.id_to_token = ordered
        self.token_to_id = {t: i for i, t in enumerate(ordered)}
        self._ids = _TokenIds(self.token_to_id, unk_id=4)
        self.max_length = max_length
        self.mode = mode
        self.canonicalize = canonicalize
        self.randomize = randomize
        self.pad_id, self.bos_id, self.eos_id, self.mask_id, self.unk_id = range(5)
        self.unknown_count = 0
        self.fallback_count = 0
        self.truncated_count = 0

    # -- building -------------------------------------------------------------------------

    @classmethod
    def from_corpus(cls, smiles: Iterable[str], min_count: int = 1, **options) -> SmilesTokenizer:
        """Build the vocabulary from a corpus (see `from_counts`).

        SMILES that cannot be tokenized are skipped (and counted in a log message).
        """
        probe = cls([], **options)
        counts: Counter[str] = Counter()
        skipped = 0
        for s in smiles:
            try:
                counts.update(probe.tokenize(s))
            except ValueError:
                skipped += 1
        if skipped:
            logger.warning("vocabulary: skipped %d SMILES that could not be tokenized", skipped)
        return cls.from_counts(counts, min_count, **options)

    @classmethod
    def from_counts(cls, counts: dict[str, int], min_count: int = 1, **options) -> SmilesTokenizer:
        """A vocabulary of the tokens seen at least ``min_count`` times, most frequent first,
        then one token per element (``[Sn]``) that is not among them: an element the corpus
        never saw still gets a token of its own (for SMILES; SELFIES have no such tokens)."""
        if min_count < 1:
            raise InputError(f"the minimum token count must be at least 1, not {min_count}")
        kept = [t for t, c in counts.items() if c >= min_count]
        kept.sort(key=lambda t: (-counts[t], t))  # frequent first: stable, readable ids
        if options.get("mode", "smiles") == "smiles":
            kept += [t for t in ELEMENT_TOKENS if t not in set(kept)]
        return cls(kept, **options)

    @property
    def reads_stereo(self) -> bool:
        """Whether the vocabulary has stereo tokens (``@``, ``/``, ``\\``)."""
        return any("@" in token or token in ("/", "\\") for token in self.id_to_token)

    def reading(self, token: str) -> str:
        """The token the model reads for ``token``: itself, its fallback, or ``<unk>``."""
        code = self._ids[token]
        return self.id_to_token[-code - 2 if code <= -2 else code]

    def fallback_of(self, token: str) -> str | None:
        """The known token an atom outside the vocabulary is read as; None for a token in the
        vocabulary or one read as ``<unk>``."""
        code = self._ids[token]
        return self.id_to_token[-code - 2] if code <= -2 else None

    def __len__(self) -> int:
        return len(self.id_to_token)

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    # -- tokenizing and encoding ----------------------------------------------------------

    def preprocess(self, smiles: str) -> str:
        """Apply the optional RDKit canonicalization or randomization."""
        if self.randomize:
            return randomize_smiles(smiles)
        if self.canonicalize:
            return canonicalize_smiles(smiles)
        return smiles

    def tokenize(self, smiles: str) -> list[str]:
        """Tokens of one SMILES (SELFIES tokens in ``selfies`` mode), without special tokens."""
        smiles = self.preprocess(smiles)
        if self.mode == "smiles":
            return tokenize_smiles(smiles)
        import selfies

        try:
            encoded = selfies.encoder(smiles)
        except selfies.EncoderError as exc:
            raise ValueError(f"cannot convert SMILES {smiles!r} to SELFIES: {exc}") from None
        return regex_tokens(encoded, _SELFIES_RE, "SELFIES")

    def _token_lists(self, smiles: Sequence[str]) -> list[list[str]]:
        return [self.tokenize(s) for s in smiles]

    def _flat_ids(self, smiles: Sequence[str]) -> np.ndarray | None:
        """Ids of all tokens of the batch, rows separated by -1, from a single regex pass.

        This is the fast path for plain SMILES; None where it does not apply.
        """
        if self.mode != "smiles" or self.randomize or self.canonicalize or not smiles:
            return None
        text = "\n".join(smiles)
        if text.count("\n") != len(smiles) - 1:
            return None  # a SMILES holds a newline itself
        tokens = _SMILES_BATCH_RE.findall(text)
        if len("".join(tokens)) != len(text):
            for s in smiles:
                tokenize_smiles(s)  # raises, naming the character and position
        return np.fromiter(map(self._ids.__getitem__, tokens), dtype=np.int64, count=len(tokens))

    def encode(self, smiles: str) -> list[int]:
        """Ids of ``<s> tokens </s>`` for one SMILES, truncated to ``max_length``."""
        ids = self.encode_batch([smiles])[0]
        return ids[ids != self.pad_id].tolist()

    def encode_batch(self, smiles: Sequence[str], max_length: int | None = None) -> torch.Tensor:
        """Encode SMILES to a (batch, longest) LongTensor padded with ``<pad>`` (id 0).

        Raises ValueError for a SMILES that cannot be tokenized.
        """
        return self.encode_batch_with_report(smiles, max_length)[0]

    def encode_batch_with_report(
        self, smiles: Sequence[str], max_length: int | None = None
    ) -> tuple[torch.Tensor, EncodingReport]:
        """`encode_batch`, and per SMILES how many tokens became ``<unk>`` and whether it was
        cut."""
        flat = self._flat_ids(smiles)
        if flat is None:
            return self.encode_tokens_with_report(self._token_lists(smiles), max_length)
        return self._encode_flat(flat, len(smiles), max_length or self.max_length)

    def encode_tokens_with_report(
        self, token_lists: Sequence[list[str]], max_length: int | None = None
    ) -> tuple[torch.Tensor, EncodingReport]:
        """As `encode_batch_with_report`, for molecules already tokenized."""
        id_lists = [[self._ids[t] for t in tokens] for tokens in token_lists]
        flat = np.fromiter(
            chain.from_iterable(chain(ids, (-1,)) for ids in id_lists),
            dtype=np.int64,
            count=sum(map(len, id_lists)) + len(id_lists),
        )[:-1]
        return self._encode_flat(flat, len(token_lists), max_length or self.max_length)

    def _encode_flat(
        self, flat: np.ndarray, batch: int, max_length: int
    ) -> tuple[torch.Tensor, EncodingReport]:
        """Pad ids given as one array with rows separated by -1 (see `_flat_ids`)."""
        limit = max_length - 2
        # Atoms read through a fallback are coded -(id + 2): note them, then use their id.
        fallback = flat <= -2
        flat = np.where(fallback, -flat - 2, flat)
        # Row of each flat entry, and its column once <s> takes column 0.
        separator = flat < 0
        row = np.cumsum(separator) - separator
        starts = np.concatenate([[0], np.flatnonzero(separator) + 1])
        column = np.arange(len(flat)) - starts[row] + 1
        is_token = ~separator
        lengths = np.bincount(row[is_token], minlength=batch)
        keep = is_token & (column <= limit)
        truncated = lengths > limit
        lengths = np.minimum(lengths, limit)
        # Unknown tokens are counted over the whole SMILES, the part cut off included.
        unknown = np.bincount(row[is_token & (flat == self.unk_id)], minlength=batch)
        fallbacks = np.bincount(row[fallback], minlength=batch)
        self.unknown_count += int(unknown.sum())
        self.fallback_count += int(fallbacks.sum())
        self.truncated_count += int(truncated.sum())
        out = np.full((batch, int(lengths.max(initial=0)) + 2), self.pad_id, dtype=np.int64)
        out[row[keep], column[keep]] = flat[keep]
        out[:, 0] = self.bos_id
        out[np.arange(batch), lengths + 1] = self.eos_id
        import torch  # here, so that reading the vocabulary (the CLI's defaults) stays light

        return torch.from_numpy(out), EncodingReport(unknown, truncated, fallbacks)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """The string of a sequence of ids (a SMILES; SELFIES are decoded back to SMILES)."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        specials = {self.pad_id, self.bos_id, self.eos_id}
        tokens = [self.id_to_token[i] for i in ids if not (skip_special_tokens and i in specials)]
        text = "".join(tokens)
        if self.mode == "selfies" and skip_special_tokens:
            import selfies

            return selfies.decoder(text)
        return text

    # -- saving and loading ---------------------------------------------------------------

    def to_dict(self) -> dict:
        """The Hugging Face ``tokenizer.json`` representation."""
        return tokenizer_json(self.id_to_token, self.max_length, self.mode)

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as one JSON file (atomically)."""
        from .outputs import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path, **options) -> SmilesTokenizer:
        """Read a tokenizer written by `save` (or any compatible WordLevel tokenizer.json)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            vocab = data["model"]["vocab"]
            pattern = data["pre_tokenizer"]["pattern"]["Regex"]
            max_length = (data.get("truncation") or {}).get("max_length", defaults.MAX_LENGTH)
        except FileNotFoundError:
            raise InputError(f"{path}: tokenizer file not found") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{path}: not a tokenizer.json file ({exc.__class__.__name__}: {exc})"
            ) from None
        if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
            raise InputError(f"{path}: model.vocab must map each token to its integer id")
        if pattern not in (SMILES_REGEX, SELFIES_REGEX):
            raise InputError(f"{path}: unknown pre-tokenizer pattern {pattern!r}")
        tokens = sorted(vocab, key=vocab.get)
        if tuple(tokens[:5]) != SPECIAL_TOKENS or [vocab[t] for t in tokens] != list(
            range(len(tokens))
        ):
            raise InputError(
                f"{path}: the vocabulary must hold ids 0..n-1 with {SPECIAL_TOKENS} first"
            )
        mode = "smiles" if pattern == SMILES_REGEX else "selfies"
        return cls(tokens, max_length=max_length, mode=mode, **options)


def tokenize_file(path, smiles_column: str | None = None, tokenizer: SmilesTokenizer | None = None):
    """Yield ``(record, tokens)`` for each molecule of a file, or ``(record, ids)`` with a
    tokenizer.

    A SMILES that cannot be tokenized raises InputError naming the file and row.
    """
    for record in read_molecules(path, smiles_column=smiles_column):
        try:
            yield (
                record,
                (tokenizer.encode(record.smiles) if tokenizer else tokenize_smiles(record.smiles)),
            )
        except ValueError as exc:
            raise InputError(f"{path}: row {record.row}: {exc}") from None
