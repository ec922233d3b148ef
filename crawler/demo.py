"""The no-key demo: sync the local fake API into a database, then ask it four questions."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .accounts import AccountOutcome, sync_accounts
from .config import Settings
from .fake import AZURE_API_VERSIONS, FakeApiOptions, FakeApiServer
from .runs import Progress, SyncResult
from .store.reads import EXAMPLE_QUERIES, QueryAnswer, answer_queries
from .sync_run import sync

DEMO_QUERIES = EXAMPLE_QUERIES


def ask(db: Path, queries: Sequence[tuple[str, str]] = DEMO_QUERIES) -> list[QueryAnswer]:
    """Run the example queries against a synced database."""
    # A plain read-write connection: closing it, the last one, lets SQLite tidy the WAL
    # files away, which a read-only one cannot.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return answer_queries(conn, queries)


# With --accounts: what the demo asks besides the example queries.
ACCOUNTS_QUERY = (
    "Batches and spend by account",
    "SELECT account, count(*) AS batches, round(sum(usd), 2) AS usd\n"
    "FROM batch_costs GROUP BY 1 ORDER BY 1",
)


async def run_demo(
    db: Path, batches: int, on_progress: Callable[[Progress], None] | None = None
) -> SyncResult:
    """Serve `batches` synthetic batches on a free loopback port and sync them into `db`."""
    # Dated up to now, so that a report of the last days has something to say.
    options = FakeApiOptions(batches=batches, now=int(time.time()))
    async with FakeApiServer(options, host="127.0.0.1", port=0) as server:
        settings = Settings(db=db, base_url=server.base_url, api_key=options.api_key)
        return await sync(settings, on_progress=on_progress)


async def run_accounts_demo(
    db: Path, batches: int, on_progress: Callable[[str, Progress], None] | None = None
) -> list[AccountOutcome]:
    """Serve two accounts, an OpenAI project and an Azure OpenAI resource (its dated API),
    `batches` synthetic batches each, and sync both into `db` at once."""
    now = int(time.time())
    openai = FakeApiOptions(batches=batches, now=now, seed=1)
    azure = FakeApiOptions(batches=batches, now=now, seed=2, flavor="azure")
    async with (
        FakeApiServer(openai, host="127.0.0.1", port=0) as first,
        FakeApiServer(azure, host="127.0.0.1", port=0) as second,
    ):
        accounts = [
            Settings(db=db, account="project", base_url=first.base_url, api_key=openai.api_key),
            Settings(
                db=db,
                account="azure",
                provider="azure",
                azure_endpoint=second.root_url,
                api_version=AZURE_API_VERSIONS[0],
                api_key=azure.api_key,
            ),
        ]
        return await sync_accounts(accounts, on_progress=on_progress)
