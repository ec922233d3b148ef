"""Keeping the key secret in error messages, whatever form a server echoes it in."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web
from aioresponses import aioresponses

from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.errors import PaginationError
from crawler.replies import build_api_error
from crawler.sync import sync

from .conftest import BASE_URL, list_body, make_batch

# Characters that JSON, percent-encoding and whitespace collapsing all spell differently.
ODD_KEY = 'sk-proj-a"b\\c/d+e=f  é~0123456789ABCDEFxyz'


def lower_hex(text: str) -> str:
    """`text` with its %XX escapes in lower case, as some servers write them."""
    return re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def message_of(echo: str, secret: str = ODD_KEY) -> str:
    """The error text built from a 401 whose message quotes `echo`."""
    body = json.dumps({"error": {"message": f'bad header "Bearer {echo}" (x)'}}).encode()
    return str(build_api_error(401, body, {}, "https://h/v1/batches", secret=secret))


MASKED = 'API error 401: bad header "Bearer ***" (x) [GET https://h/v1/batches]'


@pytest.mark.parametrize(
    "echo",
    [
        pytest.param(ODD_KEY, id="as-is"),
        pytest.param(" ".join(ODD_KEY.split()), id="whitespace-collapsed"),
        pytest.param(json.dumps(ODD_KEY)[1:-1], id="json"),
        pytest.param(json.dumps(ODD_KEY)[1:-1].replace("/", "\\/"), id="json-escaped-slash"),
        pytest.param(json.dumps(ODD_KEY, ensure_ascii=False)[1:-1], id="json-unicode"),
        pytest.param(quote(ODD_KEY, safe=""), id="percent"),
        pytest.param(lower_hex(quote(ODD_KEY, safe="")), id="percent-lower-hex"),
        pytest.param(quote(ODD_KEY), id="percent-path"),
        pytest.param(quote_plus(ODD_KEY), id="percent-form"),
    ],
)
def test_the_key_is_masked_in_every_form_a_server_echoes_it(echo: str) -> None:
    """Escaped, percent-encoded or whitespace-collapsed, the key never gets through."""
    assert message_of(echo) == MASKED


@pytest.mark.parametrize(
    ("echo", "shown"),
    [
        pytest.param(ODD_KEY[:24] + "...", "***...", id="head"),
        pytest.param("..." + ODD_KEY[-20:], "...***", id="tail"),
        pytest.param(ODD_KEY[5:25], "***", id="middle"),
        pytest.param(json.dumps(ODD_KEY)[1:18] + "...", "***...", id="json-head"),
        pytest.param(quote(ODD_KEY, safe="")[-16:], "***", id="percent-tail"),
    ],
)
def test_a_key_cut_short_is_masked_from_16_characters(echo: str, shown: str) -> None:
    """A run of 16 or more of the key's characters, in any of its forms, identifies it."""
    assert message_of(echo) == MASKED.replace("***", shown)


def test_a_short_run_shared_with_the_key_stays_readable() -> None:
    """Text that only shares the key's prefix, or fewer than 16 characters, is not masked."""
    echo = ODD_KEY[:15]
    assert (
        message_of(echo)
        == f'API error 401: bad header "Bearer {echo}" (x) [GET https://h/v1/batches]'
    )


def test_a_short_key_is_masked_whole() -> None:
    """A key shorter than an identifying run is still masked where it appears whole."""
    assert message_of("sk-short", secret="sk-short") == MASKED


def test_several_echoes_are_each_masked() -> None:
    """Every occurrence is masked, in whichever forms, and the text between them is kept."""
    echo = f"{ODD_KEY} and {quote(ODD_KEY, safe='')}"
    assert message_of(echo) == MASKED.replace("***", "*** and ***")


async def test_warnings_quoting_what_the_server_sent_mask_the_key(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A last_id or an odd item id echoing the key reaches the warnings masked."""
    assert settings.api_key is not None
    page = list_body([make_batch(2), {"id": ["echo", settings.api_key]}, make_batch(1)], False)
    page["last_id"] = f"last-{settings.api_key}"
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", payload=page)
        result = await sync(settings, retry=fast_retry)
    assert len(result.warnings) == 2
    assert all("***" in w and settings.api_key[8:24] not in w for w in result.warnings)
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        (stored,) = conn.execute("SELECT warnings FROM sync_runs").fetchone()
    assert settings.api_key[8:24] not in stored


async def test_a_redirect_echoing_the_key_is_masked_in_the_request_log(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With -vv every request is logged with its URL: after a redirect, that is the server's."""
    key = "sk-proj-0123456789abcdefSECRET"

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/v1/listed?limit=2&k={key}")

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(list_body([make_batch(1)], False))

    app = web.Application()
    app.router.add_get("/v1/batches", redirect)
    app.router.add_get("/v1/listed", listed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        settings = Settings(db=db_path, base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
        with caplog.at_level(logging.DEBUG, logger="crawler"):
            result = await sync(settings)
    finally:
        await runner.cleanup()
    assert result.complete
    requests = [r.getMessage() for r in caplog.records if r.getMessage().startswith("GET ")]
    assert any("k=***" in line for line in requests), requests
    assert not any("0123456789abcdef" in line for line in requests)


async def test_an_error_quoting_the_key_as_a_cursor_is_masked_and_so_stored(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A server sending the key as an id, twice: the loop guard's message masks it."""
    assert settings.api_key is not None
    page = list_body([make_batch(2), {**make_batch(1), "id": settings.api_key}], True)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", payload=page)
        mock.get(f"{BASE_URL}/batches?limit=2&after={settings.api_key}", payload=page)
        with pytest.raises(PaginationError) as caught:
            await sync(settings, retry=fast_retry)
    assert settings.api_key not in str(caught.value)
    assert "***" in str(caught.value)
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        (error,) = conn.execute("SELECT error FROM sync_runs").fetchone()
    assert settings.api_key not in error


async def test_a_retry_quoting_an_id_that_echoes_the_key_is_logged_masked(
    settings: Settings, fast_retry: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch whose id is the key, answered by id with something that is not a batch:
    the retry's log line masks it."""
    assert settings.api_key is not None
    echo = make_batch(2, id=settings.api_key, status="in_progress")
    with aioresponses() as mock:
        pages = [[7, 6], [5, 4], [3, 2], [1]]
        after = ""
        for n, numbers in enumerate(pages):
            chunk = [echo if i == 2 else make_batch(i) for i in numbers]
            mock.get(f"{BASE_URL}/batches?limit=2{after}", payload=list_body(chunk, n < 3))
            after = f"&after={chunk[-1]['id']}"
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        head = list_body([make_batch(7), make_batch(6)], True)
        mock.get(f"{BASE_URL}/batches?limit=2", payload=head)
        mock.get(f"{BASE_URL}/batches/{settings.api_key}", payload={"object": "list"}, repeat=True)
        with caplog.at_level(logging.WARNING, logger="crawler"):
            result = await sync(settings, retry=fast_retry)
    assert result.complete
    logged = [r.getMessage() for r in caplog.records]
    assert any("is not a batch object" in line for line in logged), logged
    assert not any(settings.api_key in line for line in logged)


async def test_an_unexpected_error_quoting_the_key_is_stored_masked(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    def boom(progress: object) -> None:
        raise RuntimeError(f"callback failed with {settings.api_key}")

    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body([make_batch(1)], False))
        with pytest.raises(RuntimeError):
            await sync(settings, retry=fast_retry, on_progress=boom)
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        (error,) = conn.execute("SELECT error FROM sync_runs").fetchone()
    assert error == "unexpected RuntimeError: callback failed with ***"


def test_a_servers_message_is_quoted_on_one_line_short_and_without_escapes() -> None:
    message = "\x1b]0;PWNED\x07\x1b[31mred " + "x" * 10_000
    body = json.dumps({"error": {"message": message}}).encode()
    text = str(build_api_error(400, body, {}, "https://h/v1/batches"))
    assert "\x1b" not in text
    assert "\x07" not in text
    assert len(text) < 600
    assert "PWNED" in text
