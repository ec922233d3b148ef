"""Azure OpenAI with Microsoft Entra ID tokens: asked for once, renewed before they expire,
sent as a bearer on every request; azure-identity itself is an optional extra, so a stub
credential stands in for DefaultAzureCredential here."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from crawler import entra, iter_batches, sync, sync_accounts
from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.entra import (
    DATED_API_SCOPE,
    REFRESH_MARGIN,
    RENEWAL_RETRY,
    V1_API_SCOPE,
    EntraTokens,
)
from crawler.errors import EXIT_TRANSIENT, AuthenticationError, ConfigError
from crawler.events import Event
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.redact import holds_secret

from .conftest import list_body, make_batch, serving
from .exact import assert_database_matches
from .waits import HANG_GUARD

TOKEN = "entra-token-" + "x" * 40
FAST = RetryPolicy(max_attempts=3, max_seconds=10, initial_backoff=0, max_backoff=0)


@dataclass
class AccessToken:
    token: str
    expires_on: int


@dataclass
class StubCredential:
    """Hands out `token` valid for `lifetime` seconds from `now()`; records each ask."""

    token: str = TOKEN
    lifetime: float = 3600.0
    now: float = 1_000_000.0
    scopes: list[tuple[str, ...]] = field(default_factory=list)
    closed: bool = False
    fails: bool = False

    async def get_token(self, *scopes: str) -> AccessToken:
        self.scopes.append(scopes)
        if self.fails:
            raise RuntimeError(
                "DefaultAzureCredential failed to retrieve a token.\n"
                "Attempted:\n\tAzureCliCredential: Please run 'az login' to set up an account"
            )
        return AccessToken(self.token, int(self.now + self.lifetime))

    async def close(self) -> None:
        self.closed = True


async def test_a_token_is_asked_for_once_and_again_before_it_expires() -> None:
    """One token until five minutes before it expires, then a new one."""
    credential = StubCredential()
    tokens = EntraTokens(credential, V1_API_SCOPE, timeout=60, clock=lambda: credential.now)
    assert await tokens.headers() == {"Authorization": f"Bearer {TOKEN}"}
    credential.now += 3600 - REFRESH_MARGIN - 1  # still valid for the margin and a second
    await tokens.headers()
    assert len(credential.scopes) == 1
    credential.now += 2
    await tokens.headers()
    assert credential.scopes == [(V1_API_SCOPE,), (V1_API_SCOPE,)]


async def test_no_token_is_an_authentication_error_in_one_line() -> None:
    """azure-identity's many-line explanation, on one line: its first line alone is the
    same whatever went wrong; the credentials it tried say what to fix."""
    tokens = EntraTokens(StubCredential(fails=True), V1_API_SCOPE, timeout=60)
    with pytest.raises(AuthenticationError) as caught:
        await tokens.headers()
    assert str(caught.value) == (
        "no Entra ID token: DefaultAzureCredential failed to retrieve a token. "
        "Attempted: AzureCliCredential: Please run 'az login' to set up an account"
    )
    assert not caught.value.retryable


@pytest.mark.parametrize("token", ["", f"{TOKEN}\r\nX-Injected: 1", "tökén"])
async def test_a_token_that_is_no_header_value_is_refused_unseen(token: str) -> None:
    """A line end in a token was aiohttp's ValueError traceback."""
    tokens = EntraTokens(StubCredential(token=token), V1_API_SCOPE, timeout=60)
    with pytest.raises(AuthenticationError) as caught:
        await tokens.headers()
    assert str(caught.value) == "no Entra ID token: the credential gave no header value"


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionResetError("Connection reset by peer"),
        TimeoutError("the IMDS endpoint timed out"),
        type("ServiceRequestError", (Exception,), {})("Failed to establish a new connection"),
    ],
    ids=["reset", "timed out", "azure-core's network error"],
)
async def test_a_network_failure_on_the_way_to_a_token_is_retryable(failure: Exception) -> None:
    """It read as a refusal (exit 1, "config_error"): an orchestrator did not run again
    what an identity endpoint's blip had failed."""

    class Unreachable(StubCredential):
        async def get_token(self, *scopes: str) -> AccessToken:
            raise failure

    tokens = EntraTokens(Unreachable(), V1_API_SCOPE, timeout=60)
    with pytest.raises(AuthenticationError) as caught:
        await tokens.headers()
    assert caught.value.retryable
    assert caught.value.exit_code == EXIT_TRANSIENT
    assert str(caught.value) == f"no Entra ID token: {failure}"


@pytest.mark.parametrize(
    "expires_on",
    [None, "soon", "nan", float("inf"), 10**400],
    ids=["None", "soon", "nan", "inf", "10**400"],
)
async def test_an_expiry_that_is_no_time_is_refused_in_one_line(expires_on: object) -> None:
    """It was a TypeError or ValueError traceback; NaN was taken, and a token asked for at
    each request, each dropped from those masked as the next came."""

    class Odd(StubCredential):
        async def get_token(self, *scopes: str) -> AccessToken:
            return AccessToken(TOKEN, expires_on)  # type: ignore[arg-type]

    tokens = EntraTokens(Odd(), V1_API_SCOPE, timeout=60)
    with pytest.raises(AuthenticationError, match="the credential gave an expiry that is no time"):
        await tokens.headers()


async def test_a_renewal_failing_slowly_is_not_tried_again_by_the_next_request() -> None:
    """A renewal failing after 40 s (a request's timeout) was asked again at once by every
    request, each waiting as long, until the token in hand expired."""

    class SlowToFail(StubCredential):
        async def get_token(self, *scopes: str) -> AccessToken:
            if not self.fails:
                return await super().get_token(*scopes)
            self.now += 40
            raise RuntimeError("ManagedIdentityCredential: no response from the IMDS endpoint")

    credential = SlowToFail()
    tokens = EntraTokens(credential, V1_API_SCOPE, timeout=60, clock=lambda: credential.now)
    await tokens.headers()
    credential.now += 3600 - REFRESH_MARGIN + 1  # due for renewal
    credential.fails = True
    await tokens.headers()
    before = credential.now
    await tokens.headers()
    assert credential.now == before  # not asked again


@pytest.mark.parametrize(
    "lifetime",
    [REFRESH_MARGIN - 60, -5, REFRESH_MARGIN + 0.3],
    ids=["close to its end", "past it", "just over the margin"],
)
async def test_tokens_close_to_their_end_are_asked_for_every_renewal_retry_at_most(
    lifetime: float,
) -> None:
    """A credential handing out a new token with less than REFRESH_MARGIN left was asked on
    every request: each token masked to its end made every page's masking slower. So with
    tokens past their end when handed out (a clock off): a sync of 400 files took 277 s
    and 1.9 GB, masking with hundreds of 2,500-character tokens at once; and with tokens
    just over the margin (48 a minute, pages 8 times slower)."""
    now = [1_000_000.0]
    credential = MintingCredential(now=lambda: now[0], lifetime=lifetime)
    tokens = EntraTokens(credential, V1_API_SCOPE, timeout=60, clock=lambda: now[0])
    for _ in range(5):
        await tokens.headers()
        now[0] += 1
    assert len(credential.minted) == 1
    now[0] += RENEWAL_RETRY
    await tokens.headers()
    assert len(credential.minted) == 2


async def test_a_credential_that_never_answers_is_a_retryable_error() -> None:
    """A token that never came held the sync for good, past every HTTP timeout."""
    never = asyncio.Event()

    class Silent(StubCredential):
        async def get_token(self, *scopes: str) -> AccessToken:
            await never.wait()
            raise AssertionError("never answered")

    tokens = EntraTokens(Silent(), V1_API_SCOPE, timeout=0.01)
    with pytest.raises(AuthenticationError, match=r"the credential did not answer in 0\.01 s"):
        await tokens.headers()
    with pytest.raises(AuthenticationError) as caught:
        await tokens.headers()
    assert caught.value.retryable


async def test_a_renewal_failing_keeps_the_token_in_hand_until_it_expires() -> None:
    """A renewal failing (a managed identity endpoint not answering for a while) failed the
    run at once, though the token in hand had minutes left: it is used until it expires,
    the renewal tried again every RENEWAL_RETRY seconds meanwhile."""
    credential = StubCredential()
    tokens = EntraTokens(credential, V1_API_SCOPE, timeout=60, clock=lambda: credential.now)
    await tokens.headers()
    credential.now += 3600 - REFRESH_MARGIN + 1  # due for renewal
    credential.fails = True
    for _ in range(3):  # one failed renewal, then none until RENEWAL_RETRY has passed
        assert await tokens.headers() == {"Authorization": f"Bearer {TOKEN}"}
    assert len(credential.scopes) == 2
    credential.now += RENEWAL_RETRY
    await tokens.headers()
    assert len(credential.scopes) == 3
    credential.now += REFRESH_MARGIN  # expired
    with pytest.raises(AuthenticationError):
        await tokens.headers()


@pytest.mark.parametrize(
    ("flavor", "version", "scope"),
    [("azure", "2024-10-21", DATED_API_SCOPE), ("azure-v1", None, V1_API_SCOPE)],
)
async def test_a_sync_with_entra_tokens_is_exact_and_closes_its_credential(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, flavor: str, version: str | None, scope: str
) -> None:
    """Both API styles with a bearer token of the right scope; the credential is closed after."""
    credential = StubCredential()
    monkeypatch.setattr(entra, "default_credential", lambda: credential)
    # The fake takes its key as the only valid bearer token.
    async with FakeApiServer(FakeApiOptions(batches=230, api_key=TOKEN, flavor=flavor)) as server:
        settings = Settings(
            db=db_path,
            provider="azure",
            azure_endpoint=server.root_url,
            api_version=version,
            auth="entra",
        )
        result = await sync(settings, retry=FAST)
        assert_database_matches(db_path, server.served())
    assert result.complete
    assert set(credential.scopes) == {(scope,)}
    assert credential.closed


async def test_a_retry_after_a_credential_failure_says_no_token_was_had(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It read "an unusable response", though no request had been sent."""
    credential = StubCredential()
    answers = iter([OSError("connection reset by the identity endpoint")])

    async def once_reset(*scopes: str) -> AccessToken:
        failure = next(answers, None)
        if failure is not None:
            raise failure
        return await StubCredential.get_token(credential, *scopes)

    credential.get_token = once_reset  # type: ignore[method-assign]
    monkeypatch.setattr(entra, "default_credential", lambda: credential)
    events: list[Event] = []
    async with FakeApiServer(FakeApiOptions(batches=5, api_key=TOKEN, flavor="azure-v1")) as server:
        settings = Settings(
            db=db_path, provider="azure", azure_endpoint=server.root_url, auth="entra"
        )
        result = await sync(settings, retry=FAST, on_event=events.append)
    assert result.complete
    assert [e.fields["reason"] for e in events if e.name == "retry"] == ["no Entra ID token"]


def test_entra_is_for_azure_and_needs_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """auth entra elsewhere is refused; without azure-identity, the message says what to install."""
    with pytest.raises(ConfigError, match='"entra" is only for provider = "azure"'):
        Settings(auth="entra")
    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)  # not installed
    with pytest.raises(ConfigError, match=r'pip install "batch-crawler\[azure\]"'):
        entra.default_credential()


async def test_a_credential_refusing_its_settings_fails_its_account_alone_in_one_line(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DefaultAzureCredential() refusing a setting it reads from the environment was a
    traceback that stopped every account of the run, the key account too."""

    class Refusing:
        def __init__(self) -> None:
            raise ValueError("Invalid value for AZURE_TOKEN_CREDENTIALS: laptop.\nValid: ...")

    identity = types.ModuleType("azure.identity.aio")
    identity.DefaultAzureCredential = Refusing  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.identity.aio", identity)
    async with FakeApiServer(FakeApiOptions(batches=30, api_key="k")) as server:
        with_key = Settings(db=db_path, account="key", base_url=server.base_url, api_key="k")
        with_entra = Settings(
            db=db_path,
            account="entra",
            provider="azure",
            azure_endpoint=server.root_url,
            auth="entra",
        )
        keyed, refused = await sync_accounts([with_key, with_entra], retry=FAST)
    assert keyed.result is not None
    assert keyed.result.complete
    assert isinstance(refused.error, ConfigError)
    assert str(refused.error) == (
        'auth = "entra": Invalid value for AZURE_TOKEN_CREDENTIALS: laptop. Valid: ...'
    )


@pytest.mark.parametrize("fault", ["raises", "never ends", "cancelled"])
async def test_a_credential_failing_to_close_does_not_fail_the_sync(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    """The run's work is done when the credential is closed: a failure then is logged, its
    words masked (they quoted the token, valid still), and a close that never ends is left
    after CLOSE_TIMEOUT (the run, complete, hung; then it held a signal for a request's
    timeout, up to an hour); one cancelled on its own (not the run) ended a complete run
    in a traceback."""
    never = asyncio.Event()

    class Unclosable(StubCredential):
        async def close(self) -> None:
            if fault == "never ends":
                await never.wait()
            if fault == "cancelled":  # a task of its own cancelled, not the run
                raise asyncio.CancelledError
            raise RuntimeError(f"transport already closed for {TOKEN}")

    monkeypatch.setattr(entra, "default_credential", Unclosable)
    monkeypatch.setattr(entra, "CLOSE_TIMEOUT", 0.5)
    async with FakeApiServer(
        FakeApiOptions(batches=30, api_key=TOKEN, flavor="azure-v1")
    ) as server:
        settings = Settings(
            db=db_path,
            provider="azure",
            azure_endpoint=server.root_url,
            auth="entra",
            request_timeout=600,
        )
        result = await sync(settings, retry=FAST)
    assert result.complete
    said = {
        "raises": "closing the Entra ID credential failed: transport already closed for ***",
        "never ends": "closing the Entra ID credential did not end in 0.5 s: left",
        "cancelled": "closing the Entra ID credential failed: it was cancelled",
    }
    assert said[fault] in caplog.text


def jwt_like(n: int) -> str:
    """A token shaped as Entra ID's are: a JWT of about 1,400 characters, the same header
    as every other, a payload and signature of its own."""
    header = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"RS256","kid":"k1"}').rstrip(b"=")
    claims = json.dumps({"aud": V1_API_SCOPE, "oid": n, "pad": os.urandom(500).hex()})
    payload = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=")
    signature = base64.urlsafe_b64encode(os.urandom(256)).rstrip(b"=")
    return b".".join([header, payload, signature]).decode()


@dataclass
class MintingCredential:
    """A new token on each ask, valid for `lifetime` seconds from `now()`."""

    now: Callable[[], float] = time.time
    lifetime: float = 3600.0
    minted: list[str] = field(default_factory=list)

    async def get_token(self, *scopes: str) -> AccessToken:
        self.minted.append(jwt_like(len(self.minted)))
        return AccessToken(self.minted[-1], int(self.now() + self.lifetime))

    async def close(self) -> None:
        pass


async def test_every_token_a_server_echoes_is_masked_as_a_key_is(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server echoing each request's bearer token into an error body, a page's fields
    and cursor, and a file's lines: none of the tokens renewed over the run is shown,
    logged, told (by a sync or the list stream) or stored, and a refusal quoting one says
    it masked."""
    credential = MintingCredential()
    monkeypatch.setattr(entra, "default_credential", lambda: credential)
    monkeypatch.setattr(entra, "REFRESH_MARGIN", 2 * credential.lifetime)  # renewed each time
    monkeypatch.setattr(entra, "RENEWAL_RETRY", 0)
    asked: list[str] = []
    refuse = False

    async def echo(request: web.Request) -> web.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        asked.append(request.path)
        if refuse:
            return web.json_response({"error": {"message": f"bad token {token}"}}, status=401)
        if len(asked) == 1:
            return web.json_response({"error": {"message": f"busy with {token}"}}, status=500)
        if request.path.endswith("/content"):
            line = {"custom_id": "r1", "response": None, "error": {"message": f"got {token}"}}
            return web.Response(text=json.dumps(line) + "\n")
        batch = make_batch(
            1,
            status="failed",
            model=token,
            metadata={"note": f"called with {token}"},
            error_file_id="file-err-1",
            output_file_id=None,
            errors={"object": "list", "data": [{"code": "bad", "message": token}]},
        )
        page = list_body([batch], False)
        page["last_id"] = f"last-{token}"
        return web.json_response(page)

    events: list[Event] = []
    async with serving({"/{path:.*}": echo}) as root:
        settings = Settings(db=db_path, provider="azure", azure_endpoint=root, auth="entra")
        result = await sync(settings, retry=FAST, on_event=events.append)
        asked.clear()
        assert [
            b["id"] async for b in iter_batches(settings, on_event=events.append, retry=FAST)
        ] == [make_batch(1)["id"]]
        refuse = True
        with pytest.raises(AuthenticationError) as refused:
            await sync(settings, retry=FAST, on_event=events.append)
    assert (result.complete, result.request_lines, result.retries) == (True, 1, 1)
    assert len(credential.minted) >= 4  # a token renewed for each request
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        dump = "\n".join(conn.iterdump())
    told = json.dumps([(e.name, e.fields) for e in events])
    shown = [dump, told, "\n".join(result.warnings), str(refused.value), caplog.text]
    for token in credential.minted:
        assert not any(holds_secret(text, token) or token[-40:] in text for text in shown)
    assert [e.name for e in events].count("retry") == 2
    assert "***" in str(refused.value)
    assert "called with ***" in dump


async def test_a_renewal_failing_in_words_quoting_the_token_in_hand_logs_it_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The token in hand, valid still, was logged as the credential's error quoted it."""
    credential = StubCredential()
    tokens = EntraTokens(credential, V1_API_SCOPE, timeout=60, clock=lambda: credential.now)
    await tokens.headers()
    credential.now += 3600 - REFRESH_MARGIN + 1

    async def refusing(*scopes: str) -> AccessToken:
        raise ConnectionResetError(f"reset while renewing {TOKEN}")

    credential.get_token = refusing  # type: ignore[method-assign]
    await tokens.headers()
    assert "reset while renewing ***; the token in hand is used" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("answer", [None, ("a token", 1)], ids=["None", "a tuple"])
async def test_a_credential_answering_no_access_token_is_refused_in_one_line(
    answer: object,
) -> None:
    """It was an AttributeError traceback."""

    class Odd(StubCredential):
        async def get_token(self, *scopes: str) -> AccessToken:
            return answer  # type: ignore[return-value]

    tokens = EntraTokens(Odd(), V1_API_SCOPE, timeout=60)
    with pytest.raises(AuthenticationError, match="the credential gave no header value"):
        await tokens.headers()


async def test_a_credential_cancelled_on_its_own_is_a_retryable_error() -> None:
    """Its CancelledError ended the walk's task as if the run were stopped, and the run
    waited for good on its writer."""

    class Cancelled(StubCredential):
        async def get_token(self, *scopes: str) -> AccessToken:
            raise asyncio.CancelledError

    tokens = EntraTokens(Cancelled(), V1_API_SCOPE, timeout=60)
    with pytest.raises(AuthenticationError, match="the credential's request was cancelled"):
        await tokens.headers()


async def test_a_close_failing_in_words_quoting_another_accounts_key_logs_it_masked(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The Entra ID account's warnings masked its own tokens alone."""
    other_key = "1gngas4fwkw33r5adc5yalheozq28czrnfhqtvlq"  # no key's shape

    class Unclosable(StubCredential):
        async def close(self) -> None:
            raise RuntimeError(f"close failed for key {other_key} and token {TOKEN}")

    monkeypatch.setattr(entra, "default_credential", Unclosable)
    async with FakeApiServer(FakeApiOptions(batches=5, api_key=TOKEN, flavor="azure-v1")) as server:
        entra_account = Settings(
            db=db_path, account="e", provider="azure", azure_endpoint=server.root_url, auth="entra"
        )
        key_account = Settings(
            db=db_path, account="k", base_url="http://127.0.0.1:9/v1", api_key=other_key
        )
        await sync_accounts([entra_account, key_account], retry=FAST)
    assert "close failed for key *** and token ***" in caplog.text
    assert other_key not in caplog.text


async def test_a_token_expired_when_handed_out_is_masked_all_the_same() -> None:
    """Tokens already past their expiry (a clock off) are sent, and each was dropped from
    those masked as the next came, its request still in flight."""
    now = [1_000_000.0]
    credential = MintingCredential(now=lambda: now[0], lifetime=-5)
    tokens = EntraTokens(credential, V1_API_SCOPE, timeout=60, clock=lambda: now[0])
    await tokens.headers()
    now[0] += RENEWAL_RETRY
    await tokens.headers()
    assert tokens.sent == credential.minted
    assert len(credential.minted) == 2


async def test_every_token_not_expired_is_masked() -> None:
    """A renewed token joins the tokens masked; those before it stay until they expire (a
    request sent with one may be answered after the renewal, even two after, where the
    credential hands out tokens close to their end)."""
    now = [1_000_000.0]
    credential = MintingCredential(now=lambda: now[0], lifetime=REFRESH_MARGIN + 60)
    tokens = EntraTokens(credential, V1_API_SCOPE, timeout=60, clock=lambda: now[0])
    masked = tokens.sent  # what a run reads at each use
    for _ in range(3):
        await tokens.headers()
        now[0] += 61  # each token has less than the margin left: renewed at the next ask
    assert masked == credential.minted
    now[0] += 200  # past the first one's end (REFRESH_MARGIN + 60 after it was minted)
    await tokens.headers()
    assert masked == credential.minted[1:]


async def test_a_token_close_to_its_end_is_not_sent_past_it() -> None:
    """Reused for RENEWAL_RETRY as its end came: sent expired, and the server's 401 failed
    the run (exit 1)."""
    now = [1_000_000.0]
    credential = MintingCredential(now=lambda: now[0], lifetime=10)
    tokens = EntraTokens(credential, V1_API_SCOPE, timeout=60, clock=lambda: now[0])
    await tokens.headers()
    now[0] += 11  # past its end, within RENEWAL_RETRY
    assert await tokens.headers() == {"Authorization": f"Bearer {credential.minted[1]}"}


async def test_a_token_sent_again_is_masked_for_request_timeout_after_each_send() -> None:
    """A token past its end when handed out is sent for RENEWAL_RETRY, but was masked only
    request_timeout after it was handed out: an answer to a late request stored it whole."""
    now = [1_000_000.0]
    credential = MintingCredential(now=lambda: now[0], lifetime=-5)
    tokens = EntraTokens(credential, V1_API_SCOPE, timeout=20, clock=lambda: now[0])
    await tokens.headers()
    now[0] += 25
    await tokens.headers()  # the same token, its answer due by 20 s later
    now[0] += RENEWAL_RETRY - 25
    await tokens.headers()
    assert tokens.sent == credential.minted
    assert len(credential.minted) == 2


STUB_IDENTITY = """
import time
from dataclasses import dataclass


@dataclass
class AccessToken:
    token: str
    expires_on: int


class DefaultAzureCredential:
    async def get_token(self, *scopes):
        return AccessToken({token!r}, int(time.time()) + 3600)

    async def close(self):
        raise RuntimeError("transport already closed")
"""


async def test_a_json_log_without_v_tells_the_credentials_warnings(tmp_path: Path) -> None:
    """A JSON log left out every warning below an error without -v, the credential's with
    them (a renewal failing, a close failing): a pipeline heard of them only when the run
    failed. Text lines showed them."""
    identity = tmp_path / "stub" / "azure" / "identity"
    identity.mkdir(parents=True)
    (identity / "aio.py").write_text(STUB_IDENTITY.format(token=TOKEN))
    options = FakeApiOptions(batches=5, api_key=TOKEN, flavor="azure-v1")
    async with FakeApiServer(options) as server:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "crawler", "sync", "--log-format", "json"),
            *("--db", str(tmp_path / "b.db"), "--provider", "azure", "--auth", "entra"),
            *("--azure-endpoint", server.root_url),
            env={**os.environ, "PYTHONPATH": str(tmp_path / "stub")},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), timeout=HANG_GUARD)
    assert proc.returncode == 0, err
    told = [json.loads(line) for line in err.decode().splitlines()]
    assert {
        "level": "warning",
        "event": "log",
        "logger": "crawler.entra",
        "message": "closing the Entra ID credential failed: transport already closed",
    } in [{k: e.get(k) for k in ("level", "event", "logger", "message")} for e in told]


async def test_a_token_is_masked_while_a_request_sent_with_it_runs() -> None:
    """A download streams for as long as it takes: a token handed out past its end was
    masked only request_timeout after its last send, and a line echoing it at the end of
    a long download (renewals meanwhile) was stored whole."""
    now = [1_000_000.0]
    credential = MintingCredential(now=lambda: now[0], lifetime=-5)
    tokens = EntraTokens(credential, V1_API_SCOPE, timeout=20, clock=lambda: now[0])
    async with tokens.sending() as headers:
        assert headers == {"Authorization": f"Bearer {credential.minted[0]}"}
        for _ in range(4):  # the other requests' renewals, while the download runs
            now[0] += RENEWAL_RETRY
            await tokens.headers()
        assert credential.minted[0] in tokens.sent
    now[0] += 19  # its answer may still come
    assert credential.minted[0] in tokens.sent
    now[0] += RENEWAL_RETRY
    await tokens.headers()
    assert credential.minted[0] not in tokens.sent
