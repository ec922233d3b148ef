"""The SQLite edge: open safely, migrate, and commit one page per transaction."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .errors import BrokenResponseError, DatabaseBusyError, DatabaseError
from .migrations import APPLICATION_ID, load_migrations
from .rows import BATCH_COLUMNS, ERROR_COLUMNS

_SQLITE_MAGIC = b"SQLite format 3\x00"

_SQLITE_NEEDED = (3, 24, 0)

T = TypeVar("T")

_BATCH_VALUES = f"({', '.join('?' * len(BATCH_COLUMNS))})"
_UPSERT_BATCHES = (
    f"INSERT INTO batches ({', '.join(BATCH_COLUMNS)}) VALUES {{values}} "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in BATCH_COLUMNS if c not in {"id", "first_seen_at"})
    + ", gone_at = NULL"
)
# Batches in these states never change again; any other status, known or not, may.
TERMINAL = ("completed", "failed", "expired", "cancelled")
_INSERT_ERROR = (
    f"INSERT INTO batch_errors ({', '.join(ERROR_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ERROR_COLUMNS))})"
)
_RAW = BATCH_COLUMNS.index("raw")

# WAL lets readers (the `status` command, a user's sqlite3 shell) query while a sync
# writes; synchronous=NORMAL is safe under WAL against a killed process, and a power
# cut can only lose the last pages, which the next sync fetches again.
_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
    # Checkpoint every 40 MB of WAL rather than 4 MB: each checkpoint syncs the file, and
    # index pages touched by many pages in a row are copied back once instead of often.
    "PRAGMA wal_autocheckpoint = 10000",
    # A many-row upsert stages its rows in a transient table: in a file, that was a file
    # opened and written for every page.
    "PRAGMA temp_store = MEMORY",
)


@dataclass(frozen=True)
class WalkState:
    """Where the walk of the list stands; see the `walk_state` table."""

    cursor: str | None = None
    stop_id: str | None = None
    head_id: str | None = None
    finished: bool = False


@dataclass(frozen=True)
class PageCounts:
    """What one committed page changed."""

    new: int
    updated: int
    error_lines: int


def _check_file(path: Path, *, must_exist: bool = False) -> None:
    """Refuse, before SQLite touches it, a file that is not a SQLite database."""
    if sqlite3.sqlite_version_info < _SQLITE_NEEDED:
        # Upserts (ON CONFLICT DO UPDATE) arrived in 3.24.
        raise DatabaseError(
            f"this Python's SQLite is {sqlite3.sqlite_version}; batch-crawler needs 3.24 or newer"
        )
    try:
        with path.open("rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        if must_exist:
            raise DatabaseError(f"no database at {path}; run `batch-crawler sync` first") from None
        return
    except OSError as exc:
        raise DatabaseError(f"cannot read database {path}: {exc.strerror}") from exc
    if header and header != _SQLITE_MAGIC:
        raise DatabaseError(f"{path} is not a SQLite database; choose another --db path")


def lock_path(path: Path) -> Path:
    """The file a sync locks while it writes `path`: `batches.db` -> `batches.db.lock`.

    A file of its own, not the database: closing any descriptor of the database would
    drop SQLite's own locks on it, held by the same process.
    """
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def _writer_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive sync lock of `path` for the whole sync.

    flock() locks are released by the kernel when the process dies, even by kill -9,
    so a crashed sync never leaves a stale lock behind. The lock file itself stays:
    removing it would let two syncs lock two different files.
    """
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DatabaseError(f"cannot open database {path}: {exc.strerror}") from exc
    try:
        # A `status` probing the lock holds it for an instant: try a few times.
        for attempt in range(5):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 4:
                    raise DatabaseBusyError(
                        f"another sync is writing {path}; wait for it to finish"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def sync_is_running(path: Path) -> bool:
    """Whether a sync holds the writer lock of `path` right now."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


async def _check_schema(conn: aiosqlite.Connection, path: Path, latest: int) -> int:
    """The schema version of an open database, after checking that it is ours."""
    async with conn.execute("PRAGMA application_id") as cur:
        app_id = (await cur.fetchone() or (0,))[0]
    async with conn.execute("PRAGMA user_version") as cur:
        version = int((await cur.fetchone() or (0,))[0])
    async with conn.execute("SELECT count(*) FROM sqlite_master") as cur:
        objects = (await cur.fetchone() or (0,))[0]
    if app_id != APPLICATION_ID and (app_id != 0 or objects):
        raise DatabaseError(
            f"{path} is a SQLite database of another program; choose another --db path"
        )
    if version > latest:
        raise DatabaseError(
            f"{path} was written by a newer batch-crawler (schema {version}, this one knows "
            f"up to {latest}); upgrade batch-crawler"
        )
    return version


async def _migrate(conn: aiosqlite.Connection, current: int) -> None:
    for migration in load_migrations():
        if migration.version <= current:
            continue
        # executescript() commits first and runs in autocommit, so the migration and
        # its bookkeeping need their own BEGIN/COMMIT to land together.
        script = (
            "BEGIN IMMEDIATE;\n"
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at INTEGER NOT NULL);\n"
            f"{migration.sql}\n;"
            f"INSERT INTO schema_migrations VALUES ({migration.version}, "
            f"'{migration.name}', {int(time.time())});\n"
            f"PRAGMA application_id = {APPLICATION_ID};\n"
            f"PRAGMA user_version = {migration.version};\n"
            "COMMIT;"
        )
        try:
            await conn.executescript(script)
        except sqlite3.Error:
            if conn.in_transaction:
                await conn.rollback()
            raise


@contextlib.asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[Store]:
    """Open `path` for a sync: lock it, check it is ours, migrate it, and close it after.

    Raises:
        DatabaseBusyError: another sync holds the database.
        DatabaseError: the file is not ours, is newer than us, or is broken.
    """
    _check_file(path)
    with _writer_lock(path):
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open database {path}: {exc}") from exc
        try:
            migrations = load_migrations()
            version = await _check_schema(conn, path, migrations[-1].version)
            for pragma in _PRAGMAS:
                await conn.execute(pragma)
            await _migrate(conn, version)
            yield Store(conn)
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(f"database {path} is unusable: {exc}") from exc
        finally:
            await conn.close()


def read_only_uri(path: Path) -> str:
    """An SQLite URI opening `path` read-only; `#`, `?` and `%` in names are escaped."""
    return path.resolve().as_uri() + "?mode=ro"


@contextlib.asynccontextmanager
async def open_reader(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """Open an existing database read-only, for reports; never creates or migrates."""
    _check_file(path, must_exist=True)
    try:
        conn = await aiosqlite.connect(read_only_uri(path), uri=True)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from exc
    try:
        latest = load_migrations()[-1].version
        version = await _check_schema(conn, path, latest)
        if version < latest:
            raise DatabaseError(
                f"{path} has an older schema ({version}); run `batch-crawler sync` to upgrade it"
            )
        yield conn
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"database {path} is unusable: {exc}") from exc
    finally:
        await conn.close()


async def read_walk(conn: aiosqlite.Connection) -> WalkState | None:
    """The walk state stored in an open database, or None before the first sync."""
    async with conn.execute("SELECT cursor, stop_id, head_id, finished FROM walk_state") as cur:
        row = await cur.fetchone()
    return None if row is None else WalkState(row[0], row[1], row[2], bool(row[3]))


def _write_walk(db: sqlite3.Connection, walk: WalkState) -> None:
    db.execute(
        "INSERT INTO walk_state (singleton, cursor, stop_id, head_id, finished, updated_at) "
        "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT(singleton) DO UPDATE SET "
        "cursor = excluded.cursor, stop_id = excluded.stop_id, head_id = excluded.head_id, "
        "finished = excluded.finished, updated_at = excluded.updated_at",
        (walk.cursor, walk.stop_id, walk.head_id, int(walk.finished), int(time.time())),
    )


def _write_run(db: sqlite3.Connection, run_id: int, figures: dict[str, float]) -> None:
    if not figures:
        return
    sets = ", ".join(f"{name} = ?" for name in figures)
    db.execute(f"UPDATE sync_runs SET {sets} WHERE id = ?", (*figures.values(), run_id))


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


@functools.lru_cache(maxsize=8)
def _upsert_sql(rows: int) -> str:
    return _UPSERT_BATCHES.format(values=", ".join([_BATCH_VALUES] * rows))


def _upsert_batches(db: sqlite3.Connection, batch_rows: Sequence[tuple[Any, ...]]) -> None:
    """Upsert rows with as few statements as SQLite's limit on parameters allows.

    The sqlite3 module hands the GIL back and forth around every statement it steps, and
    the event loop holds it for long stretches: one statement a page instead of one a row
    walked about 10 % faster at L = 0 (bench/bench.py, 200,000 batches, 4 alternated runs).
    """
    per_statement = max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(BATCH_COLUMNS))
    for start in range(0, len(batch_rows), per_statement):
        chunk = batch_rows[start : start + per_statement]
        db.execute(_upsert_sql(len(chunk)), list(itertools.chain.from_iterable(chunk)))


def _write_page(
    db: sqlite3.Connection,
    batch_rows: Sequence[tuple[Any, ...]],
    error_rows: Sequence[tuple[Any, ...]],
    walk: WalkState | None,
    run_id: int,
    run_figures: dict[str, float],
    gone_ids: Sequence[str] = (),
) -> PageCounts:
    ids = [row[0] for row in batch_rows]
    marks = ", ".join("?" * len(ids))
    with _transaction(db):
        before = dict(db.execute(f"SELECT id, raw FROM batches WHERE id IN ({marks})", ids))
        _upsert_batches(db, batch_rows)
        if before:
            # Only a batch stored before can have error lines to replace: a first walk
            # skips a hundred index probes a page.
            stored = ", ".join("?" * len(before))
            db.execute(f"DELETE FROM batch_errors WHERE batch_id IN ({stored})", list(before))
        db.executemany(_INSERT_ERROR, error_rows)
        gone_at = int(time.time())
        db.executemany(
            "UPDATE batches SET gone_at = ? WHERE id = ?", [(gone_at, i) for i in gone_ids]
        )
        if walk is not None:
            _write_walk(db, walk)
        _write_run(db, run_id, run_figures)
    updated = sum(row[0] in before and before[row[0]] != row[_RAW] for row in batch_rows)
    return PageCounts(len(ids) - len(before), updated, len(error_rows))


def _load_in_flight(db: sqlite3.Connection) -> list[tuple[str, int]]:
    """Batches stored as not yet terminal, with their position in the list, newest first."""
    marks = ", ".join("?" * len(TERMINAL))
    rows = db.execute(
        f"SELECT id, created_at FROM batches WHERE status NOT IN ({marks}) AND gone_at IS NULL",
        TERMINAL,
    ).fetchall()
    newer = "SELECT count(*) FROM batches WHERE created_at > ?"
    return [(batch_id, db.execute(newer, (created,)).fetchone()[0]) for batch_id, created in rows]


def _start_run(db: sqlite3.Connection, mode: str, base_url: str) -> int:
    with _transaction(db):
        # Only one sync can hold the database, so a row still 'running' is a dead run.
        db.execute("UPDATE sync_runs SET outcome = 'killed' WHERE outcome = 'running'")
        cur = db.execute(
            "INSERT INTO sync_runs (started_at, mode, outcome, base_url) "
            "VALUES (?, ?, 'running', ?)",
            (int(time.time()), mode, base_url),
        )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _save_walk(db: sqlite3.Connection, walk: WalkState) -> None:
    with _transaction(db):
        _write_walk(db, walk)


def _finish_run(
    db: sqlite3.Connection,
    run_id: int,
    outcome: str,
    figures: dict[str, float],
    warnings: Sequence[str],
    error: str | None,
) -> None:
    with _transaction(db):
        _write_run(db, run_id, figures)
        db.execute(
            "UPDATE sync_runs SET ended_at = ?, outcome = ?, warnings = ?, error = ? WHERE id = ?",
            (
                int(time.time()),
                outcome,
                json.dumps(list(warnings)) if warnings else None,
                error,
                run_id,
            ),
        )


class Store:
    """The writes of a sync, each one transaction on the connection's own thread."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def _in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work(db, *args)` on the connection's thread, as one call.

        aiosqlite sends each statement to its thread separately, and the thread then idles
        until the event loop sends the next; a page's eight statements as one call walk
        30 % faster (60,000 batches, bench/bench.py). aiosqlite has no public way to do
        this, hence its `_execute` and `_conn`, pinned in pyproject.toml and exercised by
        every store test.
        """
        conn = self._conn
        result: T = await conn._execute(lambda: work(conn._conn, *args))  # type: ignore[no-untyped-call]
        return result

    async def load_walk(self) -> WalkState | None:
        """The saved walk state, or None before the first sync."""
        return await read_walk(self._conn)

    async def load_in_flight(self) -> list[tuple[str, int]]:
        """Ids of the batches stored as in flight, each with its position, newest first."""
        return await self._in_thread(_load_in_flight)

    async def created_at(self, batch_id: str) -> int | None:
        """The stored creation time of a batch, if it is stored and is a whole number."""
        async with self._conn.execute(
            "SELECT created_at FROM batches WHERE id = ?", (batch_id,)
        ) as cur:
            row = await cur.fetchone()
        return row[0] if row is not None and isinstance(row[0], int) else None

    async def save_walk(self, walk: WalkState) -> None:
        """Replace the walk state on its own (a new walk begins)."""
        await self._in_thread(_save_walk, walk)

    async def start_run(self, mode: str, base_url: str) -> int:
        """Open a ledger row for this run; rows left 'running' by a killed run are closed."""
        return await self._in_thread(_start_run, mode, base_url)

    async def save_page(
        self,
        batch_rows: Sequence[tuple[Any, ...]],
        error_rows: Sequence[tuple[Any, ...]],
        walk: WalkState | None,
        run_id: int,
        run_figures: dict[str, float],
        gone_ids: Sequence[str] = (),
    ) -> PageCounts:
        """Upsert a page's batches, replace their error lines, and move the walk: atomically.

        Args:
            walk: the walk state to commit with the page; None leaves it as it is.
            gone_ids: batches the API answered 404 for, marked gone in the same commit.

        Raises:
            BrokenResponseError: a field held a value SQLite cannot store (nothing is written).
        """
        try:
            return await self._in_thread(
                _write_page, batch_rows, error_rows, walk, run_id, run_figures, gone_ids
            )
        except (
            sqlite3.InterfaceError,
            sqlite3.ProgrammingError,
            sqlite3.IntegrityError,
            OverflowError,  # an integer wider than SQLite's 64 bits
            ValueError,  # text SQLite cannot encode, such as a lone surrogate
        ) as exc:
            raise BrokenResponseError(f"a batch on this page cannot be stored: {exc}") from exc

    async def finish_run(
        self,
        run_id: int,
        outcome: str,
        figures: dict[str, float],
        warnings: Sequence[str],
        error: str | None,
    ) -> None:
        """Close this run's ledger row with its outcome."""
        await self._in_thread(_finish_run, run_id, outcome, figures, warnings, error)
