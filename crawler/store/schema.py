"""The schema: numbered SQL migrations, the check that a file is ours, and connecting to it."""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ..errors import DatabaseError
from .files import read_only_uri

# PRAGMA application_id marks a file as ours ("BCRW"), so that we never write into
# some other program's database by mistake.
APPLICATION_ID = 0x42435257

T = TypeVar("T")

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema step; `version` is its number, applied in increasing order."""

    version: int
    name: str
    sql: str


def _migrations_dir() -> Traversable:
    packaged = resources.files("crawler").joinpath("migrations")
    if packaged.is_dir():
        return packaged
    # Running from a source checkout: the wheel maps the top-level folder into the package.
    return Path(__file__).resolve().parents[2] / "migrations"


def load_migrations() -> list[Migration]:
    """Every migration shipped with this version, in order."""
    found = []
    for entry in _migrations_dir().iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if not found or [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError("migrations are missing or not numbered 0001, 0002, ...")
    return found


def latest_version() -> int:
    """The schema version this batch-crawler writes."""
    return load_migrations()[-1].version


async def _schema_version(conn: aiosqlite.Connection, path: Path) -> int:
    """The schema version of an open database, after checking that it is ours."""
    async with conn.execute("PRAGMA application_id") as cur:
        app_id = (await cur.fetchone() or (0,))[0]
    async with conn.execute("PRAGMA user_version") as cur:
        version = int((await cur.fetchone() or (0,))[0])
    async with conn.execute("SELECT count(*) FROM sqlite_master") as cur:
        objects = (await cur.fetchone() or (0,))[0]
    if app_id != APPLICATION_ID and (app_id != 0 or objects or version):
        raise DatabaseError(
            f"{path} is a SQLite database of another program; choose another --db path"
        )
    latest = latest_version()
    if version > latest:
        raise DatabaseError(
            f"{path} was written by a newer batch-crawler (schema {version}, this one knows "
            f"up to {latest}); upgrade batch-crawler"
        )
    return version


@functools.lru_cache(maxsize=4)
def _columns_made_by(migrations: tuple[Migration, ...]) -> dict[str, frozenset[str]]:
    """Each table's columns as `migrations` make them (in memory, once)."""
    db = sqlite3.connect(":memory:")
    try:
        for migration in migrations:
            db.executescript(migration.sql)
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            t: frozenset(row[1] for row in db.execute(f"PRAGMA table_info({t})")) for t in tables
        }
    finally:
        db.close()


async def check_history(conn: aiosqlite.Connection, path: Path) -> None:
    """Refuse a database migrated by a development build whose migration of some number
    was another than this version's (by its name): migrated on, it failed on what that one
    made already ("table batch_files already exists")."""
    async with conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ) as cur:
        if await cur.fetchone() is None:
            return
    ours = {migration.version: migration.name for migration in load_migrations()}
    async with conn.execute("SELECT version, name FROM schema_migrations ORDER BY version") as cur:
        for version, name in await cur.fetchall():
            if version in ours and name != ours[version]:
                raise DatabaseError(
                    f"{path} was made by a development build of batch-crawler whose schema "
                    f"differs from this one's (migration {version} was {name}); sync into a "
                    "new --db"
                )


async def check_columns(conn: aiosqlite.Connection, path: Path, version: int | None = None) -> None:
    """Refuse a database lacking a column this version's migrations make (those up to
    `version`, before migrating it: migrated on, it failed half-way, changed): one migrated
    by a development build whose migration of the same number differed (every sync failed
    on "no such column")."""
    migrations = tuple(m for m in load_migrations() if version is None or m.version <= version)
    for table, columns in sorted(_columns_made_by(migrations).items()):
        async with conn.execute(f"PRAGMA table_info({table})") as cur:
            present = {row[1] for row in await cur.fetchall()}
        missing = sorted(columns - present)
        if missing:
            raise DatabaseError(
                f"{path} was made by a development build of batch-crawler whose schema "
                f"differs from this one's (no {table}.{missing[0]}); sync into a new --db"
            )


async def migrate(conn: aiosqlite.Connection, current: int) -> None:
    """Apply every migration above `current`, each with its bookkeeping in one transaction."""
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
async def connect(
    path: Path, *, read_only: bool = False
) -> AsyncIterator[tuple[aiosqlite.Connection, int]]:
    """A connection to our database at `path` and its schema version; closed after.

    Raises:
        DatabaseError: the file cannot be opened, is another program's, is newer than
            us, or is broken (also when SQLite finds it broken inside the block).
    """
    target = read_only_uri(path) if read_only else path
    try:
        conn = await aiosqlite.connect(target, uri=read_only, isolation_level=None)
    except sqlite3.Error as exc:
        raise database_error(path, exc) from exc
    try:
        yield conn, await _schema_version(conn, path)
    except sqlite3.Error as exc:
        raise database_error(path, exc) from exc
    finally:
        await conn.close()


def database_error(path: Path, exc: sqlite3.Error) -> DatabaseError:
    """What went wrong with the database at `path`, and what to do, in one line."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL":
        return DatabaseError(
            f"the disk holding {path} is full; free some space and sync again: it resumes "
            "after the last committed page"
        )
    if name.startswith("SQLITE_CANTOPEN") or name.startswith("SQLITE_READONLY"):
        return DatabaseError(
            f"cannot write {path}: SQLite needs write access to the file and to its folder "
            f"(for the -wal and -shm files beside it), even to read it ({exc})"
        )
    if name in {"SQLITE_CORRUPT", "SQLITE_NOTADB"}:
        return DatabaseError(f"{path} is damaged ({exc}); move it aside and sync into a new file")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        # Our own syncs queue on the lock file: this is another program writing the file.
        return DatabaseError(
            f"another program has been writing {path} for over 5 s (a sqlite3 shell in a "
            "transaction?); let it finish, then run the command again"
        )
    if name.startswith("SQLITE_CONSTRAINT"):
        # Our statements keep our own constraints: a table or trigger changed by hand does not.
        return DatabaseError(
            f"{path} refused a write ({exc}): its tables or triggers may have been changed "
            "by hand; undo that or sync into a new file (if they were not, please report it)"
        )
    return DatabaseError(f"database {path} is unusable: {exc}")


async def in_thread(conn: aiosqlite.Connection, work: Callable[..., T], *args: Any) -> T:
    """Run `work(db, *args)` on the connection's thread, as one call; its sqlite3 errors are
    the caller's to translate.

    aiosqlite sends each statement to its thread separately, and the thread then idles
    until the event loop sends the next; a page's eight statements as one call walk
    30 % faster (60,000 batches, bench/bench.py). aiosqlite has no public way to do
    this, hence its `_execute` and `_conn`, pinned in pyproject.toml and exercised by
    every store test.
    """
    result: T = await conn._execute(lambda: work(conn._conn, *args))  # type: ignore[no-untyped-call]
    return result
