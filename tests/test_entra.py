"""Azure OpenAI with Microsoft Entra ID tokens: asked for once, renewed before they expire,
sent as a bearer on every request; azure-identity itself is an optional extra, so a stub
credential stands in for DefaultAzureCredential here."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crawler import entra, sync
from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.entra import DATED_API_SCOPE, REFRESH_MARGIN, V1_API_SCOPE, EntraTokens
from crawler.errors import AuthenticationError, ConfigError
from crawler.fake import FakeApiOptions, FakeApiServer

from .exact import assert_database_matches

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
            raise RuntimeError("DefaultAzureCredential failed to retrieve a token.\nAttempted: ...")
        return AccessToken(self.token, int(self.now + self.lifetime))

    async def close(self) -> None:
        self.closed = True


async def test_a_token_is_asked_for_once_and_again_before_it_expires() -> None:
    """One token until five minutes before it expires, then a new one."""
    credential = StubCredential()
    tokens = EntraTokens(credential, V1_API_SCOPE, clock=lambda: credential.now)
    assert await tokens.headers() == {"Authorization": f"Bearer {TOKEN}"}
    credential.now += 3600 - REFRESH_MARGIN - 1  # still valid for the margin and a second
    await tokens.headers()
    assert len(credential.scopes) == 1
    credential.now += 2
    await tokens.headers()
    assert credential.scopes == [(V1_API_SCOPE,), (V1_API_SCOPE,)]


async def test_no_token_is_an_authentication_error_in_one_line() -> None:
    """azure-identity's many-line explanation becomes its first line."""
    tokens = EntraTokens(StubCredential(fails=True), V1_API_SCOPE)
    with pytest.raises(AuthenticationError) as caught:
        await tokens.headers()
    assert str(caught.value) == (
        "no Entra ID token: DefaultAzureCredential failed to retrieve a token."
    )


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


def test_entra_is_for_azure_and_needs_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """auth entra elsewhere is refused; without azure-identity, the message says what to install."""
    with pytest.raises(ConfigError, match='"entra" is only for provider = "azure"'):
        Settings(auth="entra")
    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)  # not installed
    with pytest.raises(ConfigError, match=r'pip install "batch-crawler\[azure\]"'):
        entra.default_credential()
