"""One run's state and bookkeeping: its figures, warnings and events, its budget, the
pipeline that fetches a page while the last is written, and each page's and file's save."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .api import ApiClient, RetryEvent
from .budget import spent
from .config import Settings
from .errors import UnstorableBatchError, first_exception
from .events import FILE_STORED, PAGE_COMMITTED, WARNING, Event, EventHandler, Level, retry_event
from .listwalk import ListWalk, PageQueue, WalkEnd
from .pages import Batch
from .redact import Secret, mask_secret
from .request_files import FileFetcher, FileOutcome
from .rows import build_file_rows, build_page_rows, build_page_rows_fitted
from .runs import Progress, RunFigures
from .store import Store
from .walk import WalkState

# Warnings kept word for word; past these, only counted (a proxy may get every page wrong).
MAX_WARNINGS = 5
MAX_WARNING_CHARS = 1000

# After requests by id kept failing while the list answered, syncs walk the list down to the
# in-flight batches instead, for this long; then requests by id are tried again.
WALK_INSTEAD_OF_BY_ID = 86_400

# A page_committed event every this many pages, and one for the last.
PAGE_EVENT_EVERY = 10

# Pages fetched ahead of the writer: enough to hide a slow commit, small enough
# that memory does not grow with the size of the list.
QUEUE_PAGES = 4


# What a `file_stored` event tells of how a file ended (the README lists them).
_FILE_EVENT_FIELDS = frozenset({"size", "lines", "bodies", "error"})


@dataclass
class Run:
    """One sync run of one account: its store, settings, figures and warnings, and the
    bookkeeping of its walk, refresh and files."""

    store: Store
    settings: Settings
    run_id: int
    on_progress: Callable[[Progress], None] | None
    clock: Callable[[], float]
    started: float
    secret: Secret  # masked wherever a server may echo it: the key or the tokens sent
    on_event: EventHandler | None = None
    figures: RunFigures = field(default_factory=RunFigures)
    pages_told: int = 0  # pages as of the last page_committed event
    warnings: list[str] = field(default_factory=list)
    warnings_dropped: int = 0
    # Incremental and resumed runs: the unsettled batches still to refresh (those the walk
    # passes are struck off), and those of them the plan has the walk go on down to.
    to_refresh: set[str] = field(default_factory=set)
    walk_targets: set[str] = field(default_factory=set)
    refresh_order: list[str] = field(default_factory=list)  # least recently seen or missed first
    # Where a visit cut by the budget stopped (see ListWalk.visit_resume), the batches
    # visits looked for and did not find (`not_listed`), and those of them not answered
    # 404 (`missed`, see batches.missed_by).
    visit_resume: tuple[str, str] | None = None
    visit_cut: bool = False  # visit_resume is where a visit of this run stopped
    left_list: set[str] = field(default_factory=set)  # see ListWalk.left_list
    share_ends: float | None = None  # see sharing_time
    cut: set[str] = field(default_factory=set)  # asked for by id as the time budget ran out
    not_listed: set[str] = field(default_factory=set)
    missed: list[str] = field(default_factory=list)
    unsettled: frozenset[str] = frozenset()  # those of refresh_order
    # Ended naming no file, asked for by id after the refresh (see ended_without_files).
    without_files: list[str] = field(default_factory=list)
    stored_mark: int = 0  # the store's last rowid when the run began
    fetcher: FileFetcher | None = None
    by_id_failed_at: int | None = None  # see WALK_INSTEAD_OF_BY_ID
    by_id_failures: dict[str, str] = field(default_factory=dict)  # batch id: why
    answered_gone: set[str] = field(default_factory=set)  # answered 404 by id this run

    async def mark_by_id_failed(self, at: int | None) -> None:
        """Record when requests by id kept failing while the list answered (None: they work
        again), for this run's later steps too: the asks for files went on asking a route
        the refresh had just found failing (pass 85B)."""
        await self.store.mark_by_id_failed(at)
        self.by_id_failed_at = at

    def walks_instead_of_by_id(self) -> bool:
        failed = self.by_id_failed_at
        # A mark ahead of the clock (set while the clock ran ahead) would hold for as long.
        return failed is not None and 0 <= time.time() - failed < WALK_INSTEAD_OF_BY_ID

    def budget_spent(self, pages_fetched: int) -> bool:
        limit = self.settings.max_pages
        return (limit is not None and pages_fetched >= limit) or self.time_spent()

    def time_spent(self) -> bool:
        return spent(self.time_left())

    def time_left(self) -> float | None:
        """Seconds left of the time budget (None: no budget), or of the share of it given
        to one step (see sharing_time)."""
        left = self.budget_left()
        if left is None or self.share_ends is None:
            return left
        return min(left, self.share_ends - self.clock())

    def budget_left(self) -> float | None:
        """Seconds left of the whole time budget (None: no budget): the request files,
        fetched alongside every step, take no step's share (a file begun while the visits
        took theirs was cut at its end, the run partial)."""
        seconds = self.settings.max_seconds
        return None if seconds is None else seconds - (self.clock() - self.started)

    @contextlib.contextmanager
    def sharing_time(self, share: float) -> Iterator[None]:
        """Within, the time budget left is `share` of what was left: one step leaves the
        rest to those after it."""
        left = self.time_left()
        if left is not None:
            self.share_ends = self.clock() + share * max(left, 0)
        try:
            yield
        finally:
            self.share_ends = None

    async def pipeline(self, client: ApiClient, walk: WalkState | None) -> bool:
        """Fetch page k+1 while page k is written; True when the walk finished.

        `walk` None reads only the pages listing the walk targets (ListWalk.visit_targets).
        """
        queue: PageQueue = asyncio.Queue(QUEUE_PAGES)
        walker = ListWalk(
            client,
            self.store,
            self.settings.page_size,
            note=self.note,
            budget_spent=self.budget_spent,
            time_left=self.time_left,
            to_refresh=self.to_refresh,
            walk_targets=self.walk_targets,
            stored_mark=self.stored_mark,
            visit_resume=self.visit_resume,
            left_list=self.left_list,
            # The run's first list page is read whatever the budget, a visit's is not.
            pages_read=self.figures.pages,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                if walk is None:
                    order = [b for b in self.refresh_order if b in self.walk_targets]
                    tasks.create_task(walker.visit_targets(order, queue, self.figures.pages))
                else:
                    tasks.create_task(walker.run(walk, queue))
                writer = tasks.create_task(self.write(queue))
        except BaseExceptionGroup as group:
            # Only the writer raises on purpose: hand its error on as it is, not a group.
            raise first_exception(group) from None
        # The first visit cut this run keeps its place: the next run visits it first again
        # (a later one cut too took the one place, and the first began again every run).
        if not self.visit_cut:
            self.visit_resume = walker.visit_resume
            self.visit_cut = walker.cut_a_visit
        self.not_listed.update(walker.missed)
        # One answered 404 is asked by id first next time still: most such blips answer.
        self.missed += [
            batch_id for batch_id in walker.missed if batch_id not in self.answered_gone
        ]
        return writer.result()

    async def write(self, queue: PageQueue) -> bool:
        """Commit pages in order until the fetcher's end mark; re-raise its error after."""
        while True:
            item = await queue.get()
            if isinstance(item, WalkEnd):
                if item.walk is not None:
                    await self.store.save_walk(item.walk)
                self.tell_pages()
                if item.error is not None:
                    raise item.error
                return item.complete
            step, walk = item
            page = step.page
            self.figures = self.figures.plus(
                pages=1,
                batches_seen=len(page.batches),
                pages_without_has_more=not page.has_more_sent,
            )
            for warning in step.warnings:
                self.note(warning)
            await self.save(page.batches, walk)
            if self.figures.pages % PAGE_EVENT_EVERY == 0:
                self.tell_pages()

    def tell_pages(self) -> None:
        """A page_committed event, unless the last one told these pages already."""
        f = self.figures
        if f.pages == self.pages_told:
            return
        self.pages_told = f.pages
        elapsed = self.clock() - self.started
        self.emit(
            PAGE_COMMITTED,
            pages=f.pages,
            batches=f.batches_seen,
            batches_new=f.batches_new,
            batches_updated=f.batches_updated,
            rate=round(f.batches_seen / elapsed, 1) if elapsed > 0 else None,
            elapsed=round(elapsed, 3),
        )

    async def save(
        self, batches: Sequence[Batch], walk: WalkState | None, gone: Sequence[str] = ()
    ) -> None:
        """Commit batches (and the walk state, and gone ids) with the run's figures so far.

        Rows are built here, on the event loop while the fetcher waits for the next page:
        the database thread then runs SQLite's C code and needs no GIL.
        """
        seen_at = int(time.time())
        secret = self.secret
        account = self.settings.account
        batch_rows, error_rows = build_page_rows(batches, seen_at, secret, account)
        file_rows = build_file_rows(batches, secret)
        try:
            counts = await self.store.save_page(
                batch_rows, error_rows, walk, self.run_id, self.figures, gone, file_rows, secret
            )
        except UnstorableBatchError:
            # Nothing was written. Store every batch with what SQLite refused made storable,
            # saying what changed: one odd batch must not block every page after it.
            batch_rows, error_rows, warnings = build_page_rows_fitted(
                batches, seen_at, secret, account
            )
            for warning in warnings:
                self.note(warning)
            counts = await self.store.save_page(
                batch_rows, error_rows, walk, self.run_id, self.figures, gone, file_rows, secret
            )
        self.figures = self.figures.plus(**counts.figures())
        # A list a replica behind (the batch at an earlier stage than stored) says nothing
        # of it: one the refresh was to ask for is asked for still.
        self.to_refresh.update(counts.stale & self.unsettled)
        if file_rows and self.fetcher is not None:
            self.fetcher.more()
        self.report()

    async def file_done(self, outcome: FileOutcome) -> None:
        """Count a file, say what was odd in it, and record how it ended."""
        for warning in outcome.warnings():
            self.note(warning)
        if outcome.state == "complete" and outcome.read is not None:
            read = outcome.read
            self.figures = self.figures.plus(
                files=1, request_lines=read.lines, file_bytes=read.size
            )
        record = outcome.record()
        held = await self.store.finish_file(
            outcome.file, outcome.state, self.run_id, self.figures, **record
        )
        file = outcome.file
        if held is not None and outcome.read is not None and held < outcome.read.lines:
            self.note(
                f"file {file.file_id} of batch {file.batch_id}: "
                f"{outcome.read.lines - held:,} lines repeat the custom_id of another "
                "(a request is one line): the last of each was kept"
            )
        self.emit(
            FILE_STORED,
            "warning" if outcome.state == "failed" else "info",
            file_id=file.file_id,  # stored as sent, shown masked (see tell)
            batch_id=file.batch_id,
            kind=file.kind,
            state=outcome.state,
            **{name: v for name, v in record.items() if name in _FILE_EVENT_FIELDS},
        )
        self.report()

    def note(self, warning: str, *, summary: bool = False) -> None:
        """Keep `warning` (and tell it); a `summary` of many (what to do about them) is kept
        ahead of them, whatever their number."""
        # A warning may quote what the server sent: kept short, and masked, since it may
        # echo the key.
        if len(warning) > MAX_WARNING_CHARS:
            warning = warning[: MAX_WARNING_CHARS - 3] + "..."
        warning = self.masked(warning)
        self.emit(WARNING, "warning", message=warning)
        if summary:
            self.warnings.insert(0, warning)
            return
        if len(self.warnings) >= MAX_WARNINGS:
            self.warnings_dropped += 1
            return
        self.warnings.append(warning)

    def masked(self, text: str) -> str:
        return mask_secret(text, self.secret)

    def emit(self, name: str, level: Level = "info", **fields: Any) -> None:
        """Tell the embedding program (or the JSON log) what just happened."""
        self.tell(Event(name, fields, level))

    def tell(self, event: Event) -> None:
        """Hand `event` on, naming this run's account, with the key masked in its texts:
        an id, a message or a warning may quote what a server sent."""
        if self.on_event is not None:
            fields = {name: self._masked_value(v) for name, v in event.fields.items()}
            fields = {"account": self.settings.account, **fields}
            self.on_event(dataclasses.replace(event, fields=fields))

    def _masked_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.masked(value)
        if isinstance(value, list):
            return [self._masked_value(v) for v in value]
        return value

    def all_warnings(self) -> list[str]:
        """The warnings kept, and how many more there were."""
        more = [f"... and {self.warnings_dropped:,} more"] if self.warnings_dropped else []
        return self.warnings + more

    def count_retry(self, event: RetryEvent) -> None:
        self.figures = self.figures.plus(retries=1)
        self.tell(retry_event(event))
        self.report(f"attempt {event.attempt + 1}/{event.max_attempts}: {event.reason}")

    def report(self, retrying: str | None = None) -> None:
        """Send the figures on; `retrying` says what a retry is waiting on."""
        if self.on_progress is not None:
            f = self.figures
            elapsed = self.clock() - self.started
            self.on_progress(
                Progress(
                    f.pages, f.batches_seen, f.retries, elapsed, retrying, f.files, f.request_lines
                )
            )


async def close_run(store: Store, run: Run, outcome: str, error: str | None) -> None:
    """Record how the run ended; a failure here must not hide the run's own error."""
    try:
        await asyncio.shield(
            store.finish_run(run.run_id, outcome, run.figures, run.all_warnings(), error)
        )
    except Exception:
        if outcome in {"complete", "partial"}:
            raise
