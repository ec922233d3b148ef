"""One request budget shared by every request of a run."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration as OpenAI sends it: `1s`, `6m0s`, `172.799999ms`."""
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _SECONDS[unit] for number, unit in parts)


class RateLimiter:
    """Spaces requests to a configured rate, and stops all of them when the server says so.

    Every request of a run waits here first. When a response says that few requests are
    left (a quarter of the limit or less), requests are spaced at the rate the budget refills;
    a 429, or none left, pauses every worker at once, those already waiting included,
    instead of each one learning it from its own 429. A pause never exceeds `max_pause`,
    nor the spacing `max_spacing`: past those, requests go and meet the server's 429,
    which the retry policy handles and reports.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        *,
        max_pause: float = 120.0,
        max_spacing: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._paced = 0.0  # the spacing the server's last rate-limit headers call for
        self._max_pause = max_pause
        self._max_spacing = max_spacing
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0
        self._paused_until = 0.0
        self.waits = 0
        self.waited = 0.0  # summed over workers: concurrent waits add up

    async def acquire(self) -> None:
        """Wait until a request may go.

        The slot is taken before waiting, so that concurrent workers queue one behind the
        other instead of leaving together; a pause that arrives meanwhile is waited out too.
        """
        while True:
            now = self._clock()
            start = max(now, self._next_slot, self._paused_until)
            self._next_slot = start + max(self._interval, self._paced)
            if start <= now:
                return
            self.waits += 1
            self.waited += start - now
            await self._sleep(start - now)
            if self._paused_until <= start:
                return

    def pause(self, seconds: float) -> None:
        """Let no request go for `seconds` from now (at most `max_pause`)."""
        until = self._clock() + min(seconds, self._max_pause)
        self._paused_until = max(self._paused_until, until)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read the `x-ratelimit-*-requests` headers, when a server sends them."""
        try:
            left = int(headers["x-ratelimit-remaining-requests"])
            seconds = parse_duration(headers["x-ratelimit-reset-requests"])
        except (KeyError, ValueError):
            return
        # Azure may send -1 or 0 for "unknown".
        if seconds is None or seconds <= 0 or left < 0:
            return
        if left == 0:
            self.pause(seconds)
            return
        try:
            limit = int(headers["x-ratelimit-limit-requests"])
        except (KeyError, ValueError):
            return
        used = limit - left
        # The budget refills `used` requests over `seconds`; spend no faster once it runs low.
        # A reset hours away over a small limit would space requests by many minutes,
        # silently: past `max_spacing`, the server's own 429s say how long to wait.
        spacing = seconds / used if used > 0 and left <= limit / 4 else 0.0
        self._paced = min(spacing, self._max_spacing)
