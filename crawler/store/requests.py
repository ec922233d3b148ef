"""The SQL of the batches' request files: which to fetch, their lines, and how each ended."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..request_rows import REQUEST_COLUMNS
from .statements import execute_rows

# Each row with the reading of its file that wrote it (migrations/0017_request_readings.sql).
_WRITTEN_COLUMNS = (*REQUEST_COLUMNS, "reading")
_ON_CONFLICT = "ON CONFLICT(batch_id, custom_id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in _WRITTEN_COLUMNS if c not in {"batch_id", "custom_id"}
)
_UPSERT_REQUESTS = (
    f"INSERT INTO batch_requests ({', '.join(_WRITTEN_COLUMNS)}) VALUES {{values}} " + _ON_CONFLICT
)


# The same mapping as `request_rows.build_request_row`, computed by SQLite from a line's JSON
# text: parsing 50,000 lines and building their rows then runs in SQLite's C code on the
# database thread, without the GIL, while the event loop reads the next chunk (a 50,000-line
# output file was stored in about half the time). tests/test_request_lines_sql.py holds the
# two to the same rows, line for line.
#
# SQLite (before 3.45) parses a JSON text again for every function called on it: a line's
# error and usage objects are taken out of it once (`_LINE_PARTS`), and their fields read
# from those small texts, not from the whole line each time (about 45 parses a line were
# 20).
_BODY = "$.response.body"


def _text(path: str, json: str = "line") -> str:
    """Text as sent; a number or anything else as JSON text; null or missing is NULL."""
    return (
        f"CASE json_type({json}, '{path}') WHEN 'text' THEN {json} ->> '{path}' "
        f"WHEN 'null' THEN NULL ELSE {json} -> '{path}' END"
    )


def _number(path: str, json: str = "line") -> str:
    """A number as sent, if SQLite holds it exactly as an integer or a real; else NULL."""
    value = f"json_extract({json}, '{path}')"
    return (
        f"CASE json_type({json}, '{path}') WHEN 'real' THEN {value} "
        f"WHEN 'integer' THEN iif(typeof({value}) = 'integer', {value}, NULL) END"
    )


def _either(condition: str, then: str, otherwise: str) -> str:
    return f"CASE WHEN {condition} THEN {then} ELSE {otherwise} END"


_FINISH_REASON = (
    f"CASE WHEN json_type(line, '{_BODY}.choices') = 'array' "
    f"AND json_array_length(line, '{_BODY}.choices') > 0 "
    f"THEN {_text(_BODY + '.choices[0].finish_reason')} "
    f"WHEN line ->> '{_BODY}.object' = 'response' "
    f"OR json_type(line, '{_BODY}.incomplete_details') IS NOT NULL "
    f"THEN coalesce({_text(_BODY + '.incomplete_details.reason')}, {_text(_BODY + '.status')}) "
    "END"
)
# Read from the whole line, once each; `body_error`, `line_error` and `usage` are JSON texts.
_LINE_PARTS = {
    "custom_id": "line ->> '$.custom_id'",
    "batch_request_id": _text("$.id"),
    "status_code": _number("$.response.status_code"),
    "request_id": _text("$.response.request_id"),
    "body_error": f"line -> '{_BODY}.error'",
    "line_error": "line -> '$.error'",
    "usage": f"line -> '{_BODY}.usage'",
    "model": _text(f"{_BODY}.model"),
    "finish_reason": _FINISH_REASON,
    "body": f"iif(:keep_body AND json_type(line, '{_BODY}') != 'null', line -> '{_BODY}', NULL)",
}
# The endpoint's error when the body carries one (a refused request), else the line's own.
_BODY_ERROR = "json_type(body_error) = 'object' AND body_error != '{}'"
# `input_tokens` naming (responses) rather than `prompt_tokens` (chat, completions, embeddings).
_RESPONSES_USAGE = (
    "(json_type(usage, '$.input_tokens') IS NOT NULL "
    "OR json_type(usage, '$.output_tokens') IS NOT NULL)"
)
_LINE_VALUES = {
    **{name: name for name in _LINE_PARTS},
    "batch_id": ":batch_id",
    "file_id": ":file_id",
    "kind": ":kind",
    **{
        f"error_{field}": _either(
            _BODY_ERROR, _text(f"$.{field}", "body_error"), _text(f"$.{field}", "line_error")
        )
        for field in ("code", "message", "type", "param")
    },
    "input_tokens": _either(
        "json_type(usage, '$.input_tokens') IS NOT NULL",
        _number("$.input_tokens", "usage"),
        _number("$.prompt_tokens", "usage"),
    ),
    **{
        column: _either(
            _RESPONSES_USAGE, _number(f"$.{responses}", "usage"), _number(f"$.{chat}", "usage")
        )
        for column, responses, chat in (
            (
                "cached_input_tokens",
                "input_tokens_details.cached_tokens",
                "prompt_tokens_details.cached_tokens",
            ),
            ("output_tokens", "output_tokens", "completion_tokens"),
            (
                "reasoning_tokens",
                "output_tokens_details.reasoning_tokens",
                "completion_tokens_details.reasoning_tokens",
            ),
        )
    },
    "total_tokens": _number("$.total_tokens", "usage"),
}
# A line holding a request outcome: a JSON object with a non-empty text `custom_id`.
_USABLE = (
    "json_valid(line) AND json_type(line) = 'object' "
    "AND json_type(line, '$.custom_id') IS 'text' AND line ->> '$.custom_id' != ''"
)
_CREATE_LINES = (
    "CREATE TEMP TABLE IF NOT EXISTS request_lines (number INTEGER PRIMARY KEY, line TEXT)"
)
_STORE_LINES = (
    # MATERIALIZED: computed once a line, not again wherever the outer query names them.
    "WITH parts AS MATERIALIZED (SELECT number, "
    + ", ".join(f"{value} AS {name}" for name, value in _LINE_PARTS.items())
    + f" FROM temp.request_lines WHERE {_USABLE}) "
    f"INSERT INTO batch_requests ({', '.join(_WRITTEN_COLUMNS)}) "
    f"SELECT {', '.join(_LINE_VALUES[c] for c in REQUEST_COLUMNS)}, :reading "
    "FROM parts WHERE true ORDER BY number " + _ON_CONFLICT
)
_UNUSABLE_LINES = (
    "SELECT number, CASE WHEN NOT json_valid(line) THEN 'not JSON' "
    "WHEN json_type(line) != 'object' THEN 'not a JSON object' ELSE 'no custom_id' END "
    f"FROM temp.request_lines WHERE NOT ({_USABLE}) ORDER BY number"
)

# The lines a file should hold, from its batch's request counts.
_EXPECTED_LINES = {"output": "request_counts_completed", "error": "request_counts_failed"}


@dataclass(frozen=True)
class FileToFetch:
    """A file a terminal batch names, not yet stored whole."""

    file_id: str
    batch_id: str
    kind: str  # output, error
    expected_lines: int | None  # from the batch's request counts, when it has them
    position: int  # its order in `batch_files` (the rowid)
    state: str = "pending"  # pending, failed or expired on an earlier sync, or complete
    # Asked for on an earlier sync and not had: failed, expired, or, stored whole without
    # bodies, read again for them and failed.
    failed_before: bool = False
    empty_runs: int = 0  # syncs in a row it was read whole without one request line
    # Expired for good: this account's one ask of it (see _EXPIRED_FOR_GOOD), not repeated.
    last_ask: bool = False
    # Its last reading held fewer lines than its batch counts, in a body whose end nothing
    # checks (request_files._judge_a_short_reading).
    read_short_before: bool = False
    lines: int | None = None  # the request lines stored of it (complete)


# A file answered 404 is expired for good once this many syncs in a row answered 404 and
# each account that may read it was among them, or once EXPIRED_FOR_GOOD syncs did,
# whoever answered; not_found_runs is then EXPIRED_FOR_GOOD (0019_file_readers.sql).
AGREED_404_RUNS = 3
# How the error of a reading judged short begins (request_files._judge_a_short_reading).
READ_SHORT = "read short: "
EXPIRED_FOR_GOOD = 6
# The files still to fetch, as the index batch_files_to_fetch spells them (SQLite uses a
# partial index only for a query that says its condition): pending, failed, and answered
# 404 but not expired for good.
_TO_FETCH = (
    f"state IN ('pending', 'failed') OR (state = 'expired' AND not_found_runs < {EXPIRED_FOR_GOOD})"
)
# And, for a run that keeps bodies, those stored without (batch_files_without_bodies, see
# migrations/0015_bodies_asked_later.sql), holding lines.
_WITHOUT_BODIES = (
    f"state = 'complete' AND bodies = 0 AND not_found_runs < {EXPIRED_FOR_GOOD} AND lines > 0"
)
# And those expired for good, for an account that has not asked (batch_files_expired): one
# that syncs less often, or was down, than the one that answered 404 six times.
_EXPIRED_FOR_GOOD = f"state = 'expired' AND not_found_runs >= {EXPIRED_FOR_GOOD}"


@dataclass(frozen=True)
class FileAsker:
    """An account of the run that fetches files: of which kinds, and whether with bodies
    (then also those stored without)."""

    account: str
    kinds: Collection[str]
    bodies: bool


# The accounts that may ask for a file: the batch's owner, every other account listing it
# (0021_batch_listings.sql), and the account whose listing named the file
# (0019_file_readers.sql); the listers as a JSON array.
_READERS = (
    "b.account",
    "f.named_by",
    "(SELECT json_group_array(l.account) FROM batch_listings AS l WHERE l.batch_id = b.id)",
)
# Whether the account bound to both `?` is one of them (a NULL one as none: NOT of a NULL
# would drop the row).
_MAY_READ = (
    "(? IN (b.account, coalesce(f.named_by, '')) OR EXISTS (SELECT 1 FROM batch_listings AS l "
    "WHERE l.batch_id = b.id AND l.account = ?))"
)
# Where the account bound to `?` stands among those whose ask failed since the file was
# last read, the last to fail last (NULL: it has not failed).
_FAILED_AT = (
    "(SELECT max(key) FROM json_each(CASE WHEN json_valid(f.failed_by) THEN f.failed_by END) "
    "WHERE value = ?)"
)
# Whether the ask of the account bound to `?` failed since the file was last read.
_FAILED_FOR = f"{_FAILED_AT} IS NOT NULL"


def select_files_to_fetch(
    db: sqlite3.Connection,
    account: str,
    kinds: Collection[str],
    after: int,
    limit: int,
    *,
    bodies: bool,
    others: Sequence[FileAsker] = (),
) -> list[FileToFetch]:
    """Up to `limit` files `account` may ask for (see _MAY_READ), of `kinds`, still to
    fetch (pending, or failed before; expired for good but never asked of it; with
    `bodies`, also those stored without) in the order they were recorded, after the one at
    position `after` (those before are being fetched, or were done with in this run).

    Not those this account's ask failed for since they were last read while another
    account of this run (`others`) that may read them, and asks for them, has not, or
    failed before it did: it asks first, since one account's route may lack the files
    another reads (and a 404 after another's 503 is that one's turn again)."""
    if not kinds:
        return []
    kind_marks = ", ".join("?" * len(kinds))
    # A count is a count only as an integer: a compatible API may send text ("two", "").
    expected = " ".join(
        f"WHEN '{kind}' THEN CASE WHEN typeof(b.{column}) = 'integer' THEN b.{column} END"
        for kind, column in _EXPECTED_LINES.items()
    )
    # One query a condition, each on its own partial index (ORed, SQLite scans the table).
    conditions = (_TO_FETCH, _EXPIRED_FOR_GOOD, _WITHOUT_BODIES)[: 3 if bodies else 2]
    branches, values = [], []
    for condition in conditions:
        branches.append(
            "SELECT rowid AS position, file_id, batch_id, kind, state, error, empty_runs, "
            "named_by, failed_by, not_found_runs, lines FROM batch_files AS f "
            f"WHERE rowid > ? AND kind IN ({kind_marks}) AND ({condition})"
        )
        values += [after, *kinds]
        if condition is _EXPIRED_FOR_GOOD:  # asked of each account once
            branches[-1] += f" AND NOT {_FAILED_FOR}"
            values.append(account)
    files = " UNION ALL ".join(branches)
    asks_first, asks_first_values = [], []
    for other in others:
        if other.kinds:
            stored_whole = "" if other.bodies else "AND f.state != 'complete' "
            asks_first.append(
                f"({_MAY_READ} AND f.kind IN ({', '.join('?' * len(other.kinds))}) "
                f"{stored_whole}AND coalesce({_FAILED_AT} < {_FAILED_AT}, true))"
            )
            asks_first_values += [other.account] * 2 + [*other.kinds, other.account, account]
    deferred = f"AND NOT ({_FAILED_FOR} AND ({' OR '.join(asks_first)})) " if asks_first else ""
    rows = db.execute(
        f"SELECT f.file_id, f.batch_id, f.kind, CASE f.kind {expected} END, f.position, "
        "f.state, f.state IN ('failed', 'expired') OR f.error IS NOT NULL, f.empty_runs, "
        f"f.not_found_runs >= {EXPIRED_FOR_GOOD}, f.error LIKE '{READ_SHORT}%', f.lines "
        f"FROM ({files}) AS f JOIN batches AS b ON b.id = f.batch_id "
        f"WHERE {_MAY_READ} {deferred}ORDER BY f.position LIMIT ?",
        (
            *values,
            account,
            account,
            *((account, *asks_first_values) if asks_first else ()),
            limit,
        ),
    ).fetchall()
    return [
        FileToFetch(
            file_id, batch_id, kind, expected, position, state, bool(failed), empty, bool(last),
            bool(short), lines,
        )
        for (
            file_id, batch_id, kind, expected, position, state, failed, empty, last, short, lines
        ) in rows
    ]  # fmt: skip


def in_file_order(
    texts: Sequence[tuple[int, str]], rows: Sequence[tuple[int, tuple[Any, ...]]]
) -> Iterator[tuple[bool, list[Any]]]:
    """A chunk's lines in the file's order, numbered: runs of texts for SQLite to map
    (False, pairs) and of rows built already (True, pairs). One run each, mostly."""
    if not rows or not texts:  # one run, or none
        if rows:
            yield True, list(rows)
        if texts:
            yield False, list(texts)
        return
    lines = sorted([*((n, False, t) for n, t in texts), *((n, True, r) for n, r in rows)])
    for mapped, run in itertools.groupby(lines, key=lambda line: line[1]):
        yield mapped, [(number, value) for number, _, value in run]


def upsert_requests(
    db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], *, reading: int
) -> None:
    """Store request rows, written by `reading`, replacing those of the same batch and
    custom_id (a file read again after an interruption)."""
    execute_rows(db, _UPSERT_REQUESTS, [(*row, reading) for row in rows])


def delete_file_lines(db: sqlite3.Connection, file: FileToFetch) -> None:
    """Delete the lines stored of `file` (by a reading of it cut short). Not while the
    batch keeps lines of a file it named before (a gateway minting new ids): those of this
    file may be that file's requests, taken over by key, and the old file's lines are to
    stay until this one is stored whole."""
    db.execute(
        "DELETE FROM batch_requests WHERE batch_id = :batch AND kind = :kind AND file_id = :file "
        "AND NOT EXISTS (SELECT 1 FROM batch_requests "
        "WHERE batch_id = :batch AND kind = :kind AND file_id != :file)",
        {"batch": file.batch_id, "kind": file.kind, "file": file.file_id},
    )


def store_lines(
    db: sqlite3.Connection,
    lines: Sequence[tuple[int, str]],
    *,
    batch_id: str,
    file_id: str,
    kind: str,
    keep_body: bool,
    reading: int,
) -> tuple[int, list[tuple[int, str]]]:
    """Store (line number, JSON text) pairs of one file as request rows, mapped by SQLite,
    written by `reading`.

    Returns how many rows were stored, and the (number, why) of each line left out: not
    JSON, not an object, or without a `custom_id`.
    """
    if not lines:
        return 0, []
    db.execute(_CREATE_LINES)
    db.executemany("INSERT INTO temp.request_lines (number, line) VALUES (?, ?)", lines)
    names = {
        "batch_id": batch_id,
        "file_id": file_id,
        "kind": kind,
        "keep_body": keep_body,
        "reading": reading,
    }
    db.execute(_STORE_LINES, names)
    # Not the cursor's rowcount: the sqlite3 module counts only statements that begin with
    # INSERT, and this one begins with WITH. changes() leaves out the triggers' rows.
    (stored,) = db.execute("SELECT changes()").fetchone()
    # Each usable line counts once, inserted or upserted: when all were stored, none is left
    # to look for (and looking parses every line again).
    unusable = db.execute(_UNUSABLE_LINES).fetchall() if stored < len(lines) else []
    db.execute("DELETE FROM temp.request_lines")
    return stored, unusable


def put_files_last(db: sqlite3.Connection, files: Sequence[FileToFetch]) -> None:
    """Move these files after every other to fetch (files are fetched in the order of their
    rowid): a file the time budget cut, read from its first line each sync, would
    otherwise take a worker first thing every sync, a few of them every worker. One row a
    statement: two batches may name the same file."""
    for file in files:
        db.execute(
            "UPDATE batch_files SET rowid = (SELECT max(rowid) + 1 FROM batch_files) "
            "WHERE batch_id = ? AND kind = ?",
            (file.batch_id, file.kind),
        )


def mark_unfinished(db: sqlite3.Connection, files: Sequence[FileToFetch], account: str) -> None:
    """Record `account` as the last whose ask of these files failed: its run claimed them
    and ended before they did (its time budget spent, its files breaker tripped, the run
    failed). Another account of a later run that may read them asks first; else the
    account that claimed them first thing would keep them from it on every joint sync.
    Not for a file expired for good: that is one ask of it, still to come."""
    for file in files:
        found = db.execute(
            "SELECT failed_by FROM batch_files WHERE batch_id = ? AND kind = ? AND file_id = ? "
            f"AND not_found_runs < {EXPIRED_FOR_GOOD}",
            (file.batch_id, file.kind, file.file_id),
        ).fetchone()
        if found is not None:
            db.execute(
                "UPDATE batch_files SET failed_by = ? WHERE batch_id = ? AND kind = ?",
                (json.dumps(_failed_last(found[0], account)), file.batch_id, file.kind),
            )


def _after_a_failure(
    db: sqlite3.Connection, file: FileToFetch, account: str, *, not_found: bool
) -> tuple[int, str, str | None]:
    """The file's syncs answered 404 since it was last read (EXPIRED_FOR_GOOD once it is:
    see AGREED_404_RUNS), the accounts whose ask failed (`account` last) and those whose
    ask answered 404, after `account`'s failed (`not_found`: a 404)."""
    found = db.execute(
        f"SELECT f.not_found_runs, f.failed_by, f.not_found_by, {', '.join(_READERS)} "
        "FROM batch_files AS f JOIN batches AS b ON b.id = f.batch_id "
        "WHERE f.batch_id = ? AND f.kind = ? AND f.file_id = ?",
        (file.batch_id, file.kind, file.file_id),
    ).fetchone()
    if found is None:  # the batch names another file since: nothing to update
        return 0, "[]", None
    runs, failed_by, not_found_by, owner, named_by, listers = found
    readers = {owner, named_by, *json.loads(listers)} - {None}
    failed = _failed_last(failed_by, account)
    answered_404 = set(_accounts(not_found_by)) | ({account} if not_found else set())
    # A 403 or 503 (another account's route, say) says nothing of the file: runs kept.
    if not_found and runs + 1 >= AGREED_404_RUNS and readers <= answered_404:
        runs = EXPIRED_FOR_GOOD
    elif not_found:
        if runs + 1 == EXPIRED_FOR_GOOD:
            # Each account that may read it and had no 404 (a 503, say) asks once more.
            failed = [a for a in failed if a in answered_404]
        runs = min(runs + 1, EXPIRED_FOR_GOOD)
    return runs, json.dumps(failed), json.dumps(sorted(answered_404)) if answered_404 else None


def _failed_last(failed_by: str | None, account: str) -> list[str]:
    """The accounts of `failed_by`, `account` moved (or added) last."""
    return [a for a in _accounts(failed_by) if a != account] + [account]


def _accounts(failed_by: str | None) -> list[str]:
    """The accounts a `failed_by` (or `not_found_by`) value names, in its order (a value
    edited by hand names none)."""
    try:
        named = json.loads(failed_by or "[]")
    except ValueError:
        return []
    if not isinstance(named, list):
        return []
    return list(dict.fromkeys(a for a in named if isinstance(a, str)))


def update_file(
    db: sqlite3.Connection,
    file: FileToFetch,
    state: str,
    *,
    account: str,
    size: int | None = None,
    lines: int | None = None,
    error: str | None = None,
    bodies: bool = False,
    empty: bool = False,
    reading: int | None = None,
) -> int | None:
    """Record how fetching a file ended: complete (its lines stored `bodies` or not),
    expired (404, from `account`'s API) or failed (and why; `empty`: read whole, without
    one request line). A file stored whole before, fetched again for its bodies, stays
    complete with its lines unless it is stored whole again.

    Returns, for a file complete, the requests it holds: fewer than its `lines` when some
    lines repeat a custom_id (the last of each kept).
    """
    now = int(time.time())
    # The file fetched, not another the batch names since (a gateway minting new ids).
    where = "WHERE batch_id = ? AND kind = ? AND file_id = ?"
    key = (file.batch_id, file.kind, file.file_id)
    not_found = "not_found_runs = ?, failed_by = ?, not_found_by = ?"
    not_found_values: tuple[int, str | None, str | None] = (0, None, None)
    if state != "complete":
        not_found_values = _after_a_failure(db, file, account, not_found=state == "expired")
        if not_found_values[0] == EXPIRED_FOR_GOOD:
            # Expired for good, whatever this ask's failure: a 503 of an account's one ask
            # of it after (see _EXPIRED_FOR_GOOD) had it asked again of every account.
            state = "expired"
    if state != "complete" and file.state == "complete":
        db.execute(
            f"UPDATE batch_files SET error = ?, {not_found} {where}",
            (error, *not_found_values, *key),
        )
        return None
    if state == "complete":
        if reading is None:
            raise ValueError("a file complete needs the reading that stored it")
        if db.execute(f"SELECT 1 FROM batch_files {where}", key).fetchone():
            # The batch's record is now this reading's lines: those of a file it named
            # before (a gateway minting new ids), written late by a fetch of it, or of an
            # earlier reading of this file (other content under the same id) go. Not sooner:
            # the new file may never be fetched (deleted after 30 days), and the old lines
            # then stay. (Not if the batch names another file since.)
            db.execute(
                "DELETE FROM batch_requests WHERE batch_id = ? AND kind = ? AND reading IS NOT ?",
                (file.batch_id, file.kind, reading),
            )
        (lines,) = db.execute(f"SELECT count(*) FROM batch_requests {where}", key).fetchone()
    db.execute(
        "UPDATE batch_files SET state = ?, bytes = ?, lines = ?, error = ?, fetched_at = ?, "
        f"bodies = ?, {not_found}, "
        f"empty_runs = CASE WHEN ? THEN empty_runs + 1 ELSE 0 END {where}",
        (
            state,
            size,
            lines,
            error,
            now,
            bodies if state == "complete" else None,
            *not_found_values,
            empty,
            *key,
        ),
    )
    return lines if state == "complete" else None
