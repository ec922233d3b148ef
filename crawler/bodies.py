"""Answers' bodies, read within bounds: a page or an error reply whole under a size cap;
a file as it arrives, at a download's pace, decoded here (see content_coding), its end
checked where it can be."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from .content_coding import ENCODINGS, BrokenEncodingError, decoded
from .errors import BrokenResponseError, TransportError
from .jsontext import TooDeepError, parse
from .redact import Secret, mask_secret

# Where a request goes: the text of a URL, or a URL already encoded (a batch id's path).
Target = str | URL

# The most one response may take. A list page of 100 batches is tens of KB and a batch a few
# KB: anything near this is not the Batches API answering, and is not read further.
MAX_BODY_BYTES = 16 * 2**20
# The most an answer of one batch may take: one with 50,000 error lines (an input file's
# most requests, each refused) runs to tens of MB; past the page cap, it stopped every
# sync at its place in the list.
MAX_BATCH_BYTES = 64 * 2**20

# How much of a file is handed on at a time: large enough that a 200 MB file is a few
# thousand reads, small enough to keep memory flat.
FILE_CHUNK = 2**18


@dataclass(frozen=True)
class FileBody:
    """A file's content as it arrives, and whether a cut could pass for its end."""

    chunks: AsyncIterator[bytes]
    # No Content-Length and no chunked framing (HTTP/1.0, some proxies): the body ends when
    # the connection closes, so a connection cut short looks like the end of the file. A
    # compressed stream's end is checked (content_coding), but a gzip body may hold several
    # streams (members), and a cut between two looks like the end too.
    cut_may_pass_unseen: bool


def _named(encoding: str) -> str:
    """An encoding by the name it is decoded as (RFC 9110: x-gzip is gzip)."""
    name = encoding.lower()
    return "gzip" if name == "x-gzip" else name


def _applied(resp: aiohttp.ClientResponse) -> list[str]:
    """The encodings a body says it was compressed in, as sent ("identity" left out)."""
    sent = (e.strip() for e in resp.headers.get("Content-Encoding", "").split(","))
    return [e for e in sent if e and e.lower() != "identity"]


def body_encoding(resp: aiohttp.ClientResponse, url: Target, secret: Secret) -> str | None:
    """The encoding a 2xx body is compressed in (gzip or deflate), None if plain. One the
    request did not ask for, or several, is refused at once: asking again gets the same."""
    applied = _applied(resp)
    # Shown as sent: a header a server filled with the key is then masked as the key.
    unknown = [e for e in applied if _named(e) not in ENCODINGS]
    if unknown or len(applied) > 1:
        named = f"encoded as {unknown[0] if unknown else ', '.join(applied)}"
        what = (
            f"the server sent a body {named}, which batch-crawler cannot read "
            f"(it asks for {' or '.join(ENCODINGS)})"
        )
        raise TransportError(
            mask_secret(f"request to {url} failed: {what}", secret), should_retry=False
        )
    return _named(applied[0]) if applied else None


def error_body_encoding(resp: aiohttp.ClientResponse) -> str | None:
    """The encoding an error reply is compressed in, if one this client decodes; its body is
    otherwise read as it comes (the status speaks for an unreadable one)."""
    applied = [_named(e) for e in _applied(resp)]
    return applied[0] if len(applied) == 1 and applied[0] in ENCODINGS else None


# A file coming slower than this on average over a span of the request timeout is a server
# holding the connection open a few bytes at a time (which no read timeout catches), not a
# download.
MIN_FILE_BYTES_PER_SECOND = 1024


class DownloadPace:
    """A file's body cut off (TransportError, asked again) once it comes too slowly over a
    `span` of seconds or more: each span on its own, since a burst first would otherwise
    pay for a trickle after it (a second of it for each KiB), the first from when the body
    is first asked for (the wait for the head is not the download's).

    Both what comes (`received`) and what it decodes to (`content`) are paced: a gzip body
    of empty blocks sent at full speed, a byte of content now and then, ran for ever.
    """

    def __init__(self, url: URL, span: float | None) -> None:
        self._url = url
        self._span = span
        self._content = 0

    async def received(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`chunks` as they come, their pace and their content's checked as each comes, and
        none waited for longer than a span: bytes of the chunked framing alone (a chunk
        size's leading zeros, an extension, a byte a second) keep the socket's read timeout
        from firing, and bring no chunk to check."""
        received = since_received = since_content = 0
        since = time.monotonic()
        async for chunk in self._each_within_a_span(chunks):
            received += len(chunk)
            now = time.monotonic()
            if self._span is not None and now - since > self._span:
                elapsed = now - since
                came = min(received - since_received, self._content - since_content)
                if came < elapsed * MIN_FILE_BYTES_PER_SECOND:
                    raise TransportError(
                        f"request to {self._url} failed: the file came at "
                        f"{came / elapsed:.0f} bytes/s over {elapsed:.0f} s, too slow to be "
                        "a download"
                    )
                since, since_received, since_content = now, received, self._content
            yield chunk

    async def _each_within_a_span(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        while True:
            waited = asyncio.timeout(self._span)
            try:
                async with waited:
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not waited.expired():
                    raise  # the socket's own read timeout
                raise TransportError(
                    f"request to {self._url} failed: nothing of the file came for "
                    f"{self._span:g} s, too slow to be a download"
                ) from None
            yield chunk

    async def content(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`chunks` decoded from what was `received`, counted."""
        async for chunk in chunks:
            self._content += len(chunk)
            yield chunk


async def read_capped(
    resp: aiohttp.ClientResponse, pieces: AsyncIterator[bytes], cap: int = MAX_BODY_BYTES
) -> bytearray | None:
    """The body of `resp`, its `pieces` (decoded) read as they come; None, and the rest left
    unread, once past `cap` bytes."""
    if (resp.content_length or 0) > cap:
        return None
    body = bytearray()
    async for chunk in pieces:
        body += chunk
        if len(body) > cap:
            return None
    return body


def decoded_as(chunks: AsyncIterator[bytes], encoding: str | None) -> AsyncIterator[bytes]:
    """`chunks` decoded from `encoding`, or as they come when it is None."""
    return chunks if encoding is None else decoded(chunks, encoding)


async def as_far_as_it_decodes(
    chunks: AsyncIterator[bytes], encoding: str | None
) -> AsyncIterator[bytes]:
    """An error reply's body decoded as far as it decodes: its status speaks for the rest."""
    with contextlib.suppress(BrokenEncodingError):
        async for piece in decoded_as(chunks, encoding):
            yield piece


@contextlib.contextmanager
def broken_encoding_raised(url: Target, secret: Secret) -> Iterator[None]:
    """A compressed body that is corrupt or stops before its end raised as a broken response,
    asked again: with a declared length, the whole body came and is wrong; that file's
    failure, not the route's (a connection cut short is aiohttp's to tell)."""
    try:
        yield
    except BrokenEncodingError as exc:
        message = mask_secret(f"request to {url} failed: {exc}", secret)
        raise BrokenResponseError(message) from None


def decode_json(body: bytes | bytearray, url: str, content_type: str, secret: Secret) -> Any:
    """The JSON document of a 2xx body from `url` (the last, after any redirect)."""
    try:
        return parse(body)
    except TooDeepError as exc:  # the same document again would fail again
        message, retry = f"the response from {url} is {exc}", False
    except ValueError:
        if content_type in {"application/json", "application/octet-stream"}:
            # Most likely cut short on the way: worth asking again.
            message, retry = f"response from {url} is not valid JSON", True
        else:
            message, retry = (
                f"{url} answered {content_type or 'something'} instead of JSON; "
                "is the base URL an OpenAI-compatible API (usually ending in /v1)?",
                False,
            )
    # A redirect's URL is the server's, and may echo the key.
    raise BrokenResponseError(mask_secret(message, secret), should_retry=retry)
