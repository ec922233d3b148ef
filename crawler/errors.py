"""Every error batch-crawler raises on purpose, with its exit code.

    CrawlerError                    any expected failure (exit 1)
    ├── ConfigError                 a bad flag, config file or environment (exit 2)
    ├── ApiError                    the API answered, or failed to, in a way we cannot use;
    │                               exit 75 when retrying later may help, else 1
    │   ├── AuthenticationError     401, 403: a bad key or no permission
    │   ├── NotFoundError           404
    │   │   └── UnknownRouteError   404 "Invalid URL": the server does not serve this path
    │   ├── BadRequestError         400 and other 4xx we do not retry
    │   │   └── UnknownCursorError  400 on `after`: the API no longer lists that batch
    │   ├── QuotaExceededError      429 insufficient_quota: retrying cannot help
    │   ├── RateLimitedError        429 (retryable, may carry the server's delay)
    │   ├── ServerError             408, 409, 5xx (retryable)
    │   ├── TransportError          connection refused, reset, timed out (retryable)
    │   └── BrokenResponseError     not JSON, truncated, or missing required fields (retryable)
    │       └── ResponseTooLargeError   past the body cap: not read further (a list page is
    │                                   asked for again with half the limit, down to 1)
    ├── PaginationError             the cursor chain cannot be trusted (a loop guard fired)
    ├── UnstorableBatchError        a batch holds a value SQLite cannot store
    └── DatabaseError               the SQLite file is unusable for us (exit 4)
        └── DatabaseBusyError       another sync holds this database

Messages are formatted when raised and never contain the API key.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_DATABASE = 4
# sysexits.h's EX_TEMPFAIL: a transient failure (retries ran out on a server or network
# fault) that the same run may get past later. Orchestrators retry on it.
EXIT_TRANSIENT = 75
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports it


class CrawlerError(Exception):
    """Base class of every expected failure; `str(error)` is the one line a user sees.

    `retryable` says whether the same request, or the same run, may succeed later.
    """

    retryable = False

    @property
    def exit_code(self) -> int:
        """The process exit code for this failure."""
        return EXIT_FAILED

    @property
    def failure_type(self) -> str:
        """Airbyte's words for who can fix it: `config_error` (the user),
        `transient_error` (time), `system_error` (anything else)."""
        return "transient_error" if self.retryable else "system_error"


class ConfigError(CrawlerError):
    """A setting is missing or invalid."""

    @property
    def exit_code(self) -> int:
        return EXIT_USAGE

    @property
    def failure_type(self) -> str:
        return "config_error"


class ApiError(CrawlerError):
    """The API could not give us what we asked for."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.attempts = 1  # set by the retry loop once it gives up
        self.status = status
        self.code = code
        self.param = param
        self.url = url
        self.retry_after = retry_after
        # The server's own `x-should-retry` verdict overrides the status rule.
        if should_retry is not None:
            self.retryable = should_retry

    @property
    def exit_code(self) -> int:
        # Raised once retries ran out on a fault that may pass, or at once on a refusal.
        return EXIT_TRANSIENT if self.retryable else EXIT_FAILED

    def __str__(self) -> str:
        message = super().__str__()
        if self.attempts > 1:
            return f"{message} (gave up after {self.attempts} attempts)"
        return message


class AuthenticationError(ApiError):
    """401 or 403: the key is wrong, revoked, or lacks permission."""

    @property
    def failure_type(self) -> str:
        # The user fixes the key or its permissions, unless the server says to ask again.
        return "transient_error" if self.retryable else "config_error"


class NotFoundError(ApiError):
    """404: the URL or the object does not exist."""


class UnknownRouteError(NotFoundError):
    """404 for the path itself ("Invalid URL"): the base URL or the server is wrong."""


class BadRequestError(ApiError):
    """400 or another 4xx that retrying cannot fix."""


class UnknownCursorError(BadRequestError):
    """400 on `after`: the cursor names a batch the API no longer lists."""


class QuotaExceededError(ApiError):
    """429 insufficient_quota: the organization is out of credit."""

    @property
    def failure_type(self) -> str:
        # Billing, not time, fixes it, unless the server says to ask again.
        return "transient_error" if self.retryable else "config_error"


class RateLimitedError(ApiError):
    """429: too many requests for now."""

    retryable = True


class ServerError(ApiError):
    """408, 409 or 5xx: the server failed this time."""

    retryable = True


class TransportError(ApiError):
    """The connection failed or timed out before a full response arrived."""

    retryable = True


class BrokenResponseError(ApiError):
    """A 2xx response whose body is not the JSON we were promised."""

    retryable = True


class ResponseTooLargeError(BrokenResponseError):
    """A response past the cap on what one body may take (bodies.MAX_BODY_BYTES)."""


class PaginationError(CrawlerError):
    """The list cursor chain loops or stops early; following it would lose or repeat pages."""


class UnstorableBatchError(CrawlerError):
    """A batch holds a value SQLite cannot store (nothing of its page is written)."""


class DatabaseError(CrawlerError):
    """The database file cannot be used: not ours, newer than us, or broken."""

    @property
    def exit_code(self) -> int:
        return EXIT_DATABASE


class DatabaseBusyError(DatabaseError):
    """Another sync is writing this database right now: trying again later may work."""

    retryable = True


# Failures asking again may mend, of a route that fails for now: past their retries, the
# sign that it is down (the files route's breaker, the by-id refresh's fallback to the list).
ROUTE_FAILURES = (ServerError, TransportError, RateLimitedError)
# Those, or an answer that is none (cut short, no JSON): the API or the way to it failing,
# not what was asked (a cursor it no longer knows answered so, the asks for files' outage).
FAILED_ANSWERS = (*ROUTE_FAILURES, BrokenResponseError)


def about_one_batch(error: ApiError) -> bool:
    """Whether an answer for one batch by id is about that batch, not the API: a 4xx other
    than 404 (a 403 too, since the list was read with this key; a 401 is about the key), a
    404 for its path, a body that is not that batch."""
    if isinstance(error, AuthenticationError):
        return error.status == 403
    return isinstance(error, BadRequestError | BrokenResponseError | UnknownRouteError)


def first_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error inside a (possibly nested) task group's exception group."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
