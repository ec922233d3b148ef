"""Tests of the fake API's output and error files: lines, File objects, 404s, faults, size."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from crawler.cli_args import build_parser
from crawler.fake import FakeApiOptions, FakeApiServer, FakeBatches
from crawler.request_rows import REQUEST_COLUMNS, build_request_row

from .waits import until

KEY = "sk-fake-local"
AUTH = {"Authorization": f"Bearer {KEY}"}
TERMINAL = {"completed", "failed", "expired", "cancelled"}
COLUMN = {name: n for n, name in enumerate(REQUEST_COLUMNS)}
Start = Callable[..., Awaitable[FakeApiServer]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start fake servers with the given options; all stop at the end."""
    async with contextlib.AsyncExitStack() as stack:

        async def _start(**options: Any) -> FakeApiServer:
            return await stack.enter_async_context(FakeApiServer(FakeApiOptions(**options)))

        yield _start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session that opens a fresh connection for every request."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, headers=AUTH) as session:
        yield session


async def fetch_content(http: aiohttp.ClientSession, base_url: str, file_id: str) -> bytes:
    """GET a file's content, checking its type and length."""
    async with http.get(f"{base_url}/files/{file_id}/content") as response:
        assert response.status == 200
        assert response.content_type == "application/octet-stream"
        body = await response.read()
        assert response.content_length == len(body)
        return body


def files_of(server: FakeApiServer) -> list[tuple[dict[str, Any], str, str]]:
    """(batch, kind, file id) of every file a batch of the server names."""
    return [
        (b, kind, b[f"{kind}_file_id"])
        for b in server.data.snapshot()
        for kind in ("output", "error")
        if b[f"{kind}_file_id"]
    ]


def check_output_row(row: tuple[Any, ...], endpoint: str) -> str | None:
    """Check one output line's row; return its finish reason."""
    get = row.__getitem__
    assert get(COLUMN["status_code"]) == 200
    assert get(COLUMN["error_code"]) is None
    assert get(COLUMN["model"])
    inp, out, total = (get(COLUMN[c]) for c in ("input_tokens", "output_tokens", "total_tokens"))
    assert inp > 0
    if endpoint == "/v1/embeddings":
        assert (out, total, get(COLUMN["finish_reason"])) == (None, inp, None)
        return None
    assert total == inp + out
    assert 0 <= get(COLUMN["cached_input_tokens"]) <= inp
    assert 0 <= get(COLUMN["reasoning_tokens"]) <= out
    reason = get(COLUMN["finish_reason"])
    expected = {"stop", "length"} if endpoint == "/v1/chat/completions" else None
    assert reason in (expected or {"completed", "max_output_tokens"})
    return str(reason)


def check_error_row(row: tuple[Any, ...], status: str) -> str:
    """Check one error line's row; return its error code (the status code if it has none)."""
    status_code, code = row[COLUMN["status_code"]], row[COLUMN["error_code"]]
    assert row[COLUMN["error_message"]]
    if status_code is not None:
        assert status_code in {400, 429, 500}
        assert row[COLUMN["error_type"]]
        return str(code or status_code)
    never_ran = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(status)
    assert code in {"request_timeout", never_ran}
    return str(code)


async def test_every_terminal_batch_serves_exactly_its_lines(
    start: Start, http: aiohttp.ClientSession
) -> None:
    """Each terminal batch's files hold exactly request_counts.completed / .failed lines of
    the documented shape, with each custom_id once across both and tokens adding up to the
    batch's usage; in-flight batches name no file."""
    server = await start(batches=400, requests_per_batch=60)
    kinds: Counter[tuple[str, str]] = Counter()
    reasons: Counter[str | None] = Counter()
    for b in server.data.snapshot():
        if b["status"] not in TERMINAL:
            assert (b["output_file_id"], b["error_file_id"]) == (None, None)
            continue
        counts = b["request_counts"] or {"total": 0, "completed": 0, "failed": 0}
        custom_ids: list[str] = []
        input_tokens = 0
        for kind, expected in (("output", counts["completed"]), ("error", counts["failed"])):
            file_id = b[f"{kind}_file_id"]
            assert (file_id is not None) == (expected > 0)
            if file_id is None:
                continue
            assert file_id.startswith("file-")
            assert len(file_id) == 29
            assert file_id[5:].isalnum()
            body = await fetch_content(http, server.base_url, file_id)
            lines = [json.loads(line) for line in body.decode().splitlines()]
            assert body.endswith(b"\n")
            assert len(lines) == expected
            for line in lines:
                assert set(line) == {"id", "custom_id", "response", "error"}
                assert line["id"].startswith("batch_req_")
                row = build_request_row(line, b["id"], file_id, kind)
                custom_ids.append(line["custom_id"])
                if kind == "output":
                    reasons[check_output_row(row, b["endpoint"])] += 1
                    input_tokens += row[COLUMN["input_tokens"]]
                else:
                    kinds[b["status"], check_error_row(row, b["status"])] += 1
                    assert (line["response"] is None) != (line["error"] is None)
        assert len(set(custom_ids)) == len(custom_ids) == counts["total"]
        if b.get("usage"):
            assert b["usage"]["input_tokens"] == input_tokens
    assert {status for status, _ in kinds} == {"completed", "expired", "cancelled"}
    assert {code for _, code in kinds} == {
        "context_length_exceeded",
        "string_above_max_length",
        "rate_limit_exceeded",
        "500",
        "request_timeout",
        "batch_expired",
        "batch_cancelled",
    }
    for status, never_ran in (("expired", "batch_expired"), ("cancelled", "batch_cancelled")):
        failures = sum(n for (s, _), n in kinds.items() if s == status)
        assert kinds[status, never_ran] > failures // 2
    chat = reasons["stop"] + reasons["length"]
    assert 0.02 * chat < reasons["length"] < 0.1 * chat
    responses = reasons["completed"] + reasons["max_output_tokens"]
    assert 0.02 * responses < reasons["max_output_tokens"] < 0.1 * responses
    every_request_failed = [
        b
        for b in server.data.snapshot()
        if b["status"] == "completed" and b["request_counts"]["completed"] == 0
    ]
    assert every_request_failed
    assert all(b["output_file_id"] is None for b in every_request_failed)
    assert server.stats.files_served == server.stats.requests["file_content"]


async def test_lines_are_shuffled_and_reproducible(
    start: Start, http: aiohttp.ClientSession
) -> None:
    """A file is not in input order, and the same seed serves the same bytes."""
    first, again = await start(batches=50), await start(batches=50)
    _, _, file_id = max(files_of(first), key=lambda f: f[0]["request_counts"]["total"])
    body = await fetch_content(http, first.base_url, file_id)
    assert body == await fetch_content(http, again.base_url, file_id)
    numbers = [int(json.loads(line)["custom_id"].split("-")[1]) for line in body.splitlines()]
    assert numbers != sorted(numbers)


async def test_file_object_bytes_match_the_content(
    start: Start, http: aiohttp.ClientSession
) -> None:
    """GET /files/{id} gives the File object (the SDK reads it) whose bytes equal the
    content's length, multi-byte characters included."""
    server = await start(batches=100)
    multibyte = False
    for b, kind, file_id in files_of(server)[:30]:
        async with http.get(f"{server.base_url}/files/{file_id}") as response:
            assert response.status == 200
            file = await response.json()
        body = await fetch_content(http, server.base_url, file_id)
        assert file["bytes"] == len(body)
        multibyte |= len(body) != len(body.decode())
        assert file == {
            "id": file_id,
            "object": "file",
            "bytes": len(body),
            "created_at": file["created_at"],
            "expires_at": file["created_at"] + 30 * 86_400,
            "filename": f"{b['id']}_{kind}.jsonl",
            "purpose": "batch_output",
            "status": "processed",
            "status_details": None,
        }
        assert b["created_at"] <= file["created_at"] <= server.data.now
    assert multibyte
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as client:
        got = await client.files.retrieve(file_id)
        content = await client.files.content(file_id)
    assert (got.id, got.bytes, got.purpose) == (file_id, len(body), "batch_output")
    assert content.content == body


async def test_unknown_and_deleted_files_are_404_on_both_routes(
    start: Start, http: aiohttp.ClientSession
) -> None:
    """Ids no terminal batch names, and the share deleted_file_rate picks (the same files
    every time), answer 404 `No such File object` on both routes."""
    server = await start(batches=200, deleted_file_rate=0.5)
    named = [file_id for _, _, file_id in files_of(server)]
    deleted: list[bool] = []
    for file_id in named[:40]:
        gone = []
        for path in (f"/files/{file_id}", f"/files/{file_id}/content", f"/files/{file_id}"):
            async with http.get(server.base_url + path) as response:
                gone.append(response.status == 404)
                if response.status == 404:
                    body = await response.json()
                    assert body["error"]["message"] == f"No such File object: {file_id}"
        assert gone in ([True] * 3, [False] * 3)
        deleted.append(gone[0])
    assert 0 < sum(deleted) < len(deleted)
    assert server.stats.files_deleted == 3 * sum(deleted)
    in_flight = next(b for b in server.data.snapshot() if b["status"] == "in_progress")
    never_named = [
        "file-nope",
        in_flight["input_file_id"],
        FakeBatches(200, seed=9).files.build(5, "output"),  # another seed's
        FakeBatches(300).files.build(250, "output"),  # beyond the batches served
        server.data.files.build(server.data.index_of(in_flight["id"]) or 0, "output"),
        named[0][:-1] + ("A" if named[0][-1] != "A" else "B"),
    ]
    for file_id in never_named:
        for path in (f"/files/{file_id}", f"/files/{file_id}/content"):
            async with http.get(server.base_url + path) as response:
                assert response.status == 404
                body = await response.json()
                assert body["error"]["message"] == f"No such File object: {file_id}"
                assert body["error"]["type"] == "invalid_request_error"


async def read_what_comes(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Read a body until it ends or breaks: the bytes received and whether it broke."""
    received = bytearray()
    try:
        async for chunk in response.content.iter_any():
            received += chunk
    except aiohttp.ClientError:
        return bytes(received), True
    return bytes(received), False


@pytest.mark.parametrize(
    ("knob", "counter"), [("drop", "file_dropped"), ("truncate", "file_truncated")]
)
async def test_a_cut_download_fails_and_a_retry_succeeds(
    start: Start, http: aiohttp.ClientSession, knob: str, counter: str
) -> None:
    """A cut download ends short of its Content-Length, mid-line for a drop, after whole
    lines for a truncation. Faults hit requests, not files: a retry gets the whole file."""
    server = await start(batches=50, requests_per_batch=200, **{f"file_{knob}_rate": 0.5})
    _, _, file_id = files_of(server)[0]
    source = server.data.file_source(file_id)
    assert source is not None
    cut, whole = 0, None
    for _ in range(20):
        async with http.get(f"{server.base_url}/files/{file_id}/content") as response:
            assert response.status == 200
            size = response.content_length
            received, broke = await read_what_comes(response)
        if not broke:
            whole = received
            if cut:
                break
            continue
        cut += 1
        assert size is not None
        assert len(received) < size
        assert received.endswith(b"\n") == (knob == "truncate")
        if knob == "truncate":
            assert all(json.loads(line) for line in received.splitlines())
    assert cut >= 1
    assert whole is not None
    assert len(whole.splitlines()) == source.line_count
    assert getattr(server.stats, counter) == cut
    assert server.stats.files_served == server.stats.requests["file_content"] - cut


async def test_a_slow_download_pauses_between_lines(
    start: Start, http: aiohttp.ClientSession
) -> None:
    """A slow download sends one line, then pauses (here for an hour) before the next; a
    retry that is not slow gets the whole file in one go."""
    server = await start(batches=50, file_slow_rate=0.5, file_slow_seconds=3600)
    _, _, file_id = next(f for f in files_of(server) if f[0]["request_counts"]["total"] > 5)
    slow = whole = 0
    for _ in range(20):
        before = (server.stats.file_slow, server.stats.file_lines)
        async with http.get(f"{server.base_url}/files/{file_id}/content") as response:
            first = await response.content.readline()
            assert json.loads(first)["custom_id"]
            if server.stats.file_slow > before[0]:
                slow += 1
                await until(lambda n=before[1]: server.stats.file_lines > n)
                assert server.stats.file_lines == before[1] + 1
                assert not response.content.at_eof()
                continue
            rest = await response.read()
            assert len(first) + len(rest) == response.content_length
            whole += 1
        if slow and whole:
            break
    assert slow >= 1
    assert whole >= 1


async def test_a_50000_line_file_streams_in_small_writes(
    start: Start, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 50,000-request batch's output file is sent whole, in writes of about 64 KiB each:
    never the whole body at once."""
    writes: list[int] = []
    write = web.StreamResponse.write

    async def recording(self: web.StreamResponse, data: Any) -> None:
        writes.append(len(data))
        await write(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", recording)
    server = await start(batches=20, requests_per_batch=50_000)
    b = next(
        b
        for b in server.data.snapshot()
        if b["status"] == "completed" and b["request_counts"]["failed"] == 0
    )
    lines = size = 0
    async with http.get(f"{server.base_url}/files/{b['output_file_id']}/content") as response:
        assert response.status == 200
        async for chunk in response.content.iter_chunked(1 << 16):
            lines += chunk.count(b"\n")
            size += len(chunk)
    assert lines == 50_000 == server.stats.file_lines
    assert size == response.content_length == server.stats.file_bytes
    assert server.stats.files_served == 1
    assert len(writes) > size // (128 * 1024)
    assert max(writes) < 64 * 1024 + 4096


def test_every_option_has_a_fake_api_flag() -> None:
    """`batch-crawler fake-api` has a flag for every FakeApiOptions field, the file knobs too."""
    args = build_parser().parse_args(
        [
            "fake-api",
            "--requests-per-batch",
            "50000",
            "--deleted-file-rate",
            "0.1",
            "--file-drop-rate",
            "0.2",
            "--file-truncate-rate",
            "0.3",
            "--file-slow-rate",
            "0.4",
            "--file-slow-seconds",
            "0.5",
        ]
    )
    fields = {f.name for f in dataclasses.fields(FakeApiOptions)}
    assert fields <= set(vars(args))
    options = FakeApiOptions(**{k: v for k, v in vars(args).items() if k in fields})
    assert (options.requests_per_batch, options.deleted_file_rate) == (50_000, 0.1)
    assert (options.file_drop_rate, options.file_truncate_rate) == (0.2, 0.3)
    assert (options.file_slow_rate, options.file_slow_seconds) == (0.4, 0.5)


@pytest.mark.parametrize(
    "bad",
    [{"requests_per_batch": 0}, {"file_drop_rate": 1.5}, {"deleted_file_rate": -0.1}],
)
def test_file_options_reject_bad_values(bad: dict[str, Any]) -> None:
    """Impossible file option values raise ValueError naming the field."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        FakeApiOptions(**bad)
