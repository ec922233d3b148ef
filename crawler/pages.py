"""The list cursor chain: parse a page, decide the next cursor, refuse a chain that loops."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .errors import BrokenResponseError, PaginationError
from .jsontext import is_storable_text

Batch = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BatchPage:
    """One `GET /batches` response, checked for the fields we rely on."""

    batches: list[Batch]
    has_more: bool
    last_id: str | None
    # Items left out for want of an id we can store and ask with, as shown in a warning.
    skipped: tuple[str, ...] = ()

    @property
    def next_after(self) -> str | None:
        """The cursor for the next page: the last item's id, as the official SDK uses."""
        return self.batches[-1]["id"] if self.batches else None


def parse_page(payload: Any) -> BatchPage:
    """Check a decoded list response and wrap it.

    An item without a usable id (not an object, an id that is not a non-empty string, or
    one that cannot be encoded) is left out and named in `skipped`: asking again would get
    the same page, and one odd item must not block every page after it.

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
    return BatchPage(batches, has_more, last_id if isinstance(last_id, str) else None, skipped)


def _has_usable_id(item: Any) -> bool:
    """Whether `item` is an object with an id we can store as text and send as a cursor."""
    return isinstance(item, dict) and is_storable_text(item.get("id"))


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


def _reached(page: BatchPage, stop_id: str | None, stop_below: int | None) -> bool:
    created = page.batches[-1].get("created_at") if page.batches else None
    if stop_below is not None and isinstance(created, int):
        return created < stop_below
    return stop_id is not None and any(b["id"] == stop_id for b in page.batches)


async def walk_pages(
    fetch_page: Callable[[str | None, int], Awaitable[BatchPage]],
    *,
    after: str | None,
    limit: int,
    stop_id: str | None = None,
    stop_below: int | None = None,
) -> AsyncGenerator[WalkStep, None]:
    """Follow the chain from `after` (None = the top) until it ends or reaches `stop_id`.

    With `stop_below`, the stop batch's creation time, the walk stops on the first page
    that ends with a batch created before it: it has then passed the stop batch, and every
    batch created in the same second, whichever order the server gives ties in, even if
    the stop batch itself has vanished. Without it (the stop batch is not stored), the
    walk stops on the page holding `stop_id`. The last step still carries its whole
    page: rows above the stop are new, those below are fresh copies; storing all is right.
    """
    seen: set[str] = set() if after is None else {after}
    cursor = after
    while True:
        page = await fetch_page(cursor, limit)
        notes = (skipped_warning(page, cursor), last_id_warning(page, cursor))
        warnings = tuple(note for note in notes if note)
        reached_stop = _reached(page, stop_id, stop_below)
        following = None if reached_stop else check_next(page, cursor, seen)
        stored_cursor = page.next_after or cursor
        yield WalkStep(page, stored_cursor, following is None, warnings)
        if following is None:
            return
        cursor = following
