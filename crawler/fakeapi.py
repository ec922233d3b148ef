"""A local aiohttp server faithful to the OpenAI Batches API, with fault knobs for tests.

Routes (all need `Authorization: Bearer <api_key>`, else 401 `invalid_api_key`):

- `GET /v1/batches?limit=&after=`: newest first. `limit` defaults to 20; 1..100 pages;
  `limit=0` is a 200 empty page whose `has_more` says whether batches remain after the cursor;
  above 100 -> 400 `integer_above_max_value`, below 0 -> 400 `integer_below_min_value`, not an
  integer -> 400 `invalid_type` (param `limit` each time). An `after` id this server never
  issued -> 400 `invalid_request_error` with param `after` (the real API's answer is
  unconfirmed; an error is the safe guess, an empty page would hide a bad cursor).
- `GET /v1/batches/{id}`: one batch; unknown -> 404 `batch_not_found`.
- `GET /v1/files/{id}/content`: an error file as JSONL (`application/octet-stream`, one record
  per line, newline-terminated); any other file id -> 404, like an expired file.
- Anything else -> 404 envelope `Invalid URL (METHOD /path)`.

Faults (off by default) apply to `/v1/batches*` and `/v1/files*`, chosen from
`random.Random(seed)` in request order; at most one of drop, 5xx, 429, truncation per request
(in that precedence), and independently a slow answer. Injected 429s advertise <= 0.2 s, as
`retry-after-ms: 150` or as fractional seconds `retry-after: 0.15` (alternating; the official
SDK parses both as floats). The `requests_per_second` budget answers 429 with the real wait in
`retry-after-ms`; under budget it sends `x-ratelimit-*` with the real remaining count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from crawler.fakedata import FakeBatches
from crawler.fakefaults import (
    NO_FAULT,
    FakeApiStats,
    Fault,
    FaultPicker,
    Quota,
    RequestBudget,
    build_envelope,
    build_html_error,
    build_server_error,
    format_go_duration,
    mask_key,
)

__all__ = ["FakeApiOptions", "FakeApiServer", "FakeApiStats", "serve"]

BROKEN_PAGINATION_MODES = ("empty-has-more", "stuck-cursor", "wrong-last-id")
_INTEGER = re.compile(r"-?[0-9]+")
_RENDERED_MAX_BYTES = 1 << 30
_FAULTY_PREFIXES = ("/v1/batches", "/v1/files")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class FakeApiOptions:
    """What the fake serves and which faults it injects (all faults off by default)."""

    batches: int = 3000
    seed: int = 0
    api_key: str = "sk-fake-local"
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

    def __post_init__(self) -> None:
        """Reject impossible values, naming the field."""
        for name in ("error_rate", "rate_limit_rate", "drop_rate", "truncate_rate", "slow_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in ("batches", "latency", "slow_seconds", "add_per_request"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.advance_per_request < 0:
            raise ValueError(f"advance_per_request must be >= 0, got {self.advance_per_request}")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be > 0, got {self.requests_per_second}")
        if self.broken_pagination not in (None, *BROKEN_PAGINATION_MODES):
            raise ValueError(
                f"broken_pagination must be one of {BROKEN_PAGINATION_MODES}, "
                f"got {self.broken_pagination!r}"
            )


def _encode(payload: Any) -> bytes:
    """Serialise compactly; ASCII escapes (emoji as surrogate pairs) are 25 % faster."""
    return json.dumps(payload, separators=(",", ":")).encode()


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    return _respond(status, _encode(payload), headers)


def _respond(status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(status=status, body=body, content_type="application/json")
    response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
    if headers:
        response.headers.update(headers)
    return response


def _parse_limit(raw: str | None) -> int | dict[str, Any]:
    """Return the page size, or the 400 envelope explaining why it is refused."""
    if raw is None:
        return 20
    if not _INTEGER.fullmatch(raw):
        message = "Invalid type for 'limit': expected an integer, but got a string instead."
        return build_envelope(message, "invalid_request_error", "limit", "invalid_type")
    limit = int(raw)
    if limit > 100:
        message = (
            "Invalid 'limit': integer above maximum value. "
            f"Expected a value <= 100, but got {limit} instead."
        )
        return build_envelope(message, "invalid_request_error", "limit", "integer_above_max_value")
    if limit < 0:
        message = (
            "Invalid 'limit': integer below minimum value. "
            f"Expected a value >= 0, but got {limit} instead."
        )
        return build_envelope(message, "invalid_request_error", "limit", "integer_below_min_value")
    return limit


class _FakeApi:
    """Request handling: middleware (faults, auth) and the route handlers."""

    def __init__(self, options: FakeApiOptions) -> None:
        self.options = options
        self.data = FakeBatches(options.batches, options.seed)
        self.stats = FakeApiStats()
        self._faults = FaultPicker(
            options.seed,
            drop_rate=options.drop_rate,
            error_rate=options.error_rate,
            rate_limit_rate=options.rate_limit_rate,
            truncate_rate=options.truncate_rate,
            slow_rate=options.slow_rate,
        )
        rps = options.requests_per_second
        self._budget = RequestBudget(rps) if rps is not None else None
        self._list_requests = 0
        # Rendered list pages, kept while the data holds still, so that repeated walks
        # (a benchmark's runs) measure the client rather than the data generator.
        self._rendered: dict[tuple[int | None, int], bytes] = {}
        self._rendered_bytes = 0
        self._rendered_at = self.data.clock
        self._bearer = f"Bearer {options.api_key}".encode()

    def build_app(self) -> web.Application:
        """Return the aiohttp application serving this fake."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v1/batches", self._list, name="list_batches")
        app.router.add_get("/v1/batches/{batch_id}", self._retrieve, name="retrieve_batch")
        app.router.add_get("/v1/files/{file_id}/content", self._content, name="file_content")
        app.router.add_route("*", "/{tail:.*}", self._not_found, name="not_found")
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Count, delay, inject faults, check the key, then answer."""
        self.stats.requests[request.match_info.route.name or "unnamed"] += 1
        faulty = request.path.startswith(_FAULTY_PREFIXES)
        draw = self._faults.draw() if faulty else NO_FAULT
        delay = self.options.latency
        if draw.slow:
            self.stats.slow += 1
            delay += self.options.slow_seconds
        if delay:
            await asyncio.sleep(delay)
        early = self._inject(request, draw.fault)
        quota = None
        if early is None and faulty and self._budget is not None:
            quota = self._budget.take()
            early = None if quota.granted else self._over_budget(quota)
        if early is None:
            early = self._check_key(request)
        if early is not None:
            return early
        response = await handler(request)
        if quota is not None:
            response.headers.update(quota.headers())
        if draw.fault == "truncate" and isinstance(response, web.Response):
            self.stats.truncated += 1
            return await self._truncate(request, response)
        return response

    def _inject(self, request: web.Request, fault: Fault | None) -> web.Response | None:
        """Answer a drop, 5xx or 429 fault instead of the handler; None for the others."""
        if fault == "drop":
            self.stats.dropped += 1
            # aiohttp then fails to write this reply to the closed transport and gives up quietly.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        if fault == "error":
            self.stats.errors += 1
            return self._server_error()
        if fault == "rate_limit":
            self.stats.rate_limited += 1
            return self._rate_limited()
        return None

    def _over_budget(self, quota: Quota) -> web.Response:
        """Answer 429 when the requests_per_second budget is spent, with the real wait."""
        self.stats.rate_limited += 1
        headers = {**quota.headers(), "retry-after-ms": str(max(1, round(quota.wait * 1000)))}
        message = f"Rate limit reached for requests. Please try again in {quota.wait:.3f}s."
        return _json(429, build_envelope(message, "requests", None, "rate_limit_exceeded"), headers)

    def _check_key(self, request: web.Request) -> web.Response | None:
        """Return the 401 answer when the bearer key is missing or wrong, else None."""
        header = request.headers.get("Authorization", "")
        if hmac.compare_digest(header.encode(), self._bearer):
            return None
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
        return _json(401, build_envelope(message, "invalid_request_error", None, "invalid_api_key"))

    def _server_error(self) -> web.Response:
        """Answer an injected 500/502/503, as JSON or as a proxy's HTML page."""
        status = self._faults.server_error_status()
        if self.options.html_errors:
            return web.Response(
                status=status, text=build_html_error(status), content_type="text/html"
            )
        return _json(status, build_server_error(status))

    def _rate_limited(self) -> web.Response:
        """Answer an injected 429 with a small advertised delay."""
        delay, as_ms = self._faults.rate_limit_delay()
        limit = self._budget.limit if self._budget is not None else 5000
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
        return _json(429, build_envelope(message, "requests", None, "rate_limit_exceeded"), headers)

    async def _truncate(self, request: web.Request, full: web.Response) -> web.StreamResponse:
        """Send the headers and half the body, then close: Content-Length promised more."""
        body = full.body if isinstance(full.body, bytes) else b""
        partial = web.StreamResponse(status=full.status, headers=full.headers)
        partial.content_length = len(body)
        await partial.prepare(request)
        await partial.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return partial

    async def _list(self, request: web.Request) -> web.Response:
        """GET /v1/batches."""
        limit = _parse_limit(request.query.get("limit"))
        if isinstance(limit, dict):
            return _json(400, limit)
        data = self.data
        after = request.query.get("after")
        after_index = None if after is None else data.index_of(after)
        if after is not None and after_index is None:
            message = f"Invalid 'after': no batch with id '{after}' was found."
            return _json(400, build_envelope(message, "invalid_request_error", "after"))
        if self._list_requests:
            if self.options.add_per_request:
                data.add_batches(self.options.add_per_request)
            if self.options.advance_per_request:
                data.advance_statuses(self.options.advance_per_request)
        self._list_requests += 1
        self.stats.pages += 1
        if self._rendered_at != data.clock:  # the data moved since these were rendered
            self._rendered.clear()
            self._rendered_bytes = 0
            self._rendered_at = data.clock
        body = self._rendered.get((after_index, limit))
        if body is None:
            body = self._render_page(after_index, limit)
            if self._rendered_bytes + len(body) <= _RENDERED_MAX_BYTES:
                self._rendered[after_index, limit] = body
                self._rendered_bytes += len(body)
        return _respond(200, body)

    def _render_page(self, after_index: int | None, limit: int) -> bytes:
        """The body of one list page, broken as `broken_pagination` asks."""
        data = self.data
        indices, has_more = data.page(after_index, limit)
        mode = self.options.broken_pagination
        # Page 3 on (by position): cursor offset of two pages or more.
        late = limit > 0 and (0 if after_index is None else len(data) - after_index) >= 2 * limit
        if late and mode == "empty-has-more":
            indices, has_more = [], True
        elif late and mode == "stuck-cursor":
            indices, has_more = data.page(len(data) - 2 * limit, limit)[0], True
        items = [data.batch(i) for i in indices]
        last_id = items[-1]["id"] if items else None
        if mode == "wrong-last-id" and indices:
            last = indices[-1]
            last_id = data.batch_id(last - 1 if last > 0 else last + 1)
        page = {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": last_id,
            "has_more": has_more,
        }
        return _encode(page)

    async def _retrieve(self, request: web.Request) -> web.Response:
        """GET /v1/batches/{batch_id}."""
        batch_id = request.match_info["batch_id"]
        index = self.data.index_of(batch_id)
        if index is None:
            message = f"No batch found with id '{batch_id}'."
            return _json(
                404, build_envelope(message, "invalid_request_error", None, "batch_not_found")
            )
        return _json(200, self.data.batch(index))

    async def _content(self, request: web.Request) -> web.Response:
        """GET /v1/files/{file_id}/content: an error file as JSONL."""
        file_id = request.match_info["file_id"]
        lines = self.data.error_file_lines(file_id)
        if lines is None:
            message = f"No such File object: {file_id}"
            return _json(404, build_envelope(message, "invalid_request_error", "id"))
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        response = web.Response(body=body, content_type="application/octet-stream")
        response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
        return response

    async def _not_found(self, request: web.Request) -> web.Response:
        """Any other method or path."""
        message = f"Invalid URL ({request.method} {request.path})"
        return _json(404, build_envelope(message, "invalid_request_error"))


class FakeApiServer:
    """Run the fake on a TCP port for the duration of an `async with` block.

    Args:
        options: what to serve; defaults to `FakeApiOptions()`.
        host: interface to listen on.
        port: TCP port; 0 picks a free one (read `base_url` afterwards).
    """

    def __init__(
        self, options: FakeApiOptions | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.options = options or FakeApiOptions()
        self._api = _FakeApi(self.options)
        self.data: FakeBatches = self._api.data
        self.stats: FakeApiStats = self._api.stats
        self.base_url = ""  # set once listening, e.g. "http://127.0.0.1:54321/v1"
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        """Start listening."""
        # No access log: it would cost more than generating a page. A short shutdown timeout:
        # requests still in flight at exit (a slow fault, say) are cut rather than awaited.
        runner = web.AppRunner(self._api.build_app(), access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.base_url = f"http://{host}:{port}/v1"
        return self

    def hold_still(self) -> None:
        """Stop the moving target: from now on no batch is added or advanced."""
        self._api.options = dataclasses.replace(
            self._api.options, add_per_request=0, advance_per_request=0
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop listening and close every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve(
    options: FakeApiOptions,
    host: str = "127.0.0.1",
    port: int = 8000,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the fake until cancelled; `ready(base_url)` is called once it is listening."""
    async with FakeApiServer(options, host=host, port=port) as server:
        if ready is not None:
            ready(server.base_url)
        await asyncio.Event().wait()  # returns only by cancellation
