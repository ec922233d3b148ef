"""Several accounts in one database: each with its own walk, resume and ledger rows, synced
at once, one failing while the others finish; a database of one account migrates into the
account named `default` without a walk again."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from crawler import AccountOutcome, Settings, sync, sync_accounts
from crawler.api import RetryPolicy
from crawler.errors import AuthenticationError
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.rows import BATCH_COLUMNS, build_page_rows
from crawler.store import open_store, schema

from .exact import assert_database_matches

FAST = RetryPolicy(max_attempts=3, max_seconds=10, initial_backoff=0, max_backoff=0)


def owners(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT account, count(*) FROM batches GROUP BY account"))


async def test_accounts_sync_at_once_into_one_database_and_one_failing_spares_the_others(
    db_path: Path,
) -> None:
    async with (
        FakeApiServer(FakeApiOptions(batches=300, seed=1, api_key="key-one")) as one,
        FakeApiServer(FakeApiOptions(batches=200, seed=2, api_key="key-two")) as two,
    ):
        accounts = [
            Settings(db=db_path, account="one", base_url=one.base_url, api_key="key-one"),
            Settings(db=db_path, account="two", base_url=two.base_url, api_key="key-two"),
            Settings(db=db_path, account="wrong", base_url=two.base_url, api_key="bad-key"),
        ]
        outcomes = await sync_accounts(accounts, retry=FAST)
        assert_database_matches(db_path, [*one.served(), *two.served()])
        again = await sync_accounts(accounts[:2], retry=FAST)
    first, second, wrong = outcomes
    assert isinstance(first, AccountOutcome)
    assert [o.result.batches_new for o in (first, second) if o.result] == [300, 200]
    assert isinstance(wrong.error, AuthenticationError)
    assert owners(db_path) == {"one": 300, "two": 200}
    assert [o.result.mode for o in again if o.result] == ["incremental", "incremental"]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        ledger = conn.execute("SELECT account, outcome FROM sync_runs ORDER BY id").fetchall()
        walks = dict(conn.execute("SELECT account, finished FROM walk_state"))
    assert sorted(ledger[:3]) == [("one", "complete"), ("two", "complete"), ("wrong", "failed")]
    assert walks == {"one": 1, "two": 1, "wrong": 0}


async def test_a_batch_two_accounts_list_stays_with_the_first(db_path: Path) -> None:
    """One project reached directly and through a gateway: stored once, never moving."""
    async with FakeApiServer(FakeApiOptions(batches=150, api_key="k")) as server:
        direct = Settings(db=db_path, account="direct", base_url=server.base_url, api_key="k")
        gateway = Settings(db=db_path, account="gateway", base_url=server.base_url, api_key="k")
        await sync(direct, retry=FAST)
        result = await sync(gateway, retry=FAST)
        await sync(direct, retry=FAST, full=True)
        assert_database_matches(db_path, server.served())
    assert (result.batches_new, result.batches_seen) == (0, 150)
    assert owners(db_path) == {"direct": 150}


async def test_a_database_of_one_account_becomes_the_default_account_without_a_new_walk(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database synced before accounts existed: its batches and its finished walk are the
    `default` account's, whose next sync is incremental."""
    migrations = schema.load_migrations()
    accounts = next(m.version for m in migrations if m.name == "accounts")
    monkeypatch.setattr(
        schema, "load_migrations", lambda: [m for m in migrations if m.version < accounts]
    )
    async with open_store(db_path):
        pass
    monkeypatch.undo()
    async with FakeApiServer(FakeApiOptions(batches=250, api_key="k")) as server:
        served = list(server.served())
        # As the version before wrote them: every batch, and a finished walk.
        rows, _ = build_page_rows(served, 1)
        columns = BATCH_COLUMNS[:-1]
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            conn.executemany(
                f"INSERT INTO batches ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                [row[: len(columns)] for row in rows],
            )
            conn.execute(
                "INSERT INTO walk_state (singleton, head_id, finished, updated_at) "
                "VALUES (1, ?, 1, 1)",
                (served[0]["id"],),
            )
        result = await sync(Settings(db=db_path, base_url=server.base_url, api_key="k"))
    assert (result.mode, result.pages, result.batches_new) == ("incremental", 1, 0)
    assert owners(db_path) == {"default": 250}
