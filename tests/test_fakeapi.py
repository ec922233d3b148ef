"""Tests of the fake OpenAI Batches API itself: data, ids, routes, faults, test hooks, the SDK."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from crawler.config import Settings
from crawler.fake import (
    BAD_PAGE_MODES,
    ID_STYLES,
    FakeApiOptions,
    FakeApiServer,
    FakeBatches,
    IdStyle,
    serve,
)
from crawler.fake.content import DAY, IN_FLIGHT, UNKNOWN_STATUS
from crawler.fake.faults import RequestBudget, format_go_duration
from crawler.fake.server import client_host

from .waits import HANG_GUARD, until

KEY = "sk-fake-local"
AUTH = {"Authorization": f"Bearer {KEY}"}
TERMINAL = {"completed", "failed", "expired", "cancelled"}
Start = Callable[..., Awaitable[FakeApiServer]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start fake servers with the given options (and budget clock); all stop at the end."""
    async with contextlib.AsyncExitStack() as stack:

        async def _start(
            clock: Callable[[], float] = time.monotonic, **options: Any
        ) -> FakeApiServer:
            server = FakeApiServer(FakeApiOptions(**options), clock=clock)
            return await stack.enter_async_context(server)

        yield _start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session that opens a fresh connection for every request."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, headers=AUTH) as session:
        yield session


async def get_json(
    session: aiohttp.ClientSession, url: str, **params: Any
) -> tuple[int, dict[str, Any]]:
    """GET a URL and return its status and decoded JSON body."""
    async with session.get(url, params=params) as response:
        return response.status, json.loads(await response.read())


# -- the official SDK -------------------------------------------------------------------------


async def test_sdk_walks_every_batch_once_newest_first(start: Start) -> None:
    """The SDK's auto-pager reads every batch once, newest first, with fields intact."""
    server = await start(batches=1000)
    expected = list(server.data.snapshot())
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as client:
        seen = [b async for b in client.batches.list(limit=100)]
    assert [b.id for b in seen] == [b["id"] for b in expected]
    assert server.stats.pages == 10
    for got, want in zip(seen, expected, strict=True):
        assert got.status == want["status"]
        assert got.created_at == want["created_at"]
        assert got.metadata == want["metadata"]
        counts = got.request_counts.model_dump() if got.request_counts else None
        assert counts == want["request_counts"]
        usage = got.usage.model_dump() if got.usage else None
        assert usage == want.get("usage")
    assert UNKNOWN_STATUS in {b.status for b in seen}
    assert any((b.model_extra or {}).get("x_future_field") for b in seen)


async def test_sdk_retrieve_and_unknown_id(start: Start) -> None:
    """retrieve() returns one batch; an unknown id raises NotFoundError (batch_not_found)."""
    server = await start(batches=50)
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as client:
        batch = await client.batches.retrieve(server.data.batch_id(7))
        assert batch.model_dump(exclude_unset=True) == server.data.batch(7)
        with pytest.raises(openai.NotFoundError) as caught:
            await client.batches.retrieve("batch_" + "0" * 32)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "batch_not_found"


async def test_sdk_reads_error_file_with_both_line_kinds(start: Start) -> None:
    """files.content() returns JSONL with HTTP-level and batch-level failure lines."""
    server = await start(batches=300)
    batch = next(
        b
        for b in server.data.snapshot()
        if b["status"] == "completed" and b["error_file_id"] and b["request_counts"]["failed"] > 3
    )
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as client:
        content = await client.files.content(batch["error_file_id"])
    lines = [json.loads(line) for line in content.text.splitlines() if line.strip()]
    assert len(lines) == batch["request_counts"]["failed"]
    http_level = [x for x in lines if x["error"] is None]
    other = [x for x in lines if x["response"] is None]
    assert http_level
    assert other
    assert len(http_level) + len(other) == len(lines)
    assert all("error" in x["response"]["body"] for x in http_level)
    assert len({x["custom_id"] for x in lines}) == len(lines)


async def test_sdk_wrong_key_is_rejected_and_masked(start: Start) -> None:
    """A wrong key raises AuthenticationError whose message never shows the whole key."""
    server = await start(batches=5)
    wrong = "sk-proj-this-is-not-the-key-1234"
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=wrong, max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.batches.list()
    assert wrong not in str(caught.value)
    assert "sk-pr****34" in str(caught.value)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "invalid_api_key"


async def test_missing_key_is_401(start: Start) -> None:
    """No Authorization header gets a 401 envelope too."""
    server = await start(batches=5)
    async with aiohttp.ClientSession() as session:
        status, body = await get_json(session, server.base_url + "/batches")
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"


# -- list parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "code"),
    [
        ("101", "integer_above_max_value"),
        ("1000", "integer_above_max_value"),
        ("-1", "integer_below_min_value"),
        ("abc", "invalid_type"),
        ("1.5", "invalid_type"),
        ("", "invalid_type"),
    ],
)
async def test_bad_limit_is_400(
    start: Start, http: aiohttp.ClientSession, limit: str, code: str
) -> None:
    """Out-of-range or non-integer limits get a 400 envelope naming `limit`."""
    server = await start(batches=5)
    status, body = await get_json(http, server.base_url + "/batches", limit=limit)
    assert status == 400
    assert body["error"]["param"] == "limit"
    assert body["error"]["code"] == code
    assert body["error"]["type"] == "invalid_request_error"


async def test_default_limit_and_limit_zero(start: Start, http: aiohttp.ClientSession) -> None:
    """No limit means 20; limit=0 is an empty 200 page that still reports has_more."""
    server = await start(batches=30)
    url = server.base_url + "/batches"
    _, page = await get_json(http, url)
    assert len(page["data"]) == 20
    status, empty = await get_json(http, url, limit=0)
    assert status == 200
    assert empty == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": True,
    }


async def test_after_is_strict_and_ids_bracket_page(
    start: Start, http: aiohttp.ClientSession
) -> None:
    """Each page starts right after the cursor; first_id/last_id name its ends."""
    server = await start(batches=25)
    url = server.base_url + "/batches"
    _, first = await get_json(http, url, limit=10)
    _, second = await get_json(http, url, limit=10, after=first["last_id"])
    _, third = await get_json(http, url, limit=10, after=second["last_id"])
    ids = [b["id"] for page in (first, second, third) for b in page["data"]]
    assert ids == [server.data.batch_id(i) for i in range(24, -1, -1)]
    for page in (first, second, third):
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]
    assert [p["has_more"] for p in (first, second, third)] == [True, True, False]
    _, tail = await get_json(http, url, after=server.data.batch_id(0))
    assert tail == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


@pytest.mark.parametrize(
    "after",
    [
        "batch_x",
        "batch_" + "f" * 32,
        FakeBatches(25, seed=99).batch_id(3),  # well-formed, another seed's id
        FakeBatches(25).batch_id(3).upper().replace("BATCH_", "batch_"),
        FakeBatches(30).batch_id(27),  # this seed, but beyond the 25 batches served
    ],
)
async def test_unknown_after_is_400(start: Start, http: aiohttp.ClientSession, after: str) -> None:
    """An `after` id the server never issued gets a 400 naming `after`."""
    server = await start(batches=25)
    status, body = await get_json(http, server.base_url + "/batches", after=after)
    assert status == 400
    assert body["error"]["param"] == "after"


async def test_other_routes_are_404_envelopes(start: Start, http: aiohttp.ClientSession) -> None:
    """Unknown paths, methods and files answer OpenAI's 404 envelope."""
    server = await start(batches=200)
    input_file = server.data.batch(5)["input_file_id"]
    for url in (
        server.base_url + "/models",
        server.base_url + f"/files/{input_file}/content",
        server.base_url + "/files/file-nope/content",
    ):
        status, body = await get_json(http, url)
        assert status == 404
        assert set(body["error"]) == {"message", "type", "param", "code"}
    async with http.post(server.base_url + "/batches") as response:
        assert response.status == 404
        assert response.content_type == "application/json"


# -- the data ---------------------------------------------------------------------------------


def test_same_seed_same_data_other_seed_other_ids() -> None:
    """Data depend only on (count, seed): equal for one seed, disjoint ids across seeds."""
    one, again, other = FakeBatches(400, seed=1), FakeBatches(400, seed=1), FakeBatches(400, seed=2)
    assert list(one.snapshot()) == list(again.snapshot())
    assert {b["id"] for b in one.snapshot()}.isdisjoint(b["id"] for b in other.snapshot())
    assert all(one.index_of(other.batch_id(i)) is None for i in range(400))


def test_created_at_non_increasing_with_ties() -> None:
    """Listing order is newest first, with some same-second ties in a stable order."""
    data = FakeBatches(3000)
    stamps = [b["created_at"] for b in data.snapshot()]
    assert stamps == sorted(stamps, reverse=True)
    assert sum(a == b for a, b in itertools.pairwise(stamps)) >= 10
    assert [b["id"] for b in data.snapshot()] == [b["id"] for b in FakeBatches(3000).snapshot()]


def test_content_is_realistic_and_consistent() -> None:
    """Statuses, timestamps, counts, files and optional fields agree with each other."""
    data = FakeBatches(3000)
    batches = list(data.snapshot())
    statuses = Counter(b["status"] for b in batches)
    assert set(statuses) >= IN_FLIGHT | TERMINAL | {UNKNOWN_STATUS}
    assert statuses["completed"] > len(batches) // 2
    for b in batches:
        counts, status = b["request_counts"], b["status"]
        assert b["expires_at"] == b["created_at"] + DAY
        assert all(
            b[k] is None or b["created_at"] <= b[k] <= data.now
            for k in b
            if k.endswith("_at") and k != "expires_at"
        )
        if status in IN_FLIGHT:
            assert data.now - b["created_at"] < DAY
        if counts is not None:
            assert counts["completed"] + counts["failed"] <= counts["total"]
            if status in TERMINAL | {"finalizing"}:
                assert counts["completed"] + counts["failed"] == counts["total"]
        has_files = status in TERMINAL and counts is not None
        assert (b["error_file_id"] is not None) == (has_files and bool(counts["failed"]))
        assert (b["output_file_id"] is not None) == (has_files and bool(counts["completed"]))
        assert (b["errors"] is not None) == (status == "failed")
    oldest, newest = batches[-1], batches[0]
    assert "model" not in oldest
    assert "usage" not in oldest
    assert newest["model"]
    assert newest["usage"] is not None
    assert any(b.get("usage", 0) is None for b in batches)
    texts = json.dumps([b["metadata"] for b in batches], ensure_ascii=False)
    assert "équipe" in texts
    assert "東京" in texts
    assert "🚀" in texts
    assert any(b["metadata"] is None for b in batches)
    errors = [e for b in batches if b["errors"] for e in b["errors"]["data"]]
    assert any(e["line"] is not None for e in errors)
    assert any(e["param"] is None for e in errors)
    assert {b["endpoint"] for b in batches} == {
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/embeddings",
    }


def test_advancing_reaches_consistent_terminal_states() -> None:
    """Advancing long enough ends every in-flight batch in a consistent terminal state."""
    data = FakeBatches(400)
    data.add_batches(5)
    moving = [b["id"] for b in data.snapshot() if b["status"] in IN_FLIGHT]
    for _ in range(4):
        data.advance_statuses(len(data))
    for batch_id in moving:
        index = data.index_of(batch_id)
        assert index is not None
        b = data.batch(index)
        counts = b["request_counts"]
        assert b["status"] in {"completed", "cancelled"}
        assert counts["completed"] + counts["failed"] == counts["total"] > 0
        assert (b["error_file_id"] is not None) == bool(counts["failed"])
        assert (b["output_file_id"] is not None) == bool(counts["completed"])
        for kind, lines in (("output", counts["completed"]), ("error", counts["failed"])):
            source = data.file_source(b[f"{kind}_file_id"] or "")
            assert (source.line_count if source else 0) == lines
        if b["status"] == "completed":
            assert b["created_at"] <= b["in_progress_at"] <= b["finalizing_at"] <= b["completed_at"]
            if b.get("usage") and counts["completed"]:
                assert b["usage"]["total_tokens"] > 0


# -- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ID_STYLES)
def test_ids_are_unique_and_invert_in_both_styles(style: IdStyle) -> None:
    """Every id has 38 characters, is unique, is the one listed, and maps back to its index."""
    data = FakeBatches(3000, seed=5, ids=style)
    ids = [data.batch_id(i) for i in range(len(data))]
    assert all(len(batch_id) == 38 and batch_id.startswith("batch_") for batch_id in ids)
    assert len(set(ids)) == len(ids)
    assert [data.index_of(batch_id) for batch_id in ids] == list(range(len(data)))
    assert [b["id"] for b in data.snapshot()] == ids[::-1]


def test_realistic_ids_begin_with_their_creation_second() -> None:
    """A realistic id starts with created_at as 8 hex digits, about 1 in 10 one second before."""
    early = 0
    for b in FakeBatches(3000).snapshot():
        second = int(b["id"][6:14], 16)
        assert second in {b["created_at"], b["created_at"] - 1}
        early += second != b["created_at"]
    assert 200 <= early <= 400


def test_random_ids_are_the_fully_random_kind() -> None:
    """A random-style id shows no creation second: its first 8 hex digits are spread wide."""
    data = FakeBatches(3000, ids="random")
    prefixes = sorted(int(b["id"][6:14], 16) for b in data.snapshot())
    assert prefixes[-1] - prefixes[0] > 1 << 31
    assert all(data.index_of(b["id"]) is not None for b in data.snapshot())


@pytest.mark.parametrize("style", ID_STYLES)
def test_ids_never_issued_are_rejected(style: IdStyle) -> None:
    """Ids with a wrong check word, second or spelling, or of another seed or style, are
    not found."""
    data = FakeBatches(100, seed=3, ids=style)
    good = data.batch_id(42)
    other_style: IdStyle = "random" if style == "realistic" else "realistic"
    never_issued = [
        good[:-1] + ("1" if good[-1] == "0" else "0"),  # the check word
        f"batch_{int(good[6:14], 16) + 5:08x}{good[14:]}",  # another second, or word
        good[:14] + "+" + good[15:],  # a sign where a digit was: int() accepts it
        good.upper().replace("BATCH_", "batch_"),
        FakeBatches(100, seed=4, ids=style).batch_id(42),
        FakeBatches(100, seed=3, ids=other_style).batch_id(42),
        FakeBatches(200, seed=3, ids=style).batch_id(150),
        "batch_" + "0" * 32,
        "batch_x",
        good + "0",
    ]
    assert data.index_of(good) == 42
    assert [data.index_of(batch_id) for batch_id in never_issued] == [None] * len(never_issued)


@pytest.mark.parametrize("style", ID_STYLES)
def test_added_batches_get_ids_of_their_own(style: IdStyle) -> None:
    """Batches added at the fake clock get ids (realistic: of their own creation second)
    that invert, and keep them as they advance."""
    data = FakeBatches(50, ids=style)
    data.add_batches(3)
    data.add_batches(2)
    added = [data.batch(i) for i in range(50, 55)]
    assert [b["created_at"] for b in added] == [data.now + 1] * 3 + [data.now + 2] * 2
    assert [data.index_of(b["id"]) for b in added] == list(range(50, 55))
    if style == "realistic":
        assert all(int(b["id"][6:14], 16) in {b["created_at"], b["created_at"] - 1} for b in added)
    data.advance_statuses(100)
    assert [data.batch_id(i) for i in range(50, 55)] == [b["id"] for b in added]
    assert len({b["id"] for b in data.snapshot()}) == 55


async def test_the_server_serves_the_id_style_asked_for(
    start: Start, http: aiohttp.ClientSession
) -> None:
    """ids="random" serves random-style ids; an id of the other style is an unknown cursor."""
    server = await start(batches=30, ids="random")
    url = server.base_url + "/batches"
    _, page = await get_json(http, url, limit=5)
    expected = FakeBatches(30, ids="random")
    assert [b["id"] for b in page["data"]] == [expected.batch_id(i) for i in range(29, 24, -1)]
    status, _ = await get_json(http, url, after=FakeBatches(30).batch_id(10))
    assert status == 400


async def test_million_batches_first_and_last_pages_generate_only_those(
    start: Start, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1,000,000-batch fake builds only the batches of the pages asked for: nothing walks
    it all, to start, to find a cursor or to render the head and the tail."""
    generated: list[int] = []
    generate = FakeBatches._generate

    def counting(self: FakeBatches, i: int, fresh_at: int | None = None) -> dict[str, Any]:
        generated.append(i)
        return generate(self, i, fresh_at)

    monkeypatch.setattr(FakeBatches, "_generate", counting)
    server = await start(batches=1_000_000)
    url = server.base_url + "/batches"
    _, head = await get_json(http, url, limit=100)
    _, tail = await get_json(http, url, limit=100, after=server.data.batch_id(100))
    assert sorted(generated) == [*range(100), *range(999_900, 1_000_000)]
    assert head["first_id"] == server.data.batch_id(999_999)
    assert [b["id"] for b in tail["data"]][-1] == server.data.batch_id(0)
    assert tail["has_more"] is False
    assert server.data.index_of(server.data.batch_id(123_456)) == 123_456


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "counter"),
    [
        ("error_rate", "errors"),
        ("rate_limit_rate", "rate_limited"),
        ("drop_rate", "dropped"),
        ("truncate_rate", "truncated"),
    ],
)
async def test_each_fault_fires_and_counts(
    start: Start, http: aiohttp.ClientSession, knob: str, counter: str
) -> None:
    """At rate 1 every API request gets the fault, and its counter says so."""
    server = await start(batches=50, **{knob: 1.0})
    url = server.base_url + "/batches"
    for _ in range(3):
        if knob == "drop_rate":
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await get_json(http, url)
        elif knob == "truncate_rate":
            async with http.get(url) as response:
                assert response.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()
        else:
            async with http.get(url) as response:
                body = await response.json()
                expected = {429} if knob == "rate_limit_rate" else {500, 502, 503}
                assert response.status in expected
                assert set(body["error"]) == {"message", "type", "param", "code"}
    # aiohttp silently resends an idempotent request once after a disconnect.
    sent = 6 if knob == "drop_rate" else 3
    assert getattr(server.stats, counter) == server.stats.requests["list_batches"] == sent
    assert server.stats.pages == (3 if knob == "truncate_rate" else 0)


async def test_html_errors_look_like_a_proxy(start: Start, http: aiohttp.ClientSession) -> None:
    """With html_errors, injected 5xx answers are HTML pages, not JSON."""
    server = await start(batches=5, error_rate=1.0, html_errors=True)
    async with http.get(server.base_url + "/batches") as response:
        assert response.status in {500, 502, 503}
        assert response.content_type == "text/html"
        assert "<html>" in await response.text()


async def test_rate_limit_headers_advertise_small_delays(
    start: Start, http: aiohttp.ClientSession
) -> None:
    """Injected 429s alternate retry-after-ms and retry-after, both <= 0.2 s."""
    server = await start(batches=5, rate_limit_rate=1.0)
    kinds = []
    for _ in range(4):
        async with http.get(server.base_url + "/batches") as response:
            headers = response.headers
            assert response.status == 429
            assert (await response.json())["error"]["code"] == "rate_limit_exceeded"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"].endswith("ms")
        assert int(headers["x-ratelimit-limit-requests"]) > 0
        if "retry-after-ms" in headers:
            kinds.append("ms")
            assert 0 < float(headers["retry-after-ms"]) <= 200
        else:
            kinds.append("s")
            assert 0 < float(headers["retry-after"]) <= 0.2
    assert kinds == ["ms", "s", "ms", "s"]


async def test_slow_and_latency_delay_answers(start: Start, http: aiohttp.ClientSession) -> None:
    """slow_rate adds slow_seconds on top of latency, and is counted."""
    server = await start(batches=5, latency=0.05, slow_rate=1.0, slow_seconds=0.1)
    began = time.perf_counter()
    status, _ = await get_json(http, server.base_url + "/batches")
    assert status == 200
    assert time.perf_counter() - began >= 0.15
    assert server.stats.slow == 1


def test_request_budget_counts_down_and_refills() -> None:
    """The token bucket grants `rate` requests a second, then tells the real wait."""
    now = [100.0]
    budget = RequestBudget(4, clock=lambda: now[0])
    quotas = [budget.take() for _ in range(5)]
    assert [q.granted for q in quotas] == [True, True, True, True, False]
    assert [q.remaining for q in quotas] == [3, 2, 1, 0, 0]
    assert quotas[4].wait == pytest.approx(0.25)
    assert quotas[4].headers()["x-ratelimit-reset-requests"] == "1s"
    now[0] += 0.25
    assert budget.take().granted


async def test_requests_per_second_budget(start: Start, http: aiohttp.ClientSession) -> None:
    """Over budget the server answers 429 with retry-after-ms; under it, x-ratelimit-*.
    The budget runs on the clock it is given."""
    now = [1000.0]
    server = await start(batches=5, requests_per_second=2, clock=lambda: now[0])
    url = server.base_url + "/batches"
    statuses, remaining = [], []
    for _ in range(3):
        async with http.get(url) as response:
            statuses.append(response.status)
            remaining.append(response.headers["x-ratelimit-remaining-requests"])
            assert response.headers["x-ratelimit-limit-requests"] == "2"
    assert statuses == [200, 200, 429]
    assert remaining == ["1", "0", "0"]
    assert response.headers["retry-after-ms"] == "500"
    assert server.stats.rate_limited == 1
    now[0] += 0.5
    async with http.get(url) as response:
        assert response.status == 200


async def test_faults_are_reproducible_and_spare_other_routes(
    start: Start, http: aiohttp.ClientSession
) -> None:
    """The same seed picks the same faults; paths outside batches/files never get any."""
    statuses = []
    for _ in range(2):
        server = await start(batches=20, error_rate=0.4, rate_limit_rate=0.3)
        run = []
        for _ in range(20):
            async with http.get(server.base_url + "/batches", params={"limit": 5}) as response:
                run.append(response.status)
        statuses.append(run)
        assert server.stats.errors == sum(s >= 500 for s in run)
        assert server.stats.rate_limited == run.count(429)
        assert server.stats.pages == run.count(200)
        for _ in range(5):
            async with http.get(server.base_url + "/models") as response:
                assert response.status == 404
    assert statuses[0] == statuses[1]
    assert {200, 429} <= set(statuses[0])
    assert any(s >= 500 for s in statuses[0])


async def test_broken_pagination_empty_has_more(start: Start, http: aiohttp.ClientSession) -> None:
    """From page 3 on, pages are empty yet claim has_more (and the SDK stops silently)."""
    server = await start(batches=100, broken_pagination="empty-has-more")
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as client:
        seen = [b.id async for b in client.batches.list(limit=10)]
    assert len(seen) == 20
    _, page = await get_json(http, server.base_url + "/batches", limit=10, after=seen[-1])
    assert page["data"] == []
    assert page["has_more"] is True


async def test_broken_pagination_stuck_cursor(start: Start, http: aiohttp.ClientSession) -> None:
    """From page 3 on, every `after` gets the same page back with has_more true."""
    server = await start(batches=100, broken_pagination="stuck-cursor")
    url = server.base_url + "/batches"
    _, page2 = await get_json(http, url, limit=10, after=server.data.batch_id(90))
    _, page3 = await get_json(http, url, limit=10, after=page2["last_id"])
    _, again = await get_json(http, url, limit=10, after=page3["last_id"])
    assert [b["id"] for b in page3["data"]] == [server.data.batch_id(i) for i in range(79, 69, -1)]
    assert again == page3
    assert again["has_more"] is True


async def test_broken_pagination_wrong_last_id(start: Start, http: aiohttp.ClientSession) -> None:
    """last_id names another batch than the page's last item; the data stay right."""
    server = await start(batches=15, broken_pagination="wrong-last-id")
    url = server.base_url + "/batches"
    _, first = await get_json(http, url, limit=10)
    _, second = await get_json(http, url, limit=10, after=first["data"][-1]["id"])
    assert [b["id"] for b in first["data"] + second["data"]] == [
        server.data.batch_id(i) for i in range(14, -1, -1)
    ]
    for page in (first, second):
        assert page["last_id"] != page["data"][-1]["id"]


async def test_moving_target_adds_and_advances(start: Start, http: aiohttp.ClientSession) -> None:
    """After the first list request, each one adds batches at the head and advances others."""
    server = await start(batches=200, add_per_request=3, advance_per_request=4)
    url = server.base_url + "/batches"
    before = {b["id"]: b["status"] for b in server.data.snapshot()}
    _, first = await get_json(http, url, limit=100)
    assert len(server.data) == 200
    _, second = await get_json(http, url, limit=100, after=first["last_id"])
    _, head = await get_json(http, url, limit=10)
    assert len(server.data) == 206
    new = head["data"][:6]
    assert all(b["id"] not in before for b in new)
    assert head["data"][6]["id"] == first["first_id"]
    assert all(b["created_at"] >= first["data"][0]["created_at"] for b in new)
    assert {b["status"] for b in new} <= {"validating", "in_progress"}
    assert [b["id"] for b in second["data"]] == [server.data.batch_id(i) for i in range(99, -1, -1)]
    after = {b["id"]: b["status"] for b in server.data.snapshot()}
    assert sum(before[k] != after[k] for k in before) > 0


# -- test hooks -------------------------------------------------------------------------------


async def test_held_list_requests_wait_until_released(
    start: Start, http: aiohttp.ClientSession
) -> None:
    """After `after` list requests, list requests wait unanswered (no page served, counted as
    held) until released; requests by id pass."""
    server = await start(batches=50)
    url = server.base_url + "/batches"
    server.hold_list_requests(after=1)
    status, first = await get_json(http, url, limit=10)
    assert status == 200
    held = asyncio.create_task(get_json(http, url, limit=10, after=first["last_id"]))
    await until(lambda: server.stats.held == 1)
    status, _ = await get_json(http, url + "/" + server.data.batch_id(3))
    assert status == 200
    assert not held.done()
    assert server.stats.pages == 1
    server.release_list_requests()
    status, second = await held
    assert status == 200
    assert second["data"][0]["id"] == server.data.batch_id(39)
    assert (await get_json(http, url))[0] == 200
    assert (server.stats.pages, server.stats.held) == (3, 1)


async def test_a_held_request_is_answered_when_the_server_stops(
    http: aiohttp.ClientSession,
) -> None:
    """Stopping the server lets held requests go: nothing hangs on a gate left closed."""
    async with FakeApiServer(FakeApiOptions(batches=5)) as server:
        server.hold_list_requests()
        held = asyncio.create_task(get_json(http, server.base_url + "/batches"))
        await until(lambda: server.stats.held == 1)
    status, page = await held
    assert status == 200
    assert len(page["data"]) == 5


async def test_organization_and_project_headers_are_counted(start: Start) -> None:
    """The OpenAI-Organization and OpenAI-Project headers received are counted by value."""
    server = await start(batches=5)
    headers = {**AUTH, "OpenAI-Organization": "org-a", "OpenAI-Project": "proj_b"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for path in ("/batches", "/batches/" + server.data.batch_id(0), "/models"):
            await get_json(session, server.base_url + path)
    async with aiohttp.ClientSession(headers=AUTH) as session:
        await get_json(session, server.base_url + "/batches")
    assert server.stats.headers == Counter(
        {("OpenAI-Organization", "org-a"): 3, ("OpenAI-Project", "proj_b"): 3}
    )


# -- running and small pieces -----------------------------------------------------------------


async def test_serve_reports_ready_and_stops_on_cancel() -> None:
    """serve() calls ready(base_url) once listening and closes the port when cancelled."""
    ready: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(serve(FakeApiOptions(batches=3), port=0, ready=ready.put_nowait))
    base_url = await asyncio.wait_for(ready.get(), timeout=HANG_GUARD)
    async with aiohttp.ClientSession(headers=AUTH) as session:
        status, page = await get_json(session, base_url + "/batches")
        assert status == 200
        assert len(page["data"]) == 3
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(aiohttp.ClientConnectionError):
            await get_json(session, base_url + "/batches")


@pytest.mark.parametrize(
    "bad",
    [
        {"error_rate": 1.5},
        {"drop_rate": -0.1},
        {"batches": -1},
        {"requests_per_second": 0},
        {"broken_pagination": "sideways"},
        {"bad_page": "slightly-off"},
        {"ids": "sequential"},
    ],
)
def test_options_reject_bad_values(bad: dict[str, Any]) -> None:
    """Impossible option values raise ValueError naming the field."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        FakeApiOptions(**bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.12, "120ms"),
        (0.172799999, "172.799999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (360, "6m0s"),
        (3723, "1h2m3s"),
    ],
)
def test_go_durations(seconds: float, text: str) -> None:
    """Reset headers use Go's duration spelling."""
    assert format_go_duration(seconds) == text


# -- bad pages: answers a client must survive ------------------------------------------------


async def raw_get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, bytes]:
    """Status, headers and undecoded body of one GET, redirects not followed."""
    async with session.get(url, allow_redirects=False) as response:
        return response.status, response.headers, await response.read()


@pytest.mark.parametrize("mode", BAD_PAGE_MODES)
async def test_a_bad_page_answers_every_list_request_but_the_first(start: Start, mode: str) -> None:
    """The first list request gets its page; each later one the bad answer, counted."""
    server = await start(batches=5, bad_page=mode, slow_seconds=0.0)
    url = server.base_url + "/batches?limit=2"
    async with aiohttp.ClientSession(headers=AUTH, auto_decompress=False) as session:
        first = await raw_get(session, url)
        status, headers, body = await raw_get(session, url)
        await raw_get(session, url)
    page = first[2]
    assert (first[0], json.loads(page)["object"]) == (200, "list")
    deep = b"[" * 100_000 + b"]" * 100_000
    huge = b" " * (64 * 2**20) + page
    expected = {
        "trickle": (200, page),
        "redirect-loop": (302, b""),
        "br-encoded": (200, page),
        "huge": (200, huge),
        "deep-json": (200, deep),
        "deep-error": (400, deep),
    }
    assert (status, body) == expected[mode]
    assert headers.get("Location") == ("/v1/batches?limit=2" if mode == "redirect-loop" else None)
    assert headers.get("Content-Encoding") == ("br" if mode == "br-encoded" else None)
    assert server.stats.bad_pages == 2
    streamed = {"trickle": len(page), "huge": len(huge)}
    assert server.stats.streamed_bytes == 2 * streamed.get(mode, 0)


@pytest.mark.parametrize(
    ("host", "url_host"),
    [("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), ("::", "[::1]"), ("::1", "[::1]"), ("h", "h")],
)
def test_a_server_on_every_interface_gives_a_loopback_url(host: str, url_host: str) -> None:
    """Listening on a wildcard, the URL it gives is one a client here can use, key and all
    (plain http is allowed to this machine only)."""
    assert client_host(host) == url_host
    if url_host != "h":
        Settings(base_url=f"http://{url_host}:8000/v1")


async def test_a_client_gone_before_a_truncated_answer_leaves_no_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The fake cutting an answer short for a client already gone (killed by a test) goes
    on quietly; it logged "Error handling request" with a traceback."""

    async def gone(self: web.StreamResponse, request: web.BaseRequest) -> None:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    monkeypatch.setattr(web.StreamResponse, "prepare", gone)
    async with FakeApiServer(FakeApiOptions(batches=5, truncate_rate=1.0)) as server:
        headers = {"Authorization": f"Bearer {server.options.api_key}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"{server.base_url}/batches") as resp:
                    await resp.read()
    assert server.stats.truncated >= 1  # aiohttp asks again once on a fresh connection
    assert "Error handling request" not in caplog.text
