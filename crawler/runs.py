"""The shape of a run: its figures (the `sync_runs` columns, named once here) and its results."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunFigures:
    """What a run did, counted as it goes. Each field is a column of `sync_runs`."""

    pages: int = 0  # list pages walked
    pages_without_has_more: int = 0  # of those, pages of a list that never says has_more
    batches_seen: int = 0
    batches_new: int = 0
    batches_updated: int = 0
    error_lines: int = 0
    retries: int = 0
    refreshed_by_id: int = 0  # GET /batches/{id}
    gone: int = 0  # of those, answered 404
    limiter_waits: int = 0
    limiter_wait_seconds: float = 0.0
    files: int = 0  # request files stored whole
    request_lines: int = 0
    file_bytes: int = 0

    def plus(self, **counts: float) -> RunFigures:
        """These figures with `counts` added to the named ones."""
        return dataclasses.replace(
            self, **{name: getattr(self, name) + value for name, value in counts.items()}
        )

    def columns(self) -> dict[str, Any]:
        """The figures by column name, for the ledger."""
        return {name: getattr(self, name) for name in FIGURE_COLUMNS}


FIGURE_COLUMNS = tuple(f.name for f in dataclasses.fields(RunFigures))


@dataclass(frozen=True, kw_only=True)
class SyncResult(RunFigures):
    """What a sync did. `complete` is False when a page or time budget cut it short."""

    run_id: int
    mode: str
    complete: bool
    seconds: float
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The result as `sync --json` prints it: the ledger's figures, `outcome` as the
        ledger says it (`complete` or `partial`), the run's id, mode, seconds and warnings."""
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "outcome": "complete" if self.complete else "partial",
            **self.columns(),
            "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, kw_only=True)
class RunRecord(RunFigures):
    """One row of the run ledger."""

    id: int
    started_at: int
    ended_at: int | None
    mode: str
    outcome: str
    error: str | None
    account: str = "default"


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress lines, sent after every committed page and every retry."""

    pages: int
    batches: int
    retries: int
    elapsed: float
    # Set on a retry's report, until the next page: what the run waits on, and why,
    # e.g. "attempt 2/8: timed out, silent for 30 s".
    retrying: str | None = None
    files: int = 0  # request files stored whole
    request_lines: int = 0
