"""The HTTP edge: one aiohttp session, typed errors, and the retry policy (tenacity, once)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)
from yarl import URL

from . import __version__
from .config import Settings
from .errors import (
    ApiError,
    BrokenResponseError,
    NotFoundError,
    RateLimitedError,
    TransportError,
)
from .jsontext import parse
from .pages import Batch, BatchPage, parse_page
from .ratelimit import RateLimiter
from .replies import build_api_error, mask_secret

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before asking again.

    The defaults follow the official SDK's backoff (0.5 s doubling to 8 s, jitter
    0.75..1) but allow more attempts, since a sync is a long unattended job.
    """

    max_attempts: int = 8
    max_seconds: float = 300.0
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_server_delay: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy a sync with these settings uses."""
        return cls(max_attempts=settings.max_attempts, max_seconds=settings.max_retry_seconds)

    def wait_seconds(self, error: BaseException | None, attempt: int, jitter: float) -> float:
        """Seconds to sleep after failed attempt number `attempt` (1-based).

        The server's own delay wins when it is sane; otherwise exponential backoff,
        shortened by up to a quarter by `jitter` (0..1) so that clients spread out.
        """
        delay = getattr(error, "retry_after", None)
        if delay is not None and 0 < delay <= self.max_server_delay:
            return float(delay)
        backoff = min(self.initial_backoff * 2.0 ** (attempt - 1), self.max_backoff)
        return backoff * (1 - 0.25 * jitter)


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen, for counters and progress lines."""

    attempt: int
    wait: float
    error: ApiError


def describe(exc: BaseException) -> str:
    """A short, one-line account of a transport failure."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the response body was cut short"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.strerror or exc.os_error})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "the server sent a malformed HTTP response"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def create_session(settings: Settings) -> aiohttp.ClientSession:
    """The one HTTP session of a run: auth headers, timeouts, keep-alive connections."""
    if not settings.api_key:
        raise AssertionError("create_session needs settings.api_key")
    headers = {
        "Authorization": f"Bearer {settings.api_key}",
        "User-Agent": f"batch-crawler/{__version__}",
        "Accept": "application/json",
    }
    if settings.organization:
        headers["OpenAI-Organization"] = settings.organization
    if settings.project:
        headers["OpenAI-Project"] = settings.project
    # HTTPS_PROXY, HTTP_PROXY and NO_PROXY are honoured, as by the official SDK. They are
    # read once here: aiohttp's trust_env reads them in a thread on every request, which
    # costs over a millisecond a page.
    try:
        proxy, proxy_auth = get_env_proxy_for_url(URL(settings.base_url))
    except LookupError:
        proxy, proxy_auth = None, None
    timeout = aiohttp.ClientTimeout(
        total=settings.request_timeout, sock_connect=settings.connect_timeout
    )
    return aiohttp.ClientSession(
        headers=headers,
        timeout=timeout,
        connector=aiohttp.TCPConnector(limit=32),
        raise_for_status=False,
        proxy=proxy,
        proxy_auth=proxy_auth,
    )


class ApiClient:
    """Typed, retried calls to the Batches API over a session the caller owns."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        retry: RetryPolicy,
        secret: str | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._limiter = limiter or RateLimiter(sleep=sleep)
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._retry = retry
        self._secret = secret
        self._on_retry = on_retry
        self._sleep = sleep

    async def fetch_page(self, after: str | None, limit: int) -> BatchPage:
        """One page of `GET /batches`, newest first, strictly after `after`."""
        params: dict[str, str] = {"limit": str(limit)}
        if after is not None:
            params["after"] = after
        return await self._retried(self._get_page, f"{self._base_url}/batches", params)

    async def fetch_batch(self, batch_id: str) -> Batch | None:
        """One batch by id (`GET /batches/{id}`); None when the API says it has no such batch.

        Only a 404 with code `batch_not_found` means that: any other 404 (a proxy without
        this route, a wrong base path) is an error, so that no batch is marked gone for it.
        """
        try:
            return await self._retried(self._get_batch, f"{self._base_url}/batches/{batch_id}", {})
        except NotFoundError as exc:
            if exc.code == "batch_not_found":
                return None
            raise

    async def _get_page(self, url: str, params: dict[str, str]) -> BatchPage:
        return parse_page(await self._get_json(url, params))

    async def _get_batch(self, url: str, params: dict[str, str]) -> Batch:
        batch = await self._get_json(url, params)
        if not isinstance(batch, dict) or not isinstance(batch.get("id"), str):
            raise BrokenResponseError(f"response from {url} is not a batch object")
        return batch

    async def _get_json(self, url: str, params: dict[str, str]) -> Any:
        await self._limiter.acquire()
        started = time.monotonic()
        try:
            async with self._session.get(url, params=params) as resp:
                body = await resp.read()
                shown_url = str(resp.url)
                log.debug(
                    "GET %s -> %d in %.0f ms",
                    shown_url,
                    resp.status,
                    (time.monotonic() - started) * 1000,
                )
                self._limiter.observe(resp.headers)
                if resp.status >= 300:
                    error = build_api_error(
                        resp.status, body, resp.headers, shown_url, secret=self._secret
                    )
                    if isinstance(error, RateLimitedError):
                        # Every worker waits, not only the one that was told.
                        self._limiter.pause(self._retry.wait_seconds(error, 1, 0.0))
                    raise error
                is_json = resp.content_type in {"application/json", "application/octet-stream"}
        except aiohttp.InvalidURL as exc:
            raise TransportError(f"cannot request {url}: invalid URL", should_retry=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = mask_secret(f"request to {url} failed: {describe(exc)}", self._secret)
            raise TransportError(message) from exc
        try:
            return parse(body)
        except ValueError as exc:
            if is_json:  # most likely cut short on the way: worth asking again
                raise BrokenResponseError(f"response from {shown_url} is not valid JSON") from exc
            raise BrokenResponseError(
                f"{shown_url} answered {resp.content_type or 'something'} instead of JSON; "
                "is the base URL an OpenAI-compatible API (usually ending in /v1)?",
                should_retry=False,
            ) from exc

    async def _retried(self, call: Callable[[str, dict[str, str]], Awaitable[T]], *args: Any) -> T:
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, ApiError) and e.retryable),
            stop=stop_after_attempt(self._retry.max_attempts)
            | stop_before_delay(self._retry.max_seconds),
            wait=self._wait,
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return await retrying(call, *args)
        except ApiError as exc:
            if exc.retryable:
                exc.attempts = retrying.statistics.get("attempt_number", 1)
            raise

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return self._retry.wait_seconds(error, state.attempt_number, random.random())

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if not isinstance(error, ApiError):
            return
        wait = state.upcoming_sleep
        log.warning(
            "retry after attempt %d, waiting %.2f s: %s",
            state.attempt_number,
            wait,
            error,
            extra={"attempt": state.attempt_number, "wait": wait, "status": error.status},
        )
        if self._on_retry is not None:
            self._on_retry(RetryEvent(state.attempt_number, wait, error))
