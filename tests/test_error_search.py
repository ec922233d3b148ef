"""Full-text search over error messages: the indexes follow every write, and a database
of a previous version gets its messages indexed."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from crawler.datasette import QUERIES
from crawler.rows import build_page_rows
from crawler.runs import RunFigures
from crawler.store import open_store

from .conftest import create_before, make_batch


def errors(*messages: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"code": "invalid", "message": m} for m in messages]}


async def save(db: Path, *batches: dict[str, Any]) -> None:
    async with open_store(db) as store:
        run = await store.start_run("full", "http://x")
        rows, error_rows = build_page_rows(list(batches), 1)
        await store.save_page(rows, error_rows, None, run, RunFigures())


def search(db: Path, table: str, words: str) -> list[tuple[Any, ...]]:
    """The rows of `table` whose indexed text matches `words`, as Datasette finds them."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            f"SELECT batch_id, position FROM {table} WHERE rowid IN "
            f"(SELECT rowid FROM {table}_fts WHERE {table}_fts MATCH ?) ORDER BY 1, 2",
            (words,),
        ).fetchall()


def search_requests(db: Path, words: str) -> list[tuple[Any, ...]]:
    """The requests whose error message matches `words`, by Datasette's canned query."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        found = conn.execute(QUERIES["requests_by_error_message"]["sql"], {"words": words})
        return sorted((row[0], row[1]) for row in found)


async def test_a_batchs_error_lines_are_found_and_replaced_lines_are_not(db_path: Path) -> None:
    batch_id = make_batch(1)["id"]
    await save(db_path, make_batch(1, errors=errors("Line 3: model not found", "bad JSON")))
    assert search(db_path, "batch_errors", "model found") == [(batch_id, 0)]
    await save(db_path, make_batch(1, errors=errors("token limit reached")))
    assert search(db_path, "batch_errors", "model") == []
    assert search(db_path, "batch_errors", "token limit") == [(batch_id, 0)]
    assert search(db_path, "batch_errors", "invalid") == [(batch_id, 0)], "codes too"


async def test_a_requests_error_is_found_after_insert_update_and_delete(db_path: Path) -> None:
    await save(db_path, make_batch(1))
    batch_id = make_batch(1)["id"]
    upsert = (
        "INSERT INTO batch_requests (batch_id, custom_id, file_id, kind, error_code, "
        "error_message) VALUES (?, ?, 'f', 'error', ?, ?) ON CONFLICT(batch_id, custom_id) "
        "DO UPDATE SET error_code = excluded.error_code, error_message = excluded.error_message"
    )
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.executemany(
            upsert,
            [
                (batch_id, "a", "context_length_exceeded", "maximum context length is 8192"),
                (batch_id, "b", None, None),  # an answer: nothing to index
                (batch_id, "c", "context_length_exceeded", "maximum context length is 8192"),
            ],
        )
    assert search_requests(db_path, "context length") == [(batch_id, "a"), (batch_id, "c")]
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute(upsert, (batch_id, "a", "rate_limit", "too many requests"))
        conn.execute(upsert, (batch_id, "b", None, "server overloaded"))
        # A file read again (after an interruption): its lines and messages stored before.
        conn.execute(
            upsert, (batch_id, "c", "context_length_exceeded", "maximum context length is 8192")
        )
        conn.execute(upsert, (batch_id, "b", "overloaded", "server overloaded"))
    assert search_requests(db_path, "too many") == [(batch_id, "a")]
    assert search_requests(db_path, "requests OR overloaded") == [(batch_id, "a"), (batch_id, "b")]
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("DELETE FROM batch_requests WHERE custom_id IN ('a', 'c')")
        messages = conn.execute("SELECT count(*) FROM request_error_messages").fetchone()[0]
        conn.execute(
            "INSERT INTO request_error_messages_fts (request_error_messages_fts, rank) "
            "VALUES ('integrity-check', 0)"
        )
    assert messages == 3, "each message once"
    assert search_requests(db_path, "requests OR overloaded OR context") == [(batch_id, "b")]


async def test_a_database_of_the_previous_version_has_its_messages_indexed(db_path: Path) -> None:
    await create_before(db_path, "error_search")
    # Written as that version wrote them: this version's writes need this version's schema.
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.executemany(
            "INSERT INTO batches (id, raw, first_seen_at, last_seen_at) VALUES (?, '{}', 1, 1)",
            [(make_batch(2)["id"],), (make_batch(1)["id"],)],
        )
        conn.execute(
            "INSERT INTO batch_errors (batch_id, position, code, message) "
            "VALUES (?, 0, 'invalid', 'quota exceeded')",
            (make_batch(2)["id"],),
        )
        conn.execute(
            "INSERT INTO batch_requests (batch_id, custom_id, file_id, kind, error_message) "
            "VALUES (?, 'r1', 'f', 'error', 'the server had an error')",
            (make_batch(1)["id"],),
        )
    async with open_store(db_path):
        pass
    assert search(db_path, "batch_errors", "quota") == [(make_batch(2)["id"], 0)]
    assert search_requests(db_path, "server error") == [(make_batch(1)["id"], "r1")]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        kept = conn.execute("SELECT batch_id, position, code, message FROM batch_errors").fetchall()
    assert kept == [(make_batch(2)["id"], 0, "invalid", "quota exceeded")]
