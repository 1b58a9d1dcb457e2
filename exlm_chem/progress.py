"""Progress of long loops: a bar with total and ETA on a terminal, plain lines in a log."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts work done towards ``total`` (None when unknown) and shows it on stderr.

    On a terminal: a tqdm bar with rate and ETA. Otherwise (a log file, a scheduler's output):
    one plain line every ``every`` seconds, and one at the end. ``enabled=False`` shows nothing.
    """

    def __init__(
        self,
        total: int | None,
        what: str = "molecules",
        enabled: bool | None = None,
        every: float = 30.0,
    ):
        self.total, self.what, self.every = total, what, every
        self.done = 0
        self.enabled = enabled is not False
        self._start = self._last_line = time.monotonic()
        self._shown = 0  # the count the last plain line showed
        self._bar = None
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                unit=" " + what.split()[0][:3],
                unit_scale=True,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._last_line >= self.every:
            self._print_line()

    def _print_line(self) -> None:
        self._last_line = now = time.monotonic()
        self._shown = self.done
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        line = f"{self.done:,} {self.what}"
        if self.total:
            line += f" of {self.total:,} ({min(self.done / self.total, 1):.0%})"
        line += f", {rate:,.0f}/s, {elapsed / 60:.1f} min"
        if self.total and rate > 0 and self.done < self.total:
            line += f", eta {(self.total - self.done) / rate / 60:.1f} min"
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.done != self._shown and self._last_line != self._start:
            self._print_line()  # a last line, where the run was long enough to print any

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
