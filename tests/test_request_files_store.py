"""The files to fetch: recorded with their batch, and backfilled for an older database."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crawler.rows import build_file_rows, build_page_rows
from crawler.runs import RunFigures
from crawler.store import open_store

from .conftest import create_before, make_batch


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.parametrize("status", ["completed", "failed", "expired", "cancelled"])
def test_a_terminal_batch_names_its_files_to_fetch(status: str) -> None:
    batch = make_batch(1, status=status, error_file_id="file-err-1")
    assert build_file_rows([batch]) == [
        ("file-out-1", batch["id"], "output"),
        ("file-err-1", batch["id"], "error"),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "in_progress"},
        {"status": "finalizing"},
        {"status": "COMPLETED"},  # not a status the API documents: maybe not final
        {"status": {"phase": "completed"}},
        {"output_file_id": None},
        {"output_file_id": ""},
        {"output_file_id": {"id": "file-1"}},
        {"output_file_id": "file-\ud800"},
    ],
)
def test_no_file_to_fetch_until_the_batch_is_final_and_names_a_usable_one(
    fields: dict[str, Any],
) -> None:
    assert build_file_rows([make_batch(1, **fields)]) == []


async def test_files_are_recorded_with_the_page_and_kept_when_seen_again(db_path: Path) -> None:
    """A file is added pending once; seeing its batch again leaves its state as it is."""
    batches = [make_batch(2, error_file_id="file-err-2"), make_batch(1, status="in_progress")]
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        for _ in range(2):
            rows, errors = build_page_rows(batches, 1)
            await store.save_page(
                rows, errors, None, run, RunFigures(), (), build_file_rows(batches)
            )
            with sqlite3.connect(db_path) as conn:
                conn.execute("UPDATE batch_files SET state = 'complete' WHERE kind = 'error'")
    assert query(db_path, "SELECT file_id, batch_id, kind, state FROM batch_files ORDER BY 1") == [
        ("file-err-2", make_batch(2)["id"], "error", "complete"),
        ("file-out-2", make_batch(2)["id"], "output", "pending"),
    ]


async def test_a_database_of_the_previous_version_gets_its_files_to_fetch(db_path: Path) -> None:
    """Batches stored before files were kept have theirs fetched by the next sync."""
    await create_before(db_path, "request_files")
    with sqlite3.connect(db_path) as conn:
        conn.executemany(
            "INSERT INTO batches (id, status, output_file_id, error_file_id, raw, "
            "first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, '{}', 1, 1)",
            [("b2", "completed", "file-out-2", "file-err-2"), ("b1", "in_progress", None, None)],
        )
    async with open_store(db_path):
        pass
    assert query(db_path, "SELECT file_id, batch_id, kind, state FROM batch_files ORDER BY 1") == [
        ("file-err-2", "b2", "error", "pending"),
        ("file-out-2", "b2", "output", "pending"),
    ]


async def test_files_expired_for_good_before_schema_19_stay_so(db_path: Path) -> None:
    """Three 404s in a row were the end before schema 19; now six, or three from each
    account that may read the file: those ended before stay ended, asked of their
    listers (a new account listing the batch gets an ask)."""
    await create_before(db_path, "file_readers")
    with sqlite3.connect(db_path) as conn:
        conn.executemany(
            "INSERT INTO batches (id, status, account, listed_by, raw, first_seen_at, "
            "last_seen_at) VALUES (?, 'failed', 'owner', ?, '{}', 1, 1)",
            [("b1", "other"), ("b2", None), ("b3", None)],
        )
        conn.executemany(
            "INSERT INTO batch_files (file_id, batch_id, kind, state, not_found_runs) "
            "VALUES (?, ?, 'error', 'expired', ?)",
            [("f1", "b1", 3), ("f2", "b2", 3), ("f3", "b3", 1)],
        )
    async with open_store(db_path):
        pass
    assert query(db_path, "SELECT file_id, not_found_runs, failed_by FROM batch_files") == [
        ("f1", 6, '["owner","other"]'),
        ("f2", 6, '["owner"]'),
        ("f3", 1, None),
    ]


async def test_files_answered_404_before_schema_20_keep_who_answered(db_path: Path) -> None:
    """Schema 20 tells the accounts whose ask answered 404 from those whose ask failed
    otherwise; those recorded before are taken as 404s where the file had one, and one
    account alone had failed (two taken as agreeing, one whose failure was a 503, expired
    the file for good at the next 404 of the other)."""
    await create_before(db_path, "files_not_found_by")
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO batches (id, status, account, raw, first_seen_at, last_seen_at) "
            "VALUES ('b1', 'failed', 'owner', '{}', 1, 1)"
        )
        conn.executemany(
            "INSERT INTO batch_files (file_id, batch_id, kind, state, not_found_runs, "
            "failed_by) VALUES (?, 'b1', ?, ?, ?, ?)",
            [
                ("f1", "error", "expired", 2, '["owner"]'),
                ("f2", "output", "failed", 0, '["x"]'),
                ("f3", "input", "expired", 2, '["owner","x"]'),
                ("f4", "other", "expired", 2, "not json"),
            ],
        )
    async with open_store(db_path):
        pass
    assert query(db_path, "SELECT file_id, failed_by, not_found_by FROM batch_files") == [
        ("f1", '["owner"]', '["owner"]'),
        ("f2", '["x"]', None),
        ("f3", '["owner","x"]', None),
        ("f4", "not json", None),
    ]


async def test_a_file_cut_by_one_accounts_budget_is_asked_of_another_first(
    db_path: Path,
) -> None:
    """An account with a short time budget claimed a file too long to download under it
    first on every joint sync, and the other account, without a budget, never asked."""
    batch = make_batch(1, status="failed", output_file_id=None, error_file_id="file-err-1")
    rows, errors = build_page_rows([batch], 1)
    async with open_store(db_path) as store:
        budgeted = store.for_account("budgeted", kinds=("error",))
        unbounded = store.for_account("unbounded", kinds=("error",))
        for account in (unbounded, budgeted):  # the budgeted account's run last
            run = await account.start_run("full", "http://x")
            await account.save_page(
                rows, errors, None, run, RunFigures(), (), build_file_rows([batch])
            )
        [file] = await budgeted.files_to_fetch(("error",), 0, 10, bodies=False)
        assert budgeted.claim_file(file)
        await budgeted.put_files_last([file])  # cut by its budget
        await budgeted.finish_run(run, "partial", RunFigures(), (), None)
        assert await budgeted.files_to_fetch(("error",), 0, 10, bodies=False) == []
        asked_first = await unbounded.files_to_fetch(("error",), 0, 10, bodies=False)
    assert [f.file_id for f in asked_first] == ["file-err-1"]
