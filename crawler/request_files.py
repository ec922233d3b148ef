"""The batches' output and error files, line by line into `batch_requests`, several at a time.

A file is read as it arrives and committed a chunk of lines at a time, so that memory stays
flat whatever its size; one read again after an interruption upserts the same rows. Which
files are still to fetch is a query (`batch_files`), so a run killed anywhere loses nothing.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import itertools
import random
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from .api import ApiClient
from .bodies import FileBody
from .budget import OutOfTime, before_deadline, spent
from .errors import (
    ROUTE_FAILURES,
    ApiError,
    AuthenticationError,
    BrokenResponseError,
    QuotaExceededError,
    UnknownRouteError,
    UnstorableBatchError,
)
from .jsontext import is_json, parse
from .redact import Secret, holds_secret, mask_values, may_hold_secret
from .request_rows import REQUEST_COLUMNS, UnusableLineError, build_request_row
from .rows import fit_rows
from .store import FileToFetch, Store
from .store.requests import READ_SHORT

_CUSTOM_ID = REQUEST_COLUMNS.index("custom_id")

# Lines a transaction: enough that commits cost little (each one writes again every page of
# the primary-key index its lines' custom_ids land on, in no order: for a 47,372-line file,
# 3,000 lines a commit wrote 69 MB where 500 wrote 136 MB), few enough that the chunks in
# flight keep memory flat (bench/files.py, peak RSS over a 455-line file's: 500 lines 7.5 MB,
# 1,000 lines 9.5 MB, 3,000 lines 15 MB; time over the download alone: 2.1, 2.0, 1.6 x).
LINES_PER_COMMIT = 1000

# And at most this much line text a transaction, so that a file of long lines (bodies, long
# answers) keeps memory as flat.
BYTES_PER_COMMIT = 2**20

# A line longer than this is no request outcome (a long answer is a few MB): the file is
# broken, and reading on would hold it all in memory.
MAX_LINE_BYTES = 64 * 2**20

# Lines longer than this (a long answer) are mapped in Python: SQLite (before 3.45) held
# about 50 times a line's size while mapping it (a 60 MB line took 3 GB), Python a few times.
SQL_LINE_BYTES = 2**18

# A batch holds at most 50,000 requests: a file of more lines is no batch's, and one that
# never ends would fill the disk.
MAX_FILE_LINES = 50_000

# Bytes of lines handed on ahead of the database (see _WriteQueue): a large file's chunks
# one at a time, enough that memory stays flat (two ahead cost 1 MB more at the peak, for
# no time measurably saved), and many small files' chunks at once, so that their workers
# go on asking while the writer commits (one chunk or outcome ahead, a first sync of
# 10,000 batches with their error files took 9 % longer at 20 ms latency).
BYTES_AHEAD = BYTES_PER_COMMIT // 2
# And at most this many chunks and outcomes.
WRITES_AHEAD = 32

# Files not failed before whose retries ran out on server errors or failed connections (or
# that answered 403, or 404 for the path), one after the other with none fetched between,
# before the run stops fetching files: the files route is down (out of the key's reach, or
# not served at all), and going on would cost every file its retries (8 attempts, half a
# minute each), or ask each file on every sync.
FAILURES_IN_A_ROW = 3
# Syncs in a row a file is read without one request line before it is taken to be empty.
EMPTY_AGREEMENT = 3

# Warnings kept word for word per file; past these, only counted.
MAX_FILE_WARNINGS = 3


class LineBuffer:
    """Splits a byte stream into lines, whatever the chunks' boundaries."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> bytearray | None:
        """The whole lines `chunk` completes, as one block without its last line break; None
        when it completes none. The unfinished rest is kept for the next chunk.

        Raises:
            BrokenResponseError: a line runs past MAX_LINE_BYTES.
        """
        self._pending += chunk
        if b"\n" not in chunk:  # a long line going on: split nothing until it ends
            if len(self._pending) > MAX_LINE_BYTES:
                raise BrokenResponseError(
                    f"a line runs past {MAX_LINE_BYTES // 2**20} MiB: not a batch file",
                    should_retry=False,
                )
            return None
        end = self._pending.rindex(b"\n")
        block = self._pending[:end]
        del self._pending[: end + 1]
        return block

    def end(self) -> list[bytearray]:
        """The last line, when the stream does not end with a line break."""
        rest, self._pending = self._pending, bytearray()
        return [rest] if rest.strip() else []


@dataclass
class FileRead:
    """What reading one file gave: its size, the request lines stored, what was odd."""

    # Marks the rows this reading writes: read whole, the file's other rows go.
    reading: int = field(default_factory=lambda: random.getrandbits(62))
    size: int = 0
    lines: int = 0
    warnings: list[str] = field(default_factory=list)
    more_warnings: int = 0
    ids_holding_the_key: int = 0  # request lines left out for it
    end_unchecked: bool = False  # its body's end, a connection closed, may have been a cut
    lines_held: int = 0  # its request lines, stored or not (blank ones left out)

    def warn(self, warning: str) -> None:
        if len(self.warnings) < MAX_FILE_WARNINGS:
            self.warnings.append(warning)
        else:
            self.more_warnings += 1


@dataclass
class LineChunk:
    """A chunk of a file's lines on their way to the database: most as JSON text for SQLite
    to map (see store.requests.store_lines), the rest as rows built here."""

    texts: list[tuple[int, str]] = field(default_factory=list)  # (line number, JSON text)
    rows: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)  # (number, row)
    size: int = 0  # bytes of its lines
    first: bool = False  # the first of a reading of the file, from line 1

    def __len__(self) -> int:
        return len(self.texts) + len(self.rows)


SaveChunk = Callable[["FileRead", LineChunk], Awaitable[None]]


async def read_requests(
    body: FileBody,
    file: FileToFetch,
    save: SaveChunk,
    *,
    keep_body: bool,
    secret: Secret = None,
) -> FileRead:
    """Hand every request line of one file to `save`, a chunk of lines at a time.

    `save(read, chunk)` stores the chunk, adding to `read` the rows it stored and the lines
    it left out. Blank lines are skipped; a line that is not JSON, or holds no `custom_id`,
    is noted by its number and the rest of the file is stored.

    Raises:
        BrokenResponseError: the file ends in the middle of a line that is not JSON in a
            body whose end nothing checks, so cut short (asked again), or runs past
            MAX_FILE_LINES request lines or blank lines (not asked again).
    """
    lines = _FileLines(file, keep_body=keep_body, secret=secret)
    lines.read.end_unchecked = body.cut_may_pass_unseen
    buffer = LineBuffer()
    try:
        async for data in body.chunks:
            lines.read.size += len(data)
            block = buffer.feed(data)
            if block is not None:
                lines.add_block(block)
            if lines.chunk_is_full():
                await save(lines.read, lines.take_chunk())
        tail = buffer.end()
        if tail and body.cut_may_pass_unseen and not is_json(tail[0]):
            raise BrokenResponseError(
                f"file {file.file_id} ended in the middle of a line, in a body whose end "
                "nothing checks (no declared length): the transfer was cut short"
            )
        for line in tail:
            lines.add(line)
    except _TooLong as too_long:
        await save(lines.read, lines.take_chunk())
        raise BrokenResponseError(
            f"file {file.file_id} holds more than {MAX_FILE_LINES:,} {too_long}, more than a "
            "batch has requests: not a batch file; the lines before were stored",
            should_retry=False,
        ) from None
    chunk = lines.take_chunk()
    if chunk or chunk.first:  # a reading of no line replaces an earlier one's lines too
        await save(lines.read, chunk)
    lines.read.lines_held = lines.held()
    return lines.read


class _FileLines:
    """One file's lines as they come, numbered, into chunks: texts for SQLite to map, or rows
    built here (see text_for_sqlite), and what was odd in `read`."""

    def __init__(self, file: FileToFetch, *, keep_body: bool, secret: Secret) -> None:
        self._file = file
        self._keep_body = keep_body
        self._secret = secret
        self.read = FileRead()
        self._chunk = LineChunk(first=True)
        self._number = 0  # of the last line, blank ones counted
        self._blanks = 0

    def chunk_is_full(self) -> bool:
        return len(self._chunk) >= LINES_PER_COMMIT or self._chunk.size >= BYTES_PER_COMMIT

    def held(self) -> int:
        """The request lines so far, stored or not."""
        return self._number - self._blanks

    def take_chunk(self) -> LineChunk:
        chunk, self._chunk = self._chunk, LineChunk()
        return chunk

    def add_block(self, block: bytearray) -> None:
        """Whole lines, one chunk's: looked at together when that tells enough."""
        texts = plain_lines(block, self._secret)
        if texts is None or self._number - self._blanks + len(texts) > MAX_FILE_LINES:
            for line in block.split(b"\n"):
                self.add(line)
            return
        self._chunk.texts.extend(zip(itertools.count(self._number + 1), texts, strict=False))
        self._number += len(texts)
        self._chunk.size += len(block)

    def add(self, line: bytearray) -> None:
        """One line, looked at alone."""
        if self._number == 0 and line.startswith(_BOM):
            del line[: len(_BOM)]  # a file written by a Windows tool; the line is as good
        if not line.strip():
            # Skipped, but counted: a file of blank lines without end is no batch's either.
            self._blanks += 1
            if self._blanks > MAX_FILE_LINES:
                raise _TooLong("blank lines")
            self._number += 1
            return
        if self._number - self._blanks >= MAX_FILE_LINES:
            raise _TooLong("lines")
        self._number += 1
        self._chunk.size += len(line)
        text = text_for_sqlite(line, self._secret)
        if text is not None:
            self._chunk.texts.append((self._number, text))
        else:
            self._add_row(line)

    def _add_row(self, line: bytearray) -> None:
        file, number, secret = self._file, self._number, self._secret
        try:
            row = build_request_row(
                parse(line), file.batch_id, file.file_id, file.kind, keep_body=self._keep_body
            )
        except UnusableLineError as exc:
            self.read.warn(f"file {file.file_id} line {number}: {exc}, not stored")
        except ValueError:
            self.read.warn(f"file {file.file_id} line {number}: not JSON, not stored")
        else:
            if holds_secret(row[_CUSTOM_ID], secret):
                # Masked, it could merge with another line's id: left out instead.
                self.read.ids_holding_the_key += 1
                self.read.warn(
                    f"file {file.file_id} line {number}: custom_id holds a secret (a key, a "
                    "token or a proxy credential), not stored"
                )
            else:
                self._chunk.rows.append((number, mask_values(row, secret) if secret else row))


_BOM = "\ufeff".encode()


class _TooLong(Exception):
    """A file went on past MAX_FILE_LINES."""


# A \u escape of an ASCII character: of the printable ones JSON writers escape none, so a
# line holding one may spell the key out of sight of the search on its text (SQLite decodes
# it later); of the others, \u000a folds the key over lines as \n does.
_ESCAPED_ASCII = re.compile(r"\\u00[0-7][0-9a-fA-F]")


def plain_lines(block: bytearray, secret: Secret) -> list[str] | None:
    """The lines of `block` (one chunk's whole lines) as texts for SQLite to map, when a look
    at the block shows that none needs a look of its own (see text_for_sqlite): none blank,
    too long, holding a \\u escape, a NUL, or what may be a run of the key. None otherwise:
    each line is then looked at alone.

    One look a chunk, mostly in C, instead of one a line in Python: the event loop's share
    of storing an error line fell from 2.7 µs to 1.0 (the fake's error files)."""
    if b"\x00" in block or (b"\\" in block and b"\\u" in block):  # one-byte searches are fast
        return None
    try:
        text = block.decode()
    except UnicodeDecodeError:
        return None
    if not text.startswith("{") or may_hold_secret(text, secret, json_lines=True):  # no BOM
        return None
    lines = text.split("\n")
    # Every line begins with "{" or a character after it, so none is blank: a blank one
    # (empty, or spaces) is skipped and counted, not handed to SQLite as a line.
    if not min(lines).startswith("{"):
        return None
    # A character takes up to 4 bytes: only text of single-byte characters has them alike.
    longest = SQL_LINE_BYTES if len(text) == len(block) else SQL_LINE_BYTES // 4
    if len(text) > longest and max(map(len, lines)) > longest:
        return None
    return lines


def text_for_sqlite(line: bytearray, secret: Secret) -> str | None:
    """The line as text for SQLite to map, or None when it is for Python to: longer than
    SQL_LINE_BYTES, not UTF-8, a surrogate escape (alone, it would become text SQLite
    stores broken), a NUL, escaped or not (SQLite's JSON functions end a text there), the
    key (a server echoing it: masked before it is stored), or an escaped ASCII character
    (the key may hide in escapes, or be folded over lines by \\u000a: Python decodes them,
    then masks)."""
    if len(line) > SQL_LINE_BYTES:
        return None
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return None
    if "\\u" in text and ("\\ud" in text or "\\uD" in text or _ESCAPED_ASCII.search(text)):
        return None
    if "\x00" in text:  # SQLite's JSON parser stops at a NUL byte, and takes what came before
        return None
    if holds_secret(text, secret):
        return None
    return text


@dataclass(frozen=True)
class FileOutcome:
    """How one file ended: `complete`, `expired` (404) or `failed`."""

    file: FileToFetch
    state: str
    read: FileRead | None = None
    error: ApiError | None = None
    bodies: bool = False  # complete, its lines stored with their bodies
    empty: bool = False  # read whole, without one request line

    def warnings(self) -> list[str]:
        """What the run says of this file: why it failed, or what was odd in it."""
        file, read = self.file, self.read
        where = f"file {file.file_id} of batch {file.batch_id}"
        again_for_bodies = file.state == "complete"  # its lines stay as stored before
        if self.error is not None and again_for_bodies:
            return [f"{where} (stored without bodies) was not read again: {self.error}"]
        if self.error is not None and file.last_ask:
            return [
                f"{where} was not stored, and is not asked for again: expired for good "
                f"(answered 404 on the syncs before), it had this account's one ask: "
                f"{self.error}"
            ]
        if self.error is not None:
            return [f"{where} was not stored, and is asked for again next sync: {self.error}"]
        if read is None and again_for_bodies:
            return [f"{where} answers 404: its lines stay as they were stored"]
        if read is None:  # deleted or expired: nothing to store, ever
            return []
        said = list(read.warnings)
        if read.more_warnings:
            said.append(f"{where}: {read.more_warnings:,} more odd lines, not stored")
        # More lines than counted are no cut: an expired batch's error file holds a line
        # for each request never run, which its counts leave out.
        if file.expected_lines is not None and read.lines < file.expected_lines:
            said.append(
                f"{where} holds {read.lines:,} request lines where the batch counts "
                f"{file.expected_lines:,} (a transfer cut short?)"
            )
        return said

    def record(self) -> dict[str, Any]:
        """What `batch_files` keeps of how the file ended (see Store.finish_file)."""
        if self.error is not None:
            return {"error": str(self.error), "empty": self.empty}
        if self.read is None:
            return {}
        read = self.read
        return {
            "size": read.size,
            "lines": read.lines,
            "bodies": self.bodies,
            "empty": self.empty,
            "reading": read.reading,
        }


_Write = tuple[FileToFetch, FileRead, LineChunk] | FileOutcome


def _about_the_key(error: ApiError) -> bool:
    """Whether a refusal is about the key or the account, not about one file: it ends the
    run. A 403 is the file's (that file, or files, out of the key's reach: 3 fresh files
    in a row stop the run's files, as an outage does)."""
    if isinstance(error, AuthenticationError):
        return error.status != 403
    return isinstance(error, QuotaExceededError)


def _judge_an_empty_reading(outcome: FileOutcome) -> FileOutcome:
    """How a file read whole without one request line ended. Mostly it is not the file (a
    proxy's page answered 200, an error object, an empty body): failed, asked for again
    next sync, not recorded complete and never asked for again. Whatever its batch counts:
    an expired batch's error file holds its requests never run, which its `failed` count
    may leave out, and some servers give no counts. Some servers do name an empty file,
    though (an error file where nothing failed): where the batch's counts say it holds none
    (a batch without counts never) and nothing in it was refused (no page, no object),
    EMPTY_AGREEMENT syncs in a row reading it so record it empty, as three 404s record a
    file expired."""
    file, read = outcome.file, outcome.read
    if outcome.state != "complete" or read is None or read.lines:
        return outcome
    agreed = file.empty_runs + 1 >= EMPTY_AGREEMENT
    nothing_refused = not read.warnings and not read.more_warnings
    if agreed and nothing_refused and file.expected_lines == 0 and file.state != "complete":
        read.warn(
            f"file {file.file_id}: read without one request line on {EMPTY_AGREEMENT} syncs "
            "in a row: recorded empty, no longer asked for"
        )
        return dataclasses.replace(outcome, empty=True)
    if file.expected_lines:
        held = f" where the batch counts {file.expected_lines:,}"
    elif file.state == "complete":
        held = " where it held some before"
    else:
        held = ""
    if read.ids_holding_the_key:  # request lines there were: not a proxy's page
        why = (
            f"its {read.ids_holding_the_key:,} request lines were each left out, their "
            "custom_id holding the API key (a server echoing it)"
        )
    else:
        why = f"its {read.size:,} bytes hold no request line{held}: not the file (a proxy's page?)"
    error = BrokenResponseError(why)
    return dataclasses.replace(outcome, state="failed", error=error, empty=True)


def _judge_a_short_reading(outcome: FileOutcome) -> FileOutcome:
    """How a file read whole ended when its body's end nothing checks (no declared length)
    and it holds fewer lines than its batch counts: cut at a line's end, as a server
    streaming line by line that dies cuts it, it was recorded complete and never read
    again. Failed, asked for again next sync; kept the second time in a row (a batch's
    counts may be off: an expired batch's error file), and, read again for its bodies, a
    file stored whole only if it holds as many lines as it did (fewer are cut short: the
    lines stored stay; as many, it was asked for on every sync, its bodies never kept)."""
    file, read = outcome.file, outcome.read
    if outcome.state != "complete" or read is None or not read.end_unchecked:
        return outcome
    expected = file.expected_lines
    if expected is None or not 0 < read.lines_held < expected:
        return outcome
    if file.state == "complete":
        if file.lines is not None and read.lines_held >= file.lines:
            return outcome
    elif file.read_short_before:
        return outcome
    error = BrokenResponseError(
        f"{READ_SHORT}its {read.lines_held:,} request lines, where the batch counts "
        f"{expected:,}, came in a body whose end nothing checks (no declared length): the "
        "transfer was cut short?"
    )
    return dataclasses.replace(outcome, state="failed", error=error)


def _route_failing(outcome: FileOutcome) -> bool:
    """Whether a file's failure says the files route is failing (out of the key's reach, or
    not served): server errors, failed connections and 429s, asked again until retries ran
    out, 403s, and 404s for the path (no error envelope, or "Invalid URL"); not
    a body refused at once (an encoding not asked for) or broken, which is that file's
    alone, nor a file failing again after an earlier sync (the same few would otherwise
    stop every sync before the files after them). A file stored without bodies, read again
    for them, counts as a fresh one until such a reading fails."""
    error = outcome.error
    if outcome.file.failed_before or error is None:
        return False
    if isinstance(error, AuthenticationError | UnknownRouteError):
        return True  # a 403 (the others raise), or no files route
    return isinstance(error, ROUTE_FAILURES) and error.retryable


class _WriteQueue:
    """Chunks (and outcomes) on their way to the writer, in order: one waits to be handed on
    while the chunks waiting hold BYTES_AHEAD of lines, or WRITES_AHEAD are waiting. A chunk
    larger than that waits for the queue to empty."""

    def __init__(self) -> None:
        self._waiting: collections.deque[tuple[_Write | None, int]] = collections.deque()
        self._bytes = 0
        self._changed = asyncio.Condition()

    def _has_room(self, size: int) -> bool:
        if not self._waiting:
            return True
        return self._bytes + size <= BYTES_AHEAD and len(self._waiting) < WRITES_AHEAD

    async def put(self, item: _Write | None, size: int = 0) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._has_room(size))
            self._waiting.append((item, size))
            self._bytes += size
            self._changed.notify_all()

    async def get(self) -> _Write | None:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._waiting))
            item, size = self._waiting.popleft()
            self._bytes -= size
            self._changed.notify_all()
        return item


class FileFetcher:
    """Workers that fetch the files still to fetch until none is left, or told to stop.

    The list walk records files as it commits pages; `more()` wakes idle workers, and
    `walk_ended()` lets them stop once nothing is left.
    """

    def __init__(
        self,
        client: ApiClient,
        store: Store,
        *,
        kinds: Collection[str],
        keep_body: bool,
        concurrency: int,
        on_outcome: Callable[[FileOutcome], Awaitable[None]],
        time_left: Callable[[], float | None],
        secret: Secret = None,
    ) -> None:
        """`time_left`: seconds left of the run's time budget (None: no budget); a download
        still going when it runs out is abandoned, its file left to fetch next time."""
        self._client = client
        self._store = store
        self._kinds = tuple(kinds)
        self._keep_body = keep_body
        self._concurrency = concurrency
        self._on_outcome = on_outcome
        self._time_left = time_left
        self._secret = secret  # the API key: masked in any line that holds it
        self._more = asyncio.Event()
        self._walking = True
        self._claim_lock = asyncio.Lock()
        self._claimed: collections.deque[FileToFetch] = collections.deque()
        self._claimed_up_to = 0  # files are claimed in the order they were recorded
        # Chunks and outcomes on their way to the database, in order: a worker hands its
        # file's lines on and asks for the next file while the writer commits them.
        self._writes = _WriteQueue()
        self._failing = 0  # files failed in a row, the files route seeming down
        self._route_answered = False  # a file of this run was stored, or answered 404
        self._asked = 0  # files of this run asked for, and ended
        self._refused = 0  # of them refused (403)
        self._without_route = 0  # of them answered 404 for the path: no files route
        self.stopped = False
        self.route_down = False  # files failing one after the other stopped the run's files
        self._downloads: set[asyncio.Task[FileOutcome]] = set()  # the workers' files in flight
        self.cut_by_the_budget: list[FileToFetch] = []  # files whose download the budget ended

    def more(self) -> None:
        """New files may be waiting: a page was committed."""
        self._more.set()

    def walk_ended(self, *, complete: bool) -> None:
        """The walk is over: fetch what is left, or, if a budget cut it short, stop."""
        self._walking = False
        if not complete:
            self.stopped = True
        self._more.set()

    async def run(self) -> bool:
        """Fetch until nothing is left; False when stopped with files still to fetch."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._write())
            async with asyncio.TaskGroup() as workers:
                for _ in range(self._concurrency):
                    workers.create_task(self._work())
            await self._writes.put(None)
        return not self.stopped

    async def _write(self) -> None:
        """Commit chunks and record how files ended, in the order the workers handed them on."""
        while (item := await self._writes.get()) is not None:
            if isinstance(item, FileOutcome):
                await self._on_outcome(_judge_a_short_reading(_judge_an_empty_reading(item)))
                continue
            file, read, chunk = item
            odd: list[str] = []
            save = functools.partial(
                self._store.save_requests,
                file,
                chunk.texts,
                keep_body=self._keep_body,
                reading=read.reading,
                # A reading from line 1 replaces the lines of one cut short before (a file
                # served anew may hold other lines). Not those of a file stored whole, read
                # again for its bodies: they stay until it is stored whole again.
                replacing=chunk.first and file.state != "complete",
            )
            try:
                stored, unusable = await save(chunk.rows)
            except UnstorableBatchError:
                # Nothing was written: store the chunk with what SQLite refused made
                # storable (a lone surrogate replaced, say), saying what changed.
                numbers = [number for number, _ in chunk.rows]
                fitted = fit_rows(REQUEST_COLUMNS, [row for _, row in chunk.rows], odd)
                stored, unusable = await save(list(zip(numbers, fitted, strict=True)))
            read.lines += stored
            for number, why in unusable:
                read.warn(f"file {file.file_id} line {number}: {why}, not stored")
            for warning in odd:
                read.warn(f"file {file.file_id}: {warning}")

    async def _work(self) -> None:
        while True:
            if spent(self._time_left()):
                self.stopped = True
            if self.stopped:
                return
            file = await self._claim()
            if file is None:
                if not self._walking:
                    return
                await self._more.wait()
                continue
            try:
                outcome = await before_deadline(self._download(file), self._time_left())
            except OutOfTime:
                self.stopped = True  # the file stays to fetch: the next sync reads it whole
                self.cut_by_the_budget.append(file)
                return
            # In flight when the route was found down: left as it was, to fetch next sync,
            # not failed (each sync would add that many files failed before, each retried in
            # full on every later sync).
            if outcome is None or (_route_failing(outcome) and self.stopped):
                return
            self._count(outcome)
            await self._writes.put(outcome)

    def _count(self, outcome: FileOutcome) -> None:
        """Count how a file asked for ended; the files route failing for FAILURES_IN_A_ROW
        files stops the run's files, and those in flight with them."""
        if _route_failing(outcome):
            self._failing += 1
            # The files left stay to fetch: the run ends partial, the next one goes on.
            self.route_down = self.stopped = self._failing >= FAILURES_IN_A_ROW
            if self.route_down:
                for download in self._downloads:
                    download.cancel()
        elif outcome.error is None:  # the route answered: stored, or 404
            self._failing = 0
            self._route_answered = True
        self._asked += 1
        if isinstance(outcome.error, AuthenticationError):  # a 403: the others raise
            self._refused += 1
        elif isinstance(outcome.error, UnknownRouteError):
            self._without_route += 1

    @property
    def key_refused(self) -> bool:
        """Whether every file this run asked for, FAILURES_IN_A_ROW at least, was refused
        (403): the key may not read files, which only the user can change; every sync would
        fail so. (One file out of the key's reach, left alone to ask again, is not that.)"""
        return self._every_file_asked(self._refused)

    @property
    def no_files_route(self) -> bool:
        """Whether every file this run asked for, FAILURES_IN_A_ROW at least, answered 404
        for the path: the API (a proxy, a compatible server) serves no files there, or the
        base URL is wrong, which only the user can change."""
        return self._every_file_asked(self._without_route)

    def _every_file_asked(self, ended_so: int) -> bool:
        return ended_so >= FAILURES_IN_A_ROW and ended_so == self._asked

    async def _claim(self) -> FileToFetch | None:
        """The next file to fetch, claimed by this worker alone (and this run's other
        accounts: see Store.claim_file); None when none is waiting."""
        async with self._claim_lock:
            while True:
                if not self._claimed:
                    # Cleared before asking: a page committed meanwhile sets it again.
                    self._more.clear()
                    batch = 2 * self._concurrency
                    found = await self._store.files_to_fetch(
                        self._kinds, self._claimed_up_to, batch, bodies=self._keep_body
                    )
                    self._claimed.extend(found)
                if not self._claimed:
                    return None
                file = self._claimed.popleft()
                self._claimed_up_to = file.position
                if self._store.claim_file(file):
                    return file

    async def _download(self, file: FileToFetch) -> FileOutcome | None:
        """How reading `file` ended, or None when the files route was found down meanwhile
        (other files failing past their retries): read on to its last retry, a file
        claimed just before kept the run as long again."""
        download = asyncio.create_task(self._fetch(file))
        self._downloads.add(download)
        try:
            return await download
        except asyncio.CancelledError:
            running = asyncio.current_task()
            if running is not None and running.cancelling():
                raise  # the run's, or its budget's
            return None
        finally:
            self._downloads.discard(download)

    async def _fetch(self, file: FileToFetch) -> FileOutcome:
        async def save(read: FileRead, chunk: LineChunk) -> None:
            await self._writes.put((file, read, chunk), chunk.size)

        async def consume(body: FileBody) -> FileRead:
            # Each attempt counts into a FileRead of its own: a retry reads from line 1.
            return await read_requests(
                body, file, save, keep_body=self._keep_body, secret=self._secret
            )

        # A file that failed on an earlier sync is asked once until a file of this sync is
        # stored: through an outage, each sync would otherwise spend every such file's
        # retries, more with each sync. Once the route answers, it gets them all again.
        attempts = 1 if file.failed_before and not self._route_answered else None
        try:
            read = await self._client.read_file(file.file_id, consume, attempts=attempts)
        except ApiError as exc:
            if _about_the_key(exc):
                raise
            return FileOutcome(file, "failed", error=exc)
        if read is None:
            return FileOutcome(file, "expired")
        return FileOutcome(file, "complete", read, bodies=self._keep_body)
