"""Servers that misbehave at the HTTP level: silence, trickles, redirect loops, encodings never
asked for, huge pages and deep JSON. The real client against the fake API, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from crawler.api import PAGES_BEFORE_GROWING, ApiClient, RetryEvent, RetryPolicy, create_session
from crawler.bodies import MAX_BATCH_BYTES, MAX_BODY_BYTES
from crawler.config import Settings
from crawler.errors import BadRequestError, BrokenResponseError, TransportError
from crawler.events import retry_event
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.jsontext import parse, to_text
from crawler.sync_run import sync

from .conftest import API_KEY, list_body, make_batch, serving
from .waits import HANG_GUARD

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_URL = "http://127.0.0.1:9/v1"  # mocked: nothing listens there
# Attempts come at once: what the server saw is the count of what the client asked.
RETRY = RetryPolicy(max_attempts=3, max_seconds=60, initial_backoff=0, max_backoff=0)


@contextlib.asynccontextmanager
async def bad_server(mode: str | None = None, **options: Any) -> AsyncIterator[FakeApiServer]:
    """The fake API with ten batches, answering list requests after the first as `mode` says."""
    async with FakeApiServer(FakeApiOptions(batches=10, bad_page=mode, **options)) as server:
        yield server


@contextlib.asynccontextmanager
async def client_for(
    server: FakeApiServer, events: list[RetryEvent], **timeouts: float
) -> AsyncIterator[ApiClient]:
    """A client as a sync builds it (session, timeouts), retrying at once, events recorded."""
    settings = Settings(base_url=server.base_url, api_key=server.options.api_key, **timeouts)
    async with create_session(settings) as session:
        yield ApiClient(
            session, settings.base_url, retry=RETRY, secret=settings.api_key, on_retry=events.append
        )


async def second_page(client: ApiClient) -> None:
    """Ask for a good first page, then for the page the fake answers badly."""
    first = await client.fetch_page(None, 2)
    await client.fetch_page(first.batches[-1]["id"], 2)


async def test_a_silent_server_is_cut_off_by_the_read_timeout() -> None:
    """No byte for read_timeout seconds ends the attempt, though request_timeout is far off."""
    events: list[RetryEvent] = []
    async with (
        bad_server(slow_rate=1.0, slow_seconds=3600.0) as server,
        client_for(server, events, read_timeout=0.2, request_timeout=3600.0) as client,
    ):
        with pytest.raises(TransportError) as caught:
            await client.fetch_page(None, 2)
    assert "failed: timed out, silent for 0.2 s (gave up after 3 attempts)" in str(caught.value)
    assert [e.reason for e in events] == ["timed out, silent for 0.2 s"] * 2
    assert server.stats.requests["list_batches"] == 3


async def test_a_trickling_server_is_cut_off_by_the_request_timeout() -> None:
    """A byte now and then keeps the read timeout at bay; the request timeout still ends it."""
    events: list[RetryEvent] = []
    async with (
        bad_server("trickle", slow_seconds=0.01) as server,
        client_for(server, events, read_timeout=3600.0, request_timeout=0.5) as client,
    ):
        with pytest.raises(TransportError, match=r"timed out after 0\.5 s"):
            await second_page(client)
    assert [e.reason for e in events] == ["timed out after 0.5 s"] * 2
    assert server.stats.bad_pages == 3
    assert server.stats.streamed_bytes > 3, "the server was trickling, not silent"


async def test_a_redirect_loop_fails_at_once_saying_so() -> None:
    """A loop of redirects is named, with where it led, and not asked again."""
    events: list[RetryEvent] = []
    async with bad_server("redirect-loop") as server, client_for(server, events) as client:
        with pytest.raises(TransportError) as caught:
            await second_page(client)
    message = str(caught.value)
    assert "failed: too many redirects (10, the last to /v1/batches?limit=2&after=" in message
    assert "attempts" not in message
    assert events == []
    assert server.stats.bad_pages == 10  # aiohttp's limit, reached once


async def test_a_body_encoded_as_never_asked_fails_at_once_saying_so() -> None:
    """A brotli body the client cannot decode is named as such, and not asked again."""
    events: list[RetryEvent] = []
    async with bad_server("br-encoded") as server, client_for(server, events) as client:
        with pytest.raises(TransportError) as caught:
            await second_page(client)
    assert str(caught.value).endswith(
        "failed: the server sent a body encoded as br, which batch-crawler cannot read "
        "(it asks for gzip or deflate)"
    )
    assert events == []
    assert server.stats.bad_pages == 1


async def test_a_page_over_the_cap_fails_at_once_without_being_read_whole() -> None:
    """64 MiB of (valid) whitespace: reading stops past the cap (a page of one batch's,
    larger); the page is not asked again, but for one batch (then the page of two is asked
    for as two of one)."""
    events: list[RetryEvent] = []
    async with bad_server("huge") as server, client_for(server, events) as client:
        with pytest.raises(BrokenResponseError) as caught:
            await second_page(client)
    assert f"is larger than {MAX_BATCH_BYTES // 2**20} MiB" in str(caught.value)
    assert events == []
    assert server.stats.bad_pages == 2
    assert server.stats.streamed_bytes < 2 * 64 * 2**20, "the client stopped reading early"


def pages_past_the_cap(
    batches: list[dict[str, Any]],
    giants: set[str],
    asked: list[int],
    *,
    has_more_wrong_at: int | None = None,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A list handler: `batches` in pages of the limit asked (recorded in `asked`), a page
    holding more than two of `giants` (as if 8 MiB each) past the body cap, and `has_more`
    false by mistake on the page starting at index `has_more_wrong_at`."""

    async def listed(request: web.Request) -> web.Response:
        limit, after = int(request.query["limit"]), request.query.get("after")
        asked.append(limit)
        start = next(i + 1 for i, b in enumerate(batches) if b["id"] == after) if after else 0
        more = start + limit < len(batches) and start != has_more_wrong_at
        page = list_body(batches[start : start + limit], more)
        too_large = sum(b["id"] in giants for b in page["data"]) > 2
        padding = b" " * (MAX_BODY_BYTES + 1) if too_large else b""
        return web.Response(body=padding + to_text(page).encode(), content_type="application/json")

    return listed


async def test_a_page_over_the_cap_is_asked_for_in_smaller_pages(db_path: Path) -> None:
    """Batches of 45,000 error lines each: a page of several is past the cap, every run
    failed at the same cursor, and --page-size was the only way on. Half the limit is
    asked for, down to one batch, and the walk goes on: at the limit that fitted (each page
    was past the cap once more before), twice that after PAGES_BEFORE_GROWING pages."""
    total = 2 * PAGES_BEFORE_GROWING + 10
    batches = [make_batch(n) for n in range(total, 0, -1)]
    giants = {b["id"] for b in batches[:7]}  # as if 8 MiB each
    asked: list[int] = []
    listed = pages_past_the_cap(batches, giants, asked)
    async with serving({"/v1/batches": listed}) as root:
        settings = Settings(db=db_path, base_url=f"{root}/v1", api_key=API_KEY, page_size=5)
        result = await sync(settings, retry=RETRY)
    assert (result.complete, result.batches_new) == (True, total)
    assert asked == [5] + [2] * PAGES_BEFORE_GROWING + [4] * 3


async def test_a_batch_past_the_page_cap_is_read_as_a_page_of_one(db_path: Path) -> None:
    """One batch of 50,000 error lines runs past the page cap alone: asked for down to a
    page of one, every sync failed at its place in the list, and the batches below it were
    never stored. A page of one batch may be as large as a batch asked for by id."""
    batches = [make_batch(n) for n in range(6, 0, -1)]
    giant = batches[3]["id"]

    async def listed(request: web.Request) -> web.Response:
        limit, after = int(request.query["limit"]), request.query.get("after")
        start = next(i + 1 for i, b in enumerate(batches) if b["id"] == after) if after else 0
        page = list_body(batches[start : start + limit], start + limit < len(batches))
        padding = b" " * (MAX_BODY_BYTES + 1) if giant in {b["id"] for b in page["data"]} else b""
        return web.Response(body=padding + to_text(page).encode(), content_type="application/json")

    async with serving({"/v1/batches": listed}) as root:
        settings = Settings(db=db_path, base_url=f"{root}/v1", api_key=API_KEY, page_size=2)
        result = await sync(settings, retry=RETRY)
    assert (result.complete, result.batches_new) == (True, len(batches))


async def test_a_page_asked_at_the_limit_that_fitted_is_full_at_that_limit(db_path: Path) -> None:
    """A `has_more` false sent by mistake on a full page of a first walk, asked for at the
    limit that fitted under the cap: the page was taken as short of the walk's limit, so the
    list's end went unchecked and the batches below were never stored."""
    batches = [make_batch(n) for n in range(10, 0, -1)]
    giants = {b["id"] for b in batches[:3]}
    listed = pages_past_the_cap(batches, giants, [], has_more_wrong_at=2)  # on a full page
    async with serving({"/v1/batches": listed}) as root:
        settings = Settings(db=db_path, base_url=f"{root}/v1", api_key=API_KEY, page_size=4)
        result = await sync(settings, retry=RETRY)
    assert (result.complete, result.batches_new) == (True, len(batches))
    assert result.warnings == (
        f"page after {batches[1]['id']}: has_more was false on a full page, but more batches "
        "came after it; walked on",
    )


async def test_a_page_nested_too_deep_is_a_broken_response_not_asked_again() -> None:
    """JSON nested 100,000 deep is a clear error, not a RecursionError, and not retried."""
    events: list[RetryEvent] = []
    async with bad_server("deep-json") as server, client_for(server, events) as client:
        with pytest.raises(BrokenResponseError, match="is nested too deeply to read"):
            await second_page(client)
    assert events == []
    assert server.stats.bad_pages == 1


async def test_an_error_body_nested_too_deep_reads_as_its_status() -> None:
    """An error body nested 100,000 deep gives "HTTP 400", as any unreadable error body does."""
    events: list[RetryEvent] = []
    async with bad_server("deep-error") as server, client_for(server, events) as client:
        with pytest.raises(BadRequestError, match=r"^API error 400: HTTP 400 \[GET "):
            await second_page(client)


def test_parse_refuses_deep_json_with_a_value_error() -> None:
    """Too deep for either parser: a ValueError that says so, never a RecursionError."""
    with pytest.raises(ValueError, match="nested too deeply"):
        parse(b"[" * 100_000 + b"]" * 100_000)


def test_what_parse_reads_to_text_writes_however_deep() -> None:
    """orjson reads 1,024 levels, more than json writes on its own: to_text still writes them."""
    text = "[" * 1024 + "]" * 1024
    assert to_text(parse(text.encode())) == text


async def test_a_batch_nested_as_deep_as_the_parser_reads_is_stored(db_path: Path) -> None:
    """Metadata nested a thousand levels deep is stored, not a crash of the sync."""
    settings = Settings(db=db_path, base_url=LOOPBACK_URL, api_key=API_KEY, page_size=2)
    metadata = "[" * 1000 + "]" * 1000
    body = to_text(list_body([make_batch(1)], False)).replace('{"team":"équipe"}', metadata)
    with aioresponses() as mock:
        mock.get(f"{LOOPBACK_URL}/batches?limit=2", body=body, content_type="application/json")
        result = await sync(settings, retry=RETRY)
    assert result.batches_new == 1
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        (stored,) = conn.execute("SELECT metadata FROM batches").fetchone()
    assert stored == metadata


# What a user sees on stderr, in a real process whose stderr is not a terminal (cron, a log).


async def run_sync(server: FakeApiServer, db: Path, *args: str) -> tuple[int, list[str]]:
    """Run `batch-crawler sync` against `server`; its exit code and its stderr lines."""
    env = {**os.environ, "OPENAI_API_KEY": server.options.api_key}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "crawler", "sync", "--db", str(db)),
        *("--base-url", server.base_url, "--page-size", "2", *args),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=HANG_GUARD)
    assert proc.returncode is not None
    return proc.returncode, err.decode().splitlines()


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "--quiet"])
async def test_off_a_terminal_each_retry_is_one_warning_line_unless_quiet(
    db_path: Path, quiet: bool
) -> None:
    """A cron run says on stderr why and when it asks again, one line a retry; -q says nothing."""
    async with bad_server(rate_limit_rate=0.5, seed=3) as server:
        code, lines = await run_sync(server, db_path, *["-q"] * quiet)
    assert code == 0
    assert server.stats.rate_limited > 0
    if quiet:
        assert lines == []
        return
    assert len(lines) == server.stats.rate_limited
    for line in lines:
        assert line.startswith("WARNING crawler.api: API error 429 (rate_limit_exceeded): ")
        assert "; retrying in 0." in line
        assert line.endswith(" of 8)")


LONG_KEY = "sk-proj-" + "".join(f"{n:02d}xQ" for n in range(39))


@pytest.mark.parametrize(
    ("location", "said"),
    [
        (
            "ftp://127.0.0.1/x?k={key}",
            "redirected to ftp://127.0.0.1/x?k=***, which is not http(s)",
        ),
        ("mailto:{key}", "redirected to mailto:***, which is not http(s)"),
        ("{root}/v1/listed?k={key}", None),  # followed: the control
        (
            "http://user:pass@127.0.0.1:{port}/v1/listed",
            "redirected to http://127.0.0.1:{port}/v1/listed (with a user name or password), "
            "which is not followed",
        ),
        (
            "http://user:pass@127.0.0.1:99999/x",
            "redirected to http://127.0.0.1:99999/x (Server attempted redirecting to a location "
            "that does not look like a URL), which is not followed",
        ),
    ],
    ids=["ftp", "mailto", "followed", "credentials", "credentials past parsing"],
)
@pytest.mark.parametrize("header", ["Location", "URI"])
async def test_a_redirect_that_cannot_be_followed_fails_at_once_saying_where(
    location: str, said: str | None, header: str
) -> None:
    """A redirect to another scheme was retried as if it might pass, its URL (the key in
    it) shown in retry events; one holding a user name ended in a ValueError traceback
    (aiohttp will not send it beside the key). aiohttp follows a `URI` header too, where
    there is no `Location`: one holding a user name, not checked, was followed."""
    events: list[RetryEvent] = []
    target: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={header: target[0]})  # as sent, unchecked

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(list_body([make_batch(1)], False))

    async with serving({"/v1/batches": redirect, "/v1/listed": listed}) as root:
        port = root.rsplit(":", 1)[1]
        target.append(location.format(key=LONG_KEY, root=root, port=port))
        settings = Settings(base_url=f"{root}/v1", api_key=LONG_KEY)
        async with create_session(settings) as session:
            client = ApiClient(
                session, settings.base_url, retry=RETRY, secret=LONG_KEY, on_retry=events.append
            )
            if said is None:
                assert (await client.fetch_page(None, 2)).batches == [make_batch(1)]
                return
            with pytest.raises(TransportError) as caught:
                await client.fetch_page(None, 2)
    assert str(caught.value).endswith(f"failed: {said.format(port=port)}")
    assert events == []


async def test_why_a_request_is_retried_never_shows_the_key() -> None:
    """The reason given to progress lines and retry events is the transport's own words,
    which may quote the server: it showed the key whole."""
    events: list[RetryEvent] = []
    settings = Settings(base_url=LOOPBACK_URL, api_key=LONG_KEY)
    async with create_session(settings) as session:
        client = ApiClient(
            session, settings.base_url, retry=RETRY, secret=LONG_KEY, on_retry=events.append
        )
        with aioresponses() as mock:
            refusal = aiohttp.ClientOSError(f"the proxy said: no route for {LONG_KEY}")
            mock.get(f"{LOOPBACK_URL}/batches?limit=2", exception=refusal, repeat=True)
            with pytest.raises(TransportError):
                await client.fetch_page(None, 2)
    assert [event.reason for event in events] == ["the proxy said: no route for ***"] * 2
    assert [retry_event(event, LONG_KEY).fields["reason"] for event in events[:1]] == [
        "the proxy said: no route for ***"
    ]


async def test_a_file_redirected_with_a_user_name_fails_alone(db_path: Path) -> None:
    """The redirect's ValueError failed the whole run, and every later one, while that one
    file kept answering so: now that file fails, and the others are stored."""
    batches = [
        make_batch(n, status="failed", error_file_id=f"file-err-{n}", output_file_id=None)
        for n in (2, 1)
    ]
    line = {"custom_id": "r1", "response": None, "error": {"code": "batch_expired"}}

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(list_body(batches, False))

    async def content(request: web.Request) -> web.Response:
        if request.match_info["file_id"] == "file-err-2":
            port = request.url.port
            raise web.HTTPFound(f"http://user:pass@127.0.0.1:{port}/v1/files/file-err-1/content")
        return web.Response(text=to_text(line) + "\n")

    routes = {"/v1/batches": listed, "/v1/files/{file_id}/content": content}
    async with serving(routes) as root:
        settings = Settings(db=db_path, base_url=f"{root}/v1", api_key=API_KEY)
        result = await sync(settings, retry=RETRY)
    assert (result.complete, result.files, result.request_lines) == (True, 1, 1)
    (said,) = [w for w in result.warnings if "file-err-2" in w]
    assert "(with a user name or password), which is not followed" in said
    assert "user" not in said.replace("user name", "")
    assert "pass" not in said.replace("password", "")
