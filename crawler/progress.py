"""The live progress line a sync shows on a terminal."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import TextIO

from .runs import Progress


def _columns_of(stream: TextIO) -> int:
    """The width of the terminal `stream` writes to, read again each time (it may be resized)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError):  # not a terminal after all, or no file behind it
        columns = 0
    return columns or 80  # a pseudo-terminal nobody sized says 0


def _line(progress: Progress) -> str:
    """The figures; while a retry waits, what it waits on instead of the rate and count,
    so that it fits 80 columns: "... 5.8s  retrying, attempt 2/8: timed out, silent for 30 s"."""
    done = f"pages {progress.pages:,}  batches {progress.batches:,}  "
    if progress.files:
        done += f"files {progress.files:,} ({progress.request_lines:,} lines)  "
    if progress.retrying:
        return done + f"{progress.elapsed:,.1f}s  retrying, {progress.retrying}"
    rate = progress.batches / progress.elapsed if progress.elapsed > 0 else 0.0
    return done + f"{rate:,.0f}/s  retries {progress.retries:,}  {progress.elapsed:,.1f}s"


class ProgressLine:
    """Rewrites one terminal line with the latest figures, at most every `interval` seconds.

    A retry shows what the run waits on until the next page; that change is drawn at once,
    however soon, since the line may then stay still for as long as a timeout.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
        columns: Callable[[], int] | None = None,
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._interval = interval
        self._columns = columns or (lambda: _columns_of(stream))
        self._last_shown = -interval
        self._width = 0
        self._retrying: str | None = None

    def __call__(self, progress: Progress) -> None:
        now = self._clock()
        changed = progress.retrying != self._retrying
        if now - self._last_shown < self._interval and not changed:
            return
        self._last_shown = now
        self._retrying = progress.retrying
        # A line that wraps cannot be rewritten in place: cut it short of the last column.
        line = _line(progress)[: max(self._columns() - 1, 20)]
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """Erase the line, so that what follows starts on a clean one; the next figures
        draw it again at once (after a log line, say)."""
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0
            self._last_shown = -math.inf


class AccountsProgress:
    """Several accounts' figures on one progress line: their sums, and the retry one waits on."""

    def __init__(self, line: Callable[[Progress], None]) -> None:
        self._line = line
        self._latest: dict[str, Progress] = {}

    def __call__(self, account: str, progress: Progress) -> None:
        self._latest[account] = progress
        every = self._latest.values()
        waiting = next(((a, p.retrying) for a, p in self._latest.items() if p.retrying), None)
        self._line(
            Progress(
                pages=sum(p.pages for p in every),
                batches=sum(p.batches for p in every),
                retries=sum(p.retries for p in every),
                elapsed=max(p.elapsed for p in every),
                retrying=None if waiting is None else f"{waiting[0]}: {waiting[1]}",
                files=sum(p.files for p in every),
                request_lines=sum(p.request_lines for p in every),
            )
        )
