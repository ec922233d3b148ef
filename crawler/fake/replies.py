"""The fake API's HTTP answers: JSON bodies, and the error answers OpenAI (or a proxy) sends."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from .faults import (
    Quota,
    build_envelope,
    build_html_error,
    build_server_error,
    format_go_duration,
    mask_key,
)

# Far deeper than any JSON parser recurses (Python's own stops near 1,000 levels).
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


def redirect_to_itself(request: web.Request) -> web.Response:
    """A 302 back to the same URL: a redirect loop, as a misconfigured proxy sends."""
    return web.Response(status=302, headers={"Location": request.path_qs})


def marked_brotli(page: web.Response) -> web.Response:
    """The page, labelled `Content-Encoding: br`, which no client here asked for."""
    page.headers["Content-Encoding"] = "br"
    return page


def encode(payload: Any) -> bytes:
    """Serialise compactly; ASCII escapes (emoji as surrogate pairs) are 25 % faster."""
    return json.dumps(payload, separators=(",", ":")).encode()


def new_request_id() -> str:
    """A fresh `x-request-id`, which every OpenAI answer has."""
    return f"req_{uuid.uuid4().hex}"


def reply(
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> web.Response:
    """An answer with a request id, as every OpenAI answer has."""
    response = web.Response(status=status, body=body, content_type=content_type)
    response.headers["x-request-id"] = new_request_id()
    if headers:
        response.headers.update(headers)
    return response


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    """An answer with a JSON body."""
    return reply(status, encode(payload), headers)


def error_reply(
    status: int, message: str, type_: str, param: str | None = None, code: str | None = None
) -> web.Response:
    """An answer with OpenAI's error envelope."""
    return json_reply(status, build_envelope(message, type_, param, code))


def unauthorized(header: str) -> web.Response:
    """The 401 for a missing or wrong bearer key; the key is masked, as OpenAI does."""
    if not header.startswith("Bearer ") or not header[7:].strip():
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). "
            "You can obtain an API key from https://platform.openai.com/account/api-keys."
        )
    else:
        message = (
            f"Incorrect API key provided: {mask_key(header[7:].strip())}. You can find "
            "your API key at https://platform.openai.com/account/api-keys."
        )
    return error_reply(401, message, "invalid_request_error", None, "invalid_api_key")


def server_error(status: int, html: bool) -> web.Response:
    """An injected 500/502/503, as JSON or as a proxy's HTML page."""
    if html:
        return web.Response(status=status, text=build_html_error(status), content_type="text/html")
    return json_reply(status, build_server_error(status))


def rate_limited(delay: float, as_ms: bool, limit: int) -> web.Response:
    """An injected 429 advertising `delay` seconds, as `retry-after-ms` or `retry-after`."""
    headers = {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": format_go_duration(delay),
    }
    if as_ms:
        headers["retry-after-ms"] = str(round(delay * 1000))
    else:
        headers["retry-after"] = f"{delay:g}"
    message = f"Rate limit reached for requests. Please try again in {round(delay * 1000)}ms."
    return json_reply(
        429, build_envelope(message, "requests", None, "rate_limit_exceeded"), headers
    )


def over_budget(quota: Quota) -> web.Response:
    """The 429 of a spent requests_per_second budget, with the real wait."""
    headers = {**quota.headers(), "retry-after-ms": str(max(1, round(quota.wait * 1000)))}
    message = f"Rate limit reached for requests. Please try again in {quota.wait:.3f}s."
    return json_reply(
        429, build_envelope(message, "requests", None, "rate_limit_exceeded"), headers
    )
