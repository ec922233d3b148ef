"""The no-key demo: sync the local fake API into a database, then ask it four questions."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .accounts import AccountOutcome, sync_accounts
from .config import Settings
from .errors import ConfigError
from .fake import AZURE_API_VERSIONS, FakeApiOptions, FakeApiServer
from .runs import Progress, SyncResult
from .setting_rules import is_on_this_machine
from .store.reads import EXAMPLE_QUERIES, QueryAnswer, answer_queries, select_base_urls
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


def check_no_real_batches(db: Path) -> None:
    """Refuse a database synced from beyond this machine: the demo's synthetic batches,
    mixed into it, would count in its views and reports for good.

    Raises:
        ConfigError: `db` holds batches synced from another machine's API.
    """
    if not db.is_file():  # none yet (a FIFO or a folder: the sync says what is wrong)
        return
    try:
        with contextlib.closing(
            sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        ) as conn:
            urls = select_base_urls(conn)
    except sqlite3.Error:
        return  # not a database of ours: the sync refuses it, saying why
    elsewhere = sorted(url for url in urls if not is_on_this_machine(url))
    if elsewhere:
        raise ConfigError(
            f"{db} holds batches synced from {elsewhere[0]}: the demo would mix synthetic "
            "ones into them; choose another --db (the demo's own is demo.db)"
        )


async def run_demo(
    db: Path, batches: int, on_progress: Callable[[Progress], None] | None = None
) -> SyncResult:
    """Serve `batches` synthetic batches on a free loopback port and sync them into `db`
    (not a database synced from elsewhere: see check_no_real_batches)."""
    check_no_real_batches(db)
    # Dated up to now, so that a report of the last days has something to say.
    options = FakeApiOptions(batches=batches, now=int(time.time()))
    async with FakeApiServer(options, host="127.0.0.1", port=0) as server:
        settings = Settings(db=db, base_url=server.base_url, api_key=options.api_key)
        return await sync(settings, on_progress=on_progress)


async def run_accounts_demo(
    db: Path, batches: int, on_progress: Callable[[str, Progress], None] | None = None
) -> list[AccountOutcome]:
    """Serve two accounts, an OpenAI project and an Azure OpenAI resource (its dated API),
    `batches` synthetic batches each, and sync both into `db` at once (not a database
    synced from elsewhere: see check_no_real_batches)."""
    check_no_real_batches(db)
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
