"""The no-key demo: sync the local fake API into a database, then ask it three questions."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings
from .fakeapi import FakeApiOptions, FakeApiServer
from .sync import Progress, SyncResult, sync

DEMO_QUERIES = (
    (
        "Batches by status",
        "SELECT status, count(*) AS batches FROM batches GROUP BY status ORDER BY batches DESC",
    ),
    (
        "Requests and tokens by model",
        "SELECT coalesce(model, '(not recorded)') AS model, count(*) AS batches,\n"
        "       sum(request_counts_failed) AS failed_requests, sum(total_tokens) AS tokens\n"
        "FROM batches GROUP BY 1 ORDER BY batches DESC",
    ),
    (
        "Why batches failed",
        "SELECT e.code, count(DISTINCT e.batch_id) AS batches,\n"
        "       substr(min(e.message), 1, 60) AS example\n"
        "FROM batch_errors e GROUP BY e.code ORDER BY batches DESC LIMIT 5",
    ),
)


@dataclass(frozen=True)
class QueryAnswer:
    """One example query and what it returned."""

    title: str
    sql: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def ask(db: Path, queries: Sequence[tuple[str, str]] = DEMO_QUERIES) -> list[QueryAnswer]:
    """Run the example queries against a synced database."""
    # A plain connection: closing it, the last one, lets SQLite tidy the WAL files away.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        answers = []
        for title, sql in queries:
            cur = conn.execute(sql)
            columns = tuple(d[0] for d in cur.description)
            answers.append(QueryAnswer(title, sql, columns, cur.fetchall()))
    return answers


async def run_demo(
    db: Path, batches: int, on_progress: Callable[[Progress], None] | None = None
) -> SyncResult:
    """Serve `batches` synthetic batches on a free loopback port and sync them into `db`."""
    options = FakeApiOptions(batches=batches)
    async with FakeApiServer(options, host="127.0.0.1", port=0) as server:
        settings = Settings(db=db, base_url=server.base_url, api_key=options.api_key)
        return await sync(settings, on_progress=on_progress)


def format_answer(answer: QueryAnswer) -> str:
    """A query and its rows as an aligned text table."""
    cells = [answer.columns, *[tuple("" if v is None else str(v) for v in r) for r in answer.rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(answer.columns))]
    # Numbers line up on the right, as in any table of figures.
    numeric = [
        bool(answer.rows) and all(isinstance(r[i], int | float) for r in answer.rows)
        for i in range(len(answer.columns))
    ]
    lines = [f"-- {answer.title}", answer.sql + ";"]
    for n, row in enumerate(cells):
        padded = (
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(row, widths, numeric, strict=True)
        )
        lines.append("  " + "  ".join(padded).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)
