"""The SQL of the batches' request files: which to fetch, their lines, and how each ended."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..request_rows import REQUEST_COLUMNS

_REQUEST_VALUES = f"({', '.join('?' * len(REQUEST_COLUMNS))})"
_UPSERT_REQUESTS = (
    f"INSERT INTO batch_requests ({', '.join(REQUEST_COLUMNS)}) VALUES {{values}} "
    "ON CONFLICT(batch_id, custom_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}" for c in REQUEST_COLUMNS if c not in {"batch_id", "custom_id"}
    )
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


def select_files_to_fetch(
    db: sqlite3.Connection, kinds: Collection[str], skip: Collection[str], limit: int
) -> list[FileToFetch]:
    """Up to `limit` files of `kinds` still to fetch (pending, or failed before) in the order
    they were recorded, leaving out the `skip` ids (being fetched, or failed in this run)."""
    if not kinds:
        return []
    kind_marks = ", ".join("?" * len(kinds))
    skip_marks = ", ".join("?" * len(skip))
    expected = " ".join(
        f"WHEN '{kind}' THEN b.{column}" for kind, column in _EXPECTED_LINES.items()
    )
    rows = db.execute(
        f"SELECT f.file_id, f.batch_id, f.kind, CASE f.kind {expected} END "
        "FROM batch_files AS f JOIN batches AS b ON b.id = f.batch_id "
        f"WHERE f.state IN ('pending', 'failed') AND f.kind IN ({kind_marks}) "
        f"AND f.file_id NOT IN ({skip_marks}) ORDER BY f.rowid LIMIT ?",
        (*kinds, *skip, limit),
    ).fetchall()
    return [FileToFetch(*row) for row in rows]


def upsert_requests(db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Store request rows, replacing those of the same batch and custom_id (a file read
    again after an interruption), in as few statements as SQLite's parameter limit allows."""
    limit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    per_statement = max(1, limit // len(REQUEST_COLUMNS))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        sql = _UPSERT_REQUESTS.format(values=", ".join([_REQUEST_VALUES] * len(chunk)))
        db.execute(sql, list(itertools.chain.from_iterable(chunk)))


def update_file(
    db: sqlite3.Connection,
    file_id: str,
    state: str,
    *,
    size: int | None = None,
    lines: int | None = None,
    error: str | None = None,
) -> None:
    """Record how fetching a file ended: complete, expired (404) or failed (and why)."""
    db.execute(
        "UPDATE batch_files SET state = ?, bytes = ?, lines = ?, error = ?, fetched_at = ? "
        "WHERE file_id = ?",
        (state, size, lines, error, int(time.time()), file_id),
    )
