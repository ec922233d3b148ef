"""The SQLite edge: migrations, refusing files that are not ours, page writes, the lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from crawler.errors import DatabaseBusyError, DatabaseError, UnstorableBatchError
from crawler.rows import BATCH_COLUMNS, build_page_rows
from crawler.runs import RunFigures
from crawler.store import Store, lock_path, open_store, schema, sync_is_running
from crawler.store import writes as store_module
from crawler.store.schema import APPLICATION_ID, Migration, load_migrations
from crawler.walk import WalkState

from .conftest import make_batch, roll_back_columns

LATEST = load_migrations()[-1].version


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def save(store: Store, batches: list[dict[str, object]], run_id: int, seen_at: int = 1):
    batch_rows, error_rows = build_page_rows(batches, seen_at)
    return await store.save_page(
        batch_rows, error_rows, WalkState(cursor="c"), run_id, RunFigures(pages=1)
    )


async def test_migrations_create_the_schema_on_an_empty_database(db_path: Path) -> None:
    """A new file gets every table, is marked as ours, and records each migration."""
    async with open_store(db_path):
        pass
    tables = {r[0] for r in query(db_path, "SELECT name FROM sqlite_schema WHERE type='table'")}
    assert {"batches", "batch_errors", "walk_state", "sync_runs", "schema_migrations"} <= tables
    assert query(db_path, "PRAGMA user_version") == [(LATEST,)]
    assert query(db_path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert [r[0] for r in query(db_path, "SELECT version FROM schema_migrations")] == list(
        range(1, LATEST + 1)
    )


async def test_times_stored_as_floats_are_made_whole_seconds_on_upgrading(
    db_path: Path,
) -> None:
    """A database an earlier build stored float times in (REAL, a fraction kept): its head
    was in no second, and the new batches of that second below it were missed until
    `--full`. Migration 26 makes them whole seconds, or NULL past 64 bits."""
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        await save(store, [make_batch(1), make_batch(2), make_batch(3)], run)
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE batches SET created_at = created_at + 0.725, expires_at = 1e300")
    roll_back_columns(db_path, "whole_seconds")
    async with open_store(db_path):
        pass
    times = query(db_path, "SELECT created_at, typeof(created_at), expires_at FROM batches")
    assert sorted(times) == [(1_700_000_000 + n, "integer", None) for n in (1, 2, 3)]


async def test_opening_a_current_database_changes_nothing(db_path: Path) -> None:
    """Migrations already applied are not applied again."""
    async with open_store(db_path):
        pass
    before = query(db_path, "SELECT * FROM schema_migrations")
    async with open_store(db_path):
        pass
    assert query(db_path, "SELECT * FROM schema_migrations") == before


async def test_a_newer_database_is_refused_and_untouched(db_path: Path) -> None:
    """A schema newer than this version is refused with advice, and left as it was."""
    async with open_store(db_path):
        pass
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    before = db_path.read_bytes()
    with pytest.raises(DatabaseError, match="newer batch-crawler"):
        async with open_store(db_path):
            pass
    assert db_path.read_bytes() == before


@pytest.mark.parametrize(
    "marks", ["CREATE TABLE notes (x)", "PRAGMA user_version = 3"], ids=["tables", "a version"]
)
async def test_another_programs_database_is_refused_and_untouched(
    db_path: Path, marks: str
) -> None:
    """A SQLite file with other tables, or a version of another program's (and no tables
    yet), is not ours: refused, not written. The second read as our schema 3, and failed
    migrating with "no such index"."""
    with sqlite3.connect(db_path) as conn:
        conn.execute(marks)
    before = db_path.read_bytes()
    with pytest.raises(DatabaseError, match="another program"):
        async with open_store(db_path):
            pass
    assert db_path.read_bytes() == before
    assert not Path(f"{db_path}-wal").exists()


async def test_a_file_that_is_not_sqlite_is_refused_and_untouched(db_path: Path) -> None:
    """A text file at the --db path is refused before SQLite opens it."""
    db_path.write_text("hello, this is not a database\n" * 10)
    before = db_path.read_bytes()
    with pytest.raises(DatabaseError, match="not a SQLite database"):
        async with open_store(db_path):
            pass
    assert db_path.read_bytes() == before


async def test_a_corrupt_database_is_a_clear_error(db_path: Path) -> None:
    """A file with a SQLite header but garbage after it gives a DatabaseError."""
    db_path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(DatabaseError):
        async with open_store(db_path):
            pass


async def test_upsert_is_idempotent_and_keeps_first_seen(db_path: Path) -> None:
    """Saving the same page twice keeps one row per batch and the first-seen time."""
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        first = await save(store, [make_batch(1), make_batch(2)], run, seen_at=10)
        again = await save(store, [make_batch(1), make_batch(2)], run, seen_at=20)
    assert (first.new, first.updated) == (2, 0)
    assert (again.new, again.updated) == (0, 0)
    assert query(
        db_path, "SELECT count(*), min(first_seen_at), max(last_seen_at) FROM batches"
    ) == [(2, 10, 20)]


async def test_a_changed_batch_counts_as_updated(db_path: Path) -> None:
    """A batch whose object changed is updated in place."""
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        await save(store, [make_batch(1, status="in_progress")], run)
        counts = await save(store, [make_batch(1, status="completed")], run)
    assert counts.updated == 1
    assert query(db_path, "SELECT status FROM batches") == [("completed",)]


async def test_error_lines_are_replaced_as_a_set(db_path: Path) -> None:
    """A batch's error lines are replaced whole: none linger from an older copy."""
    two = {"data": [{"code": "a", "message": "1"}, {"code": "b", "message": "2"}]}
    one = {"data": [{"code": "c", "message": "3"}]}
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        await save(store, [make_batch(1, errors=two), make_batch(2, errors=one)], run)
        await save(store, [make_batch(1, errors=one)], run)
    rows = query(db_path, "SELECT batch_id, position, code FROM batch_errors ORDER BY 1, 2")
    assert rows == [(make_batch(1)["id"], 0, "c"), (make_batch(2)["id"], 0, "c")]


async def test_error_lines_go_when_a_stored_batch_has_none_any_more(db_path: Path) -> None:
    """A page mixing new batches with a stored one clears the stored one's old lines (of a
    batch in flight: one ended never changes again)."""
    one = {"data": [{"code": "c", "message": "3"}]}
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        await save(store, [make_batch(1, status="in_progress", errors=one)], run)
        batches = [make_batch(2, errors=one), make_batch(1, status="in_progress"), make_batch(3)]
        await save(store, batches, run)
    rows = query(db_path, "SELECT batch_id, code FROM batch_errors")
    assert rows == [(make_batch(2)["id"], "c")]


async def test_a_page_that_cannot_be_stored_writes_nothing(db_path: Path) -> None:
    """A value SQLite cannot bind fails the page cleanly and rolls it back."""
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        with pytest.raises(UnstorableBatchError, match="cannot be stored"):
            await save(store, [make_batch(1), make_batch(2, status={"odd": 1})], run)
        assert await store.load_walk() is None
    assert query(db_path, "SELECT count(*) FROM batches") == [(0,)]


@pytest.mark.parametrize(
    "odd", [{"created_at": 2**70}, {"status": "\ud800"}], ids=["wide integer", "lone surrogate"]
)
async def test_values_sqlite_cannot_hold_fail_the_page_cleanly(
    db_path: Path, odd: dict[str, object]
) -> None:
    """An integer past 64 bits or unencodable text is a broken response, not a crash."""
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        with pytest.raises(UnstorableBatchError, match="cannot be stored"):
            await save(store, [make_batch(1), make_batch(2, **odd)], run)
    assert query(db_path, "SELECT count(*) FROM batches") == [(0,)]


async def test_a_batch_listed_twice_on_a_page_is_stored_once(db_path: Path) -> None:
    """A page repeating a batch keeps its last copy, error lines included."""
    first = make_batch(1, status="failed", errors={"data": [{"code": "a"}, {"code": "b"}]})
    last = make_batch(1, status="failed", errors={"data": [{"code": "c"}]})
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        counts = await save(store, [first, make_batch(2), last], run)
    assert counts.new == 2
    assert query(db_path, "SELECT code FROM batch_errors") == [("c",)]


@pytest.mark.parametrize("order", ["ended first", "in flight first"])
async def test_a_batch_listed_ended_and_in_flight_on_one_page_is_stored_ended(
    db_path: Path, order: str
) -> None:
    """A page listing a batch ended, then in flight (a server merging two replicas), kept
    its last copy: the batch stayed in flight, as if it had gone back a stage."""
    copies = [make_batch(1, status="completed"), make_batch(1, status="in_progress")]
    if order == "in flight first":
        copies.reverse()
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        await save(store, [copies[0], make_batch(2), copies[1]], run)
    assert query(db_path, "SELECT id, status FROM batches ORDER BY id") == [
        (make_batch(1)["id"], "completed"),
        (make_batch(2)["id"], "completed"),
    ]


def page_state(path: Path) -> tuple[list[tuple[object, ...]], ...]:
    """What a page commit touches: the batches, their error lines, the walk, the ledger."""
    return (
        query(path, "SELECT id, status, last_seen_at FROM batches ORDER BY id"),
        query(path, "SELECT batch_id, position, code FROM batch_errors ORDER BY 1, 2"),
        query(path, "SELECT cursor, stop_id, head_id, finished FROM walk_state"),
        query(path, "SELECT pages, batches_seen FROM sync_runs"),
    )


def duplicate_error_line(error_rows: list[tuple[object, ...]]) -> None:
    error_rows.append(error_rows[0])  # the key (batch_id, position) twice


def error_line_of_an_unknown_batch(error_rows: list[tuple[object, ...]]) -> None:
    error_rows.append(("batch_nowhere", *error_rows[0][1:]))  # no such batch: foreign key


@pytest.mark.parametrize(
    "spoil",
    [duplicate_error_line, error_line_of_an_unknown_batch, None],
    ids=["duplicate error line", "error line of an unknown batch", "unstorable cursor"],
)
async def test_the_page_and_the_walk_state_commit_together(
    db_path: Path, spoil: Callable[[list[tuple[object, ...]]], None] | None
) -> None:
    """A page's rows, error lines, cursor and ledger figures land together, or none of them."""
    failed = {"data": [{"code": "a", "message": "1"}, {"code": "b", "message": "2"}]}
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        batch_rows, error_rows = build_page_rows([make_batch(9), make_batch(8)], 1)
        await store.save_page(
            batch_rows, error_rows, WalkState(cursor="c8", head_id="h"), run, RunFigures(pages=1)
        )
        first = page_state(db_path)
        assert first == (
            [(make_batch(8)["id"], "completed", 1), (make_batch(9)["id"], "completed", 1)],
            [],
            [("c8", None, "h", 0)],
            [(1, 0)],
        )
        # The next page fails after its batches are written: its error lines or its cursor.
        batches = [make_batch(9, status="expired"), make_batch(7, status="failed", errors=failed)]
        batch_rows, error_rows = build_page_rows(batches, 2)
        walk = WalkState(cursor="c7", head_id="h")
        if spoil is None:
            walk = WalkState(cursor={"not": "text"}, head_id="h")  # type: ignore[arg-type]
        else:
            spoil(error_rows)
        figures = RunFigures(pages=2, batches_seen=4)
        with pytest.raises(UnstorableBatchError, match="cannot be stored"):
            await store.save_page(batch_rows, error_rows, walk, run, figures)
        assert page_state(db_path) == first
        # The same page, unspoiled, lands whole.
        batch_rows, error_rows = build_page_rows(batches, 2)
        walk = WalkState(cursor="c7", head_id="h", end_unchecked=True, holder=("c8",))
        await store.save_page(batch_rows, error_rows, walk, run, figures)
        assert await store.load_walk() == walk
    assert page_state(db_path) == (
        [
            (make_batch(7)["id"], "failed", 2),
            (make_batch(8)["id"], "completed", 1),
            (make_batch(9)["id"], "expired", 2),
        ],
        [(make_batch(7)["id"], 0, "a"), (make_batch(7)["id"], 1, "b")],
        [("c7", None, "h", 0)],
        [(2, 4)],
    )


async def test_a_page_is_committed_with_its_own_counts_in_the_ledger(db_path: Path) -> None:
    """The run's figures were committed with a page before its counts were added: a run
    killed after it had its ledger say `batches 50 (new 45)` with 50 stored (pass 72B)."""
    failed = {"data": [{"code": "a", "message": "1"}]}
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        batch_rows, error_rows = build_page_rows([make_batch(9), make_batch(8, errors=failed)], 1)
        figures = RunFigures(pages=1, batches_seen=2)
        await store.save_page(batch_rows, error_rows, WalkState(cursor="c8"), run, figures)
    counted = query(db_path, "SELECT batches_new, batches_updated, error_lines FROM sync_runs")
    assert counted == [(2, 0, 1)]


@pytest.mark.parametrize("holder", [(None,), ("c8",), None], ids=["top", "cursor", "unknown"])
async def test_a_walk_keeps_what_its_cursors_page_was_asked_after(
    db_path: Path, holder: tuple[str | None] | None
) -> None:
    """The top (None) is told apart from a walk saved by a build that did not know (a
    resumed walk then confirms its cursor by id alone)."""
    walk = WalkState(cursor="c7", head_id="h", holder=holder)
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        batch_rows, error_rows = build_page_rows([make_batch(7)], 1)
        await store.save_page(batch_rows, error_rows, walk, run, RunFigures(pages=1))
        assert await store.load_walk() == walk


@pytest.mark.parametrize("holder", [None, "c13"], ids=["top", "cursor"])
async def test_a_stuck_walk_keeps_where_its_walk_of_the_top_stands(
    db_path: Path, holder: str | None
) -> None:
    """Its cursor, head, holder and pages past its stop; its stop is the stuck walk's head."""
    top = WalkState(cursor="c12", stop_id="h", head_id="c14", pages_past_stop=1, holder=(holder,))
    walk = WalkState(cursor="c7", head_id="h", holder=("c9",), top=top)
    async with open_store(db_path) as store:
        run = await store.start_run("resume", "http://x")
        batch_rows, error_rows = build_page_rows([make_batch(12)], 1)
        await store.save_page(batch_rows, error_rows, walk, run, RunFigures(pages=1))
        assert await store.load_walk() == walk


async def test_a_second_writer_is_refused_at_once(db_path: Path) -> None:
    """While one sync holds the database, another gets DatabaseBusyError."""
    async with open_store(db_path):
        assert sync_is_running(db_path)
        assert lock_path(db_path).exists()
        with pytest.raises(DatabaseBusyError, match="another sync"):
            async with open_store(db_path):
                pass
    assert not sync_is_running(db_path)


async def test_a_second_writer_through_a_symlink_is_refused_too(db_path: Path) -> None:
    """Two paths to one database share one lock: the second sync is refused."""
    link = db_path.with_name("link.db")
    link.symlink_to(db_path)
    async with open_store(db_path):
        assert sync_is_running(link)
        with pytest.raises(DatabaseBusyError, match="another sync"):
            async with open_store(link):
                pass


async def test_killed_runs_are_closed_by_the_next_run(db_path: Path) -> None:
    """A ledger row left 'running' is marked killed when the next run starts."""
    async with open_store(db_path) as store:
        await store.start_run("full", "http://x")
    async with open_store(db_path) as store:
        await store.start_run("resume", "http://x")
    assert query(db_path, "SELECT outcome FROM sync_runs ORDER BY id") == [
        ("killed",),
        ("running",),
    ]


async def test_pages_are_whole_where_sqlite_allows_few_parameters(db_path: Path) -> None:
    """SQLite before 3.32 takes 999 parameters a statement: a page goes in several."""
    async with open_store(db_path):
        pass
    db = sqlite3.connect(db_path, isolation_level=None)
    db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 2 * len(BATCH_COLUMNS) + 1)
    run_id = store_module._start_run(db, "default", "full", "http://x")
    batch_rows, error_rows = build_page_rows([make_batch(n) for n in range(7)], 1)
    counts = store_module._write_page(
        db, "default", batch_rows, error_rows, None, run_id, RunFigures(), ()
    )
    db.close()
    assert counts.new == 7
    assert query(db_path, "SELECT count(*) FROM batches") == [(7,)]


# A migration that fails half-way.


def with_a_broken_step(sql: str) -> Callable[[], list[Migration]]:
    """The shipped migrations, then one more whose SQL fails after some statements ran."""

    def load() -> list[Migration]:
        shipped = load_migrations()
        return [*shipped, Migration(len(shipped) + 1, "broken", sql)]

    return load


BROKEN_STEPS = {
    "no such table": (
        "CREATE TABLE half_applied (x INTEGER);\n"
        "ALTER TABLE batches ADD COLUMN half_applied INTEGER;\n"
        "INSERT INTO half_applied SELECT x FROM nowhere;"
    ),
    "constraint at run time": (
        "CREATE TABLE half_applied (x INTEGER NOT NULL);\n"
        "ALTER TABLE batches ADD COLUMN half_applied INTEGER;\n"
        "INSERT INTO half_applied VALUES (1);\n"
        "INSERT INTO half_applied VALUES (NULL);"
    ),
}


@pytest.mark.parametrize("sql", BROKEN_STEPS.values(), ids=BROKEN_STEPS.keys())
@pytest.mark.parametrize("existing", [False, True], ids=["new file", "current database"])
async def test_a_failed_migration_rolls_back_to_the_previous_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str, existing: bool
) -> None:
    """A step failing half-way leaves the previous schema: no table, column or record of it."""
    if existing:
        async with open_store(db_path):
            pass
    monkeypatch.setattr(schema, "load_migrations", with_a_broken_step(sql))
    with pytest.raises(DatabaseError, match=r"unusable|refused a write"):
        async with open_store(db_path):
            pass
    assert query(db_path, "PRAGMA user_version") == [(LATEST,)]
    assert query(db_path, "SELECT max(version), count(*) FROM schema_migrations") == [
        (LATEST, LATEST)
    ]
    tables = {r[0] for r in query(db_path, "SELECT name FROM sqlite_schema")}
    assert "half_applied" not in tables
    columns = {r[1] for r in query(db_path, "PRAGMA table_info(batches)")}
    assert "half_applied" not in columns
    assert not sync_is_running(db_path)
    # Without the broken step the database opens and takes a page as before.
    monkeypatch.undo()
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        await save(store, [make_batch(1)], run)
    assert query(db_path, "SELECT count(*) FROM batches") == [(1,)]
