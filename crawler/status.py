"""What the database holds and how the last runs went, read without writing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runs import RunRecord
from .store import open_reader, sync_is_running
from .store.reads import select_by_id_failed_at, select_holdings, select_runs, select_walk
from .walk import WalkState


@dataclass(frozen=True)
class StatusReport:
    """A database at a glance."""

    path: Path
    sync_running: bool
    walk: WalkState | None
    batches: int
    error_lines: int
    by_status: dict[str, int]
    gone: int  # answered 404 on 3 runs in a row: no longer asked about
    files: dict[str, dict[str, int]]  # kind -> state -> count
    request_lines: int
    runs: list[RunRecord]
    by_id_failed_at: int | None = None  # requests by id last kept failing then

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
            "runs": [dataclasses.asdict(run) for run in self.runs],
        }


async def read_status(path: Path, *, runs: int = 5) -> StatusReport:
    """Read the report for the database at `path`."""
    running = sync_is_running(path)
    async with open_reader(path) as reader:
        walk = await reader.read(select_walk)
        holdings = await reader.read(select_holdings)
        records = await reader.read(select_runs, runs)
        by_id_failed_at = await reader.read(select_by_id_failed_at)
    if records and records[0].outcome == "running" and not running:
        # The ledger says running but nobody holds the lock: that run was killed.
        records[0] = dataclasses.replace(records[0], outcome="killed")
    return StatusReport(
        path,
        running,
        walk,
        sum(holdings.by_status.values()),
        holdings.error_lines,
        holdings.by_status,
        holdings.gone,
        holdings.files,
        holdings.request_lines,
        records,
        by_id_failed_at,
    )


def format_status(report: StatusReport) -> str:
    """The human-readable report."""
    lines = [f"database: {report.path}"]
    if report.sync_running:
        lines.append("a sync is running now")
    walk = report.walk
    if walk is None:
        lines.append("walk: never started")
    elif walk.finished:
        lines.append(
            f"walk: finished (newest batch {walk.head_id or '-'}); the next sync is incremental"
        )
    elif walk.cursor is None and walk.stop_id is None:
        lines.append("walk: unfinished, no page committed yet; the next sync starts at the top")
    elif walk.cursor is None:
        lines.append(f"walk: unfinished, catching up from the top down to {walk.stop_id}")
    else:
        lines.append(f"walk: unfinished, the next sync resumes after {walk.cursor}")
    lines.append(f"batches: {report.batches:,}  error lines: {report.error_lines:,}")
    width = max((len(status) for status in report.by_status), default=0)
    lines.extend(f"  {status:<{width}} {count:>10,}" for status, count in report.by_status.items())
    if report.gone:
        lines.append(
            f"gone: {report.gone:,} answered 404 on 3 runs in a row and are no longer asked "
            "about; a `sync --full` that lists them again clears the mark"
        )
    lines.append(f"request lines: {report.request_lines:,}")
    for kind, states in report.files.items():
        shown = ", ".join(f"{_FILE_STATES.get(state, state)} {n:,}" for state, n in states.items())
        lines.append(f"  {kind} files: {shown}")
    if report.by_id_failed_at is not None:
        lines.append(
            f"requests by id (GET /batches/{{id}}) kept failing at "
            f"{_when(report.by_id_failed_at)}: in-flight batches are refreshed from "
            "the list, for a day after that"
        )
    if report.runs:
        lines.append("last runs:")
    for run in report.runs:
        line = (
            f"  #{run.id} {_when(run.started_at)} {run.mode:<11} {run.outcome:<11} "
            f"pages {run.pages:,}  batches {run.batches_seen:,} "
            f"(new {run.batches_new:,}, updated {run.batches_updated:,})  "
            f"by id {run.refreshed_by_id:,}  retries {run.retries:,}"
        )
        if run.error:
            line += f"\n      error: {run.error}"
        lines.append(line)
    return "\n".join(lines)


# How `status` names a file's state: pending files are those still to fetch.
_FILE_STATES = {"pending": "to fetch", "expired": "expired (404)", "failed": "failed (retried)"}


def _when(unix: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):  # a value edited by hand
        return repr(unix)


def dumps(report: StatusReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.as_json(), indent=2, ensure_ascii=False)
