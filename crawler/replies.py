"""Failed responses, read purely: the error envelope, the server's delay, the error type."""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any

from .errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
    UnknownCursorError,
    UnknownRouteError,
)
from .jsontext import parse
from .redact import Secret, mask_secret


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """The server's requested delay in seconds from `retry-after-ms` or `retry-after`."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return float(raw_ms) / 1000
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - (time.time() if now is None else now)


def _should_retry_header(headers: Any) -> bool | None:
    value = headers.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def build_api_error(
    status: int, body: bytes, headers: Any, url: str, *, secret: Secret = None
) -> ApiError:
    """Map a non-2xx response to the error type that says what to do about it.

    `secret` (the API key) is masked should the server echo it back.
    """
    message, code, param = _envelope(body, secret)
    enveloped = message is not None
    if message is None:
        message = f"HTTP {status}"
    if status == 407:  # from a proxy, not the API: one the environment names, or on the way
        message += (
            " (a proxy asks for a user and password: give them, or check them, in HTTPS_PROXY"
            " or HTTP_PROXY, as http://user:password@host:port)"
        )
    text = f"API error {status}" + (f" ({code})" if code else "") + f": {message} [GET {url}]"
    text = mask_secret(text, secret)
    # Kept on the error for programs to read (and log): as masked as its message.
    fields: dict[str, Any] = {
        "status": status,
        "code": None if code is None else mask_secret(code, secret),
        "param": None if param is None else mask_secret(param, secret),
        "url": mask_secret(url, secret),
        "retry_after": parse_retry_after(headers),
        "should_retry": _should_retry_header(headers),
    }
    if status == 404 and (not enveloped or message.startswith("Invalid URL")):
        # The API answers a missing object with its error envelope; a 404 without one
        # (a web framework's {"detail": "Not Found"}, a proxy's page) is about the path.
        return UnknownRouteError(text, **fields)
    return _error_class(status, code, param)(text, **fields)


def _error_class(status: int, code: str | None, param: str | None) -> type[ApiError]:
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 429:
        return QuotaExceededError if code == "insufficient_quota" else RateLimitedError
    if status in (408, 409) or status >= 500:
        return ServerError
    if status == 400 and param == "after":
        return UnknownCursorError
    return BadRequestError


def _envelope(body: bytes, secret: Secret) -> tuple[str | None, str | None, str | None]:
    """Message, code and param of an OpenAI (or Azure) error envelope, if the body is one,
    each on one line with `secret` masked (see _one_line)."""
    try:
        error = parse(body)["error"]
        message = error.get("message")
        code = error.get("code") or error.get("type")
        param = error.get("param")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None, None
    if not isinstance(message, str):
        return None, None, None
    return (
        _one_line(message, secret),
        _one_line(str(code), secret) if code is not None else None,
        _one_line(param, secret) if isinstance(param, str) else None,
    )


# What of a server's text a message quotes: enough to read, never a terminal's escapes.
_MAX_QUOTED = 500
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _one_line(text: str, secret: Secret) -> str:
    """`text` on one line, without control characters, cut to _MAX_QUOTED characters, with
    `secret` masked first: a key folded over lines is masked as such, not once joined by
    spaces."""
    text = mask_secret(text[: 4 * _MAX_QUOTED], secret)
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 3] + "..."
