"""ExLMFeaturizer: ExLM embeddings as a DeepChem featurizer.

This module imports DeepChem at the top (the class must subclass DeepChem's), so
``exlm_chem`` loads it only when ``exlm_chem.ExLMFeaturizer`` is first used.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from . import defaults
from .embedding import embed_molecules, embed_workers
from .environment import import_deepchem_quietly
from .fingerprints import ECFP_BITS, check_fingerprint, fingerprint_block, hybrid
from .model import load_model, model_fingerprint, model_label, pooled_size
from .parallel import WorkerPool

import_deepchem_quietly()
from deepchem.feat import MolecularFeaturizer  # noqa: E402

logger = logging.getLogger(__name__)


def rows_for_deepchem(vectors: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A featurizer's output as DeepChem's loaders take it: the vectors as they are when every
    molecule is valid, else an object array with an empty array for each invalid one (the
    loaders drop those rows)."""
    if valid.all():
        return vectors
    return np.asarray([v if ok else np.array([]) for v, ok in zip(vectors, valid)], dtype=object)


class ExLMFeaturizer(MolecularFeaturizer):
    """One ExLM embedding per molecule, computed in length-sorted batches.

    Keeps DeepChem's contract: a molecule that cannot be featurized gives an empty array and a
    warning, so ``dc.data.CSVLoader`` and ``dc.molnet.load_*`` drop it as they do for their
    own featurizers.

    Parameters
    ----------
    model: a model directory, a loaded model, or None for the default model.
    pooling: the read-out: ``layers`` (every layer's mean over the token states, averaged over
    the layers; the default), ``mean`` (the last layer's), ``cls`` (the first ``<s>`` state)
    or several side by side (``mean+cls``).
    fingerprint: None, or ``"ecfp4"`` for the hybrid: the ExLM vector and the ECFP4 bits of
    the ECFP baseline side by side, each block of unit norm (see `exlm_chem.fingerprints`);
    ``"ecfp4-count"``: the same with Morgan counts.
    batch_size, device, precision, canonicalize: as in `exlm_chem.embed`.
    workers: processes preparing molecules (RDKit) while the model embeds (0: none; None: see
    `exlm_chem.embedding.embed_workers`). They start on the first call and are kept for the
    next ones (DeepChem's loaders featurize a file one shard at a time); `close` stops them.
    """

    def __init__(
        self,
        model=None,
        pooling: str = defaults.POOLING,
        batch_size: int | None = None,
        device=None,
        precision: str = defaults.PRECISION,
        canonicalize: bool = True,
        fingerprint: str | None = None,
        workers: int | None = None,
    ):
        self.model = model
        self.pooling = pooling
        self.fingerprint = check_fingerprint(fingerprint)
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.canonicalize = canonicalize
        self.workers = workers
        self._loaded = None
        self._pool = None
        self.progress = None  # an exlm_chem.progress.Progress that each call advances, if set
        # Molecules over all calls: DeepChem's loaders call featurize once per shard of a file.
        self.counts = Counter()

    def get_model(self):
        if self._loaded is None:
            self._loaded = load_model(self.model, self.device)
        return self._loaded

    def _workers(self) -> WorkerPool:
        if self._pool is None:
            device = next(self.get_model().parameters()).device
            self._pool = WorkerPool(embed_workers(device) if self.workers is None else self.workers)
        return self._pool

    def close(self) -> None:
        """Stops the worker processes, if any (they restart on the next call)."""
        if self._pool is not None:
            self._pool.close()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}  # processes do not travel

    def featurize(self, datapoints, log_every_n: int = 1000, **kwargs) -> np.ndarray:
        from rdkit import Chem

        if isinstance(datapoints, (str, Chem.Mol)):
            datapoints = [datapoints]
        smiles = list(datapoints)  # SMILES or RDKit molecules: both are read as they are
        model = self.get_model()
        result = embed_molecules(
            smiles,
            model,
            self.pooling,
            self.batch_size,
            self.precision,
            self.canonicalize,
            self._workers(),
        )
        valid = result.valid
        vectors = result.vectors
        if self.fingerprint:
            vectors = hybrid(vectors, fingerprint_block(self.fingerprint, smiles))
        self.counts.update(result.counts())
        if self.progress is not None:
            self.progress.update(len(smiles))
        summary = result.summary(model.config.max_length)
        if summary:
            logger.warning("ExLMFeaturizer: %s", summary)
        if not valid.all():
            failed = np.flatnonzero(~valid)
            shown = ", ".join(f"{i} ({result.errors[i]})" for i in failed[:10]) + (
                " ..." if len(failed) > 10 else ""
            )
            logger.warning(
                "ExLMFeaturizer: %d of %d molecules cannot be featurized, given empty arrays: %s",
                len(failed),
                len(smiles),
                shown,
            )
        return rows_for_deepchem(vectors, valid)

    def _featurize(self, datapoint, **kwargs) -> np.ndarray:
        return self.featurize([datapoint])[0]

    def __str__(self) -> str:
        # DeepChem names its on-disk caches after str(featurizer): tie it to the weights.
        model = self.get_model()
        return (
            f"ExLMFeaturizer_{model_label(model)}_{model_fingerprint(model)}_{self.pooling}"
            + (f"_{self.fingerprint}" if self.fingerprint else "")
            + ("" if self.canonicalize else "_as_given")
        )

    @property
    def blocks(self) -> list[int]:
        """The widths of the blocks of a vector: [ExLM] or [ExLM, fingerprint]."""
        width = pooled_size(self.get_model().config.hidden_size, self.pooling)
        return [width, ECFP_BITS] if self.fingerprint else [width]
