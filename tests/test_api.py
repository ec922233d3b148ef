"""The HTTP edge: status mapping, retries and their delays, and keeping the key secret."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from crawler.api import ApiClient, RetryEvent, RetryPolicy, create_session, describe
from crawler.bodies import MAX_BATCH_BYTES, MAX_BODY_BYTES
from crawler.config import Settings
from crawler.errors import (
    AuthenticationError,
    BadRequestError,
    BrokenResponseError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
    TransportError,
    UnknownCursorError,
)
from crawler.ratelimit import RateLimiter
from crawler.replies import build_api_error, parse_retry_after

from .conftest import API_KEY, BASE_URL, list_body, make_batch

LIST_URL = re.compile(r"^https://api\.test/v1/batches\?.*$")


def envelope(message: str, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }


class Recorder:
    """Collects the sleeps and retry events of a client instead of sleeping; keeps fake time."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.events: list[RetryEvent] = []
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(
    session: aiohttp.ClientSession, recorder: Recorder, fast_retry: RetryPolicy
) -> ApiClient:
    return ApiClient(
        session,
        BASE_URL,
        retry=fast_retry,
        secret=API_KEY,
        on_retry=recorder.events.append,
        sleep=recorder.sleep,
        limiter=RateLimiter(clock=recorder.clock, sleep=recorder.sleep),
    )


async def test_fetch_page_sends_limit_and_after(client: ApiClient) -> None:
    """The request carries limit and after; the response becomes a BatchPage."""
    with aioresponses() as mock:
        mock.get(
            f"{BASE_URL}/batches?limit=2&after=batch_a",
            payload=list_body([make_batch(2), make_batch(1)], True),
        )
        page = await client.fetch_page("batch_a", 2)
    assert [b["id"] for b in page.batches] == [make_batch(2)["id"], make_batch(1)["id"]]
    assert page.has_more


@pytest.mark.parametrize(
    ("status", "headers", "expected_wait"),
    [
        (429, {"retry-after": "3"}, 3.0),
        (429, {"retry-after-ms": "250"}, 0.25),
        (503, {"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        (500, {}, 0.0),
        (429, {"retry-after": "600"}, 0.0),
    ],
)
async def test_retryable_status_is_retried_with_the_server_delay(
    client: ApiClient,
    recorder: Recorder,
    status: int,
    headers: dict[str, str],
    expected_wait: float,
) -> None:
    """The server's delay is honoured up to 120 s; beyond, the (zero) backoff applies."""
    with aioresponses() as mock:
        mock.get(LIST_URL, status=status, headers=headers, payload=envelope("slow down"))
        mock.get(LIST_URL, payload=list_body([make_batch(1)], False))
        page = await client.fetch_page(None, 100)
    assert len(page.batches) == 1
    assert recorder.sleeps == [expected_wait]
    assert len(recorder.events) == 1
    assert recorder.events[0].error.status == status


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(
    client: ApiClient, recorder: Recorder, status: int
) -> None:
    """408, 409 and 5xx are retried, as the official SDK does."""
    with aioresponses() as mock:
        mock.get(LIST_URL, status=status, body="<html>Bad Gateway</html>")
        mock.get(LIST_URL, payload=list_body([], False))
        await client.fetch_page(None, 100)
    assert len(recorder.events) == 1


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (400, "integer_above_max_value", BadRequestError),
        (401, "invalid_api_key", AuthenticationError),
        (403, None, AuthenticationError),
        (404, None, NotFoundError),
        (429, "insufficient_quota", QuotaExceededError),
    ],
)
async def test_permanent_errors_fail_at_once_with_the_api_message(
    client: ApiClient, recorder: Recorder, status: int, code: str | None, error_type: type
) -> None:
    """400, 401, 403, 404 and insufficient_quota are not retried."""
    with aioresponses() as mock:
        mock.get(LIST_URL, status=status, payload=envelope(f"the API says no ({status})", code))
        with pytest.raises(error_type, match=rf"the API says no \({status}\)"):
            await client.fetch_page(None, 100)
    assert recorder.events == []


async def test_x_should_retry_false_overrides_the_status(
    client: ApiClient, recorder: Recorder
) -> None:
    """x-should-retry: false stops retries of a 503."""
    with aioresponses() as mock:
        mock.get(LIST_URL, status=503, headers={"x-should-retry": "false"}, payload=envelope("no"))
        with pytest.raises(ServerError):
            await client.fetch_page(None, 100)
    assert recorder.events == []


async def test_x_should_retry_true_overrides_the_status(
    client: ApiClient, recorder: Recorder
) -> None:
    """x-should-retry: true makes a 400 retryable."""
    with aioresponses() as mock:
        mock.get(LIST_URL, status=400, headers={"x-should-retry": "true"}, payload=envelope("hm"))
        mock.get(LIST_URL, payload=list_body([], False))
        await client.fetch_page(None, 100)
    assert len(recorder.events) == 1


async def test_retries_stop_after_max_attempts(client: ApiClient, recorder: Recorder) -> None:
    """After the attempt budget the last error is raised, saying how many attempts were made."""
    with aioresponses() as mock:
        mock.get(LIST_URL, status=502, payload=envelope("bad gateway"), repeat=True)
        with pytest.raises(ServerError, match="gave up after 4 attempts") as caught:
            await client.fetch_page(None, 100)
    assert len(recorder.events) == 3
    assert caught.value.attempts == 4
    # The API's own message stays as it came; the attempts are a field the text is built from.
    assert caught.value.args == (
        f"API error 502 (invalid_request_error): bad gateway [GET {BASE_URL}/batches?limit=100]",
    )


async def test_an_error_that_is_not_retried_says_nothing_of_attempts(
    client: ApiClient, recorder: Recorder
) -> None:
    """One attempt made, none mentioned."""
    with aioresponses() as mock:
        mock.get(LIST_URL, status=401, payload=envelope("bad key"))
        with pytest.raises(AuthenticationError) as caught:
            await client.fetch_page(None, 100)
    assert caught.value.attempts == 1
    assert "gave up" not in str(caught.value)


async def test_retries_stop_when_the_time_budget_would_be_exceeded(
    session: aiohttp.ClientSession, recorder: Recorder
) -> None:
    """A wait that would pass the total retry time is not taken."""
    policy = RetryPolicy(max_attempts=50, max_seconds=5, initial_backoff=0, max_backoff=0)
    client = ApiClient(session, BASE_URL, retry=policy, sleep=recorder.sleep)
    with aioresponses() as mock:
        mock.get(LIST_URL, status=429, headers={"retry-after": "10"}, payload=envelope("wait"))
        with pytest.raises(RateLimitedError):
            await client.fetch_page(None, 100)
    assert recorder.sleeps == []


@pytest.mark.parametrize(
    "exception",
    [aiohttp.ClientConnectionError("refused"), TimeoutError(), aiohttp.ClientPayloadError("cut")],
)
async def test_connection_failures_are_retried(
    client: ApiClient, recorder: Recorder, exception: Exception
) -> None:
    """Refused, reset, timed-out and truncated responses are retried."""
    with aioresponses() as mock:
        mock.get(LIST_URL, exception=exception)
        mock.get(LIST_URL, payload=list_body([], False))
        await client.fetch_page(None, 100)
    assert len(recorder.events) == 1
    assert isinstance(recorder.events[0].error, TransportError)


@pytest.mark.parametrize("body", ["{not json", '{"object": "list", "has_more": false}', "[]"])
async def test_broken_bodies_are_retried_then_reported(
    client: ApiClient, recorder: Recorder, body: str
) -> None:
    """A 200 that is not a valid list response is retried, then fails clearly."""
    with aioresponses() as mock:
        mock.get(LIST_URL, body=body, repeat=True)
        with pytest.raises(BrokenResponseError):
            await client.fetch_page(None, 100)
    assert len(recorder.events) == 3


async def test_an_html_page_answered_200_is_not_retried_and_hints_at_the_url(
    client: ApiClient, recorder: Recorder
) -> None:
    """A base URL pointing at a web site fails at once, suggesting to check it."""
    with aioresponses() as mock:
        mock.get(LIST_URL, body="<html>Welcome</html>", content_type="text/html")
        with pytest.raises(BrokenResponseError, match="is the base URL an OpenAI-compatible API"):
            await client.fetch_page(None, 100)
    assert recorder.events == []


@pytest.mark.parametrize(
    ("exception", "text"),
    [
        (TimeoutError(), "timed out"),
        (aiohttp.ClientPayloadError("Response payload is not completed\n  <x>"), "cut short"),
        (aiohttp.ServerDisconnectedError(), "closed the connection"),
        (aiohttp.ClientOSError(104, "Connection reset by peer\nmore"), "Connection reset by peer"),
    ],
)
async def test_transport_failures_are_described_on_one_line(
    session: aiohttp.ClientSession, exception: Exception, text: str
) -> None:
    """aiohttp's multi-line messages become one short line."""
    policy = RetryPolicy(max_attempts=1)
    client = ApiClient(session, BASE_URL, retry=policy)
    with aioresponses() as mock:
        mock.get(LIST_URL, exception=exception)
        with pytest.raises(TransportError, match=text) as caught:
            await client.fetch_page(None, 100)
    assert "\n" not in str(caught.value)


async def test_fetch_batch_returns_none_only_for_batch_not_found(client: ApiClient) -> None:
    """404 batch_not_found means gone; a 404 for another reason is an error, not 'gone'."""
    with aioresponses() as mock:
        mock.get(
            f"{BASE_URL}/batches/batch_a", status=404, payload=envelope("no", "batch_not_found")
        )
        mock.get(f"{BASE_URL}/batches/batch_b", status=404, payload=envelope("Invalid URL"))
        mock.get(f"{BASE_URL}/batches/batch_c", payload=make_batch(3, id="batch_c"))
        assert await client.fetch_batch("batch_a") is None
        with pytest.raises(NotFoundError, match="Invalid URL"):
            await client.fetch_batch("batch_b")
        batch = await client.fetch_batch("batch_c")
    assert batch is not None
    assert batch["id"] == "batch_c"


async def test_the_key_never_appears_in_an_error(client: ApiClient) -> None:
    """A server that echoes the key back does not get it into our message."""
    with aioresponses() as mock:
        mock.get(LIST_URL, status=401, payload=envelope(f"Incorrect API key provided: {API_KEY}"))
        with pytest.raises(AuthenticationError) as caught:
            await client.fetch_page(None, 100)
    assert API_KEY not in str(caught.value)
    assert "***" in str(caught.value)


def test_azure_style_envelope_is_understood() -> None:
    """Azure's slimmer envelope still gives its message and code."""
    error = build_api_error(
        404, b'{"error":{"code":"404","message":"Resource not found"}}', {}, "u"
    )
    assert isinstance(error, NotFoundError)
    assert "Resource not found" in str(error)


@pytest.mark.parametrize(
    ("param", "error_type"), [("after", UnknownCursorError), ("limit", BadRequestError)]
)
def test_a_400_on_the_cursor_has_a_type_of_its_own(param: str, error_type: type) -> None:
    """The API refusing `after` means the cursor's batch is gone; other 400s are plain."""
    body = {"error": {"message": "no", "type": "invalid_request_error", "param": param}}
    error = build_api_error(400, json.dumps(body).encode(), {}, "u")
    assert type(error) is error_type
    assert not error.retryable


def test_the_key_is_masked_when_the_error_is_built() -> None:
    """An echoed key never reaches the error's text, not even its args."""
    body = json.dumps(envelope(f"Incorrect API key provided: {API_KEY}")).encode()
    error = build_api_error(401, body, {}, "u", secret=API_KEY)
    assert API_KEY not in repr(error.args)
    assert "Incorrect API key provided: ***" in str(error)


@pytest.mark.parametrize("width", [10, 15])
def test_a_key_folded_over_lines_in_an_error_message_is_masked(width: int) -> None:
    """A message folding the key every 10 characters was put on one line (the breaks
    spaces) before masking: no line break left to unfold at, the key was shown whole."""
    key = "sk-proj-Q7wLmN3pXz8RtY2vBc5KjH9fDs4GaE6uWo1Ii0Pq"
    folded = "\n".join(key[i : i + width] for i in range(0, len(key), width))
    body = json.dumps(envelope(f"Incorrect API key provided: {folded}.")).encode()
    error = build_api_error(401, body, {}, "u", secret=key)
    shown = str(error).replace(" ", "")
    assert key[8:24] not in shown
    assert key[-16:] not in shown


@pytest.mark.parametrize("every", [1, 8])
@pytest.mark.parametrize(
    "between", ["\u200b", "\u00ad", "\u2060", "\ufe0f", "\U000e0020", "\x0b", "\x85", "\u3000"]
)
def test_a_key_spelled_with_characters_between_its_pieces_is_masked(
    between: str, every: int
) -> None:
    """A zero-width space, a soft hyphen, a word joiner, a variation selector, a tag, a
    vertical tab, a next line or a wide space between each piece of the key: it read whole
    on a terminal (or with spaces, once the message was put on one line), and the search
    for it found none of its runs."""
    key = "sk-proj-Q7wLmN3pXz8RtY2vBc5KjH9fDs4GaE6uWo1Ii0Pq"
    spread = between.join(key[i : i + every] for i in range(0, len(key), every))
    body = json.dumps(envelope(f"Incorrect API key provided: {spread}")).encode()
    error = build_api_error(401, body, {}, "u", secret=key)
    shown = "".join(char for char in str(error) if char.isascii() and char.isprintable())
    assert key[8:24] not in shown.replace(" ", "")
    assert "***" in shown


def test_an_error_code_of_a_list_of_the_keys_pieces_is_masked() -> None:
    """A code that is a list was said as Python spells it, `', '` between the pieces."""
    key = "sk-proj-Q7wLmN3pXz8RtY2vBc5KjH9fDs4GaE6uWo1Ii0Pq"
    pieces = [key[i : i + 8] for i in range(0, len(key), 8)]
    body = json.dumps({"error": {"message": "denied", "code": pieces}}).encode()
    error = build_api_error(401, body, {}, "u", secret=key)
    assert not any(piece in str(error) for piece in pieces[1:-1])


def test_a_proxy_refusing_its_credentials_is_said_so() -> None:
    """It read `API error 407: HTTP 407`, nothing saying the proxy refused; then, with no
    proxy set (one on the way answering), to check a user and password nowhere given."""
    error = build_api_error(407, b"<html>denied</html>", {}, "http://h/v1/batches")
    assert "a proxy asks for a user and password: give them, or check them, in HTTPS_PROXY" in (
        str(error)
    )


def test_html_error_body_gives_the_status() -> None:
    """A proxy's HTML page gives a message with the status, not the HTML."""
    error = build_api_error(502, b"<html><body>Bad Gateway</body></html>", {}, "u")
    assert str(error).startswith("API error 502: HTTP 502")
    assert error.retryable


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "120"}, 0.12),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "Thu, 01 Jan 2026 00:00:10 GMT"}, 10.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    """Milliseconds first, then seconds or an HTTP date."""
    assert parse_retry_after(headers, now=1_767_225_600) == seconds


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [(1, 0.0, 0.5), (2, 0.0, 1.0), (3, 1.0, 1.5), (10, 0.0, 8.0), (10, 1.0, 6.0)],
)
def test_backoff_doubles_up_to_the_cap_with_jitter(
    attempt: int, jitter: float, expected: float
) -> None:
    """min(0.5 * 2^(n-1), 8) s, shortened by up to a quarter by jitter."""
    assert RetryPolicy().wait_seconds(None, attempt, jitter) == expected


def test_settings_repr_hides_the_key() -> None:
    """The key is left out of the settings' repr."""
    assert API_KEY not in repr(Settings(api_key=API_KEY))


# Timeouts, encodings and sizes: said plainly, and not retried when asking again cannot help.


@pytest.mark.parametrize(
    ("exception", "text"),
    [
        (aiohttp.SocketTimeoutError(), "timed out, silent for 30 s"),
        (aiohttp.ConnectionTimeoutError(), "connect timed out after 10 s"),
        (TimeoutError(), "timed out after 60 s"),
    ],
    ids=["silence", "connect", "whole request"],
)
def test_a_timeout_names_the_limit_that_ran_out(exception: Exception, text: str) -> None:
    """Each timeout says which of the session's limits ran out, and its value."""
    timeout = aiohttp.ClientTimeout(total=60, sock_read=30, sock_connect=10)
    assert describe(exception, timeout) == text


def test_a_connection_the_proxy_closed_says_so() -> None:
    """A proxy closing the TLS handshake of an https:// proxy read "cannot connect to
    127.0.0.1:3129 ()": the error had no words, and the host was not said to be the
    proxy's (pass 65A)."""
    key = SimpleNamespace(host="127.0.0.1", port=3129, ssl=True)
    error = aiohttp.ClientProxyConnectionError(key, ConnectionResetError())  # type: ignore[arg-type]
    assert describe(error) == (
        "cannot connect to the proxy at 127.0.0.1:3129 (ConnectionResetError)"
    )


def test_a_proxy_at_an_ipv6_address_is_named_in_brackets() -> None:
    key = SimpleNamespace(host="::1", port=9, ssl=False)
    refused = ConnectionRefusedError(111, "refused")
    error = aiohttp.ClientProxyConnectionError(key, refused)  # type: ignore[arg-type]
    assert describe(error) == "cannot connect to the proxy at [::1]:9 (refused)"


def test_the_default_timeouts_suit_a_list_page() -> None:
    """An attempt gets 60 s, 30 s of silence and 10 s to connect: a page is tens of KB."""
    settings = Settings()
    assert (settings.request_timeout, settings.read_timeout, settings.connect_timeout) == (
        60.0,
        30.0,
        10.0,
    )


async def test_the_session_applies_the_three_timeouts() -> None:
    """request_timeout bounds an attempt, read_timeout any silence, connect_timeout connecting."""
    settings = Settings(api_key=API_KEY, request_timeout=61, read_timeout=31, connect_timeout=11)
    async with create_session(settings) as session:
        assert session.timeout == aiohttp.ClientTimeout(total=61, sock_read=31, sock_connect=11)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status": 503, "body": "busy"}, "HTTP 503"),
        ({"status": 429, "body": "slow down"}, "rate limited (HTTP 429)"),
        ({"exception": TimeoutError()}, "timed out after 300 s"),
        ({"body": "{not json"}, "an unusable response"),
    ],
    ids=["5xx", "429", "timeout", "broken"],
)
async def test_a_retry_event_says_why_in_a_few_words(
    client: ApiClient, recorder: Recorder, answer: dict[str, Any], reason: str
) -> None:
    """What a progress line shows: the reason, the attempt that failed and how many there may be."""
    with aioresponses() as mock:
        mock.get(LIST_URL, **answer)
        mock.get(LIST_URL, payload=list_body([], False))
        await client.fetch_page(None, 100)
    ((event),) = recorder.events
    assert (event.reason, event.attempt, event.max_attempts) == (reason, 1, 4)


def aiohttp_refusal(message: str) -> aiohttp.ClientResponseError:
    """The error aiohttp raises on a response it cannot take, with the request it answered."""
    url = URL(f"{BASE_URL}/batches")
    headers = CIMultiDictProxy(CIMultiDict({"Accept-Encoding": "gzip, deflate"}))
    return aiohttp.ClientResponseError(
        aiohttp.RequestInfo(url, "GET", headers, url), (), status=400, message=message
    )


async def test_a_malformed_response_is_still_retried(client: ApiClient, recorder: Recorder) -> None:
    """Garbled HTTP may be a proxy's hiccup: it is asked for again, unlike an encoding."""
    with aioresponses() as mock:
        mock.get(LIST_URL, exception=aiohttp_refusal("Invalid HTTP status line"))
        mock.get(LIST_URL, payload=list_body([], False))
        await client.fetch_page(None, 100)
    assert [e.reason for e in recorder.events] == ["the server sent a malformed HTTP response"]


async def test_an_encoding_never_asked_for_is_refused_at_once(
    client: ApiClient, recorder: Recorder
) -> None:
    """An encoding batch-crawler does not decode would reach the parser raw: refused at once."""
    with aioresponses() as mock:
        mock.get(LIST_URL, body=b"\x1f\x00", headers={"Content-Encoding": "x-custom"})
        with pytest.raises(TransportError, match="a body encoded as x-custom, which batch-crawler"):
            await client.fetch_page(None, 100)
    assert recorder.events == []


async def test_a_declared_length_over_the_cap_is_refused_unread(
    client: ApiClient, recorder: Recorder
) -> None:
    """A Content-Length past the cap fails at once, before a byte of the body is read (for
    pages of fewer batches, down to one, then not asked again)."""
    asked: list[str] = []
    with aioresponses() as mock:
        mock.get(
            re.compile(r".*/batches\?limit=\d+$"),
            body=b"{}",
            headers={"Content-Length": str(MAX_BATCH_BYTES + 1)},
            callback=lambda url, **_: asked.append(url.query["limit"]),
            repeat=True,
        )
        with pytest.raises(BrokenResponseError, match="is larger than 64 MiB"):
            await client.fetch_page(None, 100)
    assert recorder.events == []
    assert asked == ["100", "50", "25", "12", "6", "3", "1"]


async def test_an_error_body_over_the_cap_leaves_the_status_to_speak(
    client: ApiClient, recorder: Recorder
) -> None:
    """An error answer too large to read is its status, retried as such: "HTTP 503"."""
    with aioresponses() as mock:
        mock.get(
            LIST_URL,
            status=503,
            payload=envelope("not read"),
            headers={"Content-Length": str(MAX_BODY_BYTES + 1)},
        )
        mock.get(LIST_URL, payload=list_body([], False))
        await client.fetch_page(None, 100)
    assert str(recorder.events[0].error).startswith("API error 503: HTTP 503 [GET ")
