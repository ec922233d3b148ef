"""The no-key demo: sync the local fake API into a database, then ask it four questions."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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
    # Dated up to now, so that a report of the last days has something to say.
    options = FakeApiOptions(batches=batches, now=int(time.time()))
    async with FakeApiServer(options, host="127.0.0.1", port=0) as server:
        settings = Settings(db=db, base_url=server.base_url, api_key=options.api_key)
        return await sync(settings, on_progress=on_progress)
