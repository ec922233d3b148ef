"""The sync run: walk plans, resume, catch-up, loop guards, budgets and the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from crawler import status as status_module
from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.errors import (
    AuthenticationError,
    BrokenResponseError,
    ConfigError,
    DatabaseError,
    PaginationError,
    ServerError,
)
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.ratelimit import RateLimiter
from crawler.status import format_status, read_status
from crawler.store import Store, open_store, writes
from crawler.sync_run import sync

from .conftest import BASE_URL, list_body, make_batch


def ids(*numbers: int) -> list[str]:
    return [make_batch(n)["id"] for n in numbers]


class FakeList:
    """Registers the list pages of `numbers` (newest first) with aioresponses."""

    def __init__(
        self,
        mock: aioresponses,
        numbers: list[int],
        limit: int,
        batches: dict[int, dict[str, Any]] | None = None,
    ) -> None:
        self.mock = mock
        self.numbers = numbers
        self.limit = limit
        self.batches = batches or {}

    def serve(self, after: int | None, *, repeat: bool = False, **options: Any) -> None:
        """Register one page; `options` go to aioresponses (a `callback`, say)."""
        start = 0 if after is None else self.numbers.index(after) + 1
        chunk = self.numbers[start : start + self.limit]
        url = f"{BASE_URL}/batches?limit={self.limit}"
        if after is not None:
            url += f"&after={make_batch(after)['id']}"
        body = list_body(
            [self.batches.get(n) or make_batch(n) for n in chunk],
            start + self.limit < len(self.numbers),
        )
        self.mock.get(url, payload=body, repeat=repeat, **options)

    def serve_all(self, after: int | None = None) -> None:
        """Every page from `after` to the end, and the empty one past it."""
        start = 0 if after is None else self.numbers.index(after) + 1
        self.serve(after)
        for i in range(start + self.limit - 1, len(self.numbers) - 1, self.limit):
            self.serve(self.numbers[i])
        self.serve(self.numbers[-1])


def stored_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM batches ORDER BY id DESC")]


def batch_status(db: Path, batch_id: str) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT status FROM batches WHERE id = ?", (batch_id,)).fetchone()[0]


def walk_row(db: Path) -> tuple[Any, ...]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT cursor, stop_id, head_id, finished FROM walk_state").fetchone()


def runs(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT mode, outcome, pages, error FROM sync_runs ORDER BY id"
        ).fetchall()


# Whole runs against a mocked API.


async def test_full_sync_stores_every_batch_once(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A first sync walks every page and finishes the walk."""
    numbers = list(range(7, 0, -1))
    with aioresponses() as mock:
        FakeList(mock, numbers, 2).serve_all()
        result = await sync(settings, retry=fast_retry)
    assert result.complete
    assert (result.pages, result.batches_seen, result.batches_new) == (4, 7, 7)
    assert result.mode == "full"
    assert stored_ids(settings.db) == ids(*numbers)
    assert walk_row(settings.db) == (None, None, ids(7)[0], 1)
    assert runs(settings.db) == [("full", "complete", 4, None)]


def table_rows(db: Path, table: str) -> list[dict[str, Any]]:
    """Every row of `table`, each as a column-to-value mapping, in key order."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]


async def test_second_sync_changes_nothing_but_last_seen(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """Syncing unchanged data again: nothing new, every column as it was but last_seen_at."""
    lines = [{"code": "a", "message": "x", "param": "body", "line": 2}, {"code": "b"}]
    odd = {3: make_batch(3, status="failed", errors={"data": lines}, model=None, usage=None)}
    numbers = list(range(5, 0, -1))
    with aioresponses() as mock:
        FakeList(mock, numbers, 2, odd).serve_all()
        await sync(settings, retry=fast_retry)
    batches = table_rows(settings.db, "batches")
    errors = table_rows(settings.db, "batch_errors")
    with aioresponses() as mock:
        FakeList(mock, numbers, 2, odd).serve_all()
        result = await sync(settings, full=True, retry=fast_retry)
    assert (result.batches_new, result.batches_updated, result.batches_seen) == (0, 0, 5)
    assert result.mode == "full"
    batches_again = table_rows(settings.db, "batches")
    seen = [
        (b.pop("last_seen_at"), a.pop("last_seen_at"))
        for b, a in zip(batches, batches_again, strict=True)
    ]
    assert all(before <= after for before, after in seen)
    assert batches_again == batches
    assert len(batches) == 5
    assert len(errors) == 2
    assert table_rows(settings.db, "batch_errors") == errors


async def test_budget_stops_at_a_page_boundary_and_resume_continues(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """--max-pages ends a run as partial; the next run resumes, then catches up the head."""
    numbers = list(range(9, 0, -1))
    with aioresponses() as mock:
        FakeList(mock, numbers, 2).serve_all()
        first = await sync(Settings(**{**settings.__dict__, "max_pages": 2}), retry=fast_retry)
    assert not first.complete
    assert walk_row(settings.db) == (ids(6)[0], None, ids(9)[0], 0)
    # Two batches appear at the head meanwhile.
    grown = [11, 10, *numbers]
    with aioresponses() as mock:
        api = FakeList(mock, grown, 2)
        api.serve_all(after=6)
        api.serve(None)
        api.serve(10)
        result = await sync(settings, retry=fast_retry)
    assert result.complete
    assert result.mode == "resume"
    assert stored_ids(settings.db) == ids(*grown)
    assert walk_row(settings.db) == (None, None, ids(11)[0], 1)
    assert [r[:2] for r in runs(settings.db)] == [("full", "partial"), ("resume", "complete")]


async def test_a_first_walk_ending_on_a_full_page_checks_that_the_list_ended(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A `has_more` false sent by mistake on a full page of a first walk: one more request
    finds the rest, which no later (incremental) walk would ever go down to."""
    numbers = list(range(6, 0, -1))
    with aioresponses() as mock:
        api = FakeList(mock, numbers, 2)
        body = list_body([make_batch(6), make_batch(5)], False)
        mock.get(f"{BASE_URL}/batches?limit=2", payload=body)
        api.serve_all(5)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new) == (True, 6)
    assert stored_ids(settings.db) == ids(*numbers)
    assert result.warnings == (
        "page after the top: has_more was false on a full page, but more batches came after "
        "it; walked on",
    )


async def test_an_empty_end_answered_once_after_a_page_with_more_does_not_end_the_walk(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """The page after batch 5 comes back empty once (a server out of step with itself): it is
    asked for again, and the batches below are stored, not left out of every later walk."""
    numbers = list(range(6, 0, -1))
    with aioresponses() as mock:
        api = FakeList(mock, numbers, 2)
        api.serve(None)
        mock.get(
            f"{BASE_URL}/batches?limit=2&after={make_batch(5)['id']}", payload=list_body([], False)
        )
        api.serve_all(5)
        mock.get(f"{BASE_URL}/batches/{make_batch(5)['id']}", payload=make_batch(5))  # it exists
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new) == (True, 6)
    assert result.warnings == (
        f"page after {make_batch(5)['id']}: an empty end, but asked again it held batches; "
        "walked on",
    )


@pytest.mark.parametrize("still_there", [True, False])
async def test_an_empty_end_after_a_stored_cursor_is_checked(
    settings: Settings, fast_retry: RetryPolicy, still_there: bool
) -> None:
    """An empty last page after the stored cursor ends the tail only if the cursor exists
    and the page that listed it (the top, here), read again, still does."""
    numbers = list(range(6, 0, -1))
    with aioresponses() as mock:
        FakeList(mock, numbers, 2).serve_all()
        await sync(Settings(**{**settings.__dict__, "max_pages": 1}), retry=fast_retry)
    cursor = make_batch(5)["id"]
    with aioresponses() as mock:
        api = FakeList(mock, numbers, 2)
        for _ in range(2):  # an empty end after a cursor is asked for twice
            mock.get(f"{BASE_URL}/batches?limit=2&after={cursor}", payload=list_body([], False))
        if still_there:
            mock.get(f"{BASE_URL}/batches/{cursor}", payload=make_batch(5))
            api.serve(None)  # the page that listed it
        else:
            envelope = {"error": {"message": "No batch", "code": "batch_not_found"}}
            mock.get(f"{BASE_URL}/batches/{cursor}", status=404, payload=envelope)
            api.serve_all()
        api.serve(None)  # the catch-up, or the walk from the top
        result = await sync(settings, retry=fast_retry)
    assert result.complete
    expected = ids(6, 5) if still_there else ids(*numbers)
    assert stored_ids(settings.db) == expected


async def test_restart_forgets_the_unfinished_walk(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """--restart walks from the top even with a cursor stored."""
    numbers = list(range(5, 0, -1))
    with aioresponses() as mock:
        FakeList(mock, numbers, 2).serve_all()
        await sync(Settings(**{**settings.__dict__, "max_pages": 1}), retry=fast_retry)
    with aioresponses() as mock:
        FakeList(mock, numbers, 2).serve_all()
        result = await sync(settings, restart=True, retry=fast_retry)
    assert result.mode == "full"
    assert result.pages == 3


@pytest.mark.parametrize("mode", ["empty-has-more", "stuck-cursor"])
async def test_loop_guards_fail_loudly_and_keep_committed_pages(
    settings: Settings, fast_retry: RetryPolicy, mode: str
) -> None:
    """A broken chain raises PaginationError; the pages before it stay committed."""
    numbers = list(range(9, 0, -1))
    with aioresponses() as mock:
        api = FakeList(mock, numbers, 2)
        api.serve(None)
        api.serve(8)
        bad = f"{BASE_URL}/batches?limit=2&after={make_batch(6)['id']}"
        if mode == "empty-has-more":
            mock.get(bad, payload=list_body([], True))
        else:
            mock.get(bad, payload=list_body([make_batch(7), make_batch(6)], True))
        with pytest.raises(PaginationError):
            await sync(settings, retry=fast_retry)
    assert stored_ids(settings.db) == ids(9, 8, 7, 6)
    assert walk_row(settings.db)[0] == ids(6)[0]
    ((_, outcome, pages, error),) = runs(settings.db)
    assert (outcome, pages) == ("failed", 2)
    assert "the walk stopped" in error or "sent no batches" in error


async def test_wrong_last_id_is_a_warning_not_a_detour(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A last_id that disagrees with the data is recorded; the data's id is followed."""
    with aioresponses() as mock:
        body = list_body([make_batch(3), make_batch(2)], True)
        body["last_id"] = "batch_elsewhere"
        mock.get(f"{BASE_URL}/batches?limit=2", payload=body)
        mock.get(
            f"{BASE_URL}/batches?limit=2&after={make_batch(2)['id']}",
            payload=list_body([make_batch(1)], False),
        )
        result = await sync(settings, retry=fast_retry)
    assert result.complete
    assert len(result.warnings) == 1
    assert "batch_elsewhere" in result.warnings[0]


async def test_retries_are_counted_in_the_ledger(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """Each retry is counted in the result and in sync_runs."""
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", status=503, body="busy")
        mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body([make_batch(1)], False))
        result = await sync(settings, retry=fast_retry)
    assert result.retries == 1
    with sqlite3.connect(settings.db) as conn:
        assert conn.execute("SELECT retries FROM sync_runs").fetchone() == (1,)


async def test_a_refused_key_fails_the_run_without_writing_batches(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A 401 ends the run as failed, with the API's message in the ledger."""
    with aioresponses() as mock:
        mock.get(
            f"{BASE_URL}/batches?limit=2",
            status=401,
            payload={"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}},
        )
        with pytest.raises(AuthenticationError):
            await sync(settings, retry=fast_retry)
    assert runs(settings.db)[0][1] == "failed"
    assert "Incorrect API key provided" in runs(settings.db)[0][3]


async def test_no_key_is_a_config_error(db_path: Path) -> None:
    """Without a key, nothing is opened or written."""
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        await sync(Settings(db=db_path))
    assert not db_path.exists()


# The time budget, on a clock the test moves.


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("spent_on_page", [1, 2, 4])
async def test_a_time_budget_stops_at_a_page_boundary_and_the_next_sync_continues(
    settings: Settings, fast_retry: RetryPolicy, spent_on_page: int
) -> None:
    """max_seconds: the page being fetched when time runs out is the last; the next run resumes."""
    numbers = list(range(9, 0, -1))  # pages [9, 8] [7, 6] [5, 4] [3, 2] [1]
    clock = Clock()

    def a_minute_passes(_url: object, **_request: object) -> None:
        clock.now += 60

    with aioresponses() as mock:
        api = FakeList(mock, numbers, 2)
        for page, after in enumerate([None, 8, 6, 4, 2], start=1):
            api.serve(after, callback=a_minute_passes if page == spent_on_page else None)
        first = await sync(
            dataclasses.replace(settings, max_seconds=30), retry=fast_retry, clock=clock
        )
    assert not first.complete
    assert (first.pages, first.batches_seen, first.seconds) == (
        spent_on_page,
        2 * spent_on_page,
        60,
    )
    committed = numbers[: 2 * spent_on_page]
    assert stored_ids(settings.db) == ids(*committed)
    assert walk_row(settings.db) == (ids(committed[-1])[0], None, ids(9)[0], 0)
    assert runs(settings.db) == [("full", "partial", spent_on_page, None)]
    with aioresponses() as mock:
        api = FakeList(mock, numbers, 2)
        api.serve_all(after=committed[-1])
        api.serve(None)  # the catch-up from the top, down to the head
        result = await sync(settings, retry=fast_retry, clock=clock)
    assert result.complete
    assert result.mode == "resume"
    assert result.batches_new == len(numbers) - len(committed)
    assert stored_ids(settings.db) == ids(*numbers)
    assert [r[:2] for r in runs(settings.db)] == [("full", "partial"), ("resume", "complete")]


# Closing the run: the last ledger write.


async def disk_failure(*_args: object, **_kwargs: object) -> None:
    raise sqlite3.OperationalError("disk I/O error")


def serve_refusal(mock: aioresponses) -> None:
    mock.get(
        f"{BASE_URL}/batches?limit=2",
        status=401,
        payload={"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}},
    )


def serve_exhausted_retries(mock: aioresponses) -> None:
    mock.get(f"{BASE_URL}/batches?limit=2", status=503, body="busy", repeat=True)


@pytest.mark.parametrize(
    ("serve", "error", "message"),
    [
        (serve_refusal, AuthenticationError, "Incorrect API key provided"),
        (serve_exhausted_retries, ServerError, "gave up after 4 attempts"),
    ],
    ids=["refused", "retries ran out"],
)
async def test_a_failure_to_close_a_failed_run_does_not_hide_its_error(
    settings: Settings,
    fast_retry: RetryPolicy,
    monkeypatch: pytest.MonkeyPatch,
    serve: Callable[[aioresponses], None],
    error: type[Exception],
    message: str,
) -> None:
    """When the ledger write that closes a failed run fails too, the run's own error is raised."""
    monkeypatch.setattr(Store, "finish_run", disk_failure)
    with aioresponses() as mock:
        serve(mock)
        with pytest.raises(error, match=message):
            await sync(settings, retry=fast_retry)


@pytest.mark.parametrize(("max_pages", "stored"), [(None, 5), (1, 2)], ids=["complete", "partial"])
async def test_a_failure_to_close_a_run_that_went_well_is_raised(
    settings: Settings,
    fast_retry: RetryPolicy,
    monkeypatch: pytest.MonkeyPatch,
    max_pages: int | None,
    stored: int,
) -> None:
    """A run with nothing else to report raises the failed close; its committed pages stay."""
    monkeypatch.setattr(Store, "finish_run", disk_failure)
    numbers = list(range(5, 0, -1))
    with aioresponses() as mock:
        FakeList(mock, numbers, 2).serve_all()
        with pytest.raises(DatabaseError, match="disk I/O error"):
            await sync(dataclasses.replace(settings, max_pages=max_pages), retry=fast_retry)
    assert stored_ids(settings.db) == ids(*numbers[:stored])


# What -v shows: one warning per retry, with machine-readable fields.


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_a_retry_logs_one_warning_with_attempt_wait_and_status(
    settings: Settings, fast_retry: RetryPolicy, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """At WARNING, a retry is one record whose extra fields are its attempt, wait and status."""
    url = f"{BASE_URL}/batches?limit=2"
    with aioresponses() as mock:
        mock.get(url, status=status, body="busy", headers={"retry-after-ms": "10"})
        mock.get(url, payload=list_body([make_batch(1)], False))
        with caplog.at_level(logging.WARNING):
            result = await sync(settings, retry=fast_retry)
    assert result.retries == 1
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING
    assert (record.attempt, record.wait, record.status) == (1, 0.01, status)  # type: ignore[attr-defined]
    assert f"API error {status}" in record.getMessage()


# --requests-per-minute against the fake API.


@pytest.fixture
async def five_batches() -> AsyncIterator[FakeApiServer]:
    """The fake API with five batches: five list requests at one batch a page."""
    async with FakeApiServer(FakeApiOptions(batches=5)) as running:
        yield running


def one_batch_a_page(server: FakeApiServer, db: Path, per_minute: float | None) -> Settings:
    """Settings for `server` at one batch a page (a request per batch), capped at `per_minute`."""
    return Settings(
        db=db,
        base_url=server.base_url,
        api_key=server.options.api_key,
        page_size=1,
        requests_per_minute=per_minute,
    )


def limiter_ledger(db: Path) -> tuple[int, float]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT limiter_waits, limiter_wait_seconds FROM sync_runs").fetchone()


class VirtualTime:
    """A clock that moves only when the rate limiter sleeps: waits no longer depend on how
    fast the machine answers."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_a_request_cap_spaces_the_requests_and_counts_the_waits(
    five_batches: FakeApiServer, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At N requests a minute, each request after the first waits 60 / N s; the ledger says so."""
    per_minute = 600  # one request every 0.1 s
    spacing = 60 / per_minute
    virtual = VirtualTime()
    monkeypatch.setattr(
        sys.modules["crawler.sync_run"],
        "RateLimiter",
        functools.partial(RateLimiter, clock=virtual.clock, sleep=virtual.sleep),
    )
    settings = one_batch_a_page(five_batches, db_path, per_minute)
    result = await sync(settings)
    requests = sum(five_batches.stats.requests.values())
    assert result.complete
    # One page a batch: the last is full, so one more request checks that the list ended.
    assert requests == result.pages + 1 == 6
    assert virtual.now == pytest.approx((requests - 1) * spacing)
    waits, waited = limiter_ledger(db_path)
    assert (result.limiter_waits, result.limiter_wait_seconds) == (waits, waited)
    assert waits == requests - 1
    assert waited == pytest.approx((requests - 1) * spacing)


@pytest.mark.parametrize("per_minute", [None, 1e9], ids=["no cap", "a cap never reached"])
async def test_without_a_cap_in_reach_no_request_waits(
    five_batches: FakeApiServer, db_path: Path, per_minute: float | None
) -> None:
    """No cap, or one far above what a run can send: the ledger records no waits at all."""
    settings = one_batch_a_page(five_batches, db_path, per_minute)
    result = await sync(settings)
    assert result.complete
    assert limiter_ledger(db_path) == (0, 0.0)


@pytest.mark.parametrize("stored_before", [False, True])
async def test_a_server_ignoring_after_ends_the_walk_on_a_page_said_to_be_the_last(
    settings: Settings, fast_retry: RetryPolicy, stored_before: bool
) -> None:
    """A full page said to be the last (or one above the last walk's head) is checked with
    one more request; a server that ignores `after` answers it with the same page, which is
    no sign of more (the walk went on and asked again for good: a batch of 16 MB, on pages
    fitted to one, never synced)."""
    page = list_body([make_batch(3), make_batch(2)], False)
    with aioresponses() as mock:
        if stored_before:  # batch 1 is the head: the list's top now stands above it
            mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body([make_batch(1)], False))
            assert (await sync(settings, retry=fast_retry)).complete
        mock.get(f"{BASE_URL}/batches?limit=2", payload=page)
        mock.get(f"{BASE_URL}/batches?limit=2&after={make_batch(2)['id']}", payload=page, repeat=3)
        result = await sync(settings, retry=fast_retry)
    assert result.complete, result.error
    assert stored_ids(settings.db) == (ids(3, 2, 1) if stored_before else ids(3, 2))


@pytest.mark.parametrize("cut", [False, True], ids=["failed", "cut by the budget"])
@pytest.mark.parametrize("top_answers", [True, False], ids=["the top answers", "down"])
async def test_a_check_after_the_last_page_failing_on_two_runs_is_taken_as_the_end(
    settings: Settings, fast_retry: RetryPolicy, top_answers: bool, cut: bool
) -> None:
    """A gateway that cannot page past its list's end fails the check after a full page
    said to be the last on every run. Every later sync failed there, at the resumed walk's
    first request, never walking from the top nor refreshing a batch in flight (passes
    64A/B). Failed on a second run while the list's top answers, the end is trusted, with
    a warning; with the top failing too, the API is down: the run fails, as before. So
    when the time budget cut the first run's check (pass 66B)."""
    after_one = f"{BASE_URL}/batches?limit=2&after={make_batch(1)['id']}"
    failure = {"error": {"message": "upstream failed", "type": "server_error", "code": None}}
    in_flight = make_batch(2, status="in_progress")
    clock = Clock()

    def a_minute_passes(_url: object, **_request: object) -> None:
        clock.now += 60

    with aioresponses() as mock:
        mock.get(
            f"{BASE_URL}/batches?limit=2", payload=list_body([make_batch(4), make_batch(3)], True)
        )
        mock.get(
            f"{BASE_URL}/batches?limit=2&after={make_batch(3)['id']}",
            payload=list_body([in_flight, make_batch(1)], False),
            callback=a_minute_passes if cut else None,
        )
        mock.get(after_one, status=500, payload=failure, repeat=True)
        mock.get(f"{BASE_URL}/batches/{make_batch(1)['id']}", payload=make_batch(1))
        if cut:
            budget = dataclasses.replace(settings, max_seconds=30)
            assert not (await sync(budget, retry=fast_retry, clock=clock)).complete
        else:
            with pytest.raises(ServerError):
                await sync(settings, retry=fast_retry)
    assert stored_ids(settings.db) == ids(4, 3, 2, 1)
    assert f"walk: unfinished at {make_batch(1)['id']}, on a page said to be the list's last" in (
        format_status(await read_status(settings.db))
    )
    with aioresponses() as mock:
        mock.get(after_one, status=500, payload=failure, repeat=True)
        if not top_answers:
            mock.get(f"{BASE_URL}/batches?limit=1", status=500, payload=failure)
            mock.get(f"{BASE_URL}/batches/{make_batch(1)['id']}", payload=make_batch(1))
            with pytest.raises(ServerError):
                await sync(settings, retry=fast_retry)
            assert stored_ids(settings.db) == ids(4, 3, 2, 1)
            return
        mock.get(f"{BASE_URL}/batches?limit=1", payload=list_body([make_batch(5)], True))
        api = FakeList(mock, [5, 4, 3, 2, 1], 2)
        api.serve(None)
        api.serve(4)  # the head's second may go on below it (see pages.TIE_PAGES)
        second = await sync(settings, retry=fast_retry)
    assert second.complete, second.error
    (warning,) = second.warnings
    assert warning.startswith(
        f"the page ending at {make_batch(1)['id']} said it was the list's last, and asking "
        "after it failed on this run (API error 500"
    )
    assert stored_ids(settings.db) == ids(5, 4, 3, 2, 1)
    assert batch_status(settings.db, in_flight["id"]) == "completed"
    with aioresponses() as mock:  # nothing is asked after the end again
        api = FakeList(mock, [5, 4, 3, 2, 1], 2)
        api.serve(None)
        api.serve(4)
        third = await sync(settings, retry=fast_retry)
    assert third.complete, third.error
    assert third.warnings == ()


async def test_the_end_is_taken_when_the_first_requests_retries_spend_the_budget(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """The list's top, asked before a second failure after a page said to be the last is
    taken as the end, was asked within the time budget after the failing request's retries
    had spent it: under `--max-seconds` the end was never taken, new batches never stored
    (pass 69B). It is asked first, once, whatever the budget; the end taken is committed
    though the budget cuts the walk from the top after it."""
    after_one = f"{BASE_URL}/batches?limit=2&after={make_batch(1)['id']}"
    failure = {"error": {"message": "upstream failed", "type": "server_error", "code": None}}
    clock = Clock()

    def a_minute_passes(_url: object, **_request: object) -> None:
        clock.now += 60

    with aioresponses() as mock:
        api = FakeList(mock, [4, 3, 2, 1], 2)
        api.serve(None)
        api.serve(3)
        mock.get(after_one, status=500, payload=failure, repeat=True)
        mock.get(f"{BASE_URL}/batches/{make_batch(1)['id']}", payload=make_batch(1))
        with pytest.raises(ServerError):
            await sync(settings, retry=fast_retry)
    budget = dataclasses.replace(settings, max_seconds=30)
    results = []
    for _ in range(2):
        with aioresponses() as mock:
            mock.get(after_one, status=500, payload=failure, callback=a_minute_passes)
            mock.get(f"{BASE_URL}/batches?limit=1", payload=list_body([make_batch(5)], True))
            api = FakeList(mock, [5, 4, 3, 2, 1], 2)
            api.serve(None)
            api.serve(4)
            results.append(await sync(budget, retry=fast_retry, clock=clock))
    assert results[0].warnings[0].startswith(f"the page ending at {make_batch(1)['id']} said")
    assert results[-1].complete, results[-1].error
    assert stored_ids(settings.db) == ids(5, 4, 3, 2, 1)


@pytest.mark.parametrize("status", [400, 503, 200])
async def test_a_failing_check_after_a_page_said_to_be_the_last_keeps_the_page(
    settings: Settings, fast_retry: RetryPolicy, status: int
) -> None:
    """The one more request after a full page said to be the last fails. Refused (a server
    refusing `after` at its list's end), the page in hand was never stored, every run
    failed there: it is stored, and the list taken as ended there. Failing for a while
    (a 503 past the retries), the walk was taken as ended for good, the batches below
    never stored (pass 63A): the run fails, its page stored, and the next asks again. So
    does a broken answer (200, a body cut short: pass 64B), once taken as a refusal."""
    numbers = list(range(6, 0, -1))
    refusal = {"error": {"message": "bad after", "type": "invalid_request_error", "code": None}}
    after_two = f"{BASE_URL}/batches?limit=2&after={make_batch(3)['id']}"
    with aioresponses() as mock:
        api = FakeList(mock, numbers, 2)
        api.serve(None)
        mock.get(
            f"{BASE_URL}/batches?limit=2&after={make_batch(5)['id']}",
            payload=list_body([make_batch(4), make_batch(3)], False),
        )
        if status == 200:
            mock.get(after_two, body='{"object":"list","data":[{"id":"ba', repeat=True)
        else:
            mock.get(after_two, status=status, payload=refusal, repeat=True)
        mock.get(f"{BASE_URL}/batches/{make_batch(3)['id']}", payload=make_batch(3))
        if status != 400:
            with pytest.raises(ServerError if status == 503 else BrokenResponseError):
                await sync(settings, retry=fast_retry)
        else:
            first = await sync(settings, retry=fast_retry)
    assert stored_ids(settings.db) == ids(6, 5, 4, 3)
    if status == 400:
        assert first.complete, first.error
        (warning,) = first.warnings
        assert warning.startswith(
            f"page after {make_batch(5)['id']}: has_more was false on a full page; asking "
            "after it was refused (API error 400"
        )
        assert warning.endswith("): took it as the end")
        return
    with aioresponses() as mock:
        api = FakeList(mock, numbers, 2)
        api.serve_all(3)
        api.serve(None)
        second = await sync(settings, retry=fast_retry)
    assert second.complete, second.error
    assert stored_ids(settings.db) == ids(*numbers)


async def test_a_run_cancelled_as_its_page_commits_counts_that_page_in_its_ledger(
    five_batches: FakeApiServer, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled (Ctrl-C, SIGTERM) once the page's transaction had committed with its
    counts, before the run added them to its figures: closing the run wrote its figures
    over the row, counting too few (pass 79B: 5,800 new of 5,900 stored)."""
    loop = asyncio.get_running_loop()
    real_write = writes._write_page
    runs: list[asyncio.Task[Any]] = []

    def write_then_cancel(*args: Any) -> Any:
        counts = real_write(*args)
        loop.call_soon_threadsafe(runs[0].cancel)  # before the write's answer is handed back
        return counts

    monkeypatch.setattr(writes, "_write_page", write_then_cancel)
    settings = one_batch_a_page(five_batches, db_path, None)
    runs.append(asyncio.create_task(sync(settings)))
    with pytest.raises(asyncio.CancelledError):
        await runs[0]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM batches").fetchone()
        ledger = conn.execute("SELECT outcome, batches_new FROM sync_runs").fetchall()
    assert ledger == [("interrupted", stored)]


async def test_status_shows_a_sync_begun_while_it_read_as_running(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No sync held the lock as `status` began, one began before its snapshot: its
    `running` row was shown as killed (pass 79B)."""
    async with open_store(db_path) as store:
        await store.start_run("full", "http://x")
    answers = iter([False, True])
    monkeypatch.setattr(status_module, "sync_is_running", lambda path: next(answers))
    report = await read_status(db_path)
    assert [run.outcome for run in report.runs] == ["running"]
