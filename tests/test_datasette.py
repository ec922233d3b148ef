"""A real Datasette serves a database the demo synced, with `datasette-metadata`'s metadata:
facets, full-text search over error messages, and a view, checked over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crawler.cli import main
from crawler.datasette import TABLES
from crawler.demo import run_demo
from crawler.store import open_store

from .waits import HANG_GUARD


@pytest.fixture
async def demo_db(tmp_path: Path) -> Path:
    db = tmp_path / "demo.db"
    await run_demo(db, 300)
    return db


@contextlib.asynccontextmanager
async def datasette(db: Path, metadata: Path) -> AsyncIterator[str]:
    """`datasette serve` on a free loopback port: its base URL once it says it listens."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "datasette",
        "serve",
        str(db),
        "--metadata",
        str(metadata),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    try:
        match = None
        async with asyncio.timeout(HANG_GUARD):
            while not match and (line := await proc.stderr.readline()):
                match = re.search(rb"running on (http://127\.0\.0\.1:\d+)", line)
        assert match, "datasette ended before it listened"
        yield match[1].decode()
    finally:
        proc.terminate()
        await proc.wait()


async def get(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as response:
        assert response.status == 200, url
        return dict(await response.json())


async def test_datasette_serves_facets_search_and_views(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metadata = tmp_path / "metadata.json"
    assert main(["datasette-metadata", "--db", str(demo_db), "-o", str(metadata)]) == 0
    capsys.readouterr()
    with contextlib.closing(sqlite3.connect(demo_db)) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM batches GROUP BY 1"))
        matching, messages = conn.execute(
            "SELECT count(*), count(DISTINCT error_message) FROM batch_requests "
            "WHERE error_message LIKE '%context length%'"
        ).fetchone()
        (days,) = conn.execute("SELECT count(*) FROM daily_usage").fetchone()
    assert matching > 0, "the demo stores request errors to search"
    async with datasette(demo_db, metadata) as base, aiohttp.ClientSession() as session:
        batches = await get(session, f"{base}/demo/batches.json?_shape=objects&_size=5")
        facets = batches["facet_results"]
        assert sorted(facets) == ["endpoint", "model", "status"]
        assert {f["value"]: f["count"] for f in facets["status"]["results"]} == statuses
        created = [row["created_at"] for row in batches["rows"]]
        assert created == sorted(created, reverse=True), "newest first"

        found = await get(
            session,
            f'{base}/demo/request_error_messages.json?_search="context length"&_shape=objects',
        )
        assert found["filtered_table_rows_count"] == messages
        found = await get(
            session,
            f'{base}/demo/requests_by_error_message.json?words="context length"&_shape=objects'
            "&_size=max",
        )
        assert len(found["rows"]) == matching

        view = await get(session, f"{base}/demo/daily_usage.json?_shape=objects&_size=max")
        assert (view["is_view"], len(view["rows"])) == (True, days)
        assert sorted(view["facet_results"]) == ["account", "endpoint", "model"]

        served = await get(session, f"{base}/-/metadata.json")
    for query in served["databases"]["demo"]["queries"].values():
        del query["name"]  # Datasette's own addition
    assert served == json.loads(metadata.read_text(encoding="utf-8"))


async def test_the_metadata_names_only_what_the_schema_has_and_all_of_it(db_path: Path) -> None:
    async with open_store(db_path):
        pass
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        names = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE '%fts%'"
            )
        }
        columns = {
            name: {row[1] for row in conn.execute(f"PRAGMA table_info({name})")} for name in names
        }
    assert set(TABLES) == names
    for name, table in TABLES.items():
        named = {*table.get("columns", {}), *table.get("facets", ())}
        named |= {table[key] for key in ("sort_desc", "label_column") if key in table}
        assert named <= columns[name], name
        if "fts_table" in table:
            assert table["fts_table"] == f"{name}_fts"
