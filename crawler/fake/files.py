"""The file routes of the fake API: a terminal batch's output and error files.

- `GET /v1/files/{id}`: the File object; its `bytes` is the content's length.
- `GET /v1/files/{id}/content`: JSONL (`application/octet-stream`, one request per line,
  newline-terminated) with a Content-Length, generated line by line and streamed in chunks of
  about 64 KiB, so a 50,000-line file costs no more memory than a small one.

A file id no terminal batch names now, or one that `deleted_file_rate` picked (the same files
every time, as if expired), gets 404 `No such File object: <id>` on both routes.

Download faults are drawn per content request from their own seeded RNG, so a retry of the
same file can succeed. Both cuts close the connection halfway through a body whose
Content-Length promised more: `file_drop_rate` in the middle of a line, `file_truncate_rate`
after a whole line (a client that does not check the length sees valid JSONL and misses the
rest). `file_slow_rate` trickles the body one line at a time, `file_slow_seconds` apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools

from aiohttp import web

from .data import FakeBatches
from .faults import FakeApiStats, FaultDraw, FaultPicker
from .gate import FileGate
from .ids import derive_key, mix
from .lines import FileSource, build_file_object, iter_lines
from .options import FakeApiOptions
from .replies import error_reply, json_reply, new_request_id

_CHUNK = 64 * 1024
_SIZES_KEPT = 1024  # a client asks for a File object and then its content, or the reverse


def _measure(source: FileSource) -> int:
    """The content's length in bytes: generated once, counted, and dropped."""
    return sum(map(len, iter_lines(source)))


class FileRoutes:
    """The handlers of the two file routes, with their faults and counters."""

    def __init__(self, data: FakeBatches, options: FakeApiOptions, stats: FakeApiStats) -> None:
        self._data = data
        self._options = options
        self._stats = stats
        self._faults = FaultPicker(
            derive_key(options.seed, 10),
            drop_rate=options.file_drop_rate,
            error_rate=0.0,
            rate_limit_rate=0.0,
            truncate_rate=options.file_truncate_rate,
            slow_rate=options.file_slow_rate,
        )
        self._k_deleted = derive_key(options.seed, 11)
        self._size = functools.lru_cache(maxsize=_SIZES_KEPT)(_measure)
        self.gate = FileGate()

    def add_to(self, router: web.UrlDispatcher, prefix: str = "/v1") -> None:
        """Route `GET {prefix}/files/{id}` and `GET {prefix}/files/{id}/content` here."""
        router.add_get(prefix + "/files/{file_id}", self._retrieve, name="retrieve_file")
        router.add_get(prefix + "/files/{file_id}/content", self._content, name="file_content")

    def served(self, file_id: str) -> FileSource | None:
        """The file's source, or None when no terminal batch names it or it was deleted."""
        source = self._data.file_source(file_id)
        if source is None:
            return None
        roll = mix(source.key ^ self._k_deleted ^ (source.kind == "error"))
        if roll < self._options.deleted_file_rate * 2**64:
            return None
        return source

    def _find(self, file_id: str) -> FileSource | None:
        """The file's source, as `served` says, counting deleted files asked for."""
        source = self.served(file_id)
        if source is None and self._data.file_source(file_id) is not None:
            self._stats.files_deleted += 1
        return source

    async def _retrieve(self, request: web.Request) -> web.Response:
        """GET /v1/files/{file_id}."""
        file_id = request.match_info["file_id"]
        source = self._find(file_id)
        if source is None:
            return _no_such_file(file_id)
        return json_reply(200, build_file_object(source, self._size(source)))

    async def _content(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/files/{file_id}/content."""
        file_id = request.match_info["file_id"]
        source = self._find(file_id)
        if source is None:
            return _no_such_file(file_id)
        size = self._size(source)
        draw = self._faults.draw()
        response = web.StreamResponse(headers={"x-request-id": new_request_id()})
        response.content_type = "application/octet-stream"
        response.content_length = size
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the client stopped reading
            await self._send(request, response, source, draw, size)
        return response

    async def _send(
        self,
        request: web.Request,
        response: web.StreamResponse,
        source: FileSource,
        draw: FaultDraw,
        size: int,
    ) -> None:
        """Write the lines in chunks, or up to the fault's cut and then close the connection."""
        stats = self._stats
        pause = self._options.file_slow_seconds if draw.slow else None
        stats.file_slow += draw.slow
        cut = size // 2 if draw.fault in ("drop", "truncate") else size + 1
        chunk = bytearray()
        lines = 0
        sent = 0
        sent_lines = 0
        for line in iter_lines(source):
            if sent + len(chunk) + len(line) > cut:
                if draw.fault == "drop":
                    chunk += line[: cut - sent - len(chunk)]
                await _write(response, chunk, lines, stats)
                if draw.fault == "drop":
                    stats.file_dropped += 1
                else:
                    stats.file_truncated += 1
                if request.transport is not None:
                    request.transport.close()
                return
            chunk += line
            lines += 1
            if pause is not None or len(chunk) >= _CHUNK:
                sent += await _write(response, chunk, lines, stats)
                sent_lines += lines
                chunk, lines = bytearray(), 0
                if pause is not None:
                    await asyncio.sleep(pause)
                await self.gate.pass_at(sent_lines)
        await _write(response, chunk, lines, stats)
        stats.files_served += 1


async def _write(
    response: web.StreamResponse, chunk: bytearray, lines: int, stats: FakeApiStats
) -> int:
    """Write one chunk of `lines` whole lines (maybe plus a cut one) and count it."""
    if chunk:
        await response.write(bytes(chunk))
    stats.file_bytes += len(chunk)
    stats.file_lines += lines
    return len(chunk)


def _no_such_file(file_id: str) -> web.Response:
    """The 404 of a file that does not exist, or no longer does."""
    return error_reply(404, f"No such File object: {file_id}", "invalid_request_error", "id")
