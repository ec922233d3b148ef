"""One sync run: own the session and the store, fetch and write in parallel, keep the ledger."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .api import ApiClient, RetryEvent, RetryPolicy, build_client, create_session
from .config import Settings
from .entra import entra_tokens
from .errors import (
    ApiError,
    ConfigError,
    CrawlerError,
    UnstorableBatchError,
    first_exception,
)
from .events import (
    FILE_STORED,
    PAGE_COMMITTED,
    REFRESH_DONE,
    RUN_FINISHED,
    RUN_STARTED,
    WARNING,
    Event,
    EventHandler,
    Level,
    failure_event,
    retry_event,
)
from .listwalk import ListWalk, PageQueue, WalkEnd
from .pages import Batch
from .ratelimit import RateLimiter
from .redact import mask_secret
from .refresh import RefreshEnd, refresh_by_id
from .request_files import FileFetcher, FileOutcome
from .rows import build_file_rows, build_page_rows, build_page_rows_fitted
from .runs import Progress, RunFigures, SyncResult
from .store import Store, open_store
from .walk import WalkState, plan_refresh, starting_walk

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


@dataclass
class _Run:
    store: Store
    settings: Settings
    run_id: int
    on_progress: Callable[[Progress], None] | None
    clock: Callable[[], float]
    started: float
    on_event: EventHandler | None = None
    figures: RunFigures = field(default_factory=RunFigures)
    pages_told: int = 0  # pages as of the last page_committed event
    warnings: list[str] = field(default_factory=list)
    warnings_dropped: int = 0
    # Incremental and resumed runs: the unsettled batches still to refresh (those the walk
    # passes are struck off), and those of them the plan has the walk go on down to.
    to_refresh: set[str] = field(default_factory=set)
    walk_targets: set[str] = field(default_factory=set)
    refresh_order: list[str] = field(default_factory=list)  # least recently seen first
    stored_mark: int = 0  # the store's last rowid when the run began
    fetcher: FileFetcher | None = None
    by_id_failed_at: int | None = None  # see WALK_INSTEAD_OF_BY_ID
    by_id_failures: dict[str, str] = field(default_factory=dict)  # batch id: why
    answered_gone: set[str] = field(default_factory=set)  # answered 404 by id this run

    def walks_instead_of_by_id(self) -> bool:
        failed = self.by_id_failed_at
        # A mark ahead of the clock (set while the clock ran ahead) would hold for as long.
        return failed is not None and 0 <= time.time() - failed < WALK_INSTEAD_OF_BY_ID

    def budget_spent(self, pages_fetched: int) -> bool:
        limit = self.settings.max_pages
        return (limit is not None and pages_fetched >= limit) or self.time_spent()

    def time_spent(self) -> bool:
        left = self.time_left()
        return left is not None and left <= 0

    def time_left(self) -> float | None:
        """Seconds left of the time budget (None: no budget)."""
        seconds = self.settings.max_seconds
        return None if seconds is None else seconds - (self.clock() - self.started)

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
        return writer.result()

    async def write(self, queue: PageQueue) -> bool:
        """Commit pages in order until the fetcher's end mark; re-raise its error after."""
        while True:
            item = await queue.get()
            if isinstance(item, WalkEnd):
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
        secret = self.settings.api_key
        account = self.settings.account
        batch_rows, error_rows = build_page_rows(batches, seen_at, secret, account)
        file_rows = build_file_rows(batches, secret)
        try:
            counts = await self.store.save_page(
                batch_rows, error_rows, walk, self.run_id, self.figures, gone, file_rows
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
                batch_rows, error_rows, walk, self.run_id, self.figures, gone, file_rows
            )
        self.figures = self.figures.plus(
            batches_new=counts.new, batches_updated=counts.updated, error_lines=counts.error_lines
        )
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
        await self.store.finish_file(
            outcome.file, outcome.state, self.run_id, self.figures, **record
        )
        file = outcome.file
        self.emit(
            FILE_STORED,
            "warning" if outcome.state == "failed" else "info",
            file_id=file.file_id,
            batch_id=file.batch_id,
            kind=file.kind,
            state=outcome.state,
            **{name: self.masked(v) if isinstance(v, str) else v for name, v in record.items()},
        )
        self.report()

    def note(self, warning: str) -> None:
        # A warning may quote what the server sent: kept short, and masked, since it may
        # echo the key.
        if len(warning) > MAX_WARNING_CHARS:
            warning = warning[: MAX_WARNING_CHARS - 3] + "..."
        warning = self.masked(warning)
        self.emit(WARNING, "warning", message=warning)
        if len(self.warnings) >= MAX_WARNINGS:
            self.warnings_dropped += 1
            return
        self.warnings.append(warning)

    def masked(self, text: str) -> str:
        return mask_secret(text, self.settings.api_key)

    def emit(self, name: str, level: Level = "info", **fields: Any) -> None:
        """Tell the embedding program (or the JSON log) what just happened."""
        self.tell(Event(name, fields, level))

    def tell(self, event: Event) -> None:
        """Hand `event` on, naming this run's account."""
        if self.on_event is not None:
            fields = {"account": self.settings.account, **event.fields}
            self.on_event(dataclasses.replace(event, fields=fields))

    def all_warnings(self) -> list[str]:
        """The warnings kept, and how many more there were."""
        more = [f"... and {self.warnings_dropped:,} more"] if self.warnings_dropped else []
        return self.warnings + more

    def count_retry(self, event: RetryEvent) -> None:
        self.figures = self.figures.plus(retries=1)
        self.tell(retry_event(event, self.settings.api_key))
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


async def _close_run(store: Store, run: _Run, outcome: str, error: str | None) -> None:
    """Record how the run ended; a failure here must not hide the run's own error."""
    try:
        await asyncio.shield(
            store.finish_run(run.run_id, outcome, run.figures, run.all_warnings(), error)
        )
    except Exception:
        if outcome in {"complete", "partial"}:
            raise


async def _plan_refresh(store: Store, run: _Run) -> None:
    """Decide which unsettled batches the walk goes on down to, and which are fetched by id."""
    unsettled = await store.load_unsettled()
    plan = plan_refresh(unsettled, run.settings.page_size)
    run.to_refresh = set(plan.to_refresh)
    run.refresh_order = [batch_id for batch_id, _ in unsettled]
    run.by_id_failed_at = await store.by_id_failed_at()
    if run.walks_instead_of_by_id() and unsettled:
        run.note(
            "requests by id (GET /batches/{id}) kept failing on an earlier sync: "
            "in-flight batches are refreshed from the list, for a day after that"
        )
    # A budget may stop a walk at the same depth on every run; by id, least recently
    # seen first, every run gets further.
    budgeted = run.settings.max_pages is not None or run.settings.max_seconds is not None
    run.walk_targets = set() if budgeted else set(plan.walk_targets)


async def _refresh(run: _Run, client: ApiClient) -> bool:
    """Bring up to date the unsettled batches the walk did not pass: by id, then those by
    id failed from the pages of the list that hold them. While requests by id are known to
    fail, from the list first, and by id only those it did not show. False if the budget
    ran out first."""
    walking = run.walks_instead_of_by_id()
    if not walking and not await _refresh_by_id(run, client):
        return False
    if run.to_refresh:
        run.walk_targets = set(run.to_refresh)
        if not await run.pipeline(client, None):
            return False
    if walking and run.to_refresh and not await _refresh_by_id(run, client):
        return False
    # Neither by id nor in the list: deleted, or a server out of step with itself.
    for batch_id in sorted(run.to_refresh - run.answered_gone):
        why = run.by_id_failures.get(batch_id, "requests by id are failing")
        run.note(f"batch {batch_id} was not refreshed: {why}; nor is it in the list")
    run.emit(
        REFRESH_DONE,
        refreshed_by_id=run.figures.refreshed_by_id,
        gone=run.figures.gone,
        not_refreshed=len(run.to_refresh),
    )
    return True


async def _refresh_by_id(run: _Run, client: ApiClient) -> bool:
    """Ask for each batch left to refresh by id; False if the time budget ran out first."""
    end = await _ask_by_id(run, client)
    if end.out_of_time:
        return False
    if end.route_failing:
        if not run.walks_instead_of_by_id():
            run.note(
                "requests by id (GET /batches/{id}) kept failing while the list answered: "
                "in-flight batches are refreshed from the list instead, for a day"
            )
        await run.store.mark_by_id_failed(int(time.time()))
    elif run.by_id_failed_at is not None and (end.answered or not run.walks_instead_of_by_id()):
        await run.store.mark_by_id_failed(None)  # requests by id work again
    # One 404 is not the last word (a replica behind, a blip): a batch answered so is looked
    # for in the list too, where it may stand changed; listed, it is no longer counted gone.
    run.to_refresh -= end.answered - run.answered_gone
    return True


async def _ask_by_id(run: _Run, client: ApiClient) -> RefreshEnd:
    async def save(batches: Sequence[Batch], gone: Sequence[str]) -> None:
        run.answered_gone.update(gone)
        run.figures = run.figures.plus(refreshed_by_id=len(batches) + len(gone), gone=len(gone))
        await run.save(batches, None, gone)

    def skip(batch_id: str, error: ApiError) -> None:
        run.by_id_failures[batch_id] = str(error)

    return await refresh_by_id(
        client,
        [batch_id for batch_id in run.refresh_order if batch_id in run.to_refresh],
        concurrency=run.settings.concurrency,
        chunk=run.settings.page_size,
        save=save,
        skip=skip,
        time_left=run.time_left,
        api_answers=lambda: _answers(client),
    )


async def _answers(client: ApiClient) -> bool:
    """Whether the API answers a list request (of one batch): it is up."""
    try:
        await client.fetch_page(None, 1)
    except ApiError:
        return False
    return True


async def _walk_and_refresh(run: _Run, client: ApiClient, walk: WalkState) -> bool:
    """The list walk, then the refresh by id; False when a budget cut it short."""
    complete = await run.pipeline(client, walk)
    if complete and run.to_refresh:
        complete = await _refresh(run, client)
    return complete


async def _walk_and_fetch(run: _Run, client: ApiClient, walk: WalkState) -> bool:
    """The walk and the refresh, with the request files fetched alongside; False when a
    budget cut either short."""
    fetcher = run.fetcher
    if fetcher is None:
        return await _walk_and_refresh(run, client, walk)
    try:
        async with asyncio.TaskGroup() as tasks:
            files = tasks.create_task(fetcher.run())
            complete = False
            try:
                complete = await _walk_and_refresh(run, client, walk)
            finally:
                fetcher.walk_ended(complete=complete)
    except BaseExceptionGroup as group:
        raise first_exception(group) from None
    return complete and files.result()


@dataclass(frozen=True)
class RunOptions:
    """How every account of a sync runs (see `sync`)."""

    restart: bool
    full: bool
    on_event: EventHandler | None
    retry: RetryPolicy | None
    clock: Callable[[], float]


async def sync(
    settings: Settings,
    *,
    restart: bool = False,
    full: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    on_event: EventHandler | None = None,
    retry: RetryPolicy | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SyncResult:
    """Copy every batch the API lists into `settings.db`, resuming an unfinished walk.

    Args:
        settings: where to read from and write to (and which account that is).
        restart: forget an unfinished walk and start again from the top.
        full: after a finished walk, walk the whole list again instead of only what can
            have changed.
        on_progress: called after every committed page and every retry.
        on_event: called with each event of the run, as the JSON log shows them: a
            `run_finished` or `run_failed` event is the last.
        retry: the retry policy; by default built from `settings`.
        clock: a monotonic clock, for the time budget and the figures.

    Raises:
        ConfigError: no API key.
        ApiError: the API refused, or kept failing past the retry budget.
        PaginationError: the list's cursor chain loops or ends early.
        UnstorableBatchError: a batch holds a value SQLite cannot store.
        DatabaseError: the database is busy, not ours, or broken.
    """
    options = RunOptions(restart, full, on_event, retry, clock)
    try:
        if not settings.has_credentials:
            raise ConfigError(settings.missing_key_message())
        async with open_store(settings.db) as store:
            return await sync_account(
                store.for_account(settings.account), settings, on_progress, options
            )
    except Exception as exc:
        tell_failure(on_event, exc, settings)
        raise


def tell_failure(on_event: EventHandler | None, error: BaseException, settings: Settings) -> None:
    if on_event is not None:
        event = failure_event(error, settings.api_key)
        on_event(dataclasses.replace(event, fields={"account": settings.account, **event.fields}))


async def sync_account(
    store: Store,
    settings: Settings,
    on_progress: Callable[[Progress], None] | None,
    options: RunOptions,
) -> SyncResult:
    """One account's run on an open store (see `sync`): the accounts runner's part too."""
    clock = options.clock
    started = clock()
    async with create_session(settings) as session, entra_tokens(settings) as tokens:
        saved = None if options.restart else await store.load_walk()
        walk, mode = starting_walk(saved, restart=options.restart, full=options.full)
        if walk != saved:
            await store.save_walk(walk)
        run_id = await store.start_run(mode, settings.base_url)
        run = _Run(store, settings, run_id, on_progress, clock, started, options.on_event)
        run.emit(
            RUN_STARTED,
            run_id=run_id,
            mode=mode,
            db=str(settings.db),
            host=urlsplit(settings.base_url).hostname,
            files=list(settings.file_kinds),
        )
        run.stored_mark = await store.last_rowid()
        if mode != "full":
            # A resumed walk ends like an incremental one: the pages committed before the
            # interruption hold batches that may have moved on since.
            await _plan_refresh(store, run)
        limiter = RateLimiter(settings.requests_per_minute)
        client = build_client(
            session,
            settings,
            retry=options.retry,
            on_retry=run.count_retry,
            limiter=limiter,
            auth=tokens,
        )
        if settings.file_kinds:
            run.fetcher = FileFetcher(
                client,
                store,
                kinds=settings.file_kinds,
                keep_body=settings.bodies,
                concurrency=settings.concurrency,
                on_outcome=run.file_done,
                time_left=run.time_left,
                secret=settings.api_key,
            )
        outcome, error = "failed", None
        try:
            complete = await _walk_and_fetch(run, client, walk)
            outcome = "complete" if complete else "partial"
        except CrawlerError as exc:
            # A message may quote what the server sent (a cursor, an id), which may echo
            # the key: it is masked before anyone sees it or the ledger keeps it.
            if exc.args and isinstance(exc.args[0], str):
                exc.args = (mask_secret(exc.args[0], settings.api_key), *exc.args[1:])
            error = str(exc)
            raise
        except asyncio.CancelledError:
            outcome = "interrupted"
            raise
        except Exception as exc:
            # Not expected, but never a failed run with no word of why in its ledger row.
            error = mask_secret(f"unexpected {type(exc).__name__}: {exc}", settings.api_key)
            raise
        finally:
            run.figures = dataclasses.replace(
                run.figures,
                limiter_waits=limiter.waits,
                limiter_wait_seconds=round(limiter.waited, 3),
            )
            await _close_run(store, run, outcome, error)
            if outcome != "failed":
                run.emit(
                    RUN_FINISHED,
                    run_id=run_id,
                    mode=mode,
                    outcome=outcome,
                    seconds=round(clock() - started, 3),
                    **run.figures.columns(),
                    warnings=run.all_warnings(),
                )
        return SyncResult(
            **run.figures.columns(),
            run_id=run_id,
            mode=mode,
            complete=complete,
            seconds=clock() - started,
            warnings=tuple(run.all_warnings()),
        )
