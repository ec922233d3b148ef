"""The fetch side of a sync: walk the list segment after segment, handing pages on.

A resumed or incremental walk is made of segments (from a cursor, then from the top down to
the old head); a stored cursor the API no longer knows starts the walk again from the top.
An incremental walk may go on below the head to refresh the in-flight batches there. Pages
go to the writer through a queue, with the walk state to commit with each.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from .api import ApiClient
from .budget import OutOfTime, before_deadline, spent
from .errors import (
    FAILED_ANSWERS,
    ApiError,
    BadRequestError,
    CrawlerError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
    UnknownCursorError,
    UnknownRouteError,
    about_one_batch,
)
from .pages import Batch, BatchPage, WalkStep, is_an_empty_end, walk_pages
from .store import Store
from .times import unix_seconds
from .walk import (
    WalkState,
    advance_walk,
    down_to,
    ended_walk,
    may_be_a_vanished_cursor,
    restart_from_top,
    stuck_with_top,
)

# The newest stored batches a walk down to the old head also stops at, should the head
# itself have vanished from the list.
STOP_NEIGHBOURS = 20

# Stored batches listed just above a walk target whose ids a visit tries as its cursor,
# should the nearest have left the list.
VISIT_CURSORS = 3

# Walks from the top again a run makes at most, each after a cursor gone from the list: a
# list losing batches as it is walked may lose several, and a server answering an unknown
# `after` with an empty page says nothing else.
RESTARTS = 3

# Reads from the top a visit begins at most, each after the batch where the last went on
# left the list.
TOP_READS = 3

# A batch created more than this far ahead of the clock is dated wrongly.
FUTURE_SLACK = 86_400


@dataclass(frozen=True)
class VisitStart:
    """Where a visit reads the list from: after `cursor` (None: the top). `from_top`: on
    from the top (the top itself, or where this run's read from it stopped); `resumed`:
    where an earlier run's visit for the same batch stopped."""

    cursor: str | None
    from_top: bool = False
    resumed: bool = False


# How the API may answer a list request after a cursor it no longer knows, besides an
# UnknownCursorError (see ListWalk.cursor_vanished).
_MAY_SAY_AN_UNKNOWN_CURSOR = (NotFoundError, BadRequestError, ServerError, TransportError)


@dataclass
class WalkEnd:
    """The walk's last word to the writer: why it stopped."""

    complete: bool
    error: CrawlerError | None = None
    walk: WalkState | None = None  # to commit, where no page carries it (see after_gone)


PageQueue = asyncio.Queue["tuple[WalkStep, WalkState | None] | WalkEnd"]


@dataclass
class ListWalk:
    """One run's walk of the list.

    `to_refresh` and `walk_targets` are the run's own sets: the batches each page passes
    are struck off them as the walk goes.
    """

    client: ApiClient
    store: Store
    page_size: int
    note: Callable[[str], None]
    budget_spent: Callable[[int], bool]
    time_left: Callable[[], float | None]
    to_refresh: set[str]
    walk_targets: set[str]
    stored_mark: int  # the store's last rowid when the run began (see Store.stored_by)
    last_step: WalkStep | None = None
    # A walk state no page committed carries, for the writer to commit at the end (see
    # after_gone, failed_past_the_end_again).
    unsaved_walk: WalkState | None = None
    top_answered = False  # before a walk resumed at an end unchecked (see run)
    # Cursors found gone from the list this run, each followed by a walk from the top.
    restarted_for: list[str] = field(default_factory=list)
    # What the page listing the walk's cursor was asked after ((None,): the top; None: not
    # known, a resumed walk an earlier build saved).
    holder: tuple[str | None] | None = None
    pages_read: int = 0  # by the run: its first is read whatever the budget
    # The list page after this cursor ((None,): the top) is read once whatever the budget
    # (see walk_top_from).
    once_after: tuple[str | None] | None = None
    first_an_empty_end: bool = False  # asked for again (see is_an_empty_end), free too
    asked_after: str | None = None  # the cursor of the last list request
    # How far visits read the list from its top this run: the creation time the deepest
    # page lies below (see listed_below), and the cursor after it (None: the end read).
    read_from_top: tuple[float, str | None] | None = None
    # A visit cut by the budget: its batch, and the cursor to go on after on the next run
    # (see Store.visit_resume).
    visit_resume: tuple[str, str] | None = None
    cut_a_visit: bool = False  # this walk cut a visit (see stopped)
    missed: list[str] = field(default_factory=list)  # visited, and not listed
    passed_over: str | None = None  # a target whose visit passed over a start
    # Starts found gone from the list (refused, or gone by id: see pass_over), the run's.
    left_list: set[str] = field(default_factory=set)
    unplaced: set[str] = field(default_factory=set)  # visited, and no read got past their place

    async def run(self, walk: WalkState, queue: PageQueue) -> None:
        """Walk segment after segment, handing each page on; errors go through the queue."""
        fetched = 0
        try:
            if walk.end_unchecked and walk.cursor is not None:
                # Asked first, whatever the budget, as the run's first page is: asked after
                # the first page's retries, a budget they spent kept the end from ever being
                # taken.
                self.top_answered = await self.top_answers()
            while not walk.finished:
                try:
                    walk, fetched, spent = await self.walk_segment(walk, queue, fetched)
                except ApiError as exc:
                    if self.failed_past_the_end_again(exc, walk):
                        # Committed with the next page, or at the end of a run cut before it.
                        past = walk.pages_past_stop is not None
                        walk = self.unsaved_walk = ended_walk(walk.head_id, finished=past)
                        continue
                    gone = self.asked_after
                    if gone is None or not await self.cursor_vanished(exc, walk.cursor):
                        if not await self.stuck_after(exc, walk, gone):
                            raise
                        await self.walk_the_top(walk, queue, fetched)
                        await queue.put(WalkEnd(complete=False, walk=self.unsaved_walk))
                        return
                    restarted = self.after_gone(walk, gone)
                    if restarted is not None:
                        walk = restarted
                        continue
                    spent = True
                if spent:
                    await queue.put(WalkEnd(complete=False, walk=self.unsaved_walk))
                    return
            self.walk_targets &= self.to_refresh
            complete = True
            last = self.last_step
            if self.walk_targets and last and last.page.has_more and last.cursor is not None:
                complete = await self.walk_on(last.cursor, queue, fetched)
            await queue.put(WalkEnd(complete=complete, walk=self.unsaved_walk))
        except OutOfTime:
            await queue.put(WalkEnd(complete=False, walk=self.unsaved_walk))
        except CrawlerError as exc:
            # Pages already queued were fetched fine: let the writer commit them first.
            await queue.put(WalkEnd(complete=False, error=exc, walk=self.unsaved_walk))

    async def walk_the_top(self, walk: WalkState, queue: PageQueue, fetched: int) -> None:
        """A stuck walk's run (see stuck_after): the list's top down to the walk's head, on
        from where the last stuck run's walk of it stopped, the stuck walk kept (see
        stuck_with_top)."""
        keep = functools.partial(stuck_with_top, walk)
        restarts, gone_on_the_way = len(self.restarted_for), False
        top = walk.top
        try:
            if top is not None:
                try:
                    await self.walk_top_from(top, queue, fetched, keep)
                except ApiError as exc:
                    if self.last_step is not None:
                        raise
                    self.note(
                        f"asking the list after {top.cursor}, where the last stuck run's walk "
                        f"of the top stopped, failed ({exc}): walked the top again"
                    )
                    top = None
            if top is None:
                await self.walk_top_from(down_to(walk.head_id), queue, fetched, keep)
        except ApiError as exc:
            # A batch its page ended with left the list since (a 400 after it): the run
            # failed, exit 1, nothing refreshed (pass 80B).
            gone = self.asked_after
            if not await self.cursor_vanished(exc, None):
                raise
            self.note(f"the cursor {gone} is gone from the list: the next sync walks the top anew")
            gone_on_the_way = True
        finally:
            # A cursor found gone in it restarts it from the top: that walk was saved in the
            # stuck walk's place, the batches below never stored (pass 75B).
            self.unsaved_walk = None
        if gone_on_the_way or len(self.restarted_for) > restarts:
            # Its own cursor gone: the next stuck run walks the top from the top again.
            self.unsaved_walk = replace(walk, top=None)

    async def walk_top_from(
        self,
        top: WalkState,
        queue: PageQueue,
        fetched: int,
        keep: Callable[[WalkState], WalkState],
    ) -> None:
        """A stuck walk's walk of the top from `top`, its first page read whatever the
        budget (the asks before it spent the run's first read: cut there, no stuck run
        stored a new batch, pass 77B), once on a time budget (with its retries, a silent
        top held a run on a budget of 3 s for 70 s, pass 78B)."""
        self.once_after = (top.cursor,)
        await self.walk_segment(top, queue, fetched, keep=keep)

    async def walk_segment(
        self,
        walk: WalkState,
        queue: PageQueue,
        fetched: int,
        *,
        keep: Callable[[WalkState], WalkState] | None = None,
    ) -> tuple[WalkState, int, bool]:
        """Walk one segment; returns the new walk state, pages fetched, and budget spent.
        Its pages are committed with `keep` of its state, where given (see stuck_after)."""
        from_top, resumed_past_stop = walk.cursor is None, walk.pages_past_stop is not None
        stop_second, stop_ids = None, frozenset[str]()
        if walk.stop_id is not None:
            # Batches dated in the future (a server that once sent milliseconds, say) stay
            # on top of the list, above every new batch: they are no place to stop at.
            horizon = int(time.time()) + FUTURE_SLACK
            head_second = await self.store.created_at(walk.stop_id)
            # Batches stored above the head are no stop: a walk from the top meeting a list
            # behind (a replica) ended on a head below them, and those between were never
            # walked; stopping at the newest stored, no later walk reached them.
            bound = horizon if head_second is None else min(horizon, head_second)
            newest = await self.store.newest(STOP_NEIGHBOURS, bound)
            ids = {batch_id for batch_id, _ in newest}
            if head_second is None or head_second <= horizon or not newest:
                # A head dated in the future is still the stop when nothing stored is
                # dated plausibly (a server sending milliseconds for every batch).
                ids.add(walk.stop_id)
                stop_second = head_second
            else:
                stop_second = newest[0][1]
            stop_ids = frozenset(ids)
        steps = walk_pages(
            self.fetch_page,
            after=walk.cursor,
            limit=self.page_size,
            stop_ids=stop_ids,
            stop_second=stop_second,
            known=self.known,
            check_full_end=True,
            pages_past_stop=walk.pages_past_stop,
        )
        resumed = walk.cursor is not None
        self.holder = walk.holder if resumed else None
        async with contextlib.aclosing(steps):
            async for step in steps:
                # Once a cursor: a server whose by-id route cannot confirm any (none, or
                # one that pages until an empty page) would restart the walk forever.
                if (
                    may_be_a_vanished_cursor(step, resumed=resumed)
                    and step.cursor is not None
                    and step.cursor not in self.restarted_for
                    and not await self.cursor_listed(step.cursor, self.holder)
                ):
                    restarted = self.after_gone(walk, step.cursor)
                    return restarted or walk, fetched, restarted is None
                resumed = False
                self.holder = (walk.cursor,)
                walk = advance_walk(walk, step, from_top, resumed_past_stop=resumed_past_stop)
                self.last_step = step
                self.to_refresh.difference_update(b["id"] for b in step.page.batches)
                await queue.put((step, walk if keep is None else keep(walk)))
                self.unsaved_walk = None
                fetched += 1
                if walk.finished:
                    break
                # The page budget waits for the pages of the head's second (TIE_PAGES at
                # most): cut there, every run began them again, and the walk never ended.
                if self.budget_spent(fetched) and not (step.tied and not self.time_spent()):
                    return walk, fetched, True
        return walk, fetched, False

    def time_spent(self) -> bool:
        return spent(self.time_left())

    async def fetch_page(
        self, after: str | None, limit: int, attempts: int | None = None, *, free: bool = False
    ) -> BatchPage:
        """One list page, abandoned (OutOfTime) once the time budget runs out (`free`: read
        whatever the budget); the run's first is read whatever the budget, so that every
        run gets further, and so is the second when the first was an empty end asked for
        again (see cursor_listed)."""
        self.asked_after = after
        if self.once_after is not None and self.once_after[0] == after:
            self.once_after = None
            # Once on a time budget; without one, a 429 or a blip failed the stuck run.
            free, attempts = True, 1 if self.time_left() is not None else attempts
        free = free or self.pages_read == 0
        free = free or (self.pages_read == 1 and self.first_an_empty_end)
        fetched = self.client.fetch_page(after, limit, attempts=attempts)
        page = await before_deadline(fetched, None if free else self.time_left())
        if self.pages_read == 0:
            self.first_an_empty_end = is_an_empty_end(page, after)
        self.pages_read += 1
        return page

    async def fetch_batch(
        self, batch_id: str, attempts: int | None = None, *, free: bool = False
    ) -> Batch | None:
        """One batch by id, abandoned (OutOfTime) once the time budget runs out (`free`:
        asked whatever the budget)."""
        fetched = self.client.fetch_batch(batch_id, attempts=attempts)
        return await before_deadline(fetched, None if free else self.time_left())

    async def known(self, batch_id: str) -> bool:
        """Whether a batch was stored before this run began, in this account's list: one
        another account stored, which this one never listed, is new to this list."""
        return await self.store.stored_by(batch_id, self.stored_mark)

    async def cursor_vanished(self, error: ApiError, resumed_from: str | None) -> bool:
        """Whether a list request failed because its cursor's batch is gone: once a cursor
        (see may_restart), and not for a wrong path (the base URL's fault) or a request from
        the top. A 400 or a 404 to the first request after the cursor the walk resumed from
        (`resumed_from`) says so too: it differs from a request from the top by that cursor
        alone, whose batch may have left the list while it is still answered by id (every
        sync failed there)."""
        cursor = self.asked_after
        if cursor is None or not self.may_restart(cursor) or isinstance(error, UnknownRouteError):
            return False
        if isinstance(error, UnknownCursorError):
            return True
        if not isinstance(error, _MAY_SAY_AN_UNKNOWN_CURSOR):
            return False
        if cursor == resumed_from and isinstance(error, BadRequestError | NotFoundError):
            return True
        # Whatever the budget after the run's first request, as that request is: its retries
        # spent a short one, and no run got past the cursor (pass 75B).
        free = self.last_step is None
        try:
            # Asked once, since the list request has just spent its retries.
            if await self.fetch_batch(cursor, attempts=1, free=free) is None:
                return True
        except ApiError:
            pass  # refused or failing by id: the page that listed it says
        return await self.left_its_page(cursor, free=free)

    async def left_its_page(self, cursor: str, *, free: bool = False) -> bool:
        """Whether the page that listed `cursor`, read again, no longer does: a batch may
        leave the list while answered by id, and a server answer `after` it with a 404 or a
        500 (every sync failed there). Where that page is not known (a walk an earlier build
        saved) or cannot be read (the batch it is asked after gone too), whether the list's
        top answers: in an outage, the walk is not begun again. Read once: with its retries,
        a silent server held a sync twice as long as its retries say (pass 77B)."""
        if self.holder is None:
            return await self.top_answers()
        try:
            page = await self.fetch_page(self.holder[0], self.page_size, attempts=1, free=free)
        except ApiError:
            return self.holder[0] is not None and await self.top_answers()
        return all(batch["id"] != cursor for batch in page.batches)

    async def cursor_listed(self, cursor: str, holder: tuple[str | None] | None) -> bool:
        """Whether the batch a cursor names is still listed: it exists, and the page that
        listed it this run (asked after `holder`'s cursor), read again, still does.
        Answered by id, it may have left the list all the same, and a server may answer an
        unknown `after` with an empty page (as others do with a 400): the walk ended
        there, every batch below it never stored. (A resumed walk an earlier build saved,
        not knowing that page, has its cursor asked by id alone.) An answer that cannot say
        so (refused, another batch) counts as no: walking from the top again loses nothing.

        Asked whatever the budget when the run's first read was that empty end: cut, a run
        on a budget of one request at the list's end never ended the walk."""
        free = self.first_an_empty_end and self.last_step is None
        try:
            if await self.fetch_batch(cursor, free=free) is None:
                return False
            if holder is None:
                return True
            page = await self.fetch_page(holder[0], self.page_size, free=free)
        except ApiError as exc:
            # A page refused or failing: the batch it is asked after may have left too.
            if not (about_one_batch(exc) or isinstance(exc, _MAY_SAY_AN_UNKNOWN_CURSOR)):
                raise
            self.note(f"could not confirm that the cursor {cursor} is listed: {exc}")
            return False
        return any(batch["id"] == cursor for batch in page.batches)

    def failed_at_the_resumed_cursor(self, walk: WalkState, asked: str | None) -> bool:
        """Whether the request that failed (asked after `asked`) is the run's first, after
        the cursor an earlier run left `walk` at."""
        return self.last_step is None and walk.cursor is not None and asked == walk.cursor

    async def stuck_after(self, error: ApiError, walk: WalkState, asked: str | None) -> bool:
        """Whether the run's first request, after the cursor an earlier run left the walk
        at (`asked` after), failed (`error`: the server's fault, or the way to it) while the
        cursor is still listed, as far as can be told, and the list's top answers: a
        gateway failing every request after it (one saying `has_more` on its full last
        page, say) failed every later sync there, never storing a new batch nor refreshing
        one. The run then walks the top down to the walk's head, and the refresh follows
        (down to the newest batch stored, a walk cut before it, by a budget or a kill, left
        the batches between unstored; see stuck_with_top); the walk goes on from its cursor
        next sync."""
        resumed_at = walk.cursor
        if not isinstance(error, ServerError | TransportError):
            return False
        if not self.failed_at_the_resumed_cursor(walk, asked):
            return False
        if not await self.top_answers():
            return False  # down, not stuck
        on_from = f" on from {walk.top.cursor}" if walk.top else ""
        self.note(
            f"asking the list after {resumed_at} failed on this run ({error}) while its top "
            f"answers: walked the top down to {walk.head_id}{on_from} and refreshed; the walk "
            f"goes on after {resumed_at} next sync"
        )
        return True

    def failed_past_the_end_again(self, error: ApiError, walk: WalkState) -> bool:
        """Whether the run's first request, after a page said to be the list's last whose
        check failed or was cut on an earlier run (`walk.end_unchecked`), failed too while
        the list's top answers: it is the end. A gateway that cannot page past the end of
        the list fails that request on every run, and every later sync failed there, never
        walking from the top nor refreshing a batch; failed on two runs in a row, the
        list's end is trusted, with a warning."""
        if not (walk.end_unchecked and self.failed_at_the_resumed_cursor(walk, self.asked_after)):
            return False
        if not self.top_answered:
            return False  # down, or the key refused: not the cursor's fault
        self.note(
            f"the page ending at {walk.cursor} said it was the list's last, and asking after "
            f"it failed on this run ({error}) as on the last while the list's top answers: "
            "took it as the end (`sync --full` walks the whole list again)"
        )
        return True

    async def top_answers(self) -> bool:
        """Whether the list's top answers a request of one batch, asked once."""
        try:
            await self.client.fetch_page(None, 1, attempts=1)
        except ApiError:
            return False
        return True

    def after_gone(self, walk: WalkState, gone: str) -> WalkState | None:
        """A cursor (`gone`) names a batch the API no longer lists: the walk from the top,
        or None once RESTARTS were made this run. The run then stops, partial, and the next
        walks from the top (`unsaved_walk`, as after a run cut before the walk from the top
        stored a page): resumed after `gone`, it confirmed it by id alone, and ended there,
        above batches never stored."""
        restarted, warning = restart_from_top(walk, gone)
        # Committed with the next page, or at the end of a run cut before it: the next run
        # found the cursor gone again, and was cut again, for ever (pass 73B).
        self.unsaved_walk = restarted
        if len(self.restarted_for) < RESTARTS:
            self.note(warning)
            self.restarted_for.append(gone)
            return restarted
        self.note(
            f"the cursor {gone} seems gone from the list too, after {RESTARTS} walks from the "
            "top this run: the run stopped there, and the next sync walks from the top"
        )
        return None

    def may_restart(self, gone: str | None) -> bool:
        """Whether a cursor gone from the list (`gone`) may start the walk from the top
        again: not one of the top, nor one already gone this run (a walk from the top that
        ends there again has ended)."""
        return gone is not None and gone not in self.restarted_for

    async def visit_targets(self, order: Sequence[str], queue: PageQueue, fetched: int) -> None:
        """Read the walk targets where the list holds them, in `order`, leaving the walk
        state as it is: the refresh by id could not refresh them. Errors go through the queue.

        Each target is read from the page after a stored batch created just before it (that
        batch's id as the cursor): a batch deep in the list costs a page or two, not every
        page above it. One target is visited whatever the budget, so that runs on a budget,
        each taking the least recently seen or missed first, get through them all.
        """
        try:
            complete, visited = True, False
            for target in order:
                if target not in self.walk_targets:
                    continue  # read on a page visited for another target
                if visited and self.budget_spent(fetched):
                    complete = False
                    break
                fetched, finished = await self.visit(target, queue, fetched)
                if not finished:
                    complete = False
                    break
                if target in self.walk_targets and target not in self.unplaced:
                    self.missed.append(target)
                visited = True
            await queue.put(WalkEnd(complete=complete))
        except OutOfTime:
            await queue.put(WalkEnd(complete=False))
        except CrawlerError as exc:
            await queue.put(WalkEnd(complete=False, error=exc))

    async def visit(self, target: str, queue: PageQueue, fetched: int) -> tuple[int, bool]:
        """Read the pages where `target` is listed: the pages fetched so far, and False
        when the budget ran out before the visit could tell whether it is listed.

        A visit reads a page at least, and one cut by the budget goes on where it stopped
        on the next run (`visit_resume`): a target deeper than a run's budget, least
        recently seen, was first on every run, and it and those after it were never
        refreshed; read whole instead, a run read far past its page budget.

        A target with no known creation time has no known place: it is left for the
        refresh by id. One listed at the top is read from the top. One no read got past the
        place of (every start refused) is not missed (`unplaced`): missed, a batch answering
        404 by id was counted gone while listed.
        """
        created = await self.store.created_at(target)
        if created is None:
            self.unplaced.add(target)
            return fetched, True
        above = await self.store.created_just_after(created, VISIT_CURSORS)
        above = [cursor for cursor in above if cursor not in self.left_list]
        # Each cursor's batch may have left the list (a 400 or 404, or an empty end after
        # it): then the next one above, and last the top. The top is read once a run, on
        # down as deep as visits need: read from it for each target gone from the list
        # (a run after many left it), the whole list was read for each.
        starts: list[VisitStart | None] = [*(VisitStart(cursor) for cursor in above), None]
        if self.visit_resume is not None and self.visit_resume[0] == target:
            starts.insert(0, VisitStart(self.visit_resume[1], resumed=True))
        top_reads = 1
        for planned in starts:
            start = planned or self.top_start(created)
            if start is None:
                return fetched, True  # read past where it would be listed: it is not
            read = await self.read_for(target, created, start, queue, fetched)
            if read is not None:
                return read
            if start.resumed:
                self.visit_resume = None
            elif start.from_top and top_reads < TOP_READS:
                # Where a read from the top stopped, or went on after, left too: read from
                # the top again, a few times at most (a list whose batches keep leaving).
                self.read_from_top = None
                starts.append(None)
                top_reads += 1
        self.unplaced.add(target)
        return fetched, True

    def top_start(self, created: int) -> VisitStart | None:
        """Where a visit reads the list from its top: on from where this run's read from it
        stopped, or the top; None when that read passed where a batch created at `created`
        would be listed."""
        if self.read_from_top is None:
            return VisitStart(None, from_top=True)
        floor, cursor = self.read_from_top
        if floor < created or cursor is None:
            return None
        return VisitStart(cursor, from_top=True)

    async def read_for(
        self, target: str, created: int, start: VisitStart, queue: PageQueue, fetched: int
    ) -> tuple[int, bool] | None:
        """Read from `start` on past where `target` is listed: the pages fetched so far,
        and False when the budget ran out first (where is kept: `visit_resume`); None when
        a page after a cursor was refused: that cursor's batch left the list, before the
        read or while it went on."""
        # The top, the last start, has its retries: one 500 there failed the sync.
        once = self.passed_over == target and not start.from_top
        fetch = self.first_asked_once() if once else self.fetch_page
        steps = walk_pages(fetch, after=start.cursor, limit=self.page_size)
        first_page, cursor = start.cursor is not None, start.cursor
        try:
            async with contextlib.aclosing(steps):
                async for step in steps:
                    if first_page and may_be_a_vanished_cursor(step, resumed=True):
                        raise UnknownCursorError(f"nothing listed after {start.cursor}")
                    first_page, cursor = False, step.cursor
                    fetched = await self.hand_on(step, queue, fetched)
                    if start.from_top:
                        self.note_read_from_top(step)
                    if (
                        target not in self.walk_targets
                        or listed_below(step.page, created)
                        or step.done
                    ):
                        break
                    if self.budget_spent(fetched):
                        self.stopped(target, cursor)
                        return fetched, False
        except OutOfTime:
            self.stopped(target, cursor)
            raise
        except (BadRequestError, NotFoundError, *FAILED_ANSWERS) as exc:
            # A page after a cursor refused (a 400 or a 404, not every server saying which
            # parameter): that batch has left the list, before this read or while it went
            # on (which failed the sync). Some servers fail instead, past every retry (or
            # answer what is no list, or keep asking to wait): so may the first page after
            # a start (a stored batch, where a visit stopped on an earlier run), whose batch
            # may have left since (every sync failed there).
            # How some servers answer after a cursor they no longer know, past every retry.
            failed = isinstance(exc, FAILED_ANSWERS)
            if (
                self.asked_after is None
                or isinstance(exc, UnknownRouteError)
                or (failed and self.asked_after != start.cursor)
                or (failed and not await self.pass_over(self.asked_after, target))
            ):
                raise
            if not failed:
                self.left_list.add(self.asked_after)  # refused: it left the list
            return None
        if self.visit_resume is not None and self.visit_resume[0] == target:
            self.visit_resume = None
        return fetched, True

    async def pass_over(self, cursor: str, target: str) -> bool:
        """Whether a visit for `target` goes on from its next start, the first page after
        `cursor` having failed past its retries: when the cursor's batch is gone, or still
        answers (a list may fail for a cursor it no longer lists), asked by id once; not
        when that ask and the top of the list fail too (an API down mid-visit spent a round
        of retries on each start: a resume, three neighbours, the top, half an hour).
        Passed over, the next starts' first pages are asked once, not a round each (the
        list may be down, or fail for each cursor it does not know), and a start found gone
        is none for the other visits of the run."""
        self.passed_over = target  # the next starts' first pages asked once, either way
        try:
            if await self.fetch_batch(cursor, attempts=1) is None:
                self.left_list.add(cursor)
                return True
        except (ServerError, TransportError):
            # The by-id route may be failing alone (a gateway without it), or the API down:
            # the top of the list, asked once, tells which.
            if not await self.list_answers():
                return False
        except ApiError:
            pass  # refused: it may be there
        return True

    async def list_answers(self) -> bool:
        """Whether the top of the list answers (a page of one, asked once; asked to wait,
        it is up)."""
        try:
            await self.fetch_page(None, 1, attempts=1)
        except RateLimitedError:
            return True
        except ApiError:
            return False
        return True

    def first_asked_once(self) -> Callable[[str | None, int], Awaitable[BatchPage]]:
        """`fetch_page`, its first request asked once, unless asked to wait (a 429 says
        nothing of the list being down: a sync failed on one)."""
        asked = False

        async def fetch(after: str | None, limit: int) -> BatchPage:
            nonlocal asked
            if asked:
                return await self.fetch_page(after, limit)
            asked = True
            try:
                return await self.fetch_page(after, limit, 1)
            except RateLimitedError:
                return await self.fetch_page(after, limit)

        return fetch

    def stopped(self, target: str, cursor: str | None) -> None:
        """A visit for `target` was cut by the budget after `cursor`: the next run's visit
        for it goes on from there (from the start again, should nothing have been read)."""
        if cursor is not None:
            self.visit_resume = (target, cursor)
            self.cut_a_visit = True

    def note_read_from_top(self, step: WalkStep) -> None:
        """Record that a visit read the list from its top down to `step`'s page."""
        median = median_created(step.page)
        floor = math.inf if median is None else median
        if self.read_from_top is not None:
            floor = min(floor, self.read_from_top[0])
        self.read_from_top = (-math.inf if step.done else floor, step.cursor)

    async def walk_on(self, after: str | None, queue: PageQueue, fetched: int) -> bool:
        """Walk on below a finished walk until the walk targets are passed.

        Returns False when the page or time budget ran out first.
        """
        # Below the oldest target's creation time, one not yet met has left the list: the
        # refresh by id asks for it, instead of the walk going on to the end of the list.
        floor = await self.store.oldest_created_at(self.walk_targets)
        steps = walk_pages(self.fetch_page, after=after, limit=self.page_size)
        async with contextlib.aclosing(steps):
            async for step in steps:
                fetched = await self.hand_on(step, queue, fetched)
                if not self.walk_targets or (floor is not None and listed_below(step.page, floor)):
                    return True
                if self.budget_spent(fetched):
                    return False
        return True

    async def hand_on(self, step: WalkStep, queue: PageQueue, fetched: int) -> int:
        """Strike a page's batches off the run's sets and queue it, with no walk state."""
        ids = [b["id"] for b in step.page.batches]
        self.to_refresh.difference_update(ids)
        self.walk_targets.difference_update(ids)
        await queue.put((step, None))
        return fetched + 1


def listed_below(page: BatchPage, second: int) -> bool:
    """Whether a page lies below the batches created at `second`: half of its batches or
    more were created before. One batch's odd creation time alone never says so."""
    median = median_created(page)
    return median is not None and median < second


def median_created(page: BatchPage) -> int | None:
    """The (lower) median creation time of a page's batches: where it lies in the list,
    whatever one batch's odd time (None: no batch gives one)."""
    times = sorted(t for b in page.batches if (t := unix_seconds(b.get("created_at"))) is not None)
    return times[(len(times) - 1) // 2] if times else None
