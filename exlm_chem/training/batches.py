"""Length-bucketed batches that are a function of the seed, the epoch and the rank only.

Every epoch is a seeded permutation: rank r of N takes every N-th molecule of it, sorts
chunks of it by length and cuts them into batches of at most ``batch_tokens`` padded tokens.
A resumed run therefore repeats exactly what an uninterrupted one would do.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..smiles import randomize_smiles
from .corpus import PackedCorpus

CHUNK_BATCHES = 50  # batches per length-sorted chunk: long enough to bucket, short enough to mix


def epoch_batches(
    lengths: np.ndarray,
    epoch: int,
    seed: int,
    rank: int,
    world_size: int,
    batch_tokens: int,
    weights: np.ndarray | None = None,
    shape_bucket: int = 1,
) -> list[np.ndarray]:
    """The batches (arrays of corpus indices) of one rank in one epoch.

    A seeded permutation is split across ranks (disjoint), cut into chunks, each sorted by
    length and cut into batches of at most ``batch_tokens`` padded tokens; the batch order is
    then shuffled, so long and short batches alternate. ``weights``: how many times each
    molecule is drawn in the epoch on average (the integer part always, the fraction by a
    seeded coin), for per-source sampling. ``shape_bucket``: batches are sized for their
    longest molecule's length rounded up to a multiple of it (the length they are padded to).
    """
    rng = np.random.default_rng([seed, epoch])
    if weights is None:
        drawn = rng.permutation(len(lengths))
    else:
        copies = np.floor(weights).astype(np.int64) + (rng.random(len(weights)) < weights % 1)
        drawn = rng.permutation(np.repeat(np.arange(len(lengths)), copies))
    mine = drawn[rank::world_size]
    typical = max(
        1, batch_tokens // max(1, int(np.median(lengths[mine[:1000]])) if len(mine) else 1)
    )
    chunk_size = typical * CHUNK_BATCHES
    batches = []
    for start in range(0, len(mine), chunk_size):
        chunk = mine[start : start + chunk_size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        chunk_lengths = -(-lengths[chunk] // shape_bucket) * shape_bucket
        begin = 0
        while begin < len(chunk):
            end = begin + 1
            # Sorted ascending: the padded size of [begin, end) is (end - begin) * length[end - 1].
            while end < len(chunk) and (end + 1 - begin) * chunk_lengths[end] <= batch_tokens:
                end += 1
            batches.append(chunk[begin:end])
            begin = end
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


class BatchStream:
    """Endless batches of SMILES for one rank, from a position (epoch, batch index) that can be
    saved; with ``augment``, each SMILES rewritten as a random equivalent one, seeded by
    position."""

    def __init__(
        self,
        corpus: PackedCorpus,
        batch_tokens: int,
        seed: int,
        rank: int,
        world_size: int,
        augment: bool,
        weights: np.ndarray | None = None,
        epoch: int = 0,
        index: int = 0,
        shape_bucket: int = 1,
    ):
        self.corpus, self.batch_tokens, self.seed = corpus, batch_tokens, seed
        self.augment, self.weights = augment, weights
        self.rank, self.world_size = rank, world_size
        self.epoch, self.index = epoch, index
        self.shape_bucket = shape_bucket
        self._batches = None

    def position(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        return self.take()[1]

    def take(self) -> tuple[np.ndarray, list[str]]:
        """The next batch: its molecules' corpus indices and their SMILES."""
        if self._batches is None:
            self._batches = epoch_batches(
                self.corpus.lengths,
                self.epoch,
                self.seed,
                self.rank,
                self.world_size,
                self.batch_tokens,
                self.weights,
                self.shape_bucket,
            )
        if self.index >= len(self._batches):
            self.epoch, self.index, self._batches = self.epoch + 1, 0, None
            return self.take()
        indices = self._batches[self.index]
        self.index += 1
        smiles = self.corpus.smiles(indices)
        if self.augment:
            # Seeded by position, so a resumed run sees the same random SMILES.
            base = (self.seed * 1_000_003 + self.epoch * 7919 + self.index) % (2**31 - 1000)
            smiles = [randomize_smiles(s, seed=base + j) for j, s in enumerate(smiles)]
        return indices, smiles
