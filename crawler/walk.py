"""The walk of the list, purely: where a run starts, how each page moves it, what to refresh.

A walk of `GET /batches` outlives the process: `WalkState` is committed with every page.
A walk from the top remembers its first id as the head; a walk resumed from a cursor
ends in a catch-up from the top down to the head the interrupted walk began at. Once a
walk has finished, an incremental run walks from the top down to that head only.

The refresh plan decides how the batches stored as not yet settled are brought up to
date. Walking further costs one request per page and refreshes every batch on it;
`GET /batches/{id}` costs one request per batch but runs concurrently. Requests are what
rate limits count, so the plan minimises them:

    cost(d) = d + (unsettled batches below the first d pages)

over every depth d from 0 to the page holding the oldest unsettled batch; on a tie the
shallower plan wins, since requests by id run concurrently. A dense recent region is
walked; a lone straggler deep in the history is fetched by id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from .pages import WalkStep

Mode = Literal["full", "resume", "incremental"]


@dataclass(frozen=True)
class WalkState:
    """Where the walk of the list stands; see the `walk_state` table."""

    cursor: str | None = None
    stop_id: str | None = None
    head_id: str | None = None
    finished: bool = False
    # A walk that met its stop: the pages it read past it (None: not met). Cut there, the
    # next run goes on as the same walk, and ends it (see advance_walk).
    pages_past_stop: int | None = None
    # The page ending at `cursor` said it was the list's last, and the request after it
    # failed, or was cut by the time budget: the next run takes a failure of it as the end
    # (see ListWalk.failed_past_the_end_again).
    end_unchecked: bool = False
    # What the page ending at `cursor` was asked after ((None,): the top; None: not known, a
    # walk an earlier build saved): read again, it tells whether the cursor is still listed
    # (see ListWalk.cursor_listed).
    holder: tuple[str | None] | None = None
    # A walk stuck at its cursor walks the list's top down to its head on each run (see
    # ListWalk.stuck_after): where that walk of the top stands, its own segment's state,
    # for the next stuck run to go on from (None: not begun, or done).
    top: WalkState | None = None


def starting_walk(saved: WalkState | None, *, restart: bool, full: bool) -> tuple[WalkState, Mode]:
    """Where this run begins, and the mode the ledger records for it.

    After a finished walk, an incremental run walks from the top down to that walk's
    head: everything newer is new. `full` walks the whole list instead.
    """
    if restart or saved is None or (saved.finished and full):
        return WalkState(), "full"
    if saved.finished:
        return WalkState(stop_id=saved.head_id, head_id=saved.head_id), "incremental"
    if saved.cursor is None and saved.stop_id is None:
        return saved, "full"
    return saved, "resume"


def advance_walk(
    walk: WalkState, step: WalkStep, from_top: bool, *, resumed_past_stop: bool = False
) -> WalkState:
    """The walk state to commit together with `step`'s page.

    A walk resumed past its stop (`resumed_past_stop`: cut there on an earlier run) ends
    finished: below its stop lie only pages of the old head's creation second, everything
    from its head down was walked, and what came on top since is above its head, for the
    next walk. (Resumed, it was followed by a walk from the top again, and a run reading
    fewer pages than the head's second spans never finished one; a walk resumed from
    below its stop, not knowing it had met it, went on to the end of the list.) One that
    meets its stop on this run is followed by a catch-up from the top, as any resumed
    walk is (finished, a page ending on its stop left the batches created since unstored
    by a run saying it was complete, pass 79B)."""
    head = walk.head_id
    if from_top and step.cursor is not None and walk.cursor is None and step.page.batches:
        head = step.page.batches[0]["id"]
    if not step.done:
        return WalkState(
            step.cursor,
            walk.stop_id,
            head,
            pages_past_stop=step.pages_past_stop,
            end_unchecked=step.end_unchecked,
            holder=(walk.cursor,),
        )
    return ended_walk(head, finished=from_top or resumed_past_stop)


def ended_walk(head: str | None, *, finished: bool) -> WalkState:
    """The walk state once a segment reached the end of the list: `finished`, or (resumed
    from a cursor) followed by a catch-up from the top down to its head."""
    if finished:
        return WalkState(head_id=head, finished=True)
    return WalkState(cursor=None, stop_id=head, head_id=head)


def restart_from_top(walk: WalkState, gone: str | None) -> tuple[WalkState, str]:
    """A cursor of the walk (`gone`) names a batch the API no longer lists: walk from the
    top instead.

    Returns the new state and the warning the run records.
    """
    warning = f"the cursor {gone} is gone from the list; walked from the top"
    return WalkState(cursor=None, stop_id=walk.stop_id, head_id=walk.head_id), warning


def stuck_with_top(stuck: WalkState, top: WalkState) -> WalkState:
    """The state of a walk stuck at its cursor to commit with a page of its walk of the
    top (`top`: where that walk stands). Cut by a budget, it goes on from there on the next
    stuck run: begun again from the top on each, a budget cutting every run left the
    batches below its reach unstored while the list stayed stuck (pass 77B). Once it has
    walked down to the stuck walk's head, everything above that head is stored: the head
    moves up to where the walk of the top began, and the next stuck run walks only what
    came since."""
    if top.cursor is None:
        return replace(stuck, head_id=top.head_id or stuck.head_id, top=None)
    return replace(stuck, top=top)


def down_to(stop_id: str | None) -> WalkState:
    """A walk of the list's top down to a batch stored (`stop_id`): what came on top since."""
    return WalkState(stop_id=stop_id, head_id=stop_id)


def may_be_a_vanished_cursor(step: WalkStep, *, resumed: bool = False) -> bool:
    """Whether a page after a cursor may have ended the list only because the cursor's
    batch is gone (the API may answer an unknown `after` with an empty page): ask by id.
    For a list that never says has_more, only on the first page after a stored cursor
    (`resumed`): an empty page is how every walk of it ends, and asking each time would
    cost a walk from the top where the server has no by-id route."""
    page = step.page
    return not page.batches and not page.has_more and (page.has_more_sent or resumed)


def walk_depth(positions: Iterable[int], page_size: int) -> int:
    """Pages to walk below the last head, given the unsettled batches' positions.

    Args:
        positions: each unsettled batch's position in the stored list, newest first
            (0 = the newest stored batch).
        page_size: batches per list page.
    """
    ordered = sorted(positions)
    best_depth, best_cost = 0, len(ordered)
    for covered, position in enumerate(ordered, start=1):
        depth = position // page_size + 1
        cost = depth + len(ordered) - covered
        if cost < best_cost:
            best_depth, best_cost = depth, cost
    return best_depth


@dataclass(frozen=True)
class RefreshPlan:
    """The unsettled batches to refresh, and those of them the walk goes on down to."""

    to_refresh: frozenset[str] = frozenset()
    walk_targets: frozenset[str] = frozenset()


def plan_refresh(unsettled: Iterable[tuple[str, int]], page_size: int) -> RefreshPlan:
    """Decide, from (id, position) pairs, which batches the walk passes and which go by id."""
    pairs = list(unsettled)
    depth = walk_depth((position for _, position in pairs), page_size)
    return RefreshPlan(
        frozenset(batch_id for batch_id, _ in pairs),
        frozenset(batch_id for batch_id, position in pairs if position < depth * page_size),
    )
