"""Keeping the key secret in error messages, whatever form a server echoes it in."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import functools
import html
import itertools
import json
import logging
import os
import random
import re
import socket
import sqlite3
import string
import sys
import time
import traceback
import tracemalloc
import unicodedata
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, quote_plus, unquote

import pytest
from aiohttp import web
from aioresponses import aioresponses
from yarl import URL

from crawler import api, cli, cli_args, iter_batches, redact
from crawler.accounts import sync_accounts
from crawler.api import RetryPolicy, create_session, secrets_of_a_run
from crawler.cli import main
from crawler.config import Settings, load_accounts, proxy_secrets, read_config_file
from crawler.errors import ConfigError, CrawlerError, TransportError
from crawler.events import Event
from crawler.redact import (
    Secrets,
    environment_keys,
    holds_secret,
    mask_keys,
    mask_keys_in_data,
    mask_keys_in_json,
    mask_secret,
    mask_values,
    variable_secrets,
)
from crawler.replies import build_api_error
from crawler.setting_rules import check_setting, is_on_this_machine
from crawler.sync_run import sync

from .conftest import BASE_URL, list_body, make_batch, serve_the_end, serving

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


def full_width(text: str) -> str:
    """`text` in full-width characters (as a Japanese or Chinese keyboard types them)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def bold(text: str) -> str:
    """`text` with its ASCII letters and digits in mathematical bold (as "fancy text")."""
    starts = [("A", 0x1D400), ("a", 0x1D41A), ("0", 0x1D7CE)]
    return "".join(
        next((chr(at + ord(c) - ord(first)) for first, at in starts
              if c.isascii() and c.isalnum() and c.isupper() == first.isupper()
              and c.isdigit() == first.isdigit()), c)
        for c in text
    )  # fmt: skip


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
        pytest.param("".join(f"%{b:02X}" for b in ODD_KEY.encode()), id="percent-every-byte"),
        pytest.param("".join(f"%{b:02x}" for b in ODD_KEY.encode()), id="percent-every-byte-lower"),
        pytest.param(ODD_KEY.lower(), id="lower-case"),
        pytest.param(ODD_KEY.upper(), id="upper-case"),
        pytest.param(full_width(ODD_KEY), id="full-width"),
        pytest.param(bold(ODD_KEY), id="mathematical-bold"),
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
        # 16 of the key's characters, escaped (runs count the key's characters, see _Decoded)
        pytest.param(json.dumps(ODD_KEY)[1:19] + "...", "***...", id="json-head"),
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
        serve_the_end(mock, make_batch(1))
        result = await sync(settings, retry=fast_retry)
    (warning,) = result.warnings  # the last_id holding the key is not used, nor quoted
    assert "***" in warning
    assert settings.api_key[8:24] not in warning
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


@pytest.mark.parametrize("provider", ["openai", "azure"])
@pytest.mark.parametrize(
    "named_by", [{}, {"URI": ""}, {"Location": ""}], ids=["Location", "URI", "URI, Location empty"]
)
async def test_a_redirect_to_another_origin_does_not_take_the_key_along(
    db_path: Path, provider: str, named_by: dict[str, str]
) -> None:
    """aiohttp drops Authorization on a redirect to another origin, not Azure's api-key:
    the key reached the host redirected to. The organization and project go no further
    either: they name the account to its own server only. aiohttp follows a `URI` header
    where `Location` is missing or empty: read for Location alone, it took api-key along."""
    key = "0123456789abcdef0123456789abcdef"
    seen: list[dict[str, str]] = []

    async def listed(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response(list_body([make_batch(1)], False))

    async with serving({"/{path:.*}": listed}) as elsewhere:

        async def redirect(request: web.Request) -> web.Response:
            target = f"{elsewhere}{request.path_qs}"
            if not named_by:
                raise web.HTTPFound(target)
            return web.Response(status=302, headers={**named_by, "URI": target})

        async with serving({"/{path:.*}": redirect}) as root:
            place = {"azure_endpoint": root} if provider == "azure" else {"base_url": f"{root}/v1"}
            account = {"organization": "org-ADV", "project": "proj_ADV"}
            settings = Settings(db=db_path, provider=provider, api_key=key, **place, **account)
            result = await sync(settings)
    assert result.complete
    assert seen, "the list was asked for where the redirect pointed"
    assert not any(key in json.dumps(headers) for headers in seen)
    assert not any("ADV" in json.dumps(headers) for headers in seen)


@pytest.mark.parametrize("setting", ["organization", "project"])
def test_a_key_given_as_the_organization_or_project_is_refused_unseen(
    db_path: Path, setting: str
) -> None:
    """A key pasted as the organization (or project) would go out in a header of its own,
    to any server redirected to: refused, and not shown."""
    key = "sk-proj-0123456789abcdefABCDEF0123456789"
    with pytest.raises(ConfigError, match=f"^{setting}: looks like an API key") as refused:
        Settings(db=db_path, api_key="sk-other", **{setting: key})
    assert key[8:24] not in str(refused.value)
    # Pasted with a space before it, or after an id; or not shaped like a key at all.
    for pasted in (f" {key}", f"org-abc {key}"):
        with pytest.raises(ConfigError, match=f"^{setting}: expected one id") as refused:
            Settings(db=db_path, api_key="sk-other", **{setting: pasted})
        assert key[8:24] not in str(refused.value)
    plain_key = "0123456789abcdef0123"
    with pytest.raises(ConfigError, match=f"^{setting}: holds the API key") as refused:
        Settings(db=db_path, api_key=plain_key, **{setting: f"org-{plain_key}"})
    assert plain_key not in str(refused.value)
    # Ids as OpenAI spells them pass, however long they grow.
    prefix = {"organization": "org-", "project": "proj_"}[setting]
    Settings(
        db=db_path, api_key="sk-other", **{setting: f"{prefix}AbCdEfGhIjKlMnOpQrStUvWx0123456789"}
    )


async def test_an_id_holding_the_key_is_never_stored_nor_asked_for(
    settings: Settings, fast_retry: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    """A server sending the key as a batch id (and as last_id): the item is left out with
    a masked warning, never stored, never a cursor, never asked for by id."""
    assert settings.api_key is not None
    echo = make_batch(2, id=settings.api_key, status="in_progress")
    page = list_body([make_batch(3), echo], True)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", payload=page)
        below = list_body([make_batch(1)], False)
        mock.get(f"{BASE_URL}/batches?limit=2&after={make_batch(3)['id']}", payload=below)
        with caplog.at_level(logging.DEBUG, logger="crawler"):
            result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new) == (True, 2)
    assert "***" in result.warnings[0]
    assert not any(settings.api_key in r.getMessage() for r in caplog.records)
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        dump = "\n".join(conn.iterdump())
    assert settings.api_key not in dump


@pytest.mark.parametrize("by_id", [False, True], ids=["listed", "refreshed by id"])
async def test_a_key_echoed_into_a_batchs_fields_is_stored_masked(
    settings: Settings, fast_retry: RetryPolicy, by_id: bool
) -> None:
    """A server echoing the key into a batch's model, file id, metadata and error lines:
    stored with the key masked in every column, `raw` included, listed or by id."""
    key = settings.api_key
    assert key is not None
    echo = make_batch(
        1,
        status="in_progress" if by_id else "failed",
        model=key,
        input_file_id=f"file-{key}",
        metadata={"note": f"called with {key}"},
        errors={"object": "list", "data": [{"code": "bad", "message": key, "param": key}]},
    )
    first = [make_batch(4), make_batch(3), make_batch(2)]
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body(first[:2], True))
        below = list_body([first[2], make_batch(1, status="in_progress") if by_id else echo], False)
        mock.get(f"{BASE_URL}/batches?limit=2&after={first[1]['id']}", payload=below)
        serve_the_end(mock, echo)
        await sync(settings, retry=fast_retry)
    if by_id:
        # The walk stops above batch 1: it is refreshed by id.
        with aioresponses() as mock:
            pages = [[make_batch(5), first[0]], first[1:]]
            mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body(pages[0], True))
            after = f"{BASE_URL}/batches?limit=2&after={first[0]['id']}"
            mock.get(after, payload=list_body(pages[1], True))
            mock.get(f"{BASE_URL}/batches/{echo['id']}", payload=echo)
            result = await sync(settings, retry=fast_retry)
        assert result.refreshed_by_id == 1
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        dump = "\n".join(conn.iterdump())
        row = conn.execute(
            "SELECT model, input_file_id, metadata, json_extract(raw, '$.model') FROM batches "
            "WHERE id = ?",
            (echo["id"],),
        ).fetchone()
        errors = conn.execute("SELECT message, param FROM batch_errors").fetchall()
    assert key not in dump
    assert row == ("***", "file-***", '{"note":"called with ***"}', "***")
    assert errors == [("***", "***")]


async def test_part_of_the_key_echoed_into_a_page_is_stored_masked_and_ids_holding_it_left_out(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A run of 16 characters identifies the key, whole or not: in a field it is masked; in
    a batch id or a file id the item is left out, since masked ids would merge rows."""
    key = settings.api_key
    assert key is not None
    run = key[4:22]
    echo = make_batch(
        3,
        status="failed",
        model=f"m-{run}",
        error_file_id=f"file-{run}",
        output_file_id=None,
        metadata={"note": run},
        errors={"object": "list", "data": [{"code": "bad", "message": f"{run}!"}]},
    )
    page = [
        make_batch(5, id=f"batch_{run}_a"),
        make_batch(4, id=f"batch_{run}_b"),
        echo,
        make_batch(2, model=key),  # the whole key too
        make_batch(1),
    ]
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body(page, False))
        serve_the_end(mock, page[-1])
        result = await sync(dataclasses.replace(settings, files=False), retry=fast_retry)
    assert (result.complete, result.batches_new) == (True, 3)
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        dump = "\n".join(conn.iterdump())
        rows = conn.execute("SELECT id, model, metadata FROM batches ORDER BY id").fetchall()
        errors = conn.execute("SELECT message FROM batch_errors").fetchall()
        files = conn.execute("SELECT file_id FROM batch_files ORDER BY 1").fetchall()
    assert run not in dump
    assert rows == [
        (make_batch(1)["id"], "gpt-4o-mini", '{"team":"équipe"}'),
        (make_batch(2)["id"], "***", '{"team":"équipe"}'),
        (echo["id"], "m-***", '{"note":"***"}'),
    ]
    assert (errors, files) == ([("***!",)], [("file-out-1",), ("file-out-2",)])


@pytest.mark.parametrize("key", ["x", "completed", "0", "EMPTY"])
async def test_a_placeholder_key_never_masks_stored_values(
    db_path: Path, fast_retry: RetryPolicy, key: str
) -> None:
    """A short key (a placeholder a local server ignores) is no secret to search data for:
    masking it would rewrite statuses and ids, and a batch marked `***` would never settle."""
    settings = Settings(db=db_path, base_url="http://127.0.0.1:9/v1", api_key=key)
    batches = [make_batch(2, status="completed", model="x-0"), make_batch(1, id="batch_x0x")]
    with aioresponses() as mock:
        mock.get("http://127.0.0.1:9/v1/batches?limit=100", payload=list_body(batches, False))
        result = await sync(dataclasses.replace(settings, files=False), retry=fast_retry)
    assert (result.complete, result.batches_new) == (True, 2)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute("SELECT id, status, model FROM batches ORDER BY id").fetchall()
    assert rows == [
        (make_batch(2)["id"], "completed", "x-0"),
        ("batch_x0x", make_batch(1)["status"], make_batch(1)["model"]),
    ]


def test_stored_values_mask_half_a_long_key_or_more() -> None:
    """164 characters, as project keys are: half of it is masked in what is stored (the
    rest would stay unguessable, but no more is let through); messages mask 16."""
    key = "sk-proj-" + "".join(f"{n:02d}aB" for n in range(39))
    assert len(key) == 164
    half, less = key[10:92], key[10:91]
    assert (holds_secret(f"x{half}y", key), holds_secret(f"x{less}y", key)) == (True, False)
    assert mask_values((f"x{half}y", f"x{less}y", 1), key) == ("x***y", f"x{less}y", 1)
    assert mask_secret(f"x{key[30:46]}y", key) == "x***y"


def test_a_short_key_is_masked_as_a_word_only() -> None:
    assert mask_secret("key x in box-x and x.", "x") == "key *** in box-x and ***."


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


def synced_with_an_error_line(db: Path, message: str) -> None:
    """`db` synced by the command line: one batch, failed a minute ago, its error line
    saying `message`."""
    batch = make_batch(
        1,
        created_at=int(time.time()) - 60,
        status="failed",
        errors={"data": [{"code": "bad_key", "message": message}]},
    )
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        assert main(["sync", "--db", str(db), "--base-url", BASE_URL, "--no-files", "-q"]) == 0


def shown_by(argv: list[str], db: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """What `argv` (a command showing `db`) printed, and the page its `--html` wrote ("":
    none)."""
    capsys.readouterr()
    assert main([*argv, "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    page = Path(argv[argv.index("--html") + 1]).read_text() if "--html" in argv else ""
    return printed, page


@pytest.mark.parametrize(
    "argv",
    [["report"], ["report", "--json"], ["report", "--html", "page.html"], ["status", "--json"]],
    ids=["report", "report-json", "report-html", "status-json"],
)
def test_what_the_commands_print_masks_the_key_a_server_echoed_into_stored_values(
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    """Stored values may keep less than half of a long key; what a command prints or
    writes masks any 16 characters of the key at hand, as messages do."""
    key = "sk-proj-" + "Q7wErTy9uIoP" * 6
    run = key[8:44]  # 36 characters: under half of a 80-character key, so stored as sent
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.chdir(tmp_path)
    synced_with_an_error_line(db_path, f"the key {run} was refused")
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT message FROM batch_errors").fetchone() == (
            f"the key {run} was refused",
        )
    printed, page = shown_by(argv, db_path, capsys)
    printed += page
    assert run[:16] not in printed
    if argv == ["report"]:
        assert "the key *** was refused" in printed


@pytest.mark.parametrize("separator", ["', '", " & ", '"', "<"])
@pytest.mark.parametrize(
    "argv",
    [["report"], ["report", "--json"], ["report", "--html", "page.html"]],
    ids=["report", "report-json", "report-html"],
)
def test_a_key_in_pieces_apart_is_masked_in_what_the_commands_show(
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    separator: str,
) -> None:
    """Three pieces of the key, each under half of it (stored as sent), a list's `', '`
    or `&` between them: the HTML report, masked once escaped, showed them (`&#x27;, &#x27;`
    and `&amp;` are of the key's letters and digits)."""
    key = "Zx9Qw3Er5Ty7Ui1Op4As6Df8Gh2Jk0LmNbVcXzR5tY"
    spread = separator.join((key[:14], key[14:28], key[28:]))
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.chdir(tmp_path)
    synced_with_an_error_line(db_path, f"refused: {spread}")
    printed, page = shown_by(argv, db_path, capsys)
    shown = page or printed
    assert spread not in html.unescape(shown)
    assert json.dumps(spread)[1:-1] not in shown


@pytest.mark.parametrize(
    ("key", "echo", "hidden"),
    [
        # 15 characters of the key, shown: the 16th in the document was its own escape.
        ("ABCDEFGHIJKLMNO\\PQRSTUVWXYZ0123456789", 'ABCDEFGHIJKLMNO"', None),
        ('ABCDEFGHIJ"KLMNOPQRSTUVWXYZ0123456789ab', 'ABCDEFGHIJ"KLMNOPQ', "ABCDEFGHIJ"),
    ],
    ids=["a backslash", "a quote"],
)
@pytest.mark.parametrize(
    "argv",
    [["report", "--json"], ["report", "--html", "page.html"]],
    ids=["report-json", "report-html"],
)
def test_a_key_holding_what_a_document_escapes_is_masked_and_the_document_whole(
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    key: str,
    echo: str,
    hidden: str | None,
) -> None:
    """Under half of such a key, stored as sent: the JSON report, masked as text, lost its
    own escape to the mask (`"error near ***" in line 3"`, no JSON), and the HTML report
    showed the run escaped (`ABCDEFGHIJ&quot;KLMNOPQ`), a spelling never masked."""
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.chdir(tmp_path)
    synced_with_an_error_line(db_path, f"error near {echo} in line 3")
    printed, page = shown_by(argv, db_path, capsys)
    shown = page or json.loads(printed)
    assert hidden is None or hidden not in str(shown)


@pytest.mark.parametrize("key", ["x", "null", "1", "true"])
@pytest.mark.parametrize(
    "argv",
    [["report", "--json"], ["report", "--html", "page.html"], ["status", "--json"]],
    ids=["report-json", "report-html", "status-json"],
)
def test_what_the_commands_print_is_whole_with_a_placeholder_key_at_hand(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    key: str,
) -> None:
    """A short key (the README's own `x`, a local server's placeholder) masked as a word
    in documents broke them: `<text ***="12">` in the HTML report, `***` for `null`, `true`
    or a count of 1 in the JSON of the report and the status. Stored data is never searched
    for such a key, nor are the documents showing it."""
    db = tmp_path / "b.db"
    assert main(["demo", "--db", str(db), "--batches", "50"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    if "--html" in argv:
        page = (tmp_path / "page.html").read_text()
        assert "***" not in page
        assert ' x="' in page
    else:
        json.loads(printed)


HEX_KEY = "0123456789ABCDEF0123456789ABCDEF01234567"  # one case: in another, the same key


def test_the_key_in_full_width_or_mathematical_letters_is_masked_where_shown() -> None:
    """Shown legibly by a terminal: masked in what `status` and `report` show of stored data
    (stored as it came: folding every page and request line cost a line of many scripts
    16 times as long), and found in what a user gives (a path, a URL)."""
    key = "sk-proj-Q7vX" + "k2Lm9Pq4Rs8Tu1Vw" * 2
    for spelled in (full_width(key), bold(key)):
        assert redact.mask_keys_in_data(f"note {spelled}.", [key]) == "note ***."
        assert redact.holds_secret_in_any_form(f"/tmp/{spelled}.db", key)


@pytest.mark.parametrize(
    "key",
    [
        "Sommer²Passwort²Winter²Herbst",
        "tokµ1234567890abcdefµXYZ1234567890",
        "Correct½Horse-Battery9",
    ],
)
def test_a_key_holding_letters_of_a_compatible_form_is_masked_as_written(key: str) -> None:
    """A password with ² or µ (on French and German keyboards): the text searched in its
    compatible form alone no longer held the key as written, shown and stored whole."""
    assert message_of(key, secret=key) == MASKED
    assert holds_secret(f"x{key}y", key)
    assert mask_values((f"x{key}y",), key) == ("x***y",)
    assert redact.holds_secret_in_any_form(f"/tmp/{key}.db", key)
    # Echoed in full-width or compatible letters: the key, unfolded, was found in neither.
    for echo in (full_width(key), unicodedata.normalize("NFKC", key)):
        assert message_of(echo, secret=key) == MASKED
        assert redact.holds_secret_in_any_form(f"/tmp/{echo}.db", key)


def test_stored_data_is_searched_for_a_key_of_one_case_in_the_other() -> None:
    """A hex key lower-cased is still the key to a server reading hex either way; a mixed-case
    key in one case is not (and searching every page for more forms would cost the walk)."""
    assert holds_secret(f"note {HEX_KEY.lower()}", HEX_KEY)
    assert mask_values((f"x{HEX_KEY.lower()}y",), HEX_KEY) == ("x***y",)
    mixed = "sk-proj-0123456789abcdefGHIJKLMNOPqrstuvwxyz"
    assert not holds_secret(mixed.upper(), mixed)


async def test_a_key_sent_back_as_the_content_encoding_is_masked(db_path: Path) -> None:
    """The header is quoted as sent, not lower-cased first: the key in it stays masked."""
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=HEX_KEY, page_size=2)
    with aioresponses() as mock:
        body = json.dumps(list_body([make_batch(1)], False))
        mock.get(f"{BASE_URL}/batches?limit=2", body=body, headers={"Content-Encoding": HEX_KEY})
        with pytest.raises(TransportError, match=r"encoded as \*\*\*") as failure:
            await sync(settings)
    assert HEX_KEY.lower()[:16] not in str(failure.value).lower()


@pytest.mark.parametrize(
    "where",
    [
        ["sync", "--config", "{key}.toml"],
        ["sync", "--config", "/nowhere/{key}.toml"],
        ["status", "--db", "/nowhere/{key}.db"],
        ["sync", "--db", "/nowhere/{key}.db"],
        ["sync", "--base-url", "http://{key}/v1"],
    ],
    ids=["config", "config path", "status db", "sync db", "plain http host"],
)
@pytest.mark.parametrize("json_log", [False, True], ids=["text", "json"])
def test_a_key_pasted_into_a_path_or_host_is_not_said_back(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: list[str],
    json_log: bool,
) -> None:
    """Paths and hosts are said back when refused: one holding the key was shown whole
    (a host in lower case)."""
    key = "sk-test-ADV19secretKEY1234567890abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.chdir(tmp_path)
    argv = [word.format(key=key) for word in where]
    code = main([*argv, *(["--log-format", "json"] if json_log else [])])
    said = capsys.readouterr()
    assert code != 0
    assert said.err.strip() or said.out.strip()
    assert "ADV19" not in said.out + said.err
    assert "adv19" not in said.out + said.err


@pytest.mark.parametrize("prefix", ["", "x", "xy", "Bearer "], ids=["at 0", "at 1", "at 2", "auth"])
def test_a_key_echoed_in_base64_is_masked_in_messages_and_stored_data(prefix: str) -> None:
    """A server echoing the Authorization header base64-encoded (at any of the three
    offsets a key can start at), or the key spelled a character at a time: shown and
    stored whole before."""
    key = "sk-test-ADV21secretKEY1234567890abcdef"
    encoded = base64.b64encode(f"{prefix}{key}!".encode()).decode()
    for echo in (encoded, " ".join(key)):
        text = f"the server got {echo} and refused it"
        assert holds_secret(text, key)
        masked = mask_secret(text, key)
        assert "***" in masked
        assert echo not in masked
        assert echo not in mask_values((text,), key)[0]


PROJECT_KEY = "sk-proj-" + "".join(f"{n:02d}aB" for n in range(39))  # 164 characters


def folded(text: str, width: int, line_break: str = "\n", indent: str = "") -> str:
    """`text` wrapped at `width` columns, as MIME base64 and text wrapping write it."""
    lines = [text[i : i + width] for i in range(0, len(text), width)]
    return (line_break + indent).join(lines)


WRAPPED_ECHOES = [
    pytest.param(
        folded(base64.b64encode(f"Bearer {PROJECT_KEY}".encode()).decode(), 76, "\r\n"),
        id="mime-base64",
    ),
    pytest.param(folded(PROJECT_KEY, 64), id="text-at-64"),
    pytest.param(folded(PROJECT_KEY, 40, "\n", "    "), id="indented-at-40"),
    pytest.param(json.dumps(folded(PROJECT_KEY, 64))[1:-1], id="json-escaped-break"),
    pytest.param(binascii.b2a_qp(f"Bearer {PROJECT_KEY}".encode()).decode(), id="quoted-printable"),
]


@pytest.mark.parametrize(
    ("secret", "stored"),
    [
        ('aaaaBBBB1111xyzQ","ccccDDDD2222xyzQ', {"m1": "zz{0}", "{1}zz": "v"}),
        ('aaaaBBBB1111xyzQ":"ccccDDDD2222xyzQ', {"zz{0}": "{1}zz"}),
        ('Abcdefghijklmnopq":"Rstuvwxyz0123456789A', {"{0}": "{1}"}),
        ('aaaaBBBB1111xyzQ","ccccDDDD2222xyzQ', ["x{0}", "{1}y", "z"]),
    ],
    ids=["a member's end and the next name", "a name and its value", "uneven", "a list"],
)
def test_a_secret_spanning_json_structure_is_stored_masked_as_json(
    secret: str, stored: object
) -> None:
    """A proxy password (or a key) holding JSON's quotes, echoed as the end of one string
    and the start of the next: masked as text, the batch's raw and metadata were stored as
    JSON no query can read; masked in each string, each held under half of it, and the
    text the whole. Stored as a JSON string of the masked text: readable, and without it
    (or as masked, where that is JSON still: `["x***y"]`)."""
    first, second = secret.split('"', 1)[0], secret.rsplit('"', 1)[1]
    filled = json.loads(json.dumps(stored).replace("{0}", first).replace("{1}", second))
    text = json.dumps(filled, separators=(",", ":"))
    assert secret in text
    (masked,) = mask_values((text,), secret)
    value = json.loads(masked)  # a string where masked text is no JSON
    assert not holds_secret(masked, secret)
    assert not any(holds_secret(s, secret) for s in [value] if isinstance(s, str))


@pytest.mark.parametrize("echo", WRAPPED_ECHOES)
def test_a_key_folded_over_lines_is_masked_in_stored_data(echo: str) -> None:
    """A 164-character key echoed wrapped over lines has no run of half the key on any
    line: it was stored in pieces. Found across the breaks, it is masked whole."""
    text = f"the server got\n{echo}\nand refused it"
    assert holds_secret(text, PROJECT_KEY)
    (masked,) = mask_values((text,), PROJECT_KEY)
    assert masked.startswith("the server got")
    assert masked.endswith("and refused it")
    assert not holds_secret(masked, PROJECT_KEY)
    assert masked.count("***") == 1
    for piece in re.split(r"\r\n|\n|\\n|    ", echo):
        assert len(piece) < 16 or piece not in masked


@pytest.mark.parametrize("echo", WRAPPED_ECHOES)
async def test_a_key_folded_over_lines_in_a_page_or_a_file_is_stored_masked(
    db_path: Path, fast_retry: RetryPolicy, echo: str
) -> None:
    """The folded key in a batch's error line and in a request line's error and body
    (which SQLite would otherwise map): stored masked, the lines around it as usual."""
    batch = make_batch(
        1,
        status="failed",
        error_file_id="file-err-1",
        output_file_id=None,
        errors={"object": "list", "data": [{"code": "bad", "message": f"got\n{echo}"}]},
    )
    answer = {"status_code": 401, "body": {"error": {"message": f"got\n{echo}"}}}
    lines = [
        {"custom_id": "echo", "response": answer, "error": None},
        {"custom_id": "plain", "response": None, "error": {"message": "expired"}},
    ]
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=PROJECT_KEY, bodies=True)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        content = "\n".join([*map(json.dumps, lines), ""])
        mock.get(f"{BASE_URL}/files/file-err-1/content", body=content.encode())
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.request_lines) == (True, 2)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        dump = "\n".join(conn.iterdump())
        stored = conn.execute("SELECT custom_id, error_message FROM batch_requests").fetchall()
        (message,) = conn.execute("SELECT message FROM batch_errors").fetchone()
    assert ("plain", "expired") in stored
    assert message.startswith("got\n")
    assert "***" in message
    for text in (dump, dump.replace("''", "'")):
        assert not holds_secret(text, PROJECT_KEY)


def fold_randomly(rng: random.Random, folds: list[str]) -> str:
    """The project key cut in up to 7 pieces, with up to 2 of `folds` between two."""
    cuts = sorted(rng.sample(range(1, len(PROJECT_KEY)), rng.randint(1, 6)))
    pieces = [PROJECT_KEY[a:b] for a, b in itertools.pairwise([0, *cuts, len(PROJECT_KEY)])]
    return pieces[0] + "".join(
        "".join(rng.choices(folds, k=rng.randint(1, 2))) + piece for piece in pieces[1:]
    )


# Line breaks, raw or escaped once, twice or more, and blanks after them.
FOLDS = ["\n", "\r\n", "\\n", "\\\\n", "\\\\\\r", "\\\\\\\\r\\n", "\n  ", "\\n\\t", "\n\t"]
FOLDS += ["=\r\n", "=\n", "=\\r\\n", "=\\n"]  # quoted-printable's soft breaks
FOLDS += ["\\u000a", "\\\\u000D\\\\u000A"]  # \u000a escaped once more (JSON in JSON)


def test_a_key_folded_any_way_is_found_and_masked_in_stored_data() -> None:
    """Stored data is searched with folds taken out in two ways, a quick one and one
    keeping track of positions to mask: whatever the way, the key is found and masked,
    and what else is found is masked too."""
    rng = random.Random(22)
    for _ in range(300):
        text = fold_randomly(rng, FOLDS)
        assert holds_secret(text, PROJECT_KEY), text
        assert mask_values((text,), PROJECT_KEY) == ("***",)
    for _ in range(300):  # with what may join a fold into something else
        text = fold_randomly(rng, [*FOLDS, "\\", "n", "x\\"])
        (masked,) = mask_values((text,), PROJECT_KEY)
        assert not holds_secret(masked, PROJECT_KEY), text


def test_soft_breaks_nested_are_taken_out_in_one_pass() -> None:
    """`==` and two breaks, and so on: a level was taken out a pass, a pass over the text
    each (200 KB of them stalled a sync 30 s, SIGTERM waiting)."""
    nested = "=" * 2_000 + "\n" * 2_000
    text = f"{PROJECT_KEY[:90]}{nested}{PROJECT_KEY[90:]}"
    unfolded, cuts = redact._unfolded_with_cuts(text)
    assert unfolded == redact._unfolded(text) == PROJECT_KEY
    assert len(cuts) <= 4  # a pass a kind of fold
    assert mask_values((f"a {text} b",), PROJECT_KEY) == ("a *** b",)


def test_a_text_unfolded_reads_the_same_both_ways() -> None:
    """Unfolded quickly (to rule a text out) and keeping positions (to mask), a text reads
    the same: what one finds, the other masks."""
    rng = random.Random(58)
    pieces = [*FOLDS, "=", "==", "\\", "\\\\", "x", " ", "\t", "\\t", "\\r", "\\u000a"]
    for _ in range(2_000):
        text = "".join(rng.choices(pieces, k=rng.randint(1, 10)))
        assert redact._unfolded_with_cuts(text)[0] == redact._unfolded(text), text


AZURE_KEY = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("variable", "key", "argv"),
    [
        ("OPENAI_API_KEY", PROJECT_KEY, ["sync", "--provider", "openai,{key}"]),
        ("OPENAI_API_KEY", PROJECT_KEY, ["sync", "--page-size", "={key}"]),
        ("OPENAI_API_KEY", PROJECT_KEY, ["sync", "--log-format", "json:{key}"]),
        ("OPENAI_API_KEY", PROJECT_KEY, ["sync", "--azure-endpoint", "https://{key}.azure.com"]),
        ("MY_KEY", AZURE_KEY, ["fake-api", "--port", "x{key}"]),
        ("AZURE_OPENAI_API_KEY", AZURE_KEY, ["sync", "--base-url", "ftp://{key}.example"]),
        ("AZURE_OPENAI_API_KEY", AZURE_KEY, ["status", "--db", "/nowhere/x{key}/d.db"]),
    ],
    ids=["choice", "integer", "log format", "endpoint", "port", "url", "db path"],
)
@pytest.mark.parametrize("json_log", [False, True], ids=["text", "json"])
def test_a_key_inside_a_flags_value_is_not_said_back(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    key: str,
    argv: list[str],
    json_log: bool,
) -> None:
    """A value refused was quoted whole unless it was a key itself; and only the key in
    OPENAI_API_KEY was masked, not one under another name (Azure's, or api_key_env's)."""
    monkeypatch.setenv(variable, key)
    monkeypatch.chdir(tmp_path)
    words = [word.format(key=key) for word in argv]
    try:
        code = main([*words, *(["--log-format", "json"] if json_log else [])])
    except SystemExit as refused:  # a flag argparse refused
        code = refused.code
    said = capsys.readouterr()
    assert code not in (0, None)
    assert said.err.strip() or said.out.strip()
    assert key[10:26] not in said.out + said.err


QUOTED_KEY = "aaaaaaaaaaaaa1'bbbbbbbbbbbbb2'ccccccccccccc3'ddddddddddddd4\"e"


@pytest.mark.parametrize(
    "argv",
    [["sync", "--log-format", QUOTED_KEY], ["report", "--since", QUOTED_KEY], [QUOTED_KEY]],
    ids=["choice", "since", "command"],
)
def test_a_key_holding_both_quote_marks_is_masked_where_argparse_quotes_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Python quotes such a value with its ' escaped: no 16 characters of the key were
    left in a row, and 45 of its 61 were shown."""
    monkeypatch.setenv("OPENAI_API_KEY", QUOTED_KEY)
    try:
        code = main(argv)
    except SystemExit as refused:
        code = refused.code
    said = capsys.readouterr().err
    assert code not in (0, None)
    assert "aaaaaaaaaaaaa1" not in said
    assert "bbbbbbbbbbbbb2" not in said


DIGITS_KEY = "8734591026473829104"  # a local server's token of digits


def test_a_key_of_digits_echoed_as_a_number_is_neither_stored_nor_shown() -> None:
    """Echoed in request counts and usage, it was stored whole in their integer columns,
    and `report --json` printed it: numbers were never searched."""
    row = ("batch_1", int(DIGITS_KEY), 42, f"[gateway] bad key {DIGITS_KEY}", "[1, 2]")
    assert mask_values(row, DIGITS_KEY) == ("batch_1", None, 42, "[gateway] bad key ***", "[1, 2]")
    document = {"tokens": int(DIGITS_KEY), "requests": 7, "ok": True}
    assert mask_keys_in_json(document, [DIGITS_KEY]) == {"tokens": "***", "requests": 7, "ok": True}


def test_a_key_of_digits_echoed_as_a_float_is_neither_stored_nor_shown() -> None:
    """Floats were kept: a numeric column stores 1234567890123456.0 as the integer."""
    key = "1234567890123456"  # as a float, exactly
    row = ("batch_1", float(key), -float(key), 1.5)
    assert mask_values(row, key) == ("batch_1", None, None, 1.5)
    document = {"hours": float(key), "share": 0.25}
    assert mask_keys_in_json(document, [key]) == {"hours": "***", "share": 0.25}


@pytest.mark.parametrize(
    ("key", "echo"),
    [
        ("1234567890.123456", "1234567890.123456"),
        ("-123456789012345", "-123456789012345"),
        ("1234567890123456", "0.00001234567890123456"),
    ],
    ids=["a decimal", "a negative", "after zeros (1.234567890123456e-05)"],
)
def test_a_key_spelled_as_a_number_echoed_as_one_is_neither_stored_nor_shown(
    key: str, echo: str
) -> None:
    """Numbers were checked for keys with a run of digits alone, spelled as Python writes
    them: these were stored whole (or their digits all), and shown."""
    value = json.loads(echo)
    assert mask_values((value, 7), key) == (None, 7)
    assert mask_keys_in_json({"requests": value, "n": 7}, [key]) == {"requests": "***", "n": 7}


def test_many_keys_at_hand_mask_a_json_document_key_by_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past 32 keys, masking each string with every key rebuilt every key's scan for each
    string (a cache of 32): report --json took 30 times as long. Each key's scan is built
    once a document now."""
    built = []
    real = redact._scan.__wrapped__

    def counted(secret: str, run: int, *, in_a_message: bool) -> object:
        built.append(secret)
        return real(secret, run, in_a_message=in_a_message)

    monkeypatch.setattr(redact, "_scan", functools.lru_cache(maxsize=32)(counted))
    keys = [f"sk-proj-{n:04d}-" + "x" * 30 for n in range(40)]
    mask_keys_in_json({"rows": [f"model {n}" for n in range(200)]}, keys)
    assert len(built) == len(keys)


def test_the_keys_of_every_config_file_named_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare `--config` after the one naming the key: the keys of the last alone were
    masked, and argparse refused the command first, the key shown."""
    config = tmp_path / "real.toml"
    config.write_text('api_key_env = "MY_TOKEN"\n')
    monkeypatch.setenv("MY_TOKEN", "hunter2hunter2hunter2hunter2")
    with pytest.raises(SystemExit):
        main(["sync", "--config", str(config), "--provider", "hunter2hunter2hunter2hunter2",
              "--config"])  # fmt: skip
    assert "hunter2hunter2" not in capsys.readouterr().err


UUID_KEY = "3f2b9c1e-7a4d-4e8b-9c2f-1a2b3c4d5e6f"  # a gateway's key, spelled like no key


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--api-version", UUID_KEY], {}),
        (["--provider", UUID_KEY, "--log-format", "json"], {}),
        (["--page-size", UUID_KEY], {}),
        ([], {"BATCH_CRAWLER_LOG_FORMAT": UUID_KEY}),
        (["--db", f"c/{UUID_KEY}/z.db"], {}),
    ],
    ids=["version", "choice, json", "integer", "log format variable", "db path"],
)
@pytest.mark.parametrize(
    "flag",
    ["--config", "--conf=", "--config other.toml --config", "--config= --config"],
    ids=["flag", "prefix", "the last of two", "after an empty one"],
)
def test_a_key_the_config_file_names_is_masked_in_the_flags(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
    flag: str,
) -> None:
    """A key in the variable a config file's api_key_env names, not spelled like a key,
    pasted into a flag argparse refused (or the log format variable) was shown whole: the
    config file, naming the variable, was not read yet. A path holding it was taken. Of
    two config files, the first was read for keys, and argparse takes the last."""
    config = tmp_path / "c.toml"
    config.write_text('[accounts.gw]\napi_key_env = "GW"\nbase_url = "https://h/v1"\n')
    monkeypatch.setenv("GW", UUID_KEY)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other.toml").write_text("page_size = 10\n")
    config_words = [f"{flag}{config}"] if flag.endswith("=") else [*flag.split(), str(config)]
    try:
        code = main(["sync", *config_words, *argv])
    except SystemExit as refused:
        code = refused.code
    said = capsys.readouterr()
    shown = said.out + said.err
    assert code not in (0, None)
    assert "***" in shown or "holds an API key (not shown)" in shown
    assert UUID_KEY[:16] not in shown


def test_a_setting_refused_in_the_library_never_quotes_the_key() -> None:
    """`Settings` refusing a value holding the key (pasted into a URL or a path) said it
    in the ConfigError a pipeline would print."""
    for key, place in [
        (PROJECT_KEY, {"base_url": f"ftp://{PROJECT_KEY}"}),
        (AZURE_KEY, {"base_url": f"ftp://x/{AZURE_KEY}"}),
        (AZURE_KEY, {"db": f"x{AZURE_KEY}\0"}),
    ]:
        with pytest.raises(ConfigError) as refused:
            Settings(api_key=key, **place)  # type: ignore[arg-type]
        assert key[:16] not in str(refused.value)


@pytest.mark.parametrize("escape", ["\\u000a", "\\u000A", "\\u000d\\u000a\\u0009", "\\\\u000a"])
async def test_a_key_folded_at_breaks_written_as_unicode_escapes_is_stored_masked(
    db_path: Path, fast_retry: RetryPolicy, escape: str
) -> None:
    """JSON may write a line break as \\u000a: SQLite decoded it after the search for the
    folded key had looked at the line's text, and stored the key whole."""
    batch = make_batch(1, status="failed", error_file_id="file-err-1", output_file_id=None)
    echo = folded(PROJECT_KEY, 64)
    answer = {"status_code": 401, "body": {"error": {"message": f"got\n{echo}"}}}
    lines = [
        {"custom_id": "echo", "response": answer, "error": {"message": f"got\n{echo}"}},
        {"custom_id": "plain", "response": None, "error": {"message": "expired"}},
    ]
    content = "\n".join(json.dumps(line).replace("\\n", escape) for line in lines)
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=PROJECT_KEY, bodies=True)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=100", payload=list_body([batch], False))
        mock.get(f"{BASE_URL}/files/file-err-1/content", body=content.encode())
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.request_lines) == (True, 2)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        dump = "\n".join(conn.iterdump())
        stored = dict(conn.execute("SELECT custom_id, error_message FROM batch_requests"))
    assert stored["plain"] == "expired"
    assert stored["echo"].startswith("got")
    assert "***" in stored["echo"]
    for text in (dump, dump.replace("''", "'")):
        assert not holds_secret(text, PROJECT_KEY)


def test_masking_a_long_text_takes_a_few_times_its_size() -> None:
    """A 16 MiB request line holding a folded key took 66 times its size in memory (a
    position kept per character) and 7 s; the cuts kept are a few per line break."""
    filler = "Lorem ipsum dolor sit amet,\\n consectetur adipiscing elit. " * 8_000
    text = f"{filler}{folded(PROJECT_KEY, 64)}\n{filler}"
    tracemalloc.start()
    try:
        (masked,) = mask_values((text,), PROJECT_KEY)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert masked == f"{filler}***\n{filler}"
    assert peak < 8 * len(text), f"{peak / len(text):.1f} times the text's size"


def test_a_key_of_one_letter_repeated_is_searched_for_in_little_memory() -> None:
    """A placeholder key (`sk-` and 48 x) finds its block at every character of a text of
    x, at each of its places: a span kept for each took 700 MB for 1 MB of text, and
    seconds each; a place within the spans found already is not grown."""
    key = "sk-" + "x" * 48
    text = "x" * 50_000
    tracemalloc.start()
    try:
        found = holds_secret(text, key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found
    assert peak < 2**20, f"{peak / 2**20:.1f} MiB"


def test_a_long_key_is_searched_for_in_memory_growing_with_its_length() -> None:
    """Every run of half a key was kept in a set: a value spelled like a key in the
    environment (a base64 blob) of 30,000 characters took 2 GB; one of 6,000 took 100 MB."""
    key = "".join(random.Random(6).choices("abcdefABCDEF0123456789", k=6_000))
    tracemalloc.start()
    try:
        found = holds_secret("x" * 1_000 + key[1_000:4_100] + "y", key)
        masked = mask_secret(f"echoed: {key[:20]}...", key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found
    assert masked == "echoed: ***..."
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("length", [164, 165], ids=["even run", "odd run"])
def test_every_run_of_half_the_key_is_found_wherever_it_starts(length: int) -> None:
    """Runs are looked for only around the blocks of the key a text holds: a run holding
    one block, at its very end, is found as well as any."""
    key = PROJECT_KEY + "Z" * (length - len(PROJECT_KEY))
    run = (length + 1) // 2
    for start in range(length - run + 1):
        text = f"<{key[start : start + run]}>"
        assert holds_secret(text, key), start
        assert mask_values((text,), key) == ("<***>",)
        assert mask_secret(f"<{key[start : start + 16]}>", key) == "<***>"


def test_an_api_errors_fields_are_as_masked_as_its_message() -> None:
    """A program logging the error's fields (Sentry, structlog) stored the key: `param`,
    `code` and `url` kept what the server sent."""
    body = json.dumps({"error": {"message": "no", "code": PROJECT_KEY, "param": PROJECT_KEY}})
    url = f"https://h/v1/batches?token={PROJECT_KEY}"
    error = build_api_error(401, body.encode(), {}, url, secret=PROJECT_KEY)
    assert PROJECT_KEY[:16] not in repr(vars(error)) + str(error)
    assert (error.code, error.param, error.url) == ("***", "***", "https://h/v1/batches?token=***")


@pytest.mark.parametrize(
    ("variables", "base_url", "refused"),
    [
        ({"HTTP_PROXY": "http://proxy.corp.example:3128"}, "http://localhost:4000/v1", None),
        ({"HTTP_PROXY": "http://10.0.0.1:3128"}, "http://127.0.0.1:4000/v1", None),
        (
            {"HTTP_PROXY": "http://proxy.corp.example:3128", "NO_PROXY": "localhost"},
            "http://localhost:4000/v1",
            None,
        ),
        ({"HTTP_PROXY": "http://127.0.0.1:3128"}, "http://localhost:4000/v1", None),
        ({"HTTPS_PROXY": "http://proxy.corp.example:3128"}, "https://api.example/v1", None),
        ({"HTTPS_PROXY": "http://127.0.0.1:99999"}, "https://api.example/v1", "no URL"),
        ({"WSS_PROXY": "http://[::1"}, "https://api.example/v1", "no URL"),
        ({"HTTP_PROXY": "proxy.corp.example:3128"}, "http://localhost:4000/v1", "not a URL"),
        ({"HTTPS_PROXY": "//u:pw@127.0.0.1:3128"}, "https://api.example/v1", "not a URL"),
        ({"HTTPS_PROXY": "socks5://u:pw@proxy:1080"}, "https://api.example/v1", "socks"),
        ({"HTTPS_PROXY": f"http://{'a' * 64}.example:1"}, "https://api.example/v1", "host"),
        ({"HTTPS_PROXY": "http://u:pw@xn--zz:3128"}, "https://api.example/v1", "host"),
        ({"HTTPS_PROXY": "http://u:pw@[v1.x]:3128"}, "https://api.example/v1", "host"),
        ({"HTTPS_PROXY": "http://u:pw@proxy one:3128"}, "https://api.example/v1", "host"),
        ({"HTTPS_PROXY": "http://u:пароль-pw@127.0.0.1:1"}, "https://api.example/v1", "latin"),
        ({"HTTPS_PROXY": "http://u%3Ax:pw@127.0.0.1:1"}, "https://api.example/v1", "colon"),
    ],
    ids=[
        "remote",
        "remote address",
        "no proxy",
        "local",
        "https",
        "port",
        "ipv6",
        "no scheme",
        "no scheme, a host",
        "socks",
        "a name part too long",
        "a name of no IDNA",
        "brackets holding no IPv6 address",
        "a name holding a space",
        "a password HTTP cannot send",
        "a user name HTTP cannot send",
    ],
)
async def test_a_proxy_from_the_environment_is_checked_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    base_url: str,
    refused: str | None,
) -> None:
    """Plain http to this machine went through a remote proxy, the key in clear text (no
    proxy is used for this machine now: test_demo); a proxy variable that is no URL ended
    in a ValueError traceback (aiohttp reads them all, used or not); one without a scheme
    was blamed on the base URL; a host name IDNA cannot encode (a key pasted as the host)
    ended in a UnicodeError traceback at the first request, and one yarl could not decode
    (xn--zz) in one at once; a password HTTP cannot send was said to be a redirect to a host
    name that cannot be sent; `[v1.x]` was looked up as the name v1.x, and a name holding a
    space was looked up too; a user name holding `%3A` ended in a ValueError traceback."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "WSS_PROXY", "NO_PROXY"):
        for spelled in (name, name.lower()):
            monkeypatch.delenv(spelled, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = Settings(base_url=base_url, api_key=PROJECT_KEY)
    if refused is None:
        await create_session(settings).close()
        return
    with pytest.raises(ConfigError) as caught:
        create_session(settings)
    assert {
        "no URL": "is no URL",
        "not a URL": "is not a URL",
        "socks": "is a socks5 proxy: aiohttp speaks to http and https proxies only",
        "host": "names no host (a part of its name is empty, over 63 characters, of other",
        "latin": "holds a character HTTP's Basic authentication cannot send (Latin-1 only)",
        "colon": "HTTPS_PROXY holds a ':', which HTTP's Basic authentication cannot send",
    }[refused] in str(caught.value)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize("bypassed", [False, True], ids=["used", "NO_PROXY"])
def test_an_https_proxy_from_the_environment_is_used(
    monkeypatch: pytest.MonkeyPatch, bypassed: bool
) -> None:
    """aiohttp leaves an https:// proxy in the environment out, with a log line hidden by
    default: requests went straight to the API, past the proxy the README says is
    honoured, and its password was not masked (pass 65A). aiohttp reaches one it is
    given."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        for spelled in (name, name.lower()):
            monkeypatch.delenv(spelled, raising=False)
    password = "Pr0xy-Pa55w0rd-0f-the-corp"
    monkeypatch.setenv("HTTPS_PROXY", f"https://corp-user:{password}@127.0.0.1:3129")
    if bypassed:
        monkeypatch.setenv("NO_PROXY", "api.example")
    settings = Settings(base_url="https://api.example/v1", api_key=PROJECT_KEY)
    if bypassed:
        assert api._environment_proxy(settings) == (None, None)
        return
    proxy, auth = api._environment_proxy(settings)
    assert proxy == URL("https://127.0.0.1:3129")
    assert auth is not None
    assert (auth.login, auth.password) == ("corp-user", password)
    assert mask_secret(f"407 for {password}", secrets_of_a_run(settings, None)) == "407 for ***"


def test_a_key_of_no_key_shape_in_openai_api_key_is_still_not_said_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A local server's token that looks like no key was masked as OPENAI_API_KEY's value;
    masking only values spelled like keys let it through."""
    key = "mylocalserverkey-abcdefghijklmnopqrstuvwxyz"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.chdir(tmp_path)
    assert main(["status", "--db", f"/nowhere/{key}/x.db"]) != 0
    said = capsys.readouterr()
    assert key[:16] not in said.out + said.err


@pytest.mark.parametrize("fault", ["error envelope", "cursor twice", "redirect elsewhere"])
async def test_the_list_streams_errors_mask_the_key(
    db_path: Path, fast_retry: RetryPolicy, fault: str
) -> None:
    """An error a 200 brought, quoting the key, a cursor sent twice holding 30 of its
    characters, a redirect naming it: masked by `sync`, but raised by `iter_batches` as
    the server sent them, or with aiohttp's error holding it as its cause."""
    echo = make_batch(1, id=f"batch_{PROJECT_KEY[:30]}")

    async def listed(request: web.Request) -> web.Response:
        if fault == "error envelope":
            return web.json_response({"error": {"message": f"key {PROJECT_KEY} not allowed"}})
        if fault == "redirect elsewhere":
            raise web.HTTPFound(f"ftp://example/{PROJECT_KEY}")
        return web.json_response(list_body([echo], True))  # the same page, whatever `after`

    async with serving({"/v1/batches": listed}) as root:
        settings = Settings(db=db_path, base_url=f"{root}/v1", api_key=PROJECT_KEY)
        with pytest.raises(CrawlerError) as streamed:
            async for _ in iter_batches(settings, retry=fast_retry):
                pass
        with pytest.raises(CrawlerError) as synced:
            await sync(settings, retry=fast_retry)
    for caught in (streamed, synced):
        assert "***" in str(caught.value)
        assert PROJECT_KEY[8:24] not in "".join(traceback.format_exception(caught.value))
        # Not kept where code walking an error's causes would find it either.
        assert (caught.value.__cause__, caught.value.__context__) == (None, None)


async def test_a_key_of_one_account_echoed_to_another_is_masked_wherever_it_goes(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """A gateway echoing one account's key in its answer to another's (a cached answer):
    each run masked its own key alone, and stored the other's in the batches and the
    ledger."""
    key_a, key_b = "0123456789abcdef" * 2, "fedcba9876543210" * 2  # Azure keys: no sk- word

    async def listed_for_a(request: web.Request) -> web.Response:
        return web.json_response(list_body([make_batch(1, metadata={"seen": key_b})], False))

    async def refused_for_b(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"invalid bearer {key_a}"}}, status=400)

    async with (
        serving({"/v1/batches": listed_for_a}) as root_a,
        serving({"/v1/batches": refused_for_b}) as root_b,
    ):
        accounts = [
            Settings(db=db_path, account=name, base_url=f"{root}/v1", api_key=key, files=False)
            for name, root, key in (("a", root_a, key_a), ("b", root_b, key_b))
        ]
        outcomes = await sync_accounts(accounts, retry=fast_retry)
    assert [o.result is not None for o in outcomes] == [True, False]
    assert "invalid bearer ***" in str(outcomes[1].error)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        stored = "\n".join(conn.iterdump())
    assert "invalid bearer ***" in stored
    assert not any(key[:16] in stored or key[16:] in stored for key in (key_a, key_b))


async def said_by_a_refused_sync(
    tmp_path: Path, config: str, args: list[str], env: dict[str, str], echoed: str
) -> tuple[int | None, str]:
    """`sync --config` (its TOML, `{root}` the server's URL) and `args`, run with `env`
    against a server refusing every request (401) with a message quoting `echoed`: the
    exit code, and all the command said."""

    async def refused(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"not ({echoed})"}}, status=401)

    async with serving({"/{path:.*}": refused}) as root:
        path = tmp_path / "sync.toml"
        path.write_text(f'db = "{tmp_path / "b.db"}"\n' + config.replace("{root}", root))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crawler", "sync", "--config", str(path), *args,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
    return proc.returncode, (out + err).decode()


@pytest.mark.parametrize("output", ["text", "--json", "--log-format json"])
async def test_one_accounts_failure_quoting_another_accounts_key_is_masked(
    tmp_path: Path, output: str
) -> None:
    """Each account masks its own key: a failure of one quoting another's was said whole,
    and told whole in its run_failed event."""
    other_key = "0123456789abcdef" * 2  # an Azure key: no sk- word to mask on sight
    accounts = (
        '[accounts.a]\nbase_url = "{root}/v1"\napi_key_env = "KEY_A"\n'
        '[accounts.b]\nbase_url = "{root}/v1"\napi_key_env = "KEY_B"\n'
    )
    code, said = await said_by_a_refused_sync(
        tmp_path,
        accounts,
        output.split() if output != "text" else [],
        {"KEY_A": PROJECT_KEY, "KEY_B": other_key},
        other_key,
    )
    assert code == 1
    assert said.count("not (***)") >= 2
    assert other_key[:16] not in said


GATEWAY_KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-" + "Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3Ah9" * 2,
    "LITELLM_MASTER_KEY": "sk-Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3",
    # Of no key's shape: a passphrase, a short token, a password of symbols.
    "UPSTREAM_PASSPHRASE": "correct horse battery staple",
    "LOCAL_TOKEN": "tok-42",
    "GATEWAY_PASSWORD": "x#k@v(m)q&z^w!r%b*n-j_h=g+f",
}


def test_the_variables_mask_env_names_are_masked_whatever_their_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gateway's keys under its own names are masked when `mask_env` names them, of any
    shape; none is guessed from a variable's name (each guess at the environment's keys
    masked data spelling a label, or missed a key of a shape no rule knew: passes 79A to
    89A)."""
    for name, value in GATEWAY_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_" + "Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3Ah9Xy")
    settings = Settings(base_url="http://127.0.0.1:9/v1", api_key=PROJECT_KEY)
    assert set(GATEWAY_KEYS.values()).isdisjoint(secrets_of_a_run(settings, None))  # type: ignore[arg-type]
    settings = dataclasses.replace(settings, mask_env=tuple(GATEWAY_KEYS))
    masked = list(secrets_of_a_run(settings, None))  # type: ignore[arg-type]
    assert set(GATEWAY_KEYS.values()) <= set(masked)
    assert not any(key.startswith("ghs_") for key in masked)


@pytest.mark.parametrize(
    ("value", "secrets"),
    [
        ('"sk-Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3"', ["sk-Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3"]),
        ("sk-Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3  # rotated (ops)", ["sk-Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3"]),
        ("'Zx9!Qw3Er5Ty7 #Ui8Op0As2Df4'", ["Zx9!Qw3Er5Ty7 #Ui8Op0As2Df4"]),
        ("first-key-0001\n  second-key-0002\n\n", ["first-key-0001", "second-key-0002"]),
        (
            '{\n  "key": "Zt8mQ2wvRk4p",\n  "uri": "https://x.io/token"\n}',
            ["Zt8mQ2wvRk4p", "https://x.io/token"],
        ),
        ("'Zt8mQ2wvRk4pLx7HyBn3' # rotated 2026-11", ["Zt8mQ2wvRk4pLx7HyBn3"]),
        ("\"Zt8m'Q2wv'Rk4p\" # don't", ["Zt8m'Q2wv'Rk4p"]),
        ('"Tr0ub4dor&3" # from the old "vault"', ["Tr0ub4dor&3"]),
        ('"Tr0ub"4dor&3"', ['Tr0ub"4dor&3']),
        ("#Xk9mQ2vL7pR4tZ8wYb3N", ["#Xk9mQ2vL7pR4tZ8wYb3N"]),
        ("'Q2vL'#7pR4tZ8wYb3NxKm", ["Q2vL'#7pR4tZ8wYb3NxKm"]),
        ("gpt-4o=sk-Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3", ["gpt-4o=sk-Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3"]),
        ("  ", []),
    ],
    ids=[
        "quoted",
        "a comment",
        "a quoted password",
        "lines",
        "a JSON document",
        "quoted, a comment after",
        "quotes inside",
        "a comment ending in a quote",
        "a quote inside",
        "a hash first",
        "a hash after a quote",
        "one line",
        "blank",
    ],
)
def test_a_variable_to_mask_is_read_line_by_line(value: str, secrets: list[str]) -> None:
    """Each line, as GitHub Actions masks a secret of several lines, without the quotes and
    the comment an `--env-file` leaves (after the closing quote too: the closing quote and
    the comment were taken in, and nothing was masked, 90A; to the first quote closing it:
    a comment ending in a quote was taken in, 91A; a comment follows a blank: a value
    beginning with `#` was none, 92A); a line is one secret, whatever it holds; of a JSON
    document, each string value (its lines' JSON was masked too, and data echoing them
    stored broken, 92A)."""
    assert list(variable_secrets(value, any_shape=True)) == secrets


@pytest.mark.parametrize(
    "password",
    [
        "/g~LJ7M!F*IdR=SOlh^3l.<and^lcv#e",
        "NY?6HlED?qy_oFOO>VI1vfCiHBtwkUrRAtMS)NHIWx(P:_M&]@:ydt1:l0dgr!jg",
        "kgV^T2QDEuBU8_J6Eh6GxBPUp^CZ!3pz",
        "z-9wIqBjIrp=*eWSw7'Ox-A&pVqDI\\bd",
        "Kq7@Lm2@Np9@Rt4@Vx8@Bw3@",
    ],
)
def test_a_default_variables_password_of_symbols_is_masked_whole(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    """Entra ID's client secret, or the other account's key, a password of symbols with
    or without digits: only a run of key characters in it was taken, and the rest stored
    (pass 85A)."""
    monkeypatch.setenv("AZURE_CLIENT_SECRET", password)
    settings = Settings(base_url="http://127.0.0.1:9/v1", api_key=PROJECT_KEY)
    assert password in list(secrets_of_a_run(settings, None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        '["sk-Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3"]',
        '"UPSTREAM_KEY"',
        '["UPSTREAM KEY"]',
        "[1]",
        '["GATEWAY_KEY", "Tr0ub4dor&3"]',
        '["Xk9mQ2vL7pR4tZ8wYb3N"]',
        '["9f8e7d6c5b4a39281706f5e4d3c2b1a0"]',
    ],
)
def test_mask_env_takes_a_list_of_variables_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """A list of names, not the secrets: what is none is refused unshown, whatever its
    length, and so is a secret spelled as a name (accepted, it masked nothing, 90A)."""
    path = tmp_path / "c.toml"
    path.write_text(f'base_url = "http://127.0.0.1:9/v1"\nmask_env = {value}\n')
    assert main(["sync", "--config", str(path), "--db", str(tmp_path / "b.db")]) == 2
    err = capsys.readouterr().err
    assert "mask_env: expected a list of the names of environment variables" in err
    assert "not shown" in err
    for secret in ("Zq8JmX2pLr7Wn4Yb", "Tr0ub4dor", "Xk9mQ2vL", "9f8e7d6c", "UPSTREAM"):
        assert secret not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["Xk9mQ2vL7pR4tZ8wYb3N", "hf_QwErTy8UiOp2AsDfGh5JkLz"])
def test_a_key_spelled_as_a_variables_name_in_api_key_env_is_refused_unshown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """Accepted, `no API key: set <the key>` showed it (pass 90A)."""
    path = tmp_path / "c.toml"
    path.write_text(f'base_url = "http://127.0.0.1:9/v1"\napi_key_env = "{name}"\n')
    assert main(["sync", "--config", str(path), "--db", str(tmp_path / "b.db")]) == 2
    err = capsys.readouterr().err
    assert "api_key_env: must name the environment variable" in err
    assert name[:8] not in err


def test_names_of_variables_are_no_secrets() -> None:
    """Names with digits, as variables are named, are accepted."""
    for name in ("OPENAI_API_KEY_2024", "AZURE_OPENAI_KEY1", "my_gateway_key_2", "KEY_B"):
        assert check_setting("mask_env", [name]) is None
        assert check_setting("api_key_env", name) is None


def test_every_accounts_mask_env_is_masked_by_each(tmp_path: Path) -> None:
    """An account's `mask_env` replaced the file's, whose variables it stored unmasked; and
    one account's was masked in another's data only while its own run went (left out by
    `--account`, or failing before it began: pass 90A)."""
    path = tmp_path / "c.toml"
    path.write_text(
        'mask_env = ["UPSTREAM"]\n'
        '[accounts.a]\nbase_url = "http://127.0.0.1:9/a/v1"\nmask_env = ["OTHER"]\n'
        '[accounts.b]\nbase_url = "http://127.0.0.1:9/b/v1"\n'
        '[accounts.c]\nbase_url = "http://127.0.0.1:9/c/v1"\nmask_env = ["THIRD", "UPSTREAM"]\n'
    )
    accounts = load_accounts({}, {}, path, only=["b"])
    assert [a.mask_env for a in accounts] == [("UPSTREAM", "OTHER", "THIRD")]


def test_a_proxys_password_of_symbols_without_digits_is_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy the run does not go through: its password of letters and symbols alone was
    read by another rule than the default variables' and not masked (pass 90A)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        for spelled in (name, name.lower()):
            monkeypatch.delenv(spelled, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://svc:kP%23vRw!mZq%40tLx$Ny@proxy.corp.example:3128")
    settings = Settings(base_url="http://127.0.0.1:9/v1", api_key=PROJECT_KEY)
    masked = list(secrets_of_a_run(settings, None))  # type: ignore[arg-type]
    assert {"kP#vRw!mZq@tLx$Ny", "kP%23vRw!mZq%40tLx$Ny"} & set(masked)


def test_a_quoted_default_key_with_a_comment_after_it_is_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The closing quote and the comment were taken as the key's, which then held blanks:
    written as no secret, it was not masked at all (pass 90A)."""
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "'Zt8mQ2wvRk4pLx7HyBn3' # rotated 2026-11")
    settings = Settings(base_url="http://127.0.0.1:9/v1", api_key=PROJECT_KEY)
    assert "Zt8mQ2wvRk4pLx7HyBn3" in list(secrets_of_a_run(settings, None))  # type: ignore[arg-type]


def test_a_config_files_mask_env_is_masked_in_what_the_command_line_says_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read before the flags are checked: a secret `mask_env` names, pasted into a flag,
    is not said back."""
    secret = "correct-horse-battery-staple"
    monkeypatch.setenv("UPSTREAM_PASSPHRASE", secret)
    path = tmp_path / "c.toml"
    path.write_text('mask_env = ["UPSTREAM_PASSPHRASE"]\n')
    with pytest.raises(SystemExit):
        main(["sync", "--config", str(path), "--page-size", secret])
    assert secret not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config", "env", "echoed"),
    [
        (
            'api_key_env = "KEY_OF_THE_RUN"\n',
            {"KEY_OF_THE_RUN": PROJECT_KEY, "OPENAI_API_KEY": "9e4f0a9e4c1f0c9a"},
            "9e4f0a9e4c1f0c9a",
        ),
        (
            'mask_env = ["UPSTREAM_PASSPHRASE"]\n',
            {"OPENAI_API_KEY": PROJECT_KEY, "UPSTREAM_PASSPHRASE": "correct horse battery"},
            "correct horse battery",
        ),
    ],
    ids=["a default key the run does not use", "a variable mask_env names"],
)
async def test_a_json_logs_last_word_masks_the_keys_at_hand(
    tmp_path: Path, config: str, env: dict[str, str], echoed: str
) -> None:
    """A key the run does not use (short or plain: no key's shape), echoed by a gateway,
    is masked in the text log's last line and was shown in the JSON log's `run_failed`
    event (pass 79A); so is a gateway's upstream secret a config file's `mask_env` names."""
    code, said = await said_by_a_refused_sync(
        tmp_path, 'base_url = "{root}/v1"\n' + config, ["--log-format", "json"], env, echoed
    )
    assert code == 1
    assert '"event":"run_failed"' in said
    assert "not (***)" in said
    assert echoed not in said


@pytest.mark.parametrize("host", ["[:sk-proj-abcdefghijklmnop1234]", "[::1:g]"])
async def test_a_proxy_in_brackets_holding_no_address_is_refused_in_one_line(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """Brackets yarl takes and urllib refuses: a ValueError traceback quoting the key."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        for spelled in (name, name.lower()):
            monkeypatch.delenv(spelled, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://{host}:3128")
    key = "sk-proj-abcdefghijklmnop1234"
    settings = Settings(db=db_path, base_url="http://127.0.0.1:9/v1", api_key=key)
    with pytest.raises(ConfigError, match="brackets hold no IPv6 address") as caught:
        await sync(settings)
    assert key.lower()[8:24] not in str(caught.value).lower()


def test_an_ipv4_mapped_loopback_address_is_this_machine() -> None:
    assert is_on_this_machine("http://[::ffff:127.0.0.1]:8000/v1")
    assert not is_on_this_machine("http://[::ffff:10.0.0.1]:8000/v1")


async def test_file_ids_holding_part_of_the_key_are_masked_in_events(
    db_path: Path, fast_retry: RetryPolicy
) -> None:
    """A file id of 60 of a 168-character key's characters is stored as sent (under half
    of it), but the JSON log's file_stored events showed it, where any 16 are masked."""
    key = "sk-proj-" + "K3yPart" * 22 + "abcd"
    batch = make_batch(1, status="failed", error_file_id="file-" + key[-60:])
    batch["id"] = "batch_" + key[:60]
    batch["request_counts"] = {"total": 1, "completed": 0, "failed": 1}
    line = {"id": "r", "custom_id": "c", "response": None, "error": {"code": "x", "message": "m"}}

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(list_body([batch], False))

    async def content(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(line) + "\n")

    events: list[Event] = []
    routes = {"/v1/batches": listed, "/v1/files/{id}/content": content}
    async with serving(routes) as root:
        settings = Settings(db=db_path, base_url=f"{root}/v1", api_key=key)
        result = await sync(settings, retry=fast_retry, on_event=events.append)
    assert result.files == 1
    [stored] = [e.fields for e in events if e.name == "file_stored"]
    shown = stored["file_id"] + " " + stored["batch_id"]
    assert "***" in stored["file_id"]
    assert "***" in stored["batch_id"]
    assert not any(key[i : i + 16] in shown for i in range(len(key) - 15))


def test_a_key_of_no_key_shape_in_azures_variable_is_not_said_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Azure's default variable was masked only for values shaped like a key: a flag given
    that key as its value was said back whole."""
    key = "1gngas4fwkw33r5adc5yalheozq28czrnfhqtvlq"
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", key)
    with pytest.raises(SystemExit):
        main(["sync", "--page-size", key])
    err = capsys.readouterr().err
    assert 'got "***"' in err
    assert key not in err


def test_two_tokens_sharing_long_runs_are_both_masked_whole_in_stored_data() -> None:
    """Two Entra ID tokens of one identity share their header and most claims: the first
    masked alone left the second in pieces shorter than half of it, its signature stored."""
    claims = base64.urlsafe_b64encode(json.dumps({"groups": ["g" * 30] * 30}).encode()).decode()
    header = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"RS256"}').decode()
    older, newer = (
        ".".join([header, claims + base64.urlsafe_b64encode(os.urandom(30)).decode(),
                  base64.urlsafe_b64encode(os.urandom(256)).decode()])
        for _ in range(2)
    )  # fmt: skip
    [stored] = mask_values((f"echoed {newer} back",), Secrets(older, newer))
    assert stored == "echoed *** back"


PATH_WORDS = {
    "sync --db": ["sync", "--db", "{dir}/{key}.db"],
    "sync --config": ["sync", "--config", "{dir}/{key}.toml"],
    "status": ["status", "--db", "{dir}/{key}.db"],
    "report --html": ["report", "--db", "{dir}/b.db", "--html", "{dir}/r-{key}.html"],
    "datasette-metadata -o": ["datasette-metadata", "--db", "{dir}/b.db", "-o", "{dir}/{key}"],
    "prices load": ["prices", "load", "{dir}/p-{key}.csv", "--db", "{dir}/b.db"],
    "demo": ["demo", "--db", "{dir}/d-{key}.db"],
}


@pytest.mark.parametrize("words", PATH_WORDS.values(), ids=PATH_WORDS.keys())
def test_a_path_holding_the_key_is_refused_unshown(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    words: list[str],
) -> None:
    """Masked in errors, but said back whole by a command that succeeded (`Wrote ...`), in
    the run's events, and as the database's name in Datasette's metadata."""
    key = "sk-proj-" + "A1b2C3d4" * 6
    monkeypatch.setenv("OPENAI_API_KEY", key)
    code = main([word.format(dir=tmp_path, key=key) for word in words])
    said = capsys.readouterr()
    assert code == 2
    assert "holds an API key (not shown)" in said.err
    assert key[:16] not in said.out + said.err
    assert not list(tmp_path.iterdir())


def test_a_database_path_holding_the_key_is_refused(tmp_path: Path) -> None:
    key = "correct-horse-battery-staple-0123456789"
    with pytest.raises(ConfigError, match=r"^db: the path holds the API key"):
        Settings(db=tmp_path / f"{key[:24]}.db", api_key=key)


PROXY_PASSWORD = "S3cretProxyPw0rd-x9"


@contextlib.asynccontextmanager
async def echoing_proxy(
    monkeypatch: pytest.MonkeyPatch, password: str = PROXY_PASSWORD
) -> AsyncIterator[list[str]]:
    """HTTP_PROXY naming a proxy on 127.0.0.1 that echoes its credentials: in a 502 first,
    then in a page (a batch's metadata, and the id of another). Yields what it was sent."""
    asked: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        header = request.headers["Proxy-Authorization"]
        echo = base64.b64decode(header.split()[1]).decode("latin-1")
        asked.append(echo)
        if len(asked) == 1:
            error = {"message": f"upstream failed for {echo} ({header})", "type": "server_error"}
            return web.json_response({"error": error}, status=502)
        echoed = [make_batch(2, id=f"batch_{echo}"), make_batch(1, metadata={"seen": echo})]
        return web.json_response(list_body(echoed, False))

    async with serving({"/v1/batches": proxy}) as root:
        monkeypatch.setenv("HTTP_PROXY", root.replace("//", f"//user:{password}@"))
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        yield asked


PROXIED = {"base_url": "http://api.invalid/v1", "api_key": "sk-test-key", "files": False,
           "allow_insecure_http": True}  # fmt: skip
ONE_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0, max_backoff=0)


@pytest.mark.parametrize("password", [PROXY_PASSWORD, "pässwörd-Ünïcode-lätin1-xyz"])
async def test_a_proxys_password_echoed_back_is_masked(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    """Only the proxy URL the run shows hid its credentials: a proxy echoing them (in an
    error it passes on, in a page) had the password shown in retry events and stored. One
    outside ASCII was shown in the header echoed (its base64 is of Latin-1, not UTF-8)."""
    events: list[Event] = []
    async with echoing_proxy(monkeypatch, password) as asked:
        settings = Settings(db=db_path, **PROXIED)
        result = await sync(settings, retry=ONE_RETRY, on_event=events.append)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        stored = "\n".join(conn.iterdump())
    header = base64.b64encode(f"user:{password}".encode("latin-1")).decode()
    assert asked == [f"user:{password}"] * 2
    assert result.batches_new == 1
    for secret in (password, header[8:]):
        assert secret not in stored
        assert secret not in repr(events)
    assert "upstream failed for user:***" in repr(events)


async def test_a_proxys_password_echoed_back_is_masked_in_the_streaming_call(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Its client masked the key alone: the retry's log line showed the password, and a
    batch whose id held it was handed on."""
    async with echoing_proxy(monkeypatch):
        settings = Settings(db=db_path, **PROXIED)
        ids = [batch["id"] async for batch in iter_batches(settings, retry=ONE_RETRY)]
    assert ids == [make_batch(1)["id"]]
    assert "upstream failed for user:***" in caplog.text
    assert PROXY_PASSWORD not in caplog.text


UPSTREAM_KEY = "sk-proj-" + "Up5tReAmK3y" * 4
KEY_SHAPED_PASSWORD = "Zq8Jm3Kp9Lw2Xv7Rt4Yb5Nc1Hd6Gf0Ps"


@pytest.mark.parametrize("beside", ["upstream key", "proxy bypassed"])
async def test_the_environments_secrets_a_local_gateway_echoes_are_masked(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, beside: str
) -> None:
    """A gateway on this machine, the run's key its own token, the upstream key in
    OPENAI_API_KEY and a proxy in HTTPS_PROXY that a local base URL does not go through
    (the gateway shares the environment): echoing them in an error it passed on, then in a
    page, showed them in the retry warnings and stored them (pass 72A)."""
    if beside == "upstream key":
        secret = UPSTREAM_KEY
        monkeypatch.setenv("OPENAI_API_KEY", secret)
    else:
        secret = KEY_SHAPED_PASSWORD
        monkeypatch.setenv("HTTPS_PROXY", f"http://alice:{secret}@127.0.0.1:9")
    asked: list[str] = []

    async def gateway(request: web.Request) -> web.Response:
        asked.append(request.headers["Authorization"])
        if len(asked) == 1:
            error = {"message": f"upstream refused ({secret})", "type": "server_error"}
            return web.json_response({"error": error}, status=502)
        return web.json_response(list_body([make_batch(1, metadata={"seen": secret})], False))

    events: list[Event] = []
    async with serving({"/v1/batches": gateway}) as root:
        settings = Settings(db=db_path, base_url=f"{root}/v1", api_key="gateway-token-of-the-run",
                            files=False)  # fmt: skip
        result = await sync(settings, retry=ONE_RETRY, on_event=events.append)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        stored = "\n".join(conn.iterdump())
    assert asked == ["Bearer gateway-token-of-the-run"] * 2
    assert result.batches_new == 1
    assert secret not in stored
    assert secret not in repr(events)
    assert "upstream refused (***)" in repr(events)


def test_the_environments_placeholders_and_passphrases_mask_no_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Values no key is spelled like, in the default keys' variables (a template's
    placeholder) or as an unused proxy's password (a passphrase, a name in German): masked
    in stored data too, they masked the model answers spelling them (`os.getenv("***")`,
    `T*** over the lazy dog`) and made every page's search several times as slow (74A;
    `sk-` words too, 76A; with digits, a sequence or blanks, 77A; a person's password
    with digits and letters no generator writes, 79A; data under a key's name, an object's
    path, a sort order, a cache key holding a commit: taken, a batch id spelling part of
    an object's path was left out and a sync never finished, 81A)."""
    for name, value in [
        ("OPENAI_API_KEY", "sk-1234567890abcdefghijklmnopqrstuvwxyz"),
        ("AZURE_OPENAI_API_KEY", "1234567890abcdef1234567890abcdef"),
        ("HTTPS_PROXY", "http://jdoe:the%20quick%20brown%20fox%20jumps%2042@127.0.0.1:9"),
        ("ALL_PROXY", "http://jdoe:YOUR_AZURE_OPENAI_API_KEY@127.0.0.1:9"),
        (
            "http_proxy",
            "http://j%C3%BCrgen:Gr%C3%BC%C3%9Fe-aus-M%C3%BCnchen-Passw%C3%B6rt@127.0.0.1:9",
        ),
        ("FTP_PROXY", "http://jdoe:Gr%C3%BC%C3%9Fe2024Passwort!@127.0.0.1:9"),
        ("S3_KEY", "reports/2026/12/batch-output-0001.jsonl"),
        ("EXPORT_S3_KEY", "exports/2026/12/07/6750a1b5a0e881909c0c5f13a0f6a2b2"),
        ("CACHE_KEY", "v3-deps-3f786850e387550fdab836ed7e6dc881de23001b"),
        ("IDEMPOTENCY_KEY", "6750a1b5-a0e8-4190-9c0c-5f13a0f6a2b2"),
        ("PIPELINE_LAST_READ_TOKEN", "batch_6933aa0f6b8c8190a7c4f2a1b3d5e7f9"),  # 83A
        ("SORT_KEY", "created_at_desc2024_by_model"),
        ("PARTITION_KEY", "tenant-4f2a9c-eu-west-2"),
        ("HTTP_PROXY", "http://jdoe:CorrectHorseBatteryStaple@127.0.0.1:9"),
    ]:
        monkeypatch.setenv(name, value)
    settings = Settings(base_url="http://127.0.0.1:9/v1", api_key=PROJECT_KEY)
    assert secrets_of_a_run(settings, None) == PROJECT_KEY


@pytest.mark.parametrize(
    "placeholder",
    [
        "sk-your-openai-api-key-here-v2",
        "REPLACE_ME_with_the_key_2024",
        "<your-azure-key-01>",
        "sk-proj-example-key-0123-abcd",
    ],
)
def test_a_templates_placeholder_with_a_version_masks_no_data(
    monkeypatch: pytest.MonkeyPatch, placeholder: str
) -> None:
    """A template's placeholder given a version or a number counted as written by a
    machine: it masked the data spelling its words (pass 78A)."""
    monkeypatch.setenv("OPENAI_API_KEY", placeholder)
    settings = Settings(base_url="http://127.0.0.1:9/v1", api_key=PROJECT_KEY)
    assert secrets_of_a_run(settings, None) == PROJECT_KEY


@pytest.mark.parametrize(
    "key",
    [
        "q3Zk+9vT/2mPx7Lr4Wn8Yb1Hc6Jd0Ke5Fg3Ah9Ss2Q=",
        '"sk-proj-' + "Up5tReAmK3y" * 4 + '"',
        "483df929f76301234e3c3d1b8322bf3b",
        "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",
        "kQZrTwbNXmPLsdVYhGcjRfA_-Ep",  # a URL-safe token holding no digit
    ],
    ids=["base64", "quoted", "hex holding 01234", "hugging face", "letters alone"],
)
def test_the_environments_other_key_of_any_generated_shape_is_masked(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """Only values of a key's shape were taken from OPENAI_API_KEY when the run's key is
    another: an `openssl rand -base64 32` token, or a key quoted as an `--env-file` leaves
    it, echoed by a local gateway, was shown and stored (pass 76A); so was an Azure key of
    32 hex digits holding five in a row (78A), and a token of letters alone (79A)."""
    monkeypatch.setenv("OPENAI_API_KEY", key)
    settings = Settings(base_url="http://127.0.0.1:9/v1", api_key=PROJECT_KEY)
    assert key.strip('"') in list(secrets_of_a_run(settings, None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variables", "password"),
    [
        ({"HTTPS_PROXY": "http://u:{}@127.0.0.1:9", "https_proxy": ""}, KEY_SHAPED_PASSWORD),
        ({"HTTPS_PROXY": "http://u:{}@127.0.0.1:9", "https_proxy": "http://127.0.0.1:8"},
         KEY_SHAPED_PASSWORD),
        ({"ALL_PROXY": "u:{}@127.0.0.1:3128"}, KEY_SHAPED_PASSWORD),  # no scheme, as curl reads
        ({"HTTPS_PROXY": '"http://u:{}@127.0.0.1:9"'}, KEY_SHAPED_PASSWORD),  # an --env-file's
        ({"HTTPS_PROXY": "http://u:{}@127.0.0.1:9"}, "Hx7!kQ2$mZ9*pL4&vT8(nR3)wY6,bJ1;cD5="),
    ],
    ids=["lower case empty", "lower case another", "no scheme", "quoted", "symbols"],
)  # fmt: skip
def test_every_proxy_variable_of_the_environment_is_masked(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], password: str
) -> None:
    """urllib keeps one proxy a scheme (the lower-case spelling, even empty) and reads a
    URL of no scheme as none: the other spelling's password, which a gateway sharing the
    environment uses, was neither masked nor searched for in stored data (pass 74A)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        for spelled in (name, name.lower()):
            monkeypatch.delenv(spelled, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value.format(password))
    settings = Settings(base_url="http://127.0.0.1:9/v1", api_key=PROJECT_KEY)
    assert password in list(secrets_of_a_run(settings, None))  # type: ignore[arg-type]


def test_a_path_holding_the_key_cut_into_folders_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each folder held less than half of it: the path was said back, the key whole in it."""
    key = "sk-proj-" + "A1b2C3d4" * 6
    monkeypatch.setenv("OPENAI_API_KEY", key)
    html = tmp_path / key[:20] / key[20:40] / f"{key[40:]}.html"
    assert main(["report", "--db", str(tmp_path / "b.db"), "--html", str(html)]) == 2
    assert "--html: the path holds an API key (not shown)" in capsys.readouterr().err


def test_a_path_holding_the_key_percent_encoded_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database named by the key percent-encoded byte by byte was made, and its name
    printed whole by `datasette-metadata` (Datasette serves it under its name, decoded)."""
    key = "sk-proj-" + "A1b2C3d4" * 6
    monkeypatch.setenv("OPENAI_API_KEY", key)
    db = tmp_path / ("".join(f"%{byte:02X}" for byte in key.encode()) + ".db")
    assert main(["demo", "--db", str(db), "--batches", "5"]) == 2
    assert "--db: the path holds an API key (not shown)" in capsys.readouterr().err
    assert not db.exists()


def percent_encoded(text: str) -> str:
    return "".join(f"%{ord(char):02X}" for char in text)


def test_an_id_in_the_environment_spelled_like_a_key_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CLOUDFLARE_ACCOUNT_ID (32 hex digits, as Azure's keys are) counted as a key at hand:
    a base URL of Cloudflare's AI Gateway, which holds it, was refused as holding a key."""
    account_id = "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", account_id)
    monkeypatch.setenv("SOME_TOKEN", "fedcba9876543210fedcba9876543210")
    keys = cli_args.keys_at_hand()
    assert account_id not in keys
    assert "fedcba9876543210fedcba9876543210" in keys
    gateway = f"https://127.0.0.1:9/v1/{account_id}/my-gateway/openai"
    cli._check_urls([Settings(base_url=gateway, api_key=PROJECT_KEY)], keys)


@pytest.mark.parametrize(
    "variable",
    ["GITHUB_SHA", "CI_COMMIT_SHA", "CIRCLE_SHA1", "GIT_COMMIT", "COMMIT_REF", "SOURCE_VERSION",
     "CODEBUILD_RESOLVED_SOURCE_VERSION", "BUILD_VCS_NUMBER", "IMAGE_TAG", "COMMIT_HASH",
     "SENTRY_RELEASE", "SYSTEM_PULLREQUEST_SOURCECOMMITID", "DRONE_COMMIT_AFTER", "COMMITHASH",
     "CLOUDFLAREACCOUNTID"],
)  # fmt: skip
def test_a_ci_jobs_commit_in_the_environment_is_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """A commit's 40 hex digits counted as a key at hand: a CI job's database named after
    its commit was refused as holding an API key (pass 68A; Netlify's, Heroku's, AWS's and
    TeamCity's names, pass 77A; an image's tag, a release, Azure Pipelines' and Drone's
    names, pass 80A; names with no `_` before `ID` or `HASH`, 82A)."""
    commit = "3f786850e387550fdab836ed7e6dc881de23001b"
    monkeypatch.setenv(variable, commit)
    assert commit not in cli_args.keys_at_hand()
    db = tmp_path / f"run-{commit}.db"
    assert main(["demo", "--db", str(db), "--batches", "5"]) == 0


def test_masking_a_message_for_many_keys_works_each_key_out_once() -> None:
    """Past 32 keys (a gateway's machine holding its providers' keys), what is worked out
    for each key was worked out anew for every message: a message took 60 times as long
    (pass 80A)."""
    keys = [f"sk-{n:02d}Zq8JmX2pLr7Wn4Yb1Hc6Jd0Ke5Fg3Ah9" for n in range(40)]
    message = "upstream said: no"
    mask_keys(message, keys)
    before = redact._scan.cache_info().misses
    mask_keys(message, keys)
    assert redact._scan.cache_info().misses == before


def test_the_entra_client_secret_is_a_key_at_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entra ID's client secret (`auth = "entra"` reads it through azure-identity) is of
    no key's shape (`~` and `.`): a gateway echoing it had it shown by `report` (77A)."""
    secret = "XTR8Q~P9eUbUJFjQnLioCzmYfCHD1ZRVC6.xFpTf"
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)
    assert secret in cli_args.keys_at_hand()
    settings = Settings(base_url="http://127.0.0.1:9/v1", api_key=PROJECT_KEY)
    assert secret in list(secrets_of_a_run(settings, None))  # type: ignore[arg-type]  # 78A


KEY_LIKE = "gsk_Q7wErTy8UiOp2AsDfGh5JkLzXcVb9NmQwE3rTy6UiOp1AsDfGh4JkLzX"


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", f"--api-key={KEY_LIKE}"],
        ["sync", f"OPENAI_API_KEY={KEY_LIKE}"],
        ["sync", f"{KEY_LIKE},"],
        ["sync", f'"{KEY_LIKE}"'],
        ["sync", f"--a={KEY_LIKE}"],
        ["fake-api", "--seed", f"{KEY_LIKE},"],
    ],
    ids=["--flag=KEY", "NAME=KEY", "KEY,", "quoted", "ambiguous", "a bad value"],
)
def test_a_key_inside_a_word_of_the_command_line_is_not_said_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """argparse's errors were searched for keys word by word, whole: a key next to `=`, a
    comma or quotes (one not at hand: no variable holds it) was shown (pass 68A)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert KEY_LIKE[:16] not in err
    assert "not shown here" in err


@pytest.mark.parametrize(
    "config",
    [
        '[accounts."team 9f8e7d6c5b4a39281706f5e4d3c2b1a0"]\nbase_url = "http://127.0.0.1:9/v1"\n',
        "9f8e7d6c5b4a39281706f5e4d3c2b1a0 = 1\n",
    ],
    ids=["an account's name", "a setting's name"],
)
def test_a_key_as_a_name_in_a_config_file_is_not_said_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str
) -> None:
    """An account or a setting named by a key was said back in the error naming it, the
    value check looking at whole names alone (pass 68A)."""
    path = tmp_path / "c.toml"
    path.write_text(config)
    assert main(["sync", "--config", str(path), "--db", str(tmp_path / "b.db")]) == 2
    assert "9f8e7d6c5b4a39281706" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "spelled",
    [str, percent_encoded, lambda text: percent_encoded(percent_encoded(text)), full_width],
    ids=["as it is", "percent-encoded", "percent-encoded twice", "full-width"],
)
def test_a_base_url_holding_the_environments_other_key_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spelled: Callable[[str], str],
) -> None:
    """The run's key named by api_key_env, OPENAI_API_KEY holding another: 30 characters of
    that one in the base URL's path were sent, logged with every retry and stored with the
    run (the last line masked them, taking them for a key). Percent-encoded, the URL passed
    the check, and was sent and stored decoded; encoded twice, after one decoding."""
    other = "sk-proj-Q7wLmN3pXz8RtY2vBc5KjH9fDs4GaE6uWo1Ii0Pq"
    monkeypatch.setenv("OPENAI_API_KEY", other)
    monkeypatch.setenv("MYKEY", "localtoken-abcdefghijklmnop")
    config = tmp_path / "c.toml"
    config.write_text('api_key_env = "MYKEY"\n')
    url = f"http://127.0.0.1:9/{spelled(other[8:38])}/v1"
    db = tmp_path / "b.db"
    argv = ["sync", "--config", str(config), "--db", str(db), "--base-url", url]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "base_url holds an API key (not shown)" in err
    assert other[8:24] not in err
    assert not db.exists()


@pytest.mark.parametrize("where", ["host", "path"])
@pytest.mark.parametrize("whose", ["the run's", "another"])
def test_a_proxy_holding_a_key_at_hand_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
    whose: str,
) -> None:
    """AZURE_OPENAI_API_KEY typed as the proxy's host: the retry lines said "cannot connect
    to <key>:3128", and sync_runs.error stored it (the run masks its own key alone)."""
    other = "7d1e0c9b8a7f6e5d4c3b2a1f0e9d8c7b"
    mine = "sk-proj-Q7wLmN3pXz8RtY2vBc5KjH9fDs4GaE6uWo1Ii0Pq"
    key = mine if whose == "the run's" else other
    monkeypatch.setenv("OPENAI_API_KEY", mine)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", other)
    proxy = f"http://{key}:3128" if where == "host" else f"http://127.0.0.1:9/{key}"
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_name_lookups)
    config = tmp_path / "c.toml"
    config.write_text("max_attempts = 1\n")
    db = tmp_path / "b.db"
    argv = ["sync", "--config", str(config), "--db", str(db), "--base-url", "https://10.0.0.1/v1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "HTTPS_PROXY holds an API key (not shown)" in err
    assert key[8:24] not in err
    assert not db.exists()


def test_a_proxy_whose_user_is_an_e_mail_address_on_its_domain_is_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user name, 16 characters or more, was taken for a token, and the proxy's host,
    spelling 16 of them, for a host holding it: every sync was refused."""
    proxy = "http://jane.doe%40corp-example.com:Winter2026pw@proxy.corp-example.com:8080"
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-" + "A1b2C3d4" * 6)
    monkeypatch.setattr(socket, "getaddrinfo", no_name_lookups)
    config = tmp_path / "c.toml"
    config.write_text("max_attempts = 1\n")
    argv = ["sync", "--config", str(config), "--db", str(tmp_path / "b.db")]
    assert main([*argv, "--base-url", "http://127.0.0.1:9/v1"]) == 75  # nobody listens
    assert "holds an API key" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("login", "masked"),
    [
        ("CORP%5Calexandra.richardson", False),
        ("svc-batch-crawler", False),
        ("svc-batch-crawler-01", False),
        ("CORP%5Csvc_crawler_prod1", False),
        ("jane.doe.contractor2024%40corp.example", False),
        ("k8s-eu1-prod2-batch", False),
        ("CORP%5CWIN10X64-BUILD02%24", False),
        ("0123456789abcdef0123456789abcdef", True),  # a gateway's token as the user name
        ("customer-hl_8f3k2-zone-static", True),
        ("svc-BatchCrawler-Prod-EU-West-01", False),
        ("Jean-Baptiste.Delacroix-Martin01%40corp.example", False),
        ("Xk9m-Q2vL-7pR4-tZ8w-Yh3N", True),  # a token written in groups
        ("a1b2-c3d4-e5f6-g7h8-i9j0", True),
    ],
)
def test_a_proxy_user_name_is_masked_when_spelled_like_a_token(login: str, masked: bool) -> None:
    """Any user name of 16 characters or more was masked as a token: a Windows log-in
    (`CORP\\alexandra.richardson`) or a service's name masked that name in every stored
    value, and request lines whose custom_id held it were left out (pass 66A); so did one
    of 32 characters or more mixing cases and digits at its words' first letters and
    numbers, taken for a key's shape, while a token written in groups was not masked
    (pass 72A)."""
    secrets = set(proxy_secrets(f"http://{login}:Xx12-pw-9f83kd@127.0.0.1:9"))
    assert secrets == ({"Xx12-pw-9f83kd", unquote(login)} if masked else {"Xx12-pw-9f83kd"})


@pytest.mark.parametrize(
    "value",
    [
        "gpt-4o-2024-08-06-EastUS2-Prod01",
        "text-embedding-3-small-WestEurope-Std",
        "svc-BatchCrawler-Prod-EU-West-01",
        "gpt-4o-mini-2024-07-18-GlobalBatchEastUS2",
        "contoso-AzureOpenAIWestEurope01-prod",
    ],
)
def test_a_name_mixing_cases_and_digits_is_no_key_at_hand(value: str) -> None:
    """A deployment's name in the environment (AZURE_OPENAI_CHAT_DEPLOYMENT) was taken for
    a key: `report` masked every model name it begins, and a database named after the
    model was refused as holding a key (pass 72A). A random token of the same letters
    changes between cases and digits at every other character or so; a name, at its words'
    first letters and numbers."""
    assert environment_keys({"AZURE_OPENAI_CHAT_DEPLOYMENT": value}) == ()
    slack = "xoxb-106730880910-5906804781492-umYpayZOHAPorVnnp1fpjSCk"  # a random word
    assert environment_keys({"SLACK_BOT_TOKEN": slack}) == (slack,)
    token = "".join(random.Random(value).choices(string.ascii_letters + string.digits, k=32))
    assert environment_keys({"GATEWAY_TOKEN": token}) == (token,)


def test_a_proxy_url_no_url_for_nfkc_does_not_show_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full-width colon before the port (typed by an input method) makes urllib refuse
    the URL, quoting the part before the host whole: the proxy's password was shown in the
    error, and in JSON logs and the library's exception (pass 71A)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        for spelled in (name, name.lower()):
            monkeypatch.delenv(spelled, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://bob:Str0ngProxyPassw0rd9z@127.0.0.1\uff1a3128")
    with pytest.raises(ConfigError) as caught:
        create_session(Settings(base_url="https://api.example/v1", api_key=PROJECT_KEY))
    assert "Passw0rd" not in str(caught.value)
    assert "is no URL" in str(caught.value)
    # A quote in parentheses: "backslash ((not shown))" (pass 72A).
    monkeypatch.setenv("HTTPS_PROXY", "http://CORP\\bob:Str0ngProxyPassw0rd9z@127.0.0.1:3128")
    with pytest.raises(ConfigError, match=r"backslash \(not shown\) is not allowed"):
        create_session(Settings(base_url="https://api.example/v1", api_key=PROJECT_KEY))


def test_a_persons_e_mail_address_as_a_proxys_user_name_is_no_secret() -> None:
    """What came before the `@` of a proxy's user name was masked as a token when 16
    characters or more: a corporate proxy logged in with its user's address, and that
    person's address was masked in every stored value and message (pass 65A)."""
    proxy = "http://jonathan.williams%40corp.example:Xx12-pw-9f83kd@127.0.0.1:9"
    assert proxy_secrets(proxy) == ("Xx12-pw-9f83kd",)
    text = '{"owner": "jonathan.williams@corp.example"}'
    assert mask_values((text,), proxy_secrets(proxy)) == (text,)


def test_a_key_at_hand_as_a_proxys_user_name_before_an_at_sign_is_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another key at hand as the user name of an e-mail address (KEY@corp.example): taken
    for an address, it was neither masked nor refused, and shown in every retry line."""
    other = "Zq9Xw8Ce7Vr6Bt5Ny4MuLk3Jh2Gf1Ds0"
    monkeypatch.setenv("HTTPS_PROXY", f"http://{other}%40corp.example:pw@127.0.0.1:9")
    keys = cli_args.keys_at_hand()
    assert other in keys
    assert other[:16] not in redact.mask_keys(f"proxy user {other}@corp.example refused", keys)


def test_a_path_holding_the_proxys_user_name_is_no_path_holding_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proxy user name's part before its @ of 16 characters or more is masked as a token:
    the database in a home folder named as the user was refused as "holding an API key"."""
    user = "jonathan.smithson-wright"
    monkeypatch.setenv("HTTPS_PROXY", f"http://{user}%40corp.example:Pw-9f83kd@127.0.0.1:9")
    db = tmp_path / user / "batches.db"
    db.parent.mkdir()
    assert main(["demo", "--db", str(db), "--batches", "5"]) == 0
    assert "holds an API key" not in capsys.readouterr().err


def test_an_e_mail_address_as_a_proxys_user_name_masks_nothing_of_its_domain() -> None:
    """Masked whole as a token, the user name's domain (the organization's) was masked in
    metadata, and request lines whose custom_id held it were left out, their file failed."""
    proxy = "http://crawler-bot%40mycompany.example.com:Pw-9f83kd@127.0.0.1:9"
    assert proxy_secrets(proxy) == ("Pw-9f83kd",)
    # A user name holding `%40` as sent (written `%2540`) is no address: decoded twice, it
    # was cut at that @ to ten characters, and shown.
    login = "Tk9fQ2xXbZ%40rT7uYp3LmN8vB"
    assert redact.credentials(login, "pw") == ["pw", login]


@pytest.mark.parametrize(
    "echo",
    ["Abcdefghij\ufffdKlmnopqrst", "AbcdefghijKlmnopqrst", "Abcdefghij%E9Klmnopqrst"],
    ids=["replaced", "left out", "percent-encoded"],
)
def test_a_proxy_password_sent_as_latin_1_and_echoed_as_read_is_masked(echo: str) -> None:
    """aiohttp sends a proxy's password in Basic auth as Latin-1: a proxy reading its bytes
    as UTF-8 echoed é as U+FFFD or not at all, or percent-encoded its byte; shown, and
    stored in runs' errors and batches' error lines."""
    password = "Abcdefghij\u00e9Klmnopqrst"
    assert message_of(echo, secret=password) == MASKED
    assert mask_values((f"x {echo} y",), password) == ("x *** y",)


@pytest.mark.parametrize(
    "password", ['correct"horse"battery"staple"9f83kd', "Kennwort-für-Jürgen-Groß-2024-ÄÖÜäöüé"]
)
def test_a_secret_json_escaped_twice_in_a_page_is_found(password: str) -> None:
    """A gateway's JSON error quoting an upstream one holds the password escaped once in
    the message stored, and twice in the page: the page, searched first, let it through,
    and the message was stored whole."""
    upstream = json.dumps({"error": {"message": f"upstream refused {password}"}})
    page = json.dumps({"errors": {"data": [{"message": upstream}]}})
    assert holds_secret(page, password, json_lines=True)
    assert mask_values((upstream,), password) == (
        json.dumps({"error": {"message": "upstream refused ***"}}),
    )


@pytest.mark.parametrize(
    ("key", "echo"),
    [
        (
            "Tr0ub4dor&3xZq9<Lm2Kp7&Wn5Hv8>Yt",
            "Tr0ub4dor\\u00263xZq9\\u003cLm2Kp7\\u0026Wn5Hv8\\u003eYt",
        ),
        (
            "q7Z+x9Lk+3Pw+Tr0u+b4do+rZq9+Lm2K",
            "q7Z\\u002Bx9Lk\\u002B3Pw\\u002BTr0u\\u002Bb4do\\u002BrZq9\\u002BLm2K",
        ),
        ("Grüße/Straße/Größe/Übung/Käse", "Grüße\\/Straße\\/Größe\\/Übung\\/Käse"),
    ],
    ids=["Go", ".NET", "PHP, letters unescaped"],
)
def test_a_key_as_other_json_encoders_escape_it_is_found(key: str, echo: str) -> None:
    """Go escapes & < > as \\u0026..., .NET + and " in upper-case hex, PHP slashes with its
    letters unescaped: only Python's and PHP's usual spellings were searched for, and a
    gateway quoting such an upstream's error showed and stored the key."""
    upstream = '{"error":{"message":"Incorrect API key provided: ' + echo + '"}}'
    assert "***" in mask_secret(upstream, key)
    page = json.dumps({"errors": {"data": [{"message": upstream}]}})
    assert holds_secret(page, key, json_lines=True)
    assert holds_secret(upstream, key)


@pytest.mark.parametrize(
    ("key", "echo"),
    [
        (
            "Tr0ub4dor=3xZq9'Lm2Kp7=Wn5Hv8'Yt",
            "Tr0ub4dor\\u003d3xZq9\\u0027Lm2Kp7\\u003dWn5Hv8\\u0027Yt",
        ),
        (
            'Tr0ub4dor<3xZq9"Lm2Kp7&Wn5Hv8>Yt',
            "Tr0ub4dor\\u003C3xZq9\\u0022Lm2Kp7\\u0026Wn5Hv8\\u003EYt",
        ),
    ],
    ids=["Gson", "PHP, JSON_HEX_*"],
)
def test_a_key_as_any_json_encoder_escapes_it_is_found(key: str, echo: str) -> None:
    """Gson escapes = and ' as \\u003d, \\u0027 (searched for by no encoder's spelling
    then), PHP's JSON_HEX_* flags < > & " in upper-case hex (by .NET's): JSON escapes are
    decoded, not each encoder's spelled."""
    upstream = '{"error":{"message":"Incorrect API key provided: ' + echo + '"}}'
    assert mask_secret(upstream, key).endswith('provided: ***"}}')
    assert holds_secret(json.dumps({"errors": {"data": [{"message": upstream}]}}), key)
    assert mask_values((upstream,), key) == (upstream.replace(echo, "***"),)


@pytest.mark.parametrize("times", [3, 4])
def test_a_secret_json_escaped_three_times_or_more_is_found(times: int) -> None:
    """A gateway quoting a gateway quoting the upstream's error: the page holds the key
    escaped three times, the message stored twice; only twice was searched for, and the
    message was stored whole."""
    password = 'Tr0u"b4d/or3x"Zq9\\Lm2K"p7W/n5Hv'  # no 16 characters escaped alike
    message = f"upstream refused {password}"
    for _ in range(times - 1):
        message = json.dumps({"error": {"message": message}})
    page = json.dumps({"errors": {"data": [{"message": message}]}})
    assert holds_secret(page, password, json_lines=True)
    assert "***" in mask_values((message,), password)[0]
    assert password[:16] not in mask_secret(message, password)


PASSPHRASE = "correct horse battery staple 42 tango"
BACKSLASHED = "Zq7\"Rt8kY2/mW9Lp4w\\kHx8>Nc3=Bv6+Ud1'X"


def escaped_every_other(text: str) -> str:
    """`text` with every other character written as a \\u escape, as no encoder writes it."""
    return "".join(f"\\u{ord(c):04x}" if i % 2 else c for i, c in enumerate(text))


@pytest.mark.parametrize(
    ("key", "echo"),
    [
        # Pairs that decode as control characters: the key's backslash escaped, not decoded.
        ("MLdBtbmz\\f5\\nDGorqd\\tiC6k", json.dumps("MLdBtbmz\\f5\\nDGorqd\\tiC6k"[1:])[1:-1]),
        # Its one escapable character past its last whole block, as Gson writes it.
        ("E0AGqBg6rN2ojK7Y'e€", "GqBg6rN2ojK7Y\\u0027e€"),
        # A key no encoder escapes, escaped by a hostile server anyway.
        (PROJECT_KEY, escaped_every_other(PROJECT_KEY)),
        # Its spaces so escaped.
        (PASSPHRASE, PASSPHRASE.replace(" ", "\\u0020")),
        # The letter after its own backslash so escaped: one run of the two backslashes.
        (BACKSLASHED, json.dumps(BACKSLASHED)[1:-1].replace("\\\\k", "\\\\\\u006b")),
    ],
    ids=["backslash pairs", "escapable tail", "letters escaped", "spaces escaped", "after \\"],
)
def test_a_key_decoded_from_any_escapes_is_found(key: str, echo: str) -> None:
    """Searched decoded only for the blocks holding a character of the key an encoder
    escapes, as written: a key's `\\n` decodes as a line break, a block of letters may be
    written with them escaped, and a key's escapable tail is in no block."""
    message = f"Incorrect API key provided: {echo}"
    assert holds_secret(message, key)
    assert "***" in mask_values((message,), key)[0]
    assert mask_secret(message, key).startswith("Incorrect API key provided: ***")
    assert redact.texts_holding_secret([f"batch_{echo}"], key) == {f"batch_{echo}"}


def test_a_key_spelled_apart_with_escaped_separators_is_masked_in_messages() -> None:
    """A gateway quoting an upstream's JSON: the key a character at a time, a tab (or a
    zero-width space) between, written `\\t` (`\\u200b`), of the key's own letters."""
    for separator in ("\t", "\u200b"):
        quoted = json.dumps({"message": f"bad key {separator.join(PROJECT_KEY)}"})
        masked = mask_secret(f"upstream answered 401: {quoted}", PROJECT_KEY)
        read = redact._decoded_text(masked).replace(separator, "")
        assert masked.startswith('upstream answered 401: {"message": "bad key ***')
        assert not any(PROJECT_KEY[at : at + 16] in read for at in range(len(PROJECT_KEY)))
    # A separator escaped twice, its backslash written \u005c (pass 61A).
    twice = "\\u005cu005ct".join(PROJECT_KEY[at : at + 8] for at in range(0, 164, 8))
    assert mask_secret(f"bad cursor {twice} [GET /v1/batches]", PROJECT_KEY) == (
        "bad cursor *** [GET /v1/batches]"
    )


def test_a_passphrase_form_encoded_and_escaped_as_dotnet_writes_it_is_found() -> None:
    """A passphrase's spaces as `+` (its form-encoded spelling), `+` as .NET escapes it
    (`\\u002B`): its characters none an encoder escapes, it was never searched decoded."""
    key = "correct horse battery staple zebra"
    echo = "upstream said " + json.dumps({"u": key.replace(" ", "\\u002B")})
    assert holds_secret(echo, key)
    assert mask_secret(echo, key) == 'upstream said {"u": "***"}'


@pytest.mark.parametrize("piece", [64])
def test_a_text_of_high_surrogates_alone_is_cut_in_pieces(
    monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    """A high surrogate's escape before each backslash kept a text one piece (a pair's
    second half is no place to cut), gone through in Python whole: cut where no pair is."""
    monkeypatch.setattr(redact, "_PIECE", piece)
    decoded = redact._Decoded("\\ud800" * 200)
    assert len(decoded._pieces[0]) > 10
    assert decoded.span_written(150, 151) == (900, 906)


@pytest.mark.parametrize("line_end", ["\n", "\\n"])
def test_a_key_whose_own_equals_sign_ends_a_line_is_found_folded(line_end: str) -> None:
    """A key holding `=` folded at 16 columns, its `=` at a line's end: taken out with the
    break as a quoted-printable soft break, the key was two runs, each under half."""
    key = "Qw7Er9tYu1Io3pAs5Df7=gHj9Kl2zXc4Vb6nMq8Wz"
    text = f"bad token: {key}"
    folded = line_end.join(text[at : at + 16] for at in range(0, len(text), 16))
    assert "=" + line_end in folded
    assert holds_secret(folded, key)
    assert mask_values((folded,), key) == ("bad token: ***",)


def test_a_key_escaped_twice_by_a_hostile_server_is_found() -> None:
    """Every eighth character written `\\u005cu00XX`: once decoded, `\\u00XX`; a text was
    decoded once."""
    echo = "".join(
        f"\\u005cu{ord(char):04x}" if at % 8 == 0 else char for at, char in enumerate(PROJECT_KEY)
    )
    assert holds_secret(f"bad key {echo}", PROJECT_KEY)
    assert mask_values((f"bad key {echo}",), PROJECT_KEY) == ("bad key ***",)
    assert mask_secret(f"bad key {echo}", PROJECT_KEY) == "bad key ***"


def escaped_through_backslashes(char: str, levels: int) -> str:
    """`char` escaped `levels` times, each level's backslash written `\\u005c`."""
    return "\\" + "u005c" * (levels - 1) + f"u{ord(char):04x}"


@pytest.mark.parametrize(
    ("key", "echo"),
    [
        (
            "Ab1+Cd2/Ef3=Gh4&Ij5+Kl6/Mn7=",
            "".join(
                escaped_through_backslashes(c, 2) if not c.isalnum() else c
                for c in "Ab1+Cd2/Ef3=Gh4&Ij5+Kl6/Mn7="
            ),
        ),
        (PROJECT_KEY, "".join(escaped_through_backslashes(c, 4) for c in PROJECT_KEY)),
        (PROJECT_KEY, "\\u005cn".join(PROJECT_KEY[at : at + 64] for at in range(0, 164, 64))),
        (PROJECT_KEY, "=\\u000a".join(PROJECT_KEY[at : at + 75] for at in range(0, 164, 75))),
    ],
    ids=["escapes rebuilt", "four levels", "breaks rebuilt", "soft breaks as \\u000a"],
)
def test_a_key_behind_escapes_a_decoding_rebuilds_is_found(key: str, echo: str) -> None:
    """A backslash written `\\u005c` makes escapes anew once decoded (`\\u005cu002b` is
    `\\u002b`, `\\u005cn` a line break); a text was decoded again only while escapes of
    letters were left, three times at most, and unfolded only where it held a break as
    written; a quoted-printable soft break written `=\\u000a` was not taken out."""
    note = json.dumps({"note": f"bad key {echo}"})
    assert holds_secret(note, key, json_lines=True)
    assert mask_values((note,), key) == (json.dumps({"note": "bad key ***"}),)


@pytest.mark.parametrize("hex_case", [str.upper, str.lower], ids=["upper", "lower"])
def test_a_key_percent_encoded_byte_by_byte_is_not_stored(hex_case: Callable[[str], str]) -> None:
    """Every byte of the key percent-encoded (`%73%6B%2D...`, as a client encoding all
    but unreserved characters would not, and a hostile server may): searched in messages
    alone, it was stored whole in metadata, error lines and request lines."""
    every_byte = hex_case("".join(f"%{byte:02X}" for byte in PROJECT_KEY.encode()))
    page = json.dumps({"metadata": {"callback": f"https://hooks.test/?k={every_byte}"}})
    assert holds_secret(page, PROJECT_KEY, json_lines=True)
    assert mask_values((page,), PROJECT_KEY) == (
        json.dumps({"metadata": {"callback": "https://hooks.test/?k=***"}}),
    )
    half = every_byte[: len(every_byte) // 2 + 3]
    assert mask_values((f"bad key {half}",), PROJECT_KEY) == ("bad key ***",)
    ordinary = "https://hooks.test/?q=a%20b%2Fc&r=%E2%9C%93"
    assert not holds_secret(ordinary, PROJECT_KEY)


@pytest.mark.parametrize("command", ["status", "demo"])
def test_an_environment_value_of_bytes_no_utf8_breaks_no_command(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """A value of the environment holding a byte that is no UTF-8 (read as a lone
    surrogate) crashed every command with a traceback, searched for in what it was given;
    its bytes are searched for, as a server echoing it would send them."""
    key = "sk-proj-abcdefghijklmnopqrstu\udcff"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("NOTES", "sk-note-caf\udce9-0123456789abcdef")
    code = main([command, "--db", str(tmp_path / "batches.db")])
    no_database = 4
    expected = no_database if command == "status" else 0
    assert (code, capsys.readouterr().err.count("Traceback")) == (expected, 0)
    assert mask_secret(f"bad key {quote(key.encode('utf-8', 'surrogateescape'))}", key) == (
        "bad key ***"
    )


@pytest.mark.parametrize(
    ("key", "spelled"),
    [
        (
            "Ab3+/Cd4=Ef5+/Gh6=Ij7+/Kl8=Mn9+/Op0=Qr1+/St2=Uv3+/Wx4=",
            lambda key: quote(quote(key, safe=""), safe=""),
        ),
        ("Ab3&Cd4'Ef5<Gh6>Ij7\"Kl8&Mn9'Op0<Qr1>St2\"Uv3&Wx4", html.escape),
        (
            "Ab3&Cd4'Ef5<Gh6>Ij7\"Kl8&Mn9'Op0<Qr1>St2\"Uv3&Wx4",
            lambda key: html.escape(key).replace("&#x27;", "&#39;"),
        ),
    ],
    ids=["quoted twice", "HTML-escaped", "HTML-escaped, decimal"],
)
def test_a_key_quoted_twice_or_html_escaped_is_masked(
    key: str, spelled: Callable[[str], str]
) -> None:
    """A gateway naming its upstream's URL in another's query quotes the key twice; an
    error page escapes it as HTML: a key holding `+/=` or `&'<>"` was shown and stored
    whole so spelled (pass 63A)."""
    text = f"Upstream https://gw.test/v1?api_key={spelled(key)} refused"
    assert mask_secret(text, key) == "Upstream https://gw.test/v1?api_key=*** refused"
    assert mask_values((text,), key) == ("Upstream https://gw.test/v1?api_key=*** refused",)


HTML_KEY = "Ab3&Cd4'Ef5<Gh6>Ij7\"Kl8+Mn9'Op0<Qr1>St2\"Uv3&Wx4"
HTML_REFERENCES = {
    "Go": {"&": "&amp;", "'": "&#39;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "+": "&#43;"},
    "PHP": {"&": "&amp;", "'": "&#039;", "<": "&lt;", ">": "&gt;", '"': "&quot;"},
    "HTML5": {"&": "&amp;", "'": "&apos;", "<": "&lt;", ">": "&gt;", '"': "&quot;"},
    "hex": {"&": "&#x26;", "'": "&#x27;", "<": "&#x3C;", ">": "&#x3e;", '"': "&#x22;"},
    "every character": {char: f"&#{ord(char)};" for char in HTML_KEY},
}


@pytest.mark.parametrize("references", HTML_REFERENCES.values(), ids=HTML_REFERENCES.keys())
@pytest.mark.parametrize("in_json", [False, True], ids=["as text", "in JSON, as Go writes it"])
def test_a_key_written_with_any_html_references_is_masked(
    references: dict[str, str], in_json: bool
) -> None:
    """Each escaper writes HTML references its own way (Go `&#34;` and `&#43;`, PHP
    `&#039;`, `&apos;`, hex); the spellings of `html.escape` alone were searched for, and
    a key holding `"'+&` written by any other was shown and stored whole (pass 64A). A
    text's references are decoded as a view, as its JSON escapes are."""
    written = "".join(references.get(char, char) for char in HTML_KEY)
    text = f"<p>Upstream refused the key {written} &amp; said so</p>"
    masked = "<p>Upstream refused the key *** &amp; said so</p>"
    if in_json:  # Go's JSON escapes `&`, `<` and `>` again
        escaped = json.dumps(text).replace("&", "\\u0026").replace("<", "\\u003c")
        text = escaped.replace(">", "\\u003e")
        masked = json.dumps(masked).replace("&", "\\u0026").replace("<", "\\u003c")
        masked = masked.replace(">", "\\u003e")
    assert holds_secret(text, HTML_KEY)
    assert mask_values((text,), HTML_KEY) == (masked,)
    assert mask_secret(text, HTML_KEY) == masked


@pytest.mark.parametrize(
    "spelled",
    [
        lambda key: key.replace("fj", "&fjlig;"),  # one reference writing two letters
        lambda key: "".join(f"\\u0026\\u0023{ord(char)};" for char in key),  # `&#` escaped
    ],
    ids=["two letters", "& and # JSON-escaped"],
)
def test_a_key_behind_the_references_of_no_one_character_is_masked(
    spelled: Callable[[str], str],
) -> None:
    """The references searched for were those writing one of the key's characters: one
    writing two (`&fjlig;`), or written with `&#` JSON-escaped, hid a key (pass 67A)."""
    key = "sk-proj-A1b2C3d4E5g6H7k8L9mfjR4s5T6u7V8w9X0y1Z2a3B4c5D6e"
    text = f"Invalid key: {spelled(key)} refused"
    assert holds_secret(text, key)
    assert mask_values((text,), key) == ("Invalid key: *** refused",)


@pytest.mark.parametrize(
    ("key", "spelled"),
    [
        ("Ab3dEf9hšKl2nOp7rSšu8wXy1zA4šbC6dE0fG5", lambda key: key.replace("š", "&#154;")),
        (PROJECT_KEY, lambda key: "&#1;".join(key[at : at + 8] for at in range(0, len(key), 8))),
        (PROJECT_KEY, lambda key: "&#xFDD0;".join(key[at : at + 8] for at in range(0, 164, 8))),
    ],
    ids=["Windows-1252's number", "references of nothing", "a noncharacter"],
)
def test_a_key_behind_references_html_writes_otherwise_is_masked(
    key: str, spelled: Callable[[str], str]
) -> None:
    """html (and browsers) write `&#154;` as š, Windows-1252's, and references of controls
    and noncharacters as nothing; only references of the key's own code points let a text
    be decoded, and such a key was stored whole (pass 70A)."""
    text = f"bad key {spelled(key)} refused"
    assert holds_secret(text, key)
    assert mask_values((text,), key) == ("bad key *** refused",)


def test_a_keys_utf_8_read_as_windows_1252_is_masked_in_stored_data() -> None:
    """Its UTF-8 read as Latin-1 was searched for, not as Windows-1252, as browsers and many
    programs read "Latin-1" (ß as ÃŸ): such a key was stored whole (pass 70A)."""
    key = "Fußball2024Straße7Größe"
    text = f"bad key {key.encode().decode('cp1252')} refused"
    assert mask_values((text,), key) == ("bad key *** refused",)


def test_ordinary_ampersands_and_references_are_no_key() -> None:
    """A URL's query (`&b=2`), a name html does not know (`&bogus;`), and references of
    other letters leave a text as it is."""
    text = "see https://x.test/?a=1&b=2&copy &bogus; &#65;&#66; &quot;Ab3&quot; done"
    assert not holds_secret(text, HTML_KEY)
    assert mask_values((text,), HTML_KEY) == (text,)
    assert mask_secret(text, HTML_KEY) == text


def test_references_writing_none_of_a_keys_characters_are_not_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Model answers quoting HTML (`&amp;`, `&#8212;`, `&quot;`) were decoded in full for
    every key: a file of them synced 5 times as slowly with a key at hand (pass 66A). Only
    references that write a character of the key (`&#115;`, or `&#x73;`: s) are, in any
    spelling html decodes."""
    decoded: list[str] = []

    class Counted(redact._HtmlDecoded):
        def __init__(self, written: str) -> None:
            decoded.append(written)
            super().__init__(written)

    monkeypatch.setattr(redact, "_HtmlDecoded", Counted)
    redact._html_chains.cache_clear()
    ordinary = "Tom &amp; Jerry &lt;b&gt; caf&eacute; &#8212; it&#39;s &quot;fine&quot; " * 50
    assert not holds_secret(ordinary, PROJECT_KEY)
    assert mask_values((ordinary,), PROJECT_KEY) == (ordinary,)
    assert decoded == []
    for spelled in ("&#{:d};", "&#x{:x};", "&#X{:04X};", "&#{:013d};"):
        written = "".join(spelled.format(ord(char)) for char in PROJECT_KEY)
        assert holds_secret(f"{ordinary} {written}", PROJECT_KEY), spelled
    assert len(decoded) == 4


def test_a_text_is_decoded_once_for_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each scan of each key asked for a text's decodings, and the cache of three held
    fewer than a nest eight levels deep: a 41-byte nest in a 9 MB text took each key's
    scan through eight decodings of the whole text (four keys: 58 s)."""
    decoded: list[str] = []

    class Counted(redact._Decoded):
        def __init__(self, written: str) -> None:
            decoded.append(written)
            super().__init__(written)

    monkeypatch.setattr(redact, "_Decoded", Counted)
    redact._decoded.cache_clear()
    redact._decoding_chains.cache_clear()
    keys = ("Ab1+Cd2/Ef3=Gh4&Ij5+Kl6/Mn7=", "Zy9+Xw8/Vu7=Ts6&Rq5+Po4/Nm3=", PROJECT_KEY)
    text = f"plain words {escaped_through_backslashes('s', 8)} and more words"
    for key in keys:
        assert not holds_secret(text, key)
        assert mask_values((text,), key) == (text,)
        assert mask_secret(text, key) == text
    assert len(decoded) == len(set(decoded)) == 8


def test_only_excerpts_around_the_escapes_left_are_decoded_further(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decoded once, a long text of escaped lines holding a nest eight levels deep was
    decoded and searched whole at every level (49 MB: 25 s a key); only the excerpts
    around the escapes left are, and a key behind a nest far into the text is still found
    where it was written."""
    decoded: list[int] = []

    class Counted(redact._Decoded):
        def __init__(self, written: str) -> None:
            decoded.append(len(written))
            super().__init__(written)

    monkeypatch.setattr(redact, "_Decoded", Counted)
    redact._decoded.cache_clear()
    redact._decoding_chains.cache_clear()
    lines = "a line of ordinary text \u00e9\n" * 20_000
    echo = "".join(escaped_through_backslashes(c, 8) for c in PROJECT_KEY[:90])
    text = f"{lines} bad key {echo}{PROJECT_KEY[90:]} {lines}"
    masked = mask_values((text,), PROJECT_KEY)
    assert masked == (f"{lines} bad key *** {lines}",)
    assert max(decoded) == len(text)  # the text decoded once whole
    assert sorted(decoded)[-2] < len(echo) + 3 * redact._EXCERPT_MARGIN


def test_words_escaped_as_a_keys_letters_are_not_masked() -> None:
    """A run of a key is counted in its characters: counted in an escaped form's, the 16
    characters of `Gr\\u00f6\\u00dfen` (6 letters of Größenordnung) were a run of a key
    beginning so, and a label holding the word was masked in `raw` but not in its column."""
    key = "Größenwahn-Kennwort-2024"
    page = json.dumps({"metadata": {"label": "Größenordnung"}})
    assert not holds_secret(page, key)
    assert mask_values((page,), key) == (page,)
    assert mask_secret(f"bad label {page}", key) == f"bad label {page}"
    assert holds_secret(json.dumps({"message": f"refused {key[:16]}"}), key)


@pytest.mark.parametrize("piece", [1, 4, 1 << 16])
def test_a_decoded_text_leads_back_to_where_each_character_was_written(
    monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    """The decoded text is made in passes in C, where it is written from in Python, a
    piece at a time (each decoded alone in C): each of its characters leads back to the
    escape, or the character, it was decoded from."""
    monkeypatch.setattr(redact, "_PIECE", piece)
    rng = random.Random(57)
    pieces = ["a", "Z", "u", "é", "\\", '\\"', "\\/", "\\n", "\\u00e9", "\\u00E9", "\\u0026"]
    pieces += ["\\ud83d\\ude00", "\\\\\\u0027", "\\\\\\\\", "\\ud800", "\\u12", "\\x", "\\\\ude00"]
    for _ in range(2_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        decoded = redact._Decoded(text)
        spans = [decoded.span_written(at, at + 1) for at in range(len(decoded.text))]
        bounds = [0, *(end for _, end in spans)]
        assert spans == list(itertools.pairwise(bounds))  # one after another, all of it
        assert bounds[-1] == len(text)
        for at, (start, end) in enumerate(spans):
            assert redact._Decoded(text[start:end]).text == decoded.text[at]


@pytest.mark.parametrize("key", [PROJECT_KEY, ODD_KEY, 'Tr0u"b4d/or3x"Zq9\\Lm2K"p7W/n5Hv'])
def test_texts_ruled_out_together_are_those_holding_the_key_alone(key: str) -> None:
    """A page's ids are searched for the key at once, and one by one only if that finds
    anything: the same ids are found as when each was searched alone."""
    rng = random.Random(12)
    half = len(key) // 2 + 1
    pieces = [key[:half], key[-half:], json.dumps(key[:half])[1:-1], "\\", "\\n", "\n", "é"]
    found = 0
    for _ in range(300):
        texts = ["".join(rng.choices(pieces, k=rng.randint(1, 3))) for _ in range(4)]
        expected = {text for text in texts if holds_secret(text, key)}
        assert redact.texts_holding_secret(texts, key) == expected
        found += len(expected)
    assert found > 100


def runs_by_brute_force(text: str, forms: tuple[str, ...], run: int) -> list[tuple[int, int]]:
    """The characters of `text` in a stretch of `run` or more that one of `forms` holds."""
    covered = [False] * len(text)
    for form in forms:
        for start in range(len(text)):
            for where in range(len(form)):
                length = 0
                while (
                    start + length < len(text)
                    and where + length < len(form)
                    and text[start + length] == form[where + length]
                ):
                    length += 1
                if length >= run:
                    covered[start : start + length] = [True] * length
    return redact._joined([(at, at + 1) for at, inside in enumerate(covered) if inside])


def test_runs_of_a_key_are_found_as_brute_force_finds_them() -> None:
    """Blocks standing alone are ruled out before any is grown (a text of a key's block
    repeated took seconds a megabyte): what is found is what a brute force finds."""
    rng = random.Random(58)
    key = "Kennwort-für-Jürgen-Groß-2024"
    for scan in redact._stored_data_scans(key):
        forms = scan.forms
        pieces = [*scan.places, *(f[:12] for f in forms), *(f[5:25] for f in forms), "x", "ü"]
        found = 0
        for _ in range(150):
            text = "".join(rng.choices(pieces, k=rng.randint(1, 8)))
            spans = redact._find_runs(text, scan)
            assert spans == runs_by_brute_force(text, forms, scan.run), text
            found += len(spans)
        assert found > 50


def test_a_text_of_a_keys_block_repeated_grows_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile page made of a key's first block repeated grew a span around every block,
    at each of its places (seconds a megabyte on the event loop): a block standing alone,
    without the rest of a run beside it, is ruled out first."""
    key = "Kennwort-für-Jürgen-Groß-2024"
    grown = []
    real = redact._grown
    monkeypatch.setattr(redact, "_grown", lambda *args: grown.append(args) or real(*args))
    block = next(iter(redact._stored_data_scans(key)[0].places))
    assert mask_values((block * 1_000,), key) == (block * 1_000,)
    assert grown == []
    assert mask_values((f"x {key[:16]} y",), key) == ("x *** y",)
    assert grown != []


def test_a_placeholder_key_of_few_characters_masks_no_stretch_of_a_message() -> None:
    """A key of one character repeated (`0` 32 times, a local server's placeholder): the
    zeros of a message's times and counts, apart, were masked as the key spelled apart,
    and the message with them ("run at 2*** total")."""
    key = "0" * 32
    message = "run at 2024-01-01T00:00:00 took 100 s, 3000 requests, 0 failed, 10000 tokens"
    assert mask_secret(message, key) == message
    assert mask_secret(f"bad key {'0' * 20}.", key) == "bad key ***."


def test_half_a_key_written_decomposed_is_found_composed() -> None:
    """A key written decomposed (NFD), echoed composed: each form was searched for runs of
    half the key as written, longer than half the composed form."""
    key = unicodedata.normalize("NFD", "Crème-brûlée-à-la-façon-de-Noël")
    echo = unicodedata.normalize("NFC", key)[:16]
    assert mask_values((f"proxy said: {echo}",), key) == ("proxy said: ***",)


def test_a_key_of_latin_1_letters_alone_is_searched_for() -> None:
    """Its bytes sent as Latin-1 read as UTF-8 with what is no UTF-8 left out are nothing:
    an empty form made every command end in a traceback (a pattern `[^]`)."""
    key = "ÄÖÜäöüßÄÖÜäöüßÄÖ"
    assert mask_secret(f"bad {key}", key) == "bad ***"
    assert holds_secret(f"x {key} y", key)


@pytest.mark.parametrize("spelling", ["NFD", "latin-1"])
def test_half_a_key_decomposed_or_misread_is_found(spelling: str) -> None:
    """Decomposed (NFD, as macOS names files) or its UTF-8 read as Latin-1, a key with
    non-ASCII letters is longer: half of it so spelled was shorter than half that form,
    the run searched for, and was stored, and a path holding it made."""
    password = "Kennwort-für-Jürgen-Groß-2024-ÄÖÜäöüé"
    half = password[:19]
    if spelling == "NFD":
        echo = unicodedata.normalize("NFD", half)
    else:
        echo = half.encode().decode("latin-1")
    assert mask_values((f"note {echo} end",), password) == ("note *** end",)
    assert redact.holds_secret_in_any_form(f"/tmp/{echo}/x.db", password)


@pytest.mark.parametrize("spelling", ["NFD", "NFKD", "latin-1"])
def test_a_key_echoed_decomposed_or_read_as_latin_1_is_masked(spelling: str) -> None:
    """A key with é echoed as e and an accent (NFD, as macOS names files), or as Ã© (its
    UTF-8 header read as Latin-1, as many servers read headers): folded a character at a
    time, the text never held it, and stored data was searched for the key as written."""
    key = "pässwörd-Ünïcode-lätin1-xyz"
    if spelling == "latin-1":
        echo = key.encode().decode("latin-1")
    else:
        echo = unicodedata.normalize(spelling, key)
    assert message_of(echo, secret=key) == MASKED
    assert redact.holds_secret_in_any_form(f"/tmp/{echo}/x.db", key)
    assert mask_values((f"x {echo} y",), key) == ("x *** y",)


def test_a_config_file_over_a_mebibyte_is_refused(tmp_path: Path) -> None:
    """Its keys are not read for masking (keys_named_in reads no such file): `status`
    used its db, and showed the key it names."""
    config = tmp_path / "c.toml"
    config.write_text('db = "b.db"\n' + "# padding\n" * 120_000)
    with pytest.raises(ConfigError, match="is over 1 MiB: no config file is"):
        read_config_file(config)


def no_name_lookups(host: object, *args: object, **kwargs: object) -> NoReturn:
    raise socket.gaierror(f"no name lookups in tests: {host!r}")


def test_what_report_shows_masks_the_password_of_the_environments_proxy(
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A proxy that echoed its password into a batch's error lines (stored: the run that
    stored it had no proxy, or the password in pieces): `sync` masks it in messages, and
    `report` showed it whole, the proxy's password being none of the keys it masked."""
    password = "PxPass-Zq8Wm3Rt6Yb1Nc4Vd7Kf0Lh2Jg5"
    spread = " | ".join((password[:11], password[11:22], password[22:]))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-" + "A1b2C3d4" * 6)
    monkeypatch.chdir(tmp_path)
    synced_with_an_error_line(db_path, f"proxy said {password} and {spread}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:{password}@127.0.0.1:9")
    capsys.readouterr()
    for argv in (["report"], ["report", "--json"], ["report", "--html", "page.html"]):
        assert main([*argv, "--db", str(db_path)]) == 0
    shown = capsys.readouterr().out + (tmp_path / "page.html").read_text()
    assert password[:16] not in shown
    assert spread not in shown


@pytest.mark.parametrize("flag", ["--config", "--con", "--c"])
def test_report_and_status_mask_the_key_their_config_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    """A gateway's token of no key's shape, named by api_key_env, echoed into error lines:
    `report` could not know it (it took no config file) and showed it, whole or in pieces.
    With --config (or a prefix argparse takes for it), they read the file's database and
    mask the keys it names."""
    token = "gw-token-7f3a9c1e5b2d8f4a6c0e"
    spread = " | ".join((token[:9], token[9:19], token[19:]))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-" + "A1b2C3d4" * 6)
    monkeypatch.setenv("GW_TOKEN", token)
    monkeypatch.chdir(tmp_path)
    synced_with_an_error_line(tmp_path / "gateway.db", f"bad token {token} ({spread})")
    config = tmp_path / "c.toml"
    config.write_text('api_key_env = "GW_TOKEN"\ndb = "gateway.db"\n')
    capsys.readouterr()
    for argv in (["report"], ["report", "--json"], ["status"], ["report", "--html", "r.html"]):
        assert main([*argv, flag, str(config)]) == 0
    shown = capsys.readouterr().out + (tmp_path / "r.html").read_text()
    assert "bad token *** (***" in shown
    assert token[:16] not in shown
    assert spread not in shown


def test_a_config_file_status_cannot_read_is_said_with_the_environments_values_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TOML's message quotes a table named by a token: `sync` masked it, `status` not."""
    token = "gatewaytokenofnokeyshape_1234"
    monkeypatch.setenv("MYTOK", token)
    config = tmp_path / "c.toml"
    config.write_text(f'api_key_env = "MYTOK"\n[{token}]\n[{token}]\n')
    assert main(["status", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "is not valid TOML" in err
    assert token[:16] not in err


def test_a_word_spelled_like_a_key_in_a_path_is_masked_when_said_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Masked in errors, said back whole by a command that succeeded."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-" + "A1b2C3d4" * 6)
    prices = tmp_path / "sk-other0123456789abcdefXYZ.csv"
    prices.write_text("model,batch_input\ngpt-4o-mini,0.075\n")
    assert main(["prices", "load", str(prices), "--db", str(tmp_path / "b.db")]) == 0
    said = capsys.readouterr().out
    assert "Loaded 1 model prices from" in said
    assert "sk-other" not in said


async def test_a_proxy_refusing_to_connect_to_an_https_api_says_so_at_once(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 407 to the CONNECT read "the server sent a malformed HTTP response", asked again
    8 times."""
    connects: list[bytes] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connects.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:{PROXY_PASSWORD}@127.0.0.1:{port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(db=db_path, base_url="https://api.example/v1", api_key="sk-test-key")
    async with server:
        with pytest.raises(TransportError) as caught:
            await sync(settings, retry=ONE_RETRY)
    assert "the proxy refused to connect to the API (HTTP 407: check the user" in str(caught.value)
    assert len(connects) == 1


async def test_a_run_of_some_accounts_masks_the_keys_of_the_others(db_path: Path) -> None:
    """`--account b` masked b's key alone: a's, which b's gateway echoed, was stored."""
    key_a = "qwertyuiopasdfghjklzxcvbnmqwertyuiop"  # no key's shape
    echoed = make_batch(1, status="failed", errors={"data": [{"message": f"cached {key_a}"}]})

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(list_body([echoed], False))

    async with serving({"/v1/batches": listed}) as root:
        b = Settings(db=db_path, account="b", base_url=f"{root}/v1", api_key="k" * 20,
                     files=False)  # fmt: skip
        await sync_accounts([b], also_masked=[key_a])
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        stored = "\n".join(conn.iterdump())
    assert "cached ***" in stored
    assert key_a[:18] not in stored


def test_the_accounts_a_run_leaves_out_are_named_for_their_keys(tmp_path: Path) -> None:
    config = tmp_path / "accounts.toml"
    config.write_text(
        '[accounts.a]\nbase_url = "https://a.example/v1"\napi_key_env = "KEY_A"\n'
        '[accounts.b]\nbase_url = "https://b.example/v1"\napi_key_env = "KEY_B"\n'
    )
    keys = {"KEY_A": "correct-horse-battery-staple-0123456789", "KEY_B": "zebra-okapi-98765"}
    args = cli.build_parser().parse_args(["sync", "--config", str(config), "--account", "b"])
    with pytest.MonkeyPatch.context() as patch:
        for name, key in keys.items():
            patch.setenv(name, key)
        synced = load_accounts({}, os.environ, config, only=["b"])
        assert cli._other_accounts_keys({}, args, synced) == [keys["KEY_A"]]


def test_masking_a_document_keeps_its_joiners() -> None:
    """Format characters were taken out of every text masked with a key at hand: words
    joined by a zero-width non-joiner, emoji by a zero-width joiner, came out changed."""
    text = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \U0001f469\u200d\U0001f4bb"
    assert mask_keys_in_json({"example": text}, ["sk-proj-" + "A1b2C3d4" * 5]) == {"example": text}


def test_shown_data_masks_the_keys_at_hand_not_words_spelled_as_keys() -> None:
    """`report` showed a model's name spelled `sk-…` masked, no key at hand (pass 92A)."""
    text = "model sk-learn-classifier-v2 not found; key " + PROJECT_KEY
    assert (
        mask_keys_in_data(text, [PROJECT_KEY]) == "model sk-learn-classifier-v2 not found; key ***"
    )


def test_shown_json_masks_the_keys_at_hand_not_words_spelled_as_keys() -> None:
    """`report --json` and `status --json` showed `sk-…` model names masked (pass 93A)."""
    shown = mask_keys_in_json({"model": "sk-learn-classifier-v2", "e": PROJECT_KEY}, [PROJECT_KEY])
    assert shown == {"model": "sk-learn-classifier-v2", "e": "***"}


def test_a_json_documents_strings_are_read_line_by_line_and_by_shape() -> None:
    """A private key of several lines in a JSON document was one secret: a line of it, or
    its body, echoed was stored (93A); a default variable's JSON strings were all taken,
    whatever their shape (a list of models masked them, 93A)."""
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASCBKcwggSjAgEAAoIB\n"
    document = json.dumps({"type": "service_account", "private_key": pem + "-----END"})
    lines = variable_secrets(document, any_shape=True)
    assert {"MIIEvQIBADANBgkqhkiG9w0B", "AQEFAASCBKcwggSjAgEAAoIB"} <= set(lines)
    assert variable_secrets('["gpt-4o-mini", "classifier-prod-eu"]') == ()
