"""Stopping a run cleanly when asked to: a scheduler's SIGTERM, or Ctrl-C."""

from __future__ import annotations

import signal
import threading


class StopSignal:
    """SIGTERM (a scheduler's preemption, ``kill``) or Ctrl-C asks the run to stop after the
    current step, with a checkpoint; a second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
