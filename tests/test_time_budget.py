"""--max-seconds holds while a request hangs: the request is abandoned at the budget's end,
and what was committed before it stays. A real client against a server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.sync import sync

from .conftest import API_KEY, list_body, make_batch

BATCHES = [make_batch(4), make_batch(3), make_batch(2), make_batch(1, status="in_progress")]


@dataclass
class HangingServer:
    """Two list pages and every batch by id; `hang` names the requests left unanswered
    (the second page, by id) until the test ends."""

    hang: set[str] = field(default_factory=set)
    served: Counter[str] = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def list_page(self, request: web.Request) -> web.Response:
        after = request.query.get("after")
        kind = "second page" if after else "first page"
        self.served[kind] += 1
        if kind in self.hang:
            await self.release.wait()
        batches = BATCHES[2:] if after else BATCHES[:2]
        return web.json_response(list_body(batches, has_more=after is None))

    async def by_id(self, request: web.Request) -> web.Response:
        self.served["by id"] += 1
        if "by id" in self.hang:
            await self.release.wait()
        wanted = request.match_info["batch_id"]
        return web.json_response(next(b for b in BATCHES if b["id"] == wanted))


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


async def test_the_first_page_is_read_whatever_the_budget(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """A budget smaller than one page still moves each run on by a page."""
    server = HangingServer()
    async with serving(server) as base_url:
        tiny = dataclasses.replace(budgeted(db_path, base_url), max_seconds=1e-9)
        result = await sync(tiny, retry=fast_retry)
    assert (result.complete, result.pages, stored(db_path)) == (False, 1, 2)
