"""SQL the reads and writes share: many rows in few statements, and counts kept for each
account in a JSON object."""

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


def account_path(account: str) -> str:
    """The JSON path of `account`'s count in such an object; a name holds no quote
    (setting_rules.account_name_problem)."""
    return f'$."{account}"'


def json_object(column: str) -> str:
    """`column` as a JSON object whatever was stored (NULL, junk, another JSON value: `{}`)."""
    return (
        f"CASE WHEN NOT json_valid({column}) THEN '{{}}' "
        f"WHEN json_type({column}) = 'object' THEN {column} ELSE '{{}}' END"
    )


def counted(column: str, path: str) -> str:
    """`column`'s object (see json_object) with the count at `path`, an SQL expression, one
    more."""
    counts = json_object(column)
    return f"json_set({counts}, {path}, coalesce(json_extract({counts}, {path}), 0) + 1)"
