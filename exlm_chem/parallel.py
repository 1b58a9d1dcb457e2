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


def map_in_order(function: Callable, items: Iterable, workers: int, ahead: int = 4) -> Iterator:
    """``function(item)`` for each item, in order: in ``workers`` processes, at most ``ahead``
    items per worker in flight (memory stays bounded on any input); ``workers=0`` runs in this
    process. ``function`` must be importable (a module-level function). On any exception, Ctrl-C
    included, the workers are stopped: no orphan processes."""
    if workers <= 0:
        yield from map(function, items)
        return
    # spawn: a fresh interpreter per worker, safe whatever threads this process runs (torch's).
    pool = multiprocessing.get_context("spawn").Pool(workers)
    try:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(function, (item,)))
            if len(pending) >= workers * ahead:
                yield pending.popleft().get()
        for result in pending:
            yield result.get()
        pool.close()
    finally:
        pool.terminate()
        pool.join()
