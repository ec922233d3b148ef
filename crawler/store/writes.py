"""The SQL of writes: open a database for a sync, and commit one page per transaction."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ..errors import DatabaseError, UnstorableBatchError
from ..prices import RATE_COLUMNS, PriceFile
from ..redact import Secret
from ..rows import (
    BATCH_COLUMNS,
    ERROR_COLUMNS,
    TERMINAL_STATUSES,
    fill_page_rows,
    is_terminal,
    moves_back,
)
from ..runs import FIGURE_COLUMNS, RunFigures
from ..walk import WalkState
from .files import check_file, writer_lock
from .reads import (
    ENDED_ASKS,
    DamagedRowError,
    select_by_id_failed_at,
    select_created_at,
    select_created_just_after,
    select_cut,
    select_ended_without_files,
    select_failed_by_id,
    select_last_rowid,
    select_nearly_gone,
    select_newest,
    select_newest_ids,
    select_oldest_created_at,
    select_stored_by,
    select_unsettled,
    select_visit_resume,
    select_walk,
)
from .requests import (
    FileAsker,
    FileToFetch,
    delete_file_lines,
    in_file_order,
    mark_unfinished,
    put_files_last,
    select_files_to_fetch,
    store_lines,
    update_file,
    upsert_requests,
)
from .schema import check_columns, check_history, connect, database_error, in_thread, migrate
from .statements import account_path, counted, execute_rows, json_object

T = TypeVar("T")

# Each account's 404s by id for a batch since it was last listed or answered
# (0021_batch_listings.sql).
_NOT_FOUND_BY = json_object("not_found_by")


def _not_found_but(account: str) -> str:
    """Those 404s but those of `account` (SQL), whose listing or answer says the batch is
    there (NULL: none left); a name holds no quote (setting_rules.account_name_problem)."""
    kept = f"nullif(json_remove({_NOT_FOUND_BY}, '$.\"' || {account} || '\"'), '{{}}')"
    return f"CASE WHEN not_found_by IS NULL THEN NULL ELSE {kept} END"  # no JSON work mostly


_ENDED = "({})".format(", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES)))
# The account whose copy of a batch ended it first, while another account lists it (a
# gateway may leave fields out): the accounts listing it but that one ask for it by id until
# the owner's copy is stored (0022_ended_asks.sql); then, as when the owner's copy ended it,
# each other account listing it asks until it answered (another may hold what neither
# copy gave); `*`, ended before that was kept: each, its owner too, until it answered
# (0023_ended_before.sql). NULL: in flight, or no copy is waited for.
_ENDED_BY = (
    f"CASE WHEN excluded.status IS NULL OR excluded.status NOT IN {_ENDED} THEN NULL "
    f"WHEN batches.status IN {_ENDED} THEN CASE WHEN excluded.account = batches.account "
    "AND batches.ended_by NOT IN (batches.account, '*') THEN batches.account "
    "ELSE batches.ended_by END "
    "WHEN excluded.account != batches.account OR batches.listed_by IS NOT NULL "
    "THEN excluded.account END"
)
_UPSERT_BATCHES = (
    f"INSERT INTO batches ({', '.join(BATCH_COLUMNS)}) VALUES {{values}} "
    "ON CONFLICT(id) DO UPDATE SET "
    # A batch another account stored first stays that account's (see 0010_accounts.sql);
    # the last other account that listed it refreshes it and fetches its files too, even
    # after the owner listed it again (0013_listed_by.sql).
    + ", ".join(
        f"{c} = excluded.{c}" for c in BATCH_COLUMNS if c not in {"id", "first_seen_at", "account"}
    )
    + ", listed_by = coalesce(nullif(excluded.account, batches.account), batches.listed_by)"
    # The batch is there; the 404s of other accounts' routes stay theirs.
    + ", gone_at = NULL, not_found_runs = 0, not_found_by = "
    + _not_found_but("excluded.account")
    # The asks counted are for the copy waited for.
    + f", ended_asks = CASE WHEN ({_ENDED_BY}) IS batches.ended_by THEN ended_asks END"
    + f", ended_by = {_ENDED_BY}"
)
# What a listing kept out of the batch (see _write_page) says: the batch is there, and
# listed by account ?1; by its owner (a stale listing: a replica behind, which will catch
# up), that it is asked on while the owner shows the batch so.
_LISTED = (
    "UPDATE batches SET listed_by = coalesce(nullif(?1, account), listed_by), "
    f"gone_at = NULL, not_found_runs = 0, not_found_by = {_not_found_but('?1')}, "
    "ended_asks = CASE WHEN account = ?1 THEN NULL ELSE ended_asks END WHERE id = ?2"
)
# Another account's (?1) listing of batch ?2 behind its stored end (a replica): that
# account's copy, once caught up, may hold what the stored one lacks (a gateway leaving
# fields out); no walk lists the batch again: each account but the owner asks for it, as
# when the owner's copy ended it with another listing it.
_LISTED_BEHIND = (
    "UPDATE batches SET ended_by = account WHERE id = ?2 AND account != ?1 "
    f"AND ended_by IS NULL AND status IN {_ENDED}"
)
# Account ?1's copy of a batch ended, waited for since another account's copy ended it
# (see _ENDED_BY), is in: ?1 asks for it no more. (An owner's copy waited for makes its
# owner ended_by instead, in the upsert: each other account asks anew.)
_ANSWERED_ENDED = (
    f"UPDATE batches SET ended_asks = json_set({json_object('ended_asks')}, ?2, {ENDED_ASKS}) "
    "WHERE id = ?3 AND ended_by IS NOT NULL AND ended_by != ?1"
)
# Every account other than its owner that listed a batch refreshes it
# (0021_batch_listings.sql).
_LISTED_BY_ANOTHER = "INSERT OR IGNORE INTO batch_listings (batch_id, account) VALUES (?, ?)"
# A 404 by id for batch ?3, to the account whose JSON path is ?2: gone_at keeps the first
# of a streak (at ?1), the counts say how sure the mark is, and for which account.
_NOT_FOUND = (
    "UPDATE batches SET gone_at = coalesce(gone_at, ?1), not_found_runs = not_found_runs + 1, "
    f"not_found_by = {counted('not_found_by', '?2')} WHERE id = ?3"
)
# A batch naming another file than the one stored (a gateway minting new ids) has it
# fetched afresh, in its owner's listing only (0018_file_named_by.sql); the old file's lines
# go once it is stored whole (requests.update_file).
_UPSERT_FILE = (
    "INSERT INTO batch_files (file_id, batch_id, kind, state, named_by) "
    "VALUES (?, ?, ?, 'pending', ?) "
    "ON CONFLICT (batch_id, kind) DO UPDATE SET file_id = excluded.file_id, state = 'pending', "
    "bytes = NULL, lines = NULL, error = NULL, fetched_at = NULL, expires_at = NULL, "
    "not_found_runs = 0, failed_by = NULL, not_found_by = NULL, empty_runs = 0, bodies = NULL, "
    "named_by = excluded.named_by "
    "WHERE file_id != excluded.file_id "
    "AND excluded.named_by = (SELECT account FROM batches WHERE id = excluded.batch_id)"
)
_INSERT_ERRORS = f"INSERT INTO batch_errors ({', '.join(ERROR_COLUMNS)}) VALUES {{values}}"
# A run's figures only grow: a run cancelled once a page had committed with its counts,
# before the run added them to its own, wrote too few over them as it closed (pass 79B).
_UPDATE_FIGURES = (
    "UPDATE sync_runs SET "
    + ", ".join(f"{name} = max(coalesce({name}, 0), ?)" for name in FIGURE_COLUMNS)
    + " WHERE id = ?"
)
_RAW = BATCH_COLUMNS.index("raw")
_STATUS = BATCH_COLUMNS.index("status")
_ERROR_BATCH = ERROR_COLUMNS.index("batch_id")

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


# What SQLite raises for a value it cannot store, as opposed to a fault of the database.
_UNSTORABLE = (
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    OverflowError,  # an integer wider than SQLite's 64 bits
    ValueError,  # text SQLite cannot encode, such as a lone surrogate
)


@dataclass(frozen=True)
class PageCounts:
    """What one committed page changed."""

    new: int
    updated: int
    error_lines: int
    stale: frozenset[str] = frozenset()  # listed at an earlier stage than stored: kept out

    def figures(self) -> dict[str, int]:
        """The run's figures these counts add to (see RunFigures.plus)."""
        return {
            "batches_new": self.new,
            "batches_updated": self.updated,
            "error_lines": self.error_lines,
        }


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


def _write_walk(db: sqlite3.Connection, account: str, walk: WalkState) -> None:
    top = walk.top
    db.execute(
        "INSERT INTO walk_state (account, cursor, stop_id, head_id, finished, "
        "pages_past_stop, end_unchecked, holder_after, holder_known, top_cursor, top_head, "
        "top_holder_after, top_past_stop, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(account) DO UPDATE SET cursor = excluded.cursor, "
        "stop_id = excluded.stop_id, head_id = excluded.head_id, "
        "finished = excluded.finished, pages_past_stop = excluded.pages_past_stop, "
        "end_unchecked = excluded.end_unchecked, holder_after = excluded.holder_after, "
        "holder_known = excluded.holder_known, top_cursor = excluded.top_cursor, "
        "top_head = excluded.top_head, top_holder_after = excluded.top_holder_after, "
        "top_past_stop = excluded.top_past_stop, updated_at = excluded.updated_at",
        (
            account,
            walk.cursor,
            walk.stop_id,
            walk.head_id,
            int(walk.finished),
            walk.pages_past_stop,
            int(walk.end_unchecked),
            walk.holder[0] if walk.holder else None,
            int(walk.holder is not None),
            top.cursor if top else None,
            top.head_id if top else None,
            top.holder[0] if top and top.holder else None,
            top.pages_past_stop if top else None,
            int(time.time()),
        ),
    )


def _write_figures(db: sqlite3.Connection, run_id: int, figures: RunFigures) -> None:
    db.execute(_UPDATE_FIGURES, (*figures.columns().values(), run_id))


def _write_page(
    db: sqlite3.Connection,
    account: str,
    batch_rows: Sequence[tuple[Any, ...]],
    error_rows: Sequence[tuple[Any, ...]],
    walk: WalkState | None,
    run_id: int,
    figures: RunFigures,
    gone_ids: Sequence[str],
    file_rows: Sequence[tuple[str, str, str]] = (),
    secret: Secret = None,
) -> PageCounts:
    ids = [row[0] for row in batch_rows]
    marks = ", ".join("?" * len(ids))
    with _transaction(db):
        stored_as = db.execute(
            f"SELECT id, raw, status, account, ended_by FROM batches WHERE id IN ({marks})", ids
        )
        before = {batch_id: tuple(stored) for batch_id, *stored in stored_as}
        db.executemany(
            _LISTED_BY_ANOTHER,
            [(batch_id, account) for batch_id, was in before.items() if was[2] != account],
        )
        # A listing of a batch ended and the copy stored fill each other's gaps: the
        # owner's listing first, another account's only where the stored copy has one.
        ended = {i: was[0] for i, was in before.items() if is_terminal(was[1])}
        others = {i for i in ended if before[i][2] != account}
        # Ended by the owner's own copy (no other account's ended it first: _ENDED_BY; `*`,
        # ended before that was kept, by the owner's own as likely as not: the owner's
        # listing, counted as its answer, wiped the file ids its answer gave, pass 80B).
        own = {i for i in ended.keys() - others if before[i][3] in (None, account, "*")}
        batch_rows, error_rows, filled = fill_page_rows(
            ended, batch_rows, error_rows, secret, stored_first=others, owners_own=own
        )
        # Kept out, neither stored over what is nor its error lines, a listing saying alone
        # that the batch is there and listed by this account: one at an earlier stage than
        # stored (stale: a caching gateway, a replica behind), or another account's of a
        # batch ended giving nothing the stored copy lacks.
        stale = frozenset(
            row[0]
            for row in batch_rows
            if row[0] in before and moves_back(before[row[0]][1], row[_STATUS])
        )
        # This account's copy of a batch whose copies are waited for (see _ENDED_BY).
        answered = [i for i in ended.keys() - stale if before[i][3] not in (None, account)]
        kept = stale | (others - filled)
        if kept:
            listed = [(account, batch_id) for batch_id in kept]
            batch_rows = [row for row in batch_rows if row[0] not in kept]
            error_rows = [row for row in error_rows if row[_ERROR_BATCH] not in kept]
            before = {batch_id: was for batch_id, was in before.items() if batch_id not in kept}
            db.executemany(_LISTED, listed)
            db.executemany(_LISTED_BEHIND, [(account, batch_id) for batch_id in stale])
        execute_rows(db, _UPSERT_BATCHES, batch_rows)
        path = account_path(account)
        db.executemany(_ANSWERED_ENDED, [(account, path, i) for i in answered])
        if before:
            # Only a batch stored before can have error lines to replace: a first walk
            # skips a hundred index probes a page.
            stored = ", ".join("?" * len(before))
            db.execute(f"DELETE FROM batch_errors WHERE batch_id IN ({stored})", list(before))
        execute_rows(db, _INSERT_ERRORS, error_rows)
        # In the same commit as the batch: a file to fetch is never lost to an interruption.
        db.executemany(_UPSERT_FILE, [(*row, account) for row in file_rows])
        gone_at = int(time.time())
        db.executemany(_NOT_FOUND, [(gone_at, path, i) for i in gone_ids])
        if walk is not None:
            _write_walk(db, account, walk)
        updated = sum(row[0] in before and before[row[0]][0] != row[_RAW] for row in batch_rows)
        counts = PageCounts(len(ids) - len(before) - len(kept), updated, len(error_rows), stale)
        # With this page's counts: the ledger of a run killed after it lacked them.
        _write_figures(db, run_id, figures.plus(**counts.figures()))
    return counts


def _asked_for_ended(db: sqlite3.Connection, account: str, batch_ids: list[str]) -> None:
    with _transaction(db):
        db.execute(
            f"UPDATE batches SET ended_asks = {counted('ended_asks', '?2')} "
            "WHERE ended_by IS NOT NULL AND ended_by != ?1 "
            f"AND coalesce(json_extract({json_object('ended_asks')}, ?2), 0) < {ENDED_ASKS} "
            "AND id IN (SELECT value FROM json_each(?3))",
            (account, account_path(account), json.dumps(batch_ids)),
        )


def _asked_for_files(db: sqlite3.Connection, batch_ids: list[str]) -> None:
    with _transaction(db):
        db.execute(
            "UPDATE batches SET file_asks = file_asks + 1 "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(batch_ids),),
        )


def _mark_by_id_failed(db: sqlite3.Connection, account: str, at: int | None) -> None:
    with _transaction(db):
        db.execute("UPDATE walk_state SET by_id_failed_at = ? WHERE account = ?", (at, account))


def _save_visits(
    db: sqlite3.Connection,
    account: str,
    marks: dict[str, list[str]],
    at: int,
    resume: tuple[str, str] | None,
) -> None:
    target, cursor = resume or (None, None)
    with _transaction(db):
        for column in ("missed_by", "cut_by"):
            db.execute(
                f"UPDATE batches SET {column} = json_set({json_object(column)}, ?, ?) "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (account_path(account), at, json.dumps(marks.get(column, []))),
            )
        db.execute(
            "UPDATE walk_state SET visit_target = ?, visit_cursor = ? WHERE account = ?",
            (target, cursor, account),
        )


def _save_asks_by_id(
    db: sqlite3.Connection, account: str, failed: list[str], answered: list[str], at: int
) -> None:
    marks = json_object("by_id_failed_by")
    with _transaction(db):
        db.execute(
            f"UPDATE batches SET by_id_failed_by = json_set({marks}, ?, ?) "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (account_path(account), at, json.dumps(failed)),
        )
        db.execute(
            f"UPDATE batches SET by_id_failed_by = json_remove({marks}, ?) "
            "WHERE by_id_failed_by IS NOT NULL AND id IN (SELECT value FROM json_each(?))",
            (account_path(account), json.dumps(answered)),
        )


def _write_requests(
    db: sqlite3.Connection,
    file: FileToFetch,
    texts: Sequence[tuple[int, str]],
    rows: Sequence[tuple[int, tuple[Any, ...]]],
    keep_body: bool,
    replacing: bool,
    reading: int,
) -> tuple[int, list[tuple[int, str]]]:
    stored, unusable = 0, []
    with _transaction(db):
        if replacing:
            delete_file_lines(db, file)
        # In the file's order: a custom_id on two lines is then the later line's.
        for mapped, run in in_file_order(texts, rows):
            if mapped:
                upsert_requests(db, [row for _, row in run], reading=reading)
                stored += len(run)
                continue
            run_stored, run_unusable = store_lines(
                db,
                run,
                batch_id=file.batch_id,
                file_id=file.file_id,
                kind=file.kind,
                keep_body=keep_body,
                reading=reading,
            )
            stored += run_stored
            unusable += run_unusable
    return stored, unusable


def _finish_file(
    db: sqlite3.Connection,
    file: FileToFetch,
    state: str,
    account: str,
    run_id: int,
    figures: RunFigures,
    outcome: dict[str, Any],
) -> int | None:
    with _transaction(db):
        held = update_file(db, file, state, account=account, **outcome)
        _write_figures(db, run_id, figures)
    return held


def _put_files_last(db: sqlite3.Connection, files: Sequence[FileToFetch]) -> None:
    with _transaction(db):
        put_files_last(db, files)


# Each standard rate's batch rate: a stored one is derived from it (half) when NULL.
_BATCH_RATE = {"input": "batch_input", "cached_input": "batch_cached_input",
               "output": "batch_output"}  # fmt: skip


def _rate_updates(prices: PriceFile) -> dict[str, str]:
    """What each rate column a price file changes is set to, in SQL."""
    # A price map's entry leaving a rate out keeps the stored one (see PriceFile).
    given = "coalesce(excluded.{0}, {0})" if prices.per_entry else "excluded.{0}"
    rates = {c: given.format(c) for c in prices.columns}
    for standard, batch in _BATCH_RATE.items():
        batch_given = batch in prices.columns and not prices.per_entry  # by every row
        if standard in prices.columns and not batch_given:
            # A standard rate given without its batch rate makes that one derived from it:
            # a stored one (a shipped one) kept the old price, the costs going stale.
            kept = f"CASE WHEN excluded.{standard} IS NULL THEN {batch} END"
            rates[batch] = f"coalesce(excluded.{batch}, {kept})"
    return rates


def _save_prices(db: sqlite3.Connection, prices: PriceFile, source: str, as_of: str) -> None:
    columns = ("model", *RATE_COLUMNS)
    rates = [f"{c} = {rate}" for c, rate in _rate_updates(prices).items()]
    updates = ", ".join([*rates, "source = excluded.source", "as_of = excluded.as_of"])
    with _transaction(db):
        db.executemany(
            f"INSERT INTO model_prices ({', '.join(columns)}, source, as_of) "
            f"VALUES ({', '.join('?' * (len(columns) + 2))}) "
            f"ON CONFLICT(model) DO UPDATE SET {updates}",
            [(*price.row(), source, as_of) for price in prices.prices],
        )


def _start_run(db: sqlite3.Connection, account: str, mode: str, base_url: str) -> int:
    with _transaction(db):
        # Only one sync can hold the database, and it runs each account once: a row of this
        # account still 'running' is a dead run.
        db.execute(
            "UPDATE sync_runs SET outcome = 'killed' WHERE outcome = 'running' AND account = ?",
            (account,),
        )
        cur = db.execute(
            "INSERT INTO sync_runs (started_at, mode, outcome, base_url, account) "
            "VALUES (?, ?, 'running', ?, ?)",
            (int(time.time()), mode, base_url, account),
        )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _save_walk(db: sqlite3.Connection, account: str, walk: WalkState) -> None:
    with _transaction(db):
        _write_walk(db, account, walk)


def _finish_run(
    db: sqlite3.Connection,
    run_id: int,
    outcome: str,
    figures: RunFigures,
    warnings: Sequence[str],
    error: str | None,
    account: str,
    unfinished: Sequence[FileToFetch],
) -> None:
    with _transaction(db):
        mark_unfinished(db, unfinished, account)
        _write_figures(db, run_id, figures)
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


@dataclass
class _SharedRun:
    """What the accounts synced at once on one store share: which files each asks for,
    and the files one of them is reading (see Store.claim_file)."""

    askers: dict[str, FileAsker] = field(default_factory=dict)
    files_claimed: set[tuple[str, str]] = field(default_factory=set)  # batch id, kind
    # Those each account claimed and has not recorded an end of (see mark_unfinished).
    unfinished: dict[str, dict[tuple[str, str], FileToFetch]] = field(default_factory=dict)


class Store:
    """The reads and writes of one account's sync, each one call on the connection's own
    thread. Reads of the walk are of that account's list; `for_account` gives another
    account's view of the same connection."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        account: str = "default",
        run: _SharedRun | None = None,
    ) -> None:
        self._conn = conn
        self._path = path
        self.account = account
        self._run = _SharedRun() if run is None else run

    def for_account(
        self, account: str, *, kinds: Collection[str] = (), bodies: bool = False
    ) -> Store:
        """The same database, as `account`'s sync reads and writes it: one of this run's
        accounts, asking for files of `kinds` (see files_to_fetch)."""
        self._run.askers[account] = FileAsker(account, tuple(kinds), bodies)
        return Store(self._conn, self._path, account, self._run)

    @property
    def accounts_in_run(self) -> int:
        """How many accounts are synced at once on this store."""
        return len(self._run.askers)

    def claim_file(self, file: FileToFetch) -> bool:
        """Whether the file (of its batch) is this sync's to read: no account's sync on this
        store claimed it before. Two accounts list the same files (one API reached directly
        and through a gateway); two readings of one batch's file at once would each,
        finished, delete the rows the other wrote."""
        key = (file.batch_id, file.kind)
        if key in self._run.files_claimed:
            return False
        self._run.files_claimed.add(key)
        self._run.unfinished.setdefault(self.account, {})[key] = file
        return True

    async def _in_thread(self, work: Callable[..., T], *args: Any) -> T:
        try:
            return await in_thread(self._conn, work, *args)
        except _UNSTORABLE:
            raise  # a value on the page, not the database: save_page says so
        except DamagedRowError as exc:
            raise DatabaseError(f"{self._path}: {exc}") from None
        except sqlite3.Error as exc:
            # Translated here, so that the run records it in its ledger row.
            raise database_error(self._path, exc) from exc

    async def load_walk(self) -> WalkState | None:
        """The saved walk state, or None before the first sync."""
        return await self._in_thread(select_walk, self.account)

    async def load_unsettled(self) -> list[tuple[str, int]]:
        """Batches stored as not yet terminal, each with its position, least recently seen first."""
        return await self._in_thread(select_unsettled, self.account)

    async def oldest_created_at(self, batch_ids: Collection[str]) -> int | None:
        """The earliest stored creation time among `batch_ids` (None: none known)."""
        return await self._in_thread(select_oldest_created_at, list(batch_ids))

    async def last_rowid(self) -> int:
        """A mark of what is stored now; see `stored_by`."""
        return await self._in_thread(select_last_rowid)

    async def stored_by(self, batch_id: str, last_rowid: int) -> bool:
        """Whether the batch was stored when `last_rowid` was read, and is in this account's
        list (see IN_ACCOUNT_LIST)."""
        return await self._in_thread(select_stored_by, self.account, batch_id, last_rowid)

    async def newest(self, count: int, horizon: int) -> list[tuple[str, int]]:
        """The `count` newest stored batches created by `horizon`: (id, created_at)."""
        return await self._in_thread(select_newest, self.account, count, horizon)

    async def created_at(self, batch_id: str) -> int | None:
        """The stored creation time of a batch, if it is stored and is a whole number."""
        return await self._in_thread(select_created_at, batch_id)

    async def created_just_after(self, second: int, count: int) -> list[str]:
        """The `count` stored batches created soonest after `second`, soonest first."""
        return await self._in_thread(select_created_just_after, self.account, second, count)

    async def by_id_failed_at(self) -> int | None:
        """When requests by id last kept failing while the list answered (None: they did not)."""
        return await self._in_thread(select_by_id_failed_at, self.account)

    async def asked_for_ended(self, batch_ids: list[str]) -> None:
        """Record that this account asked to refresh `batch_ids`: those another account's
        listing ended, whose copy waited for is not stored, are asked ENDED_ASKS times at
        most by each account (see select_unsettled)."""
        await self._in_thread(_asked_for_ended, self.account, batch_ids)

    async def asked_for_files(self, batch_ids: Sequence[str]) -> None:
        """Record that the owner's asks for `batch_ids`, ended naming no file, were answered
        (see select_ended_without_files)."""
        await self._in_thread(_asked_for_files, list(batch_ids))

    async def ended_without_files(self) -> list[str]:
        """This account's batches ended naming no file that may yet (see
        select_ended_without_files)."""
        return await self._in_thread(select_ended_without_files, self.account, int(time.time()))

    async def newest_ids(self, count: int) -> list[str]:
        """The ids of the `count` newest stored batches of this account's list."""
        return await self._in_thread(select_newest_ids, self.account, count)

    async def mark_by_id_failed(self, at: int | None) -> None:
        """Record when requests by id kept failing while the list answered; None clears it."""
        await self._in_thread(_mark_by_id_failed, self.account, at)

    async def save_visits(
        self, missed: list[str], resume: tuple[str, str] | None, cut: Sequence[str] = ()
    ) -> None:
        """Record the batches visits looked for and did not find (`missed`, now), those
        asked for by id as the time budget ran out (`cut`), and where a visit cut by the
        budget stopped (`resume`: its batch and the cursor to go on after; None: none)."""
        marks = {"missed_by": missed, "cut_by": list(cut)}
        await self._in_thread(_save_visits, self.account, marks, int(time.time()), resume)

    async def cut(self, batch_ids: Collection[str]) -> set[str]:
        """Those of `batch_ids` this account asked for by id as its time budget ran out."""
        return await self._in_thread(select_cut, self.account, list(batch_ids))

    async def failed_by_id(self, batch_ids: Collection[str]) -> set[str]:
        """Those of `batch_ids` whose last ask by id by this account failed (see
        select_failed_by_id)."""
        return await self._in_thread(select_failed_by_id, self.account, list(batch_ids))

    async def save_asks_by_id(self, failed: Collection[str], answered: Collection[str]) -> None:
        """Record the batches whose ask by id failed (now), and clear those answered."""
        if failed or answered:
            await self._in_thread(
                _save_asks_by_id, self.account, list(failed), list(answered), int(time.time())
            )

    async def nearly_gone(self, batch_ids: Collection[str]) -> set[str]:
        """Those of `batch_ids` answered 404 on two of this account's runs (see
        select_nearly_gone)."""
        return await self._in_thread(select_nearly_gone, self.account, list(batch_ids))

    async def visit_resume(self) -> tuple[str, str] | None:
        """Where the last run's visit cut by the budget stopped: its batch and the cursor to
        go on after (see save_visits)."""
        return await self._in_thread(select_visit_resume, self.account)

    async def save_walk(self, walk: WalkState) -> None:
        """Replace the walk state on its own (a new walk begins)."""
        await self._in_thread(_save_walk, self.account, walk)

    async def start_run(self, mode: str, base_url: str) -> int:
        """Open a ledger row for this run; rows left 'running' by a killed run are closed."""
        return await self._in_thread(_start_run, self.account, mode, base_url)

    async def save_page(
        self,
        batch_rows: Sequence[tuple[Any, ...]],
        error_rows: Sequence[tuple[Any, ...]],
        walk: WalkState | None,
        run_id: int,
        figures: RunFigures,
        gone_ids: Sequence[str] = (),
        file_rows: Sequence[tuple[str, str, str]] = (),
        secret: Secret = None,
    ) -> PageCounts:
        """Upsert a page's batches, replace their error lines, and move the walk: atomically.

        Args:
            walk: the walk state to commit with the page; None leaves it as it is.
            figures: the run's figures so far, committed to its ledger row with the page.
            gone_ids: batches the API answered 404 for, counted in the same commit.
            file_rows: (file_id, batch_id, kind) of files to fetch, added, or replacing
                another file the batch named before.
            secret: masked in what the page takes from stored batches (see fill_page_rows).

        Raises:
            UnstorableBatchError: a field held a value SQLite cannot store (nothing is written).
        """
        try:
            return await self._in_thread(
                _write_page,
                self.account,
                batch_rows,
                error_rows,
                walk,
                run_id,
                figures,
                gone_ids,
                file_rows,
                secret,
            )
        except _UNSTORABLE as exc:
            ids = f"{batch_rows[0][0]} .. {batch_rows[-1][0]}" if batch_rows else "none"
            raise UnstorableBatchError(
                f"a batch on the page of {ids} cannot be stored: {exc}"
            ) from exc

    async def files_to_fetch(
        self, kinds: Collection[str], after: int, limit: int, *, bodies: bool
    ) -> list[FileToFetch]:
        """Files of `kinds` still to fetch, after position `after`; see select_files_to_fetch
        (another account of this run asks first for those this one's ask failed)."""
        others = [asker for name, asker in self._run.askers.items() if name != self.account]
        select = functools.partial(select_files_to_fetch, bodies=bodies, others=others)
        return await self._in_thread(select, self.account, kinds, after, limit)

    async def save_requests(
        self,
        file: FileToFetch,
        texts: Sequence[tuple[int, str]],
        rows: Sequence[tuple[int, tuple[Any, ...]]],
        *,
        keep_body: bool,
        reading: int,
        replacing: bool = False,
    ) -> tuple[int, list[tuple[int, str]]]:
        """Commit a chunk of a file's lines, written by `reading` (of that file): `texts`,
        (number, JSON text) pairs that SQLite maps to rows (see store_lines), and (number,
        row) pairs built already; `replacing` the lines stored of the file before, in the
        same transaction.

        Returns how many rows were stored, and the (number, why) of each text left out.

        Raises:
            UnstorableBatchError: a value SQLite cannot store (nothing of the chunk is written).
        """
        try:
            return await self._in_thread(
                _write_requests, file, texts, rows, keep_body, replacing, reading
            )
        except _UNSTORABLE as exc:
            raise UnstorableBatchError(f"a request line cannot be stored: {exc}") from exc

    async def finish_file(
        self, file: FileToFetch, state: str, run_id: int, figures: RunFigures, **outcome: Any
    ) -> int | None:
        """Record how a file ended (see update_file), with the run's figures so far; for a
        file complete, the requests it holds."""
        held = await self._in_thread(
            _finish_file, file, state, self.account, run_id, figures, outcome
        )
        self._run.unfinished.get(self.account, {}).pop((file.batch_id, file.kind), None)
        return held

    async def put_files_last(self, files: Sequence[FileToFetch]) -> None:
        """Fetch these files after every other, from the next sync on (see put_files_last)."""
        await self._in_thread(_put_files_last, files)

    async def save_prices(self, prices: PriceFile, source: str, as_of: str) -> None:
        """Add these models, or replace the rates the file gives of those priced already,
        saying where they came from and when."""
        await self._in_thread(_save_prices, prices, source, as_of)

    async def finish_run(
        self,
        run_id: int,
        outcome: str,
        figures: RunFigures,
        warnings: Sequence[str],
        error: str | None,
    ) -> None:
        """Close this run's ledger row with its outcome, and record the files it claimed
        and did not end (see mark_unfinished)."""
        unfinished = list(self._run.unfinished.pop(self.account, {}).values())
        await self._in_thread(
            _finish_run, run_id, outcome, figures, warnings, error, self.account, unfinished
        )


@contextlib.asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[Store]:
    """Open `path` for a sync: lock it, check it is ours, migrate it, and close it after.

    Raises:
        DatabaseBusyError: another sync holds the database.
        DatabaseError: the file is not ours, is newer than us, or is broken.
    """
    check_file(path)
    async with writer_lock(path), connect(path) as (conn, version):
        for pragma in _PRAGMAS:
            await conn.execute(pragma)
        await check_history(conn, path)
        await check_columns(conn, path, version)
        await migrate(conn, version)
        await check_columns(conn, path)
        opened = _identity(path)
        yield Store(conn, path)
        if _identity(path) != opened:
            raise DatabaseError(
                f"{path} was replaced or removed while the sync ran; what it wrote went to the "
                "file that was there before: sync again"
            )


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file `path` names now (device and inode), or None when none does."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino
