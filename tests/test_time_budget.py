"""--max-seconds holds while a request hangs: the request is abandoned at the budget's end,
and what was committed before it stays. A real client against a server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import sqlite3
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from crawler import api, bodies
from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.request_files import FAILURES_IN_A_ROW, MAX_FILE_LINES
from crawler.run import Run
from crawler.sync_run import SyncResult, sync

from .conftest import API_KEY, list_body, make_batch

BATCHES = [make_batch(4), make_batch(3), make_batch(2), make_batch(1, status="in_progress")]


@dataclass
class HangingServer:
    """Two list pages and every batch by id; `hang` names the requests left unanswered
    (the second page, by id, a check of the list: a page of one, or a first page once
    batches were asked for by id) until the test ends;
    `refuse_by_id` answers every batch by id 403."""

    hang: set[str] = field(default_factory=set)
    served: Counter[str] = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    batches: list[dict[str, object]] = field(default_factory=lambda: BATCHES)
    refuse_by_id: bool = False
    empty_after: bool = False  # every page after a cursor is an empty end

    async def list_page(self, request: web.Request) -> web.Response:
        after = request.query.get("after")
        if request.query.get("limit") == "1" or (after is None and self.served["by id"]):
            kind = "check"
        else:
            kind = "second page" if after else "first page"
        self.served[kind] += 1
        if kind in self.hang:
            await self.release.wait()
        half = len(self.batches) // 2
        batches = self.batches[half:] if after else self.batches[:half]
        if (after and self.empty_after) or (after and after == self.batches[-1]["id"]):
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


async def test_the_ask_by_id_after_a_walk_that_spent_the_budget_is_made_once(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """A run whose walk spent the budget asks for one batch in flight by id whatever it (a
    walk taking every run's budget left every batch stale), once: hanging, it ends at the
    read timeout, not retried, and is looked for in the list first on the next run."""
    server = HangingServer()
    async with serving(server) as base_url:
        settings = dataclasses.replace(budgeted(db_path, base_url), read_timeout=0.5)
        await sync(dataclasses.replace(settings, max_seconds=None), retry=fast_retry)
        server.hang.add("by id")
        pages = server.served
        clock = lambda: 0.0 if pages["first page"] + pages["second page"] < 4 else 1e6  # noqa: E731
        result = await sync(settings, retry=fast_retry, clock=clock)
    assert (result.complete, result.refreshed_by_id) == (False, 0)
    assert server.served["by id"] == 1, "asked once"
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        (cut_by,) = conn.execute("SELECT cut_by FROM batches WHERE cut_by IS NOT NULL").fetchone()
    assert "default" in cut_by


async def test_the_check_of_a_cursor_by_id_is_abandoned_when_the_budget_ends(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """An empty end after a page that said has_more: the cursor's batch is asked for by id
    (is it gone?), within the budget when that request hangs."""
    server = HangingServer(hang={"by id"}, empty_after=True)
    async with serving(server) as base_url:
        result = await sync(budgeted(db_path, base_url), retry=fast_retry)
    assert (result.complete, stored(db_path)) == (False, 2)
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


def test_the_request_files_take_the_whole_budget_while_a_step_takes_a_share(
    db_path: Path,
) -> None:
    """The files are fetched alongside every step: a file begun while the visits looked for
    first took their half of the budget was cut at its end, the run partial."""
    now = [0.0]
    settings = Settings(db=db_path, api_key=API_KEY, max_seconds=100)
    run = Run(None, settings, 1, None, lambda: now[0], 0.0, API_KEY)  # type: ignore[arg-type]
    with run.sharing_time(0.5):
        now[0] = 60.0
        assert (run.time_left(), run.budget_left()) == (-10.0, 40.0)
    assert run.time_left() == 40.0


ENDLESS = {
    "request lines": (b'{"custom_id": "r%d", "response": null, "error": {"code": "x"}}\n', "lines"),
    "blank lines": (b"\n" * 1000, "blank lines"),
}


FileHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def sync_files(
    db: Path, content: FileHandler, batches: int = 1, **settings: Any
) -> SyncResult:
    """A sync of `batches` failed batches whose error files `content` serves."""
    listed = [
        make_batch(n, status="failed", error_file_id=f"file-err-{n}", output_file_id=None)
        for n in range(batches, 0, -1)
    ]

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(list_body(listed, has_more=False))

    app = web.Application()
    app.router.add_get("/v1/batches", listing)
    app.router.add_get("/v1/files/{file_id}/content", content)
    runner = web.AppRunner(app, shutdown_timeout=0.25)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        run = Settings(db=db, base_url=base_url, api_key=API_KEY, **settings)
        return await sync(run, retry=RetryPolicy(max_attempts=2, initial_backoff=0, max_backoff=0))
    finally:
        await runner.cleanup()


def file_state(db: Path) -> tuple[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (state,) = conn.execute("SELECT state FROM batch_files").fetchone()
        (lines,) = conn.execute("SELECT count(*) FROM batch_requests").fetchone()
    return state, lines


@pytest.mark.parametrize(("line", "counted"), ENDLESS.values(), ids=ENDLESS.keys())
async def test_a_file_that_never_ends_is_cut_off_past_a_batchs_requests(
    db_path: Path, line: bytes, counted: str
) -> None:
    """A file streamed without end would fill the disk, or read on for good, with or without
    a budget: past 50,000 lines (the most requests a batch holds) it is no batch's file."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # until the client hangs up
            for n in itertools.count():
                await response.write(line % n if b"%d" in line else line)
        return response

    result = await sync_files(db_path, endless)
    assert result.files == 0
    assert f"holds more than {MAX_FILE_LINES:,} {counted}," in result.warnings[0]
    assert file_state(db_path) == ("failed", MAX_FILE_LINES if counted == "lines" else 0)


def trickled(status: int = 200, first: bytes = b"") -> FileHandler:
    """A file's answer with `status`: `first`, then a byte every 10 ms, up to 100 s."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # until the client hangs up
            await response.write(first)
            for _ in range(10_000):
                await response.write(b" ")
                await asyncio.sleep(0.01)
        return response

    return trickle


async def test_a_file_trickled_a_byte_at_a_time_is_cut_off(db_path: Path) -> None:
    """A byte now and then keeps a read timeout from firing: past the request timeout, a
    file coming at a few bytes a second is cut off, asked again, and left to fetch."""
    result = await sync_files(db_path, trickled(), request_timeout=0.2, read_timeout=5)
    assert (result.complete, result.files) == (True, 0)
    assert "too slow to be a download" in result.warnings[0]
    assert file_state(db_path) == ("failed", 0)


async def test_a_file_trickled_after_a_burst_is_cut_off(db_path: Path) -> None:
    """The pace was an average since the first byte: a burst first paid for a trickle after
    it, a second of it for each KiB (a 60 MB burst held the run for 16 hours)."""
    burst = trickled(first=b" " * 2**20)
    result = await sync_files(db_path, burst, request_timeout=0.2, read_timeout=5)
    assert (result.complete, result.files) == (True, 0)
    assert "too slow to be a download" in result.warnings[0]
    assert file_state(db_path) == ("failed", 0)


@contextlib.asynccontextmanager
async def framing_only_server(framing: bytes) -> AsyncIterator[str]:
    """A server, raw HTTP/1.1: a failed batch, and its error file chunked, a line in its
    first chunk, then `framing` a byte every 10 ms (up to 100 s): no content ever again."""
    failed = make_batch(1, status="failed", error_file_id="file-err-1", output_file_id=None)
    listed = json.dumps(list_body([failed], False)).encode()
    line = b'{"custom_id": "r1", "response": null, "error": {"code": "x"}}\n'

    answering: set[asyncio.Task[None]] = set()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answering.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            if b"/files/" not in request.split(b"\r\n")[0]:
                head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                head += f"Content-Length: {len(listed)}\r\nConnection: close\r\n\r\n"
                writer.write(head.encode() + listed)
            else:
                head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                writer.write(head + b"%x\r\n%s\r\n" % (len(line), line))
                for byte in itertools.islice(itertools.cycle(framing), 10_000):
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.01)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        server.close()
        for task in answering:
            task.cancel()
        await asyncio.gather(*answering, return_exceptions=True)


@pytest.mark.parametrize(
    "framing", [b"0", b"1;" + b"x" * 100], ids=["a chunk size's zeros", "a chunk extension"]
)
async def test_a_file_sending_chunk_framing_alone_is_cut_off(db_path: Path, framing: bytes) -> None:
    """The pace was checked as content came: a file sending a chunk size's leading zeros,
    or an extension, a byte at a time, kept the socket busy and sent no content, and the
    sync waited for good."""
    async with framing_only_server(framing) as base_url:
        run = Settings(
            db=db_path, base_url=base_url, api_key=API_KEY, request_timeout=0.2, read_timeout=5
        )
        result = await sync(
            run, retry=RetryPolicy(max_attempts=2, initial_backoff=0, max_backoff=0)
        )
    assert (result.complete, result.files) == (True, 0)
    assert "too slow to be a download" in result.warnings[0]


def ticking_clock(monkeypatch: pytest.MonkeyPatch, *, chunk: int) -> list[float]:
    """A clock for downloads that moves a second each time it is looked at (once a chunk
    of `chunk` bytes read); its time, to move by hand too."""
    clock = [1000.0]

    def monotonic() -> float:
        clock[0] += 1
        return clock[0]

    fake_time = SimpleNamespace(monotonic=monotonic, time=time.time)
    monkeypatch.setattr(bodies, "time", fake_time)
    monkeypatch.setattr(api, "time", fake_time)
    monkeypatch.setattr(api, "FILE_CHUNK", chunk)
    return clock


async def test_a_file_whose_head_came_late_is_paced_from_its_head(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pace was counted from the request: a route answering the head 8 s into a 10 s
    span, then sending 2 KiB a second, was cut as too slow on every sync, and the file
    never stored. The clock: the head takes 8 s, each look at the clock (one a chunk of
    2 KiB read) 1 s."""
    clock = ticking_clock(monkeypatch, chunk=2048)
    error = {"code": "invalid_request", "message": "x" * 1900}

    async def late_head(request: web.Request) -> web.StreamResponse:
        clock[0] += 8
        response = web.StreamResponse()
        await response.prepare(request)
        for n in range(16):
            line = {"id": f"req_{n}", "custom_id": f"r{n}", "response": None, "error": error}
            await response.write(json.dumps(line).encode() + b"\n")
        return response

    result = await sync_files(db_path, late_head, request_timeout=10)
    assert not [warning for warning in result.warnings if "too slow" in warning]
    assert file_state(db_path) == ("complete", 16)


async def test_a_gzip_file_decoding_to_a_byte_now_and_then_is_cut_off(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gzip body of empty blocks sent at full speed, a byte of content every 900 KiB:
    its pace was checked on what came alone, and a MiB decoding to nothing never ran on,
    so a sync ran for ever. The clock: each chunk of 64 KiB read takes a second."""
    ticking_clock(monkeypatch, chunk=2**16)

    async def empty_blocks(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        await response.prepare(request)
        packer = zlib.compressobj(wbits=31)
        empty = packer.flush(zlib.Z_SYNC_FLUSH)  # the gzip header
        blocks = b"\x00\x00\x00\xff\xff" * (900 * 1024 // 5)  # empty stored blocks
        with contextlib.suppress(ConnectionError):  # until the client hangs up
            await response.write(empty)
            for _ in range(20):  # 18 MiB at most
                await response.write(packer.compress(b" ") + packer.flush(zlib.Z_SYNC_FLUSH))
                await response.write(blocks)
            await response.write(packer.flush())
        return response

    result = await sync_files(db_path, empty_blocks, request_timeout=10)
    assert "too slow to be a download" in result.warnings[0]
    assert file_state(db_path) == ("failed", 0)


@pytest.mark.parametrize("status", [500, 404])
async def test_an_error_answer_for_a_file_trickled_is_cut_off_at_the_request_timeout(
    db_path: Path, status: int
) -> None:
    """A file's error answer was read without end, a byte now and then: the run never
    ended (a download's pace is checked for a file's body, not an error's)."""
    result = await sync_files(db_path, trickled(status), request_timeout=0.2, read_timeout=5)
    assert (result.complete, result.files) == (True, 0)
    assert "timed out after 0.2 s" in result.warnings[0]
    assert file_state(db_path) == ("failed", 0)


async def test_a_file_whose_head_never_ends_is_cut_off_at_the_request_timeout(
    db_path: Path,
) -> None:
    """Headers sent a byte now and then: the head of a file's answer must come within the
    request timeout, as any answer's must."""

    async def endless_head(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.write(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(ConnectionError):
            for n in range(10_000):
                request.transport.write(b"x-slow-%d: 1\r\n" % n)
                await asyncio.sleep(0.01)
        return web.StreamResponse()

    result = await sync_files(db_path, endless_head, request_timeout=0.2, read_timeout=5)
    assert (result.complete, result.files) == (True, 0)
    assert "timed out" in result.warnings[0] or "timeout" in result.warnings[0]
    assert file_state(db_path) == ("failed", 0)


@pytest.mark.parametrize("status", [503, 429])
async def test_a_files_route_that_keeps_failing_stops_the_files_of_the_run(
    db_path: Path, status: int
) -> None:
    """Every file answers 503: after FAILURES_IN_A_ROW files whose retries ran out, the run
    stops asking (partial: the rest stay to fetch) instead of spending every file's retries.
    So with 429s: each file took all its retries, the run ended 0 with every file failed."""
    asked: Counter[str] = Counter()

    async def down(request: web.Request) -> web.Response:
        asked[request.match_info["file_id"]] += 1
        error = {"message": "down", "type": "server_error", "code": "rate_limit_exceeded"}
        return web.json_response({"error": error}, status=status)

    result = await sync_files(db_path, down, batches=20, concurrency=1)
    assert (result.complete, result.files) == (False, 0)
    assert len(asked) == FAILURES_IN_A_ROW
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM batch_files GROUP BY 1"))
    assert states == {"failed": FAILURES_IN_A_ROW, "pending": 20 - FAILURES_IN_A_ROW}
