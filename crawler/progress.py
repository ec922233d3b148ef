"""The live progress line a sync shows on a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from .runs import Progress


class ProgressLine:
    """Rewrites one terminal line with the latest figures, at most every `interval` seconds."""

    def __init__(
        self,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._interval = interval
        self._last_shown = -interval
        self._width = 0

    def __call__(self, progress: Progress) -> None:
        now = self._clock()
        if now - self._last_shown < self._interval:
            return
        self._last_shown = now
        rate = progress.batches / progress.elapsed if progress.elapsed > 0 else 0.0
        line = (
            f"pages {progress.pages:,}  batches {progress.batches:,}  "
            f"{rate:,.0f}/s  retries {progress.retries:,}  {progress.elapsed:,.1f}s"
        )
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """Erase the line, so that what follows starts on a clean one."""
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0
