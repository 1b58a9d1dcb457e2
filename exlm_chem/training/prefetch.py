"""Training batches prepared ahead of the step, in a background thread: tokenized, masked and
on their way to the device while the current step runs (on a GPU the step would otherwise wait
for the CPU to tokenize and draw masks)."""

from __future__ import annotations

import queue
import threading
from typing import NamedTuple

import torch

from ..model.exlm import PAD_ID
from .batches import BatchStream

AHEAD = 4  # batches prepared ahead


def mask_seed(seed: int, step: int, micro: int) -> int:
    """The seed of the masks of one micro-batch: a function of the run's seed and position, so
    that a resumed run draws the masks an uninterrupted one would."""
    return seed * 1_000_003 + step * 64 + 1 + micro


class PreparedBatch(NamedTuple):
    ids: torch.Tensor  # (B, L) on the device
    masks: torch.Tensor  # (B, L) on the device
    descriptors: torch.Tensor | None  # (B, D) scaled descriptor targets, for a descriptor head
    tokens: int  # real tokens, counted on the host (no device synchronisation)
    molecules: int
    position: dict  # the stream's position after this batch: where a checkpoint resumes


class BatchPrefetcher:
    """The batches of ``stream`` for steps ``first_step``, ``first_step + 1``, ... (each of
    ``grad_accum`` micro-batches), in order, exactly as they would be made in the step."""

    def __init__(self, stream: BatchStream, tokenizer, model, seed, first_step, grad_accum, device):
        self._queue: queue.Queue = queue.Queue(maxsize=AHEAD)
        self._stop = threading.Event()
        self._pin = device.type == "cuda"
        self.shape_bucket = stream.shape_bucket  # ids padded to a multiple of it
        self._thread = threading.Thread(
            target=self._work,
            args=(stream, tokenizer, model, seed, first_step, grad_accum, device),
            daemon=True,
        )
        self._thread.start()

    def _work(self, stream, tokenizer, model, seed, step, grad_accum, device) -> None:
        try:
            while not self._stop.is_set():
                for micro in range(grad_accum):
                    indices, smiles = stream.take()
                    ids = tokenizer.encode_batch(smiles)
                    ids = torch.nn.functional.pad(
                        ids, (0, -ids.shape[1] % self.shape_bucket), value=PAD_ID
                    )
                    generator = torch.Generator().manual_seed(mask_seed(seed, step, micro))
                    masks = model.choose_masks(ids, generator)
                    descriptors = None
                    if model.descriptor_head is not None:
                        descriptors = torch.from_numpy(stream.corpus.descriptor_targets(indices))
                    if self._pin:
                        ids, masks = ids.pin_memory(), masks.pin_memory()
                        descriptors = descriptors.pin_memory() if descriptors is not None else None
                    batch = PreparedBatch(
                        ids.to(device, non_blocking=True),
                        masks.to(device, non_blocking=True),
                        None if descriptors is None else descriptors.to(device, non_blocking=True),
                        int((ids != 0).sum()),
                        len(smiles),
                        stream.position(),
                    )
                    while not self._stop.is_set():
                        try:
                            self._queue.put(batch, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                step += 1
        except BaseException as exc:  # handed to the training loop, raised there
            self._queue.put(exc)

    def next_batch(self) -> PreparedBatch:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
