"""Fault choice, request budget, counters and error bodies of the fake API (no I/O)."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Fault = Literal["drop", "error", "rate_limit", "truncate"]
# Chosen server errors; the HTML pages are what a proxy in front of the API would send.
_SERVER_ERRORS: dict[int, tuple[str, str]] = {
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "Internal Server Error",
    ),
    502: ("Bad gateway.", "Bad Gateway"),
    503: ("The server is overloaded or not ready yet.", "Service Temporarily Unavailable"),
}


@dataclass
class FakeApiStats:
    """What the fake server has seen and done, for tests to assert on."""

    requests: Counter[str] = field(default_factory=Counter)  # by route name
    pages: int = 0  # list pages answered 200
    errors: int = 0
    rate_limited: int = 0  # both the rate_limit_rate knob and the requests_per_second budget
    dropped: int = 0
    truncated: int = 0
    slow: int = 0
    held: int = 0  # list requests a test's gate held (see FakeApiServer.hold_list_requests)
    bad_pages: int = 0  # list requests answered as FakeApiOptions.bad_page says
    streamed_bytes: int = 0  # body bytes a trickled or huge page got written before it ended
    files_served: int = 0  # file contents sent whole
    file_lines: int = 0  # whole lines of file content written, cut downloads included
    file_bytes: int = 0  # bytes of file content written, cut downloads included
    files_deleted: int = 0  # file requests answered 404 by deleted_file_rate
    file_dropped: int = 0
    file_truncated: int = 0
    file_slow: int = 0
    # (name, value) of every OpenAI-Organization and OpenAI-Project header received.
    headers: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass(frozen=True)
class FaultDraw:
    """The faults chosen for one request: at most one failure, plus maybe a slow answer."""

    fault: Fault | None = None
    slow: bool = False


NO_FAULT = FaultDraw()


class FaultPicker:
    """Choose faults per request from one seeded RNG, so a run is reproducible."""

    def __init__(
        self,
        seed: int,
        *,
        drop_rate: float,
        error_rate: float,
        rate_limit_rate: float,
        truncate_rate: float,
        slow_rate: float,
    ) -> None:
        self.rng = random.Random(seed)
        self._rates = (drop_rate, error_rate, rate_limit_rate, truncate_rate)
        self._slow_rate = slow_rate
        self._rate_limits = 0

    def draw(self) -> FaultDraw:
        """Return the faults of the next request (a fixed number of draws each time)."""
        rolls = [self.rng.random() for _ in range(5)]
        faults: tuple[Fault, ...] = ("drop", "error", "rate_limit", "truncate")
        pairs = zip(faults, self._rates, rolls[:4], strict=True)
        chosen = next((fault for fault, rate, roll in pairs if roll < rate), None)
        return FaultDraw(chosen, rolls[4] < self._slow_rate)

    def server_error_status(self) -> int:
        """Pick 500, 502 or 503 for an injected server error."""
        return self.rng.choice((500, 502, 503))

    def rate_limit_delay(self) -> tuple[float, bool]:
        """Pick a small advertised delay (<= 0.2 s) and whether to send it as milliseconds."""
        self._rate_limits += 1
        return round(self.rng.uniform(0.02, 0.2), 3), self._rate_limits % 2 == 1


@dataclass(frozen=True)
class Quota:
    """The outcome of asking the request budget for one request."""

    granted: bool
    limit: int
    remaining: int
    wait: float  # seconds until one request is allowed again (0 when granted)
    reset: float  # seconds until the budget is full again

    def headers(self) -> dict[str, str]:
        """Return the x-ratelimit-* headers describing this quota."""
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": format_go_duration(self.reset),
        }


class RequestBudget:
    """A token bucket over the whole server: `rate` requests a second, bursts of one second."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._clock = clock
        self.limit = math.ceil(self.capacity)  # what x-ratelimit-limit-requests advertises
        self._tokens = self.capacity
        self._at = clock()

    def take(self) -> Quota:
        """Spend one request if the budget allows it."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            reset = (self.capacity - self._tokens) / self.rate
            return Quota(True, self.limit, int(self._tokens), 0.0, reset)
        wait = (1 - self._tokens) / self.rate
        return Quota(False, self.limit, 0, wait, (self.capacity - self._tokens) / self.rate)


def format_go_duration(seconds: float) -> str:
    """Format seconds the way Go prints a time.Duration: `120ms`, `1.5s`, `6m0s`, `1h2m3s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return _trim(f"{seconds * 1000:.6f}") + "ms"
    whole_minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(whole_minutes), 60)
    text = _trim(f"{secs:.9f}") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _trim(number: str) -> str:
    """Drop trailing zeros (and a bare point) from a fixed-point number."""
    return number.rstrip("0").rstrip(".") if "." in number else number


def build_envelope(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Return OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def build_server_error(status: int) -> dict[str, Any]:
    """Return the JSON envelope of an injected 5xx."""
    return build_envelope(_SERVER_ERRORS[status][0], "server_error")


def build_html_error(status: int) -> str:
    """Return the HTML page a reverse proxy sends instead of the JSON envelope."""
    title = f"{status} {_SERVER_ERRORS[status][1]}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


def mask_key(key: str) -> str:
    """Mask an API key like OpenAI does (`sk-ab****cd`); short keys are hidden entirely."""
    return f"{key[:5]}****{key[-2:]}" if len(key) >= 12 else "****"
