"""The SQL of reads: the walk state, what a sync plans from, status figures, example queries."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ..errors import DatabaseError
from ..rows import TERMINAL_STATUSES
from ..runs import FIGURE_COLUMNS, RunRecord
from ..walk import WalkState
from .files import check_file
from .schema import check_columns, check_history, connect, in_thread, latest_version
from .statements import account_path, json_object

T = TypeVar("T")

# Compared as the API documents them: a status spelled otherwise is one we do not know.
TERMINAL = tuple(sorted(TERMINAL_STATUSES))

# A batch the API answered 404 for on this many runs in a row is no longer asked about.
CONFIRMED_GONE = 3

# Questions the demo asks of a freshly synced database.
EXAMPLE_QUERIES = (
    (
        "Batches by status",
        "SELECT status, count(*) AS batches FROM batches GROUP BY status ORDER BY batches DESC",
    ),
    (
        "Requests and tokens by model",
        "SELECT coalesce(model, '(not recorded)') AS model, count(*) AS batches,\n"
        "       sum(request_counts_failed) AS failed_requests, sum(total_tokens) AS tokens\n"
        "FROM batches GROUP BY 1 ORDER BY batches DESC",
    ),
    (
        "Why batches failed",
        "SELECT e.code, count(DISTINCT e.batch_id) AS batches,\n"
        "       substr(min(e.message), 1, 60) AS example\n"
        "FROM batch_errors e GROUP BY e.code ORDER BY batches DESC LIMIT 5",
    ),
    (
        "Why requests failed",
        "SELECT coalesce(error_code, error_type, 'HTTP ' || status_code) AS reason,\n"
        "       count(*) AS requests, substr(min(error_message), 1, 60) AS example\n"
        "FROM batch_requests WHERE kind = 'error' GROUP BY 1 ORDER BY requests DESC LIMIT 5",
    ),
)

_RUN_COLUMNS = (
    "id",
    "started_at",
    "ended_at",
    "mode",
    "outcome",
    "error",
    "account",
    *FIGURE_COLUMNS,
)


def select_walk(db: sqlite3.Connection, account: str) -> WalkState | None:
    """The walk state of `account`'s list, or None before its first sync.

    Raises:
        DamagedRowError: an id in it is not text (the row was edited by hand).
    """
    row = db.execute(
        "SELECT cursor, stop_id, head_id, finished, pages_past_stop, end_unchecked, "
        "holder_after, holder_known, top_cursor, top_head, top_holder_after, top_past_stop "
        "FROM walk_state WHERE account = ?",
        (account,),
    ).fetchone()
    if row is None:
        return None
    if not all(value is None or isinstance(value, str) for value in (*row[:3], row[6], *row[8:11])):
        raise DamagedRowError(
            "its walk_state row holds an id that is not text; run `batch-crawler sync "
            "--restart` to walk from the top again"
        )
    holder = (row[6],) if row[7] == 1 else None
    walk = WalkState(row[0], row[1], row[2], bool(row[3]), _past(row[4]), row[5] == 1, holder)
    if row[8] is None:
        return walk
    # A stuck walk's walk of the top, down to the stuck walk's head (see stuck_with_top).
    top = WalkState(row[8], row[2], row[9], pages_past_stop=_past(row[11]), holder=(row[10],))
    return replace(walk, top=top)


def _past(value: object) -> int | None:
    """A walk's pages past its stop, as stored (None: not met, or not a count)."""
    return value if isinstance(value, int) and value >= 0 else None


def select_by_id_failed_at(db: sqlite3.Connection, account: str) -> int | None:
    """When `account`'s requests by id last kept failing while its list answered (None:
    they did not)."""
    row = db.execute(
        "SELECT by_id_failed_at FROM walk_state WHERE account = ?", (account,)
    ).fetchone()
    return row[0] if row and isinstance(row[0], int) else None


def select_visit_resume(db: sqlite3.Connection, account: str) -> tuple[str, str] | None:
    """The batch of the visit a budget last cut, and the cursor it stopped after (None: no
    visit stopped so)."""
    row = db.execute(
        "SELECT visit_target, visit_cursor FROM walk_state WHERE account = ?", (account,)
    ).fetchone()
    if row and isinstance(row[0], str) and isinstance(row[1], str):
        return row[0], row[1]
    return None


# The batches of an account's list, its name given twice: those it stored first, and those
# another stored first that it listed (see migrations/0021_batch_listings.sql).
IN_ACCOUNT_LIST = (
    "(account = ? OR EXISTS (SELECT 1 FROM batch_listings AS l "
    "WHERE l.batch_id = batches.id AND l.account = ?))"
)


def _gone(accounts: str) -> str:
    """Whether the API no longer has the batch for an account of `accounts` (an SQL
    condition on `key`, the account's name): three of its own runs answered 404 since its
    own listing or answer showed the batch (another account's route may have it still:
    0021_batch_listings.sql)."""
    return (
        "(not_found_by IS NOT NULL AND EXISTS (SELECT 1 FROM json_each("
        "CASE WHEN json_valid(not_found_by) THEN not_found_by END) "
        f"WHERE {accounts} AND typeof(value) = 'integer' AND value >= {CONFIRMED_GONE}))"
    )


# The asks of each account listing a batch another account's listing ended, at most
# (0022_ended_asks.sql); also an account's count once its own copy is stored.
ENDED_ASKS = 3

_GONE_FOR = _gone("key = ?")  # for the account bound to `?`
_GONE_FOR_ONE = _gone("true")  # for some account


def _when(column: str) -> str:
    """When the account bound to `?` is marked in `column` (a JSON object of each account's
    time; 0: never; see _save_visits)."""
    return (
        f"coalesce((SELECT value FROM json_each({json_object(column)}) "
        "WHERE key = ? AND type = 'integer'), 0)"
    )


def select_cut(db: sqlite3.Connection, account: str, batch_ids: list[str]) -> set[str]:
    """Those of `batch_ids` `account` asked for by id as its time budget ran out, and that
    no sync has stored since (stored in the same second counts as before: the cost of
    being taken for cut is a visit)."""
    rows = db.execute(
        "SELECT id FROM batches WHERE id IN (SELECT value FROM json_each(?)) "
        f"AND {_when('cut_by')} >= max(coalesce(last_seen_at, 0), 1)",
        (json.dumps(batch_ids), account),
    )
    return {batch_id for (batch_id,) in rows}


def select_failed_by_id(db: sqlite3.Connection, account: str, batch_ids: list[str]) -> set[str]:
    """Those of `batch_ids` whose last ask by id by `account` failed past its retries, or
    was cut by its time budget (see batches.by_id_failed_by)."""
    rows = db.execute(
        "SELECT id FROM batches WHERE id IN (SELECT value FROM json_each(?)) "
        f"AND {_when('by_id_failed_by')} > 0",
        (json.dumps(batch_ids), account),
    )
    return {batch_id for (batch_id,) in rows}


def select_nearly_gone(db: sqlite3.Connection, account: str, batch_ids: list[str]) -> set[str]:
    """Those of `batch_ids` answered 404 on two runs of `account` since its list or answer
    last showed them (see batches.not_found_by), with a place in the list to look for
    them at (a creation time: one with none is asked by id alone)."""
    rows = db.execute(
        "SELECT id FROM batches WHERE id IN (SELECT value FROM json_each(?)) "
        "AND created_at IS NOT NULL "
        f"AND coalesce(json_extract({json_object('not_found_by')}, ?), 0) >= ?",
        (json.dumps(batch_ids), account_path(account), CONFIRMED_GONE - 1),
    )
    return {batch_id for (batch_id,) in rows}


def select_unsettled(db: sqlite3.Connection, account: str) -> list[tuple[str, int]]:
    """`account`'s batches stored as not yet terminal (those it stored first, and those its
    list showed), and those another account's listing ended (until their owner's answer
    replaces that listing, or this account's, the owner's listing having ended them;
    ENDED_ASKS asks of this account at most), but
    those it was answered 404 for (see _GONE_FOR), with their position in its list, the
    least recently seen or missed (batches.missed_by) first: the order to refresh them in.

    A position is the number of batches created later. One pass down the `created_at`
    index counts them: each step counts only the batches between two consecutive creation
    times, so the whole costs one scan down to the oldest unsettled batch, however many
    there are (a count from the top for each was quadratic: 40,000 took 9 s).
    """
    marks = ", ".join("?" * len(TERMINAL))
    rows = db.execute(
        f"SELECT id, created_at, max(last_seen_at, {_when('missed_by')}, {_when('cut_by')}) "
        "FROM batches "
        f"WHERE {IN_ACCOUNT_LIST} AND (status IS NULL OR status NOT IN ({marks}) "
        # Ended in another account's listing (a gateway's may leave fields out, the
        # owner's own too): asked for until the copy waited for is stored, a few times at
        # most (writes._ENDED_BY).
        "OR (ended_by IS NOT NULL AND ended_by != ? AND "
        f"coalesce(json_extract({json_object('ended_asks')}, ?), 0) < {ENDED_ASKS})) "
        f"AND NOT {_GONE_FOR} ORDER BY created_at DESC",
        (account, account, account, account, *TERMINAL, account, account_path(account), account),
    ).fetchall()
    positions = []
    newer, bound = 0, None
    deepest = None
    for batch_id, created, _ in rows:
        if not isinstance(created, int):
            # No usable creation time, no known place in the list: planned as the deepest,
            # so it is asked for by id rather than walked to without bound.
            if deepest is None:
                count = f"SELECT count(*) FROM batches WHERE {IN_ACCOUNT_LIST}"
                deepest = db.execute(count, (account, account)).fetchone()[0]
            positions.append((batch_id, deepest))
            continue
        if created != bound:
            if bound is None:
                count = f"SELECT count(*) FROM batches WHERE created_at > ? AND {IN_ACCOUNT_LIST}"
                newer += db.execute(count, (created, account, account)).fetchone()[0]
            else:
                count = (
                    "SELECT count(*) FROM batches WHERE created_at > ? AND created_at <= ? "
                    f"AND {IN_ACCOUNT_LIST}"
                )
                newer += db.execute(count, (created, bound, account, account)).fetchone()[0]
            bound = created
        positions.append((batch_id, newer))
    # Least recently seen or missed first: a run cut short by its budget leaves the others
    # for the next, and one not found has its turn again after them.
    seen = {batch_id: last_seen for batch_id, _, last_seen in rows}
    return sorted(positions, key=lambda pair: seen[pair[0]])


# How long the API keeps a batch's files after it ended (their ids are worth asking for).
FILES_KEPT = 30 * 86_400


def select_ended_without_files(db: sqlite3.Connection, account: str, now: int) -> list[str]:
    """`account`'s own batches ended with requests run whose copy names no file, ended
    within the 30 days the API keeps files (as far as told: a list may leave the time out,
    and a batch ends after it was created), and whose asks by id were answered fewer than
    FILE_ASKS times: a list may leave file ids out (a gateway's), and the API names the
    files of every batch that ran a request. Listed so on their first listing, they were
    never asked for again, their files never fetched (pass 72B). Newest first."""
    ended = ", ".join(f"'{status}'" for status in ("cancelled", "completed", "expired"))
    times = ", ".join(
        f"coalesce({column}, 0)"
        for column in ("completed_at", "expired_at", "cancelled_at", "created_at")
    )
    rows = db.execute(
        f"SELECT id FROM batches WHERE account = ? AND status IN ({ended}) "
        f"AND output_file_id IS NULL AND error_file_id IS NULL AND file_asks < {FILE_ASKS} "
        "AND coalesce(request_counts_completed, 0) + coalesce(request_counts_failed, 0) > 0 "
        f"AND max({times}) >= ? AND NOT {_GONE_FOR} ORDER BY created_at DESC",
        (account, now - FILES_KEPT, account),
    )
    return [batch_id for (batch_id,) in rows]


# The answers to an owner's asks for a batch ended naming no file, at most
# (0030_ended_without_files.sql: the index holds those still to ask).
FILE_ASKS = 3


def select_oldest_created_at(db: sqlite3.Connection, batch_ids: list[str]) -> int | None:
    """The earliest whole-number creation time stored for any of `batch_ids`."""
    row = db.execute(
        "SELECT min(created_at) FROM batches WHERE typeof(created_at) = 'integer' "
        "AND id IN (SELECT value FROM json_each(?))",
        (json.dumps(batch_ids),),
    ).fetchone()
    return row[0] if row else None


def select_created_just_after(
    db: sqlite3.Connection, account: str, second: int, count: int
) -> list[str]:
    """The ids of the `count` stored batches of `account`'s list (see IN_ACCOUNT_LIST)
    created soonest after `second`, soonest first: those its list holds just above a batch
    created then, but those a visit found gone from it since they were last seen."""
    rows = db.execute(
        "SELECT id FROM batches WHERE created_at > ? AND typeof(created_at) = 'integer' "
        f"AND {IN_ACCOUNT_LIST} AND {_when('missed_by')} < max(coalesce(last_seen_at, 0), 1) "
        "ORDER BY created_at, id LIMIT ?",
        (second, account, account, account, count),
    ).fetchall()
    return [batch_id for (batch_id,) in rows]


def select_last_rowid(db: sqlite3.Connection) -> int:
    """The rowid of the last batch stored so far: an upsert keeps a row's rowid, so those
    at or below it were stored before, whatever a run writes after."""
    return int(db.execute("SELECT coalesce(max(rowid), 0) FROM batches").fetchone()[0])


def select_stored_by(db: sqlite3.Connection, account: str, batch_id: str, last_rowid: int) -> bool:
    """Whether the batch is stored, with a rowid at or below `last_rowid`, in `account`'s
    list (see IN_ACCOUNT_LIST)."""
    row = db.execute(
        f"SELECT rowid <= ? AND {IN_ACCOUNT_LIST} FROM batches WHERE id = ?",
        (last_rowid, account, account, batch_id),
    )
    found = row.fetchone()
    return bool(found and found[0])


def select_newest(
    db: sqlite3.Connection, account: str, count: int, horizon: int
) -> list[tuple[str, int]]:
    """The `count` newest stored batches of `account`'s list (see IN_ACCOUNT_LIST) created
    by `horizon` (down the created_at index), newest first: (id, created_at)."""
    rows = db.execute(
        "SELECT id, created_at FROM batches WHERE created_at <= ? "
        f"AND typeof(created_at) = 'integer' AND {IN_ACCOUNT_LIST} "
        "ORDER BY created_at DESC LIMIT ?",
        (horizon, account, account, count),
    )
    return [(batch_id, created) for batch_id, created in rows]


def select_newest_ids(db: sqlite3.Connection, account: str, count: int) -> list[str]:
    """The ids of the `count` newest stored batches of `account`'s list (see
    IN_ACCOUNT_LIST), newest first."""
    rows = db.execute(
        f"SELECT id FROM batches WHERE {IN_ACCOUNT_LIST} ORDER BY created_at DESC LIMIT ?",
        (account, account, count),
    )
    return [batch_id for (batch_id,) in rows]


class DamagedRowError(Exception):
    """A row edited into a shape batch-crawler never writes."""


def select_created_at(db: sqlite3.Connection, batch_id: str) -> int | None:
    """The stored creation time of a batch, if it is stored and is a whole number."""
    row = db.execute("SELECT created_at FROM batches WHERE id = ?", (batch_id,)).fetchone()
    return row[0] if row is not None and isinstance(row[0], int) else None


@dataclass(frozen=True)
class Holdings:
    """What a database holds: batches by status, their error lines, how many the API
    answered 404 for on enough runs in a row to be no longer asked about, their request
    files by kind and state, and the request lines stored from them."""

    by_status: dict[str, int]
    error_lines: int
    gone: int
    files: dict[str, dict[str, int]]
    request_lines: int


def select_holdings(db: sqlite3.Connection) -> Holdings:
    """Batch counts by status (most first) and the number of error lines."""
    # A status that is not text (a value edited by hand) is shown by its type.
    shown = (
        "CASE typeof(status) WHEN 'text' THEN status WHEN 'null' THEN '(none)' "
        "ELSE '(' || typeof(status) || ')' END"
    )
    by_status = dict(
        db.execute(f"SELECT {shown}, count(*) FROM batches GROUP BY 1 ORDER BY 2 DESC").fetchall()
    )
    (error_lines,) = db.execute("SELECT count(*) FROM batch_errors").fetchone()
    (gone,) = db.execute(f"SELECT count(*) FROM batches WHERE {_GONE_FOR_ONE}").fetchone()
    files: dict[str, dict[str, int]] = {}
    for kind, state, count in db.execute(
        "SELECT kind, state, count(*) FROM batch_files GROUP BY 1, 2 ORDER BY 1, 2"
    ):
        files.setdefault(kind, {})[state] = count
    (request_lines,) = db.execute("SELECT count(*) FROM batch_requests").fetchone()
    return Holdings(by_status, error_lines, gone, files, request_lines)


@dataclass(frozen=True)
class AccountState:
    """Where one account's sync stands: its walk, its batches, its requests by id."""

    walk: WalkState | None
    batches: int
    by_id_failed_at: int | None


def select_accounts(db: sqlite3.Connection) -> dict[str, AccountState]:
    """Every account the database knows (it has a walk, batches or runs), by name."""
    counts = dict(db.execute("SELECT account, count(*) FROM batches GROUP BY account"))
    names = {name for (name,) in db.execute("SELECT account FROM walk_state")}
    names |= {name for (name,) in db.execute("SELECT DISTINCT account FROM sync_runs")}
    return {
        name: AccountState(
            select_walk(db, name), counts.get(name, 0), select_by_id_failed_at(db, name)
        )
        for name in sorted(names | counts.keys())
    }


def select_base_urls(db: sqlite3.Connection) -> list[str]:
    """The base URLs the ledger's runs synced from, each once."""
    return [url for (url,) in db.execute("SELECT DISTINCT base_url FROM sync_runs")]


def select_runs(db: sqlite3.Connection, limit: int) -> list[RunRecord]:
    """The last `limit` runs of the ledger, newest first."""
    cur = db.execute(
        f"SELECT {', '.join(_RUN_COLUMNS)} FROM sync_runs ORDER BY id DESC LIMIT ?", (limit,)
    )
    return [RunRecord(**dict(zip(_RUN_COLUMNS, row, strict=True))) for row in cur.fetchall()]


@dataclass(frozen=True)
class QueryAnswer:
    """One query and what it returned."""

    title: str
    sql: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def answer_queries(
    db: sqlite3.Connection, queries: Sequence[tuple[str, str]] = EXAMPLE_QUERIES
) -> list[QueryAnswer]:
    """Run (title, sql) queries and keep their columns and rows."""
    answers = []
    for title, sql in queries:
        cur = db.execute(sql)
        columns = tuple(d[0] for d in cur.description)
        answers.append(QueryAnswer(title, sql, columns, cur.fetchall()))
    return answers


class Reader:
    """Reads of an existing database, each one call on the connection's own thread."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path

    async def read(self, work: Callable[..., T], *args: Any) -> T:
        """`work(db, *args)` with one of this module's `select_*` functions."""
        try:
            return await in_thread(self._conn, work, *args)
        except DamagedRowError as exc:
            raise DatabaseError(f"{self._path}: {exc}") from None

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Reads within that see the database as of one moment: a sync commits pages
        between them (a report's sections counted different batches, a status's accounts
        added up to another total than its own)."""
        await self._conn.execute("BEGIN")
        try:
            yield
        finally:
            await self._conn.execute("ROLLBACK")  # nothing was written


@contextlib.asynccontextmanager
async def open_reader(path: Path) -> AsyncIterator[Reader]:
    """Open an existing database read-only, for reports; never creates or migrates.

    Raises:
        DatabaseError: no such file, not ours, broken, or of another schema version.
    """
    check_file(path, must_exist=True)
    async with connect(path, read_only=True) as (conn, version):
        await check_history(conn, path)
        await check_columns(conn, path, version)  # no sync could upgrade it
        if version < latest_version():
            raise DatabaseError(
                f"{path} has an older schema ({version}); run `batch-crawler sync` to upgrade it"
            )
        await check_columns(conn, path)
        yield Reader(conn, path)
