"""The real client against the real fake API on 127.0.0.1: exact copies, faults and guards."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.errors import AuthenticationError, PaginationError
from crawler.events import Event
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.runs import Progress, SyncResult
from crawler.sync_run import sync

from .conftest import API_KEY, BASE_URL, list_body, make_batch
from .exact import assert_database_matches
from .waits import until

# Zero backoff keeps fault tests fast; the server's own short delays are still honoured.
RETRY = RetryPolicy(max_attempts=10, max_seconds=30, initial_backoff=0, max_backoff=0)


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    """A fake API serving 1,234 batches, faults off."""
    async with FakeApiServer(FakeApiOptions(batches=1234)) as running:
        yield running


def settings_for(server: FakeApiServer, db: Path, **extra: Any) -> Settings:
    """Settings for the list alone: request files have tests of their own
    (test_request_files.py), and the fault knobs here would slow their downloads too."""
    layers: dict[str, Any] = {"files": False, **extra}
    return Settings(db=db, base_url=server.base_url, api_key=server.options.api_key, **layers)


async def test_full_sync_is_exact_and_a_second_changes_nothing(
    server: FakeApiServer, db_path: Path
) -> None:
    """Every served batch lands once with its error lines; syncing again changes nothing."""
    first = await sync(settings_for(server, db_path), retry=RETRY)
    assert first.complete
    assert first.batches_new == len(server.data) == 1234
    assert first.pages == 13
    assert_database_matches(db_path, server.data.snapshot())
    before = rows_but_last_seen(db_path)
    second = await sync(settings_for(server, db_path), full=True, retry=RETRY)
    assert (second.batches_new, second.batches_updated, second.batches_seen) == (0, 0, 1234)
    assert rows_but_last_seen(db_path) == before


def rows_but_last_seen(db: Path) -> list[tuple[object, ...]]:
    """Every stored row, all columns but last_seen_at."""
    with sqlite3.connect(db) as conn:
        cur = conn.execute("SELECT * FROM batches ORDER BY id")
        keep = [i for i, d in enumerate(cur.description) if d[0] != "last_seen_at"]
        return [tuple(row[i] for i in keep) for row in cur.fetchall()]


FAULTS = {
    "server errors": {"error_rate": 0.2},
    "html server errors": {"error_rate": 0.2, "html_errors": True},
    "rate limited": {"rate_limit_rate": 0.2},
    "dropped connections": {"drop_rate": 0.15},
    "truncated bodies": {"truncate_rate": 0.15},
    "all at once": {
        "error_rate": 0.1,
        "rate_limit_rate": 0.1,
        "drop_rate": 0.05,
        "truncate_rate": 0.05,
    },
}


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
async def test_faults_are_retried_and_counted_and_the_copy_is_exact(
    db_path: Path, faults: dict[str, Any]
) -> None:
    """With each fault knob on, the sync ends exact and the ledger counts every retry."""
    async with FakeApiServer(FakeApiOptions(batches=2000, seed=7, **faults)) as server:
        result = await sync(settings_for(server, db_path), retry=RETRY)
        stats = server.stats
        injected = stats.errors + stats.rate_limited + stats.dropped + stats.truncated
        assert_database_matches(db_path, server.data.snapshot())
    assert result.complete
    assert injected > 0
    # aiohttp itself resends a GET once when a reused keep-alive connection drops
    # (RFC 9112, 9.3.1), so some drops never reach our retry loop; every other fault does.
    assert injected - stats.dropped <= result.retries <= injected
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT retries FROM sync_runs").fetchone() == (result.retries,)


async def test_slow_answers_time_out_and_are_retried(db_path: Path) -> None:
    """A response slower than the request timeout is abandoned and asked for again."""
    # A slow answer would take 120 timeouts: every one times out, however loaded the machine.
    # A normal answer late on a loaded machine only adds a retry of its own.
    options = FakeApiOptions(batches=1000, seed=1, slow_rate=0.3, slow_seconds=60.0)
    async with FakeApiServer(options) as server:
        settings = settings_for(server, db_path, request_timeout=0.5)
        result = await sync(settings, retry=RETRY)
        assert_database_matches(db_path, server.data.snapshot())
    assert result.complete
    assert result.retries >= server.stats.slow > 0


async def test_a_request_budget_is_survived_by_honouring_retry_after(db_path: Path) -> None:
    """Over the server's requests-per-second budget, 429s are waited out and the copy is exact."""
    async with FakeApiServer(FakeApiOptions(batches=1500, requests_per_second=40)) as server:
        result = await sync(settings_for(server, db_path), retry=RETRY)
        assert_database_matches(db_path, server.data.snapshot())
    assert result.complete


async def test_moving_target_ends_exact_once_it_holds_still(db_path: Path) -> None:
    """Batches added and advanced during a sync are caught by the next one."""
    options = FakeApiOptions(batches=1500, add_per_request=3, advance_per_request=5)
    async with FakeApiServer(options) as server:
        first = await sync(settings_for(server, db_path), retry=RETRY)
        assert len(server.data) > 1500
        server.hold_still()
        second = await sync(settings_for(server, db_path), retry=RETRY)
        assert_database_matches(db_path, server.data.snapshot())
    assert first.complete
    assert second.batches_new > 0
    assert second.batches_updated > 0


def ledger(db: Path) -> list[tuple[str, int]]:
    """(outcome, pages) of every run so far (none before the schema is made: a run
    cancelled while it migrates a new file leaves it empty)."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = conn.execute("SELECT name FROM sqlite_schema WHERE name = 'sync_runs'")
        if tables.fetchone() is None:
            return []
        return conn.execute("SELECT outcome, pages FROM sync_runs ORDER BY id").fetchall()


async def cancelled_sync(
    server: FakeApiServer, settings: Settings, moment: int | str
) -> SyncResult | None:
    """Run a sync and cancel it at `moment`: "start" (as soon as it waits on anything),
    "run_started" (as it tells so), "held after N" (while its list request after N answered
    ones is held at the server), or after that many committed pages. Returns the result if
    it finished first, else None."""
    task: asyncio.Task[SyncResult] | None = None

    def cancel_after_pages(progress: Progress) -> None:
        if isinstance(moment, int) and progress.pages >= moment and task is not None:
            task.cancel()

    def cancel_at_event(event: Event) -> None:
        if event.name == moment and task is not None:
            task.cancel()

    held_before = server.stats.held
    if isinstance(moment, str) and moment.startswith("held after "):
        server.hold_list_requests(after=int(moment.removeprefix("held after ")))
    task = asyncio.create_task(
        sync(settings, retry=RETRY, on_progress=cancel_after_pages, on_event=cancel_at_event)
    )
    if moment == "start":
        await asyncio.sleep(0)  # the task starts, and waits on its first step
        task.cancel()
    elif isinstance(moment, str) and moment.startswith("held after "):
        await until(lambda: server.stats.held > held_before, unless=task.done)
        task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        return None
    finally:
        server.release_list_requests()


async def test_cancelling_at_any_moment_records_an_interrupted_run(db_path: Path) -> None:
    """Cancelled (Ctrl-C, SIGTERM) at its start, mid-request, or after any number of pages,
    a run is recorded as interrupted with the pages it committed; the next one resumes.
    Cancelled just after it told `run_started`, its ledger row stayed `running`."""
    rng = random.Random(4)
    moments: list[int | str] = ["start", "held after 0", *(rng.randint(1, 6) for _ in range(8))]
    moments += ["held after 3", "start", "run_started", "held after 1", 1, "run_started"]
    async with FakeApiServer(FakeApiOptions(batches=2000)) as server:
        settings = settings_for(server, db_path, page_size=20)
        for moment in moments:
            before = ledger(db_path)
            result = await cancelled_sync(server, settings, moment)
            runs = ledger(db_path)
            assert runs[: len(before)] == before
            new = runs[len(before) :]
            if result is not None:  # the run had less left to do than the moment's pages
                assert isinstance(moment, int)
                assert result.complete
                assert new == [("complete", result.pages)]
            elif moment == "start":  # cancelled before its ledger row, or just after
                assert new in ([], [("interrupted", 0)])
            else:
                assert len(new) == 1
                assert new[0][0] == "interrupted", moment
                assert new[0][1] >= (moment if isinstance(moment, int) else 0)
        final = await sync(settings, retry=RETRY)
        assert_database_matches(db_path, server.data.snapshot())
    assert final.complete
    assert final.mode == "resume"


@pytest.mark.parametrize("mode", ["empty-has-more", "stuck-cursor"])
async def test_broken_pagination_stops_with_committed_pages_kept(db_path: Path, mode: str) -> None:
    """A broken cursor chain is a clear error; the pages before it stay committed."""
    async with FakeApiServer(FakeApiOptions(batches=1000, broken_pagination=mode)) as server:
        with pytest.raises(PaginationError):
            await sync(settings_for(server, db_path), retry=RETRY)
        served_first = [b["id"] for b in server.data.snapshot()][:200]
    with sqlite3.connect(db_path) as conn:
        stored = {r[0] for r in conn.execute("SELECT id FROM batches")}
        outcome = conn.execute("SELECT outcome, pages FROM sync_runs").fetchone()
    assert set(served_first) <= stored
    assert outcome[0] == "failed"


async def test_a_stored_cursor_the_api_refuses_is_walked_around(db_path: Path) -> None:
    """A resume whose cursor batch is gone (400 on `after`) walks from the top, ends exact."""
    async with FakeApiServer(FakeApiOptions(batches=1000)) as server:
        await sync(settings_for(server, db_path, max_pages=2), retry=RETRY)
        with sqlite3.connect(db_path) as conn:
            conn.execute("UPDATE walk_state SET cursor = 'batch_0123456789abcdef0123456789abcdef'")
        result = await sync(settings_for(server, db_path), retry=RETRY)
        assert_database_matches(db_path, server.data.snapshot())
    assert result.complete
    assert any("is gone from the list" in w for w in result.warnings)


async def test_wrong_last_id_is_recorded_and_the_copy_is_exact(db_path: Path) -> None:
    """last_id disagreeing with the data gives warnings, and the data is followed."""
    async with FakeApiServer(FakeApiOptions(batches=1000, broken_pagination="wrong-last-id")) as s:
        result = await sync(settings_for(s, db_path), retry=RETRY)
        assert_database_matches(db_path, s.data.snapshot())
    assert result.complete
    # One warning per page, five kept word for word, the rest counted.
    assert len(result.warnings) == 6
    assert result.warnings[-1] == "... and 5 more"


async def test_a_proxy_from_the_environment_is_used(
    server: FakeApiServer, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY carries the requests: the fake answers for a host that does not exist."""
    proxy = server.base_url.removesuffix("/v1")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    # Plain http to a remote host must be allowed on purpose: the key travels in clear.
    settings = Settings(
        db=db_path,
        base_url="http://api.invalid/v1",
        api_key=server.options.api_key,
        allow_insecure_http=True,
    )
    result = await sync(settings, retry=RETRY)
    assert result.batches_new == len(server.data)


async def test_a_wrong_key_fails_with_the_api_message(server: FakeApiServer, db_path: Path) -> None:
    """The fake answers 401 like OpenAI; the error shows its message, never the key."""
    settings = dataclasses.replace(settings_for(server, db_path), api_key="sk-wrong-secret-123456")
    with pytest.raises(AuthenticationError, match="Incorrect API key provided") as caught:
        await sync(settings, retry=RETRY)
    assert "sk-wrong-secret-123456" not in str(caught.value)


async def test_organization_and_project_go_with_every_request(
    server: FakeApiServer, db_path: Path
) -> None:
    """Settings' organization and project are sent as OpenAI-Organization and OpenAI-Project
    on every request, walks and requests by id alike."""
    settings = settings_for(server, db_path, organization="org-test", project="proj_test")
    await sync(settings, retry=RETRY)
    await sync(settings, retry=RETRY)  # refreshes the batches of unknown status by id
    sent = sum(server.stats.requests.values())
    assert server.stats.requests["retrieve_batch"] > 0
    assert server.stats.headers == Counter(
        {("OpenAI-Organization", "org-test"): sent, ("OpenAI-Project", "proj_test"): sent}
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"error": {"message": "No batch found", "type": "invalid_request_error"}}),
        (400, {"error": {"message": "Invalid cursor", "type": "invalid_request_error"}}),
        (500, {"error": {"message": "The server had an error", "type": "server_error"}}),
    ],
    ids=["404", "400-without-param", "500"],
)
async def test_a_cursor_batch_gone_is_walked_around_however_the_list_refuses_it(
    db_path: Path, status: int, body: dict[str, Any]
) -> None:
    """The list may refuse a deleted cursor other ways than a 400 naming `after`: when
    the cursor batch answers 404 by id, the resume walks from the top, not fail forever."""
    batches = [make_batch(n) for n in range(6, 0, -1)]
    gone = batches[1]["id"]
    listed = [b for b in batches if b["id"] != gone]
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY, page_size=2, files=False)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body(batches[:2], True))
        await sync(dataclasses.replace(settings, max_pages=1), retry=RETRY)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?after={gone}&limit=2", status=status, payload=body,
                 repeat=True)  # fmt: skip
        mock.get(f"{BASE_URL}/batches/{gone}", status=404, payload=body)
        mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body(listed[:2], True))
        after = listed[1]["id"]
        mock.get(f"{BASE_URL}/batches?after={after}&limit=2", payload=list_body(listed[2:4], True))
        last = listed[3]["id"]
        mock.get(f"{BASE_URL}/batches?after={last}&limit=2", payload=list_body(listed[4:], False))
        result = await sync(settings, retry=RETRY)
    assert result.complete
    assert any(f"the cursor {gone} is gone" in w for w in result.warnings)
    with sqlite3.connect(db_path) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM batches")}
    assert stored == {b["id"] for b in batches}
