"""The database as a careless user or a full disk leaves it: clear errors, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from aioresponses import aioresponses

from crawler.cli import main
from crawler.config import Settings
from crawler.errors import DatabaseError
from crawler.store import open_reader, open_store
from crawler.store import writes as store_writes
from crawler.store.reads import TERMINAL, select_unsettled
from crawler.store.schema import database_error
from crawler.sync_run import sync

from .conftest import API_KEY, BASE_URL, list_body, make_batch


@pytest.mark.parametrize("command", ["sync", "status"])
def test_a_fifo_for_a_database_is_refused_at_once(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """Opening a FIFO would block for good: it is refused before it is opened (exit 4)."""
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    fifo = tmp_path / "batches.db"
    os.mkfifo(fifo)
    code = main([command, "--db", str(fifo)])
    err = capsys.readouterr().err
    assert code == 4
    assert err == f"batch-crawler: {fifo} is not a regular file; choose a file path for --db\n"


@pytest.mark.parametrize("linked", [False, True], ids=["given", "behind a link"])
@pytest.mark.parametrize("command", ["sync", "status", "report"])
def test_a_fifo_for_a_databases_journal_is_refused_at_once(
    db_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    linked: bool,
) -> None:
    """SQLite opened it and waited for a writer for good, signals unheard: beside the
    database, where SQLite looks for it, which is beside the file a link names."""

    async def create() -> None:
        async with open_store(db_path):
            pass

    asyncio.run(create())
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    journal = db_path.with_name(db_path.name + "-journal")
    os.mkfifo(journal)
    given = db_path.with_name("link.db") if linked else db_path
    if linked:
        given.symlink_to(db_path)
    code = main([command, "--db", str(given)])
    assert code == 4
    assert capsys.readouterr().err == (
        f"batch-crawler: {journal} is not a regular file; remove it: SQLite keeps the "
        "database's journal there\n"
    )


async def test_a_database_with_another_name_is_refused(db_path: Path) -> None:
    """A hard link is a second name with a lock and a journal of its own: two syncs by two
    names wrote at once, and the database was damaged. Refused, whichever name is given."""
    async with open_store(db_path):
        pass
    other = db_path.with_name("other.db")
    os.link(db_path, other)
    for name in (db_path, other):
        with pytest.raises(DatabaseError, match=r"1 other name\(s\) \(hard links\)"):
            async with open_store(name):
                pass


@pytest.mark.parametrize("lock", ["a FIFO", "a folder", "a link to nowhere"])
async def test_a_lock_file_that_cannot_be_one_is_refused_at_once_saying_what_to_do(
    db_path: Path, lock: str
) -> None:
    """The lock file beside the database is checked the same way; what to do was said of
    --db ("choose a file path for --db"), and a link to nowhere read as the database
    missing."""
    path = db_path.with_name(db_path.name + ".lock")
    if lock == "a FIFO":
        os.mkfifo(path)
    elif lock == "a folder":
        path.mkdir()
    else:
        path.symlink_to(db_path.parent / "nowhere" / "x")
    with pytest.raises(DatabaseError) as caught:
        async with open_store(db_path):
            pass
    assert str(path) in str(caught.value)
    assert str(caught.value).endswith(
        f"it is the lock file of {db_path}: remove it, and a sync makes it anew"
    )


@pytest.mark.parametrize("command", ["sync", "status"])
def test_a_device_for_a_database_is_refused(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """/dev/null is no database: said as such, not "unusable"."""
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    assert main([command, "--db", os.devnull]) == 4
    assert "/dev/null is not a regular file" in capsys.readouterr().err


async def test_status_of_an_empty_file_says_it_is_empty(db_path: Path) -> None:
    """An empty file is not "an older schema (0)": it holds nothing yet."""
    db_path.touch()
    with pytest.raises(DatabaseError, match="is empty, not a batch-crawler database yet"):
        async with open_reader(db_path):
            pass


def full_disk_error(tmp_path: Path) -> sqlite3.Error:
    """A real SQLITE_FULL: a database capped at a few pages, filled."""
    conn = sqlite3.connect(tmp_path / "full.db")
    try:
        conn.execute("PRAGMA max_page_count = 2")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (randomblob(100000))")
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("the capped database took it all")


def test_a_full_disk_says_so_and_that_the_next_sync_resumes(tmp_path: Path) -> None:
    """SQLITE_FULL reads as a full disk, with what to do."""
    error = database_error(tmp_path / "b.db", full_disk_error(tmp_path))
    assert str(error) == (
        f"the disk holding {tmp_path / 'b.db'} is full; free some space and sync again: "
        "it resumes after the last committed page"
    )


def test_a_file_sqlite_cannot_open_names_the_access_it_needs(tmp_path: Path) -> None:
    """SQLITE_CANTOPEN says what access SQLite needs, including to the folder."""
    missing = tmp_path / "no-such-folder" / "b.db"
    with pytest.raises(sqlite3.OperationalError) as caught:
        sqlite3.connect(missing)
    assert "needs write access to the file and to its folder" in str(
        database_error(missing, caught.value)
    )


async def test_a_database_fault_during_a_run_is_recorded_in_its_ledger_row(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page write failing with a full disk fails the run, and its ledger row says why."""
    full = full_disk_error(tmp_path)

    def fail(*_: object) -> None:
        raise full

    monkeypatch.setattr(store_writes, "_write_page", fail)
    settings = Settings(db=db_path, base_url=BASE_URL, api_key=API_KEY, page_size=2)
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body([make_batch(1)], False))
        with pytest.raises(DatabaseError, match="is full"):
            await sync(settings)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        outcome, error = conn.execute("SELECT outcome, error FROM sync_runs").fetchone()
    assert outcome == "failed"
    assert error is not None
    assert "is full" in error


def unsettled_by_counting(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """The definition: a batch's position is the number of batches created after it."""
    marks = ", ".join("?" * len(TERMINAL))
    rows = conn.execute(
        "SELECT id, created_at FROM batches "
        f"WHERE (status IS NULL OR status NOT IN ({marks})) AND not_found_runs < 3",
        TERMINAL,
    ).fetchall()
    newer = "SELECT count(*) FROM batches WHERE created_at > ?"
    (total,) = conn.execute("SELECT count(*) FROM batches").fetchone()
    # No usable creation time, no known place: planned as the deepest.
    return [
        (i, conn.execute(newer, (c,)).fetchone()[0] if isinstance(c, int) else total)
        for i, c in rows
    ]


async def fill(db: Path, rows: Sequence[tuple[str, object, object, int]]) -> None:
    async with open_store(db):
        pass
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executemany(
            "INSERT INTO batches (id, status, created_at, not_found_runs, raw, first_seen_at, "
            "last_seen_at) VALUES (?, ?, ?, ?, '{}', 1, 1)",
            rows,
        )
        # The 404s were answered to the owner, the one account.
        conn.execute(
            "UPDATE batches SET not_found_by = json_object(account, not_found_runs) "
            "WHERE not_found_runs"
        )
        conn.commit()


async def test_unsettled_positions_match_their_definition(db_path: Path) -> None:
    """Ties, missing and text creation times, odd statuses and gone marks: same positions."""
    rng = random.Random(9)
    statuses = ["completed", "in_progress", "COMPLETED", "validating", "failed", "paused", None]
    times: list[object] = [None, "1700000000", "soon"]
    rows = [
        (
            f"batch_{n}",
            rng.choice(statuses),
            rng.choice(times) if rng.random() < 0.05 else rng.randrange(1000, 1300),
            rng.choice([0, 0, 0, 1, 3]),
        )
        for n in range(3000)
    ]
    await fill(db_path, rows)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert sorted(select_unsettled(conn, "default")) == sorted(unsettled_by_counting(conn))


async def test_planning_reads_the_index_once_not_once_per_unsettled_batch(db_path: Path) -> None:
    """With 4,000 of 8,000 batches unsettled, SQLite steps a few times per row, not n²."""
    rows = [(f"batch_{n}", "in_progress" if n % 2 else "completed", n, 0) for n in range(8000)]
    await fill(db_path, rows)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.set_progress_handler(count, 100)  # called every 100 virtual machine steps
        unsettled = select_unsettled(conn, "default")
    assert len(unsettled) == 4000
    # Counting from the top for each would step about 8,000 * 4,000 / 2 times: 160,000 calls.
    assert steps * 100 < 100 * 8000


async def test_a_database_replaced_during_a_sync_is_reported(db_path: Path) -> None:
    """If the file at the path is no longer the one the sync opened, it says so."""
    opened = open_store(db_path)
    await opened.__aenter__()
    os.replace(db_path, db_path.with_name("elsewhere.db"))
    db_path.write_bytes(b"")
    with pytest.raises(DatabaseError, match="was replaced or removed while the sync ran"):
        await opened.__aexit__(None, None, None)


async def test_unsettled_batches_come_least_recently_seen_first(db_path: Path) -> None:
    """A run cut short refreshes some; the next starts with the others, not the same ones."""
    rows = [(f"batch_{n}", "in_progress", 1000 + n, 0) for n in range(4)]
    await fill(db_path, rows)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.executemany(
            "UPDATE batches SET last_seen_at = ? WHERE id = ?",
            [(5, "batch_0"), (9, "batch_1"), (2, "batch_2"), (7, "batch_3")],
        )
        conn.commit()
        order = [batch_id for batch_id, _ in select_unsettled(conn, "default")]
    assert order == ["batch_2", "batch_0", "batch_3", "batch_1"]


def test_a_write_a_constraint_refuses_says_the_tables_may_have_been_changed(
    tmp_path: Path,
) -> None:
    """A trigger added by hand refusing a write read "database ... is unusable"."""
    path = tmp_path / "b.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("CREATE TRIGGER no BEFORE INSERT ON t BEGIN SELECT RAISE(ABORT, 'no'); END")
        with pytest.raises(sqlite3.IntegrityError) as caught:
            conn.execute("INSERT INTO t VALUES (1)")
    assert str(database_error(path, caught.value)) == (
        f"{path} refused a write (no): its tables or triggers may have been changed by hand; "
        "undo that or sync into a new file (if they were not, please report it)"
    )


def test_another_program_holding_the_database_says_so(tmp_path: Path) -> None:
    """A real SQLITE_BUSY: another connection in a write transaction past the timeout."""
    path = tmp_path / "b.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN IMMEDIATE")
        with (
            contextlib.closing(sqlite3.connect(path, timeout=0)) as writer,
            pytest.raises(sqlite3.OperationalError) as caught,
        ):
            writer.execute("BEGIN IMMEDIATE")
    error = database_error(path, caught.value)
    assert str(error).startswith(f"another program has been writing {path}")


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        (["ALTER TABLE batches DROP COLUMN cut_by"], "(no batches.cut_by)"),
        (
            [
                "ALTER TABLE batches DROP COLUMN ended_by",
                "DELETE FROM schema_migrations WHERE version > 21",
                "PRAGMA user_version = 21",
            ],
            "(no batches.ended_by)",
        ),
        (
            [
                "UPDATE schema_migrations SET name = 'request_files' WHERE version = 5",
                "DELETE FROM schema_migrations WHERE version > 5",
                "PRAGMA user_version = 5",
            ],
            "(migration 5 was request_files)",
        ),
    ],
    ids=["a column missing", "a column missing, older", "a migration of another name"],
)
@pytest.mark.parametrize("command", ["sync", "status"])
def test_a_database_a_development_build_migrated_otherwise_is_refused_clearly(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    changes: list[str],
    said: str,
) -> None:
    """A database at the latest schema number lacking a column its migration makes now (an
    unreleased migration changed after a build applied it): every sync failed on "no such
    column", saying nothing of why. One a branch's build migrated (its migration 5 made
    `batch_files`, this version's 6 does): `sync` failed on "table batch_files already
    exists", and `status` said to run it. One at an older schema lacking a column its
    migration makes now was migrated half-way first, then refused (pass 65B)."""
    db = tmp_path / "b.db"
    assert main(["demo", "--db", str(db), "--batches", "20"]) == 0
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        for change in changes:
            conn.execute(change)
    made = db.read_bytes()
    capsys.readouterr()
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    argv = [command, "--db", str(db)] + (
        ["--base-url", "http://127.0.0.1:9/v1"] * (command == "sync")
    )
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert "made by a development build of batch-crawler whose schema differs" in err
    assert f"{said}; sync into a new --db" in err
    assert db.read_bytes() == made
