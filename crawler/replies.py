"""Failed responses, read purely: the error envelope, the server's delay, the error type."""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import Any
from urllib.parse import quote, quote_plus

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
    status: int, body: bytes, headers: Any, url: str, *, secret: str | None = None
) -> ApiError:
    """Map a non-2xx response to the error type that says what to do about it.

    `secret` (the API key) is masked should the server echo it back.
    """
    message, code, param = _envelope(body)
    if message is None:
        message = f"HTTP {status}"
    text = f"API error {status}" + (f" ({code})" if code else "") + f": {message} [GET {url}]"
    text = mask_secret(text, secret)
    fields: dict[str, Any] = {
        "status": status,
        "code": code,
        "param": param,
        "url": url,
        "retry_after": parse_retry_after(headers),
        "should_retry": _should_retry_header(headers),
    }
    if status == 404 and message.startswith("Invalid URL"):
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


_MASK = "***"

# A run this long of a key is masked even when the rest is cut off or altered: past the
# prefix all keys share (sk-proj-), it identifies the key; shorter runs are not secret.
_IDENTIFYING_RUN = 16


def mask_secret(text: str, secret: str | None) -> str:
    """`text` with `secret` masked as `***` in every form a server may echo it in.

    As is, JSON-escaped, percent-encoded, with its whitespace collapsed, and any run of
    `_IDENTIFYING_RUN` characters or more of one of these (a key cut short, say).
    """
    if not secret:
        return text
    forms = _secret_forms(secret)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, _MASK)
    return _mask_runs(text, forms)


def _secret_forms(secret: str) -> set[str]:
    """The spellings of `secret` an error message may hold."""
    quoted = {quote(secret, safe=""), quote(secret), quote_plus(secret)}
    lower_hex = {re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), q) for q in quoted}
    forms = {
        secret,
        " ".join(secret.split()),  # messages are shown with their whitespace collapsed
        json.dumps(secret)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),  # as PHP's json_encode writes it
        json.dumps(secret, ensure_ascii=False)[1:-1],
        *quoted,
        *lower_hex,
    }
    return {form for form in forms if form}


def _mask_runs(text: str, forms: set[str]) -> str:
    """`text` with every run of `_IDENTIFYING_RUN` or more characters of a form masked."""
    size = _IDENTIFYING_RUN
    pieces = {form[i : i + size] for form in forms for i in range(len(form) - size + 1)}
    spans: list[tuple[int, int]] = []
    for i in range(len(text) - size + 1):
        if text[i : i + size] in pieces:
            if spans and i <= spans[-1][1]:
                spans[-1] = (spans[-1][0], i + size)
            else:
                spans.append((i, i + size))
    kept, last = [], 0
    for start, end in spans:
        kept += [text[last:start], _MASK]
        last = end
    return "".join([*kept, text[last:]])


def _envelope(body: bytes) -> tuple[str | None, str | None, str | None]:
    """Message, code and param of an OpenAI (or Azure) error envelope, if the body is one."""
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
        " ".join(message.split()),
        str(code) if code is not None else None,
        param if isinstance(param, str) else None,
    )
