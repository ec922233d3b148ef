"""The HTTP edge: one aiohttp session, typed errors, and the retry policy (tenacity, once)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import re
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, unquote
from urllib.request import getproxies, proxy_bypass

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
from .bodies import (
    FILE_CHUNK,
    MAX_BATCH_BYTES,
    MAX_BODY_BYTES,
    DownloadPace,
    FileBody,
    Target,
    as_far_as_it_decodes,
    body_encoding,
    broken_encoding_raised,
    decode_json,
    decoded_as,
    error_body_encoding,
    read_capped,
)
from .config import ENV_AZURE_KEY, ENV_CLIENT_SECRET, Settings, environment_proxies, proxy_secrets
from .content_coding import ENCODINGS
from .entra import EntraTokens, run_secret
from .errors import (
    ApiError,
    AuthenticationError,
    BrokenResponseError,
    ConfigError,
    NotFoundError,
    RateLimitedError,
    ResponseTooLargeError,
    TransportError,
    UnknownRouteError,
)
from .pages import Batch, BatchPage, parse_page
from .ratelimit import RateLimiter
from .redact import (
    Secret,
    Secrets,
    credentials,
    mask_secret,
    variable_secrets,
    written_as_a_secret,
)
from .replies import build_api_error
from .setting_rules import is_on_this_machine, split_url

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

    attempt: int  # the attempt that failed, from 1
    wait: float
    error: ApiError
    reason: str  # why it failed, in a few words: "HTTP 503", "timed out, ..."
    max_attempts: int


_PLAIN_WORDS: tuple[tuple[type[BaseException], str], ...] = (
    (aiohttp.ClientPayloadError, "the response body was cut short"),
    (aiohttp.ServerDisconnectedError, "the server closed the connection"),
)


def describe(exc: BaseException, timeout: aiohttp.ClientTimeout | None = None) -> str:
    """A short, one-line account of a transport failure; `timeout` gives the limits' values."""
    if isinstance(exc, TimeoutError):
        return _describe_timeout(exc, timeout or aiohttp.ClientTimeout(total=None))
    if isinstance(exc, aiohttp.ClientResponseError):
        return _describe_refusal(exc)
    if isinstance(exc, aiohttp.RedirectClientError):
        return _describe_redirect(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        # An error of no words (a proxy closing a TLS handshake) is named by its kind.
        why = exc.strerror or str(exc.os_error) or type(exc.os_error).__name__
        what = "the proxy at " if isinstance(exc, aiohttp.ClientProxyConnectionError) else ""
        host = f"[{exc.host}]" if ":" in exc.host else exc.host  # an IPv6 address
        return f"cannot connect to {what}{host}:{exc.port} ({why})"
    plain = next((words for kind, words in _PLAIN_WORDS if isinstance(exc, kind)), None)
    text = plain or " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _describe_refusal(exc: aiohttp.ClientResponseError) -> str:
    """What aiohttp would not take: a proxy's refusal to connect, a redirect loop, or
    malformed HTTP."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        why = ": check the user and password in HTTPS_PROXY" if exc.status == 407 else ""
        return f"the proxy refused to connect to the API (HTTP {exc.status}{why})"
    if isinstance(exc, aiohttp.TooManyRedirects):
        last = exc.history[-1].headers.get("Location") if exc.history else None
        return f"too many redirects ({len(exc.history)}, the last to {last})"
    return "the server sent a malformed HTTP response"


def _describe_redirect(exc: aiohttp.RedirectClientError) -> str:
    """A redirect aiohttp would not follow (or we would not: see _kept_to_their_origin),
    without a user name or password the URL may hold (one past parsing holds them still)."""
    if isinstance(exc, aiohttp.InvalidURL):
        why = exc.description or "not a URL"
        return f"redirected to {_USER_INFO.sub('//', str(exc.url))} ({why}), which is not followed"
    where = str(exc.args[0]) if exc.args else "a URL"
    return f"redirected to {_USER_INFO.sub('//', where)}, which is not http(s)"


# After a list page past the body cap, pages are asked for at the limit that fitted; after
# this many fit, twice that is tried (the walk may be past the batches that did not fit).
PAGES_BEFORE_GROWING = 10

# The user name and password of a URL: `//user:password@`.
_USER_INFO = re.compile(r"//[^/?#@]*@")
# From the first quote mark to the last, and the parentheses around them.
_QUOTED = re.compile(r"\(?'.*'\)?", re.DOTALL)


def _describe_timeout(exc: TimeoutError, timeout: aiohttp.ClientTimeout) -> str:
    """Which limit ran out, briefly (a progress line shows it): connect, silence or the whole."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        limit, words, span = timeout.sock_connect, "connect timed out", "after"
    elif isinstance(exc, aiohttp.SocketTimeoutError):
        limit, words, span = timeout.sock_read, "timed out, silent", "for"
    else:  # the whole request: a server trickling a byte now and then ends here
        limit, words, span = timeout.total, "timed out", "after"
    return f"{words} {span} {limit:g} s" if limit else words


def is_permanent(exc: BaseException) -> bool:
    """Whether asking again cannot help: a redirect loop, one that cannot be followed, or a
    proxy refusing its credentials."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return exc.status == 407
    return isinstance(exc, aiohttp.TooManyRedirects | aiohttp.RedirectClientError)


def _kept_to_their_origin(names: Iterable[str]) -> aiohttp.TraceConfig:
    """Drop the headers `names` from a request redirected to another origin, as aiohttp
    drops Authorization: Azure's `api-key`, and the organization and project the key
    belongs to, would otherwise reach the host redirected to."""

    async def on_redirect(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        # Where aiohttp goes: a `URI` header where `Location` is missing or empty.
        headers = params.response.headers
        location = headers.get("Location") or headers.get("URI") or ""
        try:
            target = params.url.join(URL(location))
            leaves = target.origin() != params.url.origin()
        except ValueError:
            return  # aiohttp refuses such a redirect itself
        if target.user is not None or target.password is not None:
            # aiohttp would send them as Basic auth beside our key: it fails with a ValueError.
            # They are not shown: a password, or a token as the user name.
            shown = str(target.with_user(None))
            raise aiohttp.InvalidUrlRedirectClientError(shown, "with a user name or password")
        if leaves:
            # The headers of the next hop: aiohttp passes on those it holds.
            for name in names:
                params.headers.popall(name, None)

    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(on_redirect)
    return trace


# The organization and project a key belongs to, when the account has several.
_ORGANIZATION, _PROJECT = "OpenAI-Organization", "OpenAI-Project"


def create_session(settings: Settings) -> aiohttp.ClientSession:
    """The one HTTP session of a run: auth headers, timeouts, keep-alive connections."""
    if not settings.has_credentials:
        raise AssertionError("create_session needs a key or Entra ID tokens")
    headers = {
        **settings.auth_headers,
        "User-Agent": f"batch-crawler/{__version__}",
        "Accept": "application/json",
        # Bodies are decoded here, not by aiohttp (bodies.py): a gzip stream cut short is
        # then seen as cut, and a body that unpacks past the cap is not unpacked further.
        "Accept-Encoding": ", ".join(ENCODINGS),
    }
    if settings.organization:
        headers[_ORGANIZATION] = settings.organization
    if settings.project:
        headers[_PROJECT] = settings.project
    proxy, proxy_auth = _environment_proxy(settings)
    # Per attempt. A silent server is cut off by sock_read, one trickling a byte now and then
    # by total.
    timeout = aiohttp.ClientTimeout(
        total=settings.request_timeout,
        sock_read=settings.read_timeout,
        sock_connect=settings.connect_timeout,
    )
    with warnings.catch_warnings():
        # aiohttp 3.14 deprecates proxy_auth for proxy_headers, which it sends to a proxy of
        # https requests only: a proxy of plain http ones would get no credentials.
        warnings.filterwarnings("ignore", "The 'proxy_auth' parameter", DeprecationWarning)
        return aiohttp.ClientSession(
            headers=headers,
            timeout=timeout,
            # A connection for each refresh worker, and one for the walk.
            connector=aiohttp.TCPConnector(limit=settings.concurrency + 1),
            raise_for_status=False,
            auto_decompress=False,
            trace_configs=[
                _kept_to_their_origin([*settings.auth_headers, _ORGANIZATION, _PROJECT])
            ],
            proxy=proxy,
            proxy_auth=proxy_auth,
        )


def secrets_of_a_run(settings: Settings, tokens: EntraTokens | None) -> Secret:
    """What a run masks wherever a server may echo it: its key or tokens (see run_secret),
    its proxy's credentials, and the secrets beside them a server may know too (see
    _secrets_beside)."""
    secret = run_secret(settings, tokens)
    others = (*_proxy_credentials(settings), *_secrets_beside(settings))
    return Secrets(secret, others) if others else secret


def _secrets_beside(settings: Settings) -> tuple[str, ...]:
    """The secrets of the environment that are not the run's, which a gateway on this
    machine shares and may echo (its upstream key in OPENAI_API_KEY, say): those of the
    variables `mask_env` names, whatever their shape, and those of the default keys' and
    of proxies the run does not go through, written as a machine writes a secret (a
    placeholder, a passphrase or a name would mask the data spelling it). See
    variable_secrets."""
    defaults = (Settings.api_key_env, ENV_AZURE_KEY, ENV_CLIENT_SECRET)
    keys = (
        *(one for name in defaults for one in variable_secrets(os.environ.get(name, ""))),
        *(
            one
            for name in settings.mask_env
            for one in variable_secrets(os.environ.get(name, ""), any_shape=True)
        ),
    )
    proxies = (one for url in environment_proxies().values() for one in proxy_secrets(url))
    # As sent: a proxy password percent-encoded (`the%20quick…`) holds digits.
    passwords = (one for one in proxies if written_as_a_secret(unquote(one)))
    return tuple(sorted({*keys, *passwords} - {settings.api_key}))


def _proxy_credentials(settings: Settings) -> tuple[str, ...]:
    """The password of the proxy the environment gives the base URL, and a user name long
    enough to be a token: a proxy may echo them (in a 407's page, an error it passes on),
    and they are masked as the key is."""
    _, auth = _environment_proxy(settings)
    if auth is None:
        return ()
    secrets = credentials(auth.login, auth.password)
    if secrets and not f"{auth.login}:{auth.password}".isascii():
        # Sent in Latin-1, whose base64 is none of the UTF-8 forms searched for the key.
        secrets.append(auth.encode().removeprefix("Basic "))
    return tuple(secrets)


_PROXY_WITHOUT_HOST = (
    "the proxy in HTTP_PROXY or HTTPS_PROXY names no host (a part of its name is empty, "
    "over 63 characters, of other characters than letters, digits and hyphens, or no IDNA, "
    "or its brackets hold no IPv6 address)"
)


def _environment_proxy(settings: Settings) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy the environment gives the base URL, if any: HTTPS_PROXY, HTTP_PROXY and
    NO_PROXY are honoured, as by the official SDK. Read once here: aiohttp's trust_env reads
    them in a thread on every request, which costs over a millisecond a page.

    None for a base URL on this machine, as Go's clients do: no proxy elsewhere reaches it
    (the demo's own fake API, on a machine whose every program has a proxy set), and plain
    http through one would carry the key in clear text.

    Raises:
        ConfigError: a proxy variable is no URL (aiohttp reads them all), or the proxy is not
            http(s) with a host.
    """
    try:
        proxy, proxy_auth = get_env_proxy_for_url(URL(settings.base_url))
    except LookupError:
        https_proxy = _https_proxy_for(URL(settings.base_url))
        if https_proxy is None:
            return None, None
        proxy, proxy_auth = https_proxy
    except ValueError as exc:
        # What it quotes of the URL (urllib quotes the part before the host whole) may hold
        # the proxy's password, which cannot be masked: the URL is not read.
        why = _QUOTED.sub("(not shown)", str(exc))
        raise ConfigError(
            f"a proxy variable (HTTP_PROXY, HTTPS_PROXY, ...) is no URL: {why}"
        ) from None
    try:
        host = proxy.host  # yarl decodes an IDNA name, such as xn--zz
        if proxy_auth is not None:
            proxy_auth.encode()  # Latin-1 alone, in a header
    except UnicodeEncodeError:
        raise ConfigError(
            "the user name or password of the proxy in HTTP_PROXY or HTTPS_PROXY holds a "
            "character HTTP's Basic authentication cannot send (Latin-1 only)"
        ) from None
    except UnicodeError:
        raise ConfigError(_PROXY_WITHOUT_HOST) from None
    except ValueError:  # RFC 7617: the user name ends at the first colon
        raise ConfigError(
            "the user name of the proxy in HTTP_PROXY or HTTPS_PROXY holds a ':', which HTTP's "
            "Basic authentication cannot send"
        ) from None
    if host and proxy.scheme and proxy.scheme not in ("http", "https"):
        raise ConfigError(
            f"the proxy in HTTP_PROXY or HTTPS_PROXY is a {proxy.scheme} proxy: aiohttp "
            "speaks to http and https proxies only"
        )
    if proxy.scheme not in ("http", "https") or not host:
        raise ConfigError(  # not shown: where its password is, is unclear
            "the proxy in HTTP_PROXY or HTTPS_PROXY is not a URL such as "
            "http://proxy.example:3128 (a scheme and a host)"
        )
    # As the environment spells it: yarl takes `[v1.x]` for the name v1.x, say.
    if split_url(getproxies().get(URL(settings.base_url).scheme)) is None:
        raise ConfigError(_PROXY_WITHOUT_HOST)  # not shown: a key as the host, say
    if is_on_this_machine(settings.base_url):
        return None, None
    return proxy, proxy_auth


def _https_proxy_for(url: URL) -> tuple[URL, aiohttp.BasicAuth | None] | None:
    """The https:// proxy the environment gives `url`, which aiohttp's reading of the
    environment leaves out with a log line alone (it reaches one it is given): requests went
    straight to the API, past the proxy."""
    spelled = getproxies().get(url.scheme)
    if spelled is None or (url.host is not None and proxy_bypass(url.host)):
        return None
    proxy = URL(spelled)
    if proxy.scheme != "https":
        return None
    return proxy.with_user(None), aiohttp.BasicAuth.from_url(proxy)


def build_client(
    session: aiohttp.ClientSession,
    settings: Settings,
    *,
    retry: RetryPolicy | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    limiter: RateLimiter | None = None,
    auth: EntraTokens | None = None,
    secret: Secret = None,
) -> ApiClient:
    """The client a run with these settings uses: their retry policy unless `retry` is
    given, their request rate unless `limiter` is, their provider's ways; `auth` gives
    each request its token (Entra ID), masked as the key is, or as `secret` is (every
    account's of the run)."""
    return ApiClient(
        session,
        settings.base_url,
        retry=retry or RetryPolicy.from_settings(settings),
        secret=secrets_of_a_run(settings, auth) if secret is None else secret,
        on_retry=on_retry,
        limiter=limiter or RateLimiter(settings.requests_per_minute),
        query=settings.query,
        has_more_optional=settings.provider == "compatible",
        auth=auth,
    )


class TokenSource(Protocol):
    """Where each request's token comes from (see crawler.entra.EntraTokens)."""

    def sending(self) -> contextlib.AbstractAsyncContextManager[Mapping[str, str]]:
        """The headers carrying a valid token, for one request while it runs."""


class ApiClient:
    """Typed, retried calls to the Batches API over a session the caller owns."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        retry: RetryPolicy,
        secret: Secret = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        limiter: RateLimiter | None = None,
        query: Mapping[str, str] | None = None,
        has_more_optional: bool = False,
        auth: TokenSource | None = None,
    ) -> None:
        """`query`: parameters every request carries (Azure's `api-version`);
        `has_more_optional`: the list may not say has_more (see `parse_page`); `auth`: the
        headers of each request's token, asked for before it is sent."""
        self._auth = auth
        self._limiter = limiter or RateLimiter(sleep=sleep)
        self._query = dict(query or {})
        self._has_more_optional = has_more_optional
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._retry = retry
        self._secret = secret
        self._on_retry = on_retry
        self._sleep = sleep
        self._fitting_limit: int | None = None  # see PAGES_BEFORE_GROWING
        self._pages_fitted = 0

    async def fetch_page(
        self, after: str | None, limit: int, *, attempts: int | None = None
    ) -> BatchPage:
        """One page of `GET /batches`, newest first, strictly after `after`, of `limit`
        batches or fewer: a page past the body cap (batches of tens of thousands of error
        lines each) is asked for again with half the limit, down to one batch, and the pages
        after it at the limit that fitted (see PAGES_BEFORE_GROWING). Asked `attempts` times
        at most, if given, instead of the policy's."""
        params: dict[str, str] = {} if after is None else {"after": after}
        asked = min(limit, self._fitting_limit or limit)
        while True:
            try:
                page = await self._retried(
                    self._get_page,
                    f"{self._base_url}/batches",
                    {"limit": str(asked), **params},
                    attempts=attempts,
                )
            except ResponseTooLargeError:
                if asked == 1:
                    raise
                asked //= 2
                self._fitting_limit, self._pages_fitted = asked, 0
                continue
            if self._fitting_limit is not None:
                self._pages_fitted += 1
                if self._pages_fitted >= PAGES_BEFORE_GROWING:
                    grown = self._fitting_limit * 2
                    self._fitting_limit = None if grown >= limit else grown
                    self._pages_fitted = 0
            return page if asked == limit else dataclasses.replace(page, limit=asked)

    async def fetch_batch(self, batch_id: str, *, attempts: int | None = None) -> Batch | None:
        """One batch by id (`GET /batches/{id}`); None when the API says it has no such batch.
        Asked `attempts` times at most, if given, instead of the policy's.

        Any 404 means that, whatever its error code (compatible servers send none), but a
        404 for the path itself ("Invalid URL": a wrong base URL, a proxy without this
        route) is an error: no batch is counted gone for it.

        Raises:
            UnknownRouteError: the server does not serve `GET /batches/{id}` here.
        """
        # One path segment, whatever the id holds: `a/../../files` must not climb the path,
        # nor `..` itself, which URL normalisation would drop, asking for another path.
        segment = quote(batch_id, safe="")
        if segment in {".", ".."}:
            segment = segment.replace(".", "%2E")
        url = URL(f"{self._base_url}/batches").joinpath(segment, encoded=True)
        try:
            batch = await self._retried(self._get_batch, url, {}, attempts=attempts)
        except UnknownRouteError:
            raise
        except NotFoundError:
            return None
        if batch["id"] != batch_id:
            # Storing it would add a row the list never showed and leave this one stale.
            raise BrokenResponseError(
                f"response from {url} is batch {batch['id']}, not the one asked for",
                should_retry=False,
            )
        return batch

    async def _get_page(self, url: Target, params: dict[str, str]) -> BatchPage:
        # A page of one batch may be as large as one batch asked for by id.
        cap = MAX_BATCH_BYTES if params.get("limit") == "1" else MAX_BODY_BYTES
        payload = await self._get_json(url, params, cap)
        return parse_page(payload, self._secret, has_more_optional=self._has_more_optional)

    async def _get_batch(self, url: Target, params: dict[str, str]) -> Batch:
        batch = await self._get_json(url, params, MAX_BATCH_BYTES)
        if not isinstance(batch, dict) or not isinstance(batch.get("id"), str):
            raise BrokenResponseError(f"response from {url} is not a batch object")
        return batch

    async def read_file(
        self,
        file_id: str,
        consume: Callable[[FileBody], Awaitable[T]],
        *,
        attempts: int | None = None,
    ) -> T | None:
        """Stream a file's content (`GET /files/{id}/content`) through `consume`.

        A connection dropped or a body cut short part-way is retried like any request (up
        to `attempts`, if given, instead of the policy's), and `consume` then reads the file
        again from its first byte. None when the API has no such file (404: deleted or
        expired).
        """
        url = URL(f"{self._base_url}/files").joinpath(
            quote(file_id, safe=""), "content", encoded=True
        )
        try:
            return await self._retried(self._stream, url, consume, attempts=attempts)
        except UnknownRouteError:
            raise
        except NotFoundError:
            return None

    async def _stream(self, url: URL, consume: Callable[[FileBody], Awaitable[T]]) -> T:
        await self._limiter.acquire()
        started = time.monotonic()
        # A file may take minutes to come: its head within the request timeout, as any
        # answer's, then only a silence, or a body too slow to be a download, cuts it off.
        limits = self._session.timeout
        timeout = aiohttp.ClientTimeout(
            sock_read=limits.sock_read, sock_connect=limits.sock_connect
        )
        async with self._sending() as headers:
            with self._transport_errors(url, limits), broken_encoding_raised(url, self._secret):
                request = self._session.get(
                    url, params=self._query, timeout=timeout, headers=headers
                )
                # The head, and an error's body (an answer, not a download), in that time.
                answered_by = asyncio.timeout(limits.total)
                async with answered_by:
                    answer = await request
                async with answer as resp:
                    if resp.status >= 300:  # read, it raises the error it stands for
                        async with asyncio.timeout_at(answered_by.when()):
                            await self._read(resp, url, started)
                    encoding = body_encoding(resp, url, self._secret)
                    self._limiter.observe(resp.headers)
                    framed = (
                        resp.content_length is not None
                        or "chunked" in resp.headers.get("Transfer-Encoding", "").lower()
                    )
                    pace = DownloadPace(url, limits.total)
                    received = pace.received(resp.content.iter_chunked(FILE_CHUNK))
                    chunks = pace.content(decoded_as(received, encoding))
                    unseen = not framed
                    return await consume(FileBody(chunks, cut_may_pass_unseen=unseen))

    async def _get_json(self, url: Target, params: dict[str, str], cap: int) -> Any:
        """The JSON an answer of at most `cap` bytes holds."""
        await self._limiter.acquire()
        started = time.monotonic()
        with (
            self._transport_errors(url, self._session.timeout),
            broken_encoding_raised(url, self._secret),
        ):
            async with (
                self._sending() as headers,
                self._session.get(url, params={**self._query, **params}, headers=headers) as resp,
            ):
                body = await self._read(resp, url, started, cap)
                content_type = resp.content_type
        return decode_json(body, str(resp.url), content_type, self._secret)

    @contextlib.asynccontextmanager
    async def _sending(self) -> AsyncIterator[Mapping[str, str] | None]:
        """The headers of this request's token (Entra ID), if the run has a token source,
        held while the request runs."""
        if self._auth is None:
            yield None
            return
        async with self._auth.sending() as headers:
            yield headers

    @contextlib.contextmanager
    def _transport_errors(self, url: Target, timeout: aiohttp.ClientTimeout) -> Iterator[None]:
        """aiohttp's failures raised as TransportError, saying what happened."""
        try:
            yield
        except UnicodeError as exc:
            if isinstance(exc, UnicodeDecodeError):
                raise
            # A redirect to a host name IDNA cannot encode (a part empty or too long).
            message = f"request to {url} failed: redirected to a host name that cannot be sent"
            raise TransportError(mask_secret(message, self._secret), should_retry=False) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            if isinstance(exc, aiohttp.InvalidURL) and not isinstance(
                exc, aiohttp.RedirectClientError
            ):
                message = f"cannot request {url}: invalid URL"
                raise TransportError(message, should_retry=False) from exc
            what = describe(exc, timeout)
            raise TransportError(
                mask_secret(f"request to {url} failed: {what}", self._secret),
                should_retry=False if is_permanent(exc) else None,
            ) from exc

    async def _read(
        self,
        resp: aiohttp.ClientResponse,
        url: Target,
        started: float,
        cap: int = MAX_BODY_BYTES,
    ) -> bytes | bytearray:
        """The body of a 2xx answer, decoded, of at most `cap` bytes; any other answer
        raised as the ApiError it stands for."""
        if resp.status < 300:
            pieces = decoded_as(resp.content.iter_any(), body_encoding(resp, url, self._secret))
        else:
            pieces = as_far_as_it_decodes(resp.content.iter_any(), error_body_encoding(resp))
        body = await read_capped(resp, pieces, cap)
        shown_url = str(resp.url)
        if log.isEnabledFor(logging.DEBUG):
            # After a redirect the URL is the server's, and may echo the key.
            elapsed = (time.monotonic() - started) * 1000
            masked = mask_secret(shown_url, self._secret)
            log.debug("GET %s -> %d in %.0f ms", masked, resp.status, elapsed)
        self._limiter.observe(resp.headers)
        if resp.status >= 300:
            # An error body past the cap is as unreadable as an HTML one: the status speaks.
            error = build_api_error(
                resp.status, bytes(body or b""), resp.headers, shown_url, secret=self._secret
            )
            if isinstance(error, RateLimitedError):
                # Every worker waits, not only the one that was told.
                self._limiter.pause(self._retry.wait_seconds(error, 1, 0.0))
            raise error
        if body is None:
            message = (
                f"the response from {shown_url} is larger than {cap // 2**20} MiB, "
                "far more than a page of batches (tens of KB); it was not read further"
            )
            raise ResponseTooLargeError(mask_secret(message, self._secret), should_retry=False)
        return body

    async def _retried(
        self, call: Callable[..., Awaitable[T]], *args: Any, attempts: int | None = None
    ) -> T:
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, ApiError) and e.retryable),
            stop=stop_after_attempt(attempts or self._retry.max_attempts)
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
        attempts = self._retry.max_attempts
        log.warning(
            "%s; retrying in %.1f s (attempt %d of %d)",
            mask_secret(str(error), self._secret),  # it may quote an id that echoes the key
            wait,
            state.attempt_number + 1,
            attempts,
            extra={"attempt": state.attempt_number, "wait": wait, "status": error.status},
        )
        if self._on_retry is not None:
            reason = self._reason(error)
            self._on_retry(RetryEvent(state.attempt_number, wait, error, reason, attempts))

    def _reason(self, error: ApiError) -> str:
        """Why an attempt failed, in a few words: "HTTP 503", "timed out, ..."."""
        cause = error.__cause__
        if isinstance(error, TransportError) and cause is not None:
            # A redirect's URL is the server's, and may echo the key.
            return mask_secret(describe(cause, self._session.timeout), self._secret)
        if isinstance(error, RateLimitedError):
            return "rate limited (HTTP 429)"
        if error.status is not None:
            return f"HTTP {error.status}"
        if isinstance(error, AuthenticationError):  # no answer of the API's: Entra ID's
            return "no Entra ID token"
        return "an unusable response"
