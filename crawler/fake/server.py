"""A local aiohttp server faithful to the OpenAI Batches API, with fault knobs for tests.

Routes (all need `Authorization: Bearer <api_key>`, else 401 `invalid_api_key`):

- `GET /v1/batches?limit=&after=`: newest first. `limit` defaults to 20; 1..100 pages;
  `limit=0` is a 200 empty page whose `has_more` says whether batches remain after the cursor;
  above 100 -> 400 `integer_above_max_value`, below 0 -> 400 `integer_below_min_value`, not an
  integer -> 400 `invalid_type` (param `limit` each time). An `after` id this server never
  issued -> 400 `invalid_request_error` with param `after` (the real API's answer is
  unconfirmed; an error is the safe guess, an empty page would hide a bad cursor).
- `GET /v1/batches/{id}`: one batch; unknown -> 404 `batch_not_found`.
- `GET /v1/files/{id}` and `GET /v1/files/{id}/content`: a terminal batch's output or error
  file, its File object and its JSONL content (see `crawler.fake.files`, with its own faults);
  any other file id -> 404, like an expired file.
- Anything else -> 404 envelope `Invalid URL (METHOD /path)`.

Faults (off by default) apply to `/v1/batches*` and `/v1/files*`, chosen from
`random.Random(seed)` in request order; at most one of drop, 5xx, 429, truncation per request
(in that precedence; a streamed file content is cut by `file_truncate_rate` instead), and
independently a slow answer. Injected 429s advertise <= 0.2 s, as
`retry-after-ms: 150` or as fractional seconds `retry-after: 0.15` (alternating; the official
SDK parses both as floats). The `requests_per_second` budget answers 429 with the real wait in
`retry-after-ms`; under budget it sends `x-ratelimit-*` with the real remaining count.
`bad_page` answers every list request after the first in a way a client must not choke on
(see `FakeApiOptions`): a trickle, a redirect loop, an encoding never asked for, a 64 MiB page,
JSON nested 100,000 deep.

For tests: `FakeApiServer.hold_list_requests` stops a client at a known point of its walk,
the budget can run on an injected clock, and `stats` counts what was received and done.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .data import FakeBatches
from .faults import NO_FAULT, FakeApiStats, Fault, FaultPicker, RequestBudget
from .files import FileRoutes
from .flavors import Flavor
from .gate import ListGate
from .listing import ListPages, parse_limit
from .options import FakeApiOptions
from .replies import (
    DEEP_JSON,
    error_reply,
    json_reply,
    marked_brotli,
    over_budget,
    rate_limited,
    redirect_to_itself,
    reply,
    server_error,
)

# Whitespace before a "huge" bad page: valid JSON, far past what a client should read.
HUGE_PADDING = 64 * 2**20
_SEEN_HEADERS = ("OpenAI-Organization", "OpenAI-Project")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _FakeApi:
    """Request handling: middleware (faults, auth) and the route handlers."""

    def __init__(self, options: FakeApiOptions, clock: Callable[[], float]) -> None:
        self.options = options
        self.data = FakeBatches(
            options.batches,
            options.seed,
            ids=options.ids,
            requests_per_batch=options.requests_per_batch,
            **({} if options.now is None else {"now": options.now}),
        )
        self.stats = FakeApiStats()
        self.files = FileRoutes(self.data, options, self.stats)
        self.gate = ListGate(self.stats)
        self._faults = FaultPicker(
            options.seed,
            drop_rate=options.drop_rate,
            error_rate=options.error_rate,
            rate_limit_rate=options.rate_limit_rate,
            truncate_rate=options.truncate_rate,
            slow_rate=options.slow_rate,
        )
        rps = options.requests_per_second
        self._budget = RequestBudget(rps, clock) if rps is not None else None
        self._list_requests = 0
        self.flavor = Flavor(options.flavor, options.api_key)
        self._pages = ListPages(self.data, options.broken_pagination, self.flavor)
        prefix = self.flavor.prefix
        self._faulty_prefixes = (prefix + "/batches", prefix + "/files")

    def build_app(self) -> web.Application:
        """Return the aiohttp application serving this fake."""
        app = web.Application(middlewares=[self._middleware])
        prefix = self.flavor.prefix
        app.router.add_get(prefix + "/batches", self._list, name="list_batches")
        app.router.add_get(prefix + "/batches/{batch_id}", self._retrieve, name="retrieve_batch")
        self.files.add_to(app.router, prefix)
        app.router.add_route("*", "/{tail:.*}", self._not_found, name="not_found")
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Count, delay, inject faults, check the key, then answer."""
        self.stats.requests[request.match_info.route.name or "unnamed"] += 1
        for name in _SEEN_HEADERS:
            value = request.headers.get(name)
            if value is not None:
                self.stats.headers[name, value] += 1
        faulty = request.path.startswith(self._faulty_prefixes)
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
            if not quota.granted:
                self.stats.rate_limited += 1
                early = over_budget(quota)
        if early is None:
            early = self.flavor.refusal(request)
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
            return server_error(self._faults.server_error_status(), self.options.html_errors)
        if fault == "rate_limit":
            self.stats.rate_limited += 1
            delay, as_ms = self._faults.rate_limit_delay()
            limit = self._budget.limit if self._budget is not None else 5000
            return rate_limited(delay, as_ms, limit)
        return None

    async def _truncate(self, request: web.Request, full: web.Response) -> web.StreamResponse:
        """Send the headers and half the body, then close: Content-Length promised more."""
        body = full.body if isinstance(full.body, bytes) else b""
        partial = web.StreamResponse(status=full.status, headers=full.headers)
        partial.content_length = len(body)
        with contextlib.suppress(ConnectionError):  # the client gone already (killed, say)
            await partial.prepare(request)
            await partial.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return partial

    async def _list(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/batches."""
        await self.gate.enter()
        limit = parse_limit(request.query.get("limit"))
        if isinstance(limit, dict):
            return json_reply(400, limit)
        data = self.data
        after = request.query.get("after")
        after_index = None if after is None else data.index_of(after)
        if after is not None and after_index is None:
            message = f"Invalid 'after': no batch with id '{after}' was found."
            return error_reply(400, message, "invalid_request_error", "after")
        if self._list_requests and self.options.bad_page is not None:
            return await self._bad_page(request, reply(200, self._pages.body(after_index, limit)))
        if self._list_requests:
            if self.options.add_per_request:
                data.add_batches(self.options.add_per_request)
            if self.options.advance_per_request:
                data.advance_statuses(self.options.advance_per_request)
        self._list_requests += 1
        self.stats.pages += 1
        return reply(200, self._pages.body(after_index, limit))

    async def _bad_page(self, request: web.Request, page: web.Response) -> web.StreamResponse:
        """Answer a list request as `bad_page` says, instead of with `page`."""
        self.stats.bad_pages += 1
        mode = self.options.bad_page
        if mode == "redirect-loop":
            return redirect_to_itself(request)
        if mode == "br-encoded":
            return marked_brotli(page)
        if mode in ("deep-json", "deep-error"):
            return reply(200 if mode == "deep-json" else 400, DEEP_JSON)
        body = page.body if isinstance(page.body, bytes) else b""
        if mode == "trickle":
            return await self._stream(request, page, [body[i : i + 1] for i in range(len(body))])
        padding = [b" " * 2**16] * (HUGE_PADDING // 2**16)
        return await self._stream(request, page, [*padding, body])

    async def _stream(
        self, request: web.Request, page: web.Response, chunks: list[bytes]
    ) -> web.StreamResponse:
        """Send `chunks` as the body of `page`, with slow_seconds between them when trickling,
        until they run out or the client goes away."""
        response = web.StreamResponse(status=page.status, headers=page.headers)
        response.content_length = sum(map(len, chunks))
        await response.prepare(request)
        pause = self.options.slow_seconds if self.options.bad_page == "trickle" else 0.0
        with contextlib.suppress(ConnectionError):  # the client stopped reading
            for chunk in chunks:
                await response.write(chunk)
                self.stats.streamed_bytes += len(chunk)
                if pause:
                    await asyncio.sleep(pause)
        return response

    async def _retrieve(self, request: web.Request) -> web.Response:
        """GET /v1/batches/{batch_id}."""
        batch_id = request.match_info["batch_id"]
        index = self.data.index_of(batch_id)
        if index is None:
            message = f"No batch found with id '{batch_id}'."
            return error_reply(404, message, "invalid_request_error", None, "batch_not_found")
        return json_reply(200, self.flavor.batch(self.data.batch(index)))

    async def _not_found(self, request: web.Request) -> web.Response:
        """Any other method or path."""
        return error_reply(
            404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error"
        )


class FakeApiServer:
    """Run the fake on a TCP port for the duration of an `async with` block.

    Args:
        options: what to serve; defaults to `FakeApiOptions()`.
        host: interface to listen on.
        port: TCP port; 0 picks a free one (read `base_url` afterwards).
        clock: the monotonic clock of the `requests_per_second` budget (a test may pass a
            virtual one, shared with the client's rate limiter).
    """

    def __init__(
        self,
        options: FakeApiOptions | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options or FakeApiOptions()
        self._api = _FakeApi(self.options, clock)
        self.data: FakeBatches = self._api.data
        self.stats: FakeApiStats = self._api.stats
        self.files: FileRoutes = self._api.files
        self.base_url = ""  # set once listening, e.g. "http://127.0.0.1:54321/v1"
        self.root_url = ""  # without the path: an Azure flavor's endpoint
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
        self.root_url = f"http://{client_host(self._host)}:{port}"
        self.base_url = self.root_url + self._api.flavor.prefix
        return self

    def served(self) -> Iterator[dict[str, Any]]:
        """Every batch in its current state as this server's flavor sends it, newest first."""
        return map(self._api.flavor.batch, self.data.snapshot())

    def hold_still(self) -> None:
        """Stop the moving target: from now on no batch is added or advanced."""
        self._api.options = dataclasses.replace(
            self._api.options, add_per_request=0, advance_per_request=0
        )

    def hold_list_requests(self, after: int = 0) -> None:
        """Answer `after` more list requests, then hold the following ones until
        `release_list_requests()` (or until the server stops); `stats.held` counts them.

        A client is then stopped at a known point: it has what those pages gave it, and
        waits on its next page, so a test can kill or cancel it there.
        """
        self._api.gate.hold(after)

    def release_list_requests(self) -> None:
        """Answer the held list requests, and hold no more."""
        self._api.gate.release()

    def hold_file_contents(self, lines: int) -> None:
        """Stop every file's content once about `lines` lines of it are sent (at the next
        64 KiB chunk), until `release_file_contents()` or until the server stops."""
        self.files.gate.hold(lines)

    def release_file_contents(self) -> None:
        """Let the held file contents go on, and hold no more."""
        self.files.gate.release()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop listening and close every connection."""
        self._api.gate.release()
        self.files.gate.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# A wildcard address listens on every interface; a client on this machine asks loopback.
_LOOPBACK_FOR = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def client_host(host: str) -> str:
    """The host part of a URL that reaches a server listening on `host` from this machine."""
    host = _LOOPBACK_FOR.get(host, host)
    return f"[{host}]" if ":" in host else host


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
