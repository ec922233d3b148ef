"""What the fake API serves and which faults it injects: `FakeApiOptions`, checked."""

from __future__ import annotations

from dataclasses import dataclass

from .flavors import FLAVORS
from .ids import ID_STYLES, IdStyle

BROKEN_PAGINATION_MODES = ("empty-has-more", "stuck-cursor", "wrong-last-id")
# Answers no client should choke on; see FakeApiOptions.bad_page.
BAD_PAGE_MODES = ("trickle", "redirect-loop", "br-encoded", "huge", "deep-json", "deep-error")
_RATES = (
    "error_rate",
    "rate_limit_rate",
    "drop_rate",
    "truncate_rate",
    "slow_rate",
    "deleted_file_rate",
    "file_drop_rate",
    "file_truncate_rate",
    "file_slow_rate",
)


@dataclass(frozen=True)
class FakeApiOptions:
    """What the fake serves and which faults it injects (all faults off by default)."""

    batches: int = 3000
    seed: int = 0
    api_key: str = "sk-fake-local"
    ids: IdStyle = "realistic"  # or "random": see crawler.fake.ids
    latency: float = 0.0  # seconds added to every response
    error_rate: float = 0.0  # share answered 500/502/503
    html_errors: bool = False  # 5xx bodies are a proxy's HTML page, not the JSON envelope
    rate_limit_rate: float = 0.0  # share answered 429 with a small retry delay
    requests_per_second: float | None = None  # server-wide budget; over it -> 429
    drop_rate: float = 0.0  # share whose connection closes without a response
    truncate_rate: float = 0.0  # share whose body stops halfway (Content-Length says more)
    slow_rate: float = 0.0  # share delayed by slow_seconds
    slow_seconds: float = 1.0
    add_per_request: int = 0  # new batches at the head on every list request after the first
    advance_per_request: int = 0  # in-flight batches moved on, same schedule
    broken_pagination: str | None = None  # one of BROKEN_PAGINATION_MODES
    # One of BAD_PAGE_MODES, answered to every list request after the first: the page one
    # byte every slow_seconds; a redirect to itself; a body marked as brotli-encoded; the
    # page after 64 MiB of whitespace; JSON nested 100,000 deep, as a 200 or as a 400.
    bad_page: str | None = None
    requests_per_batch: int | None = None  # every batch this many requests; None: 1 to 8192
    # The fake's present, unix seconds: the newest batch is created just before it. None:
    # 2026-01-01, so that the data is the same on every run.
    now: int | None = None
    # Files: a share answered 404 although their batch names them (the same files each time),
    # and faults drawn per content request, so that a retry of the same file can succeed.
    deleted_file_rate: float = 0.0
    file_drop_rate: float = 0.0  # connection closed halfway through the body, mid-line
    file_truncate_rate: float = 0.0  # the same, after a whole line: looks like a complete file
    file_slow_rate: float = 0.0  # body trickled one line at a time, file_slow_seconds apart
    file_slow_seconds: float = 1.0
    flavor: str = "openai"  # the API the fake passes for: one of FLAVORS (see .flavors)

    def __post_init__(self) -> None:
        """Reject impossible values, naming the field."""
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in ("batches", "latency", "slow_seconds", "add_per_request", "file_slow_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.requests_per_batch is not None and self.requests_per_batch < 1:
            raise ValueError(f"requests_per_batch must be >= 1, got {self.requests_per_batch}")
        if self.advance_per_request < 0:
            raise ValueError(f"advance_per_request must be >= 0, got {self.advance_per_request}")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be > 0, got {self.requests_per_second}")
        if self.ids not in ID_STYLES:
            raise ValueError(f"ids must be one of {ID_STYLES}, got {self.ids!r}")
        if self.broken_pagination not in (None, *BROKEN_PAGINATION_MODES):
            raise ValueError(
                f"broken_pagination must be one of {BROKEN_PAGINATION_MODES}, "
                f"got {self.broken_pagination!r}"
            )
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}, got {self.flavor!r}")
        if self.bad_page not in (None, *BAD_PAGE_MODES):
            raise ValueError(f"bad_page must be one of {BAD_PAGE_MODES}, got {self.bad_page!r}")
