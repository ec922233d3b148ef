"""The database file before SQLite opens it: is it ours to open, and who is writing it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from ..errors import DatabaseBusyError, DatabaseError

_SQLITE_MAGIC = b"SQLite format 3\x00"

# Upserts (ON CONFLICT DO UPDATE) arrived in 3.24.
_SQLITE_NEEDED = (3, 24, 0)

# A `status` probing the lock holds it for an instant: a sync tries a few times.
_LOCK_ATTEMPTS = 5
_LOCK_RETRY_SECONDS = 0.02


def check_file(path: Path, *, must_exist: bool = False) -> None:
    """Refuse, before SQLite touches it, a file that is not a SQLite database.

    Raises:
        DatabaseError: SQLite is too old, the file cannot be read, or is not SQLite.
    """
    if sqlite3.sqlite_version_info < _SQLITE_NEEDED:
        raise DatabaseError(
            f"this Python's SQLite is {sqlite3.sqlite_version}; batch-crawler needs 3.24 or newer"
        )
    _check_journals(path)
    try:
        _check_regular(path)
        with path.open("rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        if must_exist:
            raise DatabaseError(f"no database at {path}; run `batch-crawler sync` first") from None
        return
    except OSError as exc:
        raise DatabaseError(f"cannot read database {path}: {exc.strerror}") from exc
    if must_exist and not header:
        raise DatabaseError(
            f"{path} is empty, not a batch-crawler database yet; run `batch-crawler sync` first"
        )
    if header and header != _SQLITE_MAGIC:
        raise DatabaseError(f"{path} is not a SQLite database; choose another --db path")


# What a sync's lock file adds to the database's name (see lock_path).
_LOCK_SUFFIX = ".lock"

# The files kept beside a database: SQLite's WAL, its shared memory and rollback journal,
# and a sync's lock. Written over, the first loses every page a killed sync committed.
_BESIDE_A_DATABASE = ("-wal", "-shm", "-journal", _LOCK_SUFFIX)


def is_a_database(path: Path) -> bool:
    """Whether a SQLite database, or a file kept beside one, is at `path`: a page must never
    be written over either.

    Raises:
        OSError: `path` cannot be read.
    """
    for suffix in _BESIDE_A_DATABASE:
        if path.name.endswith(suffix) and _holds_sqlite(path.with_name(path.name[: -len(suffix)])):
            return True
    return _holds_sqlite(path)


def _holds_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except FileNotFoundError:
        return False


def _check_journals(path: Path) -> None:
    """Refuse a FIFO, a device or a folder where SQLite keeps the database's journals:
    opening one blocks for good, signals unheard, in SQLite's own code. Beside the path
    given, and beside the file a symbolic link names (where SQLite keeps them)."""
    for suffix, where in itertools.product(("-journal", "-wal", "-shm"), {path, path.resolve()}):
        journal = where.with_name(where.name + suffix)
        try:
            mode = journal.stat().st_mode
        except OSError:  # none there (or none to see: SQLite says what is wrong)
            continue
        if not stat.S_ISREG(mode):
            raise DatabaseError(
                f"{journal} is not a regular file; remove it: SQLite keeps the database's "
                "journal there"
            )


def _check_regular(path: Path, fix: str = "choose a file path for --db") -> None:
    """Refuse a FIFO, a device or a folder before opening it (opening a FIFO blocks for
    good), and a file with hard links; `fix` says what to do.

    Raises:
        FileNotFoundError: nothing is there.
        DatabaseError: something other than a regular file is there.
    """
    status = path.stat()
    if not stat.S_ISREG(status.st_mode):
        kind = "a folder" if stat.S_ISDIR(status.st_mode) else "not a regular file"
        raise DatabaseError(f"{path} is {kind}; {fix}")
    if status.st_nlink > 1:
        # SQLite finds a database's journal, and this its lock, by the name it is opened by:
        # two syncs by two names would write at once, and damage it.
        raise DatabaseError(
            f"{path} has {status.st_nlink - 1} other name(s) (hard links), by which another "
            "sync could write it at once; give it a file of its own (cp, not ln)"
        )


def lock_path(path: Path) -> Path:
    """The file a sync locks while it writes `path`: `batches.db` -> `batches.db.lock`.

    A file of its own, not the database: closing any descriptor of the database would
    drop SQLite's own locks on it, held by the same process. Beside the file a symlink
    leads to, as SQLite's own `-wal` is: two paths to one database share one lock.
    """
    real = Path(os.path.realpath(path))
    return real.with_name(real.name + _LOCK_SUFFIX)


@contextlib.asynccontextmanager
async def writer_lock(path: Path) -> AsyncIterator[None]:
    """Hold the exclusive sync lock of `path` for the whole sync.

    flock() locks are released by the kernel when the process dies, even by kill -9,
    so a crashed sync never leaves a stale lock behind. The lock file itself stays:
    removing it would let two syncs lock two different files.

    Raises:
        DatabaseBusyError: another sync holds the lock.
        DatabaseError: the lock file cannot be opened.
    """
    lock = lock_path(path)
    fix = f"it is the lock file of {path}: remove it, and a sync makes it anew"
    try:
        with contextlib.suppress(FileNotFoundError):
            _check_regular(lock, fix)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if lock.is_symlink():
            raise DatabaseError(f"cannot open {lock} ({exc.strerror}); {fix}") from exc
        raise DatabaseError(f"cannot open database {path}: {exc.strerror}") from exc
    try:
        for attempt in range(1, _LOCK_ATTEMPTS + 1):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _LOCK_ATTEMPTS:
                    raise DatabaseBusyError(
                        f"another sync is writing {path}; wait for it to finish"
                    ) from None
                await asyncio.sleep(_LOCK_RETRY_SECONDS)
        yield
    finally:
        os.close(fd)


def sync_is_running(path: Path) -> bool:
    """Whether a sync holds the writer lock of `path` right now."""
    lock = lock_path(path)
    try:
        _check_regular(lock)
        fd = os.open(lock, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, DatabaseError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_only_uri(path: Path) -> str:
    """An SQLite URI opening `path` read-only; `#`, `?` and `%` in names are escaped."""
    return path.resolve().as_uri() + "?mode=ro"
