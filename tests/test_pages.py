"""The cursor chain: page parsing, the next cursor, and the loop guards."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from crawler.errors import BrokenResponseError, PaginationError
from crawler.pages import (
    TIE_PAGES,
    BatchPage,
    WalkStep,
    check_next,
    last_id_warning,
    parse_page,
    walk_pages,
)

from .conftest import list_body, make_batch


def page_of(*numbers: int, has_more: bool = True, last_id: str | None = None) -> BatchPage:
    batches = [make_batch(n) for n in numbers]
    return BatchPage(
        batches, has_more, last_id if last_id else batches[-1]["id"] if batches else None
    )


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"data": []},
        {"has_more": False},
        {"data": {}, "has_more": False},
        {"data": [], "has_more": "no"},
    ],
)
def test_parse_page_rejects_broken_bodies(payload: Any) -> None:
    """A body without a data list or a boolean has_more is a broken response."""
    with pytest.raises(BrokenResponseError):
        parse_page(payload)


@pytest.mark.parametrize("has_more", [{}, {"has_more": None}], ids=["missing", "null"])
def test_a_list_that_does_not_say_has_more_goes_on_until_an_empty_page(
    has_more: dict[str, Any],
) -> None:
    """Groq's list has no has_more: a page with batches asks for the next, an empty one ends."""
    full = parse_page({"data": [make_batch(2), make_batch(1)], **has_more}, has_more_optional=True)
    empty = parse_page({"data": [], **has_more}, has_more_optional=True)
    assert (full.has_more, full.has_more_sent) == (True, False)
    assert (empty.has_more, empty.has_more_sent) == (False, False)
    seen: set[str] = set()
    assert check_next(full, None, seen) == make_batch(1)["id"]
    assert check_next(empty, make_batch(1)["id"], seen) is None
    assert parse_page({"data": [], "has_more": False}, has_more_optional=True).has_more_sent
    with pytest.raises(BrokenResponseError, match='set provider = "compatible"'):
        parse_page({"data": [], **has_more})  # OpenAI always sends it


def test_an_item_whose_object_is_no_string_is_left_out_not_a_crash() -> None:
    """`"object": {}` once raised TypeError (unhashable) out of the page check."""
    page = parse_page(
        {"data": [make_batch(3, object={}), make_batch(2, object=[]), make_batch(1)],
         "has_more": False}
    )  # fmt: skip
    assert [b["id"] for b in page.batches] == [make_batch(1)["id"]]
    assert page.skipped == ("item 0 (a {}, not a batch)", "item 1 (a [], not a batch)")


def test_parse_page_leaves_out_items_without_a_usable_id() -> None:
    """Items that cannot be stored or asked with are named, not stored; the rest are kept."""
    data = [{"no_id": 1}, make_batch(2), {"id": ""}, "batch_1", {"id": "a\ud800"}, make_batch(1)]
    page = parse_page({"data": data, "has_more": True})
    assert page.batches == [make_batch(2), make_batch(1)]
    assert page.next_after == make_batch(1)["id"]
    assert page.skipped == (
        "item 0 (id None)",
        "item 2 (id '')",
        "item 3 (not an object)",
        "item 4 (id 'a\\ud800')",
    )


def test_a_long_unusable_id_is_named_cut_with_its_quotes() -> None:
    """Its repr was cut at 40 characters, leaving one quote and no sign of the cut."""
    long_id = "batch_" + "\ud800" + "x" * 100  # no usable id: a lone surrogate
    objects = [{"id": long_id}, {"id": [1] * 50}, {"id": 1, "object": "file" * 10}]
    page = parse_page({"data": objects, "has_more": False})
    assert page.skipped == (
        f"item 0 (id {long_id[:40]!r}...)",
        f"item 1 (id {str([1] * 50)[:37]}...)",
        f"item 2 (a {('file' * 10)[:20]!r}..., not a batch)",
    )


def test_a_page_of_unusable_items_with_more_to_come_stops_the_walk() -> None:
    """With no usable id there is no cursor to go on with: stop, saying why."""
    page = parse_page({"data": [{"id": None}], "has_more": True})
    with pytest.raises(PaginationError, match="sent no batch with a usable id at the top"):
        check_next(page, None, set())


def test_parse_page_needs_only_required_fields() -> None:
    """first_id and last_id are optional in the spec."""
    page = parse_page({"object": "list", "data": [make_batch(1)], "has_more": False})
    assert page.last_id is None
    assert page.next_after == make_batch(1)["id"]


def test_next_cursor_is_the_last_item_id() -> None:
    """The walk follows the last item's id, and stops when has_more is false."""
    seen: set[str] = set()
    assert check_next(page_of(3, 2), None, seen) == make_batch(2)["id"]
    assert check_next(page_of(1, has_more=False), "x", seen) is None


def test_has_more_with_empty_data_is_an_error() -> None:
    """has_more=true with no data would silently truncate the walk."""
    with pytest.raises(PaginationError, match="has_more=true but sent no batches after c1"):
        check_next(BatchPage([], True, None), "c1", set())


def test_a_cursor_seen_twice_is_an_error() -> None:
    """A cursor that does not advance would loop forever."""
    seen = {make_batch(2)["id"]}
    with pytest.raises(PaginationError, match="twice"):
        check_next(page_of(3, 2), "x", seen)


def test_last_id_disagreeing_with_the_data_gives_a_warning() -> None:
    """A wrong last_id is reported, and the data is followed."""
    assert last_id_warning(page_of(3, 2), None) is None
    assert last_id_warning(BatchPage([make_batch(1)], False, None), None) is None
    note = last_id_warning(page_of(3, 2, last_id="batch_other"), "c")
    assert note is not None
    assert "batch_other" in note
    assert make_batch(2)["id"] in note


class FakeList:
    """Serves a list of batch numbers newest first, as the API pages it; `created` gives
    some of them a creation time of their own."""

    def __init__(self, numbers: list[int], created: Callable[[int], Any] | None = None) -> None:
        self.ids = [make_batch(n)["id"] for n in numbers]
        self.numbers = numbers
        self.created = created
        self.calls: list[str | None] = []

    async def fetch(self, after: str | None, limit: int) -> BatchPage:
        self.calls.append(after)
        start = 0 if after is None else self.ids.index(after) + 1
        chunk = [
            make_batch(n) if self.created is None else make_batch(n, created_at=self.created(n))
            for n in self.numbers[start : start + limit]
        ]
        return parse_page(list_body(chunk, start + limit < len(self.ids)))


def stored_before(*numbers: int) -> Callable[[str], Awaitable[bool]]:
    """The `known` test of a walk: these batches were stored before the run."""
    ids = {make_batch(n)["id"] for n in numbers}

    async def known(batch_id: str) -> bool:
        return batch_id in ids

    return known


async def collect(**kwargs: Any) -> list[Any]:
    return [step async for step in walk_pages(**kwargs)]


async def test_walk_follows_the_chain_to_the_end() -> None:
    """Every page is visited once, in order, and the last step is marked done."""
    api = FakeList(list(range(10, 0, -1)))
    steps = await collect(fetch_page=api.fetch, after=None, limit=3)
    assert [len(s.page.batches) for s in steps] == [3, 3, 3, 1]
    assert [s.done for s in steps] == [False, False, False, True]
    assert steps[-1].cursor == make_batch(1)["id"]
    assert api.calls == [None, make_batch(8)["id"], make_batch(5)["id"], make_batch(2)["id"]]


async def test_walk_resumes_after_a_cursor() -> None:
    """A walk started after a cursor begins strictly below it."""
    api = FakeList(list(range(10, 0, -1)))
    steps = await collect(fetch_page=api.fetch, after=make_batch(5)["id"], limit=3)
    assert [b["id"] for s in steps for b in s.page.batches] == [
        make_batch(n)["id"] for n in (4, 3, 2, 1)
    ]


async def test_walk_stops_on_the_page_holding_the_stop_id() -> None:
    """A catch-up walk ends on the page where it meets the old head."""
    api = FakeList(list(range(10, 0, -1)))
    steps = await collect(
        fetch_page=api.fetch, after=None, limit=3, stop_ids=frozenset({make_batch(6)["id"]})
    )
    assert len(steps) == 2
    assert steps[-1].done


async def test_a_tie_with_the_stop_batch_below_it_is_not_missed() -> None:
    """A batch created in the stop batch's second, listed after it, is still walked to."""
    created = {9: 105, 8: 100, 7: 100, 6: 99, 5: 98}
    api = FakeList([9, 8, 7, 6, 5], created.__getitem__)  # 8 is the old head; 7 is new
    steps = await collect(
        fetch_page=api.fetch,
        after=None,
        limit=2,
        stop_ids=frozenset({make_batch(8)["id"]}),
        stop_second=100,
        known=stored_before(8, 6, 5),
    )
    walked = [b["id"] for s in steps for b in s.page.batches]
    assert make_batch(7)["id"] in walked
    assert len(steps) == 2


async def test_a_vanished_stop_batch_stops_at_a_neighbour() -> None:
    """Without the head in the list, a stored neighbour of it stops the walk."""
    api = FakeList(list(range(10, 0, -1)))
    stop_ids = frozenset({"batch_gone", make_batch(6)["id"], make_batch(5)["id"]})
    steps = await collect(
        fetch_page=api.fetch, after=None, limit=3, stop_ids=stop_ids, stop_second=1_700_000_007
    )
    assert len(steps) == 2


async def test_an_early_creation_time_alone_does_not_stop_the_walk() -> None:
    """A new batch listed with an early created_at, at the end of a page above the head,
    must not end the walk before the batches between it and the head."""
    order = [12, 11, 10, 9, 8]  # 8 is the old head; 11 claims to be older than it
    api = FakeList(order, lambda n: 0 if n == 11 else 1_700_000_000 + n)
    steps = await collect(
        fetch_page=api.fetch,
        after=None,
        limit=2,
        stop_ids=frozenset({make_batch(8)["id"]}),
        stop_second=1_700_000_008,
        known=stored_before(8),
    )
    walked = [b["id"] for s in steps for b in s.page.batches]
    assert walked == [make_batch(n)["id"] for n in order]


async def test_empty_list_is_one_done_step() -> None:
    """An organization with no batches gives one empty, final page."""
    api = FakeList([])
    steps = await collect(fetch_page=api.fetch, after=None, limit=3)
    assert len(steps) == 1
    assert steps[0].done
    assert steps[0].cursor is None


async def test_stuck_cursor_stops_the_walk_after_the_good_pages() -> None:
    """A server that repeats a page is caught on the repeat, not followed forever."""
    good = FakeList(list(range(6, 0, -1)))

    async def stuck(after: str | None, limit: int) -> BatchPage:
        return await good.fetch(None if after is None else make_batch(6)["id"], limit)

    seen: list[WalkStep] = []

    async def follow() -> None:
        async for step in walk_pages(stuck, after=None, limit=2):
            seen.append(step)

    with pytest.raises(PaginationError, match="twice"):
        await follow()
    assert len(seen) == 2


async def test_a_head_with_an_odd_creation_time_stops_the_walk_only_past_stored_batches() -> None:
    """A head dated in the future sits at the top: the new batches listed below it are
    walked until a page ends with a batch stored before."""
    order = [20, 12, 11, 10, 9, 8]  # 20 is the old head, dated in the future; 12..10 are new
    api = FakeList(order, lambda n: 1_900_000_000 if n == 20 else 1_700_000_000 + n)
    steps = await collect(
        fetch_page=api.fetch,
        after=None,
        limit=2,
        stop_ids=frozenset({make_batch(20)["id"]}),
        stop_second=1_900_000_000,
        known=stored_before(20, 9, 8),
    )
    walked = [b["id"] for s in steps for b in s.page.batches]
    assert walked == [make_batch(n)["id"] for n in order]


async def test_a_list_ending_above_the_stop_is_checked_once_more() -> None:
    """has_more false before the walk met any stop batch: one more request, and on."""
    api = FakeList(list(range(10, 0, -1)))
    glitch = api.fetch

    async def fetch(after: str | None, limit: int) -> BatchPage:
        page = await glitch(after, limit)
        if after is None:  # the first page says, wrongly, that the list ends there
            return BatchPage(page.batches, False, page.last_id)
        return page

    steps = await collect(
        fetch_page=fetch, after=None, limit=3, stop_ids=frozenset({make_batch(4)["id"]})
    )
    walked = [b["id"] for s in steps for b in s.page.batches]
    assert make_batch(4)["id"] in walked
    assert "has_more was false above the last walk's head" in steps[0].warnings[0]


def test_items_of_another_object_type_are_left_out() -> None:
    """A file (or anything not a batch) in the list is no batch: named, not stored."""
    data = [make_batch(2), {**make_batch(1), "object": "file"}, {**make_batch(3), "object": None}]
    page = parse_page({"data": data, "has_more": False})
    assert [b["id"] for b in page.batches] == [make_batch(2)["id"], make_batch(3)["id"]]
    assert page.skipped == ("item 1 (a 'file', not a batch)",)


def test_an_error_envelope_sent_with_a_200_says_what_the_api_said() -> None:
    body = {"error": {"message": "Your organization has been deactivated.", "code": None}}
    with pytest.raises(BrokenResponseError, match="with an error: Your organization has been"):
        parse_page(body)


async def test_a_list_where_every_batch_shares_one_second_is_not_walked_to_its_end() -> None:
    """TIE_PAGES pages of the head's second are waited past, not every one."""
    api = FakeList(list(range(60, 0, -1)), lambda n: 1_700_000_000)  # 52 is the old head
    steps = await collect(
        fetch_page=api.fetch,
        after=None,
        limit=4,
        stop_ids=frozenset({make_batch(52)["id"]}),
        stop_second=1_700_000_000,
        known=stored_before(*range(52, 0, -1)),
    )
    # Two pages of new batches, the head's page, then TIE_PAGES more, ending at 29.
    assert len(steps) == 3 + TIE_PAGES
    assert steps[-1].page.batches[-1]["id"] == make_batch(29)["id"]


async def test_a_walk_resumed_past_its_stop_reads_the_pages_of_the_heads_second_left() -> None:
    """A walk cut after two pages past its stop goes on for the TIE_PAGES less those two,
    then ends where the walk from the top would have: on page 29's."""
    api = FakeList(list(range(60, 0, -1)), lambda n: 1_700_000_000)  # 52 is the old head
    steps = await collect(
        fetch_page=api.fetch,
        after=make_batch(45)["id"],  # the head's page and two more were read: 52 to 45
        limit=4,
        stop_ids=frozenset({make_batch(52)["id"]}),
        stop_second=1_700_000_000,
        known=stored_before(*range(52, 0, -1)),
        pages_past_stop=2,
    )
    assert len(steps) == 1 + TIE_PAGES - 2
    assert steps[-1].page.batches[-1]["id"] == make_batch(29)["id"]
    assert [one.pages_past_stop for one in steps] == [3, 4, 5, 5]


# A time as OpenAI sends it, and as compatible servers do (stored as unix seconds).
TIME_SPELLINGS = [
    pytest.param(lambda t: t, id="integer"),
    pytest.param(str, id="text"),
    pytest.param(lambda t: dt.datetime.fromtimestamp(t, dt.UTC).isoformat(), id="ISO 8601"),
    pytest.param(lambda t: t + 0.5, id="float"),
]


@pytest.mark.parametrize("spelled", TIME_SPELLINGS)
async def test_new_batches_of_the_heads_second_listed_pages_below_it_are_walked_to(
    spelled: Callable[[int], Any],
) -> None:
    """Batches of one second come in any order: a new one listed pages below the old head,
    under pages all stored before, is walked to; the walk ends on the first page of that
    second all stored once TIE_PAGES were waited past. Whatever the times' spelling: sent
    as text, the page's were never the head's stored second, and the walk ended at once."""
    order = [27, 26, 25, 24, 23, 22, 28, *range(21, 0, -1)]  # 26 is the old head
    api = FakeList(order, lambda n: spelled(1_700_000_000))
    steps = await collect(
        fetch_page=api.fetch,
        after=None,
        limit=2,
        stop_ids=frozenset({make_batch(26)["id"]}),
        stop_second=1_700_000_000,
        known=stored_before(*range(26, 0, -1)),
    )
    walked = {b["id"] for s in steps for b in s.page.batches}
    assert make_batch(28)["id"] in walked
    assert len(steps) == 1 + TIE_PAGES  # the head's page, then five, down to 18, 17


@pytest.mark.parametrize(
    ("limit", "same_second"),
    [(5, 6), (2, 2)],
    ids=["the head's page in one second", "pages of two, read together"],
)
async def test_a_list_shown_oldest_first_below_the_head_is_walked_to_its_end(
    limit: int, same_second: int
) -> None:
    """The old head on the first page, which shows no order (its batches of one second):
    the order shown on a page after it cleared the stop, but the walk, having met it,
    still ended there, above the new batches, on every incremental sync. Pages of two are
    read together: alone, none showed the order."""
    second = 1_700_000_000
    api = FakeList(list(range(1, 17)), lambda n: second + max(0, n - same_second))
    steps = await collect(
        fetch_page=api.fetch,
        after=None,
        limit=limit,
        stop_ids=frozenset({make_batch(1)["id"]}),  # 1..11 stored, 12..16 new
        stop_second=second + max(0, 1 - same_second),
        known=stored_before(*range(1, 12)),
    )
    walked = [b["id"] for s in steps for b in s.page.batches]
    assert walked == [make_batch(n)["id"] for n in range(1, 17)]
    assert any("the list is served oldest first" in w for s in steps for w in s.warnings)


@pytest.mark.parametrize("spelled", TIME_SPELLINGS)
async def test_a_list_served_oldest_first_is_walked_to_its_end_with_a_warning(
    spelled: Callable[[int], Any],
) -> None:
    """A proxy listing the oldest first grows at its end: the old head on the first page
    does not stop the walk above the new batches. Whatever the times' spelling: sent as
    text, the order was never seen."""
    # 1..6 stored, 6 the old head; 7..10 are new
    api = FakeList(list(range(1, 11)), lambda n: spelled(1_700_000_000 + n))
    steps = await collect(
        fetch_page=api.fetch,
        after=None,
        limit=3,
        stop_ids=frozenset({make_batch(1)["id"], make_batch(6)["id"]}),
        stop_second=1_700_000_006,
        known=stored_before(*range(1, 7)),
    )
    walked = [b["id"] for s in steps for b in s.page.batches]
    assert walked == [make_batch(n)["id"] for n in range(1, 11)]
    assert "the list is served oldest first" in steps[0].warnings[0]
