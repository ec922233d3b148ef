"""--max-seconds holds while a request hangs: the request is abandoned at the budget's end,
and what was committed before it stays. A real client against a server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.request_files import MAX_FILE_LINES
from crawler.sync import sync

from .conftest import API_KEY, list_body, make_batch

BATCHES = [make_batch(4), make_batch(3), make_batch(2), make_batch(1, status="in_progress")]


@dataclass
class HangingServer:
    """Two list pages and every batch by id; `hang` names the requests left unanswered
    (the second page, by id, a check of the list: a page of one) until the test ends;
    `refuse_by_id` answers every batch by id 403."""

    hang: set[str] = field(default_factory=set)
    served: Counter[str] = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    batches: list[dict[str, object]] = field(default_factory=lambda: BATCHES)
    refuse_by_id: bool = False

    async def list_page(self, request: web.Request) -> web.Response:
        after = request.query.get("after")
        if request.query.get("limit") == "1":
            kind = "check"
        else:
            kind = "second page" if after else "first page"
        self.served[kind] += 1
        if kind in self.hang:
            await self.release.wait()
        half = len(self.batches) // 2
        batches = self.batches[half:] if after else self.batches[:half]
        if after and after == self.batches[-1]["id"]:
            batches = []  # past the end, as a check of a full last page asks
        return web.json_response(list_body(batches, has_more=after is None))

    async def by_id(self, request: web.Request) -> web.Response:
        self.served["by id"] += 1
        if "by id" in self.hang:
            await self.release.wait()
        if self.refuse_by_id:
            error = {"message": "forbidden", "type": "invalid_request_error", "code": None}
            return web.json_response({"error": error}, status=403)
        wanted = request.match_info["batch_id"]
        return web.json_response(next(b for b in self.batches if b["id"] == wanted))


@contextlib.asynccontextmanager
async def serving(server: HangingServer) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v1/batches", server.list_page)
    app.router.add_get("/v1/batches/{batch_id}", server.by_id)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        server.release.set()
        await runner.cleanup()


def stored(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM batches").fetchone()[0])


def budgeted(db: Path, base_url: str) -> Settings:
    # The read timeout alone would hold each hanging attempt 5 s, retried 4 times.
    return Settings(
        db=db, base_url=base_url, api_key=API_KEY, page_size=2, read_timeout=5, max_seconds=0.5
    )


async def test_a_list_page_that_hangs_is_abandoned_when_the_budget_ends(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    server = HangingServer(hang={"second page"})
    async with serving(server) as base_url:
        result = await sync(budgeted(db_path, base_url), retry=fast_retry)
    assert (result.complete, result.pages, stored(db_path)) == (False, 1, 2)
    assert server.served["second page"] == 1, "abandoned, not retried"


async def test_a_refresh_by_id_that_hangs_is_abandoned_when_the_budget_ends(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    server = HangingServer()
    async with serving(server) as base_url:
        settings = budgeted(db_path, base_url)
        first = await sync(dataclasses.replace(settings, max_seconds=None), retry=fast_retry)
        assert (first.complete, stored(db_path)) == (True, 4)
        server.hang.add("by id")
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.refreshed_by_id) == (False, 0)
    assert server.served["by id"] == 1, "abandoned, not retried"


async def test_the_check_of_the_list_after_failures_by_id_is_abandoned_when_the_budget_ends(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """Requests by id refused one after the other make the run ask the list whether the API
    is up: once, not once a worker, and within the budget when it hangs."""
    server = HangingServer(batches=[make_batch(n, status="in_progress") for n in range(16, 0, -1)])
    async with serving(server) as base_url:
        settings = budgeted(db_path, base_url)
        first = await sync(dataclasses.replace(settings, page_size=8, max_seconds=None))
        assert first.complete
        server.refuse_by_id = True
        server.hang.add("check")
        result = await sync(dataclasses.replace(settings, page_size=8), retry=fast_retry)
    assert not result.complete
    assert server.served["check"] == 1, "one check, whatever the workers"


async def test_the_first_page_is_read_whatever_the_budget(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """A budget smaller than one page still moves each run on by a page."""
    server = HangingServer()
    async with serving(server) as base_url:
        tiny = dataclasses.replace(budgeted(db_path, base_url), max_seconds=1e-9)
        result = await sync(tiny, retry=fast_retry)
    assert (result.complete, result.pages, stored(db_path)) == (False, 1, 2)


async def test_a_file_that_never_ends_is_cut_off_past_a_batchs_requests(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """A file streamed without end would fill the disk, with or without a budget: past
    50,000 lines (the most requests a batch holds) it is no batch's file."""
    batch = make_batch(1, status="failed", error_file_id="file-err-1", output_file_id=None)

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        line = b'{"custom_id": "r%d", "response": null, "error": {"code": "batch_expired"}}\n'
        with contextlib.suppress(ConnectionError):  # until the client hangs up
            for n in itertools.count():
                await response.write(line % n)
        return response

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(list_body([batch], has_more=False))

    app = web.Application()
    app.router.add_get("/v1/batches", listing)
    app.router.add_get("/v1/files/{file_id}/content", endless)
    runner = web.AppRunner(app, shutdown_timeout=0.25)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        settings = Settings(db=db_path, base_url=base_url, api_key=API_KEY)
        result = await sync(settings, retry=fast_retry)
    finally:
        await runner.cleanup()
    assert result.files == 0
    assert f"holds more than {MAX_FILE_LINES:,} lines" in result.warnings[0]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM batch_requests").fetchone() == (MAX_FILE_LINES,)
        assert conn.execute("SELECT state FROM batch_files").fetchone() == ("failed",)
