"""Incremental syncs against the fake API: new batches, in-flight refreshes, the cost model."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
from aioresponses import aioresponses

from crawler.api import ApiClient, RetryPolicy
from crawler.config import Settings
from crawler.errors import ServerError
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.ratelimit import RateLimiter
from crawler.refresh import refresh_by_id
from crawler.rows import build_page_rows
from crawler.runs import RunFigures
from crawler.store import open_store
from crawler.sync_run import sync

from .conftest import API_KEY, BASE_URL, list_body, make_batch, serve_the_end
from .exact import assert_database_matches

RETRY = RetryPolicy(max_attempts=10, max_seconds=30, initial_backoff=0, max_backoff=0)


def settings_for(server: FakeApiServer, db: Path, **extra: object) -> Settings:
    """Settings for the list alone: request files have tests of their own
    (test_request_files.py), and the fault knobs here would slow their downloads too."""
    layers: dict[str, object] = {"files": False, **extra}
    return Settings(db=db, base_url=server.base_url, api_key=server.options.api_key, **layers)


KNOWN = {"validating", "in_progress", "finalizing", "cancelling"} | {
    "completed",
    "failed",
    "expired",
    "cancelled",
}


def settle_unknown_statuses(server: FakeApiServer) -> None:
    """The fake gives a few batches a status nobody knows; the sync refreshes those on
    every run, as they may change. Tests of the cost model settle them first."""
    for i, batch in enumerate(reversed(list(server.data.snapshot()))):
        if batch["status"] not in KNOWN:
            server.data.change(i, status="completed")


def in_flight_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        sql = "SELECT count(*) FROM batches WHERE status IN ('validating', 'in_progress', "
        return conn.execute(sql + "'finalizing', 'cancelling')").fetchone()[0]


async def test_repeated_syncs_of_a_moving_target_stay_exact(db_path: Path) -> None:
    """Batches added and advanced between and during syncs are all caught."""
    options = FakeApiOptions(batches=3000, add_per_request=4, advance_per_request=6)
    async with FakeApiServer(options) as server:
        first = await sync(settings_for(server, db_path), retry=RETRY)
        assert first.mode == "full"
        for _ in range(3):
            server.data.add_batches(25)
            server.data.advance_statuses(40)
            result = await sync(settings_for(server, db_path), retry=RETRY)
            assert result.mode == "incremental"
            assert result.pages < 10
        server.hold_still()
        final = await sync(settings_for(server, db_path), retry=RETRY)
        assert_database_matches(db_path, server.data.snapshot())
    assert final.mode == "incremental"


async def test_a_dense_recent_in_flight_region_is_walked(db_path: Path) -> None:
    """In-flight batches all near the head are refreshed by the walk, none by id."""
    async with FakeApiServer(FakeApiOptions(batches=5000)) as server:
        settle_unknown_statuses(server)
        await sync(settings_for(server, db_path), retry=RETRY)
        assert in_flight_count(db_path) > 20
        server.data.advance_statuses(1000)
        pages_before = server.stats.pages
        result = await sync(settings_for(server, db_path), retry=RETRY)
        assert_database_matches(db_path, server.data.snapshot())
        walked = server.stats.pages - pages_before
    assert result.refreshed_by_id == 0
    assert walked == result.pages <= 3


async def test_a_lone_straggler_deep_in_the_history_is_fetched_by_id(db_path: Path) -> None:
    """One old batch still in flight costs one request by id, not a walk down to it."""
    async with FakeApiServer(FakeApiOptions(batches=5000)) as server:
        settle_unknown_statuses(server)
        server.data.change(100, status="in_progress", completed_at=None)
        await sync(settings_for(server, db_path), retry=RETRY)
        server.data.change(100, status="completed")
        result = await sync(settings_for(server, db_path), retry=RETRY)
        assert_database_matches(db_path, server.data.snapshot())
        by_id = server.stats.requests["retrieve_batch"]
    assert result.refreshed_by_id == by_id == 1
    assert result.pages <= 2


async def test_a_batch_the_api_no_longer_has_is_marked_gone(db_path: Path) -> None:
    """A 404 on refresh marks the batch gone; it stays in the table."""
    async with FakeApiServer(FakeApiOptions(batches=2000)) as server:
        await sync(settings_for(server, db_path), retry=RETRY)
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE batches SET status = 'completed' WHERE status = 'paused_for_review'")
        conn.execute(
            "INSERT INTO batches (id, status, created_at, raw, first_seen_at, last_seen_at) "
            "VALUES ('batch_0000000000000000000000000000dead', 'in_progress', 1, '{}', 1, 1)"
        )
    async with FakeApiServer(FakeApiOptions(batches=2000)) as server:
        result = await sync(settings_for(server, db_path), retry=RETRY)
    assert result.gone == 1
    with sqlite3.connect(db_path) as conn:
        gone = conn.execute("SELECT id FROM batches WHERE gone_at IS NOT NULL").fetchall()
        runs = conn.execute("SELECT mode, refreshed_by_id, gone FROM sync_runs").fetchall()
    assert gone == [("batch_0000000000000000000000000000dead",)]
    assert runs[-1] == ("incremental", 1, 1)


async def test_a_run_resuming_an_interrupted_incremental_still_refreshes(db_path: Path) -> None:
    """An incremental cut short by its page budget is resumed, in-flight refreshes included."""
    async with FakeApiServer(FakeApiOptions(batches=3000)) as server:
        await sync(settings_for(server, db_path), retry=RETRY)
        server.data.add_batches(250)
        server.data.advance_statuses(300)
        cut = await sync(settings_for(server, db_path, max_pages=1), retry=RETRY)
        resumed = await sync(settings_for(server, db_path), retry=RETRY)
        assert_database_matches(db_path, server.data.snapshot())
    assert (cut.mode, cut.complete) == ("incremental", False)
    assert (resumed.mode, resumed.complete) == ("resume", True)


async def test_a_budgeted_run_refreshes_by_id_instead_of_walking_below_the_head(
    db_path: Path,
) -> None:
    """A page budget would stop a walk below the head at the same depth on every run, and
    the batches deeper down would never be refreshed: with a budget they are asked by id."""
    async with FakeApiServer(FakeApiOptions(batches=5000)) as server:
        settle_unknown_statuses(server)
        in_flight = range(4000, 4400, 2)  # a dense region two to six pages down
        for i in in_flight:
            server.data.change(i, status="in_progress")
        await sync(settings_for(server, db_path), retry=RETRY)
        for i in in_flight:
            server.data.change(i, status="completed")
        result = await sync(settings_for(server, db_path, max_pages=2), retry=RETRY)
        assert_database_matches(db_path, server.data.snapshot())
    assert (result.pages, result.refreshed_by_id, result.complete) == (1, 200, True)


async def test_a_head_stored_without_a_creation_time_still_bounds_the_walk(
    db_path: Path,
) -> None:
    """With no usable created_at on the old head, the walk stops at the head's page."""
    async with FakeApiServer(FakeApiOptions(batches=2000)) as server:
        await sync(settings_for(server, db_path), retry=RETRY)
        with sqlite3.connect(db_path) as conn:
            conn.execute(
                "UPDATE batches SET created_at = NULL WHERE id = (SELECT head_id FROM walk_state)"
            )
        result = await sync(settings_for(server, db_path), retry=RETRY)
    assert result.complete
    assert result.pages == 1


async def test_a_status_nobody_knows_is_refreshed_every_time(db_path: Path) -> None:
    """Only the four terminal statuses are settled: an unknown one is asked about again."""
    async with FakeApiServer(FakeApiOptions(batches=3000)) as server:
        await sync(settings_for(server, db_path), retry=RETRY)
        with sqlite3.connect(db_path) as conn:
            (unknown,) = conn.execute(
                "SELECT count(*) FROM batches WHERE status = 'paused_for_review'"
            ).fetchone()
        result = await sync(settings_for(server, db_path), retry=RETRY)
    assert unknown > 0
    assert result.refreshed_by_id == unknown


class VirtualTime:
    """One clock for the client's rate limiter and retries and the server's request budget.

    It moves only when someone sleeps: to the moment that sleeper wakes at, at once. Between
    sleeps no time passes, however slow the machine, so the 429s a run meets do not depend
    on its speed.
    """

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)  # let the others run, as a real sleep would


async def test_a_refresh_by_id_within_a_request_budget_gets_no_429s(db_path: Path) -> None:
    """500 batches by id, 16 at a time, against 100 requests/s: no 429s, exact rows."""
    virtual = VirtualTime()
    options = FakeApiOptions(batches=5000, requests_per_second=100)
    async with FakeApiServer(options, clock=virtual.clock) as server:
        ids = [server.data.batch_id(i) for i in range(0, 5000, 10)]
        limiter = RateLimiter(clock=virtual.clock, sleep=virtual.sleep)
        async with (
            open_store(db_path) as store,
            aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {options.api_key}"}
            ) as session,
        ):
            client = ApiClient(
                session, server.base_url, retry=RETRY, limiter=limiter, sleep=virtual.sleep
            )
            run_id = await store.start_run("incremental", server.base_url)

            async def save(batches, gone):  # type: ignore[no-untyped-def]
                rows, errors = build_page_rows(batches, 1)
                await store.save_page(rows, errors, None, run_id, RunFigures(), gone)

            skipped: list[str] = []
            await refresh_by_id(
                client,
                ids,
                concurrency=16,
                chunk=100,
                save=save,
                skip=lambda batch_id, _: skipped.append(batch_id),
                check_api=lambda: asyncio.sleep(0, "answers"),
            )
            assert skipped == []
        expected = [server.data.batch(i) for i in range(0, 5000, 10)]
        rate_limited = server.stats.rate_limited
    assert_database_matches(db_path, expected)
    # On one clock, the limiter spaces requests at the rate the budget refills once a quarter
    # of it is left: no request meets a 429, and the 400 past the first second's 100 take
    # little more than the 4 s the budget allows.
    assert rate_limited == 0
    assert limiter.waits > 0
    assert 4.0 <= virtual.now < 4.5


async def test_a_batch_answering_404_by_id_is_looked_for_in_the_list_too(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """One 404 by id (a replica behind) while the list shows the batch completed: the run
    reads it from the list page that holds it, instead of counting it gone and leaving it
    in progress for good."""
    first = [
        make_batch(n, status="in_progress" if n == 4 else "completed") for n in range(20, 0, -1)
    ]
    later = [make_batch(n) for n in range(20, 0, -1)]
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY, page_size=2, files=False)
    with aioresponses() as mock:
        mock_pages(mock, first)
        await sync(settings, retry=fast_retry)
    target, above = make_batch(4)["id"], make_batch(5)["id"]
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body(later[:2], True))
        mock.get(f"{BASE_URL}/batches/{target}", status=404, payload=NOT_FOUND)
        mock.get(f"{BASE_URL}/batches?after={above}&limit=2", payload=list_body(later[16:18], True))
        result = await sync(settings, retry=fast_retry)
    assert (result.mode, result.gone) == ("incremental", 1)
    with sqlite3.connect(db_path) as conn:
        row = conn.execute(
            "SELECT status, gone_at, not_found_runs FROM batches WHERE id = ?", (target,)
        ).fetchone()
    assert row == ("completed", None, 0)
    assert result.warnings == ()


NOT_FOUND = {
    "error": {
        "message": "No batch found",
        "type": "invalid_request_error",
        "code": "batch_not_found",
    }
}


def mock_pages(mock: aioresponses, batches: list[dict[str, Any]]) -> None:
    """The list of `batches` in pages of two, from the top."""
    after = None
    for start in range(0, len(batches), 2):
        page = batches[start : start + 2]
        query = "limit=2" if after is None else f"after={after}&limit=2"
        mock.get(f"{BASE_URL}/batches?{query}", payload=list_body(page, start + 2 < len(batches)))
        after = page[-1]["id"]
    serve_the_end(mock, batches[-1])


class _FailingSome:
    """A client whose asks by id fail (a 5xx) for the batches of `failing`."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing

    async def fetch_batch(self, batch_id: str, **_: Any) -> dict[str, Any]:
        if batch_id in self.failing:
            raise ServerError("API error 502: HTTP 502", status=502)
        return {"id": batch_id}


async def test_an_answer_between_two_checks_finding_no_witness_marks_no_route_failing() -> None:
    """Two streaks of failures by id, each check finding no other batch to ask, with
    batches answered between them: the first check's word was kept for the whole
    refresh, and the second marked the route failing for a day (pass 89B)."""
    ids = ["f1", "f2", "f3", "ok1", "ok2", "f4", "f5", "f6", "ok3"]

    async def save(batches: Any, gone: Any) -> None:
        pass

    end = await refresh_by_id(
        _FailingSome({"f1", "f2", "f3", "f4", "f5", "f6"}),  # type: ignore[arg-type]
        ids,
        concurrency=1,
        chunk=10,
        save=save,
        skip=lambda batch_id, error: None,
        check_api=lambda: asyncio.sleep(0, "unknown"),
    )
    assert not end.route_failing
    assert end.answered == {"ok1", "ok2", "ok3"}
