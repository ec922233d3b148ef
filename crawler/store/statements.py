"""Many rows in few statements."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any


def values_slot(columns: int) -> str:
    """The `(?, ?, ...)` of one row of `columns` values."""
    return f"({', '.join('?' * columns)})"


def execute_rows(db: sqlite3.Connection, template: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Run `template`, whose `{values}` takes the rows, over `rows` in as few statements as
    SQLite's limit on parameters allows.

    Per statement, not per row: the sqlite3 module hands the GIL back and forth around every
    statement it steps (one statement a page walked about 10 % faster at L = 0), and FTS5
    flushes what a statement indexed at its end (one statement a row made the error index
    cost 20 µs a row instead of 3).
    """
    if not rows:
        return
    width = len(rows[0])
    slot = values_slot(width)
    per_statement = max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        sql = template.replace("{values}", ", ".join([slot] * len(chunk)))  # SQL holds braces
        db.execute(sql, list(itertools.chain.from_iterable(chunk)))
