"""Several accounts in one database: each with its own walk, resume and ledger rows, synced
at once, one failing while the others finish; a database of one account migrates into the
account named `default` without a walk again."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web

from crawler import AccountOutcome, Settings, sync, sync_accounts
from crawler.api import RetryPolicy
from crawler.config import load_accounts, load_settings
from crawler.errors import AuthenticationError, ConfigError, ServerError
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.rows import BATCH_COLUMNS, build_page_rows
from crawler.status import format_status, read_status
from crawler.store import Store, open_store

from .conftest import create_before, list_body, make_batch, roll_back_columns, serving
from .exact import assert_database_matches
from .waits import HANG_GUARD, until

FAST = RetryPolicy(max_attempts=3, max_seconds=10, initial_backoff=0, max_backoff=0)


def owners(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT account, count(*) FROM batches GROUP BY account"))


async def test_accounts_sync_at_once_into_one_database_and_one_failing_spares_the_others(
    db_path: Path,
) -> None:
    """Two accounts complete and a third with a wrong key fails alone; each keeps its walk and
    ledger rows."""
    async with (
        FakeApiServer(FakeApiOptions(batches=300, seed=1, api_key="key-one")) as one,
        FakeApiServer(FakeApiOptions(batches=200, seed=2, api_key="key-two")) as two,
    ):
        accounts = [
            Settings(db=db_path, account="one", base_url=one.base_url, api_key="key-one"),
            Settings(db=db_path, account="two", base_url=two.base_url, api_key="key-two"),
            Settings(db=db_path, account="wrong", base_url=two.base_url, api_key="bad-key"),
        ]
        outcomes = await sync_accounts(accounts, retry=FAST)
        assert_database_matches(db_path, [*one.served(), *two.served()])
        again = await sync_accounts(accounts[:2], retry=FAST)
    first, second, wrong = outcomes
    assert isinstance(first, AccountOutcome)
    assert [o.result.batches_new for o in (first, second) if o.result] == [300, 200]
    assert isinstance(wrong.error, AuthenticationError)
    assert owners(db_path) == {"one": 300, "two": 200}
    assert [o.result.mode for o in again if o.result] == ["incremental", "incremental"]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        ledger = conn.execute("SELECT account, outcome FROM sync_runs ORDER BY id").fetchall()
        walks = dict(conn.execute("SELECT account, finished FROM walk_state"))
    assert sorted(ledger[:3]) == [("one", "complete"), ("two", "complete"), ("wrong", "failed")]
    assert walks == {"one": 1, "two": 1, "wrong": 0}


async def test_no_accounts_sync_to_no_outcomes() -> None:
    """It was an IndexError."""
    assert await sync_accounts([]) == []


async def test_a_batch_two_accounts_list_stays_with_the_first(db_path: Path) -> None:
    """One project reached directly and through a gateway: stored once, never moving."""
    async with FakeApiServer(FakeApiOptions(batches=150, api_key="k")) as server:
        direct = Settings(db=db_path, account="direct", base_url=server.base_url, api_key="k")
        gateway = Settings(db=db_path, account="gateway", base_url=server.base_url, api_key="k")
        await sync(direct, retry=FAST)
        result = await sync(gateway, retry=FAST)
        await sync(direct, retry=FAST, full=True)
        assert_database_matches(db_path, server.served())
    assert (result.batches_new, result.batches_seen) == (0, 150)
    assert owners(db_path) == {"direct": 150}


async def test_an_account_listing_batches_another_stored_refreshes_them_and_fetches_their_files(
    db_path: Path,
) -> None:
    """A database synced as `default`, then through an `[accounts.prod]` table naming the same
    API: `default`'s batches stay its own, but prod, which lists them, refreshes those in
    flight and fetches their files, rather than leaving them to an account no longer synced."""
    async with FakeApiServer(FakeApiOptions(batches=400, api_key="k")) as server:
        default = Settings(db=db_path, base_url=server.base_url, api_key="k", files=False)
        await sync(default, retry=FAST)
        prod = Settings(db=db_path, account="prod", base_url=server.base_url, api_key="k")
        await sync(prod, retry=FAST)
        server.data.advance_statuses(400)
        await sync(prod, retry=FAST)
        assert_database_matches(db_path, server.served())
    assert owners(db_path) == {"default": 400}
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        states = dict(
            conn.execute("SELECT state, count(*) FROM batch_files WHERE kind = 'error' GROUP BY 1")
        )
        (lines,) = conn.execute("SELECT count(*) FROM batch_requests").fetchone()
    assert set(states) == {"complete"}
    assert lines > 0


@pytest.mark.parametrize(
    ("names", "order"),
    [(("direct", "gateway"), (0, 1, 0)), (("a", "gateway", "c"), (0, 1, 2))],
    ids=["the owner listing last", "a third listing last"],
)
async def test_a_batch_several_accounts_list_is_refreshed_by_any_still_synced(
    db_path: Path, names: tuple[str, ...], order: tuple[int, ...]
) -> None:
    """A project reached directly and through a gateway, the others then dropped: the
    gateway refreshes the batches the first stored, though the first listed them last; and
    with three accounts, though a third listed them last (they were left to the last other
    account listing them, and stayed in flight for good under the accounts still synced)."""
    async with FakeApiServer(FakeApiOptions(batches=300, api_key="k")) as server:
        settled = server.data.batch(10)  # deep in the list: no incremental walk goes there
        server.data.change(10, status="in_progress", completed_at=None, error_file_id=None)
        accounts = [
            Settings(db=db_path, account=name, base_url=server.base_url, api_key="k")
            for name in names
        ]
        for n in order:
            await sync(accounts[n], retry=FAST)
        server.data.change(10, **settled)
        await sync(accounts[1], retry=FAST)
        assert_database_matches(db_path, server.served())
    assert owners(db_path) == {names[0]: 300}


class Routes:
    """One API's batches behind a route for each account, `/NAME/v1`, a batch hidden from
    some (missing from their lists, 404 by id: a gateway knowing only some batches)."""

    def __init__(self, batches: list[dict[str, Any]], names: str) -> None:
        self.batches = {batch["id"]: batch for batch in batches}
        self.hidden: dict[str, set[str]] = {name: set() for name in names}
        # A route's own version of some batches (a gateway leaving fields out).
        self.shown_by: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in names}
        self.refused: dict[str, set[str]] = {name: set() for name in names}  # 403 by id
        self.failing: dict[str, set[str]] = {name: set() for name in names}  # 503 by id
        self.asked: list[tuple[str, str]] = []  # by id: (route, batch id)

    def accounts(self, db: Path, root: str) -> list[Settings]:
        """An account for each route, reading pages of two and no files."""
        return [
            Settings(db=db, account=name, base_url=f"{root}/{name}/v1", api_key="k",
                     page_size=2, files=False)
            for name in self.hidden
        ]  # fmt: skip

    def shown(self, route: str) -> list[dict[str, Any]]:
        newest_first = sorted(self.batches.values(), key=lambda b: -b["created_at"])
        own = self.shown_by[route]
        out = self.hidden[route] | self.refused[route]
        return [own.get(b["id"], b) for b in newest_first if b["id"] not in out]

    async def listed(self, request: web.Request) -> web.Response:
        shown = self.shown(request.match_info["route"])
        limit, after = int(request.query["limit"]), request.query.get("after")
        start = next(i + 1 for i, b in enumerate(shown) if b["id"] == after) if after else 0
        page = shown[start : start + limit]
        return web.json_response(list_body(page, start + limit < len(shown)))

    def unknown_cursor_refused(self, request: web.Request) -> web.Response | None:
        """A 400 naming `after` for a cursor the route does not list (gone from the list)."""
        after = request.query.get("after")
        if after is None or after in {b["id"] for b in self.shown(request.match_info["route"])}:
            return None
        error = {"message": "Invalid 'after'", "type": "invalid_request_error",
                 "param": "after", "code": None}  # fmt: skip
        return web.json_response({"error": error}, status=400)

    async def by_id(self, request: web.Request) -> web.Response:
        batch_id = request.match_info["id"]
        self.asked.append((request.match_info["route"], batch_id))
        if batch_id in self.refused[request.match_info["route"]]:
            error = {"message": "Forbidden", "type": "invalid_request_error", "code": None}
            return web.json_response({"error": error}, status=403)
        if batch_id in self.failing[request.match_info["route"]]:
            return web.json_response({"error": {"message": "Unavailable"}}, status=503)
        if batch_id in self.hidden[request.match_info["route"]]:
            error = {"message": "No batch found", "type": "invalid_request_error"}
            return web.json_response({"error": {**error, "code": "batch_not_found"}}, status=404)
        route = request.match_info["route"]
        return web.json_response(self.shown_by[route].get(batch_id, self.batches[batch_id]))

    def routes(self) -> dict[str, Any]:
        return {"/{route}/v1/batches": self.listed, "/{route}/v1/batches/{id}": self.by_id}


# Ten batches, the third (deep in pages of two) in flight, and as it ends.
IN_FLIGHT = [make_batch(n, status="in_progress" if n == 3 else "completed") for n in range(1, 11)]
ENDED = [make_batch(n) for n in range(1, 11)]
# The third as it fails, with an error line, and the list so.
FAILED = make_batch(3, status="failed", errors={"data": [{"code": "bad", "line": 1}]})
WITH_FAILED = [*IN_FLIGHT[:2], FAILED, *IN_FLIGHT[3:]]


def failed_in_bs_gateway(api: Routes) -> None:
    """The third batch fails, and route b's gateway lists it without usage or error lines."""
    api.batches[FAILED["id"]] = FAILED
    api.shown_by["b"] = {FAILED["id"]: without(FAILED, "usage", "errors")}


@contextlib.asynccontextmanager
async def listed_by_each(db: Path, names: str) -> AsyncIterator[tuple[Routes, list[Settings]]]:
    """IN_FLIGHT behind a route for each account of `names`, each account synced once."""
    api = Routes(IN_FLIGHT, names)
    async with serving(api.routes()) as root:
        accounts = api.accounts(db, root)
        for account in accounts:
            await sync(account, retry=FAST)
        yield api, accounts


async def test_other_accounts_404s_leave_the_owners_batch_in_flight(db_path: Path) -> None:
    """Three other accounts' routes lost a batch in flight (404 by id) while its owner's
    still had it: the `in_flight` view counted their 404s together and hid the batch its
    owner refreshed in flight (pass 85B)."""
    async with listed_by_each(db_path, "abcd") as (api, accounts):
        for name in "bcd":
            api.hidden[name].add(IN_FLIGHT[2]["id"])
        for account in accounts:
            await sync(account, retry=FAST)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        shown = conn.execute("SELECT batch_id, account FROM in_flight").fetchall()
    assert shown == [(IN_FLIGHT[2]["id"], "a")]


@pytest.mark.parametrize("lost_by", ["a", "b"], ids=["the owner's route", "another's route"])
async def test_one_accounts_404s_by_id_leave_the_batch_to_another_that_lists_it(
    db_path: Path, lost_by: str
) -> None:
    """One account's route lost a batch in flight (404 by id) on three syncs of its own:
    the batch was taken as gone for every account, and stayed in flight for good, though
    the other account's route had it completed."""
    async with listed_by_each(db_path, "ab") as (api, (a, b)):
        api.hidden[lost_by].add(ENDED[2]["id"])
        api.batches[ENDED[2]["id"]] = ENDED[2]
        lost, other = (a, b) if lost_by == "a" else (b, a)
        for _ in range(3):
            assert (await sync(lost, retry=FAST)).gone == 1
        await sync(other, retry=FAST)
        asked = [(await sync(lost, retry=FAST)).refreshed_by_id for _ in range(2)]
    assert_database_matches(db_path, ENDED)
    assert owners(db_path) == {"a": 10}
    # Ended (in b's list), or three 404s of its own (which b's listing does not clear).
    assert asked == [0, 0]


async def test_other_accounts_404s_by_id_do_not_count_as_one_accounts_own(
    db_path: Path,
) -> None:
    """Three accounts listing a batch in flight, two of whose routes lost it: their 404s
    counted as the third's, and one blip of the third's own route (a replica behind) took
    the batch out of its refresh for good, though its route then had it completed."""
    lost = ENDED[2]["id"]
    async with listed_by_each(db_path, "abc") as (api, accounts):
        api.hidden["b"].add(lost)
        api.hidden["c"].add(lost)
        for _ in range(3):
            await sync_accounts(accounts, retry=FAST)
        api.hidden["a"].add(lost)  # one blip of the owner's route
        await sync_accounts(accounts, retry=FAST)
        api.hidden["a"].clear()
        api.batches[lost] = ENDED[2]
        await sync_accounts(accounts, retry=FAST)
    assert_database_matches(db_path, ENDED)


def ended_lately(n: int, **fields: Any) -> dict[str, Any]:
    """Batch n, ended a minute ago (its files are kept 30 days)."""
    now = int(time.time())
    return make_batch(n, created_at=now - 3600 + n, completed_at=now - 60 + n, **fields)


@pytest.mark.parametrize("by_id", ["names them", "never", "404"])
async def test_a_batch_first_listed_ended_naming_no_file_is_asked_for_it_by_id(
    db_path: Path, by_id: str
) -> None:
    """A list leaving out a batch's file ids (a gateway's), the batch ended when first
    listed: it was never asked for again, its files never fetched (pass 72B). It is asked
    for by id on three syncs at most, while the API keeps its files; one that ran no
    request has none, and one ended over 30 days ago has none left. A 404 to those asks
    (a route without them) counts no batch gone."""
    by_id_names_them = by_id == "names them"
    batches = [
        ended_lately(3),
        ended_lately(2, request_counts={"total": 0, "completed": 0, "failed": 0}),
        make_batch(1),  # ended in 2023
    ]
    api = Routes(batches, "a")
    bare = {b["id"]: {**b, "output_file_id": None} for b in batches}
    if not by_id_names_them:
        api.shown_by["a"] = dict(bare)
    if by_id == "404":
        api.hidden["a"] = {make_batch(3)["id"]}

    async def listed(request: web.Request) -> web.Response:
        shown = [bare[b["id"]] for b in sorted(batches, key=lambda b: -b["created_at"])]
        return web.json_response(list_body(shown, False))

    api.listed = listed  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        results = [await sync(a, retry=FAST) for _ in range(4)]
    assert all(result.complete for result in results)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        named = dict(conn.execute("SELECT id, output_file_id FROM batches"))
        assert (
            conn.execute("SELECT count(*) FROM batches WHERE gone_at IS NOT NULL").fetchone()[0]
            == 0
        )
    three = make_batch(3)["id"]
    assert named[three] == ("file-out-3" if by_id_names_them else None)
    assert api.asked == [("a", three)] * (1 if by_id_names_them else 3)


def listing_no_file(batches: list[dict[str, Any]], *, but: int = 0) -> Routes:
    """Route a listing every one of `batches` with no file id (a gateway's list), but the
    last `but`, hidden or refused by id or not, and answering them by id whole."""
    api = Routes(batches, "a")
    bare = [{**b, "output_file_id": None} for b in batches[: len(batches) - but]]
    bare += batches[len(batches) - but :]

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(list_body(bare, False))

    api.listed = listed  # type: ignore[method-assign]
    return api


def naming_a_file(db: Path) -> set[str]:
    """The ids of the batches stored naming an output file."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        query = "SELECT id FROM batches WHERE output_file_id NOT NULL"
        return {batch_id for (batch_id,) in conn.execute(query)}


def naming_no_file(batches: list[dict[str, Any]]) -> Routes:
    """Route a listing `batches` and answering them by id with no file id (a gateway)."""
    api = Routes(batches, "a")
    api.shown_by["a"] = {b["id"]: {**b, "output_file_id": None} for b in batches}
    return api


async def synced(api: Routes, db: Path, *, times: int) -> list[Any]:
    """Account a of `api` synced into `db` `times` times: the results."""
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db, root)
        return [await sync(a, retry=FAST) for _ in range(times)]


async def test_asks_for_files_cut_by_a_time_budget_are_counted_as_made(db_path: Path) -> None:
    """Counted once all were made, asks cut by `--max-seconds` counted none: every sync
    asked the same again, was cut again, and ended partial for good (pass 80B). They are
    counted as they are made, and refresh nothing in flight: the run is complete."""
    api = naming_no_file([ended_lately(n) for n in range(8, 0, -1)])
    seconds = a_second_a_request(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        on_a_budget = dataclasses.replace(a, max_seconds=3, concurrency=1)
        results = [
            await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0])) for _ in range(12)
        ]
    assert all(result.complete for result in results)
    assert len(api.asked) == 8 * 3


async def test_an_ask_for_files_outlasting_the_time_budget_is_said_and_asked_last(
    db_path: Path,
) -> None:
    """A batch ended naming no file whose ask by id hangs, on a time budget: asked first,
    it spent every sync's budget, silently, and the others were never asked (pass 91B).
    Said, and asked after the others (once) on the next syncs."""
    batches = [ended_lately(n) for n in range(3, 0, -1)]
    api = listing_no_file(batches)
    hanging = batches[0]["id"]  # the newest: asked first
    seconds = a_second_a_request(api)
    by_id, hang, released = api.by_id, asyncio.Event(), asyncio.Event()

    async def hangs(request: web.Request) -> web.Response:
        if request.match_info["id"] == hanging and hang.is_set():
            api.asked.append(("hanging", hanging))
            await released.wait()
        return await by_id(request)

    api.by_id = hangs  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        hang.set()
        on_a_budget = dataclasses.replace(a, max_seconds=2, concurrency=1)
        # A list page and an ask a run: one batch asked each.
        results = [
            await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0])) for _ in range(3)
        ]
        released.set()
    assert any("outlasted the time budget" in warning for warning in results[0].warnings)
    assert naming_a_file(db_path) == {b["id"] for b in batches[1:]}


async def test_a_route_naming_no_file_is_asked_for_a_few_batches_only(db_path: Path) -> None:
    """A gateway naming no file by id either was asked three times for every batch: once
    none of the newest ten asked names one, the others are counted asked."""
    api = naming_no_file([ended_lately(n) for n in range(15, 0, -1)])
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        for _ in range(5):
            assert (await sync(a, retry=FAST)).complete
    asked = {batch_id for _, batch_id in api.asked}
    assert asked == {make_batch(n)["id"] for n in range(15, 5, -1)}
    assert len(api.asked) == 10 * 3


@pytest.mark.parametrize("by_id", ["down on three syncs", "404 for the newest ten"])
async def test_asks_for_files_unanswered_wait_for_an_answer(db_path: Path, by_id: str) -> None:
    """Failed asks were counted, and a first ten none of which was answered counted the
    others asked: three syncs with requests by id down used up every batch's asks, and
    once they worked again, no batch was asked, its files never named (pass 81B)."""
    batches = [ended_lately(n) for n in range(15, 0, -1)]
    api = listing_no_file(batches)
    down = [by_id.startswith("down")]
    if not down[0]:
        api.hidden["a"] = {make_batch(n)["id"] for n in range(15, 5, -1)}
    answer = api.by_id

    async def failing_by_id(request: web.Request) -> web.Response:
        if down[0]:
            return web.json_response({"error": {"message": "Unavailable"}}, status=503)
        return await answer(request)

    api.by_id = failing_by_id  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        for _ in range(4):  # the first stores them, the next three ask
            await sync(a, retry=FAST)
        down[0] = False
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:  # a day on
            conn.execute("UPDATE walk_state SET by_id_failed_at = by_id_failed_at - 86400")
        results = [await sync(a, retry=FAST) for _ in range(4)]
    assert all(result.complete for result in results)
    reachable = batches if by_id.startswith("down") else batches[10:]
    assert naming_a_file(db_path) == {b["id"] for b in reachable}


async def test_asks_for_files_meeting_a_failing_route_wait_a_day(db_path: Path) -> None:
    """Requests by id failing while the list answered: every sync spent about a minute
    retrying the asks for files, silently (pass 82B). The route is marked failing, as the
    refresh marks it, and the asks wait a day."""
    batches = [ended_lately(n) for n in range(15, 0, -1)]
    api = naming_no_file(batches)

    async def failing(request: web.Request) -> web.Response:
        api.asked.append(("a", request.match_info["id"]))
        return web.json_response({"error": {"message": "Unavailable"}}, status=503)

    api.by_id = failing  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        failed = await sync(a, retry=FAST)
        asked = len(api.asked)
        later = [await sync(a, retry=FAST), await sync(a, full=True, retry=FAST)]
    assert failed.complete
    assert any("asked for again in a day" in warning for warning in failed.warnings)
    assert asked > 0
    assert len(api.asked) == asked
    assert all(result.complete for result in later)


async def test_an_outage_during_the_asks_for_files_leaves_the_run_complete(
    db_path: Path,
) -> None:
    """The API went down once the walk and the refresh were done, during the asks for
    files: the run failed, exit 75 (pass 82B); the asks refresh nothing in flight."""
    api = naming_no_file([ended_lately(n) for n in range(15, 0, -1)])
    down: list[bool] = []
    listed = api.listed

    async def falling_down(request: web.Request) -> web.Response:
        if "id" in request.match_info:
            down.append(True)
        if down:
            return web.json_response({"error": {"message": "Unavailable"}}, status=503)
        return await listed(request)

    api.listed = api.by_id = falling_down  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        result = await sync(a, retry=FAST)
    assert result.complete
    assert any("asking for the files" in warning for warning in result.warnings)


async def test_stale_copies_by_id_say_nothing_of_a_routes_files(db_path: Path) -> None:
    """A cache answering the newest ten by id as they were while finalizing (kept out):
    counted as answers naming no file, the others were counted asked without asking, and
    none was ever asked, their files never fetched (pass 83B)."""
    batches = [ended_lately(n) for n in range(25, 0, -1)]
    api = listing_no_file(batches)
    cached = batches[:10]
    api.shown_by["a"] = {b["id"]: {**b, "output_file_id": None, "status": "finalizing"}
                         for b in cached}  # fmt: skip
    await synced(api, db_path, times=3)
    assert naming_a_file(db_path) == {b["id"] for b in batches[10:]}


async def test_batches_refused_by_id_alone_keep_no_other_waiting(db_path: Path) -> None:
    """The newest ten refused by id, each alone (a 403): neither answers nor outages, they
    kept every older batch waiting, asked again on every sync (pass 84B)."""
    batches = [ended_lately(n) for n in range(25, 0, -1)]
    api = listing_no_file(batches)
    api.refused["a"] = {b["id"] for b in batches[:10]}
    await synced(api, db_path, times=2)
    assert naming_a_file(db_path) == {b["id"] for b in batches[10:]}


async def test_batches_failing_by_id_alone_keep_no_other_waiting(db_path: Path) -> None:
    """The newest ten failing by id each alone (a 5xx past its retries) marked the by-id
    route failing though it answered others: the asks waited a day, then asked the same ten
    first again, every older batch waiting for good (pass 84B)."""
    batches = [ended_lately(n) for n in range(25, 0, -1)]
    api = listing_no_file(batches)
    api.failing["a"] = {b["id"] for b in batches[:10]}
    await synced(api, db_path, times=2)
    assert naming_a_file(db_path) == {b["id"] for b in batches[10:]}
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT by_id_failed_at FROM walk_state").fetchall() == [(None,)]


async def test_batches_in_flight_failing_by_id_alone_mark_no_route_failing(
    db_path: Path,
) -> None:
    """Twelve batches in flight failing by id each alone marked the by-id route failing
    though a batch the list names answered by id: asks by id stopped for a day."""
    in_flight = [make_batch(n, status="in_progress") for n in range(1, 13)]
    api = Routes([*in_flight, *(make_batch(n) for n in range(13, 43))], "a")
    api.failing["a"] = {b["id"] for b in in_flight}
    await synced(api, db_path, times=2)
    assert {batch_id for _, batch_id in api.asked} >= api.failing["a"]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT by_id_failed_at FROM walk_state").fetchall() == [(None,)]


async def test_batches_failing_by_id_alone_are_asked_three_times(db_path: Path) -> None:
    """Batches ended naming no file, each failing by id alone (a 5xx) while the route
    answered another: never counted, they were asked again with every retry on every sync,
    silently, for as long as the API keeps their files (pass 86B)."""
    failing = [ended_lately(n) for n in range(31, 1, -1)]
    answering = make_batch(40, created_at=int(time.time()), status="in_progress")
    api = listing_no_file([answering, *failing])
    api.failing["a"] = {b["id"] for b in failing}
    results = await synced(api, db_path, times=4)
    asked = len(api.asked)
    last = await synced(api, db_path, times=1)
    assert {batch_id for _, batch_id in api.asked[asked:]} <= {answering["id"]}
    assert all(result.complete for result in [*results, *last])
    assert any("failed when asked for by id" in w for w in results[1].warnings)


@pytest.mark.parametrize("witness", [True, False], ids=["a witness", "no witness"])
async def test_an_outage_by_id_uses_up_no_asks_for_files(db_path: Path, witness: bool) -> None:
    """Every request by id failing (a 5xx) on three syncs: one batch asked made no streak
    to check, nor did five with no other batch stored to ask; each failure was counted, the
    asks used up, and their files were never fetched once the route healed (pass 90B). A
    batch stored besides tells whether the route answers (it does not: marked failing);
    with none, nothing is counted."""
    batches = [ended_lately(n) for n in range(5, 0, -1)]
    api = listing_no_file(batches, but=4 if witness else 0)
    api.failing["a"] = set(api.batches)
    results = await synced(api, db_path, times=4)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT max(file_asks) FROM batches").fetchone() == (0,)
        failing_at = conn.execute("SELECT by_id_failed_at FROM walk_state").fetchone()[0]
    assert (failing_at is not None) is witness
    if not witness:
        assert any("not counted" in warning for warning in results[-1].warnings)
        api.failing["a"] = set()
        await synced(api, db_path, times=1)
        assert naming_a_file(db_path) == set(api.batches)


async def test_a_batch_in_flight_failing_by_id_is_asked_once_on_later_syncs(
    db_path: Path,
) -> None:
    """A batch in flight whose every ask by id failed (a hang past its retries: four
    minutes with the defaults) was asked with every retry again on every sync (pass 90B).
    It is asked once, and by id still: looked for in the list first instead, a list behind
    left it in flight for good, and a list page failing failed every sync (91B)."""
    in_flight = make_batch(1, status="in_progress")
    api = Routes([*(make_batch(n) for n in range(40, 1, -1)), in_flight], "a")
    api.failing["a"] = {in_flight["id"]}
    listed, behind = api.listed, [False]

    async def listing(request: web.Request) -> web.Response:
        answer = await listed(request)
        body = json.loads(answer.body)  # type: ignore[arg-type]
        if behind[0]:
            body["data"] = [in_flight if b["id"] == in_flight["id"] else b for b in body["data"]]
        return web.json_response(body)

    api.listed = listing  # type: ignore[method-assign]
    asks_of_each = []
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        for _ in range(2):
            asked = len(api.asked)
            result = await sync(a, retry=FAST)
            asks_of_each.append(api.asked[asked:].count(("a", in_flight["id"])))
        # Said, each sync waiting out a timeout for it (92B).
        assert any("failed by id again" in warning for warning in result.warnings)
        api.failing["a"].clear()
        api.batches[in_flight["id"]] = make_batch(1, status="completed")
        behind[0] = True
        await sync(a, retry=FAST)
    assert asks_of_each == [FAST.max_attempts, 1]
    assert statuses(db_path, [in_flight["id"]]) == ["completed"]


async def test_failures_after_the_last_answer_by_id_use_up_no_asks_for_files(
    db_path: Path,
) -> None:
    """A gateway shedding load (a 5xx to every ask by id once five were answered in a sync):
    the batch ended naming no file, asked after the batches in flight were answered, failed
    and was counted (the route had answered this run); three syncs used up its asks, and
    its files were never fetched (pass 91B)."""
    now = int(time.time())
    in_flight = [
        make_batch(n, created_at=now - 7200 + n, status="in_progress") for n in range(1, 6)
    ]
    ended = ended_lately(6)
    named = [make_batch(n, created_at=now - 600 + n) for n in range(7, 13)]
    api = Routes([ended, *in_flight, *named], "a")
    api.shown_by["a"] = {ended["id"]: {**ended, "output_file_id": None}}
    answer, answers_left = api.by_id, [0]

    async def shedding(request: web.Request) -> web.Response:
        if answers_left[0] == 0:
            api.asked.append(("a", request.match_info["id"]))
            return web.json_response({"error": {"message": "Unavailable"}}, status=503)
        answers_left[0] -= 1
        return await answer(request)

    api.by_id = shedding  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        a = dataclasses.replace(a, page_size=1)  # those in flight asked by id
        for _ in range(4):
            answers_left[0] = 5
            await sync(a, retry=FAST)
    assert ("a", ended["id"]) in api.asked
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        asks = conn.execute("SELECT file_asks FROM batches WHERE id = ?", (ended["id"],))
        assert asks.fetchone() == (0,)


async def test_one_batch_failing_by_id_condemns_no_route_as_the_checks_witness(
    db_path: Path,
) -> None:
    """The newest batch stored, in flight on the top page (never asked by id), failing by
    id: the check after a batch ended naming no file failed asked it alone as its witness,
    and marked the route failing for a day, again every day, though every other batch
    answered (pass 92B). The list's page of one is asked once a check."""
    now = int(time.time())
    newest = make_batch(40, created_at=now, status="in_progress")
    ended = ended_lately(20)
    others = [make_batch(n, created_at=now - 7200 + n) for n in range(1, 6)]
    api = Routes([newest, ended, *others], "a")
    api.shown_by["a"] = {ended["id"]: {**ended, "output_file_id": None}}
    api.failing["a"] = {newest["id"], ended["id"]}
    listed, pages_of_one = api.listed, [0]

    async def counting(request: web.Request) -> web.Response:
        pages_of_one[0] += request.query["limit"] == "1"
        return await listed(request)

    api.listed = counting  # type: ignore[method-assign]
    results = await synced(api, db_path, times=3)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT by_id_failed_at FROM walk_state").fetchall() == [(None,)]
    assert not any("kept failing" in w for result in results for w in result.warnings)
    assert pages_of_one[0] <= 3


async def test_the_asks_for_files_check_the_route_once_a_sync(db_path: Path) -> None:
    """Three batches ended naming no file, each failing by id alone: the check after the
    three in a row found the route answering, and the asks checked again at their end,
    the third failure taken for one after it (pass 92B)."""
    failing = [ended_lately(n) for n in range(23, 20, -1)]
    named = [make_batch(n) for n in range(1, 6)]
    api = listing_no_file([*failing, *named], but=len(named))
    api.failing["a"] = {b["id"] for b in failing}
    listed, pages_of_one = api.listed, [0]

    async def counting(request: web.Request) -> web.Response:
        pages_of_one[0] += request.query.get("limit") == "1"
        return await listed(request)

    api.listed = counting  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        pages_of_one[0] = 0
        await sync(dataclasses.replace(a, concurrency=1), retry=FAST)
    assert pages_of_one[0] == 1


async def test_a_witness_rate_limited_alone_leaves_the_check_to_another(
    db_path: Path,
) -> None:
    """The newest batch stored answering 429 by id: the check after a batch ended naming no
    file failed took it for the key busy, every sync, and the failure was never counted,
    asked with every retry again for 30 days (pass 93B). Another witness is asked."""
    now = int(time.time())
    newest = make_batch(40, created_at=now)
    ended = ended_lately(20)
    others = [make_batch(n, created_at=now - 7200 + n) for n in range(1, 6)]
    api = Routes([newest, ended, *others], "a")
    api.shown_by["a"] = {ended["id"]: {**ended, "output_file_id": None}}
    api.failing["a"] = {ended["id"]}
    answer = api.by_id

    async def busy(request: web.Request) -> web.Response:
        if request.match_info["id"] == newest["id"]:
            error = {"message": "Rate limit reached", "type": "requests", "code": None}
            return web.json_response({"error": error}, status=429)
        return await answer(request)

    api.by_id = busy  # type: ignore[method-assign]
    await synced(api, db_path, times=2)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        asks = conn.execute("SELECT file_asks FROM batches WHERE id = ?", (ended["id"],))
        assert asks.fetchone() == (1,)


async def test_a_check_of_the_route_asks_no_longer_page_than_the_runs(db_path: Path) -> None:
    """A list refusing pages over the run's (`--page-size 20` for a server taking 20 at
    most): the check after batches failing by id asked for a hundred, took the refusal for
    the API down, and every sync failed, the batches in flight stale (pass 86B)."""
    in_flight = [make_batch(n, status="in_progress") for n in range(1, 4)]
    api = Routes([*in_flight, *(make_batch(n) for n in range(4, 13))], "a")
    api.failing["a"] = {b["id"] for b in in_flight}
    listed = api.listed

    async def at_most_two(request: web.Request) -> web.Response:
        if int(request.query["limit"]) > 2:
            error = {"message": "limit too large", "type": "invalid_request_error"}
            return web.json_response({"error": {**error, "code": None}}, status=400)
        return await listed(request)

    api.listed = at_most_two  # type: ignore[method-assign]
    await synced(api, db_path, times=1)
    api.batches.update({b["id"]: b for b in map(make_batch, range(1, 4))})  # completed
    assert all(result.complete for result in await synced(api, db_path, times=1))
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT DISTINCT status FROM batches").fetchall() == [("completed",)]


async def test_a_failing_route_is_checked_once_a_refresh(db_path: Path) -> None:
    """Once the check after failures by id told the route failing, each worker waiting for
    it, or failing after, checked again: eight checks in a row, each as long as a failed
    ask (pass 87B)."""
    in_flight = [make_batch(n, status="in_progress") for n in range(1, 13)]
    api = Routes([*in_flight, *(make_batch(n) for n in range(13, 43))], "a")
    listed, checks = api.listed, [0]

    async def counting(request: web.Request) -> web.Response:
        checks[0] += request.query["limit"] == "1"
        return await listed(request)

    api.listed = counting  # type: ignore[method-assign]
    await synced(api, db_path, times=1)
    api.failing["a"] = set(api.batches)
    (result,) = await synced(api, db_path, times=1)
    assert checks == [1]
    assert any("refreshed from the list instead" in warning for warning in result.warnings)


async def test_404s_to_the_asks_for_files_are_no_batches_refreshed(db_path: Path) -> None:
    """Ten batches ended naming no file answered 404 by id: the summary said ten batches
    refreshed, none answered not found (pass 87B)."""
    api = listing_no_file([ended_lately(n) for n in range(10, 0, -1)])
    api.hidden["a"] = set(api.batches)
    results = await synced(api, db_path, times=2)
    assert [result.refreshed_by_id for result in results] == [0, 0]
    assert len(api.asked) == 10


async def test_asks_for_files_rate_limited_use_up_no_asks(db_path: Path) -> None:
    """Asks for files answered 429 while others got through were counted as failing alone:
    three syncs under a rate limit used up those batches' asks, and once the limit was
    lifted, their files were never named (pass 88B). A 429 is the key's load, no batch's."""
    batches = [ended_lately(n) for n in range(25, 0, -1)]
    api = listing_no_file(batches)
    answer, limited = api.by_id, {b["id"] for b in batches[:10]}

    async def rate_limited(request: web.Request) -> web.Response:
        if request.match_info["id"] in limited:
            error = {"message": "Rate limit reached", "type": "requests", "code": None}
            return web.json_response({"error": error}, status=429)
        return await answer(request)

    api.by_id = rate_limited  # type: ignore[method-assign]
    await synced(api, db_path, times=4)
    limited.clear()
    await synced(api, db_path, times=1)
    assert naming_a_file(db_path) == set(api.batches)


async def test_the_list_failing_at_the_check_fails_the_run_with_its_error(
    db_path: Path,
) -> None:
    """Batches in flight refused by id alone (a 403 each), then the list failing when
    asked whether the API is up: the run failed for good (exit 1) on that batch's refusal,
    not for the outage that it was (pass 88B)."""
    in_flight = [make_batch(n, status="in_progress") for n in range(1, 4)]
    api = Routes([*in_flight, *(make_batch(n) for n in range(4, 13))], "a")
    listed = api.listed

    async def down_at_the_check(request: web.Request) -> web.Response:
        if request.query["limit"] == "1":
            return web.json_response({"error": {"message": "Unavailable"}}, status=503)
        return await listed(request)

    api.listed = down_at_the_check  # type: ignore[method-assign]
    await synced(api, db_path, times=1)
    api.refused["a"] = {b["id"] for b in in_flight}
    with pytest.raises(ServerError):
        await synced(api, db_path, times=1)


async def test_a_batch_failing_by_id_alone_is_asked_three_times_in_all(db_path: Path) -> None:
    """One batch ended naming no file failing by id (a 5xx), once the others were answered
    and it was asked alone: no other answer that round, it was never counted, and every
    sync waited out its retries, silently, for 30 days (pass 89B). Failed past its retries
    once, it is asked once after (91B)."""
    batches = [ended_lately(n) for n in range(13, 0, -1)]
    api = listing_no_file(batches)
    api.failing["a"] = {batches[0]["id"]}
    await synced(api, db_path, times=5)
    asked = len(api.asked)
    await synced(api, db_path, times=1)
    assert len(api.asked) == asked
    assert sum(batch_id == batches[0]["id"] for _, batch_id in api.asked) == FAST.max_attempts + 2


async def test_copies_by_id_behind_use_up_no_asks_for_files(db_path: Path) -> None:
    """Copies at an earlier stage (a cache behind) were counted as answers: three syncs of
    them used up the batches' asks, and once the cache caught up no batch was asked again,
    its files never named (pass 84B)."""
    batches = [ended_lately(n) for n in range(12, 0, -1)]
    api = listing_no_file(batches)
    behind = {b["id"]: {**b, "output_file_id": None, "status": "finalizing"} for b in batches}
    api.shown_by["a"] = behind
    await synced(api, db_path, times=4)
    api.shown_by["a"] = {}
    await synced(api, db_path, times=1)
    assert naming_a_file(db_path) == set(api.batches)


@pytest.mark.parametrize("refusal", ["a 403", "no such route"])
async def test_a_route_refusing_every_batch_uses_up_no_asks_for_files(
    db_path: Path, refusal: str
) -> None:
    """Requests by id refused for every batch (a 403, or a proxy's page for a path it
    lacks): the route was marked failing, yet each refusal counted as an answer, and three
    syncs used up every batch's asks; once the route healed, no batch was asked, its files
    never named (pass 85B)."""
    batches = [ended_lately(n) for n in range(25, 0, -1)]
    api = listing_no_file(batches)
    refusing = [True]
    answer = api.by_id

    async def by_id(request: web.Request) -> web.Response:
        if not refusing[0]:
            return await answer(request)
        if refusal == "a 403":
            error = {"message": "Forbidden", "type": "invalid_request_error", "code": None}
            return web.json_response({"error": error}, status=403)
        return web.Response(status=404, text="<h1>Not Found</h1>", content_type="text/html")

    api.by_id = by_id  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        for _ in range(4):  # the first stores them, the next three ask, a day apart
            await sync(a, retry=FAST)
            with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
                conn.execute("UPDATE walk_state SET by_id_failed_at = by_id_failed_at - 86400")
        refusing[0] = False
        await sync(a, retry=FAST)
    assert naming_a_file(db_path) == set(api.batches)


async def test_the_asks_for_files_wait_once_the_refresh_found_the_route_failing(
    db_path: Path,
) -> None:
    """The refresh of batches in flight marked the by-id route failing, and the asks for
    files, after it in the same run, asked it all the same (80 failing requests more with
    the default retries, pass 85B)."""
    ended = [ended_lately(n) for n in range(40, 20, -1)]
    in_flight = [make_batch(n, status="in_progress") for n in range(1, 9)]
    api = naming_no_file([*ended, *in_flight])  # in pages of two: those in flight deep
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.failing["a"] = set(api.batches)
        result = await sync(a, retry=FAST)
    asked_ended = {batch_id for _, batch_id in api.asked} & {b["id"] for b in ended}
    assert len(asked_ended) <= 2, "the check's two witnesses alone"
    assert any("refreshed from the list instead" in warning for warning in result.warnings)


async def test_answers_to_the_asks_for_files_are_kept_when_the_run_is_cut(
    db_path: Path,
) -> None:
    """Saved a page's worth at a time, the answers of a run stopped before a hundred slow
    asks were answered were lost, and runs stopped so never moved on (pass 85B)."""
    api = listing_no_file([ended_lately(n) for n in range(30, 0, -1)])
    answer, answered, held = api.by_id, [0], asyncio.Event()

    async def by_id(request: web.Request) -> web.Response:
        if answered[0] == 5:
            api.asked.append(("held", request.match_info["id"]))
            await held.wait()
        answered[0] += 1
        return await answer(request)

    api.by_id = by_id  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        run = asyncio.create_task(sync(dataclasses.replace(a, page_size=100), retry=FAST))
        # The probe's other five held: every worker saved what it was answered first.
        await until(lambda: sum(route == "held" for route, _ in api.asked) == 5)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        held.set()
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        counted = conn.execute("SELECT count(*) FROM batches WHERE file_asks > 0").fetchone()
    assert counted == (5,)


async def test_batches_refused_by_id_alone_mark_no_route_failing(db_path: Path) -> None:
    """Three batches ended naming no file, each refused by id (a 403 for it alone), marked
    the route failing for a day: the in-flight refresh walked the list instead (83B)."""
    api = naming_no_file([ended_lately(n) for n in range(3, 0, -1)])
    api.refused["a"] = set(api.batches)
    listed = api.listed

    async def listing_all(request: web.Request) -> web.Response:
        api.refused["a"], refused = set(), api.refused["a"]
        try:
            return await listed(request)
        finally:
            api.refused["a"] = refused

    api.listed = listing_all  # type: ignore[method-assign]
    await synced(api, db_path, times=2)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT by_id_failed_at FROM walk_state").fetchall() == [(None,)]


async def test_a_batch_listed_without_its_end_time_is_asked_for_its_files(
    db_path: Path,
) -> None:
    """Its end time left out too, it counted as ended in 1970, long past the 30 days the API
    keeps files, and was never asked (pass 81B): it ended after it was created."""
    batch = ended_lately(3)
    api = Routes([batch], "a")
    bare = {**batch, "output_file_id": None, "completed_at": None}

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(list_body([bare], False))

    api.listed = listed  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        for _ in range(2):
            await sync(a, retry=FAST)
    assert api.asked == [("a", batch["id"])]


@pytest.mark.parametrize("marked", ["once its files were named", "before"])
async def test_a_batch_ended_before_schema_23_keeps_the_files_its_answer_named(
    db_path: Path, marked: str
) -> None:
    """Marked ended by `*` (0023_ended_before.sql), the owner's listing leaving file ids
    out wiped those its answer by id had given (pass 80B); and, counted as its answer, it
    used up the asks for its files, shared with those for another account's copy, so that
    they were never asked for (81B)."""
    api = Routes([ended_lately(2)], "a")
    bare = {**ended_lately(2), "output_file_id": None}

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(list_body([bare], False))

    api.listed = listed  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        if marked == "once its files were named":
            await sync(a, retry=FAST)
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute("UPDATE batches SET ended_by = '*', ended_asks = NULL")
        for _ in range(3):
            await sync(a, full=True, retry=FAST)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT output_file_id FROM batches").fetchall() == [("file-out-2",)]


@pytest.mark.parametrize(
    ("left_out", "added"),
    [(("usage",), {}), (("errors", "error_file_id", "output_file_id"), {}),
     (("usage",), {"x_gateway": "gw1"})],
    ids=["usage", "errors", "a field of its own"],
)  # fmt: skip
async def test_a_batch_another_accounts_gateway_ended_is_refreshed_by_its_owner(
    db_path: Path, left_out: tuple[str, ...], added: dict[str, str]
) -> None:
    """A batch in flight ended in another account's gateway listing, which leaves fields
    out, before its owner's: the owner never listed it again (deep in the list, ended), and
    its usage, error lines and files were never stored. A gateway adding a field of its own
    had the owner's answer kept out, as if it lost that field."""
    async with listed_by_each(db_path, "ab") as (api, (a, b)):
        api.batches[FAILED["id"]] = FAILED
        api.shown_by["b"] = {FAILED["id"]: {**without(FAILED, *left_out), **added}}
        await sync(b, retry=FAST)
        await sync(a, retry=FAST)
        assert (await sync(a, retry=FAST)).refreshed_by_id == 0  # once
    assert_database_matches(db_path, WITH_FAILED)


async def test_an_owners_answer_takes_what_it_leaves_out_from_another_accounts_gateway(
    db_path: Path,
) -> None:
    """The owner's answer to a batch another account's gateway ended, leaving out a field
    the gateway's listing gave (`model`, on an older batch), was kept out whole: the row
    stayed the gateway's, without the usage and error lines the owner's held. The file ids
    are the owner's, none where its answer names none (a gateway may mint its own)."""
    async with listed_by_each(db_path, "ab") as (api, (a, b)):
        api.batches[FAILED["id"]] = without(FAILED, "model")
        gateways = {**without(FAILED, "usage", "errors"), "error_file_id": "file-gw-3"}
        api.shown_by["b"] = {FAILED["id"]: gateways}
        await sync(b, retry=FAST)
        await sync(a, retry=FAST)
        assert (await sync(a, retry=FAST)).refreshed_by_id == 0  # asked until stored
    assert_database_matches(db_path, WITH_FAILED)


async def test_what_an_owners_answer_takes_from_another_accounts_copy_has_its_key_masked(
    db_path: Path,
) -> None:
    """Another account's run, synced alone, stored the owner's key a gateway echoed (that
    run cannot know it); the owner's own run, taking what its answer left out from that
    copy, kept its own key in its row."""
    key = "sk-proj-owner-" + "x1y2z3" * 6
    async with listed_by_each(db_path, "ab") as (api, (a, b)):
        ended = make_batch(3, status="failed")
        api.batches[ended["id"]] = without(ended, "usage")
        echoed = {**ended["usage"], "note": f"echo {key}"}
        api.shown_by["b"] = {ended["id"]: {**ended, "usage": echoed}}
        await sync(b, retry=FAST)
        await sync(dataclasses.replace(a, api_key=key), retry=FAST)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        stored = "\n".join(conn.iterdump())
    assert "echo ***" in stored
    assert key[:20] not in stored


@pytest.mark.parametrize("first", ["the gateway", "the direct route"])
async def test_batches_ended_take_what_any_accounts_listing_gives_whoever_stored_them_first(
    db_path: Path, first: str
) -> None:
    """Another account's listing of a batch ended was kept out: a gateway leaving out
    `usage` that stored the batches first (its table first in the config file) left them
    without usage for good, though the direct route listed it on every sync."""
    ended = [make_batch(n, status="failed", errors={"data": [{"code": "c", "line": 1}]})
             for n in range(1, 7)]  # fmt: skip
    api = Routes(ended, "gd")
    api.shown_by["g"] = {b["id"]: without(b, "usage", "errors") for b in ended}
    async with serving(api.routes()) as root:
        gateway, direct = api.accounts(db_path, root)
        order = [gateway, direct] if first == "the gateway" else [direct, gateway]
        for _ in range(2):
            await sync_accounts(order, retry=FAST)
    assert_database_matches(db_path, ended)


@pytest.mark.parametrize(
    ("refusing", "then"),
    [("a", "ac"), ("c", "ccca")],
    ids=["the owner, another listing it whole", "another, synced more often than the owner"],
)
async def test_a_batch_a_gateway_ended_is_asked_of_every_account_listing_it_for_itself(
    db_path: Path, refusing: str, then: str
) -> None:
    """A route refusing the batch by id: only the owner asked, and with it refusing, the
    gateway's copy, without usage or error lines, stayed, though a third account's route
    had the batch whole. Then the three asks were shared: a third account refusing it,
    synced more often, spent them before the owner synced, and the owner was never asked."""
    async with listed_by_each(db_path, "abc") as (api, accounts):
        failed_in_bs_gateway(api)
        api.refused[refusing].add(FAILED["id"])
        named = {account.account: account for account in accounts}
        for name in "b" + then:
            await sync(named[name], retry=FAST)
    assert_database_matches(db_path, WITH_FAILED)


@pytest.mark.parametrize("joint", [False, True], ids=["synced in turn", "synced at once"])
async def test_a_batch_its_owners_gateway_ended_is_asked_of_every_other_account_listing_it(
    db_path: Path, joint: bool
) -> None:
    """The owner's own route a gateway leaving usage and error lines out, storing the end
    first: the batch was settled, no other account asked for it, and those stayed out for
    good, though b's route, which listed it in flight, had it whole. Each asks once."""
    async with listed_by_each(db_path, "ab") as (api, (a, b)):
        api.batches[FAILED["id"]] = FAILED
        api.shown_by["a"] = {FAILED["id"]: without(FAILED, "usage", "errors")}
        for _ in range(2):
            if joint:
                await sync_accounts([a, b], retry=FAST)
            else:
                await sync(a, retry=FAST)
                await sync(b, retry=FAST)
        api.asked.clear()
        await sync_accounts([a, b], retry=FAST)
    assert api.asked == []
    assert_database_matches(db_path, WITH_FAILED)


async def test_a_batch_another_account_first_lists_behind_its_end_is_asked_of_it(
    db_path: Path,
) -> None:
    """The owner's gateway leaves usage and error lines out of batch 3, stored failed; b's
    first listing of it, a replica behind, showed it in flight and was kept out. Caught
    up, b never listed it again (deep in its list), nor asked for it: usage and error lines
    stayed out for good, though b's route had them."""
    api = Routes(IN_FLIGHT, "ab")
    three = FAILED["id"]
    async with serving(api.routes()) as root:
        a, b = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.batches[three] = FAILED
        api.shown_by["a"] = {three: without(FAILED, "usage", "errors")}
        api.shown_by["b"] = {three: IN_FLIGHT[2]}
        await sync(a, retry=FAST)
        await sync(b, retry=FAST)
        api.shown_by["b"] = {}
        for _ in range(2):
            await sync(a, retry=FAST)
            await sync(b, retry=FAST)
    assert_database_matches(db_path, WITH_FAILED)


async def test_a_batch_two_gateways_ended_takes_what_a_third_accounts_route_gives(
    db_path: Path,
) -> None:
    """The owner's route and b's both leave usage out, c's has the batch whole; b's copy
    ended it first, then the owner's answer was stored and no account asked again: c,
    which never answered, left usage out for good (synced in another order, it was in)."""
    async with listed_by_each(db_path, "abc") as (api, (a, b, c)):
        api.batches[FAILED["id"]] = FAILED
        gateways = without(FAILED, "usage")
        api.shown_by["a"] = {FAILED["id"]: gateways}
        api.shown_by["b"] = {FAILED["id"]: gateways}
        await sync(b, retry=FAST)
        await sync(a, retry=FAST)
        for _ in range(2):
            await sync_accounts([a, b, c], retry=FAST)
        api.asked.clear()
        await sync_accounts([a, b, c], retry=FAST)
    assert api.asked == []
    assert_database_matches(db_path, WITH_FAILED)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        (asks,) = conn.execute("SELECT ended_asks FROM batches WHERE id = ?", (FAILED["id"],))
    assert max(json.loads(asks[0]).values()) == 3  # an answer's 3 was counted on to 4


async def test_a_batch_its_owners_list_shows_at_an_earlier_stage_is_asked_for_by_id(
    db_path: Path,
) -> None:
    """The owner's list a replica behind (the batch in flight still, on the first page),
    its answer by id whole: the walk passing the stale listing took the batch off the
    refresh, and the gateway's copy, without usage or error lines, stayed."""
    done = make_batch(10, status="failed", errors={"data": [{"code": "bad", "line": 1}]})
    flight = [make_batch(n, status="in_progress" if n == 10 else "completed") for n in range(1, 11)]
    api = Routes(flight, "ab")
    async with serving(api.routes()) as root:
        a, b = api.accounts(db_path, root)
        for account in (a, b):
            await sync(account, retry=FAST)
        api.batches[done["id"]] = done
        api.shown_by["b"] = {done["id"]: without(done, "usage", "errors")}
        shown = api.shown
        api.shown = lambda route: [  # type: ignore[method-assign]
            flight[-1] if route == "a" and item["id"] == done["id"] else item
            for item in shown(route)
        ]
        await sync(b, retry=FAST)
        await sync(a, retry=FAST)
    assert_database_matches(db_path, [*flight[:-1], done])


async def test_a_batch_another_account_ended_is_asked_of_its_owner_until_its_answer_is_stored(
    db_path: Path,
) -> None:
    """Asked once, whatever the answer: the owner's route answering from a replica behind
    (in flight still: stale, kept out) left the gateway's copy, without usage or error
    lines, for good. A route refusing it is asked on three syncs at most (below), one
    answering from behind while it does."""
    async with listed_by_each(db_path, "ab") as (api, (a, b)):
        failed_in_bs_gateway(api)
        api.shown_by["a"] = {FAILED["id"]: IN_FLIGHT[2]}  # a replica behind
        await sync(b, retry=FAST)
        for _ in range(4):
            await sync(a, retry=FAST)
        api.shown_by["a"].clear()
        assert (await sync(a, retry=FAST)).refreshed_by_id == 1
    assert_database_matches(db_path, WITH_FAILED)


def without(batch: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {key: value for key, value in batch.items() if key not in fields}


async def test_a_batch_another_account_ended_is_asked_of_its_owner_on_three_syncs_at_most(
    db_path: Path,
) -> None:
    """Its owner's route refusing it (403 by id, not in its list): asked on every sync, for
    ever (with a 503, each sync spent its retries on it)."""
    ended = ENDED[2]["id"]
    async with listed_by_each(db_path, "ab") as (api, (a, b)):
        api.refused["a"].add(ended)
        api.batches[ended] = ENDED[2]
        await sync(b, retry=FAST)
        asked = []
        for _ in range(4):
            before = len(api.asked)
            await sync(a, retry=FAST)
            asked.append(api.asked[before:].count(("a", ended)))
    assert asked == [1, 1, 1, 0]
    assert_database_matches(db_path, ENDED)


async def test_a_file_is_read_by_any_account_listing_its_batch_that_asks_for_it(
    db_path: Path,
) -> None:
    """Three accounts listing the same batches, one of them turning `outputs` on once the
    others had listed them after it: only the owner and the last other account listing a
    batch asked for its files, and neither asked for outputs, so none were ever read."""
    async with FakeApiServer(FakeApiOptions(batches=250, api_key="k")) as server:
        a, b, c = (
            Settings(db=db_path, account=name, base_url=server.base_url, api_key="k")
            for name in "abc"
        )  # b's incremental sync lists the first of three pages alone
        for account in (a, b, c):
            await sync(account, retry=FAST)
        await sync(dataclasses.replace(b, outputs=True), retry=FAST)
        assert_database_matches(db_path, server.served())
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        states = dict(
            conn.execute("SELECT state, count(*) FROM batch_files WHERE kind = 'output' GROUP BY 1")
        )
    assert set(states) == {"complete"}


async def test_schema_21_keeps_who_listed_each_batch_and_who_was_answered_404(
    db_path: Path,
) -> None:
    """The last other account listing a batch is one of its listers, and for a batch in
    flight, every other account with a walk may have been (with three accounts, one that
    listed it before the last was left out, and the batch froze once the last was no
    longer synced); a batch no other account listed was answered 404 by its owner; where
    another listed it, who was is not known, and each asks again."""
    await create_before(db_path, "batch_listings")
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.executemany(
            "INSERT INTO batches (id, status, account, listed_by, not_found_runs, raw, "
            "first_seen_at, last_seen_at) VALUES (?, ?, 'a', ?, ?, '{}', 1, 1)",
            [
                ("b1", "in_progress", "b", 3),
                ("b2", "in_progress", None, 3),
                ("b3", "in_progress", None, 0),
                ("b4", "completed", "c", 0),
            ],
        )
        conn.executemany(
            "INSERT INTO walk_state (account, finished, updated_at) VALUES (?, 1, 1)",
            [("a",), ("b",), ("c",)],
        )
    async with open_store(db_path) as store:
        assert [i for i, _ in await store.for_account("b").load_unsettled()] == ["b1"]
        # b4 too, ended: which copy of it is stored is not known (0023_ended_before.sql).
        unsettled = sorted(i for i, _ in await store.for_account("a").load_unsettled())
        assert unsettled == ["b1", "b3", "b4"]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        listings = conn.execute("SELECT * FROM batch_listings ORDER BY 1, 2").fetchall()
        found = conn.execute("SELECT id, not_found_by FROM batches ORDER BY id").fetchall()
    assert listings == [("b1", "b"), ("b1", "c"), ("b4", "c")]
    assert found == [("b1", None), ("b2", '{"a":3}'), ("b3", None), ("b4", None)]


@pytest.mark.parametrize("gateway", ["b", "a"], ids=["another's route", "the owner's route"])
async def test_a_batch_ended_before_schema_23_is_asked_of_every_account_listing_it(
    db_path: Path, gateway: str
) -> None:
    """A database of schema 22 or older, a batch ended in a gateway's copy (without usage or
    error lines) and no copy waited for (one ask of the owner, whatever the answer, before
    schema 22; no ask at all when the owner's route ended it): upgraded, incremental syncs
    left that copy for good, though the other route has the batch whole."""
    api = Routes(IN_FLIGHT, "ab")
    async with serving(api.routes()) as root:
        a, b = api.accounts(db_path, root)
        for account in (a, b):
            await sync(account, retry=FAST)
        api.batches[FAILED["id"]] = FAILED
        api.shown_by[gateway] = {FAILED["id"]: without(FAILED, "usage", "errors")}
        await sync(b if gateway == "b" else a, retry=FAST)
        # What those schemas left: no account named as waiting for another's copy.
        roll_back_columns(db_path, "ended_before")
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute("UPDATE batches SET ended_by = NULL, ended_asks = NULL")
        for _ in range(2):
            await sync_accounts([a, b], retry=FAST)
        api.asked.clear()
        await sync_accounts([a, b], retry=FAST)
    assert api.asked == []
    assert_database_matches(db_path, WITH_FAILED)


@pytest.mark.parametrize("field", ["account", "organization", "base_url"])
async def test_accounts_made_by_hand_are_checked_as_a_config_files_are(
    db_path: Path, field: str
) -> None:
    """sync_accounts synced settings made by hand (as the README's example makes them)
    without the checks between accounts: another account's key was sent to this account's
    API (an organization header, the URL's path) and stored (an account's name)."""
    other_key = "plainlowercasekeythatisquitelongindeed12345"
    asked: list[str] = []

    async def listed(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response(list_body([], False))

    async with serving({"/v1/batches": listed, "/v1/{tail:.*}/batches": listed}) as root:
        holding = {
            "account": {"account": other_key},
            "organization": {"organization": f"org-{other_key}"},
            "base_url": {"base_url": f"{root}/v1/{other_key}"},
        }[field]
        mine = {"account": "a", "base_url": f"{root}/v1", **holding}
        accounts = [
            Settings(db=db_path, api_key="sk-mine-0123456789abcdef", **mine),
            Settings(db=db_path, account="b", base_url=f"{root}/v1", api_key=other_key),
        ]
        with pytest.raises(
            ConfigError, match=f"{field}.*holds (an|another) account's API key"
        ) as caught:
            await sync_accounts(accounts, retry=FAST)
    assert other_key[:16] not in str(caught.value)
    assert asked == []
    assert not db_path.exists()


async def test_batches_another_account_stored_have_their_place_in_the_list_that_shows_them(
    db_path: Path,
) -> None:
    """An account listing `default`'s batches plans their refresh by where they stand in
    its list, as `default` does, not as if all stood at the top (a walk of the whole list)."""
    async with FakeApiServer(FakeApiOptions(batches=400, api_key="k")) as server:
        await sync(Settings(db=db_path, base_url=server.base_url, api_key="k"), retry=FAST)
        prod = Settings(db=db_path, account="prod", base_url=server.base_url, api_key="k")
        await sync(prod, retry=FAST)
    async with open_store(db_path) as store:
        default_plan = await store.for_account("default").load_unsettled()
        prod_plan = await store.for_account("prod").load_unsettled()
    assert len(default_plan) > 1
    assert sorted(prod_plan) == sorted(default_plan)


async def test_a_database_of_one_account_becomes_the_default_account_without_a_new_walk(
    db_path: Path,
) -> None:
    """A database synced before accounts existed: its batches and its finished walk are the
    `default` account's, whose next sync is incremental."""
    await create_before(db_path, "accounts")
    async with FakeApiServer(FakeApiOptions(batches=250, api_key="k")) as server:
        served = list(server.served())
        # As the version before wrote them: every batch, and a finished walk.
        rows, _ = build_page_rows(served, 1)
        columns = BATCH_COLUMNS[:-1]
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            conn.executemany(
                f"INSERT INTO batches ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                [row[: len(columns)] for row in rows],
            )
            conn.execute(
                "INSERT INTO walk_state (singleton, head_id, finished, updated_at) "
                "VALUES (1, ?, 1, 1)",
                (served[0]["id"],),
            )
        result = await sync(Settings(db=db_path, base_url=server.base_url, api_key="k"))
    assert (result.mode, result.pages, result.batches_new) == ("incremental", 1, 0)
    assert owners(db_path) == {"default": 250}


async def test_the_command_syncs_three_kinds_of_account_and_resumes_each_after_kill_9(
    db_path: Path, tmp_path: Path
) -> None:
    """OpenAI-style, Azure's dated API and a compatible list without has_more, each served
    by the fake in its flavor, into one database at once; killed mid-walk, each account
    resumes on its own; --account limits a run; a wrong key fails that account alone."""
    keys = {"KEY_OPENAI": "sk-openai-" + "1" * 30, "KEY_AZURE": "az-" + "2" * 30,
            "KEY_GROQ": "gsk_" + "3" * 30}  # fmt: skip
    async with (
        FakeApiServer(FakeApiOptions(batches=900, seed=1, api_key=keys["KEY_OPENAI"])) as openai,
        FakeApiServer(FakeApiOptions(batches=400, seed=2, api_key=keys["KEY_AZURE"],
                                     flavor="azure")) as azure,
        FakeApiServer(FakeApiOptions(batches=300, seed=3, api_key=keys["KEY_GROQ"],
                                     flavor="no-has-more")) as groq,
    ):  # fmt: skip
        config = tmp_path / "accounts.toml"
        config.write_text(
            "files = false\n"
            f'[accounts.openai]\nbase_url = "{openai.base_url}"\napi_key_env = "KEY_OPENAI"\n'
            f'[accounts.azure]\nprovider = "azure"\nazure_endpoint = "{azure.root_url}"\n'
            'api_version = "2024-10-21"\napi_key_env = "KEY_AZURE"\n'
            f'[accounts.groq]\nprovider = "compatible"\nbase_url = "{groq.base_url}"\n'
            'api_key_env = "KEY_GROQ"\n'
        )
        argv = ["sync", "--db", str(db_path), "--config", str(config), "-q"]
        openai.hold_list_requests(after=3)
        killed = await start(argv, keys)
        await until(
            lambda: pages_of(db_path, "openai") >= 3, unless=lambda: killed.returncode is not None
        )
        killed.kill()
        await killed.wait()
        openai.release_list_requests()
        code, output = await run(argv, keys)
        assert (code, output) == (0, "")
        assert_database_matches(db_path, [*openai.served(), *azure.served(), *groq.served()])
        assert owners(db_path) == {"openai": 900, "azure": 400, "groq": 300}
        modes = dict(
            ledger(
                db_path,
                "SELECT account, mode FROM sync_runs WHERE outcome = 'complete' ORDER BY id",
            )
        )
        assert modes["openai"] == "resume"
        code, _ = await run([*argv, "--account", "groq"], keys)
        assert code == 0
        code, output = await run(argv, {**keys, "KEY_AZURE": "az-wrong-key-" + "9" * 20})
    assert code == 1
    assert output.startswith("batch-crawler: [azure] API error 401")
    last = ledger(db_path, "SELECT account, outcome FROM sync_runs ORDER BY id DESC LIMIT 3")
    assert sorted(last) == [("azure", "failed"), ("groq", "complete"), ("openai", "complete")]
    # Killed, resumed, alone, and beside the failing one: four runs, each its own row.
    assert ledger(db_path, "SELECT count(*) FROM sync_runs WHERE account = 'groq'") == [(4,)]
    assert ledger(db_path, "SELECT count(*) FROM sync_runs WHERE account = 'openai'") == [(3,)]


ROOT = Path(__file__).resolve().parent.parent


async def start(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", *argv, cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def run(argv: list[str], env: dict[str, str]) -> tuple[int | None, str]:
    proc = await start(argv, env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=HANG_GUARD)
    return proc.returncode, (out + err).decode()


def ledger(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def pages_of(db: Path, account: str) -> int:
    """Pages the account's running sync has committed (0 before the database exists)."""
    if not db.exists():
        return 0
    try:
        rows = ledger(db, f"SELECT max(pages) FROM sync_runs WHERE account = '{account}'")
    except sqlite3.OperationalError:
        return 0
    return rows[0][0] or 0


def test_account_tables_are_checked_and_named(tmp_path: Path) -> None:
    """[accounts.NAME] tables: their keys checked, the file's settings their defaults, names to
    select."""
    config = tmp_path / "accounts.toml"
    config.write_text(
        '[accounts.a]\nbase_url = "https://a.example/v1"\n[accounts.b]\ndb = "x.db"\n'
    )
    with pytest.raises(ConfigError, match=r"\[accounts.b\]: unknown key 'db'"):
        load_accounts({}, {}, config)
    config.write_text('page_size = 50\n[accounts.a]\nbase_url = "https://a.example/v1"\n')
    [account] = load_accounts({}, {"OPENAI_BASE_URL": "https://elsewhere/v1"}, config)
    assert (account.account, account.base_url, account.page_size) == (
        "a",
        "https://a.example/v1",
        50,
    )
    with pytest.raises(ConfigError, match=r'no account here is named "b" \(accounts: a\)'):
        load_accounts({}, {}, config, only=["b"])
    with pytest.raises(ConfigError, match="--base-url names one account's API"):
        load_accounts({"base_url": "https://b.example/v1"}, {}, config)
    with pytest.raises(ConfigError, match="load them with load_accounts"):
        load_settings({}, {}, config)


def test_an_accounts_table_naming_no_account_is_refused(tmp_path: Path) -> None:
    """`[accounts]` with its account tables left out (commented out, say) is no config for
    one default account: that sync would store the batches under an account never meant."""
    config = tmp_path / "accounts.toml"
    config.write_text("page_size = 50\n[accounts]\n# [accounts.a]\n")
    with pytest.raises(ConfigError, match=r"\[accounts\] names no account: add \[accounts.NAME\]"):
        load_accounts({}, {}, config)


async def test_batches_gone_from_the_list_are_looked_for_in_one_read_from_its_top(
    db_path: Path,
) -> None:
    """Eighteen batches in flight gone from the list and 404 by id (after an upgrade, every
    ended batch another account lists is asked for again, the long gone too): the stored
    batches above each were gone too, so each was looked for from the top of the list,
    which was read once for each (at scale, syncs that never ended). Once a run now."""
    gone = set(range(3, 21))
    batches = [make_batch(n, status="in_progress" if n in gone else "completed")
               for n in range(1, 31)]  # fmt: skip
    api = Routes(batches, "a")
    tops: list[str | None] = []
    listed = api.listed

    async def counted(request: web.Request) -> web.Response:
        if refused := api.unknown_cursor_refused(request):
            return refused
        tops.append(request.query.get("after"))
        return await listed(request)

    api.listed = counted  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.hidden["a"].update(batches[n - 1]["id"] for n in gone)
        tops.clear()
        result = await sync(a, retry=FAST)
    assert result.gone == len(gone)
    pages = (len(batches) - len(gone)) // 2
    # The walk on to them, the list once from its top, a request for each below a listed one.
    assert len(tops) <= 2 * pages + len(gone)


async def forbidden(request: web.Request) -> web.Response:
    """403 for a batch by id, which its route lists all the same."""
    error = {"message": "Forbidden", "type": "invalid_request_error", "code": None}
    return web.json_response({"error": error}, status=403)


async def test_the_first_visit_cut_in_a_run_keeps_its_place(db_path: Path) -> None:
    """X, answered 404 on two runs, is looked for in the list first, last of twelve batches
    of one second; Y, refused by id, last of twelve of another: --max-pages 1 cut both
    visits, and Y's place took the one place kept, so X's visit began again every run and X
    (listed, ended, answering by id again) stayed in flight for good."""

    def group(first: int, second: int) -> list[dict[str, Any]]:
        return [make_batch(n, created_at=second) for n in range(first + 11, first, -1)]

    x = make_batch(50, status="in_progress", created_at=2_000)
    y = make_batch(10, status="in_progress", created_at=1_000)
    batches = [*(make_batch(n, created_at=n * 100) for n in (32, 31, 30)),
               *group(50, 2_000), x, make_batch(80, created_at=1_500),
               *group(10, 1_000), y, make_batch(1, created_at=100)]  # fmt: skip
    api = Routes(batches, "a")
    by_id = api.by_id
    x_answers = [False]

    async def x_404_y_refused(request: web.Request) -> web.Response:
        if request.match_info["id"] == y["id"]:
            return await forbidden(request)
        if request.match_info["id"] == x["id"] and not x_answers[0]:
            error = {"message": "No batch found", "type": "invalid_request_error"}
            return web.json_response({"error": {**error, "code": "batch_not_found"}}, status=404)
        return await by_id(request)

    api.by_id = x_404_y_refused  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        on_a_budget = dataclasses.replace(a, max_pages=1)
        for _ in range(2):
            await sync(on_a_budget, retry=FAST)
        x_answers[0] = True  # a replica caught up, and X ended
        api.batches[x["id"]] = {**x, "status": "completed"}
        for _ in range(8):
            await sync(on_a_budget, retry=FAST)
    assert statuses(db_path, [x["id"]]) == ["completed"]


async def test_a_batch_refused_by_id_is_looked_for_even_when_the_asks_spend_the_budget(
    db_path: Path,
) -> None:
    """Batch 10, refused by id, was to be looked for in the list after the asks by id of
    the nine others in flight, which spent every run's --max-seconds: it was never looked
    for, and stayed in flight after it ended. Refused and not looked for, it is looked for
    first on the next run, as a batch cut by the budget is."""
    batches = [make_batch(n, status="completed" if n > 10 else "in_progress")
               for n in range(12, 0, -1)]  # fmt: skip
    ten = batches[2]["id"]
    api = Routes(batches, "a")
    by_id = api.by_id

    async def ten_refused(request: web.Request) -> web.Response:
        return await (forbidden if request.match_info["id"] == ten else by_id)(request)

    api.by_id = ten_refused  # type: ignore[method-assign]
    seconds = a_second_a_request(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        a = dataclasses.replace(a, concurrency=1)
        await sync(a, retry=FAST)
        api.batches[ten] = {**batches[2], "status": "completed"}
        on_a_budget = dataclasses.replace(a, max_seconds=3.5)
        for _ in range(3):
            await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0]))
    assert statuses(db_path, [ten]) == ["completed"]


@pytest.mark.parametrize("blips", [0, 1], ids=["answering", "one 500 first"])
async def test_a_batch_in_flight_is_asked_for_while_every_walk_is_cut_by_the_budget(
    db_path: Path, blips: int
) -> None:
    """Thirty new batches before each run, pages of two, time for four requests a run:
    every walk was cut by --max-seconds, and no run refreshed batches 10, 8 and 6, ended,
    by id. Then one asked for each run, but one ask failed (a 500) marked batch 10 cut,
    and those cut were left out of it for as long as the list outgrew the runs."""
    flight = [make_batch(n)["id"] for n in (10, 8, 6)]
    batches = [make_batch(n, status="in_progress" if n in (10, 8, 6) else "completed")
               for n in range(20, 0, -1)]  # fmt: skip
    api = Routes(batches, "a")
    by_id, failing = api.by_id, [blips]

    async def a_blip_first(request: web.Request) -> web.Response:
        if request.match_info["id"] == flight[0] and failing[0]:
            failing[0] -= 1
            return await server_error(request)
        return await by_id(request)

    api.by_id = a_blip_first  # type: ignore[method-assign]
    seconds = a_second_a_request(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        for batch in batches:
            api.batches[batch["id"]] = {**batch, "status": "completed"}
        on_a_budget = dataclasses.replace(a, max_seconds=3.5)
        for run in range(6):
            for n in range(21 + 30 * run, 51 + 30 * run):
                api.batches[make_batch(n)["id"]] = make_batch(n)
            result = await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0]))
            assert not result.complete
    assert statuses(db_path, flight) == ["completed"] * 3


@pytest.mark.parametrize("budget", [3.5, None], ids=["--max-seconds", "no budget"])
async def test_the_starts_a_visit_found_gone_are_no_starts_on_the_next_runs(
    db_path: Path, budget: float | None
) -> None:
    """Batch 10, in flight, and the three stored above it deleted, the list refusing a
    cursor it no longer knows: each run's visit tried the three again. On a budget, each
    was cut before the read from the top, and 10 was never counted gone; refused by id,
    each unbudgeted run read the list from its top (29 requests at pages of two)."""
    batches = [make_batch(n, status="in_progress" if n == 10 else "completed")
               for n in range(60, 0, -1)]  # fmt: skip
    ten = make_batch(10)["id"]
    api = Routes(batches, "a")
    listed, by_id = api.listed, api.by_id

    async def refusing_unknown_cursors(request: web.Request) -> web.Response:
        return api.unknown_cursor_refused(request) or await listed(request)

    async def ten_refused(request: web.Request) -> web.Response:
        return await (forbidden if request.match_info["id"] == ten else by_id)(request)

    api.listed = refusing_unknown_cursors  # type: ignore[method-assign]
    if budget is None:
        api.by_id = ten_refused  # type: ignore[method-assign]
    seconds = a_second_a_request(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.hidden["a"].update(make_batch(n)["id"] for n in (10, 11, 12, 13))  # deleted
        runs = dataclasses.replace(a, max_seconds=budget)
        for _ in range(4):
            before = seconds[0]
            result = await sync(runs, retry=FAST, clock=lambda: float(seconds[0]))
    assert result.complete
    assert seconds[0] - before <= 3  # the top, 10 by id, a page below the three gone


async def test_a_batch_cut_then_deleted_is_counted_gone_on_a_time_budget(
    db_path: Path,
) -> None:
    """Batch 10's ask by id outlasted the budget (cut), then it was deleted: looked for in
    the list first on every run, not found, and asked by id after the others, whose asks
    spent every run's --max-seconds: never asked again, never counted gone, a visit a run.
    Cut and not listed, it is asked by id right after its visit."""
    batches = [make_batch(n, status="completed" if n > 10 else "in_progress")
               for n in range(12, 0, -1)]  # fmt: skip
    ten = batches[2]["id"]
    api = Routes(batches, "a")
    seconds = a_second_a_request(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        a = dataclasses.replace(a, concurrency=1)
        await sync(a, retry=FAST)
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            # As a run whose budget ran out while it was asked for leaves it.
            conn.execute(
                "UPDATE batches SET cut_by = json_object('a', last_seen_at + 1) WHERE id = ?",
                (ten,),
            )
        api.hidden["a"].add(ten)  # deleted: 404 by id, not listed
        on_a_budget = dataclasses.replace(a, max_seconds=3.5)
        for _ in range(4):
            await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0]))
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        (not_found_by,) = conn.execute(
            "SELECT not_found_by FROM batches WHERE id = ?", (ten,)
        ).fetchone()
    assert not_found_by == '{"a":3}'


async def test_a_visit_looked_for_first_may_take_the_whole_budget_when_no_other_waits(
    db_path: Path,
) -> None:
    """Batch 3, answered 404 on two runs, and batch 4 above it deleted, the list failing
    for a cursor it no longer knows: the visit's retries took longer than half of
    --max-seconds, the share visits first have, and were cut at the same place on every
    run, no other batch in flight to leave time to: 3 was never counted gone."""
    batches = [make_batch(n, status="in_progress" if n == 3 else "completed")
               for n in range(6, 0, -1)]  # fmt: skip
    three = batches[3]["id"]
    api = Routes(batches, "a")
    listed = api.listed

    async def failing_for_unknown_cursors(request: web.Request) -> web.Response:
        if api.unknown_cursor_refused(request) is not None:
            return await server_error(request)
        return await listed(request)

    api.listed = failing_for_unknown_cursors  # type: ignore[method-assign]
    seconds = a_second_a_request(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.hidden["a"].update({three, batches[2]["id"]})
        for _ in range(2):
            await sync(a, retry=FAST)
        on_a_budget = dataclasses.replace(a, max_seconds=7)
        for _ in range(3):
            result = await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0]))
    assert result.complete
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        (not_found_by,) = conn.execute(
            "SELECT not_found_by FROM batches WHERE id = ?", (three,)
        ).fetchone()
    assert not_found_by == '{"a":3}'


def end_behind_gone(api: Routes, targets: tuple[int, ...], gone: tuple[int, ...]) -> None:
    """Batches `targets` end, and batches `gone` leave route a's list."""
    api.hidden["a"].update(make_batch(n)["id"] for n in gone)
    for n in targets:
        api.batches[make_batch(n)["id"]] = make_batch(n, status="completed")


def leaving_once_served(api: Routes, leaving: str) -> Callable[..., Awaitable[web.Response]]:
    """Route a's list, refusing unknown cursors, with `leaving` gone from it once a page
    ending with it is served."""
    listed = api.listed

    async def handler(request: web.Request) -> web.Response:
        if refused := api.unknown_cursor_refused(request):
            return refused
        answer = await listed(request)
        page = json.loads(answer.body)["data"]  # type: ignore[arg-type]
        if page and page[-1]["id"] == leaving:
            api.hidden["a"].add(leaving)
        return answer

    return handler


@pytest.mark.parametrize(
    ("targets", "leaving", "gone"),
    [((20, 8), 20, (21, 22, 23, 9, 10, 11)), ((8,), 23, (9, 10, 11))],
    ids=["ending the last read from the top", "ending a visit's page"],
)
async def test_a_batch_leaving_the_list_as_a_visit_reads_it_fails_no_visit(
    db_path: Path, targets: tuple[int, ...], leaving: int, gone: tuple[int, ...]
) -> None:
    """Batches in flight, refused by id, their stored neighbours above gone from the list,
    so visits read from the top; a batch ending a page they read leaves the list once that
    page is served. Ending the first visit's read from the top: the second visit, going on
    after it, was refused and took its batch as not listed. Ending a page one visit read:
    the next page was refused, and the sync failed on it."""
    batches = [make_batch(n, status="in_progress" if n in targets else "completed")
               for n in range(1, 31)]  # fmt: skip
    api = Routes(batches, "a")
    leaving_id = batches[leaving - 1]["id"]
    api.listed = leaving_once_served(api, leaving_id)  # type: ignore[method-assign]
    api.by_id = forbidden  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.hidden["a"].discard(leaving_id)  # served by the first walk, maybe
        end_behind_gone(api, targets, gone=gone)
        result = await sync(a, retry=FAST)
    assert leaving_id in api.hidden["a"]
    assert result.complete
    assert statuses(db_path, [batches[7]["id"]]) == ["completed"]


def statuses(db: Path, ids: list[str]) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        query = "SELECT id, status FROM batches WHERE id IN (SELECT value FROM json_each(?))"
        found = dict(conn.execute(query, (json.dumps(ids),)).fetchall())
    return [found[batch_id] for batch_id in ids]


def a_second_a_request(api: Routes) -> list[int]:
    """Have each request to `api` take a second of a test clock: the seconds so far."""
    listed, by_id, seconds = api.listed, api.by_id, [0]

    async def counted(request: web.Request) -> web.Response:
        seconds[0] += 1
        return await (listed if "id" not in request.match_info else by_id)(request)

    api.listed = api.by_id = counted  # type: ignore[method-assign]
    return seconds


@pytest.mark.parametrize("budget", ["max_pages", "max_seconds"])
async def test_a_deep_batch_refused_by_id_is_reached_by_runs_on_a_budget(
    db_path: Path, budget: str
) -> None:
    """Batches 8 and 5 in flight, then ended, refused by id but listed; the three stored
    above batch 8 gone from the list, so its visit reads from the top. With --max-pages 3
    the budget ran out above its page on every run, it was first again (least recently
    seen), and both stayed in flight for good; read whole on a run's first visit instead,
    a run read the list far past its page budget (998 pages of a list of 2,000 batches).
    Now a run reads a page or so past its budget, and the next goes on where it stopped.

    On a time budget running out once the read from the top began, it began again on each
    run: a batch deeper than a run reads was never reached."""
    targets = (5, 8)
    batches = [make_batch(n, status="in_progress" if n in targets else "completed")
               for n in range(1, 31)]  # fmt: skip
    api = Routes(batches, "a")
    listed = api.listed
    asked: list[str | None] = []
    spent: list[bool] = []

    async def refusing_unknown_cursors(request: web.Request) -> web.Response:
        refused = api.unknown_cursor_refused(request)
        if refused is None and "after" not in request.query and None in asked:
            spent.append(True)  # a visit's read from the top: the time budget runs out
        asked.append(None if refused is None else "refused")
        return refused or await listed(request)

    api.listed = refusing_unknown_cursors  # type: ignore[method-assign]
    api.by_id = forbidden  # type: ignore[method-assign]
    ids = [batches[n - 1]["id"] for n in targets]
    pages_of_each_run = []
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        end_behind_gone(api, targets, gone=(9, 10, 11))
        on_a_budget = (
            dataclasses.replace(a, max_pages=3)
            if budget == "max_pages"
            else dataclasses.replace(a, max_seconds=60)
        )
        for _ in range(15):
            asked.clear()
            spent.clear()
            clock = lambda: 1e6 if spent else 0.0  # noqa: E731
            await sync(on_a_budget, retry=FAST, clock=clock)
            pages_of_each_run.append(asked.count(None))
            if statuses(db_path, ids) == ["completed", "completed"]:
                break
    assert statuses(db_path, ids) == ["completed", "completed"]
    if budget == "max_pages":
        # The budget's pages and the first visit's one more at most (refusals apart).
        assert max(pages_of_each_run) <= 4


async def test_a_batch_missed_by_a_visit_on_a_budget_lets_the_next_have_its_turn(
    db_path: Path,
) -> None:
    """Two batches in flight, refused by id; the least recently seen gone from the list
    too. On a budget of one page a run (one visit), it was visited first on every run, and
    the other, which had ended, was never refreshed."""
    gone, ending = 12, 5
    batches = [make_batch(n, status="in_progress" if n in (gone, ending) else "completed")
               for n in range(1, 21)]  # fmt: skip
    api = Routes(batches, "a")
    api.by_id = forbidden  # type: ignore[method-assign]
    ids = [batches[n - 1]["id"] for n in (gone, ending)]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute("UPDATE batches SET last_seen_at = last_seen_at - 100")
            conn.execute("UPDATE batches SET last_seen_at = 0 WHERE id = ?", (ids[0],))
        api.hidden["a"].add(ids[0])
        api.batches[ids[1]] = make_batch(ending, status="completed")
        for _ in range(2):
            await sync(dataclasses.replace(a, max_pages=1), retry=FAST)
    assert statuses(db_path, ids) == ["in_progress", "completed"]


def fourteen_late() -> tuple[Routes, list[dict[str, Any]], set[str]]:
    """Thirty batches, 5 in flight and refused by id; 6-19, between it and its stored
    neighbour above, hidden (to turn up later: a gateway catching up): the API, the
    batches, and those hidden."""
    batches = [make_batch(n, status="in_progress" if n == 5 else "completed")
               for n in range(1, 31)]  # fmt: skip
    api = Routes(batches, "a")
    late = {batches[n - 1]["id"] for n in range(6, 20)}
    api.hidden["a"].update(late)
    api.by_id = forbidden  # type: ignore[method-assign]
    return api, batches, late


async def test_a_visit_from_a_stored_neighbour_keeps_to_the_page_budget(db_path: Path) -> None:
    """A batch in flight, refused by id, then ended; fourteen batches between it and its
    stored neighbour above turn up in the list (a gateway catching up). Its visit from
    that neighbour, a run's first, was read whole past --max-pages 1: seven pages a run.
    Now a page or so a run, each run going on from there, until it is reached."""
    api, batches, late = fourteen_late()
    listed, asked = api.listed, []

    async def counted(request: web.Request) -> web.Response:
        asked.append(request.query.get("after"))
        return await listed(request)

    api.listed = counted  # type: ignore[method-assign]
    target = batches[4]["id"]
    pages_of_each_run = []
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.hidden["a"] -= late
        api.batches[target] = make_batch(5, status="completed")
        for _ in range(12):
            asked.clear()
            await sync(dataclasses.replace(a, max_pages=1), retry=FAST)
            pages_of_each_run.append(len(asked))
            if statuses(db_path, [target]) == ["completed"]:
                break
    assert statuses(db_path, [target]) == ["completed"]
    assert max(pages_of_each_run) <= 3  # the walk's page, and a visit's page or two


@pytest.mark.parametrize("tied", [1, 3])
async def test_a_walk_on_a_page_budget_gets_past_the_head_s_second(
    db_path: Path, tied: int
) -> None:
    """A list that no longer changes, pages of one, --max-pages 1: each run from the top read
    the page(s) of the head's creation second alone, waiting for the pages after them; the
    next run went on, ended at the stop, and began again from the top: the walk never
    ended, and no run refreshed batches 4 and 9, ended."""
    second = make_batch(10)["created_at"]
    batches = [make_batch(n, status="in_progress" if n in (4, 9) else "completed",
                          created_at=min(make_batch(n)["created_at"], second - tied + 1))
               for n in range(1, 11)]  # fmt: skip
    api = Routes(batches, "a")
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        a = dataclasses.replace(a, page_size=1)
        await sync(a, retry=FAST)
        for ended in (batches[3], batches[8]):
            api.batches[ended["id"]] = {**ended, "status": "completed"}
        results = [await sync(dataclasses.replace(a, max_pages=1), retry=FAST) for _ in range(3)]
    assert statuses(db_path, [batches[3]["id"], batches[8]["id"]]) == ["completed"] * 2
    assert results[-1].complete


def ten_in_flight_twice(db_path: Path, tied: int) -> tuple[Routes, list[dict[str, Any]]]:
    """Batches 1-10, the newest `tied` of one creation second, 4 and 9 in flight."""
    second = make_batch(10)["created_at"] - tied + 1
    batches = [make_batch(n, status="in_progress" if n in (4, 9) else "completed",
                          created_at=min(make_batch(n)["created_at"], second))
               for n in range(1, 11)]  # fmt: skip
    return Routes(batches, "a"), batches


def list_requests_counted(api: Routes) -> list[str | None]:
    """The `after` of each list request `api` serves from now on (None: the top)."""
    pages: list[str | None] = []
    listed = api.listed

    async def counted(request: web.Request) -> web.Response:
        pages.append(request.query.get("after"))
        return await listed(request)

    api.listed = counted  # type: ignore[method-assign]
    return pages


async def runs_of_three_pages(api: Routes, batches: list[dict[str, Any]], db_path: Path) -> int:
    """Runs of a second a list page and --max-seconds 3.5 (pages of one) until one is
    complete, after a first sync and batches 4 and 9 ending; how many (12 at most)."""
    pages = list_requests_counted(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        a = dataclasses.replace(a, page_size=1)
        await sync(a, retry=FAST)
        for ended in (batches[3], batches[8]):
            api.batches[ended["id"]] = {**ended, "status": "completed"}
        on_a_budget = dataclasses.replace(a, max_seconds=3.5)
        for runs in range(1, 13):
            pages.clear()
            result = await sync(on_a_budget, retry=FAST, clock=lambda: float(len(pages)))
            if result.complete:
                return runs
    return 12


async def test_a_walk_cut_past_its_stop_on_a_time_budget_ends(db_path: Path) -> None:
    """Ten batches of one second, pages of one, time for four pages a run: a walk cut in the
    pages past the head's second was resumed, then followed by a walk from the top again,
    which needed the same seven pages: no walk ever ended, and batches 4 and 9 stayed in
    flight. Resumed past its stop, a walk ends as the walk from the top it was."""
    api, batches = ten_in_flight_twice(db_path, tied=10)
    runs = await runs_of_three_pages(api, batches, db_path)
    assert statuses(db_path, [batches[3]["id"], batches[8]["id"]]) == ["completed"] * 2
    assert runs <= 3


async def test_a_walk_resumed_then_cut_past_its_stop_ends_at_its_stop(db_path: Path) -> None:
    """Thirty batches of the head's creation second, ten new above, pages of two, time for
    three pages a run: the walk was cut above its stop, resumed and cut again past it;
    resumed from there, not knowing it had met its stop, it read every page of that
    second (on a long list of one second, it went on to the end). 22 pages, 8 runs."""
    second = make_batch(60)["created_at"] - 30
    batches = [make_batch(n, created_at=min(make_batch(n)["created_at"], second))
               for n in range(1, 61)]  # fmt: skip
    api = Routes(batches, "a")
    pages = list_requests_counted(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        a = dataclasses.replace(a, page_size=2)
        await sync(a, retry=FAST)
        for n in range(61, 71):
            api.batches[make_batch(n)["id"]] = make_batch(n)
        on_a_budget = dataclasses.replace(a, max_seconds=2.5)
        pages_of_each_run = []
        for _ in range(8):
            pages.clear()
            result = await sync(on_a_budget, retry=FAST, clock=lambda: float(len(pages)))
            pages_of_each_run.append(len(pages))
            if result.complete:
                break
    assert pages_of_each_run == [3, 3, 3, 2]
    assert stored_ids(db_path) >= {b["id"] for b in api.batches.values()}


async def test_a_run_whose_walk_spends_the_time_budget_refreshes_a_batch(db_path: Path) -> None:
    """Three batches of the head's second, pages of one, time for four pages a run: each
    walk read the four and spent the budget, and no run asked for batch 4 by id. A run's
    first ask by id is made whatever the budget, as its first list page is."""
    api, batches = ten_in_flight_twice(db_path, tied=3)
    runs = await runs_of_three_pages(api, batches, db_path)
    assert statuses(db_path, [batches[3]["id"], batches[8]["id"]]) == ["completed"] * 2
    assert runs == 1


async def test_batches_in_flight_are_refreshed_while_a_page_budget_keeps_the_walk_behind(
    db_path: Path,
) -> None:
    """Twenty batches came at once, then five before each run, pages of two, --max-pages 4:
    every run's walk was cut behind the head (each of its segments reading the page of its
    stop again), never finished, and no run refreshed batch 12, ended."""
    batches = [make_batch(n, status="in_progress" if n == 12 else "completed")
               for n in range(1, 41)]  # fmt: skip
    api = Routes(batches, "a")
    twelve, newest = batches[11]["id"], 40
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.batches[twelve] = make_batch(12)
        results = []
        for coming in (25, 5, 5):
            for n in range(newest + 1, newest + coming + 1):
                api.batches[make_batch(n)["id"]] = make_batch(n)
            newest += coming
            results.append(await sync(dataclasses.replace(a, max_pages=4), retry=FAST))
    assert not any(result.complete for result in results)
    assert statuses(db_path, [twelve]) == ["completed"]


def stored_ids(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {batch_id for (batch_id,) in conn.execute("SELECT id FROM batches")}


async def test_batches_between_a_head_met_behind_and_those_stored_above_it_are_walked(
    db_path: Path,
) -> None:
    """Batches 11-16 came; a run on a budget stored 16 and 15; the next, served by a list
    behind (a replica showing 10 and older, refusing the cursor 15), walked from the top
    and ended with its head at 10. Caught up, every later walk stopped at 16, the newest
    stored: 11-14 were never stored."""
    api = Routes([make_batch(n) for n in range(1, 11)], "a")
    listed = api.listed

    async def refusing_unknown_cursors(request: web.Request) -> web.Response:
        return api.unknown_cursor_refused(request) or await listed(request)

    api.listed = refusing_unknown_cursors  # type: ignore[method-assign]
    later = [make_batch(n) for n in range(11, 17)]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.batches.update((batch["id"], batch) for batch in later)
        await sync(dataclasses.replace(a, max_pages=1), retry=FAST)
        api.hidden["a"].update(batch["id"] for batch in later)
        await sync(a, retry=FAST)
        api.hidden["a"].clear()
        await sync(a, retry=FAST)
    assert stored_ids(db_path) == set(api.batches)


async def test_batches_another_account_stored_are_new_to_a_walk_of_this_accounts_list(
    db_path: Path,
) -> None:
    """Batch 11, dated an hour ahead, stays on top of the list; 12-16 came below it, and
    account a (whose route hides 14) stored the others. Account c's walk met its head 11
    on its first page and stopped: the page ended with 16, stored before the run (by a,
    though c had never listed it). 14 was never stored."""
    ahead = make_batch(11, created_at=int(time.time()) + 3600)
    api = Routes([*(make_batch(n) for n in range(1, 11)), ahead], "ac")
    async with serving(api.routes()) as root:
        a, c = api.accounts(db_path, root)
        for account in (a, c):
            await sync(account, retry=FAST)
        api.batches.update((b["id"], b) for b in (make_batch(n) for n in range(12, 17)))
        api.hidden["a"].add(make_batch(14)["id"])
        await sync(a, retry=FAST)
        await sync(c, retry=FAST)
    assert stored_ids(db_path) == set(api.batches)


async def test_a_walk_resumed_after_its_cursor_left_walks_to_the_old_head(
    db_path: Path,
) -> None:
    """Batches 11-20 came; a run on a budget stored 20-17 and stopped after 17; 17 left the
    list. The resume walked from the top and met a stop on its first page (20, among the
    newest stored), ending there: 11-16 were never stored."""
    api = Routes([make_batch(n) for n in range(1, 11)], "a")
    listed = api.listed

    async def refusing_unknown_cursors(request: web.Request) -> web.Response:
        return api.unknown_cursor_refused(request) or await listed(request)

    api.listed = refusing_unknown_cursors  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.batches.update((b["id"], b) for b in (make_batch(n) for n in range(11, 21)))
        await sync(dataclasses.replace(a, max_pages=2), retry=FAST)
        gone = make_batch(17)["id"]
        api.hidden["a"].add(gone)
        await sync(a, retry=FAST)
    assert stored_ids(db_path) == set(api.batches)


async def test_a_visits_first_page_keeps_to_the_time_budget(db_path: Path) -> None:
    """A batch in flight, refused by id, the time budget running out as its visit begins:
    the visit's first page was asked for all the same (read whatever the budget, as a
    run's first page is), and a silent server held the run minutes past the budget."""
    batches = [make_batch(n, status="in_progress" if n == 3 else "completed")
               for n in range(1, 11)]  # fmt: skip
    api = Routes(batches, "a")
    listed, asked, spent = api.listed, [], []

    async def counted(request: web.Request) -> web.Response:
        asked.append(request.query.get("after"))
        return await listed(request)

    api.listed = counted  # type: ignore[method-assign]
    api.by_id = forbidden  # type: ignore[method-assign]
    neighbours = Store.created_just_after

    async def visit_begins(store: Store, second: int, count: int) -> list[str]:
        spent.append(True)
        return await neighbours(store, second, count)

    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        asked.clear()
        with mock.patch.object(Store, "created_just_after", visit_begins):
            result = await sync(
                dataclasses.replace(a, max_seconds=60),
                retry=FAST,
                clock=lambda: 1e6 if spent else 0.0,
            )
    assert spent
    assert asked == [None]  # the walk's page alone
    assert not result.complete


async def test_a_batch_one_account_missed_keeps_its_turn_in_anothers_refresh(
    db_path: Path,
) -> None:
    """Batch 5 ended; a's route no longer lists it, b's does; both refuse batches by id,
    5 and two others in flight. On a budget of one visit a run, a's miss put batch 5 last
    in b's order too (one `missed_at` for all accounts): b visited the others, and on every
    round a missed it again, so it stayed in flight."""
    batches = [make_batch(n, status="in_progress" if n in (5, 8, 12) else "completed")
               for n in range(1, 21)]  # fmt: skip
    api = Routes(batches, "ab")
    api.by_id = forbidden  # type: ignore[method-assign]
    target = batches[4]["id"]
    async with serving(api.routes()) as root:
        a, b = api.accounts(db_path, root)
        for account in (a, b):
            await sync(account, retry=FAST)
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            for n, seen in ((5, 100), (8, 200), (12, 300)):
                conn.execute(
                    "UPDATE batches SET last_seen_at = ? WHERE id = ?", (seen, batches[n - 1]["id"])
                )
        api.hidden["a"].add(target)
        api.batches[target] = make_batch(5, status="completed")
        for account in (a, b):
            await sync(dataclasses.replace(account, max_pages=1), retry=FAST)
    assert statuses(db_path, [target]) == ["completed"]


async def server_error(request: web.Request) -> web.Response:
    """500 for a batch by id, past every retry."""
    error = {"message": "The server had an error", "type": "server_error", "code": None}
    return web.json_response({"error": error}, status=500)


async def test_a_batch_whose_asks_by_id_outlast_the_time_budget_is_read_from_the_list(
    db_path: Path,
) -> None:
    """A batch ended, listed, answering 500 by id past every retry, which outlast the time
    budget: the refresh by id was cut on it on every run, first in line, and it was never
    looked for in the list (in flight for good, every run partial). Cut once, it is looked
    for in the list first on the next run."""
    batches = [make_batch(n, status="in_progress" if n == 3 else "completed")
               for n in range(1, 11)]  # fmt: skip
    api = Routes(batches, "a")
    spent: list[bool] = []

    async def failing_then_spent(request: web.Request) -> web.Response:
        spent.append(True)
        return await server_error(request)

    api.by_id = failing_then_spent  # type: ignore[method-assign]
    target = batches[2]["id"]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.batches[target] = make_batch(3, status="completed")
        on_a_budget = dataclasses.replace(a, max_seconds=60)
        for _ in range(2):
            spent.clear()
            result = await sync(on_a_budget, retry=FAST, clock=lambda: 1e6 if spent else 0.0)
    assert statuses(db_path, [target]) == ["completed"]
    assert result.complete


@pytest.mark.parametrize("three_on_run_0", ["left unasked", "failing past the budget"])
async def test_a_batch_cut_by_the_time_budget_is_refreshed_while_others_stay_in_flight(
    db_path: Path, three_on_run_0: str
) -> None:
    """Batches 14-18 stay in flight, and their asks by id spend each run's --max-seconds (a
    request a second); batch 3 was cut on a run (asked as time ran out, or left unasked as
    it did, and counted cut all the same), then ends. Looked for in the list after the
    others were asked by id, with no time left, it was never refreshed."""
    flight = (3, 14, 15, 16, 17, 18)
    batches = [make_batch(n, status="in_progress" if n in flight else "completed")
               for n in range(1, 21)]  # fmt: skip
    api = Routes(batches, "a")
    listed, by_id, three = api.listed, api.by_id, batches[2]["id"]
    seconds = [0]
    failing = [three_on_run_0 == "failing past the budget"]

    async def a_second_each(request: web.Request) -> web.Response:
        seconds[0] += 1
        return await listed(request)

    async def three_failing_slowly(request: web.Request) -> web.Response:
        if request.match_info["id"] == three and failing[0]:
            seconds[0] += 5
            return await server_error(request)
        seconds[0] += 1
        return await by_id(request)

    api.listed = a_second_each  # type: ignore[method-assign]
    api.by_id = three_failing_slowly  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            # Seen a while ago, 3 first in line while it fails (runs are seconds apart).
            conn.execute("UPDATE batches SET last_seen_at = 1")
            if failing[0]:
                conn.execute("UPDATE batches SET last_seen_at = 0 WHERE id = ?", (three,))
        on_a_budget = dataclasses.replace(a, max_seconds=6, concurrency=1)
        await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0]))
        failing[0] = False
        api.batches[three] = make_batch(3, status="completed")
        for _ in range(3):
            await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0]))
    assert statuses(db_path, [three]) == ["completed"]


@pytest.mark.parametrize("budget", [{"max_pages": 1}, {"max_seconds": 4}], ids=["pages", "seconds"])
async def test_batches_deleted_are_counted_gone_on_a_budget_and_keep_none_stale(
    db_path: Path, budget: dict[str, int]
) -> None:
    """Batches 3, 9, 15 and 21 in flight are deleted (not listed, 404 by id); 6 and 12 stay
    in flight, then end. With a 404 counted only by a run whose whole refresh fitted its
    budget, none ever was: the deleted ones, first in line on every run, kept the others
    from their turn (on a time budget), and every run was partial."""
    flight, deleted = (3, 6, 9, 12, 15, 21), (3, 9, 15, 21)
    batches = [make_batch(n, status="in_progress" if n in flight else "completed")
               for n in range(1, 31)]  # fmt: skip
    api = Routes(batches, "a")
    seconds = a_second_a_request(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.hidden["a"].update(make_batch(n)["id"] for n in deleted)
        on_a_budget = dataclasses.replace(a, **budget)
        results = []
        for run in range(12):
            if run == 3:
                for n in (6, 12):
                    api.batches[make_batch(n)["id"]] = make_batch(n)
            results.append(await sync(on_a_budget, retry=FAST, clock=lambda: seconds[0]))
    assert statuses(db_path, [make_batch(n)["id"] for n in (6, 12)]) == ["completed"] * 2
    assert results[-1].complete


async def test_a_batch_with_no_creation_time_answering_404_twice_is_asked_by_id_again(
    db_path: Path,
) -> None:
    """Its place in the list unknown, a batch answered 404 twice was looked for there (a
    visit that cannot look) and counted gone on the third run, asked nothing."""
    batches = [make_batch(n, status="in_progress" if n == 3 else "completed")
               for n in range(1, 11)]  # fmt: skip
    three = batches[2]["id"]
    api = Routes(batches, "a")
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute("UPDATE batches SET created_at = NULL WHERE id = ?", (three,))
        api.hidden["a"].add(three)
        for _ in range(2):
            await sync(a, retry=FAST)
        api.hidden["a"].clear()
        api.batches[three] = make_batch(3)
        await sync(a, retry=FAST)
    assert statuses(db_path, [three]) == ["completed"]


async def test_batches_refused_by_id_are_read_from_the_list_while_a_page_budget_cuts_walks(
    db_path: Path,
) -> None:
    """Batches 3 and 7 in flight, refused by id (403), end; six batches come before each
    run, pages of two, --max-pages 2: every walk was cut, and a walk cut left them to asks
    by id alone, refused on every run (no warning, in flight for good)."""
    batches = [make_batch(n, status="in_progress" if n in (3, 7) else "completed")
               for n in range(1, 21)]  # fmt: skip
    api = Routes(batches, "a")
    refused, by_id, newest = [batches[2]["id"], batches[6]["id"]], api.by_id, 20

    async def refusing_them(request: web.Request) -> web.Response:
        listed_so_far = len(api.batches) > 20  # the first sync reads them
        if listed_so_far and request.match_info["id"] in refused:
            return await forbidden(request)
        return await by_id(request)

    api.by_id = refusing_them  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        for n in (3, 7):
            api.batches[make_batch(n)["id"]] = make_batch(n)
        for _ in range(4):
            for n in range(newest + 1, newest + 7):
                api.batches[make_batch(n)["id"]] = make_batch(n)
            newest += 6
            await sync(dataclasses.replace(a, max_pages=2), retry=FAST)
    assert statuses(db_path, refused) == ["completed"] * 2


async def test_visits_for_batches_answered_404_twice_leave_time_to_ask_the_others(
    db_path: Path,
) -> None:
    """Batches 15-45 deleted, eleven of them in flight: answered 404 twice, each is looked
    for in the list first, from the top (its neighbours deleted too), on --max-seconds 12
    (a request a second). Those visits spent every run's budget: batch 5, ended, was asked
    by id by no run."""
    flight = {5, *range(15, 46, 3)}
    batches = [make_batch(n, status="in_progress" if n in flight else "completed")
               for n in range(1, 61)]  # fmt: skip
    api = Routes(batches, "a")
    seconds = a_second_a_request(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.hidden["a"].update(make_batch(n)["id"] for n in range(15, 46))
        on_a_budget = dataclasses.replace(a, max_seconds=12)
        for run in range(6):
            if run == 3:
                api.batches[make_batch(5)["id"]] = make_batch(5)
            await sync(on_a_budget, retry=FAST, clock=lambda: seconds[0])
    assert statuses(db_path, [make_batch(5)["id"]]) == ["completed"]


async def test_a_listed_batch_answering_404_is_not_counted_gone_by_runs_cut_short(
    db_path: Path,
) -> None:
    """Batch 12, listed, answers 404 by id (a replica behind); each run's --max-seconds ran
    out before the visit that would find it in the list. Each run counted the 404, and after
    three it was gone for good: in flight, while the list showed it finalizing."""
    batches = [make_batch(n, status="in_progress" if n == 12 else "completed")
               for n in range(1, 21)]  # fmt: skip
    api = Routes(batches, "a")
    listed, by_id, twelve = api.listed, api.by_id, batches[11]["id"]
    seconds = [0]

    async def a_second_each(request: web.Request) -> web.Response:
        seconds[0] += 1
        return await listed(request)

    async def twelve_not_found(request: web.Request) -> web.Response:
        seconds[0] += 1
        if request.match_info["id"] != twelve:
            return await by_id(request)
        error = {"message": "No batch found", "type": "invalid_request_error"}
        return web.json_response({"error": {**error, "code": "batch_not_found"}}, status=404)

    api.listed = a_second_each  # type: ignore[method-assign]
    api.by_id = twelve_not_found  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.batches[twelve] = make_batch(12, status="finalizing")
        for _ in range(4):
            seconds[0] = 0
            await sync(dataclasses.replace(a, max_seconds=2), retry=FAST, clock=lambda: seconds[0])
        await sync(a, retry=FAST)
    assert statuses(db_path, [twelve]) == ["finalizing"]


async def test_a_batch_cut_by_the_time_budget_again_and_not_listed_is_named(
    db_path: Path,
) -> None:
    """Batch 3 in flight, gone from the list, answering 500 by id past retries that outlast
    --max-seconds: every run ended partial there, and no warning said why."""
    batches = [make_batch(n, status="in_progress" if n == 3 else "completed")
               for n in range(1, 11)]  # fmt: skip
    api = Routes(batches, "a")
    three, shown, by_id = batches[2]["id"], api.shown, api.by_id
    spent: list[bool] = []
    failing = [False]

    def shown_but_three(route: str) -> list[dict[str, Any]]:
        return [b for b in shown(route) if not (failing[0] and b["id"] == three)]

    async def three_failing(request: web.Request) -> web.Response:
        if failing[0] and request.match_info["id"] == three:
            spent.append(True)
            return await server_error(request)
        return await by_id(request)

    api.shown = shown_but_three  # type: ignore[method-assign]
    api.by_id = three_failing  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        failing[0] = True
        on_a_budget = dataclasses.replace(a, max_seconds=60)
        results = []
        for _ in range(2):
            spent.clear()
            clock = lambda: 1e6 if spent else 0.0  # noqa: E731
            results.append(await sync(on_a_budget, retry=FAST, clock=clock))
    assert not results[-1].complete
    assert any(
        f"batch {three} is not in the list, and its ask by id outlasted the time budget again"
        in warning
        for warning in results[-1].warnings
    )


@pytest.mark.parametrize("max_pages", [1, 2])
async def test_batches_missed_on_every_run_keep_no_other_from_its_refresh(
    db_path: Path, max_pages: int
) -> None:
    """Batches 11 and 15 in flight, refused by id and gone from the list for good; 3 and 7
    end, listed and answered by id. The missed two were looked for in the list first, their
    visits cut by the budget on every run: no batch was asked for by id again, and 3 and 7
    stayed in flight."""
    flight = (3, 7, 11, 15)
    batches = [make_batch(n, status="in_progress" if n in flight else "completed")
               for n in range(1, 21)]  # fmt: skip
    api = Routes(batches, "a")
    ids = {n: batches[n - 1]["id"] for n in flight}
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.refused["a"].update([ids[11], ids[15]])
        on_a_budget = dataclasses.replace(a, max_pages=max_pages)
        for _ in range(3):
            await sync(on_a_budget, retry=FAST)
        for n in (3, 7):
            api.batches[ids[n]] = make_batch(n, status="completed")
        await sync(on_a_budget, retry=FAST)
    assert statuses(db_path, [ids[3], ids[7]]) == ["completed", "completed"]


async def test_a_batch_missed_before_is_asked_by_id_when_visits_run_out_of_pages(
    db_path: Path,
) -> None:
    """Batches 5 and 9 in flight, refused by id and gone from the list, so missed; then 5
    ends and answers again. On a page budget the visit for 9 (missed first) spent it, and
    5, looked for in the list first, was asked by id by no run that visits ran out on."""
    batches = [make_batch(n, status="in_progress" if n in (5, 9) else "completed")
               for n in range(1, 21)]  # fmt: skip
    api = Routes(batches, "a")
    five, nine = batches[4]["id"], batches[8]["id"]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.refused["a"].update((five, nine))
        await sync(a, retry=FAST)
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            for batch_id, missed in ((nine, 100), (five, 200)):
                conn.execute(
                    "UPDATE batches SET missed_by = json_object('a', ?), last_seen_at = 0 "
                    "WHERE id = ?",
                    (missed, batch_id),
                )
        api.refused["a"].discard(five)  # listed and answered again
        api.batches[five] = make_batch(5, status="completed")
        await sync(dataclasses.replace(a, max_pages=1), retry=FAST)
    assert statuses(db_path, [five, nine]) == ["completed", "in_progress"]


async def test_a_visit_going_on_after_a_batch_that_left_a_list_failing_there_goes_on(
    db_path: Path,
) -> None:
    """A visit on a budget stopped after batch 18; 18 left the list, and the list fails
    (500) for a cursor it does not know, as some servers do: every later sync failed on the
    visit's first request, for good (it is where the visit goes on from)."""
    api, batches, late = fourteen_late()
    target = batches[4]["id"]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.hidden["a"] -= late
        api.batches[target] = make_batch(5, status="completed")
        await sync(dataclasses.replace(a, max_pages=1), retry=FAST)
        api.hidden["a"].add(batches[17]["id"])  # where the visit stopped
        await sync(a, retry=FAST)
    assert statuses(db_path, [target]) == ["completed"]


@pytest.mark.parametrize("by_id_down", [True, False], ids=["API down", "list down"])
async def test_an_api_going_down_mid_visit_fails_the_sync_after_one_round_of_retries(
    db_path: Path, by_id_down: bool
) -> None:
    """Batch 5 in flight, refused by id, visited from its stored neighbours; the API fails
    past every retry once the walk's page is served. Each start (three neighbours, the top)
    spent a round of retries: half an hour with the default timeouts. Now one round, one
    ask by id and one of the top; with the list down alone (asks by id answered), the
    other starts' first pages are asked once each."""
    api, batches, _ = fourteen_late()
    api.hidden["a"].clear()
    listed, forbidden_by_id = api.listed, api.by_id
    asked: list[str | None] = []  # list requests once going down: the walk's page first
    going_down = False

    async def down_after_the_walk(request: web.Request) -> web.Response:
        if not going_down:
            return await listed(request)
        asked.append(request.query.get("after"))
        return await listed(request) if len(asked) == 1 else await server_error(request)

    async def down_but_the_refused(request: web.Request) -> web.Response:
        if asked and by_id_down and request.match_info["id"] != batches[4]["id"]:
            return await server_error(request)
        return await forbidden_by_id(request)

    api.listed = down_after_the_walk  # type: ignore[method-assign]
    api.by_id = down_but_the_refused  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        going_down = True
        with pytest.raises(ServerError):
            await sync(a, retry=FAST)
    # Then the top, asked once (the API is down); or the other neighbours' first pages,
    # once each, and the top, the last start, a round.
    assert len(asked) == 1 + FAST.max_attempts + (1 if by_id_down else 2 + FAST.max_attempts)


@pytest.mark.parametrize("waits", [0, 1], ids=["answered", "asked to wait once"])
async def test_a_visit_passes_over_neighbours_that_left_the_list_and_still_answer_by_id(
    db_path: Path, waits: int
) -> None:
    """Batch 5 in flight, refused by id, then ended; 6 and 7, its stored neighbours above,
    leave the list but still answer by id, and the list fails (500) for a cursor it does
    not list. Its visit goes on from 8, past the two starts failing in turn; a 429 to that
    start's first request, asked once, failed the sync."""
    batches = [make_batch(n, status="in_progress" if n == 5 else "completed")
               for n in range(1, 31)]  # fmt: skip
    api = Routes(batches, "a")
    target, listed, shown, by_id = batches[4]["id"], api.listed, api.shown, api.by_id
    left: set[str] = set()
    to_wait = [waits]

    async def failing_for_those_left(request: web.Request) -> web.Response:
        if request.query.get("after") in left:
            return await server_error(request)
        if left and request.query.get("after") == batches[7]["id"] and to_wait[0]:
            to_wait[0] -= 1
            return rate_limited()
        return await listed(request)

    def shown_but_those_left(route: str) -> list[dict[str, Any]]:
        return [batch for batch in shown(route) if batch["id"] not in left]

    async def refusing_five(request: web.Request) -> web.Response:
        return await (forbidden if request.match_info["id"] == target else by_id)(request)

    api.listed = failing_for_those_left  # type: ignore[method-assign]
    api.shown = shown_but_those_left  # type: ignore[method-assign]
    api.by_id = refusing_five  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.batches[target] = make_batch(5, status="completed")
        left.update((batches[5]["id"], batches[6]["id"]))
        await sync(a, retry=FAST)
    assert statuses(db_path, [target]) == ["completed"]


async def test_a_visit_no_read_of_which_got_past_its_batch_counts_no_404(
    db_path: Path,
) -> None:
    """Batch 10 in flight, listed, answering 404 by id; the list refuses (400) the cursors of
    11, 12 and 13, its stored neighbours above, and of 39, ending the top page, though all
    are listed. Every start refused, the visit ended as if 10 were not listed: counted gone
    on the third run, it stayed in flight for good."""
    batches = [make_batch(n, status="in_progress" if n == 10 else "completed")
               for n in range(1, 41)]  # fmt: skip
    api = Routes(batches, "a")
    listed, by_id, ten = api.listed, api.by_id, batches[9]["id"]
    refused = {batches[n - 1]["id"] for n in (11, 12, 13, 39)}
    faulty = [False]

    async def refusing_some_cursors(request: web.Request) -> web.Response:
        if faulty[0] and request.query.get("after") in refused:
            error = {"message": "Invalid 'after'", "type": "invalid_request_error",
                     "param": "after", "code": None}  # fmt: skip
            return web.json_response({"error": error}, status=400)
        return await listed(request)

    async def ten_not_found(request: web.Request) -> web.Response:
        if faulty[0] and request.match_info["id"] == ten:
            error = {"message": "No batch found", "type": "invalid_request_error"}
            return web.json_response({"error": {**error, "code": "batch_not_found"}}, status=404)
        return await by_id(request)

    api.listed = refusing_some_cursors  # type: ignore[method-assign]
    api.by_id = ten_not_found  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        faulty[0] = True
        for _ in range(3):
            await sync(a, retry=FAST)
        faulty[0] = False
        api.batches[ten] = make_batch(10)
        await sync(a, retry=FAST)
    assert statuses(db_path, [ten]) == ["completed"]


async def test_a_visit_start_found_gone_has_the_next_asked_once_and_is_no_start_again(
    db_path: Path,
) -> None:
    """Batches 10 and 11 in flight, failing by id; 12 and 13, stored above them, deleted;
    the list fails (502) for a cursor it does not know. The next start after one found gone
    had a whole round of retries, and each visit tried the gone ones again."""
    batches = [make_batch(n, status="in_progress" if n in (10, 11) else "completed")
               for n in range(1, 31)]  # fmt: skip
    api = Routes(batches, "a")
    listed, shown, by_id, asked = api.listed, api.shown, api.by_id, []
    failing = {batches[9]["id"], batches[10]["id"]}

    async def failing_for_unknown_cursors(request: web.Request) -> web.Response:
        after = request.query.get("after")
        asked.append(after)
        if after is not None and after not in {b["id"] for b in shown("a")}:
            return await server_error(request)
        return await listed(request)

    async def two_failing(request: web.Request) -> web.Response:
        if request.match_info["id"] in failing:
            return await server_error(request)
        return await by_id(request)

    api.listed = failing_for_unknown_cursors  # type: ignore[method-assign]
    api.by_id = two_failing  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.hidden["a"].update(batches[n - 1]["id"] for n in (12, 13))
        asked.clear()
        await sync(a, retry=FAST)
    gone_starts = [after for after in asked if after in api.hidden["a"]]
    # The first start of the first visit, a round; the next, once; none again.
    assert len(gone_starts) == FAST.max_attempts + 1


@pytest.mark.parametrize(
    "unknown_cursor", ["failing", "not a list", "asked to wait", "failing, the top asked to wait"]
)
async def test_a_visit_passes_over_a_neighbour_that_left_while_the_by_id_route_is_down(
    db_path: Path, unknown_cursor: str
) -> None:
    """Every ask by id answers 502 (a gateway without the route), the list fails for a
    cursor it does not list (500, a 200 that is no list, 429s); batch 6, stored above
    batch 5 in flight, leaves the list, and 5 ends. The ask by id for 6 failing was taken
    for the API down, as was the top asked to wait: every sync failed there; a list
    answering no list or 429s to that cursor failed it too."""
    batches = [make_batch(n, status="in_progress" if n == 5 else "completed")
               for n in range(1, 11)]  # fmt: skip
    api = Routes(batches, "a")
    listed, shown, five = api.listed, api.shown, batches[4]["id"]
    top_waits = [unknown_cursor.endswith("the top asked to wait")]

    async def failing_for_unknown_cursors(request: web.Request) -> web.Response:
        after = request.query.get("after")
        if after is None and request.query["limit"] == "1" and top_waits[0]:
            top_waits[0] = False
            return rate_limited()
        if after is None or after in {b["id"] for b in shown("a")}:
            return await listed(request)
        if unknown_cursor == "not a list":
            return web.json_response({"object": "list", "data": "none"})
        if unknown_cursor == "asked to wait":
            return rate_limited()
        return await server_error(request)

    async def no_by_id_route(request: web.Request) -> web.Response:
        error = {"message": "Bad gateway", "type": "server_error", "code": None}
        return web.json_response({"error": error}, status=502)

    api.listed = failing_for_unknown_cursors  # type: ignore[method-assign]
    api.by_id = no_by_id_route  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(a, retry=FAST)
        api.hidden["a"].add(batches[5]["id"])
        api.batches[five] = make_batch(5)
        result = await sync(a, retry=FAST)
    assert statuses(db_path, [five]) == ["completed"]
    assert result.complete


def rate_limited() -> web.Response:
    """A 429 asking to wait a millisecond."""
    error = {"message": "Rate limit reached", "type": "requests", "code": None}
    return web.json_response({"error": error}, status=429, headers={"retry-after-ms": "1"})


async def test_batches_missed_before_that_answer_again_are_asked_by_id_on_a_time_budget(
    db_path: Path,
) -> None:
    """Batches 5, 9 and 13 ended, gone from the list, refused by id on one sync (missed),
    answering by id again after. Looked for in the list before being asked by id, their
    visits spent the time budget (a list page costing 10 s of it) on every run: no run
    asked for them by id, and they stayed in flight."""
    gone = (5, 9, 13)
    batches = [make_batch(n, status="in_progress" if n in gone else "completed")
               for n in range(1, 31)]  # fmt: skip
    api = Routes(batches, "a")
    ids = [batches[n - 1]["id"] for n in gone]
    listed, pages = api.listed, []

    async def leaving_them_out(request: web.Request) -> web.Response:
        pages.append(request.query.get("after"))
        answer = await listed(request)
        body = json.loads(answer.body)  # type: ignore[arg-type]
        if pages[1:]:  # all but the first sync's walk
            body["data"] = [b for b in body["data"] if b["id"] not in ids]
        return web.json_response(body)

    api.listed = leaving_them_out  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(dataclasses.replace(a, page_size=100), retry=FAST)
        for n in gone:
            api.batches[batches[n - 1]["id"]] = make_batch(n, status="completed")
        api.refused["a"].update(ids)
        await sync(a, retry=FAST)
        api.refused["a"].clear()
        pages.clear()
        pages.append(None)
        clock = lambda: 10.0 * len(pages)  # noqa: E731
        await sync(dataclasses.replace(a, max_seconds=25), retry=FAST, clock=clock)
    assert statuses(db_path, ids) == ["completed"] * 3


async def test_a_budget_of_one_request_a_run_still_stores_the_last_page_and_ends(
    db_path: Path,
) -> None:
    """Each run affords its first request alone. The last page, full and said to be the
    last, was a run's first read; its check after it was cut by the budget, and the page
    in hand was never stored, run after run. Stored, the next run asks after it, an empty
    end, asked again (free too): the walk ends."""
    batches = [make_batch(n, status="completed") for n in range(4, 0, -1)]
    api = Routes(batches, "a")
    seconds = a_second_a_request(api)
    outcomes = []
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        on_a_budget = dataclasses.replace(a, max_seconds=0.5)
        for _ in range(4):
            result = await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0]))
            outcomes.append((result.mode, result.complete))
    assert stored_ids(db_path) == {b["id"] for b in batches}
    assert outcomes[-1][1], outcomes  # the walk ended, and caught up with the head


async def test_a_cursor_gone_from_the_list_but_answered_by_id_ends_no_walk(
    db_path: Path,
) -> None:
    """Batch 5, last on the third page, leaves the list while still answered by id, and
    the server answers an unknown `after` with an empty page (others answer it with a 400,
    which restarted the walk): the walk ended there, the batches below it never stored,
    and every later sync said it had synced. The page that listed it, read again, shows it
    gone: the walk goes on from the top."""
    batches = [make_batch(n, status="completed") for n in range(10, 0, -1)]
    api = Routes(batches, "a")
    cursor, left = make_batch(5)["id"], set[str]()

    async def listed(request: web.Request) -> web.Response:
        shown = [b for b in api.shown("a") if b["id"] not in left]
        ids = [b["id"] for b in shown]
        limit, after = int(request.query["limit"]), request.query.get("after")
        if after is not None and after not in ids:
            return web.json_response(list_body([], False))
        start = ids.index(after) + 1 if after else 0
        page = shown[start : start + limit]
        if page and page[-1]["id"] == cursor:
            left.add(cursor)
        return web.json_response(list_body(page, start + limit < len(shown)))

    api.listed = listed  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        result = await sync(a, retry=FAST)
    assert result.complete
    assert stored_ids(db_path) == {b["id"] for b in batches}
    assert result.warnings == (f"the cursor {cursor} is gone from the list; walked from the top",)


def query_walk(db: Path) -> Any:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT cursor, stop_id, head_id FROM walk_state").fetchall()


def failing_after(api: Routes, failing: set[str]) -> None:
    """Route a's list answering 502 to a request after any of `failing` (a gateway failing
    every request past a page, as long as the set holds it)."""

    async def listed(request: web.Request) -> web.Response:
        if request.query.get("after") in failing:
            return web.json_response({"error": {"message": "Bad gateway"}}, status=502)
        return await Routes.listed(api, request)

    api.listed = listed  # type: ignore[method-assign]


async def walked_to_seven_then_four_new(api: Routes, a: Settings) -> None:
    """Leave account a's walk of batches 10-1 at batch 7 (two pages), then add 14-11."""
    await sync(dataclasses.replace(a, max_pages=2), retry=FAST)
    for n in (14, 13, 12, 11):
        api.batches[make_batch(n)["id"]] = make_batch(n, status="completed")


def failing_at_the_top(api: Routes, failing: set[str], times: int | None) -> list[str]:
    """Route a's list failing after any of `failing` (see failing_after), and, while it
    does, its top page answering 503 `times` times (None: every time): the top's page
    requests so far (asks of one batch left out)."""
    failing_after(api, failing)
    listed, tops = api.listed, []

    async def failing_top(request: web.Request) -> web.Response:
        if failing and "after" not in request.query and request.query["limit"] != "1":
            tops.append(request.query["limit"])
            if times is None or len(tops) <= times:
                return web.json_response({"error": {"message": "Unavailable"}}, status=503)
        return await listed(request)

    api.listed = failing_top  # type: ignore[method-assign]
    return tops


def leaving_after_a_run(api: Routes, cursor: str, answer: str) -> set[str]:
    """Route a's list, from which `cursor` leaves once added to the set returned (still
    answered by id), answering an unknown `after` with an empty page or a 500."""
    left = set[str]()

    async def listed(request: web.Request) -> web.Response:
        shown = [b for b in api.shown("a") if b["id"] not in left]
        ids = [b["id"] for b in shown]
        limit, after = int(request.query["limit"]), request.query.get("after")
        if after is not None and after not in ids:
            if answer == "500":
                return web.json_response({"error": {"message": "Internal"}}, status=500)
            return web.json_response(list_body([], False))
        start = ids.index(after) + 1 if after else 0
        page = shown[start : start + limit]
        return web.json_response(list_body(page, start + limit < len(shown)))

    api.listed = listed  # type: ignore[method-assign]
    return left


@pytest.mark.parametrize("answer", ["empty", "500"])
async def test_a_resumed_cursor_gone_from_the_list_but_answered_by_id_ends_no_walk(
    db_path: Path, answer: str
) -> None:
    """A run cut by its budget at batch 7 (last on the second page); batch 7 then leaves the
    list while still answered by id, and the server answers `after` it with an empty page
    or a 500. The resumed walk confirmed its cursor by id alone: the empty page ended it,
    the batches below never stored and every sync saying it had synced; the 500 failed
    every sync. The page that listed it, read again (the walk keeps what it was asked
    after), shows it gone: the walk goes on from the top."""
    batches = [make_batch(n, status="completed") for n in range(10, 0, -1)]
    api = Routes(batches, "a")
    cursor = make_batch(7)["id"]
    left = leaving_after_a_run(api, cursor, answer)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        cut = await sync(dataclasses.replace(a, max_pages=2), retry=FAST)
        assert not cut.complete
        left.add(cursor)
        result = await sync(a, retry=FAST)
    assert result.complete
    assert stored_ids(db_path) == {b["id"] for b in batches}
    assert result.warnings == (f"the cursor {cursor} is gone from the list; walked from the top",)


async def test_a_walk_an_earlier_build_saved_whose_cursor_left_the_list_walks_from_the_top(
    db_path: Path,
) -> None:
    """A walk saved before schema 28 does not know what its cursor's page was asked after:
    its cursor leaving the list (answered by id, `after` it failing) failed every sync
    (pass 73B). A failure after it while the list's top answers walks from the top."""
    batches = [make_batch(n, status="completed") for n in range(12, 0, -1)]
    api = Routes(batches, "a")
    cursor = make_batch(9)["id"]
    left = leaving_after_a_run(api, cursor, "500")
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(dataclasses.replace(a, max_pages=2), retry=FAST)
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute("UPDATE walk_state SET holder_after = NULL, holder_known = 0")
        left.add(cursor)
        result = await sync(a, retry=FAST)
    assert result.complete
    assert stored_ids(db_path) == {b["id"] for b in batches}


@pytest.mark.parametrize(("answer", "budget"), [("empty", 3.5), ("500", 2)])
async def test_a_resumed_cursor_found_gone_on_a_short_budget_is_walked_around(
    db_path: Path, answer: str, budget: float
) -> None:
    """A resumed cursor found gone (four requests: the empty end twice, the cursor by id,
    the page that listed it) left a short `--max-seconds` no time for the walk from the
    top, whose start was not kept: every run found the cursor gone again and was cut
    again, 24 of 30 batches never stored (pass 73B); after a 500, the request's retries
    spent the budget, and the asks telling the cursor gone were cut on every run (75B).
    The walk from the top is committed; those asks are made whatever the budget, as the
    run's first request is."""
    batches = [make_batch(n, status="completed") for n in range(30, 0, -1)]
    api = Routes(batches, "a")
    cursor = make_batch(27)["id"]
    left = leaving_after_a_run(api, cursor, answer)
    seconds = a_second_a_request(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(dataclasses.replace(a, max_pages=2), retry=FAST)
        left.add(cursor)
        on_a_budget = dataclasses.replace(a, max_seconds=budget)
        for _ in range(20):
            result = await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0]))
            if result.complete:
                break
    assert result.complete
    assert stored_ids(db_path) == {b["id"] for b in batches}


async def test_the_page_listing_a_cursor_the_list_fails_after_is_read_again_once(
    db_path: Path,
) -> None:
    """Read again with its retries, a silent server held a sync about twice as long as its
    retries say (pass 77B)."""
    batches = [make_batch(n, status="completed") for n in range(10, 0, -1)]
    api = Routes(batches, "a")
    asked: list[str | None] = []

    async def listed(request: web.Request) -> web.Response:
        asked.append(request.query.get("after"))
        if make_batch(7)["id"] in asked:  # the list falls silent there
            return web.json_response({"error": {"message": "Unavailable"}}, status=503)
        return await Routes.listed(api, request)

    api.listed = listed  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        with pytest.raises(ServerError):
            await sync(a, retry=FAST)
    assert asked.count(make_batch(9)["id"]) == 2  # walked, then read again once


async def test_a_stuck_run_on_a_short_budget_stores_the_top_page(db_path: Path) -> None:
    """The failing request's retries and the asks after it spent `--max-seconds`, and they
    took the run's one read whatever the budget: the walk of the top was cut before its
    first page on every run, nothing new ever stored while the list stayed stuck (77B)."""
    batches = [make_batch(n, status="completed") for n in range(10, 0, -1)]
    api = Routes(batches, "a")
    failing = {make_batch(7)["id"]}
    failing_after(api, failing)
    seconds = a_second_a_request(api)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(dataclasses.replace(a, max_pages=2), retry=FAST)
        for n in (12, 11):
            api.batches[make_batch(n)["id"]] = make_batch(n, status="completed")
        on_a_budget = dataclasses.replace(a, max_seconds=2)
        stuck = await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0]))
    assert not stuck.complete
    assert {make_batch(12)["id"], make_batch(11)["id"]} <= stored_ids(db_path)


async def test_a_stuck_runs_top_page_is_read_once_whatever_the_budget(db_path: Path) -> None:
    """Read whatever the budget with its retries, a silent top held a run on a budget of
    3 s for 70 s (pass 78B): it is read once."""
    batches = [make_batch(n, status="completed") for n in range(10, 0, -1)]
    api = Routes(batches, "a")
    failing: set[str] = set()
    tops = failing_at_the_top(api, failing, times=None)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(dataclasses.replace(a, max_pages=2), retry=FAST)
        failing.add(make_batch(7)["id"])
        with pytest.raises(ServerError):
            await sync(dataclasses.replace(a, max_seconds=3), retry=FAST)
    assert len(tops) == 1


async def test_stuck_runs_on_a_page_budget_go_on_with_their_walk_of_the_top(
    db_path: Path,
) -> None:
    """Each stuck run walked the top from the top again: with `--max-pages 1` cutting every
    run, the batches below its first page were never stored while the list stayed stuck
    (pass 77B). It goes on where the last stuck run's walk of the top stopped; once down to
    the walk's head, the head moves up to where that walk began, and the next stuck run
    walks only what came since."""
    batches = [make_batch(n, status="completed") for n in range(10, 0, -1)]
    api = Routes(batches, "a")
    failing = {make_batch(7)["id"]}
    failing_after(api, failing)
    tops: list[str | None] = []
    listed = api.listed

    async def counted(request: web.Request) -> web.Response:
        if request.query["limit"] != "1":
            tops.append(request.query.get("after"))
        return await listed(request)

    api.listed = counted  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await walked_to_seven_then_four_new(api, a)
        one_page = dataclasses.replace(a, max_pages=1)
        stuck = [await sync(one_page, retry=FAST)]
        shown = format_status(await read_status(db_path))
        assert f"walk of its top meanwhile goes on after {make_batch(13)['id']}" in shown
        stuck += [await sync(one_page, retry=FAST) for _ in range(2)]
        assert stored_ids(db_path) == {make_batch(n)["id"] for n in range(14, 6, -1)}
        assert query_walk(db_path) == [(make_batch(7)["id"], None, make_batch(14)["id"])]
        tops.clear()
        stuck.append(await sync(one_page, retry=FAST))
        read = [after for after in tops if after != make_batch(7)["id"]]
        failing.clear()
        healed = await sync(a, retry=FAST)
    assert [result.complete for result in stuck] == [False] * 4
    assert read == [make_batch(9)["id"], None]  # the cursor's page again, then the top
    assert (healed.complete, healed.mode) == (True, "resume")
    assert stored_ids(db_path) == {b["id"] for b in api.batches.values()}


async def test_a_stuck_runs_walk_of_the_top_failing_where_it_stopped_begins_at_the_top(
    db_path: Path,
) -> None:
    """The batch where the last stuck run's walk of the top stopped deleted since, the
    list refusing `after` it: that walk begins again at the top, rather than the run
    failing, and reaches the head."""
    batches = [make_batch(n, status="completed") for n in range(10, 0, -1)]
    api = Routes(batches, "a")
    failing = {make_batch(7)["id"]}
    gone = make_batch(13)["id"]

    async def listed(request: web.Request) -> web.Response:
        after = request.query.get("after")
        if after in failing:
            return web.json_response({"error": {"message": "Bad gateway"}}, status=502)
        if after == gone and gone not in api.batches:
            return web.json_response({"error": {"message": "Invalid 'after'"}}, status=400)
        return await Routes.listed(api, request)

    api.listed = listed  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await walked_to_seven_then_four_new(api, a)
        await sync(dataclasses.replace(a, max_pages=1), retry=FAST)
        del api.batches[gone]
        stuck = await sync(a, retry=FAST)
    assert not stuck.complete
    assert any("where the last stuck run's walk of the top stopped" in w for w in stuck.warnings)
    assert stored_ids(db_path) >= {make_batch(n)["id"] for n in (14, 12, 11)}
    assert query_walk(db_path) == [(make_batch(7)["id"], None, make_batch(14)["id"])]


async def test_a_stuck_runs_top_page_has_its_retries_without_a_time_budget(
    db_path: Path,
) -> None:
    """Asked once even with no budget, one 502 of the top page failed the stuck run, no new
    batch stored, nothing refreshed (pass 79B)."""
    batches = [make_batch(n, status="completed") for n in range(10, 0, -1)]
    api = Routes(batches, "a")
    failing: set[str] = set()
    tops = failing_at_the_top(api, failing, times=1)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(dataclasses.replace(a, max_pages=2), retry=FAST)
        api.batches[make_batch(11)["id"]] = make_batch(11, status="completed")
        failing.add(make_batch(7)["id"])
        stuck = await sync(a, retry=FAST)
    assert not stuck.complete
    assert len(tops) == 2  # failed, then asked again
    assert make_batch(11)["id"] in stored_ids(db_path)


@pytest.mark.parametrize("unknown", ["empty", "400"])
async def test_a_cursor_gone_in_a_stuck_runs_walk_of_the_top_keeps_the_stuck_walk(
    db_path: Path, unknown: str
) -> None:
    """While the list failed after the walk's cursor, the run's walk of the top met a batch
    leaving the list (its `after` an empty page): the walk from the top it restarted was
    saved in place of the stuck walk, which never went on, the batches below it never
    stored (pass 75B). Its `after` refused (a 400), the run failed, exit 1 (pass 80B)."""
    batches = [make_batch(n, status="completed") for n in range(12, 0, -1)]
    api = Routes(batches, "a")
    failing: set[str] = set()
    deleted: list[str] = []

    async def listed(request: web.Request) -> web.Response:
        after = request.query.get("after")
        if after in failing:
            return web.json_response({"error": {"message": "Bad gateway"}}, status=502)
        if after is not None and after not in api.batches:
            refused = Routes.unknown_cursor_refused(api, request) if unknown == "400" else None
            return refused or web.json_response(list_body([], False))
        answer = await Routes.listed(api, request)
        if after is None and request.query["limit"] != "1" and failing and not deleted:
            deleted.append(api.shown("a")[1]["id"])
            del api.batches[deleted[0]]  # the top page's last, deleted once served whole
        return answer

    api.listed = listed  # type: ignore[method-assign]
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        await sync(dataclasses.replace(a, max_pages=2), retry=FAST)
        for n in (16, 15, 14, 13):
            api.batches[make_batch(n)["id"]] = make_batch(n, status="completed")
        failing.add(make_batch(9)["id"])
        stuck = await sync(a, retry=FAST)
        failing.clear()
        calm = [await sync(a, retry=FAST) for _ in range(2)]
    assert not stuck.complete
    assert calm[-1].complete
    assert stored_ids(db_path) >= {b["id"] for b in api.batches.values()}


@pytest.mark.parametrize(
    ("shape", "left", "unknown"),
    [
        ("has_more while full", {4}, 404),  # the cursor is the list's last
        ("openai", {7, 10}, 500),  # the cursor and the batch its page was asked after
        ("openai, end unchecked", {4}, 404),
    ],
)
async def test_a_resumed_walk_whose_cursors_page_cannot_be_read_again_walks_from_the_top(
    db_path: Path, shape: str, left: set[int], unknown: int
) -> None:
    """The batch the page listing a resumed walk's cursor was asked after left the list
    (still answered by id), the server refusing or failing an unknown `after`: the page
    could not be read again, and every later sync failed (`--full` too), or (the cursor
    gone as well) ended partial for ever, batches below never stored (pass 73B). A page
    that cannot be read while the list's top answers does not confirm the cursor: the
    walk goes on from the top, losing nothing."""
    count = 12 if 10 in left else 6
    batches = {n: make_batch(n, status="completed") for n in range(count, 0, -1)}
    hidden: set[int] = set()
    flaky = {make_batch(1)["id"]: 3} if "unchecked" in shape else {}

    async def listed(request: web.Request) -> web.Response:
        shown = [b for n, b in batches.items() if n not in hidden]
        ids = [b["id"] for b in shown]
        limit, after = int(request.query["limit"]), request.query.get("after")
        if after is not None and after not in ids:
            return web.json_response({"error": {"message": "Invalid 'after'"}}, status=unknown)
        if flaky.get(after or ""):
            flaky[after or ""] -= 1  # the check after the last page, on the first run
            return web.json_response({"error": {"message": "upstream"}}, status=500)
        start = ids.index(after) + 1 if after else 0
        page = shown[start : start + limit]
        more = len(page) == limit if shape.startswith("has_more") else start + limit < len(ids)
        return web.json_response(list_body(page, more))

    async def by_id(request: web.Request) -> web.Response:
        return web.json_response(next(b for b in batches.values()
                                      if b["id"] == request.match_info["id"]))  # fmt: skip

    async with serving({"/v1/batches": listed, "/v1/batches/{id}": by_id}) as root:
        settings = Settings(db=db_path, base_url=f"{root}/v1", api_key="k", page_size=3,
                            files=False)  # fmt: skip
        first = settings if "unchecked" in shape else dataclasses.replace(settings, max_pages=2)
        with contextlib.suppress(ServerError):
            await sync(first, retry=FAST)
        hidden.update(left)
        outcomes = [(await sync(settings, retry=FAST)).complete for _ in range(2)]
    assert outcomes[-1], outcomes
    assert stored_ids(db_path) == {b["id"] for b in batches.values()}


async def test_a_list_failing_after_a_resumed_cursor_still_stores_new_batches_and_refreshes(
    db_path: Path,
) -> None:
    """A gateway failing every request after batch 7 (one saying `has_more` on its full
    last page, say), the cursor a run cut by its budget left the walk at: every later sync
    failed there, never storing a new batch nor refreshing batch 9 in flight. The run walks
    the top down to the walk's head and the refresh follows, partial; once the gateway
    answers again, the walk goes on from batch 7."""
    batches = [make_batch(n, status="in_progress" if n == 9 else "completed")
               for n in range(10, 0, -1)]  # fmt: skip
    api = Routes(batches, "a")
    failing = {make_batch(7)["id"]}
    failing_after(api, failing)
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        assert not (await sync(dataclasses.replace(a, max_pages=2), retry=FAST)).complete
        for n in (12, 11):
            api.batches[make_batch(n)["id"]] = make_batch(n, status="completed")
        api.batches[make_batch(9)["id"]] = make_batch(9, status="completed")
        stuck = [await sync(a, retry=FAST) for _ in range(2)]
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            nine = conn.execute("SELECT status FROM batches WHERE id = ?", (make_batch(9)["id"],))
            assert nine.fetchone() == ("completed",)
        assert stored_ids(db_path) == {make_batch(n)["id"] for n in (12, 11, 10, 9, 8, 7)}
        # A walk of the top cut by the budget: the next goes down to the head all the same
        # (down to the newest batch stored, it left those between never stored, pass 74B).
        for n in range(20, 12, -1):
            api.batches[make_batch(n)["id"]] = make_batch(n, status="completed")
        stuck.append(await sync(dataclasses.replace(a, max_pages=1), retry=FAST))
        stuck.append(await sync(a, retry=FAST))
        assert stored_ids(db_path) >= {make_batch(n)["id"] for n in range(20, 6, -1)}
        failing.clear()
        healed = await sync(a, retry=FAST)
    assert [result.complete for result in stuck] == [False] * 4
    assert stuck[0].warnings[0].startswith(f"asking the list after {make_batch(7)['id']} failed")
    assert (healed.complete, healed.mode) == (True, "resume")  # not walked from the top again
    assert healed.warnings == ()
    assert stored_ids(db_path) == {b["id"] for b in api.batches.values()}


@pytest.mark.parametrize(
    "budget", [{"max_pages": 2}, {"max_seconds": 1.5}], ids=["pages", "seconds"]
)
async def test_a_walk_on_a_budget_ends_where_a_second_holds_more_than_a_page(
    db_path: Path, budget: dict[str, Any]
) -> None:
    """Ten batches of one second, pages of two, a list saying has_more on every full page
    (its end an empty page). A resumed walk's empty end was checked by reading the page
    after the stored batch created next after its cursor: none of them in another second,
    the top, where the cursor is not, so the walk restarted from the top on every run,
    never ended, and stored nothing new (pass 63A)."""
    batches = [
        make_batch(n, status="completed", created_at=1_700_000_000) for n in range(10, 0, -1)
    ]
    api = Routes(batches, "a")

    async def naive(request: web.Request) -> web.Response:
        shown = api.shown("a")
        ids = [b["id"] for b in shown]
        limit, after = int(request.query["limit"]), request.query.get("after")
        start = ids.index(after) + 1 if after else 0
        page = shown[start : start + limit]
        return web.json_response(list_body(page, len(page) == limit))

    api.listed = naive  # type: ignore[method-assign]
    seconds = a_second_a_request(api)
    outcomes = []
    async with serving(api.routes()) as root:
        (a,) = api.accounts(db_path, root)
        on_a_budget = dataclasses.replace(a, **budget)
        for _ in range(8):
            result = await sync(on_a_budget, retry=FAST, clock=lambda: float(seconds[0]))
            outcomes.append(result.complete)
    assert stored_ids(db_path) == {b["id"] for b in batches}
    assert outcomes[-1], outcomes
