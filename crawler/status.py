"""What the database holds and how the last runs went, read without writing."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runs import RunRecord
from .store import open_reader, sync_is_running
from .store.reads import AccountState, select_accounts, select_holdings, select_runs
from .walk import WalkState


@dataclass(frozen=True)
class StatusReport:
    """A database at a glance."""

    path: Path
    sync_running: bool
    walk: WalkState | None  # the default account's (the only one before accounts existed)
    batches: int
    error_lines: int
    by_status: dict[str, int]
    gone: int  # answered 404 on 3 runs in a row of an account: no longer asked by it
    files: dict[str, dict[str, int]]  # kind -> state -> count
    request_lines: int
    runs: list[RunRecord]
    by_id_failed_at: int | None = None  # the default account's requests by id kept failing
    accounts: dict[str, AccountState] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A plain-data form for `status --json`."""
        return {
            "db": str(self.path),
            "sync_running": self.sync_running,
            "walk": None if self.walk is None else dataclasses.asdict(self.walk),
            "batches": self.batches,
            "error_lines": self.error_lines,
            "by_status": self.by_status,
            "gone": self.gone,
            "files": self.files,
            "request_lines": self.request_lines,
            "by_id_failed_at": self.by_id_failed_at,
            "accounts": {name: dataclasses.asdict(a) for name, a in self.accounts.items()},
            "runs": [dataclasses.asdict(run) for run in self.runs],
        }


async def read_status(path: Path, *, runs: int = 5) -> StatusReport:
    """Read the report for the database at `path`."""
    running = sync_is_running(path)
    async with open_reader(path) as reader, reader.snapshot():
        accounts = await reader.read(select_accounts)
        holdings = await reader.read(select_holdings)
        records = await reader.read(select_runs, runs)
    # Asked again: a sync begun while the snapshot was read is running, not killed (79B).
    running = running or sync_is_running(path)
    default = accounts.get("default", AccountState(None, 0, None))
    if not running:
        # The ledger says running but nobody holds the lock: those runs were killed (a sync
        # of several accounts runs one for each).
        records = [
            dataclasses.replace(r, outcome="killed") if r.outcome == "running" else r
            for r in records
        ]
    return StatusReport(
        path,
        running,
        default.walk,
        sum(holdings.by_status.values()),
        holdings.error_lines,
        holdings.by_status,
        holdings.gone,
        holdings.files,
        holdings.request_lines,
        records,
        default.by_id_failed_at,
        accounts,
    )


def format_status(report: StatusReport) -> str:
    """The human-readable report."""
    lines = [f"database: {report.path}"]
    if report.sync_running:
        lines.append("a sync is running now")
    named = set(report.accounts) - {"default"}
    if not named:
        lines.append(f"walk: {_walk_words(report.walk)}")
    for name, account in report.accounts.items():
        if named:
            lines.append(
                f"account {name}: {account.batches:,} batches; walk {_walk_words(account.walk)}"
            )
    lines.append(f"batches: {report.batches:,}  error lines: {report.error_lines:,}")
    width = max((len(status) for status in report.by_status), default=0)
    lines.extend(f"  {status:<{width}} {count:>10,}" for status, count in report.by_status.items())
    if report.gone:
        lines.append(
            f"gone: {report.gone:,} answered 404 on 3 runs in a row of an account, which no "
            "longer asks about them; a `sync --full` that lists them again clears the mark"
        )
    lines.append(f"request lines: {report.request_lines:,}")
    for kind, states in report.files.items():
        shown = ", ".join(f"{_FILE_STATES.get(state, state)} {n:,}" for state, n in states.items())
        lines.append(f"  {kind} files: {shown}")
    for name, account in report.accounts.items():
        if account.by_id_failed_at is not None:
            whose = f"account {name}: " if named else ""
            lines.append(
                f"{whose}requests by id (GET /batches/{{id}}) kept failing at "
                f"{_when(account.by_id_failed_at)}: in-flight batches are refreshed from "
                "the list, for a day after that"
            )
    if report.runs:
        lines.append("last runs:")
    for run in report.runs:
        whose = f"{run.account} " if named else ""
        line = (
            f"  #{run.id} {whose}{_when(run.started_at)} {run.mode:<11} {run.outcome:<11} "
            f"pages {run.pages:,}  batches {run.batches_seen:,} "
            f"(new {run.batches_new:,}, updated {run.batches_updated:,})  "
            f"by id {run.refreshed_by_id:,}  retries {run.retries:,}"
        )
        if run.error:
            line += f"\n      error: {run.error}"
        lines.append(line)
    return "\n".join(lines)


def _walk_words(walk: WalkState | None) -> str:
    """Where a walk stands, and what the next sync does with it."""
    if walk is None:
        return "never started"
    if walk.finished:
        return f"finished (newest batch {walk.head_id or '-'}); the next sync is incremental"
    if walk.cursor is None and walk.stop_id is None:
        return "unfinished, no page committed yet; the next sync starts at the top"
    if walk.cursor is None:
        return f"unfinished, catching up from the top down to {walk.stop_id}"
    if walk.end_unchecked:
        return (
            f"unfinished at {walk.cursor}, on a page said to be the list's last: asking after "
            "it failed; the next sync asks again, and a failure while the list's top answers "
            "is the end"
        )
    stuck = (
        ""
        if walk.top is None
        else (
            f"; the list failed there, and the walk of its top meanwhile goes on after "
            f"{walk.top.cursor}"
        )
    )
    return f"unfinished, the next sync resumes after {walk.cursor}{stuck}"


# How `status` names a file's state: pending files are those still to fetch.
_FILE_STATES = {"pending": "to fetch", "expired": "expired (404)", "failed": "failed (retried)"}


def _when(unix: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):  # a value edited by hand
        return repr(unix)
