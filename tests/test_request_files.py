"""Request files end to end: the real client against the fake API on 127.0.0.1, every line
of every terminal batch's files in `batch_requests` exactly once, faults and all."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import itertools
import json
import socket
import sqlite3
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aioresponses import aioresponses

from crawler import Settings, request_files, sync, sync_accounts
from crawler.api import RetryPolicy
from crawler.bodies import FileBody
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.fake.lines import iter_lines
from crawler.request_files import (
    BYTES_PER_COMMIT,
    EMPTY_AGREEMENT,
    FAILURES_IN_A_ROW,
    LINES_PER_COMMIT,
    SQL_LINE_BYTES,
    FileRead,
    LineBuffer,
    LineChunk,
    plain_lines,
    read_requests,
    text_for_sqlite,
)
from crawler.request_rows import REQUEST_COLUMNS, build_request_row
from crawler.runs import SyncResult
from crawler.store import FileToFetch
from crawler.store.requests import AGREED_404_RUNS, EXPIRED_FOR_GOOD

from .conftest import API_KEY, BASE_URL, list_body, make_batch, serving

RETRY = RetryPolicy(max_attempts=10, max_seconds=60, initial_backoff=0, max_backoff=0)


def settings_for(server: FakeApiServer, db: Path, **extra: Any) -> Settings:
    return Settings(db=db, base_url=server.base_url, api_key=server.options.api_key, **extra)


def expected_rows(server: FakeApiServer, kinds: set[str]) -> list[tuple[Any, ...]]:
    """Every request row the fake's files hold, for the kinds asked, as the sync stores them."""
    rows = []
    for batch in server.data.snapshot():
        for kind in sorted(kinds):
            file_id = batch.get(f"{kind}_file_id")
            source = server.files.served(file_id) if file_id else None
            if source is None:
                continue
            for line in iter_lines(source):
                rows.append(build_request_row(json.loads(line), batch["id"], file_id, kind))
    return sorted(rows)


def stored_rows(db: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return sorted(conn.execute(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM batch_requests"))


def file_states(db: Path, kind: str = "error") -> dict[str, int]:
    """Files of `kind` by state (output files are recorded pending while outputs are off)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT state, count(*) FROM batch_files WHERE kind = ? GROUP BY state", (kind,)
        )
        return dict(rows.fetchall())


@pytest.mark.parametrize("outputs", [False, True], ids=["error files", "and output files"])
async def test_every_line_of_every_file_lands_once(db_path: Path, outputs: bool) -> None:
    # Output files hold ten times the lines of error files: fewer batches keep it quick.
    batches = 100 if outputs else 600
    async with FakeApiServer(FakeApiOptions(batches=batches, seed=3)) as server:
        result = await sync(settings_for(server, db_path, outputs=outputs), retry=RETRY)
        kinds = {"error", "output"} if outputs else {"error"}
        expected = expected_rows(server, kinds)
    assert result.complete
    assert len(expected) > 100
    assert stored_rows(db_path) == expected
    assert result.request_lines == len(expected)
    assert result.warnings == ()


@pytest.mark.parametrize("concurrency", [1, 8])
async def test_two_accounts_listing_the_same_files_at_once_keep_every_line(
    db_path: Path, concurrency: int
) -> None:
    """One API reached directly and through a gateway, synced at once: both accounts read
    each file, and each reading, finished, deleted the rows the other wrote (at one file at
    a time, every row). A file is now read by one account a run."""
    async with FakeApiServer(FakeApiOptions(batches=150, seed=3)) as server:
        accounts = [
            settings_for(server, db_path, account=name, concurrency=concurrency)
            for name in ("direct", "gateway")
        ]
        outcomes = await sync_accounts(accounts, retry=RETRY)
        expected = expected_rows(server, {"error"})
    results = [outcome.result for outcome in outcomes]
    assert all(result is not None and result.complete for result in results)
    assert stored_rows(db_path) == expected
    assert sum(result.request_lines for result in results if result) == len(expected)
    assert set(file_states(db_path)) == {"complete"}
    assert [result.warnings for result in results if result] == [(), ()]


async def test_two_accounts_naming_the_files_of_one_batch_by_ids_of_their_own_keep_every_line(
    db_path: Path,
) -> None:
    """A project reached directly and through a gateway that mints file ids of its own:
    each listing rewrote the batch's file id, each account asked its API for the other's
    ids (404s, files recorded expired for good), and the lines stored changed from sync to
    sync. The batch's owner names its files; the other account may ask for one first (a
    404), and the owner asks for it next sync."""

    def served(prefix: str) -> tuple[list[dict[str, Any]], Callable[[str], RawAnswer]]:
        batches = [failed_batch(n, lines=3) for n in range(5, 0, -1)]
        for batch in batches:
            batch["error_file_id"] = batch["error_file_id"].replace("file-", f"file-{prefix}")

        def answer(file_id: str) -> RawAnswer:
            if file_id.startswith(f"file-{prefix}"):
                return b"200 OK", {}, error_lines(3)
            return NO_SUCH_FILE

        return batches, answer

    async with raw_api(*served("A")) as direct, raw_api(*served("B")) as gateway:
        accounts = [
            Settings(db=db_path, account=name, base_url=url, api_key=API_KEY, concurrency=1)
            for name, url in (("direct", direct), ("gateway", gateway))
        ]
        for run in range(4):
            outcomes = await sync_accounts(accounts, retry=RETRY)
            assert all(o.result is not None and o.result.complete for o in outcomes)
            if run > 0:
                assert (len(stored_rows(db_path)), file_states(db_path)) == (15, {"complete": 5})


async def test_a_file_another_account_recorded_is_fetched_by_the_owner_in_a_joint_run(
    db_path: Path,
) -> None:
    """A batch stored by one account while in flight, its file then recorded by another's
    listing: the owner skipped it on every joint run as that account's (which could not
    read it), each run complete."""
    batch = failed_batch(1)
    batch.update(status="in_progress", error_file_id=None)
    refused = json.dumps({"error": {"message": "Missing scopes: api.files.read"}}).encode()
    async with (
        raw_api([batch], lambda _: (b"200 OK", {}, error_lines(2))) as owner_url,
        raw_api([batch], lambda _: (b"403 Forbidden", {}, refused)) as other_url,
    ):
        owner, other = accounts_at(db_path, owner=owner_url, other=other_url)
        await sync(owner, retry=RETRY)
        batch.update(status="failed", error_file_id="file-err-1")
        await sync(other, retry=RETRY)  # records the file; its key may not read it
        assert file_states(db_path) == {"failed": 1}
        await sync_accounts([owner, other], retry=RETRY)
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 1}, 2)


def file_not_found_runs(db: Path) -> list[tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        query = "SELECT state, not_found_runs FROM batch_files ORDER BY batch_id"
        return conn.execute(query).fetchall()


@pytest.mark.parametrize("other_reads", [True, False], ids=["other reads", "expired for all"])
async def test_a_file_its_owner_cannot_find_is_asked_of_the_other_account_listing_it(
    db_path: Path, other_reads: bool
) -> None:
    """Two accounts listing one batch under the same file ids, the owner's route answering
    404 for every file (a gateway without the files route): the owner alone asked, and
    after three syncs the file was recorded expired for good though the other account
    could read it. After the owner's 404, the other account asks; a file expires once
    every account listing it has answered 404."""
    batches = [failed_batch(n) for n in (2, 1)]
    read = (b"200 OK", {}, error_lines(2)) if other_reads else NO_SUCH_FILE
    async with (
        raw_api(batches, lambda _: NO_SUCH_FILE) as owner_url,
        raw_api(batches, lambda _: read) as other_url,
    ):
        owner, other = (
            Settings(db=db_path, account=name, base_url=url, api_key=API_KEY, concurrency=1)
            for name, url in (("owner", owner_url), ("other", other_url))
        )
        await sync(owner, retry=RETRY)  # the owner stores the batches, and answers 404
        for _ in range(3):
            outcomes = await sync_accounts([owner, other], retry=RETRY)
            assert all(o.result is not None and o.result.complete for o in outcomes)
    if other_reads:
        assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 2}, 4)
    else:
        assert file_not_found_runs(db_path) == [("expired", 6), ("expired", 6)]


async def test_a_new_file_of_a_batch_is_asked_of_its_owner_whatever_answered_the_old(
    db_path: Path,
) -> None:
    """The owner's 404 for a batch's file was kept when the batch came to name another: the
    owner left the new file to the other account, which could not read it."""
    batch = failed_batch(1)

    def owner_answer(file_id: str) -> RawAnswer:
        if file_id == "file-err-new":
            return b"200 OK", {}, error_lines(2)
        return NO_SUCH_FILE

    async with (
        raw_api([batch], owner_answer) as owner_url,
        raw_api([batch], lambda _: NO_SUCH_FILE) as other_url,
    ):
        owner, other = accounts_at(db_path, owner=owner_url, other=other_url)
        await sync(owner, retry=RETRY)  # 404 for the file the batch names first
        await sync(dataclasses.replace(other, files=False), retry=RETRY)  # lists it too
        batch["error_file_id"] = "file-err-new"
        await sync(dataclasses.replace(owner, files=False), full=True, retry=RETRY)
        await sync_accounts([owner, other], retry=RETRY)
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 1}, 2)


async def test_files_the_owner_does_not_ask_for_are_fetched_by_the_other_account_listing_them(
    db_path: Path,
) -> None:
    """Two accounts of one API, only the other one asking for output files (or the owner's
    run failing): every file was left to the owner while it was of the run, and none was
    ever fetched."""
    batches = [failed_batch(n) for n in (2, 1)]
    for batch in batches:
        batch["output_file_id"] = batch["error_file_id"].replace("err", "out")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    down = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    closed.close()
    async with raw_api(batches, lambda _: (b"200 OK", {}, error_lines(2))) as url:
        owner = Settings(db=db_path, account="owner", base_url=url, api_key=API_KEY)
        other = Settings(db=db_path, account="other", base_url=url, api_key=API_KEY)
        await sync(dataclasses.replace(owner, files=False), retry=RETRY)  # owns the batches
        await sync_accounts([owner, dataclasses.replace(other, outputs=True)], retry=RETRY)
        assert file_states(db_path, "output") == {"complete": 2}
        await sync_accounts([dataclasses.replace(owner, base_url=down), other], retry=RETRY)
    assert file_states(db_path, "error") == {"complete": 2}


async def test_a_file_one_account_cannot_find_expires_only_once_each_account_has_asked(
    db_path: Path,
) -> None:
    """Accounts synced in runs of their own, one through a gateway answering 404 for every
    file: its three 404s recorded expired for good the files of batches the other account
    owns, and of those it owns that the other lists, though the other reads them."""
    batches = [failed_batch(n) for n in (2, 1)]
    async with (
        raw_api(batches[1:], lambda _: (b"200 OK", {}, error_lines(2))) as direct_url,
        raw_api(batches, lambda _: NO_SUCH_FILE) as gateway_url,
    ):
        direct, gateway = (
            Settings(db=db_path, account=name, base_url=url, api_key=API_KEY)
            for name, url in (("direct", direct_url), ("gateway", gateway_url))
        )
        await sync(dataclasses.replace(direct, files=False), retry=RETRY)  # owns batch 1
        for _ in range(3):
            await sync(gateway, retry=RETRY)  # owns batch 2, not listed by direct yet
        # batch 1's asked of direct still; batch 2's expired for good, direct not listing it
        assert file_not_found_runs(db_path) == [("expired", 3), ("expired", 6)]
        async with raw_api(batches, lambda _: (b"200 OK", {}, error_lines(2))) as url:
            # direct now lists batch 2 too, and asks for both files
            await sync(dataclasses.replace(direct, base_url=url), full=True, retry=RETRY)
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 2}, 4)


async def test_a_file_answered_404_once_is_asked_again_when_no_other_account_asks_for_it(
    db_path: Path,
) -> None:
    """One 404 (a blip) for an output file, the other account listing the batch asking for
    no output files: the file was left to that account for good, recorded expired."""
    batch = failed_batch(1, output=True)
    answers = iter([NO_SUCH_FILE])

    def owner_answer(file_id: str) -> RawAnswer:
        if file_id == "file-out-1":
            return next(answers, (b"200 OK", {}, error_lines(2, prefix="out")))
        return b"200 OK", {}, error_lines(2)

    async with raw_api([batch], owner_answer) as owner_url:
        owner = Settings(
            db=db_path, account="owner", base_url=owner_url, api_key=API_KEY, outputs=True
        )
        other = Settings(db=db_path, account="other", base_url=owner_url, api_key=API_KEY)
        await sync(owner, retry=RETRY)
        await sync(dataclasses.replace(other, files=False), retry=RETRY)  # lists it too
        assert file_states(db_path, "output") == {"expired": 1}
        await sync_accounts([owner, other], retry=RETRY)
    assert file_states(db_path, "output") == {"complete": 1}


async def test_a_file_redirected_to_a_host_name_that_cannot_be_sent_fails_alone(
    db_path: Path,
) -> None:
    """A redirect to a host name IDNA cannot encode (a part over 63 characters) was a
    UnicodeError traceback, on every later sync too: the batches after it never stored."""
    long_host = {"Location": f"http://{'a' * 64}.invalid:1/x"}
    async with raw_api(
        [failed_batch(1)], lambda _: (b"307 Temporary Redirect", long_host, b"")
    ) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        for _ in range(2):
            result = await sync(settings, retry=RETRY)
            assert (result.batches_seen, len(result.warnings)) == (1, 1), result.warnings
    assert file_states(db_path) == {"failed": 1}
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        (error,) = conn.execute("SELECT error FROM batch_files").fetchone()
    assert error.endswith("redirected to a host name that cannot be sent")


async def test_a_file_an_account_never_asks_for_expires_after_six_404s_of_another(
    db_path: Path,
) -> None:
    """The owner asking for no output files, the other account's 404s for one waited for
    the owner's: the file was asked for on every sync, for ever."""
    batch = failed_batch(1, output=True)
    asked: Counter[str] = Counter()

    def answer(file_id: str) -> RawAnswer:
        asked[file_id] += 1
        return NO_SUCH_FILE

    async with raw_api([batch], answer) as url:
        owner = Settings(db=db_path, account="owner", base_url=url, api_key=API_KEY, files=False)
        other = Settings(db=db_path, account="other", base_url=url, api_key=API_KEY)
        await sync(owner, retry=RETRY)
        for _ in range(EXPIRED_FOR_GOOD + 2):
            await sync(dataclasses.replace(other, outputs=True), retry=RETRY)
    assert asked["file-out-1"] == EXPIRED_FOR_GOOD
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        query = "SELECT state, not_found_runs FROM batch_files WHERE kind = 'output'"
        assert conn.execute(query).fetchall() == [("expired", EXPIRED_FOR_GOOD)]


async def test_files_one_accounts_route_fails_on_are_read_by_the_other_in_a_joint_run(
    db_path: Path,
) -> None:
    """One account's route without the files route (a 404 for the path, no file's 404):
    its failures were asked again by it first on every joint run, and the other account,
    which reads them, never had them."""
    batches = [failed_batch(n) for n in range(8, 0, -1)]
    no_route = json.dumps({"detail": "Not Found"}).encode()
    async with (
        raw_api(batches, lambda _: (b"404 Not Found", {}, no_route)) as gateway_url,
        raw_api(batches, lambda _: (b"200 OK", {}, error_lines(2))) as direct_url,
    ):
        gateway, direct = (
            Settings(db=db_path, account=name, base_url=url, api_key=API_KEY, concurrency=1)
            for name, url in (("gateway", gateway_url), ("direct", direct_url))
        )
        await sync(dataclasses.replace(gateway, files=False), retry=RETRY)  # owns them
        for _ in range(2):
            await sync_accounts([gateway, direct], retry=RETRY)
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 8}, 16)


@pytest.mark.parametrize("joint", [True, False], ids=["joint runs", "cron runs"])
async def test_a_blip_of_the_account_that_can_read_a_file_does_not_agree_it_is_gone(
    db_path: Path, joint: bool
) -> None:
    """The owner's route answering 404 for a file the other account's serves: one 503 of
    the other's (a blip) counted as its agreeing that the file was gone, and the owner's
    next 404s expired it for good, never asked of the other again."""
    blips = [(b"503 Service Unavailable", {}, b"")]

    def answer(_: str) -> RawAnswer:
        return blips.pop() if blips else (b"200 OK", {}, error_lines(2))

    async with (
        raw_api([failed_batch(1)], lambda _: NO_SUCH_FILE) as owner_url,
        raw_api([failed_batch(1)], answer) as reader_url,
    ):
        owner, reader = accounts_at(db_path, owner=owner_url, reader=reader_url)
        await sync(owner, retry=RETRY)  # owns it: its 404
        if joint:
            await sync(dataclasses.replace(reader, files=False), retry=RETRY)  # lists it
            for _ in range(3):  # the reader's 503, the owner's 404, the reader's turn again
                await sync_accounts([owner, reader], retry=RETRY)
        else:
            await sync(reader, retry=RETRY)  # the blip
            for _ in range(AGREED_404_RUNS):
                await sync(owner, retry=RETRY)
            await sync(reader, retry=RETRY)
    assert not blips
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 1}, 2)


@pytest.mark.parametrize(
    "failure",
    [
        (b"401 Unauthorized", {}, b'{"error": {"message": "Incorrect API key provided"}}'),
        (b"404 Not Found", {}, b'{"detail": "Not Found"}'),
    ],
    ids=["key revoked", "no files route"],
)
async def test_files_claimed_by_an_account_whose_run_fails_go_to_the_other_next_sync(
    db_path: Path, failure: RawAnswer
) -> None:
    """One account's key revoked: its run claimed the oldest files first thing and failed,
    recording nothing of them, and on every joint sync after it claimed them again, so the
    other account, whose route serves them, never had them. So with the files in flight
    when its files breaker tripped: three a sync went to the other account."""
    batches = [failed_batch(n) for n in range(12, 0, -1)]
    async with (
        raw_api(batches, lambda _: failure) as owner_url,
        raw_api(batches, lambda _: (b"200 OK", {}, error_lines(2))) as reader_url,
    ):
        owner, reader = accounts_at(db_path, owner=owner_url, reader=reader_url)
        for account in (owner, reader):
            await sync(dataclasses.replace(account, files=False), retry=RETRY)
        first = await sync_accounts([owner, reader], retry=RETRY)
        await sync_accounts([owner, reader], retry=RETRY)
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 12}, 24)
    owners = first[0].result
    if owners is not None:  # no files route: what to do, for this account alone
        assert "set files = false in [accounts.owner]" in owners.warnings[0]


async def test_a_file_expired_for_good_stays_so_whatever_its_last_ask_failed_with(
    db_path: Path,
) -> None:
    """The other account's one ask of a file expired for good answered 503: the file was
    recorded failed, to fetch again, and asked of both accounts on every sync, for ever."""
    asked: Counter[str] = Counter()

    down = (b"503 Service Unavailable", {}, b"")
    async with (
        raw_api([failed_batch(1)], counted(asked, "owner", NO_SUCH_FILE)) as owner_url,
        raw_api([failed_batch(1)], counted(asked, "reader", down)) as reader_url,
    ):
        owner, reader = accounts_at(db_path, owner=owner_url, reader=reader_url)
        await sync(owner, retry=RETRY)
        await sync(dataclasses.replace(reader, files=False), retry=RETRY)  # lists it
        for _ in range(EXPIRED_FOR_GOOD - 1):
            await sync(owner, retry=RETRY)
        for _ in range(3):
            await sync(reader, retry=RETRY)
            await sync(owner, retry=RETRY)
    assert file_not_found_runs(db_path) == [("expired", EXPIRED_FOR_GOOD)]
    assert asked["owner"] == EXPIRED_FOR_GOOD
    assert 1 <= asked["reader"] <= RETRY.max_attempts  # its one ask, with its retries


async def test_the_one_ask_of_a_file_expired_for_good_failing_says_it_is_not_asked_again(
    db_path: Path,
) -> None:
    """The warning of the other account's one ask, failed with a 503, said the file was
    asked for again next sync: it is not (see the test above)."""
    down = (b"503 Service Unavailable", {}, b"")
    async with (
        raw_api([failed_batch(1)], counted(Counter(), "owner", NO_SUCH_FILE)) as owner_url,
        raw_api([failed_batch(1)], counted(Counter(), "reader", down)) as reader_url,
    ):
        owner, reader = accounts_at(db_path, owner=owner_url, reader=reader_url)
        await sync(dataclasses.replace(reader, files=False), retry=RETRY)  # lists it
        for _ in range(EXPIRED_FOR_GOOD):
            await sync(owner, retry=RETRY)
        once = await sync(reader, retry=RETRY)
        again = await sync(reader, retry=RETRY)
    (said,) = [w for w in once.warnings if "file-" in w]
    assert "is not asked for again: expired for good" in said
    assert "asked for again next sync" not in said
    assert not [w for w in again.warnings if "file-" in w]


async def test_a_batch_that_ended_between_two_accounts_syncs_has_its_files_read_by_either(
    db_path: Path,
) -> None:
    """Two accounts synced by cron jobs of their own, one asking for no files: a batch
    that ended between their syncs had its file recorded by that one, and the other,
    whose list no longer showed the batch as new, never asked for it."""
    batch = failed_batch(1)
    batch.update(status="in_progress", error_file_id=None)
    listed_to_reader = [batch]
    answer = lambda _: (b"200 OK", {}, error_lines(2))  # noqa: E731
    async with raw_api([batch], answer) as url, raw_api(listed_to_reader, answer) as its_url:
        quiet = Settings(db=db_path, account="quiet", base_url=url, api_key=API_KEY, files=False)
        reader = Settings(db=db_path, account="reader", base_url=its_url, api_key=API_KEY)
        await sync(quiet, retry=RETRY)
        await sync(reader, retry=RETRY)
        batch.update(status="failed", error_file_id="file-err-1")
        await sync(quiet, retry=RETRY)  # refreshes it: records its file
        listed_to_reader.clear()  # its incremental walk no longer reaches the batch
        await sync(reader, retry=RETRY)
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 1}, 2)


@pytest.mark.parametrize("edited", ["garbage", "5", '{"a": 1}'])
async def test_a_failed_by_edited_by_hand_is_taken_as_naming_no_account(
    db_path: Path, edited: str
) -> None:
    """Not JSON, or no list: every later sync was a traceback (or "unusable")."""
    async with raw_api([failed_batch(1)], lambda _: NO_SUCH_FILE) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        await sync(settings, retry=RETRY)
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute("UPDATE batch_files SET failed_by = ?", (edited,))
        accounts = [settings, dataclasses.replace(settings, account="b")]
        outcomes = await sync_accounts(accounts, retry=RETRY)
    assert all(outcome.result is not None for outcome in outcomes)
    assert file_not_found_runs(db_path) == [("expired", 2)]


async def test_a_file_whose_every_custom_id_holds_the_key_says_so(db_path: Path) -> None:
    """Each line left out for the key in its custom_id: the run said the file held no
    request line, "not the file (a proxy's page?)"."""
    lines = b"".join(request_line(f"{API_KEY}-{n}") + b"\n" for n in range(2))
    async with raw_api([failed_batch(1)], lambda _: (b"200 OK", {}, lines)) as url:
        result = await sync(Settings(db=db_path, base_url=url, api_key=API_KEY), retry=RETRY)
    said = " ".join(result.warnings)
    assert "its 2 request lines were each left out, their custom_id holding the API key" in said
    assert "proxy" not in said
    assert API_KEY not in said


async def test_a_file_expired_for_good_by_one_account_is_asked_once_of_the_other(
    db_path: Path,
) -> None:
    """Cron jobs of their own: a gateway 404ing every file synced six times first, and the
    other account, whose incremental walk no longer listed the batch, never asked."""
    batch = failed_batch(1)
    batch.update(status="in_progress", error_file_id=None)
    listed_directly = [batch]
    async with (
        raw_api([batch], lambda _: NO_SUCH_FILE) as gateway_url,
        raw_api(listed_directly, lambda _: (b"200 OK", {}, error_lines(2))) as direct_url,
    ):
        gateway, direct = (
            Settings(db=db_path, account=name, base_url=url, api_key=API_KEY)
            for name, url in (("gateway", gateway_url), ("direct", direct_url))
        )
        await sync(gateway, retry=RETRY)
        await sync(direct, retry=RETRY)  # lists it in flight
        batch.update(status="failed", error_file_id="file-err-1")
        for _ in range(EXPIRED_FOR_GOOD):
            await sync(gateway, retry=RETRY)
        assert file_not_found_runs(db_path) == [("expired", EXPIRED_FOR_GOOD)]
        listed_directly.clear()  # its incremental walk no longer reaches the batch
        await sync(direct, retry=RETRY)
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 1}, 2)


async def test_a_file_expired_for_good_is_not_asked_again_for_an_account_not_asking_its_kind(
    db_path: Path,
) -> None:
    """An account asking for no output files listed the batch on each sync: the output
    file expired for good was reopened each time, and asked again of the other, for ever."""
    batch = failed_batch(1, output=True)
    asked: Counter[str] = Counter()

    def answer(file_id: str) -> RawAnswer:
        asked[file_id] += 1
        if file_id == "file-out-1":
            return NO_SUCH_FILE
        return b"200 OK", {}, error_lines(2)

    async with raw_api([batch], answer) as url:
        outputs = Settings(db=db_path, account="a", base_url=url, api_key=API_KEY, outputs=True)
        errors_only = Settings(db=db_path, account="b", base_url=url, api_key=API_KEY)
        await sync(outputs, retry=RETRY)
        for _ in range(EXPIRED_FOR_GOOD + 3):
            await sync_accounts([outputs, errors_only], retry=RETRY)
    assert asked["file-out-1"] == EXPIRED_FOR_GOOD


async def test_a_batch_ended_stays_ended_whatever_a_stale_listing_says(db_path: Path) -> None:
    """Another account's caching gateway listing a completed batch in flight moved it back
    to in_progress, its file id and completion gone, and forth on every sync; once that
    was refused, its error lines were still deleted, and it was counted updated."""
    ended = failed_batch(1)
    ended["errors"] = {"object": "list", "data": [{"code": "invalid_json", "line": 1}]}
    stale = {**failed_batch(1), "status": "in_progress", "error_file_id": None, "errors": None}
    answer = lambda _: (b"200 OK", {}, error_lines(2))  # noqa: E731
    async with raw_api([ended], answer) as direct_url, raw_api([stale], answer) as cached_url:
        await sync(Settings(db=db_path, account="direct", base_url=direct_url, api_key=API_KEY))
        cached = Settings(db=db_path, account="cached", base_url=cached_url, api_key=API_KEY)
        result = await sync(cached)
    assert (result.batches_new, result.batches_updated) == (0, 0)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        query = "SELECT status, error_file_id FROM batches"
        assert conn.execute(query).fetchall() == [("completed", "file-err-1")]
        assert conn.execute("SELECT code FROM batch_errors").fetchall() == [("invalid_json",)]


async def test_another_accounts_listing_of_a_batch_ended_does_not_store_over_it(
    db_path: Path,
) -> None:
    """A gateway listing the batches with `errors` null wiped their error lines whenever
    its account synced after the owner's: the last to list a batch decided what it held."""
    ended = failed_batch(1)
    ended["errors"] = {"object": "list", "data": [{"code": "invalid_json", "line": 1}]}
    stripped = {**ended, "errors": None, "request_counts": None}
    answer = lambda _: (b"200 OK", {}, error_lines(2))  # noqa: E731
    async with raw_api([ended], answer) as direct_url, raw_api([stripped], answer) as gw_url:
        direct = Settings(db=db_path, account="direct", base_url=direct_url, api_key=API_KEY)
        gateway = Settings(db=db_path, account="gateway", base_url=gw_url, api_key=API_KEY)
        await sync(direct)
        result = await sync(gateway)
    assert (result.batches_new, result.batches_updated) == (0, 0)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        query = "SELECT account, listed_by, request_counts_failed FROM batches"
        assert conn.execute(query).fetchall() == [("direct", "gateway", 2)]
        assert conn.execute("SELECT code FROM batch_errors").fetchall() == [("invalid_json",)]


async def test_a_listing_of_a_batch_ended_saying_less_than_stored_does_not_store_over_it(
    db_path: Path,
) -> None:
    """The owner's gateway listing an ended batch without `errors` and `usage` wiped what
    the other account's listing had stored of it (error lines, tokens, costs)."""
    in_flight = {**failed_batch(1), "status": "in_progress", "error_file_id": None}
    ended = {
        **failed_batch(1),
        "errors": {"object": "list", "data": [{"code": "invalid_json", "line": 1}]},
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
    }
    listed_by_owner = [in_flight]
    answer = lambda _: (b"200 OK", {}, error_lines(2))  # noqa: E731
    async with (
        raw_api(listed_by_owner, answer) as owner_url,
        raw_api([ended], answer) as reader_url,
    ):
        owner, reader = accounts_at(db_path, owner=owner_url, reader=reader_url)
        await sync(owner, retry=RETRY)  # owns it, in flight
        await sync(reader, retry=RETRY)  # stores it ended
        listed_by_owner[0] = {**ended, "errors": None, "usage": None}
        result = await sync(owner, retry=RETRY)
    assert result.batches_updated == 0
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        query = "SELECT account, raw ->> '$.usage.total_tokens' FROM batches"
        assert conn.execute(query).fetchall() == [("owner", 15)]
        assert conn.execute("SELECT code FROM batch_errors").fetchall() == [("invalid_json",)]


async def test_a_batch_in_flight_never_moves_back_a_stage_for_a_stale_listing(
    db_path: Path,
) -> None:
    """A caching gateway listing a finalizing batch as validating moved it back, and it
    stayed so until the next refresh by id."""
    finalizing = {**failed_batch(1), "status": "finalizing", "error_file_id": None}
    stale = {**finalizing, "status": "validating"}
    answer = lambda _: NO_SUCH_FILE  # noqa: E731
    async with raw_api([finalizing], answer) as direct_url, raw_api([stale], answer) as cached_url:
        await sync(Settings(db=db_path, account="direct", base_url=direct_url, api_key=API_KEY))
        cached = Settings(db=db_path, account="cached", base_url=cached_url, api_key=API_KEY)
        result = await sync(cached)
    assert (result.batches_new, result.batches_updated) == (0, 0)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT status FROM batches").fetchall() == [("finalizing",)]


def test_lines_are_split_whatever_the_chunks() -> None:
    text = b'{"a": 1}\n\n{"b": 2}\n{"c": 3}'
    for size in (1, 2, 3, 7, len(text)):
        buffer = LineBuffer()
        blocks = [buffer.feed(text[i : i + size]) for i in range(0, len(text), size)]
        lines = [line for block in blocks if block is not None for line in block.split(b"\n")]
        lines += buffer.end()
        assert [bytes(line) for line in lines] == [b'{"a": 1}', b"", b'{"b": 2}', b'{"c": 3}']


def request_line(custom_id: str, message: str = "The request timed out.") -> bytes:
    return json.dumps(
        {
            "id": "batch_req_1",
            "custom_id": custom_id,
            "response": None,
            "error": {"code": "request_timeout", "message": message},
        },
        ensure_ascii=False,
    ).encode()


# Lines that each need a look of their own (see text_for_sqlite, and the blank ones skipped).
ODD_LINES = {
    "empty": b"",
    "spaces": b"   ",
    "carriage return": b"\r",
    "byte order mark": "\ufeff".encode() + request_line("bom"),
    "escaped letter": request_line("esc").replace(b"timed", b"\\u0074imed"),
    "escaped nul": request_line("e\\u0000x"),
    "nul byte": request_line("nul").replace(b"timed", b"ti\x00med"),
    "not UTF-8": request_line("latin").replace(b"timed", b"t\xe9med"),
    "the key": request_line("key", f"Incorrect API key provided: {API_KEY}"),
    "a run of the key": request_line("run", f"key ...{API_KEY[10:60]}..."),
    "long": request_line("long", "x" * SQL_LINE_BYTES),
    "long in letters of 2 bytes": request_line("wide", "é" * (SQL_LINE_BYTES // 2)),
    "an array": b"[1, 2]",
    "not JSON": b"not json",
    "a character after {": b"|x",
    "CRLF": request_line("crlf") + b"\r",
    "no custom_id": b'{"id": "batch_req_2"}',
}


async def read_in_chunks(data: bytes, secret: str | None) -> tuple[Any, ...]:
    """What read_requests hands on and notes for `data`, read 64 KiB at a time."""
    saved: list[tuple[list[tuple[int, str]], list[tuple[Any, ...]]]] = []

    async def save(read: FileRead, chunk: LineChunk) -> None:
        saved.append((chunk.texts, chunk.rows))

    async def chunks() -> Any:
        for start in range(0, len(data), 2**16):
            yield data[start : start + 2**16]

    file = FileToFetch("file-1", "batch_1", "error", None, 1)
    body = FileBody(chunks(), cut_may_pass_unseen=False)
    read = await read_requests(body, file, save, keep_body=False, secret=secret)
    return saved, read.warnings, read.size


@pytest.mark.parametrize("odd", ODD_LINES.values(), ids=ODD_LINES.keys())
@pytest.mark.parametrize("where", [0, 1, 7])
async def test_lines_looked_at_by_the_chunk_are_stored_as_when_looked_at_one_by_one(
    odd: bytes, where: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk of plain lines is looked at once (request_files.plain_lines); any line in it
    that needs a look of its own sends the chunk line by line: both store the same."""
    lines = [request_line(f"request-{n}") for n in range(10)]
    plain = b"\n".join(lines) + b"\n"
    lines[where] = odd
    data = b"\n".join(lines) + b"\n"
    assert plain_lines(bytearray(plain.rstrip(b"\n")), API_KEY) is not None
    by_chunk = await read_in_chunks(data, API_KEY)
    monkeypatch.setattr(request_files, "plain_lines", lambda block, secret: None)
    assert by_chunk == await read_in_chunks(data, API_KEY)


async def test_a_chunk_of_long_lines_is_committed_before_it_holds_too_many_bytes() -> None:
    """Chunks end at LINES_PER_COMMIT lines, or sooner at BYTES_PER_COMMIT bytes of lines:
    a file of long lines (bodies) keeps memory as flat as one of short lines."""
    line = json.dumps({"custom_id": "r", "response": {"body": {"text": "x" * 100_000}}})
    data = (line + "\n").encode() * (2 * BYTES_PER_COMMIT // len(line) + 1)
    sizes: list[tuple[int, int]] = []

    async def save(read: FileRead, chunk: LineChunk) -> None:
        sizes.append((len(chunk), chunk.size))

    async def chunks() -> Any:
        for start in range(0, len(data), 2**16):
            yield data[start : start + 2**16]

    file = FileToFetch("file-1", "batch_1", "output", None, 1)
    await read_requests(FileBody(chunks(), cut_may_pass_unseen=False), file, save, keep_body=True)
    assert sum(lines for lines, _ in sizes) == data.count(b"\n")
    assert len(sizes) > 1
    assert all(lines < LINES_PER_COMMIT for lines, _ in sizes)
    assert all(size < BYTES_PER_COMMIT + len(line) + 2**16 for _, size in sizes)


FILE_FAULTS = {
    "dropped mid-body": {"file_drop_rate": 0.3},
    "cut short": {"file_truncate_rate": 0.3},
    "server errors": {"error_rate": 0.1},
}


@pytest.mark.parametrize("faults", FILE_FAULTS.values(), ids=FILE_FAULTS.keys())
async def test_a_file_cut_short_is_read_again_and_lands_once(
    db_path: Path, faults: dict[str, Any]
) -> None:
    async with FakeApiServer(FakeApiOptions(batches=300, seed=5, **faults)) as server:
        result = await sync(settings_for(server, db_path), retry=RETRY)
        expected = expected_rows(server, {"error"})
        stats = server.stats
        injected = stats.file_dropped + stats.file_truncated + stats.errors
    assert result.complete
    assert injected > 0
    assert stored_rows(db_path) == expected
    assert result.retries >= stats.file_dropped + stats.file_truncated
    assert file_states(db_path) == {"complete": result.files}


async def test_a_deleted_file_is_asked_for_on_three_syncs_then_taken_as_expired(
    db_path: Path,
) -> None:
    """A 404 is recorded expired, and asked again on the next two syncs (one 404 may be a
    blip): after three in a row, no more."""
    options = FakeApiOptions(batches=300, seed=6, deleted_file_rate=0.3)
    async with FakeApiServer(options) as server:
        settings = settings_for(server, db_path)
        first = await sync(settings, retry=RETRY)
        expected = expected_rows(server, {"error"})
        asked = [server.stats.requests["file_content"]]
        for _ in range(3):
            again = await sync(settings, retry=RETRY)
            assert (again.complete, again.files) == (True, 0)
            asked.append(server.stats.requests["file_content"])
    assert first.complete
    assert stored_rows(db_path) == expected
    states = file_states(db_path)
    deleted = asked[0] - first.files
    assert deleted > 0
    assert states == {"complete": first.files, "expired": deleted}
    assert [b - a for a, b in itertools.pairwise(asked)] == [deleted, deleted, 0]


async def test_a_file_answering_404_once_is_stored_when_it_answers_again(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """One 404 for a freshly completed batch's file (a replica behind) once marked it
    expired for good: it is asked for again on the next sync, and stored."""
    batch = make_batch(1, status="failed", error_file_id="file-err-1", output_file_id=None)
    line = {"custom_id": "r1", "response": None, "error": {"code": "batch_expired"}}
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY)
    missing = {
        "error": {"message": "No such File object: file-err-1", "type": "invalid_request_error"}
    }
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        mock.get(f"{BASE_URL}/files/file-err-1/content", status=404, payload=missing)
        await sync(settings, retry=fast_retry)
    assert file_states(db_path) == {"expired": 1}
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        mock.get(f"{BASE_URL}/files/file-err-1/content", body=json.dumps(line).encode())
        result = await sync(settings, retry=fast_retry)
    assert (result.files, result.request_lines) == (1, 1)
    assert file_states(db_path) == {"complete": 1}


async def test_bodies_are_kept_only_when_asked_for(db_path: Path) -> None:
    async with FakeApiServer(FakeApiOptions(batches=60, seed=3)) as server:
        await sync(settings_for(server, db_path, outputs=True, bodies=True), retry=RETRY)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        kinds = dict(conn.execute("SELECT kind, count(body) FROM batch_requests GROUP BY kind"))
        body, usage = conn.execute(
            "SELECT body, total_tokens FROM batch_requests WHERE kind = 'output' LIMIT 1"
        ).fetchone()
    assert kinds["output"] > 0
    assert json.loads(body)["usage"]["total_tokens"] == usage


async def test_output_files_asked_for_later_are_backfilled(db_path: Path) -> None:
    """Files recorded while outputs were off are fetched by the first run that wants them."""
    async with FakeApiServer(FakeApiOptions(batches=100, seed=3)) as server:
        await sync(settings_for(server, db_path), retry=RETRY)
        later = await sync(settings_for(server, db_path, outputs=True), retry=RETRY)
        expected = expected_rows(server, {"error", "output"})
    assert later.complete
    assert later.files > 0
    assert stored_rows(db_path) == expected


async def test_bodies_asked_for_later_are_filled_in_once(db_path: Path) -> None:
    """A run keeping bodies reads again the files stored without them: turning bodies on
    after earlier syncs fills them in, as turning outputs on fetches the output files."""
    async with FakeApiServer(FakeApiOptions(batches=60, seed=3)) as server:
        first = await sync(settings_for(server, db_path, outputs=True), retry=RETRY)
        with_bodies = settings_for(server, db_path, outputs=True, bodies=True)
        later = await sync(with_bodies, retry=RETRY)
        again = await sync(with_bodies, retry=RETRY)
        expected = expected_rows(server, {"error", "output"})
    assert (first.files, later.files, again.files) == (first.files, first.files, 0)
    assert first.files > 0
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        (without,) = conn.execute(
            "SELECT count(*) FROM batch_requests WHERE kind = 'output' AND body IS NULL"
        ).fetchone()
    assert without == 0
    assert [row[:-1] for row in stored_rows(db_path)] == [row[:-1] for row in expected]


async def test_a_file_gone_before_its_bodies_were_asked_for_keeps_its_lines(
    db_path: Path,
) -> None:
    """Files deleted since they were stored without bodies answer 404: they stay complete
    with their lines, are asked on three syncs (a 404 may be a blip), and then no more."""
    options = FakeApiOptions(batches=300, seed=6)
    async with FakeApiServer(options) as server:
        first = await sync(settings_for(server, db_path), retry=RETRY)
    stored = stored_rows(db_path)
    async with FakeApiServer(dataclasses.replace(options, deleted_file_rate=0.3)) as server:
        settings = settings_for(server, db_path, bodies=True)
        runs, asked = [], [0]
        for _ in range(4):
            runs.append(await sync(settings, retry=RETRY))
            asked.append(server.stats.requests["file_content"])
    gone = first.files - runs[0].files
    assert gone > 0
    assert [run.files for run in runs] == [first.files - gone, 0, 0, 0]
    assert [b - a for a, b in itertools.pairwise(asked)] == [first.files, gone, gone, 0]
    assert all("its lines stay as they were stored" in run.warnings[0] for run in runs[:3])
    assert file_states(db_path) == {"complete": first.files}
    kept = {row[:2]: row for row in stored}
    assert {row[:2] for row in stored_rows(db_path)} == set(kept)


async def test_an_error_file_holding_more_lines_than_counted_is_no_cut(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """An expired batch counts the requests that failed; its error file holds a line too
    for each never run (`batch_expired`): every expired batch was warned of as "a transfer
    cut short?" (pass 72B). Fewer lines than counted may be a cut; more are none."""
    batch = make_batch(
        1, status="expired", error_file_id="file-err-1", request_counts={"total": 6, "failed": 1}
    )
    lines = [{"custom_id": f"r{n}", "response": None, "error": {"code": "batch_expired"}}
             for n in range(6)]  # fmt: skip
    content = "".join(json.dumps(line) + "\n" for line in lines)
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        mock.get(f"{BASE_URL}/files/file-err-1/content", body=content.encode())
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.request_lines) == (True, 6)
    assert result.warnings == ()


async def test_odd_lines_are_named_and_the_rest_of_the_file_stored(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """A line that is not JSON, one without a custom_id, and text SQLite cannot store:
    each is named in a warning; every other line lands."""
    batch = make_batch(1, error_file_id="file-err-1", request_counts={"total": 4, "failed": 4})
    good = {"custom_id": "ok", "response": None, "error": {"code": "batch_expired"}}
    lone = {"custom_id": "odd", "response": None, "error": {"message": "a\ud800b"}}
    content = "\n".join(
        [json.dumps(good), "{not json", json.dumps({"id": "x"}), json.dumps(lone), ""]
    )
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        mock.get(f"{BASE_URL}/files/file-err-1/content", body=content.encode())
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.files, result.request_lines) == (True, 1, 2)
    assert result.warnings == (
        "file file-err-1 line 2: not JSON, not stored",
        "file file-err-1 line 3: no custom_id, not stored",
        f"file file-err-1: batch {batch['id']}: error_message holds a lone surrogate: replaced",
        f"file file-err-1 of batch {batch['id']} holds 2 request lines where the batch counts "
        "4 (a transfer cut short?)",
    )
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        messages = dict(conn.execute("SELECT custom_id, error_message FROM batch_requests"))
    assert messages == {"ok": None, "odd": "a\ufffdb"}


async def test_a_line_holding_the_key_is_stored_masked(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """A server echoing the key into a request's error: stored with the key masked, and
    the lines around it stored as usual."""
    batch = make_batch(1, status="failed", error_file_id="file-err-1", output_file_id=None)
    echo = {"custom_id": "echo", "response": None, "error": {"message": f"bad key {API_KEY}"}}
    plain = {"custom_id": "plain", "response": None, "error": {"message": "expired"}}
    content = "\n".join([json.dumps(echo), json.dumps(plain), ""])
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        mock.get(f"{BASE_URL}/files/file-err-1/content", body=content.encode())
        result = await sync(settings, retry=fast_retry)
    assert result.request_lines == 2
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        dump = "\n".join(conn.iterdump())
        messages = dict(conn.execute("SELECT custom_id, error_message FROM batch_requests"))
    assert API_KEY not in dump
    assert messages == {"echo": "bad key ***", "plain": "expired"}


@pytest.mark.parametrize("share", [1, 10], ids=["every-character", "one-in-ten"])
async def test_a_key_spelled_in_json_escapes_is_stored_masked(
    db_path: Path, fast_retry: RetryPolicy, share: int
) -> None:
    """A server writing the key as \\u escapes: SQLite would decode them after the search
    for the key had run on the line's text. Such a line is decoded first, then masked."""
    spelled = "".join(f"\\u{ord(c):04x}" if i % share == 0 else c for i, c in enumerate(API_KEY))
    batch = make_batch(1, status="failed", error_file_id="file-err-1", output_file_id=None)
    line = '{"custom_id": "echo", "response": null, "error": {"message": "bad key %s"}}'
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        mock.get(f"{BASE_URL}/files/file-err-1/content", body=(line % spelled).encode())
        result = await sync(settings, retry=fast_retry)
    assert result.request_lines == 1
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        dump = "\n".join(conn.iterdump())
        message = conn.execute("SELECT error_message FROM batch_requests").fetchone()
    assert API_KEY[:16] not in dump
    assert message == ("bad key ***",)


async def test_a_line_holding_part_of_the_key_is_masked_and_a_custom_id_holding_it_left_out(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """16 characters of the key identify it: masked in a message; as a custom_id (which,
    masked, could merge with another line's) the line is left out with a warning."""
    run = API_KEY[3:21]
    batch = make_batch(1, status="failed", error_file_id="file-err-1", output_file_id=None)
    lines = [
        {"custom_id": "echo", "response": None, "error": {"message": f"bad key {run}..."}},
        {"custom_id": f"req-{run}-1", "response": None, "error": {"code": "batch_expired"}},
        {"custom_id": f"req-{run}-2", "response": None, "error": {"code": "batch_expired"}},
    ]
    content = "\n".join([*map(json.dumps, lines), ""])
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        mock.get(f"{BASE_URL}/files/file-err-1/content", body=content.encode())
        result = await sync(settings, retry=fast_retry)
    assert result.request_lines == 1
    assert result.warnings[:2] == tuple(
        f"file file-err-1 line {n}: custom_id holds a secret (a key, a token or a proxy "
        "credential), not stored"
        for n in (2, 3)
    )
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        dump = "\n".join(conn.iterdump())
        messages = dict(conn.execute("SELECT custom_id, error_message FROM batch_requests"))
    assert run not in dump
    assert messages == {"echo": "bad key ***..."}


async def test_a_time_budget_abandons_a_download_still_going_and_the_file_stays_to_fetch(
    db_path: Path,
) -> None:
    """A file that stops coming (the server holds it; no read timeout would cut it for an
    hour) is abandoned when --max-seconds runs out: the run ends partial, the file is
    still to fetch, and the next sync stores it whole. The run says so: the file is read
    from its first line again, and one that never fits in the budget never completes (a
    cron run with a short budget said nothing, and resumed nothing, run after run)."""
    options = FakeApiOptions(batches=12, seed=3, requests_per_batch=3000)
    async with FakeApiServer(options) as server:
        server.hold_file_contents(lines=1000)
        settings = Settings(
            db=db_path,
            base_url=server.base_url,
            api_key=options.api_key,
            outputs=True,
            read_timeout=3600,
            max_seconds=1,
        )
        result = await sync(settings)
        assert not result.complete
        (said,) = [w for w in result.warnings if "time budget" in w]
        assert said.startswith("the time budget (--max-seconds) ended ")
        assert "files in flight" in said
        assert said.endswith("if these come back, give one sync more time, or none")
        assert file_states(db_path, "output").get("complete", 0) < sum(
            file_states(db_path, "output").values()
        )
        server.release_file_contents()
        again = await sync(dataclasses.replace(settings, max_seconds=None))
        assert again.complete
        assert stored_rows(db_path) == expected_rows(server, {"error", "output"})


@pytest.mark.parametrize(
    "shared", [False, True], ids=["files of their own", "one file named twice"]
)
async def test_files_the_budget_cut_wait_behind_the_others_next_sync(
    db_path: Path, shared: bool
) -> None:
    """Files longer to download than the budget were claimed first on every sync: as many
    of them as workers held every worker until the budget ended, and no other file was
    ever fetched. Cut, they are asked for after the others next sync (a file two batches
    name, moved behind them, failed every sync on a rowid taken twice)."""
    batches = [failed_batch(n) for n in range(6, 0, -1)]
    slow = {"file-err-6", "file-err-5"}
    if shared:
        batches[0]["error_file_id"] = batches[2]["error_file_id"] = "file-err-5"
        slow = {"file-err-5"}
    release = asyncio.Event()
    asked: list[list[str]] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/batches":
            return web.json_response(list_body(batches, False))
        file_id = request.match_info["file_id"]
        asked[-1].append(file_id)
        if file_id in slow:
            await release.wait()  # longer than any budget
        return web.Response(body=error_lines(2))

    routes = {"/v1/batches": answer, "/v1/files/{file_id}/content": answer}
    async with serving(routes) as root:
        settings = Settings(
            db=db_path, base_url=f"{root}/v1", api_key=API_KEY, concurrency=2, max_seconds=2
        )
        try:
            for _ in range(2):
                asked.append([])
                result = await sync(settings, retry=RETRY)
                assert not result.complete
        finally:
            release.set()
    assert slow <= set(asked[0][:2])
    if not shared:  # else another batch's row of the same file comes first: asked again
        assert not slow & set(asked[1][:2])


async def test_a_file_beginning_with_a_byte_order_mark_keeps_its_first_line(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """A UTF-8 byte order mark (a file written by a Windows tool) once cost the first line."""
    counts = {"total": 2, "completed": 0, "failed": 2}
    batch = make_batch(
        1, status="failed", error_file_id="file-err-1", output_file_id=None, request_counts=counts
    )
    lines = [{"custom_id": f"r{n}", "response": None, "error": {"code": "x"}} for n in (1, 2)]
    content = "\ufeff" + "\n".join(map(json.dumps, lines)) + "\n"
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        mock.get(f"{BASE_URL}/files/file-err-1/content", body=content.encode())
        result = await sync(settings, retry=fast_retry)
    assert (result.request_lines, result.warnings) == (2, ())


async def test_custom_ids_apart_only_after_a_nul_are_two_requests(db_path: Path) -> None:
    """SQLite's JSON functions end a text at a NUL: "a\\u0000b" and "a\\u0000c" were both
    stored as "a", one outcome lost without a word. Such lines are mapped in Python."""
    lines = [{"custom_id": f"a\u0000{end}", "response": {"status_code": 400}} for end in "bc"]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    async with raw_api([failed_batch(1)], lambda _: (b"200 OK", {}, content)) as url:
        result = await sync(Settings(db=db_path, base_url=url, api_key=API_KEY), retry=RETRY)
    assert (result.request_lines, result.warnings) == (2, ())
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        stored = conn.execute("SELECT custom_id FROM batch_requests ORDER BY 1").fetchall()
    assert stored == [("a\0b",), ("a\0c",)]


async def test_a_line_with_a_nul_byte_is_not_json_and_the_next_line_is_kept(
    db_path: Path,
) -> None:
    """SQLite's JSON parser stopped at a raw NUL: the line before it passed for the whole
    line, and a line glued after it was lost without a word."""
    content = b'{"custom_id": "a", "response": null}\x00{"custom_id": "b"}\n{"custom_id": "c"}\n'
    async with raw_api([failed_batch(1)], lambda _: (b"200 OK", {}, content)) as url:
        result = await sync(Settings(db=db_path, base_url=url, api_key=API_KEY), retry=RETRY)
    assert result.request_lines == 1
    assert any("line 1: not JSON" in warning for warning in result.warnings)


async def test_a_batch_naming_another_file_has_it_fetched_and_the_old_lines_dropped(
    db_path: Path,
) -> None:
    """A finished batch whose error file id changed (a gateway minting new ids) kept the
    old file's row and lines, the new file never fetched, even with --full. The old lines
    stay until the new file is stored: it may be gone (404) already."""
    files = {"file-A": error_lines(3), "file-B": error_lines(5).replace(b'"r', b'"b')}
    served = {"file-A"}

    def file_answer(file_id: str) -> RawAnswer:
        if file_id in served:
            return b"200 OK", {}, files[file_id]
        gone = {"error": {"message": f"No such File object: {file_id}", "type": "invalid"}}
        return b"404 Not Found", {"Content-Type": "application/json"}, json.dumps(gone).encode()

    def stored(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            state = conn.execute("SELECT file_id, state FROM batch_files").fetchall()
            requests = conn.execute("SELECT file_id, count(*) FROM batch_requests GROUP BY 1")
            return state, requests.fetchall()

    batch = failed_batch(1, lines=3)
    batch["error_file_id"] = "file-A"
    async with raw_api([batch], file_answer) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        await sync(settings, retry=RETRY)
        batch.update(
            error_file_id="file-B", request_counts={"total": 5, "completed": 0, "failed": 5}
        )
        await sync(settings, full=True, retry=RETRY)
        assert stored(db_path) == ([("file-B", "expired")], [("file-A", 3)])
        served.add("file-B")
        result = await sync(settings, full=True, retry=RETRY)
    assert (result.request_lines, result.warnings) == (5, ())
    assert stored(db_path) == ([("file-B", "complete")], [("file-B", 5)])


@pytest.mark.parametrize(
    "answer",
    [
        (b"200 OK", {"Content-Type": "text/html"}, b"<html><body>Sign in</body></html>\n"),
        (b"200 OK", {}, b'{"error": {"message": "try later"}}\n'),
        (b"200 OK", {"Content-Encoding": "gzip"}, b""),
    ],
    ids=["a proxy's page", "an error object", "an empty gzip body"],
)
async def test_a_file_answered_without_one_request_line_is_asked_again_next_sync(
    db_path: Path, answer: RawAnswer
) -> None:
    """It was recorded complete with 0 lines, and never asked for again."""
    answers = iter([answer, (b"200 OK", {}, error_lines(2))])
    async with raw_api([failed_batch(1)], lambda _: next(answers)) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        first = await sync(settings, retry=RETRY)
        assert file_states(db_path) == {"failed": 1}
        assert "hold no request line where the batch counts 2" in " ".join(first.warnings)
        again = await sync(settings, retry=RETRY)
    assert (again.request_lines, file_states(db_path)) == (2, {"complete": 1})


@pytest.mark.parametrize(
    ("counts", "body"),
    [(0, b""), (2, b""), (0, b"<html>Sign in</html>\n"), (None, b"")],
    ids=["counted none", "counted some", "a proxy's page", "no counts"],
)
async def test_a_file_empty_on_three_syncs_in_a_row_is_recorded_empty_if_its_batch_counts_none(
    db_path: Path, counts: int | None, body: bytes
) -> None:
    """An error file of a batch where nothing failed, which some servers name: it was
    asked for, and warned about, on every sync for good. Three syncs agreeing end that,
    unless the batch counts requests the file should hold, or counts none at all (a
    compatible server's: a proxy's empty answers would be recorded for good), or what
    came was not empty."""
    batch = failed_batch(1)
    batch["request_counts"] = (
        None if counts is None else {"total": 2, "completed": 2 - counts, "failed": counts}
    )
    async with raw_api([batch], lambda _: (b"200 OK", {}, body)) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        for _ in range(2):
            await sync(settings, retry=RETRY)
            assert file_states(db_path) == {"failed": 1}
        third = await sync(settings, retry=RETRY)
        fourth = await sync(settings, retry=RETRY)
    if counts != 0 or body:
        assert file_states(db_path) == {"failed": 1}
        assert "hold no request line" in " ".join(fourth.warnings)
        return
    assert file_states(db_path) == {"complete": 1}
    assert any("on 3 syncs in a row: recorded empty" in w for w in third.warnings)
    assert (fourth.files, fourth.warnings) == (0, ())


async def test_a_new_file_of_a_batch_is_not_recorded_empty_on_the_old_ones_syncs(
    db_path: Path,
) -> None:
    """A batch naming a new file kept the old one's count of syncs read empty: the new one
    was recorded empty after one reading."""
    batch = failed_batch(1)
    batch["request_counts"] = {"total": 2, "completed": 2, "failed": 0}
    asked: list[str] = []

    def file_answer(file_id: str) -> RawAnswer:
        asked.append(file_id)
        return b"200 OK", {}, b""

    async with raw_api([batch], file_answer) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        for _ in range(2):
            await sync(settings, retry=RETRY)
        batch["error_file_id"] = "file-err-new"
        while file_states(db_path) != {"complete": 1} and len(asked) < 10:
            await sync(settings, full=True, retry=RETRY)
    assert asked.count("file-err-new") == EMPTY_AGREEMENT


async def test_files_failing_on_every_sync_do_not_stop_the_files_after_them(
    db_path: Path,
) -> None:
    """Failed files come first in the next sync: three answering 503 for good stopped
    every sync's files before the others (counted as the files route down again)."""
    batches = [failed_batch(n) for n in range(6, 0, -1)]
    broken = {"file-err-6", "file-err-5", "file-err-4"}

    def file_answer(file_id: str) -> RawAnswer:
        return (b"503 Busy", {}, b"") if file_id in broken else (b"200 OK", {}, error_lines(2))

    async with raw_api(batches, file_answer) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY, concurrency=1)
        first = await sync(settings, retry=RETRY)
        assert (first.complete, file_states(db_path)) == (False, {"failed": 3, "pending": 3})
        again = await sync(settings, retry=RETRY)
    assert (again.request_lines, file_states(db_path)) == (6, {"failed": 3, "complete": 3})


async def test_a_file_failed_on_an_earlier_sync_is_asked_once_a_sync(db_path: Path) -> None:
    """Through an outage of the files route, each sync spent the retries of every file that
    had failed before, and 3 more failed each sync: every sync longer than the last."""
    asked: Counter[str] = Counter()

    def file_answer(file_id: str) -> RawAnswer:
        asked[file_id] += 1
        return (b"503 Busy", {}, b"")

    async with raw_api([failed_batch(1)], file_answer) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        await sync(settings, retry=RETRY)
        first = asked["file-err-1"]
        asked.clear()
        for _ in range(2):
            again = await sync(settings, retry=RETRY)
            assert file_states(db_path) == {"failed": 1}
    assert (first, asked["file-err-1"]) == (RETRY.max_attempts, 2)
    assert "asked for again next sync" in " ".join(again.warnings)


async def test_a_file_failed_before_gets_its_retries_once_the_route_answers(
    db_path: Path,
) -> None:
    """Asked once a sync while nothing answers; once a file of the sync is stored, the
    route is up and a file failed before is retried as any (a body cut short, a 429)."""
    batches = [failed_batch(2), failed_batch(1)]  # file-err-2 is recorded first
    busy = {"file-err-1": 99}  # 503s still to answer

    def file_answer(file_id: str) -> RawAnswer:
        if busy.get(file_id, 0) > 0:
            busy[file_id] -= 1
            return (b"503 Busy", {}, b"")
        return (b"200 OK", {}, error_lines(2))

    async with raw_api(batches, file_answer) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY, concurrency=1)
        await sync(settings, retry=RETRY)
        assert file_states(db_path) == {"complete": 1, "failed": 1}
        busy["file-err-1"] = 2
        # file-err-2, stored without bodies, is read again first: the route answers.
        again = await sync(dataclasses.replace(settings, bodies=True), retry=RETRY)
    assert (again.complete, file_states(db_path)) == (True, {"complete": 2})


async def test_files_read_again_for_bodies_stop_when_the_files_route_is_down(
    db_path: Path,
) -> None:
    """Files stored without bodies, read again for them while the files route answers 503,
    count toward the three failures in a row that stop the run's files, as fresh files do,
    and files failed before (not counted) no longer hide them. Every file was asked for
    until its retries ran out: hours for thousands of files."""
    batches = [failed_batch(n) for n in range(10, 0, -1)]
    down: set[str] = {f"file-err-{n}" for n in range(10, 0, -2)}  # every other one, first
    asked: list[str] = []

    def file_answer(file_id: str) -> RawAnswer:
        asked.append(file_id)
        return (b"503 Busy", {}, b"") if file_id in down else (b"200 OK", {}, error_lines(2))

    async with raw_api(batches, file_answer) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY, concurrency=1)
        first = await sync(settings, retry=RETRY)
        assert file_states(db_path) == {"failed": 5, "complete": 5}
        down |= {f"file-err-{n}" for n in range(1, 11)}
        asked.clear()
        later = await sync(dataclasses.replace(settings, bodies=True), retry=RETRY)
    assert first.complete
    assert not later.complete
    # Positions 1 to 6 (failed before, then stored without bodies, in turn): stopped at the
    # third of the latter.
    assert sorted(set(asked)) == sorted(f"file-err-{n}" for n in range(10, 4, -1))


async def test_files_in_flight_when_the_files_route_is_found_down_stay_to_fetch(
    db_path: Path,
) -> None:
    """The three failures in a row that stop a run's files are the only files it records
    failed: those in flight then stay as they were. They were recorded failed too, and in
    an outage each sync added about --concurrency files retried in full on every later one."""
    batches = [failed_batch(n) for n in range(12, 0, -1)]
    async with raw_api(batches, lambda _: (b"503 Busy", {}, b"")) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY, concurrency=4)
        result = await sync(settings, retry=RETRY)
    assert not result.complete
    assert file_states(db_path) == {"failed": FAILURES_IN_A_ROW, "pending": 12 - FAILURES_IN_A_ROW}


async def test_a_file_in_flight_when_the_files_route_is_found_down_is_left_at_once(
    db_path: Path,
) -> None:
    """A file claimed just before the third failure in a row stopped the run's files read
    on to its last retry: a silent files route kept the run about twice as long as the
    README says (pass 65B). It is left to fetch, as it stood, at once."""
    silent_asked, sync_done = asyncio.Event(), asyncio.Event()
    silent = "file-err-1"

    async def listing(_: web.Request) -> web.Response:
        return web.json_response(list_body([failed_batch(n) for n in (4, 3, 2, 1)], False))

    async def content(request: web.Request) -> web.StreamResponse:
        if request.match_info["file_id"] != silent:
            await silent_asked.wait()  # failing while the silent file is in flight
            return web.Response(status=503, text="busy")
        silent_asked.set()
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(error_lines(1))
        await sync_done.wait()  # then silent until the sync is over
        return response

    routes = {"/v1/batches": listing, "/v1/files/{file_id}/content": content}
    async with serving(routes) as url:
        # Silent, the file is retried after each read timeout, to its last attempt.
        settings = Settings(
            db=db_path, base_url=f"{url}/v1", api_key=API_KEY, concurrency=4, read_timeout=2
        )
        try:
            result = await sync(settings, retry=RETRY)
        finally:
            sync_done.set()
    assert not result.complete
    assert result.warnings[0].startswith(f"{FAILURES_IN_A_ROW} request files in a row failed")
    assert file_states(db_path) == {"failed": FAILURES_IN_A_ROW, "pending": 1}
    assert result.retries < RETRY.max_attempts * FAILURES_IN_A_ROW


async def test_a_file_out_of_the_keys_reach_fails_alone(db_path: Path) -> None:
    """A 403 on one file ended the run (exit 1) before the files after it, on every sync."""
    refused = {"error": {"message": "Missing scopes: api.files.read", "type": "invalid"}}

    def file_answer(file_id: str) -> RawAnswer:
        if file_id == "file-err-2":
            return b"403 Forbidden", {}, json.dumps(refused).encode()
        return b"200 OK", {}, error_lines(2)

    async with raw_api([failed_batch(n) for n in (3, 2, 1)], file_answer) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY, concurrency=1)
        result = await sync(settings, retry=RETRY)
        again = await sync(settings, retry=RETRY)  # the refused file alone is asked
    assert (result.complete, result.request_lines) == (True, 4)
    assert file_states(db_path) == {"failed": 1, "complete": 2}
    assert "Missing scopes" in " ".join(result.warnings)
    # Not "every request file asked for was refused": this key reads the others.
    assert not any(w.startswith("every request file") for w in again.warnings)


async def test_a_file_two_batches_name_is_stored_for_each(db_path: Path) -> None:
    """A run read a file two batches name for the first alone (claimed by its id): the
    other batch's waited for the next sync, the run complete all the same."""
    batches = [failed_batch(2), failed_batch(1)]
    batches[0]["error_file_id"] = "file-err-1"
    async with raw_api(batches, lambda _: (b"200 OK", {}, error_lines(2))) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        result = await sync(settings, retry=RETRY)
    assert (result.complete, file_states(db_path), len(stored_rows(db_path))) == (
        True,
        {"complete": 2},
        4,
    )


async def test_a_key_that_may_read_no_file_is_told_what_to_do_on_every_sync(
    db_path: Path,
) -> None:
    """A 403 on every file failed each sync (exit 3) with a warning per file and no word of
    why: it now says first that the key may not read files, and what to do, on the sync
    that finds it and every one after (which ask each file once, past the few warnings
    kept). A route that is down says so instead."""
    refused = {"error": {"message": "Missing scopes: api.files.read", "type": "invalid"}}
    batches = [failed_batch(n) for n in range(8, 0, -1)]
    async with raw_api(
        batches, lambda _: (b"403 Forbidden", {}, json.dumps(refused).encode())
    ) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY, concurrency=1)
        results = [await sync(settings, retry=RETRY) for _ in range(2)]
    for result in results:
        assert not result.complete
        assert result.warnings[0].startswith("every request file asked for was refused (HTTP 403)")
        assert "--no-files" in result.warnings[0]
    async with raw_api(batches, lambda _: (b"503 Busy", {}, b"")) as url:
        settings = Settings(db=db_path.with_name("down.db"), base_url=url, api_key=API_KEY)
        result = await sync(settings, retry=RETRY)
    assert result.warnings[0].startswith(f"{FAILURES_IN_A_ROW} request files in a row failed")


NO_FILES_ROUTE: dict[str, RawAnswer] = {
    "no envelope": (b"404 Not Found", {}, json.dumps({"detail": "Not Found"}).encode()),
    "Invalid URL": (
        b"404 Not Found",
        {},
        json.dumps({"error": {"message": "Invalid URL (GET /v1/files/f/content)"}}).encode(),
    ),
}


@pytest.mark.parametrize("answer", list(NO_FILES_ROUTE.values()), ids=list(NO_FILES_ROUTE))
async def test_an_api_without_the_files_route_is_told_what_to_do_on_every_sync(
    db_path: Path, answer: RawAnswer
) -> None:
    """A 404 for the path of every file (a proxy, a compatible server without the files
    route): each sync asked for every file, ended complete (exit 0) with a warning per
    file, and said nothing of the route or of --no-files. The breaker now stops the fresh
    files as for an outage, and each sync, the one that finds it and every later one (which
    asks each file once), says first that the API serves no files there, and is partial."""
    asked: Counter[str] = Counter()

    def no_route(file_id: str) -> RawAnswer:
        asked[file_id] += 1
        return answer

    batches = [failed_batch(n) for n in range(8, 0, -1)]
    asks_per_sync = []
    async with raw_api(batches, no_route) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY, concurrency=1)
        for _ in range(4):
            asked_before = asked.total()
            result = await sync(settings, retry=RETRY)
            asks_per_sync.append(asked.total() - asked_before)
            assert not result.complete
            assert result.warnings[0].startswith(
                "every request file asked for answered HTTP 404 for the path"
            )
            assert "--no-files" in result.warnings[0]
    # FAILURES_IN_A_ROW fresh files a sync, and each failed before once: then all, once.
    assert asks_per_sync == [3, 6, 8, 8]
    assert sorted(asked.values(), reverse=True) == [4, 4, 4, 3, 3, 3, 2, 2]
    assert file_states(db_path) == {"failed": 8}


async def test_a_key_refused_every_file_is_partial_once_each_has_failed_before(
    db_path: Path,
) -> None:
    """A 403 on every file: once every file had failed on an earlier sync (none fresh to
    trip the breaker), each sync ended complete (exit 0) though no file can be read."""
    refused = {"error": {"message": "Missing scopes: api.files.read", "type": "invalid"}}
    batches = [failed_batch(n) for n in range(3, 0, -1)]
    async with raw_api(
        batches, lambda _: (b"403 Forbidden", {}, json.dumps(refused).encode())
    ) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY, concurrency=1)
        for _ in range(2):
            result = await sync(settings, retry=RETRY)
            assert not result.complete
            assert result.warnings[0].startswith("every request file asked for was refused")
    assert file_states(db_path) == {"failed": 3}


def test_a_long_line_is_mapped_in_python_not_by_sqlite() -> None:
    """SQLite held about 50 times a long line's size while mapping it (3 GB for 60 MB)."""
    line = json.dumps({"custom_id": "r", "response": {"body": {"x": "y" * SQL_LINE_BYTES}}})
    short = json.dumps({"custom_id": "r", "response": {"body": {"x": "y"}}})
    assert text_for_sqlite(bytearray(line.encode()), None) is None
    assert text_for_sqlite(bytearray(short.encode()), None) == short


class CutOnceServer:
    """An API whose file's first answer is cut short where aiohttp checks nothing: as HTTP/1.0
    answers (no Content-Length, the body ends when the connection closes) cut in the middle
    of the last line, plain or after the first of two gzip members; or gzip-compressed with
    a declared length (aiohttp does not check that a gzip stream ended), cut anywhere or at
    a flush point after a whole line. It lists one completed batch with an error file; the
    next answer is whole.
    """

    def __init__(self, batch: dict[str, Any], lines: list[bytes], *, cut: str) -> None:
        self.batch = batch
        self.lines = lines
        self.content = b"".join(lines)
        self.cut = cut
        self.file_answers = 0

    def gzip_cut_at_a_flush_point(self) -> bytes:
        """The first two thirds of the lines, flushed: a gzip stream with no end."""
        packer = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        body = packer.compress(b"".join(self.lines[: len(self.lines) * 2 // 3]))
        return body + packer.flush(zlib.Z_SYNC_FLUSH)

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        path = request.split(b" ", 2)[1]
        head = b"HTTP/1.0 200 OK\r\n"
        if path.startswith(b"/v1/batches"):
            body = json.dumps(list_body([self.batch], False)).encode()
            head += b"Content-Type: application/json\r\n"
        else:
            self.file_answers += 1
            cut = self.cut if self.file_answers == 1 else ""
            if self.cut == "no declared length":
                body = self.content[:-10] if cut else self.content
            elif self.cut == "no declared length, at a line's end":
                body = b"".join(self.lines[:200]) if cut else self.content
            elif self.cut == "no declared length, lines fewer than counted":
                body = b"".join(self.lines[:200])
            elif self.cut == "no declared length, whole once, then fewer lines":
                body = self.content if self.file_answers == 1 else b"".join(self.lines[:200])
            elif self.cut == "gzip members, no declared length":
                # Two members, the first ending in the middle of a line: cut after it.
                half = len(self.content) // 2 + 7
                body = gzip.compress(self.content[:half])
                body += b"" if cut else gzip.compress(self.content[half:])
                head += b"Content-Encoding: gzip\r\n"
            else:
                body = gzip.compress(self.content)
                if cut == "gzip cut short":
                    body = body[: len(body) * 2 // 3]
                elif cut == "gzip cut at a flush point":
                    body = self.gzip_cut_at_a_flush_point()
                head += b"Content-Encoding: gzip\r\nContent-Length: %d\r\n" % len(body)
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        writer.close()


@pytest.mark.parametrize(
    "cut",
    [
        "no declared length",
        "gzip cut short",
        "gzip cut at a flush point",
        "gzip members, no declared length",
    ],
)
async def test_a_file_cut_where_aiohttp_checks_nothing_is_read_again(
    db_path: Path, cut: str
) -> None:
    """A cut that aiohttp lets pass for the end of the body is caught (a last line broken
    off, a gzip stream without its end): the file is asked again and stored whole, not
    marked complete with its last lines missing."""
    async with cut_once_api(db_path, cut) as (server, settings):
        result = await sync(settings, retry=RETRY)
    assert (result.complete, server.file_answers, result.request_lines) == (True, 2, 300)
    assert result.warnings == ()
    assert file_states(db_path) == {"complete": 1}


@contextlib.asynccontextmanager
async def cut_once_api(db_path: Path, cut: str) -> AsyncIterator[tuple[CutOnceServer, Settings]]:
    """A CutOnceServer on 127.0.0.1 listing a batch whose error file holds the 300 lines
    it counts, and the settings that sync it."""
    batch = make_batch(1, error_file_id="file-err", output_file_id=None)
    batch["request_counts"] = {"total": 300, "completed": 0, "failed": 300}
    error = {"code": "invalid_request", "message": "bad"}
    lines = [
        json.dumps(
            {"id": f"batch_req_{n}", "custom_id": f"r{n}", "response": None, "error": error}
        ).encode()
        + b"\n"
        for n in range(300)
    ]
    server = CutOnceServer(batch, lines, cut=cut)
    listening = await asyncio.start_server(server.answer, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server, Settings(db=db_path, base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY)


async def test_a_file_with_no_declared_length_cut_at_a_lines_end_is_read_again(
    db_path: Path,
) -> None:
    """A body whose end is the connection's close, cut after a whole line: 200 of the 300
    lines the batch counts were stored, the file recorded complete, never read again."""
    async with cut_once_api(db_path, "no declared length, at a line's end") as (server, settings):
        first = await sync(settings, retry=RETRY)
        second = await sync(settings, retry=RETRY)
    assert "the transfer was cut short?" in first.warnings[0]
    assert (server.file_answers, second.request_lines, second.warnings) == (2, 300, ())
    assert file_states(db_path) == {"complete": 1}
    assert len(stored_rows(db_path)) == 300


async def test_a_file_with_no_declared_length_short_twice_is_kept(db_path: Path) -> None:
    """Read short twice (the batch's counts may be off), the file is kept as read, with a
    warning, and not asked for again."""
    async with cut_once_api(db_path, "no declared length, lines fewer than counted") as (
        server,
        settings,
    ):
        for _ in range(3):
            last = await sync(settings, retry=RETRY)
    assert server.file_answers == 2
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 1}, 200)
    assert last.warnings == ()


async def test_a_file_stored_whole_read_short_for_its_bodies_keeps_its_lines(
    db_path: Path,
) -> None:
    """Read again for its bodies (`--bodies`), a file stored whole came short twice: the
    second reading was kept, and 100 of its 300 lines stored were deleted."""
    async with cut_once_api(db_path, "no declared length, whole once, then fewer lines") as (
        server,
        settings,
    ):
        await sync(settings, retry=RETRY)
        for _ in range(3):
            await sync(dataclasses.replace(settings, bodies=True), retry=RETRY)
    assert server.file_answers == 4
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 1}, 300)


async def test_a_file_kept_short_and_read_for_its_bodies_is_read_once(db_path: Path) -> None:
    """Kept as read short twice (its batch's counts off), then read for its bodies: each
    `--bodies` sync asked for it again, its bodies never kept, warning it was not read."""
    async with cut_once_api(db_path, "no declared length, lines fewer than counted") as (
        server,
        settings,
    ):
        for _ in range(2):
            await sync(settings, retry=RETRY)
        for _ in range(3):
            last = await sync(dataclasses.replace(settings, bodies=True), retry=RETRY)
    assert server.file_answers == 3
    assert (file_states(db_path), len(stored_rows(db_path))) == ({"complete": 1}, 200)
    assert last.warnings == ()


# An answer as a raw server sends it: status line, headers, body.
RawAnswer = tuple[bytes, dict[str, str], bytes]
NO_SUCH_FILE: RawAnswer = (
    b"404 Not Found",
    {},
    json.dumps({"error": {"message": "No such File object", "code": None}}).encode(),
)


@contextlib.asynccontextmanager
async def raw_api(
    batches: list[dict[str, Any]], file_answer: Callable[[str], RawAnswer], list_encoding: str = ""
) -> AsyncIterator[str]:
    """An API on 127.0.0.1 answering in HTTP/1.0 with a declared length: `batches` on one
    list page (gzip members, one a batch, when `list_encoding` is "gzip"), and each file
    as `file_answer(file_id)` says. Yields its base URL."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        path = request.split(b" ", 2)[1].decode()
        if path.startswith("/v1/batches"):
            page = json.dumps(list_body(batches, False)).encode()
            status, headers, body = b"200 OK", {"Content-Type": "application/json"}, page
            if list_encoding == "gzip":
                cuts = [page.index(b'{"id"', page.index(b"[") + 1 + at) for at in (0, 10)]
                parts = [page[: cuts[1]], page[cuts[1] :]]
                body = b"".join(gzip.compress(part) for part in parts)
                headers["Content-Encoding"] = "gzip"
        else:
            status, headers, body = file_answer(path.split("/")[3])
        head = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items())
        writer.write(b"HTTP/1.0 %s\r\n%sContent-Length: %d\r\n\r\n" % (status, head, len(body)))
        writer.write(body)
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with listening:
        yield f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/v1"


def error_lines(count: int, prefix: str = "r") -> bytes:
    error = {"code": "invalid_request", "message": "bad"}
    return b"".join(
        json.dumps(
            {"id": f"req_{n}", "custom_id": f"{prefix}{n}", "response": None, "error": error}
        ).encode()
        + b"\n"
        for n in range(count)
    )


def accounts_at(db: Path, **urls: str) -> list[Settings]:
    """The settings of accounts syncing into `db`, each named by its API's URL."""
    return [
        Settings(db=db, account=name, base_url=url, api_key=API_KEY) for name, url in urls.items()
    ]


def counted(asked: Counter[str], name: str, reply: RawAnswer) -> Callable[[str], RawAnswer]:
    """An answer to every file, each ask counted under `name`."""

    def answer(file_id: str) -> RawAnswer:
        asked[name] += 1
        return reply

    return answer


def failed_batch(n: int, lines: int = 2, *, output: bool = False) -> dict[str, Any]:
    """Batch n, every request failed, its error file `file-err-n` (and, with `output`, an
    output file `file-out-n`)."""
    output_file = f"file-out-{n}" if output else None
    batch = make_batch(n, error_file_id=f"file-err-{n}", output_file_id=output_file)
    batch["request_counts"] = {"total": lines, "completed": 0, "failed": lines}
    return batch


async def test_a_file_read_again_holds_only_the_lines_of_its_last_reading(
    db_path: Path,
) -> None:
    """A file cut short after some chunks were committed, then answered whole with other
    lines (a gateway serving another copy): the lines of the attempt cut short go, those
    of the whole one stay. They stayed, and the batch held both."""
    answers = iter(
        [
            gzip.compress(error_lines(3 * LINES_PER_COMMIT, prefix="cut-"))[:-1000],
            gzip.compress(error_lines(5, prefix="whole-")),
        ]
    )
    gzipped = {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}
    batch = failed_batch(1, lines=5)
    async with raw_api([batch], lambda _: (b"200 OK", gzipped, next(answers))) as url:
        result = await sync(Settings(db=db_path, base_url=url, api_key=API_KEY), retry=RETRY)
    assert result.complete
    assert [row[1] for row in stored_rows(db_path)] == [f"whole-{n}" for n in range(5)]


async def test_a_file_read_again_without_a_line_keeps_none_of_a_reading_cut_short(
    db_path: Path,
) -> None:
    """The same, when the whole reading holds no line (an empty answer, for a batch that
    gives no request counts): the lines of the reading cut short stayed, counted as the
    file's."""
    answers = iter([gzip.compress(error_lines(3 * LINES_PER_COMMIT))[:-1000], b""])
    gzipped = {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}
    batch = failed_batch(1)
    batch["request_counts"] = None
    async with raw_api([batch], lambda _: (b"200 OK", gzipped, next(answers))) as url:
        result = await sync(Settings(db=db_path, base_url=url, api_key=API_KEY), retry=RETRY)
    assert result.complete
    assert stored_rows(db_path) == []
    assert file_states(db_path) == {"failed": 1}  # no line is no file: asked again


async def sync_a_new_file_cut_short_then(db_path: Path, second: bytes) -> SyncResult:
    """A batch whose error file is stored whole; then, naming a new file id (a gateway
    minting ids), a sync whose first reading of it is cut short and the next is `second`
    (gzipped): that sync's result."""
    lines = 3 * LINES_PER_COMMIT
    batch = failed_batch(1, lines=lines)
    answers = {
        "file-err-1": iter([error_lines(lines)]),
        # Cut short, the new file's lines take over the old file's by key.
        "file-new": iter([gzip.compress(error_lines(lines))[:-1000], second]),
    }
    gzipped = {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}

    def file_answer(file_id: str) -> RawAnswer:
        body = next(answers[file_id])
        return b"200 OK", gzipped if file_id == "file-new" else {}, body

    async with raw_api([batch], file_answer) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        await sync(settings, retry=RETRY)
        batch["error_file_id"] = "file-new"
        return await sync(settings, full=True, retry=RETRY)


async def test_a_batch_naming_a_new_file_keeps_the_old_lines_while_it_is_cut_short(
    db_path: Path,
) -> None:
    """A gateway minting a new file id, whose first reading is cut short (its lines taking
    over the old file's by key) and the next one empty: the old file's requests stay, as
    promised until the new file is stored whole. The next reading deleted those taken
    over, and they were lost for good once the new file was gone."""
    later = await sync_a_new_file_cut_short_then(db_path, b"")
    assert any("was not stored" in warning for warning in later.warnings)
    assert len(stored_rows(db_path)) == 3 * LINES_PER_COMMIT


async def test_a_new_file_cut_short_then_read_whole_with_other_lines_keeps_only_those(
    db_path: Path,
) -> None:
    """The same, the next reading whole with other custom_ids: the cut reading's lines
    stayed beside the whole one's, the batch holding more requests than it has."""
    lines = 3 * LINES_PER_COMMIT
    whole = gzip.compress(error_lines(lines, prefix="whole-"))
    later = await sync_a_new_file_cut_short_then(db_path, whole)
    assert later.complete
    assert [row[1] for row in stored_rows(db_path)] == sorted(f"whole-{n}" for n in range(lines))


async def test_a_file_read_again_for_its_bodies_with_other_lines_keeps_only_those(
    db_path: Path,
) -> None:
    """A file stored without bodies whose content changed under the same id (other
    custom_ids), read again for its bodies: the old lines stayed beside the new ones."""
    answers = iter([error_lines(2, prefix="old-"), error_lines(2, prefix="new-")])
    async with raw_api([failed_batch(1)], lambda _: (b"200 OK", {}, next(answers))) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        await sync(settings, retry=RETRY)
        await sync(dataclasses.replace(settings, bodies=True), retry=RETRY)
    assert [row[1] for row in stored_rows(db_path)] == ["new-0", "new-1"]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT bodies, lines FROM batch_files").fetchall() == [(1, 2)]


async def test_a_file_read_again_for_its_bodies_without_a_line_is_not_taken_for_them(
    db_path: Path,
) -> None:
    """A file stored without bodies, read again for them, answered without a line (an
    empty 200, a batch giving no request counts): not recorded as stored with bodies,
    which it was, never to be read again."""
    batch = failed_batch(1)
    batch["request_counts"] = None
    answers = iter([error_lines(2), b"", error_lines(2)])
    async with raw_api([batch], lambda _: (b"200 OK", {}, next(answers))) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        await sync(settings, retry=RETRY)
        with_bodies = dataclasses.replace(settings, bodies=True)
        empty = await sync(with_bodies, retry=RETRY)
        whole = await sync(with_bodies, retry=RETRY)
    assert any("hold no request line where it held some" in w for w in empty.warnings)
    assert whole.files == 1
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT bodies, lines FROM batch_files").fetchall() == [(1, 2)]


@pytest.mark.parametrize(
    ("counts", "answer"),
    [
        ({"total": 3, "completed": 0, "failed": 0}, b""),
        (None, b"<html><body>Please wait</body></html>"),
    ],
    ids=["counted 0, empty", "no counts, a proxy's page"],
)
async def test_a_file_answered_without_a_line_is_asked_again_whatever_its_batch_counts(
    db_path: Path, counts: dict[str, int] | None, answer: bytes
) -> None:
    """An expired batch's error file holds its requests never run, which `failed` may not
    count; some servers give no counts. Answered once without a line, it was recorded
    complete with 0 lines and never asked for again."""
    batch = make_batch(1, status="expired", error_file_id="file-err-1", output_file_id=None)
    batch["request_counts"] = counts
    answers = iter([answer, error_lines(3)])
    async with raw_api([batch], lambda _: (b"200 OK", {}, next(answers))) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY)
        first = await sync(settings, retry=RETRY)
        assert file_states(db_path) == {"failed": 1}
        await sync(settings, retry=RETRY)
    assert first.complete
    assert file_states(db_path) == {"complete": 1}
    assert len(stored_rows(db_path)) == 3


async def test_lines_repeating_a_custom_id_are_said_and_the_last_kept(db_path: Path) -> None:
    """A custom_id is one request: a file repeating one (a broken gateway) keeps the last
    line of it, records the requests it holds, and says so. It said nothing."""
    lines = [json.loads(line) for line in error_lines(3).splitlines()]
    lines[1]["custom_id"] = lines[0]["custom_id"]
    lines[1]["error"]["message"] = "the second"
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    plain = {"Content-Type": "application/octet-stream"}
    async with raw_api([failed_batch(1, lines=3)], lambda _: (b"200 OK", plain, body)) as url:
        result = await sync(Settings(db=db_path, base_url=url, api_key=API_KEY), retry=RETRY)
    assert result.complete
    assert [row[1] for row in stored_rows(db_path)] == ["r0", "r2"]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT error_message FROM batch_requests LIMIT 1").fetchone() == (
            "the second",
        )
        assert conn.execute("SELECT lines FROM batch_files").fetchone() == (2,)
    assert any("1 lines repeat the custom_id of another" in w for w in result.warnings)


@pytest.mark.parametrize("escaped", [0, 2], ids=["first mapped in Python", "last"])
async def test_of_lines_repeating_a_custom_id_the_last_is_kept_whichever_maps_it(
    db_path: Path, escaped: int
) -> None:
    """Lines mapped by SQLite and lines mapped in Python (an escape) are stored in the
    file's order: the first was kept when Python mapped the other."""
    lines = [json.loads(line) for line in error_lines(3).splitlines()]
    lines[2]["custom_id"] = lines[0]["custom_id"]
    lines[0]["error"]["message"], lines[2]["error"]["message"] = "first", "last"
    texts = [json.dumps(line).encode() for line in lines]
    escape = (b'"invalid_request"', b'"inv\\u0061lid_request"')  # mapped in Python
    texts[escaped] = texts[escaped].replace(*escape)
    assert escape[1] in texts[escaped]
    body = b"\n".join(texts) + b"\n"
    plain = {"Content-Type": "application/octet-stream"}
    async with raw_api([failed_batch(1, lines=3)], lambda _: (b"200 OK", plain, body)) as url:
        result = await sync(Settings(db=db_path, base_url=url, api_key=API_KEY), retry=RETRY)
    assert result.complete
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        kept = conn.execute("SELECT error_message FROM batch_requests WHERE custom_id = 'r0'")
        assert kept.fetchall() == [("last",)]


async def test_a_deleted_file_answered_gzipped_is_recorded_expired(db_path: Path) -> None:
    """File bodies are decoded by the crawler, error bodies too: a gzip 404 still reads as
    the file gone, not as an unknown route."""
    gone = {"error": {"message": "No such File object: file-gone", "type": "invalid_request_error"}}
    body = gzip.compress(json.dumps(gone).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with raw_api([failed_batch(1)], lambda _: (b"404 Not Found", headers, body)) as url:
        result = await sync(Settings(db=db_path, base_url=url, api_key=API_KEY), retry=RETRY)
    assert result.complete
    assert file_states(db_path) == {"expired": 1}


async def test_files_refused_for_their_encoding_do_not_stop_the_others(db_path: Path) -> None:
    """Three files in a row in an encoding never asked for are those files' fault, not a
    files route down: the files after them are fetched (the breaker stopped the run)."""
    batches = [failed_batch(n) for n in range(6, 0, -1)]

    def file_answer(file_id: str) -> RawAnswer:
        refused = file_id in {"file-err-6", "file-err-5", "file-err-4"}
        return b"200 OK", {"Content-Encoding": "x-custom"} if refused else {}, error_lines(2)

    async with raw_api(batches, file_answer) as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY, concurrency=1)
        result = await sync(settings, retry=RETRY)
    assert (result.complete, result.request_lines) == (True, 6)
    assert file_states(db_path) == {"failed": 3, "complete": 3}


@pytest.mark.parametrize("encoding", ["x-gzip", "GZIP", "identity, gzip"])
async def test_a_file_in_a_name_of_gzip_is_read_as_gzip(db_path: Path, encoding: str) -> None:
    """RFC 9110: x-gzip is gzip; encodings are named in any case; identity changes nothing."""
    answer = (b"200 OK", {"Content-Encoding": encoding}, gzip.compress(error_lines(2)))
    async with raw_api([failed_batch(1)], lambda _: answer) as url:
        result = await sync(Settings(db=db_path, base_url=url, api_key=API_KEY), retry=RETRY)
    assert (result.complete, result.request_lines, result.warnings) == (True, 2, ())


async def test_a_list_page_in_gzip_members_is_read_whole(db_path: Path) -> None:
    """Pages are decoded by batch-crawler too (as files are): gzip members one after another
    are one body."""
    batches = [make_batch(n) for n in range(20, 0, -1)]
    async with raw_api(batches, lambda _: (b"404 Not Found", {}, b""), "gzip") as url:
        settings = Settings(db=db_path, base_url=url, api_key=API_KEY, files=False)
        result = await sync(settings, retry=RETRY)
    assert (result.complete, result.batches_seen) == (True, 20)


async def test_another_accounts_refusals_do_not_keep_a_deleted_file_asked_for_ever(
    db_path: Path,
) -> None:
    """Cron jobs of their own, one account's key refused on every file (403), the other's
    API answering 404: each 403 set the 404s back to none, and the file was asked of both
    on every sync, for ever."""
    refused = (b"403 Forbidden", {}, json.dumps({"error": {"message": "no access"}}).encode())
    asked: Counter[str] = Counter()

    async with (
        raw_api([failed_batch(1)], counted(asked, "owner", refused)) as owner_url,
        raw_api([failed_batch(1)], counted(asked, "other", NO_SUCH_FILE)) as other_url,
    ):
        owner, other = accounts_at(db_path, owner=owner_url, other=other_url)
        for _ in range(EXPIRED_FOR_GOOD + 2):
            await sync(owner, retry=RETRY)
            await sync(other, retry=RETRY)
    assert file_not_found_runs(db_path) == [("expired", EXPIRED_FOR_GOOD)]
    # The 403s say nothing of the file: six 404s, then the owner's one more ask.
    assert (asked["other"], asked["owner"]) == (EXPIRED_FOR_GOOD, EXPIRED_FOR_GOOD + 1)


@pytest.mark.parametrize(
    "then", [b"", gzip.compress(error_lines(2)[len(error_lines(1)) :])], ids=["", "a member"]
)
async def test_a_gzip_file_running_on_in_padding_is_not_read_for_ever_nor_stored_short(
    db_path: Path, then: bytes
) -> None:
    """An error file, one gzip member, then zero padding for as long as the client reads:
    the sync read (and ignored) it for ever. Taking the body as ended after a MiB of it
    stored the file short, as whole, where a member followed. The file fails, to be asked
    again; here the server stops after 8 MiB."""
    batch = failed_batch(1, lines=2)
    bound, sent = 8 * 2**20, 0

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(list_body([batch], False))

    async def content(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        answer = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        await answer.prepare(request)
        await answer.write(gzip.compress(error_lines(1)))
        with contextlib.suppress(ConnectionError):
            padding = 0
            while padding < bound:
                await answer.write(b"\0" * 2**16)
                padding += 2**16
                sent += 2**16
            await answer.write(then)
        return answer

    routes = {"/v1/batches": listed, "/v1/files/{id}/content": content}
    async with serving(routes) as root:
        settings = Settings(db=db_path, base_url=f"{root}/v1", api_key=API_KEY)
        result = await sync(settings, retry=RETRY)
    assert result.complete
    assert file_states(db_path) == {"failed": 1}
    assert "ran on for 1 MiB decoding to nothing" in result.warnings[0]
    assert sent < bound * RETRY.max_attempts


@pytest.mark.parametrize("count", ["two", "", "n/a"])
async def test_a_request_count_in_text_is_no_count_of_a_files_lines(
    db_path: Path, count: str
) -> None:
    """A compatible API counting the failed requests in text: every sync failed at the
    file (formatting the count as a number), and the batch's files stayed to fetch."""
    batch = failed_batch(1)
    batch["request_counts"] = {"total": 2, "completed": 0, "failed": count}
    async with raw_api([batch], lambda _: (b"200 OK", {}, error_lines(2))) as url:
        result = await sync(Settings(db=db_path, base_url=url, api_key=API_KEY), retry=RETRY)
    assert (result.complete, result.files) == (True, 1)
    assert file_states(db_path) == {"complete": 1}
