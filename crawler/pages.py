"""The list cursor chain: parse a page, decide the next cursor, refuse a chain that loops."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from .budget import OutOfTime
from .errors import (
    ApiError,
    BadRequestError,
    BrokenResponseError,
    NotFoundError,
    PaginationError,
)
from .redact import Secret, texts_holding_secret
from .times import unix_seconds

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
    # False for a compatible list that does not say `has_more` (Groq's, say): `has_more`
    # is then whether the page held anything, so that the walk goes on until an empty page.
    has_more_sent: bool = True
    # The limit it was asked for with, when under the walk's (fitted under the body cap).
    limit: int | None = None

    @property
    def next_after(self) -> str | None:
        """The cursor for the next page: the last item's id, as the official SDK uses."""
        if self.tail_skipped and self.last_id is not None:
            return self.last_id
        return self.batches[-1]["id"] if self.batches else None


def parse_page(
    payload: Any, secret: Secret = None, *, has_more_optional: bool = False
) -> BatchPage:
    """Check a decoded list response and wrap it.

    An item without a usable id (not an object, an id that is not a non-empty string, one
    that cannot be encoded or is absurdly long) is left out and named in `skipped`: asking
    again would get the same page, and one odd item must not block every page after it.

    With `has_more_optional` (a compatible list: OpenAI always sends it), a list without
    `has_more` (or with null) goes on while its pages hold anything, as the official SDK
    pages such lists.

    Raises:
        BrokenResponseError: the body lacks a `data` list, or its `has_more` is no boolean.
    """
    if not isinstance(payload, dict):
        raise BrokenResponseError("list response is not a JSON object")
    data = payload.get("data")
    has_more = payload.get("has_more")
    has_more_sent = has_more is not None
    if has_more_optional and not has_more_sent and isinstance(data, list):
        has_more = bool(data)
    if not isinstance(data, list) or not isinstance(has_more, bool):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            # An error envelope sent with a 200: say what the API said.
            message = " ".join(error["message"].split())[:300]
            raise BrokenResponseError(f"the API answered the list with an error: {message}")
        if not has_more_sent and isinstance(data, list):
            # Asking again gets the same answer: say what to set, and do not retry.
            raise BrokenResponseError(
                "list response has no `has_more`: a compatible list without it? "
                'set provider = "compatible"',
                should_retry=False,
            )
        raise BrokenResponseError("list response lacks a `data` list or a boolean `has_more`")
    last_id = payload.get("last_id")
    ids = [item.get("id") for item in data if isinstance(item, dict)]
    holding = texts_holding_secret(
        (id_ for id_ in (*ids, last_id) if isinstance(id_, str) and len(id_) <= MAX_ID_LENGTH),
        secret,
    )
    batches = [item for item in data if _has_usable_id(item, holding)]
    skipped = () if len(batches) == len(data) else _describe_skipped(data, holding)
    return BatchPage(
        batches,
        has_more,
        last_id if _is_usable_id(last_id, holding) else None,
        skipped,
        tail_skipped=bool(data) and not _has_usable_id(data[-1], holding),
        has_more_sent=has_more_sent,
    )


# Real ids are about 40 characters; one of thousands would not fit in a request line
# (servers refuse URLs past about 8 KB), and as the cursor it would block the walk.
MAX_ID_LENGTH = 256


def _is_usable_id(value: Any, holding: Collection[str] = frozenset()) -> bool:
    """Whether `value` is an id we can store as text and send as a cursor: never one
    `holding` the API key (a hostile server's echo), which would then be stored and shown."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        return False
    if value in holding:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate, from a JSON \ud800 escape
        return False
    return True


def _has_usable_id(item: Any, holding: Collection[str] = frozenset()) -> bool:
    """Whether `item` is a batch object (or one that does not say) with a usable id."""
    return (
        isinstance(item, dict)
        and item.get("object", "batch") in ("batch", None)
        and _is_usable_id(item.get("id"), holding)
    )


def _describe_skipped(data: list[Any], holding: Collection[str]) -> tuple[str, ...]:
    """Each unusable item as a warning shows it: its position and its id, briefly."""
    shown = []
    for position, item in enumerate(data):
        if not _has_usable_id(item, holding):
            what = (
                "not an object"
                if not isinstance(item, dict)
                else f"a {_brief(item['object'], 20)}, not a batch"
                if item.get("object", "batch") not in ("batch", None)
                else f"id {_brief(item.get('id'), 40)}"
            )
            shown.append(f"item {position} ({what})")
    return tuple(shown)


def _brief(value: Any, width: int) -> str:
    """`value`'s repr in about `width` characters; a string cut keeps its quotes."""
    if isinstance(value, str) and len(value) > width:
        return f"{value[:width]!r}..."
    shown = repr(value)
    return shown if len(shown) <= width else f"{shown[: width - 3]}..."


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
    # Past the stop, the walk goes on only for batches of the head's creation second (see
    # walk_pages): a few pages at most, read past a page budget.
    tied: bool = False
    pages_past_stop: int | None = None  # None: the stop not met yet
    # The page said it was the list's last, and the request after it failed, or the time
    # budget cut it (see WalkState.end_unchecked).
    end_unchecked: bool = False


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
            f"the API said has_more=true but sent {sent} {where}; stopped to avoid missing the rest"
        )
    if cursor in seen:
        raise PaginationError(
            f"the API sent cursor {cursor} twice ({where}); the list would loop forever, "
            "so the walk stopped"
        )
    seen.add(cursor)
    return cursor


async def walk_pages(
    fetch_page: Callable[[str | None, int], Awaitable[BatchPage]],
    *,
    after: str | None,
    limit: int,
    stop_ids: frozenset[str] = frozenset(),
    stop_second: int | None = None,
    known: Callable[[str], Awaitable[bool]] | None = None,
    check_full_end: bool = False,
    pages_past_stop: int | None = None,
) -> AsyncGenerator[WalkStep, None]:
    """Follow the chain from `after` (None = the top) until it ends or reaches a stop.

    `stop_ids` are batches known to be at the stop (the old head, and the newest stored
    batches beside it, should the head itself have vanished). Once the walk has met one,
    it stops on the first page whose last batch was `known` (stored before this run) and
    was not created in `stop_second`, the head's creation second; since batches of that
    second may come in any order, a page ending in it stops the walk only once TIE_PAGES
    pages were walked past since the stop was met and every batch on it is known (those
    pages are `tied`: a run on a page budget reads them all, or a run of a page each never
    got past a head's second). Neither
    a creation time alone nor the head alone stops it: one batch listed with an odd
    `created_at` (early, or in the future) would otherwise end the walk above batches
    never stored. The last step still carries its whole page: rows above the stop are
    new, those below are fresh copies; storing all is right.

    A walk resumed past its stop (`pages_past_stop` pages of a walk cut there) goes on as
    that walk would have.

    A list served oldest first (a proxy's, say) grows at its end, below any stop: once a
    page shows that order, the walk goes on to the end, with a warning.

    A list that ends before the walk has met any stop batch, or (with `check_full_end`, for
    a walk that stores the list, which no later walk goes below) one that ends on a full
    page, is checked with one more request: a `has_more: false` sent by mistake would
    otherwise end the walk above batches never stored, for good. So is an empty end right
    after a cursor (often a page that said `has_more: true`): it is asked for again.
    """
    seen: set[str] = set() if after is None else {after}
    cursor = after
    met_stop = pages_past_stop is not None
    tie_pages = pages_past_stop or 0
    order = _Order()
    page, again = await _fetch_doubting_an_empty_end(fetch_page, cursor, limit)
    while True:
        notes = [skipped_warning(page, cursor), last_id_warning(page, cursor), again]
        if order.shows_oldest_first(page) and stop_ids:
            # The stop met on a page above that showed no order (the head's second, or
            # pages of two) is no stop either.
            stop_ids, met_stop, tie_pages = frozenset(), False, 0
            notes.append(
                f"page after {cursor or 'the top'}: the list is served oldest first, so new "
                "batches come at its end: walked to the end (an incremental sync needs the "
                "newest first)"
            )
        met_stop = met_stop or any(b["id"] in stop_ids for b in page.batches)
        reached_stop = tied = False
        if met_stop:
            waited = tie_pages >= TIE_PAGES
            reached_stop = await _passed_stop(page, stop_second, known, waited=waited)
            tie_pages += not reached_stop
            tied = not (reached_stop or waited) and _ends_in(page, stop_second)
        following = None if reached_stop else check_next(page, cursor, seen)
        ahead: BatchPage | None = None
        failed: Exception | None = None
        doubtful = bool(stop_ids) or (check_full_end and _is_full(page, limit))
        if following is None and doubtful and not met_stop and page.next_after is not None:
            where = f"page after {cursor or 'the top'}: has_more was false " + (
                "above the last walk's head" if stop_ids else "on a full page"
            )
            ahead, failed, note = await _ask_past_the_end(
                fetch_page, page.next_after, limit, seen, where
            )
            notes.append(note)
            if ahead is not None or failed is not None:
                following = page.next_after
                seen.add(following)
        warnings = tuple(note for note in notes if note)
        past = tie_pages if met_stop else None
        unchecked = failed is not None
        cursor_now = page.next_after or cursor
        yield WalkStep(page, cursor_now, following is None, warnings, tied, past, unchecked)
        if failed is not None:
            raise failed
        if following is None:
            return
        cursor = following
        if ahead is not None:
            page, again = ahead, None
        else:
            page, again = await _fetch_doubting_an_empty_end(fetch_page, cursor, limit)


async def _ask_past_the_end(
    fetch_page: Callable[[str | None, int], Awaitable[BatchPage]],
    last: str,
    limit: int,
    seen: set[str],
    where: str,
) -> tuple[BatchPage | None, Exception | None, str | None]:
    """The page after `last`, the last batch of a page said to be the list's last, when it
    holds batches not walked yet; else why the walk goes on after it all the same (a
    failure to raise once that page is stored: a server down, the time budget, so that
    the next run asks again first), and a note."""
    try:
        ahead = await fetch_page(last, limit)
    except REFUSALS as exc:
        # Refused on every run, the check kept this page from being stored, and the walk
        # from ever ending.
        return None, None, f"{where}; asking after it was refused ({exc}): took it as the end"
    except (OutOfTime, ApiError) as exc:
        return None, exc, None
    # A server that ignores `after` sends this page again: nothing more came.
    repeated = ahead.next_after == last or ahead.next_after in seen
    if ahead.batches and not repeated:
        return ahead, None, f"{where}, but more batches came after it; walked on"
    return None, None, None


async def _fetch_doubting_an_empty_end(
    fetch_page: Callable[[str | None, int], Awaitable[BatchPage]], cursor: str | None, limit: int
) -> tuple[BatchPage, str | None]:
    """The page after `cursor`, asked for twice when it is an empty end, and a note when
    the second answer held batches. An empty end is how some lists end (those that say
    `has_more` while a page is full), and how a server out of step with itself answers
    once; ending the walk there would leave the batches below out of every later walk."""
    page = await fetch_page(cursor, limit)
    if not is_an_empty_end(page, cursor):
        return page, None
    again = await fetch_page(cursor, limit)
    if not again.batches:
        return again, None
    return again, f"page after {cursor}: an empty end, but asked again it held batches; walked on"


# Answers refusing a request itself, every time it is sent: not a server down or busy,
# nor a body cut short on the way (a broken answer may be one).
REFUSALS = (BadRequestError, NotFoundError)


def is_an_empty_end(page: BatchPage, cursor: str | None) -> bool:
    """Whether `page`, asked for after `cursor`, ends the list with nothing on it: asked for
    again (see _fetch_doubting_an_empty_end)."""
    return cursor is not None and not (page.batches or page.skipped or page.has_more)


# Pages walked on past the stop before a page of the head's creation second, all of it
# stored before, may end the walk: new batches of that second may be listed below the old
# head in any order, and a list all of one second (a proxy's constant created_at) would
# otherwise be walked to its end every time. At most this many pages more a sync.
TIE_PAGES = 5


def _is_full(page: BatchPage, limit: int) -> bool:
    """Whether the page held as many items as asked for: the list may go on below it."""
    return len(page.batches) + len(page.skipped) >= (page.limit or limit)


class _Order:
    """The order of the creation times a walk has read, from page to page too."""

    def __init__(self) -> None:
        self.rises = self.falls = 0
        self.last: Any = None

    def shows_oldest_first(self, page: BatchPage) -> bool:
        """Whether, with `page`, creation times rose more often than they fell (OpenAI's
        fall), twice at least: a page of one second, or of two batches, shows no order
        alone."""
        # As stored: compatible servers send them as text, or as floats.
        times = [self.last, *(unix_seconds(b.get("created_at")) for b in page.batches)]
        for earlier, later in itertools.pairwise(times):
            if isinstance(earlier, int) and isinstance(later, int):
                self.rises += later > earlier
                self.falls += later < earlier
        self.last = times[-1]
        return self.rises >= 2 and self.rises > self.falls


def _ends_in(page: BatchPage, second: int | None) -> bool:
    """Whether a page's last batch was created in `second`."""
    last = page.batches[-1] if page.batches else {}
    return second is not None and unix_seconds(last.get("created_at")) == second


async def _passed_stop(
    page: BatchPage,
    stop_second: int | None,
    known: Callable[[str], Awaitable[bool]] | None,
    *,
    waited: bool,
) -> bool:
    """Whether a page at or below the stop ends past it (see walk_pages)."""
    if not page.batches or known is None:
        return True
    last = page.batches[-1]
    if _ends_in(page, stop_second):
        # New batches of the head's second may be listed below it, a page or many: walk
        # on while such pages hold any, but not to the end of a list all of one second.
        if not waited:
            return False
        for batch in page.batches:  # one new batch is enough to go on: ask no further
            if not await known(batch["id"]):
                return False
        return True
    return await known(last["id"])
