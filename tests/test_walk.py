"""The walk of the list, purely: where a run starts, how a page moves it, the refresh plan."""

from __future__ import annotations

import pytest

from crawler.pages import BatchPage, WalkStep
from crawler.walk import (
    RefreshPlan,
    WalkState,
    advance_walk,
    may_be_a_vanished_cursor,
    plan_refresh,
    restart_from_top,
    starting_walk,
    stuck_with_top,
    walk_depth,
)

from .conftest import make_batch

FINISHED = WalkState(head_id="batch_h", finished=True)
RESUMING = WalkState(cursor="batch_c", head_id="batch_h")
CATCHING_UP = WalkState(stop_id="batch_h", head_id="batch_h")


def ids(*numbers: int) -> list[str]:
    return [make_batch(n)["id"] for n in numbers]


def step(numbers: list[int], done: bool, pages_past_stop: int | None = None) -> WalkStep:
    batches = [make_batch(n) for n in numbers]
    page = BatchPage(batches, not done, batches[-1]["id"] if batches else None)
    return WalkStep(page, page.next_after, done, pages_past_stop=pages_past_stop)


def test_a_top_walk_records_its_head_on_the_first_page() -> None:
    """The first page of a walk from the top sets the head id."""
    walk = advance_walk(WalkState(), step([9, 8], done=False), from_top=True)
    assert walk == WalkState(cursor=ids(8)[0], head_id=ids(9)[0], holder=(None,))


def test_a_top_walk_that_ends_is_finished() -> None:
    """Reaching the end of a walk from the top finishes it, keeping the head."""
    walk = WalkState(cursor=ids(8)[0], head_id=ids(9)[0])
    assert advance_walk(walk, step([7], done=True), from_top=True) == WalkState(
        head_id=ids(9)[0], finished=True
    )


def test_a_resumed_walk_that_ends_turns_into_a_catch_up() -> None:
    """After the tail, walk again from the top down to the old head."""
    walk = WalkState(cursor=ids(5)[0], head_id=ids(9)[0])
    assert advance_walk(walk, step([4], done=True), from_top=False) == WalkState(
        stop_id=ids(9)[0], head_id=ids(9)[0]
    )


def test_a_catch_up_records_the_new_head() -> None:
    """A catch-up walk's first page gives the new head; its stop id is kept."""
    walk = WalkState(stop_id=ids(9)[0], head_id=ids(9)[0])
    assert advance_walk(walk, step([12, 11], done=False), from_top=True) == WalkState(
        cursor=ids(11)[0], stop_id=ids(9)[0], head_id=ids(12)[0], holder=(None,)
    )


@pytest.mark.parametrize(
    ("walk", "from_top", "stop"),
    [
        (WalkState(stop_id=ids(9)[0], head_id=ids(9)[0]), True, 9),
        (WalkState(cursor=ids(5)[0], stop_id=ids(3)[0], head_id=ids(9)[0]), False, 3),
    ],
    ids=["from the top", "resumed from above its stop"],
)
def test_a_walk_cut_past_its_stop_ends_finished_when_resumed(
    walk: WalkState, from_top: bool, stop: int
) -> None:
    """Cut in the pages past its stop, a walk keeps how many it read there; resumed, it
    ends finished, as it would have. From the top, it was followed by a walk from the top
    again (which, on a budget shorter than those pages, never ended either); resumed from
    above its stop, not knowing it had met it, it walked on to the end of the list."""
    cut = advance_walk(walk, step([stop], done=False, pages_past_stop=1), from_top=from_top)
    holder = (walk.cursor,)
    assert cut == WalkState(ids(stop)[0], walk.stop_id, ids(9)[0], pages_past_stop=1, holder=holder)
    ended = advance_walk(cut, step([stop - 1], done=True), False, resumed_past_stop=True)
    assert ended == WalkState(head_id=ids(9)[0], finished=True)


def test_a_resumed_walk_meeting_its_stop_on_this_run_is_followed_by_a_catch_up() -> None:
    """Met on a page ending on its stop (the head's second: a page past it), then ended:
    it was taken as finished, the batches created since never walked (pass 79B)."""
    walk = WalkState(cursor=ids(14)[0], stop_id=ids(10)[0], head_id=ids(15)[0])
    met = advance_walk(walk, step([13, 12, 11, 10], done=False, pages_past_stop=1), False)
    ended = advance_walk(met, step([9], done=True), from_top=False)
    assert ended == WalkState(stop_id=ids(15)[0], head_id=ids(15)[0])


@pytest.mark.parametrize(
    ("saved", "restart", "full", "expected"),
    [
        (None, False, False, (WalkState(), "full")),
        (None, False, True, (WalkState(), "full")),
        (FINISHED, False, False, (CATCHING_UP, "incremental")),
        (FINISHED, False, True, (WalkState(), "full")),
        (FINISHED, True, False, (WalkState(), "full")),
        (RESUMING, False, False, (RESUMING, "resume")),
        (RESUMING, False, True, (RESUMING, "resume")),  # --full does not drop a walk half done
        (RESUMING, True, False, (WalkState(), "full")),
        (CATCHING_UP, False, False, (CATCHING_UP, "resume")),
        (WalkState(), False, False, (WalkState(), "full")),  # begun, no page committed
    ],
)
def test_where_a_run_starts(
    saved: WalkState | None, restart: bool, full: bool, expected: tuple[WalkState, str]
) -> None:
    """The stored walk, --restart and --full decide the starting state and the mode."""
    assert starting_walk(saved, restart=restart, full=full) == expected


def test_a_stuck_walk_keeps_its_walk_of_the_top_until_it_reached_the_head() -> None:
    """Cut, the walk of the top goes on next stuck run; down to the head, the head moves up
    to where it began, and the stuck walk's cursor and stop stay."""
    stuck = WalkState(cursor=ids(5)[0], stop_id=ids(3)[0], head_id=ids(9)[0], holder=(None,))
    top = advance_walk(WalkState(stop_id=ids(9)[0], head_id=ids(9)[0]), step([12, 11], False), True)
    cut = stuck_with_top(stuck, top)
    assert (cut.cursor, cut.stop_id, cut.head_id, cut.top) == (*ids(5, 3, 9), top)
    done = advance_walk(top, step([10, 9], done=True, pages_past_stop=0), from_top=False)
    assert stuck_with_top(cut, done) == WalkState(
        cursor=ids(5)[0], stop_id=ids(3)[0], head_id=ids(12)[0], holder=(None,)
    )


def test_a_vanished_cursor_is_walked_around_from_the_top_keeping_the_stop() -> None:
    """Restarting from the top keeps where the walk must stop and its head, and says why."""
    walk = WalkState(cursor="batch_gone", stop_id="batch_s", head_id="batch_h")
    restarted, warning = restart_from_top(walk, "batch_gone")
    assert restarted == WalkState(cursor=None, stop_id="batch_s", head_id="batch_h")
    assert warning == "the cursor batch_gone is gone from the list; walked from the top"


@pytest.mark.parametrize(
    ("batches", "has_more", "suspect"),
    [
        ([], False, True),  # an empty end right after the cursor: ask whether it still exists
        ([], True, False),  # the loop guard's business, not this check's
        ([{"id": "batch_1"}], False, False),
        ([{"id": "batch_1"}], True, False),
    ],
)
def test_only_an_empty_end_after_a_cursor_is_suspect(
    batches: list[dict[str, str]], has_more: bool, suspect: bool
) -> None:
    """Only an empty last page may mean the API forgot the cursor."""
    step = WalkStep(BatchPage(batches, has_more, None), "batch_c", done=not has_more)
    assert may_be_a_vanished_cursor(step) is suspect


def test_a_list_without_has_more_is_suspect_only_right_after_a_stored_cursor() -> None:
    """Its every walk ends with an empty page: only a resume's first page is asked about."""
    page = BatchPage([], False, None, has_more_sent=False)
    step = WalkStep(page, "batch_c", done=True)
    assert not may_be_a_vanished_cursor(step)
    assert may_be_a_vanished_cursor(step, resumed=True)


@pytest.mark.parametrize(
    ("positions", "depth"),
    [
        ([], 0),
        ([0, 3, 50, 99], 1),  # all on the first page: one request beats four
        ([0, 150, 250], 0),  # a tie: by id, which runs concurrently, wins
        ([0, 1, 150, 250], 1),  # one page saves a request; going deeper saves no more
        ([0, 1, 2, 40_000], 1),  # a lone straggler deep down is fetched by id
        ([5_000], 0),
        (list(range(0, 1000, 10)), 10),  # a dense recent region is walked
    ],
)
def test_walk_depth_minimises_requests(positions: list[int], depth: int) -> None:
    """Walk d pages then fetch the rest by id, for the d with the fewest requests."""
    assert walk_depth(positions, 100) == depth


def test_walk_depth_cost_is_never_above_either_pure_plan() -> None:
    """The chosen plan costs no more than walking everything or fetching everything by id."""
    positions = [3, 7, 120, 121, 122, 123, 900, 5_000, 77_777]
    depth = walk_depth(positions, 100)
    cost = depth + sum(p >= depth * 100 for p in positions)
    assert cost <= min(len(positions), max(positions) // 100 + 1)


def test_the_refresh_plan_walks_to_the_dense_region_and_fetches_the_straggler() -> None:
    """Batches above the chosen depth are walk targets; every one is to be refreshed."""
    unsettled = [("batch_a", 0), ("batch_b", 1), ("batch_c", 2), ("batch_z", 40_000)]
    assert plan_refresh(unsettled, 100) == RefreshPlan(
        to_refresh=frozenset({"batch_a", "batch_b", "batch_c", "batch_z"}),
        walk_targets=frozenset({"batch_a", "batch_b", "batch_c"}),
    )


def test_nothing_unsettled_plans_nothing() -> None:
    """With every batch settled there is nothing to walk to or fetch."""
    assert plan_refresh([], 100) == RefreshPlan()
