"""The fetch side of a sync: walk the list segment after segment, handing pages on.

A resumed or incremental walk is made of segments (from a cursor, then from the top down to
the old head); a stored cursor the API no longer knows starts the walk again from the top.
An incremental walk may go on below the head to refresh the in-flight batches there. Pages
go to the writer through a queue, with the walk state to commit with each.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from .api import ApiClient
from .errors import (
    ApiError,
    CrawlerError,
    ServerError,
    TransportError,
    UnknownCursorError,
    about_one_batch,
)
from .pages import WalkStep, walk_pages
from .store import Store
from .walk import WalkState, advance_walk, may_be_a_vanished_cursor, restart_from_top

# The newest stored batches a walk down to the old head also stops at, should the head
# itself have vanished from the list.
STOP_NEIGHBOURS = 20

# A batch created more than this far ahead of the clock is dated wrongly.
FUTURE_SLACK = 86_400


@dataclass
class WalkEnd:
    """The walk's last word to the writer: why it stopped."""

    complete: bool
    error: CrawlerError | None = None


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
    to_refresh: set[str]
    walk_targets: set[str]
    stored_mark: int  # the store's last rowid when the run began (see Store.stored_by)
    last_step: WalkStep | None = None
    restarted: bool = False  # this run already walked from the top again

    async def run(self, walk: WalkState, queue: PageQueue) -> None:
        """Walk segment after segment, handing each page on; errors go through the queue."""
        fetched = 0
        try:
            while not walk.finished:
                from_top = walk.cursor is None
                try:
                    walk, fetched, spent = await self.walk_segment(walk, queue, fetched)
                except UnknownCursorError:
                    if from_top:
                        raise
                    walk = self.restart_segment(walk)
                    continue
                if spent:
                    await queue.put(WalkEnd(complete=False))
                    return
            self.walk_targets &= self.to_refresh
            complete = True
            last = self.last_step
            if self.walk_targets and last and last.page.has_more and last.cursor is not None:
                complete = await self.walk_on(last.cursor, queue, fetched)
            await queue.put(WalkEnd(complete=complete))
        except CrawlerError as exc:
            # Pages already queued were fetched fine: let the writer commit them first.
            await queue.put(WalkEnd(complete=False, error=exc))

    async def walk_segment(
        self, walk: WalkState, queue: PageQueue, fetched: int
    ) -> tuple[WalkState, int, bool]:
        """Walk one segment; returns the new walk state, pages fetched, and budget spent."""
        from_top = walk.cursor is None
        stop_second, stop_ids = None, frozenset[str]()
        if walk.stop_id is not None:
            # Batches dated in the future (a server that once sent milliseconds, say) stay
            # on top of the list, above every new batch: they are no place to stop at.
            horizon = int(time.time()) + FUTURE_SLACK
            newest = await self.store.newest(STOP_NEIGHBOURS, horizon)
            head_second = await self.store.created_at(walk.stop_id)
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
            self.client.fetch_page,
            after=walk.cursor,
            limit=self.page_size,
            stop_ids=stop_ids,
            stop_second=stop_second,
            known=self.known,
        )
        async with contextlib.aclosing(steps):
            async for step in steps:
                # Once a run: a server whose by-id route cannot confirm any cursor (none,
                # or one that pages until an empty page) would restart the walk forever.
                if (
                    may_be_a_vanished_cursor(step)
                    and step.cursor is not None
                    and not self.restarted
                    and not await self.cursor_listed(step.cursor)
                ):
                    return self.restart_segment(walk), fetched, False
                walk = advance_walk(walk, step, from_top)
                self.last_step = step
                self.to_refresh.difference_update(b["id"] for b in step.page.batches)
                await queue.put((step, walk))
                fetched += 1
                if walk.finished:
                    break
                if self.budget_spent(fetched):
                    return walk, fetched, True
        return walk, fetched, False

    async def known(self, batch_id: str) -> bool:
        """Whether a batch was stored before this run began."""
        return await self.store.stored_by(batch_id, self.stored_mark)

    async def cursor_listed(self, cursor: str) -> bool:
        """Whether the batch a cursor names still exists; an answer that cannot say so
        (refused, another batch) counts as no: walking from the top again loses nothing."""
        try:
            return await self.client.fetch_batch(cursor) is not None
        except ApiError as exc:
            if not (about_one_batch(exc) or isinstance(exc, ServerError | TransportError)):
                raise
            self.note(f"could not confirm the cursor {cursor}: {exc}")
        return False

    def restart_segment(self, walk: WalkState) -> WalkState:
        """The stored cursor names a batch the API no longer lists: walk from the top."""
        walk, warning = restart_from_top(walk)
        self.note(warning)
        self.restarted = True
        return walk

    async def walk_down(self, queue: PageQueue, fetched: int) -> None:
        """Walk from the top until the walk targets are passed, leaving the walk state as it
        is: the refresh by id could not refresh them. Errors go through the queue."""
        try:
            complete = await self.walk_on(None, queue, fetched)
            await queue.put(WalkEnd(complete=complete))
        except CrawlerError as exc:
            await queue.put(WalkEnd(complete=False, error=exc))

    async def walk_on(self, after: str | None, queue: PageQueue, fetched: int) -> bool:
        """Walk on below a finished walk (or from the top) until the walk targets are passed.

        Returns False when the page or time budget ran out first.
        """
        # Below the oldest target's creation time, one not yet met has left the list: the
        # refresh by id asks for it, instead of the walk going on to the end of the list.
        floor = await self.store.oldest_created_at(self.walk_targets)
        steps = walk_pages(self.client.fetch_page, after=after, limit=self.page_size)
        async with contextlib.aclosing(steps):
            async for step in steps:
                ids = [b["id"] for b in step.page.batches]
                self.to_refresh.difference_update(ids)
                self.walk_targets.difference_update(ids)
                await queue.put((step, None))
                fetched += 1
                last = step.page.batches[-1].get("created_at") if step.page.batches else None
                passed = floor is not None and isinstance(last, int) and last < floor
                if not self.walk_targets or passed:
                    return True
                if self.budget_spent(fetched):
                    return False
        return True
