"""Microsoft Entra ID tokens for Azure OpenAI, instead of a key (`auth = "entra"`).

azure-identity's DefaultAzureCredential finds the identity (environment, workload or managed
identity, the Azure CLI's login...), as Azure's own tools do; it is an optional extra,
`pip install "batch-crawler[azure]"`. A token is asked for once and again a few minutes
before it expires, so that a sync of any length never sends an expired one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from .config import Settings
from .errors import AuthenticationError, ConfigError
from .redact import Secret

# The scope of a token, by API: the dated API is Cognitive Services', the v1 API Azure AI's.
DATED_API_SCOPE = "https://cognitiveservices.azure.com/.default"
V1_API_SCOPE = "https://ai.azure.com/.default"

# A token is replaced this long before it expires: a page asked for with it then still
# arrives in time, and a clock a little off does not matter.
REFRESH_MARGIN = 300.0


class TokenCredential(Protocol):
    """What batch-crawler needs of an azure-identity async credential."""

    async def get_token(self, *scopes: str) -> Any:
        """An AccessToken: `token` and `expires_on` (unix seconds)."""

    async def close(self) -> None:
        """Release what the credential holds."""


def default_credential() -> TokenCredential:
    """azure-identity's DefaultAzureCredential (async).

    Raises:
        ConfigError: azure-identity is not installed.
    """
    try:
        from azure.identity.aio import DefaultAzureCredential  # noqa: PLC0415 (optional)
    except ImportError:
        raise ConfigError(
            'auth = "entra" needs azure-identity: pip install "batch-crawler[azure]"'
        ) from None
    credential: TokenCredential = DefaultAzureCredential()
    return credential


class EntraTokens:
    """The Authorization header of each request, its token renewed before it expires."""

    def __init__(
        self, credential: TokenCredential, scope: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._credential = credential
        self._scope = scope
        self._clock = clock
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = asyncio.Lock()  # one renewal, however many requests wait on it
        # The tokens handed out that have not expired, masked as a key is wherever a server
        # may echo them: one renewed stays valid, and a request sent with it may be answered
        # after the renewal (two renewals after, where a credential hands out tokens close
        # to their end).
        self.sent: list[str] = []
        self._expiry: dict[str, float] = {}

    async def headers(self) -> dict[str, str]:
        """The header carrying a token valid for REFRESH_MARGIN seconds at least.

        Raises:
            AuthenticationError: no token could be had (no identity, or it was refused).
        """
        async with self._lock:
            if self._token is None or self._expires_on - self._clock() < REFRESH_MARGIN:
                try:
                    access = await self._credential.get_token(self._scope)
                except Exception as exc:
                    # azure-identity explains over many lines; the first says what failed.
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise AuthenticationError(f"no Entra ID token: {first}") from exc
                self._token, self._expires_on = access.token, float(access.expires_on)
                self._keep_valid(access.token)
        return {"Authorization": f"Bearer {self._token}"}

    def _keep_valid(self, token: str) -> None:
        """Add `token` to those sent, and leave out those expired (the list kept: a run
        reads it at each use)."""
        now = self._clock()
        self._expiry[token] = self._expires_on
        self._expiry = {t: at for t, at in self._expiry.items() if at > now or t == token}
        self.sent[:] = self._expiry


def run_secret(settings: Settings, tokens: EntraTokens | None) -> Secret:
    """What a run masks wherever a server may echo it: its key, or the tokens not expired
    (`EntraTokens.sent`, read at each use as renewals change it)."""
    return settings.api_key if tokens is None else tokens.sent


@contextlib.asynccontextmanager
async def entra_tokens(settings: Settings) -> AsyncIterator[EntraTokens | None]:
    """Tokens for a run with `auth = "entra"`, the credential closed after; None otherwise."""
    if settings.auth != "entra":
        yield None
        return
    held = default_credential()
    scope = DATED_API_SCOPE if settings.api_version else V1_API_SCOPE
    try:
        yield EntraTokens(held, scope)
    finally:
        await held.close()
