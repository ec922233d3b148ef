"""What a run tells as it goes: named events with fields, for JSON logs and embedding programs.

The names are a contract (the README lists them); fields may be added, never renamed.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from .api import RetryEvent
from .errors import EXIT_FAILED, CrawlerError, RateLimitedError
from .redact import Secret, mask_keys, mask_secret

Level = Literal["debug", "info", "warning", "error"]

RUN_STARTED = "run_started"
PAGE_COMMITTED = "page_committed"
RETRY = "retry"
RATE_LIMITED = "rate_limited"
REFRESH_DONE = "refresh_done"
FILE_STORED = "file_stored"
WARNING = "warning"
RUN_FINISHED = "run_finished"
RUN_FAILED = "run_failed"


@dataclass(frozen=True)
class Event:
    """One thing a run did: `name` is one of the names above, `fields` its figures."""

    name: str
    fields: Mapping[str, Any]
    level: Level = "info"
    ts: float = field(default_factory=time.time)  # unix seconds

    def as_json(self) -> dict[str, Any]:
        """The JSON log object: `ts` (ISO 8601, UTC), `level`, `event`, then the fields."""
        stamp = dt.datetime.fromtimestamp(self.ts, dt.UTC).isoformat(timespec="milliseconds")
        return {
            "ts": stamp.replace("+00:00", "Z"),
            "level": self.level,
            "event": self.name,
            **self.fields,
        }

    def json_line(self) -> str:
        """The event as one line of JSON, newline included."""
        return orjson.dumps(self.as_json(), default=str).decode() + "\n"


EventHandler = Callable[[Event], None]


def failure_event(error: BaseException, *secrets: Secret) -> Event:
    """The `run_failed` event for `error`: what kind, the message (`secrets` masked), the
    exit code the command line ends with, and whether a later retry of the run may help."""
    if isinstance(error, CrawlerError):
        message, exit_code = str(error), error.exit_code
        retryable, failure_type = error.retryable, error.failure_type
    else:
        message = f"unexpected {type(error).__name__}: {error}"
        exit_code, retryable, failure_type = EXIT_FAILED, False, "system_error"
    fields = {
        "error_kind": type(error).__name__,
        "message": mask_keys(message, secrets),
        "exit_code": exit_code,
        "retryable": retryable,
        "failure_type": failure_type,
    }
    return Event(RUN_FAILED, fields, "error")


def retry_event(retry: RetryEvent, secret: Secret = None) -> Event:
    """The `retry` event (`rate_limited` for a 429) for a request about to be asked again."""
    error = retry.error
    fields = {
        "status": error.status,
        "attempt": retry.attempt + 1,  # the one about to start
        "max_attempts": retry.max_attempts,
        "wait": round(retry.wait, 3),
        "reason": mask_secret(retry.reason, secret),
        "error": mask_secret(str(error), secret),
    }
    name = RATE_LIMITED if isinstance(error, RateLimitedError) else RETRY
    return Event(name, fields, "warning")
