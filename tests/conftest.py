"""Shared fixtures: a temporary database, fast retries, and literal batch objects."""

from __future__ import annotations

import contextlib
import inspect
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import aioresponses.core
import pytest
from aiohttp import web

from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.store import open_store, schema

BASE_URL = "https://api.test/v1"
API_KEY = "sk-test-0123456789abcdef"


def make_batch(n: int, **fields: Any) -> dict[str, Any]:
    """A complete, documented Batch object numbered n (higher n = newer)."""
    batch: dict[str, Any] = {
        "id": f"batch_{n:032x}",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "model": "gpt-4o-mini",
        "errors": None,
        "input_file_id": f"file-in-{n}",
        "completion_window": "24h",
        "status": "completed",
        "output_file_id": f"file-out-{n}",
        "error_file_id": None,
        "created_at": 1_700_000_000 + n,
        "in_progress_at": 1_700_000_010 + n,
        "expires_at": 1_700_086_400 + n,
        "finalizing_at": 1_700_000_100 + n,
        "completed_at": 1_700_000_200 + n,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 10, "completed": 9, "failed": 1},
        "usage": {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 20},
            "output_tokens": 50,
            "output_tokens_details": {"reasoning_tokens": 5},
            "total_tokens": 150,
        },
        "metadata": {"team": "équipe"},
    }
    batch.update(fields)
    return batch


def list_body(batches: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A `GET /batches` response body holding `batches`."""
    return {
        "object": "list",
        "data": batches,
        "first_id": batches[0]["id"] if batches else None,
        "last_id": batches[-1]["id"] if batches else None,
        "has_more": has_more,
    }


def serve_the_end(
    mock: aioresponses.aioresponses, last: dict[str, Any], limit: int = 2, base_url: str = BASE_URL
) -> None:
    """The empty page after a list's last batch: what the API answers the check that a
    walk ending on a full page makes (a `has_more` false sent by mistake would end it)."""
    url = f"{base_url}/batches?after={last['id']}&limit={limit}"
    mock.get(url, payload=list_body([], False), repeat=True)


class _ResponseWithWriter(aiohttp.ClientResponse):
    """aiohttp 3.14 made `stream_writer` required; aioresponses 0.7.9 does not pass it yet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", mock.Mock(output_size=0))
        super().__init__(*args, **kwargs)


@pytest.fixture(autouse=True)
def _aioresponses_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let aioresponses build responses for the installed aiohttp."""
    if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        monkeypatch.setattr(aioresponses.core, "ClientResponse", _ResponseWithWriter)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database path in a fresh temporary folder."""
    return tmp_path / "batches.db"


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """A retry policy that never sleeps long, so retry tests stay fast."""
    return RetryPolicy(max_attempts=4, max_seconds=10, initial_backoff=0, max_backoff=0)


@pytest.fixture
def settings(db_path: Path) -> Settings:
    """Settings pointing at the mocked API and the temporary database."""
    return Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY, page_size=2)


@contextlib.asynccontextmanager
async def serving(routes: dict[str, Any]) -> AsyncIterator[str]:
    """An aiohttp app on 127.0.0.1 answering GET `routes` (path: handler); yields its root URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def create_before(db: Path, migration: str) -> None:
    """Create `db` at the schema the version before migration `migration` (its name) left."""
    with schema_before(migration):
        async with open_store(db):
            pass


def roll_back_columns(db: Path, migration: str) -> None:
    """Set `db` back to the schema before migration `migration` (its name): the columns
    it and later ones added are dropped, the indexes they created, and the views they made
    anew made as before. Migrations doing more than add columns and indexes, make views
    anew and change rows cannot be rolled back so."""
    migrations = schema.load_migrations()
    version = next(m.version for m in migrations if m.name == migration)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        for later in reversed([m for m in migrations if m.version >= version]):
            sql = re.sub(r"--[^\n]*", "", later.sql)
            added = re.findall(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", sql)
            indexes = re.findall(r"CREATE INDEX (\w+)", sql)
            views = re.findall(r"CREATE VIEW (\w+)", sql)
            others = r"\b(CREATE (?!INDEX|VIEW)|DROP (?!VIEW)|RENAME)\b"
            assert not re.search(others, sql), later.name
            for index in indexes:
                conn.execute(f"DROP INDEX {index}")
            for view in views:
                conn.execute(f"DROP VIEW {view}")
                conn.execute(_view_before(migrations[: later.version - 1], view))
            for table, column in added:
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.execute("DELETE FROM schema_migrations WHERE version >= ?", (version,))
        conn.execute(f"PRAGMA user_version = {version - 1}")


def _view_before(migrations: list[schema.Migration], view: str) -> str:
    """The last statement of `migrations` creating `view`."""
    made = (
        re.findall(rf"^CREATE VIEW {view} AS.*?;$", m.sql, re.DOTALL | re.MULTILINE)
        for m in migrations
    )
    return [statement for statements in made for statement in statements][-1]


@contextlib.contextmanager
def schema_before(migration: str) -> Iterator[None]:
    """Databases opened meanwhile are left at the schema before migration `migration`."""
    migrations = schema.load_migrations()
    version = next(m.version for m in migrations if m.name == migration)
    before = [m for m in migrations if m.version < version]
    with mock.patch.object(schema, "load_migrations", return_value=before):
        yield
