"""The list cursor chain: parse a page, decide the next cursor, refuse a chain that loops."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .errors import BrokenResponseError, PaginationError

Batch = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BatchPage:
    """One `GET /batches` response, checked for the fields we rely on."""

    batches: list[Batch]
    has_more: bool
    last_id: str | None
    # Items left out for want of an id we can store and ask with, as shown in a warning.
    skipped: tuple[str, ...] = ()
    # The last item was one of those: the server's `last_id` is the cursor, if usable.
    tail_skipped: bool = False

    @property
    def next_after(self) -> str | None:
        """The cursor for the next page: the last item's id, as the official SDK uses."""
        if self.tail_skipped and self.last_id is not None:
            return self.last_id
        return self.batches[-1]["id"] if self.batches else None


def parse_page(payload: Any) -> BatchPage:
    """Check a decoded list response and wrap it.

    An item without a usable id (not an object, an id that is not a non-empty string, one
    that cannot be encoded or is absurdly long) is left out and named in `skipped`: asking
    again would get the same page, and one odd item must not block every page after it.

    Raises:
        BrokenResponseError: the body lacks a `data` list or a boolean `has_more`.
    """
    if not isinstance(payload, dict):
        raise BrokenResponseError("list response is not a JSON object")
    data = payload.get("data")
    has_more = payload.get("has_more")
    if not isinstance(data, list) or not isinstance(has_more, bool):
        raise BrokenResponseError("list response lacks a `data` list or a boolean `has_more`")
    batches = [item for item in data if _has_usable_id(item)]
    skipped = () if len(batches) == len(data) else _describe_skipped(data)
    last_id = payload.get("last_id")
    return BatchPage(
        batches,
        has_more,
        last_id if _is_usable_id(last_id) else None,
        skipped,
        tail_skipped=bool(data) and not _has_usable_id(data[-1]),
    )


# Real ids are about 40 characters; one of thousands would not fit in a request line
# (servers refuse URLs past about 8 KB), and as the cursor it would block the walk.
MAX_ID_LENGTH = 256


def _is_usable_id(value: Any) -> bool:
    """Whether `value` is an id we can store as text and send as a cursor."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate, from a JSON \ud800 escape
        return False
    return True


def _has_usable_id(item: Any) -> bool:
    """Whether `item` is an object with a usable id."""
    return isinstance(item, dict) and _is_usable_id(item.get("id"))


def _describe_skipped(data: list[Any]) -> tuple[str, ...]:
    """Each unusable item as a warning shows it: its position and its id, briefly."""
    shown = []
    for position, item in enumerate(data):
        if not _has_usable_id(item):
            what = f"id {item.get('id')!r:.40}" if isinstance(item, dict) else "not an object"
            shown.append(f"item {position} ({what})")
    return tuple(shown)


def skipped_warning(page: BatchPage, after: str | None) -> str | None:
    """A note naming the items a page held without a usable id, which were not stored."""
    if not page.skipped:
        return None
    return (
        f"page after {after or 'the top'}: {len(page.skipped)} item(s) without a usable id "
        f"were not stored: {', '.join(page.skipped[:3])}"
        + (", ..." if len(page.skipped) > 3 else "")
    )


@dataclass(frozen=True, slots=True)
class WalkStep:
    """A page as the walk hands it over: what to store and where the walk stands."""

    page: BatchPage
    cursor: str | None
    done: bool
    warnings: tuple[str, ...] = ()


def last_id_warning(page: BatchPage, after: str | None) -> str | None:
    """A note when the server's `last_id` disagrees with its own data (we follow the data)."""
    if page.batches and page.last_id is not None and page.last_id != page.next_after:
        return (
            f"page after {after or 'the top'}: last_id {page.last_id} differs from the "
            f"last item {page.next_after}; followed the item"
        )
    return None


def check_next(page: BatchPage, after: str | None, seen: set[str]) -> str | None:
    """The cursor to ask with next, or None when the list has ended.

    Raises:
        PaginationError: `has_more` with no data, or a cursor this walk already used;
            the official SDK stops silently on the first and loops forever on the second.
    """
    if not page.has_more:
        return None
    where = f"after {after}" if after else "at the top"
    cursor = page.next_after
    if cursor is None:
        sent = "no batch with a usable id" if page.skipped else "no batches"
        raise PaginationError(
            f"the API said has_more=true but sent {sent} {where}; "
            "stopped to avoid missing the rest (committed pages are kept)"
        )
    if cursor in seen:
        raise PaginationError(
            f"the API sent cursor {cursor} twice ({where}); the list would loop forever, "
            "so the walk stopped (committed pages are kept)"
        )
    seen.add(cursor)
    return cursor


def _below(page: BatchPage, stop_below: int | None) -> bool:
    """Whether the page ends below the stop time (ties with it go on to the next page)."""
    created = page.batches[-1].get("created_at") if page.batches else None
    return stop_below is None or not isinstance(created, int) or created < stop_below


async def walk_pages(
    fetch_page: Callable[[str | None, int], Awaitable[BatchPage]],
    *,
    after: str | None,
    limit: int,
    stop_ids: frozenset[str] = frozenset(),
    stop_below: int | None = None,
) -> AsyncGenerator[WalkStep, None]:
    """Follow the chain from `after` (None = the top) until it ends or reaches a stop.

    `stop_ids` are batches known to be at the stop (the old head, and the newest stored
    batches beside it, should the head itself have vanished). Once the walk has met one,
    it stops on the first page that ends below `stop_below`, the head's creation time:
    every batch created in the head's second is then passed too, whichever order the
    server gives ties in. A creation time alone never stops it: one batch listed with an
    early `created_at` would otherwise end the walk above batches never stored. The last
    step still carries its whole page: rows above the stop are new, those below are fresh
    copies; storing all is right.
    """
    seen: set[str] = set() if after is None else {after}
    cursor = after
    met_stop = False
    while True:
        page = await fetch_page(cursor, limit)
        notes = (skipped_warning(page, cursor), last_id_warning(page, cursor))
        warnings = tuple(note for note in notes if note)
        met_stop = met_stop or any(b["id"] in stop_ids for b in page.batches)
        reached_stop = met_stop and _below(page, stop_below)
        following = None if reached_stop else check_next(page, cursor, seen)
        stored_cursor = page.next_after or cursor
        yield WalkStep(page, stored_cursor, following is None, warnings)
        if following is None:
            return
        cursor = following
