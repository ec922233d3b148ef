"""The sync run: walk plans, resume, catch-up, loop guards, budgets and the ledger."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.errors import AuthenticationError, ConfigError, PaginationError
from crawler.pages import BatchPage, WalkStep
from crawler.store import WalkState
from crawler.sync import advance_walk, sync

from .conftest import BASE_URL, list_body, make_batch


def ids(*numbers: int) -> list[str]:
    return [make_batch(n)["id"] for n in numbers]


def step(numbers: list[int], done: bool) -> WalkStep:
    batches = [make_batch(n) for n in numbers]
    page = BatchPage(batches, not done, batches[-1]["id"] if batches else None)
    return WalkStep(page, page.next_after, done)


class FakeList:
    """Registers the list pages of `numbers` (newest first) with aioresponses."""

    def __init__(self, mock: aioresponses, numbers: list[int], limit: int) -> None:
        self.mock = mock
        self.numbers = numbers
        self.limit = limit

    def serve(self, after: int | None, *, repeat: bool = False) -> None:
        start = 0 if after is None else self.numbers.index(after) + 1
        chunk = self.numbers[start : start + self.limit]
        url = f"{BASE_URL}/batches?limit={self.limit}"
        if after is not None:
            url += f"&after={make_batch(after)['id']}"
        body = list_body([make_batch(n) for n in chunk], start + self.limit < len(self.numbers))
        self.mock.get(url, payload=body, repeat=repeat)

    def serve_all(self, after: int | None = None) -> None:
        """Every page from `after` to the end."""
        start = 0 if after is None else self.numbers.index(after) + 1
        self.serve(after)
        for i in range(start + self.limit - 1, len(self.numbers) - 1, self.limit):
            self.serve(self.numbers[i])


def stored_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM batches ORDER BY id DESC")]


def walk_row(db: Path) -> tuple[Any, ...]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT cursor, stop_id, head_id, finished FROM walk_state").fetchone()


def runs(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT mode, outcome, pages, error FROM sync_runs ORDER BY id"
        ).fetchall()


# The walk state machine, purely.


def test_a_top_walk_records_its_head_on_the_first_page() -> None:
    """The first page of a walk from the top sets the head id."""
    walk = advance_walk(WalkState(), step([9, 8], done=False), from_top=True)
    assert walk == WalkState(cursor=ids(8)[0], head_id=ids(9)[0])


def test_a_top_walk_that_ends_is_finished() -> None:
    """Reaching the end of a walk from the top finishes it, keeping the head."""
    walk = WalkState(cursor=ids(8)[0], head_id=ids(9)[0])
    assert advance_walk(walk, step([7], done=True), from_top=True) == WalkState(
        head_id=ids(9)[0], finished=True
    )


def test_a_resumed_walk_that_ends_turns_into_a_catch_up() -> None:
    """After the tail, walk again from the top down to the old head."""
    walk = WalkState(cursor=ids(5)[0], head_id=ids(9)[0])
    assert advance_walk(walk, step([4], done=True), from_top=False) == WalkState(
        stop_id=ids(9)[0], head_id=ids(9)[0]
    )


def test_a_catch_up_records_the_new_head() -> None:
    """A catch-up walk's first page gives the new head; its stop id is kept."""
    walk = WalkState(stop_id=ids(9)[0], head_id=ids(9)[0])
    assert advance_walk(walk, step([12, 11], done=False), from_top=True) == WalkState(
        cursor=ids(11)[0], stop_id=ids(9)[0], head_id=ids(12)[0]
    )


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


async def test_second_sync_changes_nothing_but_last_seen(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """Syncing unchanged data again reports no new or updated batches."""
    numbers = list(range(5, 0, -1))
    with aioresponses() as mock:
        FakeList(mock, numbers, 2).serve_all()
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        FakeList(mock, numbers, 2).serve_all()
        result = await sync(settings, full=True, retry=fast_retry)
    assert (result.batches_new, result.batches_updated, result.batches_seen) == (0, 0, 5)
    assert result.mode == "full"


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


@pytest.mark.parametrize("still_there", [True, False])
async def test_an_empty_end_after_a_stored_cursor_is_checked(
    settings: Settings, fast_retry: RetryPolicy, still_there: bool
) -> None:
    """An empty last page after the stored cursor ends the tail only if the cursor exists."""
    numbers = list(range(6, 0, -1))
    with aioresponses() as mock:
        FakeList(mock, numbers, 2).serve_all()
        await sync(Settings(**{**settings.__dict__, "max_pages": 1}), retry=fast_retry)
    cursor = make_batch(5)["id"]
    with aioresponses() as mock:
        api = FakeList(mock, numbers, 2)
        mock.get(f"{BASE_URL}/batches?limit=2&after={cursor}", payload=list_body([], False))
        if still_there:
            mock.get(f"{BASE_URL}/batches/{cursor}", payload=make_batch(5))
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
