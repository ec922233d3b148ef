"""The no-key demo: sync the local fake API into a database, then ask it four questions."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import Settings
from .fake import FakeApiOptions, FakeApiServer
from .runs import Progress, SyncResult
from .store.reads import EXAMPLE_QUERIES, QueryAnswer, answer_queries
from .sync import sync

DEMO_QUERIES = EXAMPLE_QUERIES


def ask(db: Path, queries: Sequence[tuple[str, str]] = DEMO_QUERIES) -> list[QueryAnswer]:
    """Run the example queries against a synced database."""
    # A plain read-write connection: closing it, the last one, lets SQLite tidy the WAL
    # files away, which a read-only one cannot.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return answer_queries(conn, queries)


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
    numeric = [_is_numeric([r[i] for r in answer.rows]) for i in range(len(answer.columns))]
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


def _is_numeric(column: list[Any]) -> bool:
    """Whether a column holds numbers, NULLs aside (a sum over no values is NULL)."""
    values = [v for v in column if v is not None]
    return bool(values) and all(isinstance(v, int | float) for v in values)
