"""Work spread over processes: RDKit parsing is single-threaded, so molecules are prepared
in worker processes, a chunk at a time, results in input order."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator


def default_workers() -> int:
    """Worker processes to use by default: the cores this process may run on, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(cores, 8)


class WorkerPool:
    """Worker processes kept between calls: a caller that prepares molecules many times (a
    DeepChem featurizer, called once per shard) starts them once. ``workers=0`` runs the work
    in this process. The processes start on first use and stop on `close` (or when the pool is
    garbage-collected); after an error the pool is stopped and starts afresh on the next use."""

    def __init__(self, workers: int):
        self.workers = max(0, int(workers))
        self._pool = None

    def imap(self, function: Callable, items: Iterable, ahead: int = 4) -> Iterator:
        """``function(item)`` for each item, in order, at most ``ahead`` items per worker in
        flight (memory stays bounded on any input). ``function`` must be importable (a
        module-level function). On any exception, Ctrl-C included, the workers are stopped: no
        orphan processes, no stale work left for the next call."""
        if self.workers == 0:
            yield from map(function, items)
            return
        if self._pool is None:
            # spawn: a fresh interpreter per worker, safe whatever threads this process runs.
            self._pool = multiprocessing.get_context("spawn").Pool(self.workers)
        pending: deque = deque()
        finished = False
        try:
            for item in items:
                pending.append(self._pool.apply_async(function, (item,)))
                if len(pending) >= self.workers * ahead:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()
            finished = True
        finally:
            if not finished:  # an error, or the caller stopped early: drop the work in flight
                self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()


def map_in_order(function: Callable, items: Iterable, workers: int, ahead: int = 4) -> Iterator:
    """``function(item)`` for each item, in order, in ``workers`` processes started for this
    call and stopped at its end (see `WorkerPool.imap`)."""
    with WorkerPool(workers) as pool:
        yield from pool.imap(function, items, ahead)
