"""Microsoft Entra ID tokens for Azure OpenAI, instead of a key (`auth = "entra"`).

azure-identity's DefaultAzureCredential finds the identity (environment, workload or managed
identity, the Azure CLI's login...), as Azure's own tools do; it is an optional extra,
`pip install "batch-crawler[azure]"`. A token is asked for once and again a few minutes
before it expires, so that a sync of any length never sends an expired one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from .config import Settings
from .errors import AuthenticationError, ConfigError
from .redact import Secret, Secrets, mask_secret

# The scope of a token, by API: the dated API is Cognitive Services', the v1 API Azure AI's.
DATED_API_SCOPE = "https://cognitiveservices.azure.com/.default"
V1_API_SCOPE = "https://ai.azure.com/.default"

# A token is replaced this long before it expires: a page asked for with it then still
# arrives in time, and a clock a little off does not matter.
REFRESH_MARGIN = 300.0

# A renewal that failed, or gave a token close to its end, is tried again after this long,
# while the token in hand lasts: each request would otherwise wait on a credential that is
# failing, or get a token of its own.
RENEWAL_RETRY = 30.0

# How long closing the credential (its HTTP sessions) is waited for at the end of a run.
CLOSE_TIMEOUT = 5.0

# azure-identity's explanations, cut to this many characters.
MAX_EXPLANATION = 1000

log = logging.getLogger(__name__)


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
    try:
        credential: TokenCredential = DefaultAzureCredential()
    except Exception as exc:  # a setting it reads from the environment, refused
        raise ConfigError(f'auth = "entra": {_one_line(exc)}') from exc
    return credential


class EntraTokens:
    """The Authorization header of each request, its token renewed before it expires."""

    def __init__(
        self,
        credential: TokenCredential,
        scope: str,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
        also_masked: Secret = None,
    ) -> None:
        """`timeout`: how long one token is waited for (a credential that never answers
        would hold the run for good); `also_masked`: what its warnings mask besides its
        tokens (the keys of the accounts synced with it)."""
        self._credential = credential
        self._also_masked = also_masked
        self._scope = scope
        self._timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._expires_on = 0.0
        self._renew_after = 0.0  # see RENEWAL_RETRY
        self._handed_expired = False  # the token in hand came past its end (a clock off)
        self._lock = asyncio.Lock()  # one renewal, however many requests wait on it
        # The tokens handed out that have not expired, masked as a key is wherever a server
        # may echo them: one renewed stays valid, and a request sent with it may be answered
        # after the renewal (two renewals after, where a credential hands out tokens close
        # to their end).
        self.sent: list[str] = []
        self._expiry: dict[str, float] = {}
        # Requests running with each token: a download may stream for long after it was
        # sent, and its last line may echo the token (kept masked while it runs).
        self._running: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def sending(self) -> AsyncIterator[dict[str, str]]:
        """The headers of one request (see `_to_send`), its token masked while the request
        runs and request_timeout after it ends."""
        token = await self._to_send()
        self._running[token] += 1
        try:
            yield _bearer(token)
        finally:
            self._running[token] -= 1  # a count of 0 is dropped by the next renewal
            self._mask_for_an_answer(token)

    async def headers(self) -> dict[str, str]:
        """The header carrying a token to send (see `_to_send`)."""
        return _bearer(await self._to_send())

    async def _to_send(self) -> str:
        """A token valid for REFRESH_MARGIN seconds at least, or, while renewing it fails,
        the token in hand until it expires.

        Raises:
            AuthenticationError: no token could be had (no identity, it was refused, or the
                credential did not answer: then retryable).
        """
        async with self._lock:
            now = self._clock()
            valid = self._token is not None and self._expires_on > now
            due = not valid or self._expires_on - now < REFRESH_MARGIN
            if due and not ((valid or self._handed_expired) and now < self._renew_after):
                try:
                    await self._renew()
                except AuthenticationError as exc:
                    now = self._clock()  # a renewal may take request_timeout to fail
                    if self._token is None or self._expires_on <= now:
                        raise
                    # azure-identity's words may quote the token in hand, still valid.
                    said = mask_secret(str(exc), self.masked)
                    log.warning("%s; the token in hand is used until it expires", said)
                    self._renew_after = now + RENEWAL_RETRY
                    self._handed_expired = False
                else:
                    now = self._clock()
                    # Close to its end already (a credential's cache), or past it (a clock
                    # off): asking again at once, or within seconds, would get another for
                    # every request, each masked for a while, every page's masking slower
                    # with each. One close to its end is sent until it expires; one past it,
                    # for RENEWAL_RETRY.
                    self._handed_expired = self._expires_on <= now
                    if self._expires_on - now < REFRESH_MARGIN + RENEWAL_RETRY:
                        self._renew_after = now + RENEWAL_RETRY
            token = self._token
            assert token is not None  # renewed, or the renewal raised
            self._mask_for_an_answer(token)
        return token

    def _mask_for_an_answer(self, token: str) -> None:
        """Keep `token` masked while an answer to a request sent with it may come: for
        request_timeout from now."""
        self._expiry[token] = max(self._expiry.get(token, 0.0), self._clock() + self._timeout)

    async def _renew(self) -> None:
        timeout = asyncio.timeout(self._timeout)
        try:
            async with timeout:
                access = await self._credential.get_token(self._scope)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the run is being stopped
            # The credential's own (a task of its cancelled): the run would wait for good.
            raise AuthenticationError(
                "no Entra ID token: the credential's request was cancelled", should_retry=True
            ) from None
        except Exception as exc:
            if isinstance(exc, TimeoutError) and timeout.expired():
                raise AuthenticationError(
                    f"no Entra ID token: the credential did not answer in {self._timeout:g} s",
                    should_retry=True,
                ) from None
            raise AuthenticationError(
                f"no Entra ID token: {_one_line(exc)}", should_retry=_may_pass(exc)
            ) from exc
        token = getattr(access, "token", None)
        if not isinstance(token, str) or not token or not (token.isascii() and token.isprintable()):
            # Not shown: it may be a token all the same, with a line end in it.
            raise AuthenticationError("no Entra ID token: the credential gave no header value")
        try:
            expires_on = float(access.expires_on)
        except (TypeError, ValueError, OverflowError):
            expires_on = math.nan
        if not math.isfinite(expires_on):
            raise AuthenticationError(
                "no Entra ID token: the credential gave an expiry that is no time"
            )
        self._token, self._expires_on = token, expires_on
        self._keep_valid(token)

    @property
    def masked(self) -> Secret:
        """What its warnings mask: the tokens not expired, and `also_masked`."""
        return Secrets(self.sent, self._also_masked)

    def _keep_valid(self, token: str) -> None:
        """Add `token` to those sent, and leave out those expired with no request running
        (the list kept: a run reads it at each use)."""
        now = self._clock()
        # One that expires at once (a clock off, a credential's stale cache) is sent all
        # the same: masked for as long as an answer to it may take.
        self._expiry[token] = max(self._expires_on, now + self._timeout)
        self._running = +self._running  # those with requests running
        self._expiry = {
            t: at for t, at in self._expiry.items() if at > now or t == token or t in self._running
        }
        self.sent[:] = self._expiry


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _may_pass(error: Exception) -> bool:
    """Whether asking for a token again later may succeed: the network failed on the way
    to the identity endpoint (a connection reset, a timeout; azure-core's own words for
    it), not the identity, which only the user can fix."""
    network = ("ServiceRequestError", "ServiceResponseError")  # azure.core.exceptions
    return isinstance(error, OSError) or type(error).__name__ in network


def _one_line(error: Exception) -> str:
    """azure-identity's explanation on one line: which credentials it tried, and why each
    failed (its first line alone is the same whatever went wrong)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= MAX_EXPLANATION else text[: MAX_EXPLANATION - 3] + "..."


def run_secret(settings: Settings, tokens: EntraTokens | None) -> Secret:
    """What a run masks wherever a server may echo it: its key, or the tokens not expired
    (`EntraTokens.sent`, read at each use as renewals change it), and a key set beside
    them (the environment's)."""
    if tokens is None:
        return settings.api_key
    return tokens.sent if settings.api_key is None else Secrets(settings.api_key, tokens.sent)


@contextlib.asynccontextmanager
async def entra_tokens(
    settings: Settings, also_masked: Secret = None
) -> AsyncIterator[EntraTokens | None]:
    """Tokens for a run with `auth = "entra"`, the credential closed after; None otherwise.
    `also_masked`: what its warnings mask besides its tokens."""
    if settings.auth != "entra":
        yield None
        return
    held = default_credential()
    scope = DATED_API_SCOPE if settings.api_version else V1_API_SCOPE
    masked = Secrets(settings.api_key, also_masked)
    tokens = EntraTokens(held, scope, timeout=settings.request_timeout, also_masked=masked)
    try:
        yield tokens
    finally:
        # The run's work is done: not worth failing it for, nor holding up its end (a
        # signal, an orchestrator's grace period) to wait on.
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await held.close()
        except TimeoutError:
            log.warning("closing the Entra ID credential did not end in %g s: left", CLOSE_TIMEOUT)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the run is being stopped
            # The credential's own (a task of its cancelled): a complete run failed with it.
            log.warning("closing the Entra ID credential failed: it was cancelled")
        except Exception as exc:
            said = mask_secret(_one_line(exc), tokens.masked)
            log.warning("closing the Entra ID credential failed: %s", said)
