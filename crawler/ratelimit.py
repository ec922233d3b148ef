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

    Every request of a run waits here first. Where responses say how many requests are
    left until the budget resets, requests are spaced so as to spend what is left evenly
    until then; a 429, or none left, pauses every worker at once, instead of each one
    learning it from its own 429.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._paced = 0.0  # the spacing the server's last rate-limit headers call for
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0
        self._paused_until = 0.0
        self.waits = 0
        self.waited = 0.0

    async def acquire(self) -> None:
        """Wait until a request may go; the slot is taken before waiting, so that
        concurrent workers queue one behind the other instead of leaving together."""
        now = self._clock()
        start = max(now, self._next_slot, self._paused_until)
        self._next_slot = start + max(self._interval, self._paced)
        if start > now:
            self.waits += 1
            self.waited += start - now
            await self._sleep(start - now)

    def pause(self, seconds: float) -> None:
        """Let no request go for `seconds` from now."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read `x-ratelimit-remaining-requests` / `-reset-requests`; pause when none are left."""
        remaining = headers.get("x-ratelimit-remaining-requests")
        reset = headers.get("x-ratelimit-reset-requests")
        if remaining is None or reset is None:
            return
        try:
            left = int(remaining)
        except ValueError:
            return
        seconds = parse_duration(reset)
        # Azure may send -1: no budget known.
        if seconds is None or seconds <= 0 or left < 0:
            return
        if left == 0:
            self.pause(seconds)
        else:
            self._paced = seconds / left
