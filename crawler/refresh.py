"""Refreshing batches one by one (`GET /batches/{id}`), several at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .api import ApiClient
from .budget import OutOfTime, before_deadline, spent
from .errors import (
    FAILED_ANSWERS,
    ROUTE_FAILURES,
    ApiError,
    RateLimitedError,
    about_one_batch,
    first_exception,
)
from .pages import Batch

# Batches failing one after the other, with no answer between, before the refresh checks
# whether the API itself is failing.
FAILURES_IN_A_ROW = 3

SaveChunk = Callable[[Sequence[Batch], Sequence[str]], Awaitable[None]]

# What asking the API something else says of batches failing in a row (see _FailureStreak).
Verdict = Literal["route failing", "answers", "unknown"]


@dataclass
class RefreshEnd:
    """How a refresh by id ended."""

    answered: set[str] = field(default_factory=set)  # fetched, or answered 404
    # Failing past their retries, each costing them all (a 5xx, a hang, a broken answer).
    failed: set[str] = field(default_factory=set)
    # Refused or failing (not a 429) with no answer after, nor a check finding the route
    # answering: the route's, for all anyone knows.
    unheard: set[str] = field(default_factory=set)
    cut: set[str] = field(default_factory=set)  # asked for when the time budget ran out
    out_of_time: bool = False  # the time budget ran out before every batch was asked
    route_failing: bool = False  # requests by id kept failing while the list answered
    route_answered: bool = False  # batches failed in a row while the route answered others

    def cut_short(self, batch_id: str | None) -> None:
        """The time budget ran out as `batch_id` was asked for (None: before another was)."""
        if batch_id is not None:
            self.cut.add(batch_id)
        self.out_of_time = True


async def refresh_by_id(
    client: ApiClient,
    batch_ids: Iterable[str],
    *,
    concurrency: int,
    chunk: int,
    save: SaveChunk,
    skip: Callable[[str, ApiError], None],
    time_left: Callable[[], float | None] = lambda: None,
    first_once: bool = False,
    once: Collection[str] = (),
    check_api: Callable[[], Awaitable[Verdict]],
) -> RefreshEnd:
    """Fetch each batch by id with `concurrency` workers and save them `chunk` at a time.

    Stops short when `time_left()` runs out (a time budget, kept while a request is in
    flight too), or when requests by id keep failing while the list answers (see
    _FailureStreak). With `first_once`, the first batch is asked for once should the time
    budget be spent, as a run's first list page is read whatever it: a run whose walk
    spent the budget still refreshes one (a walk taking every run's budget left every
    batch in flight stale). Those in `once` are asked once, no retry: their last ask failed
    past every retry (each sync waited out a hang's, four minutes with the defaults, 90B).

    `save(batches, gone_ids)` receives the batches fetched and the ids the API answered 404
    for; each call is one transaction, so an interruption loses at most the unsaved chunk,
    which the next sync fetches again. Writes happen one at a time, in no set order.

    `skip(batch_id, error)` hears of a batch whose own answer was refused (a 4xx other
    than 404, a 403 for this batch alone, a 404 for its path, a body that is not a batch)
    or whose retries ran out (a 5xx, a timeout): it is left as it is stored and the others
    go on, so that one batch cannot block the sync. Errors of the API as a whole (a bad
    key, quota) end the refresh, once the batches already fetched are saved.
    """
    pending = iter(batch_ids)
    answers = _Answers(save, chunk)
    end = RefreshEnd()
    streak = _FailureStreak(check_api)
    asks = _Asks(client, first_once, once)

    async def worker() -> None:
        for batch_id in pending:  # the iterator is shared: each id goes to one worker
            if end.route_failing or end.out_of_time:
                return
            left = time_left()
            try:
                batch = await asks.ask(batch_id, left)
            except OutOfTime:
                # Not asked at all, with no time left: not cut (see RefreshEnd.cut).
                end.cut_short(batch_id if left is None or left > 0 else None)
                return
            except ApiError as exc:
                if not (about_one_batch(exc) or isinstance(exc, ROUTE_FAILURES)):
                    raise
                # That batch's trouble, unless the next ones fail too: then the API's, or
                # the route's.
                checked = streak.checks_answered
                verdict = await streak.failed(time_left)  # the API down: its error raised
                if verdict == "out of time":
                    end.cut_short(batch_id)
                    return
                skip(batch_id, exc)
                rate_limited = isinstance(exc, RateLimitedError)
                if streak.checks_answered > checked:
                    end.unheard.clear()  # the route answered the check, after them
                elif not rate_limited:
                    end.unheard.add(batch_id)
                if isinstance(exc, FAILED_ANSWERS) and not rate_limited:
                    end.failed.add(batch_id)
                if verdict == "route failing":
                    end.route_failing = True
                    return
                continue
            streak.answered()
            end.answered.add(batch_id)
            end.unheard.clear()
            await answers.add(batch_id, batch)

    try:
        async with asyncio.TaskGroup() as workers:
            for _ in range(concurrency):
                workers.create_task(worker())
    except BaseExceptionGroup as group:
        error = first_exception(group)
        if isinstance(error, ApiError):
            await answers.flush()  # the answers fetched before it are still good
        raise error from None
    end.route_answered = streak.checks_answered > 0
    await answers.flush()
    return end


@dataclass
class _Answers:
    """The answers by id not saved yet, saved `chunk` at a time (see refresh_by_id)."""

    save: SaveChunk
    chunk: int
    fetched: list[Batch] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # answered 404
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def add(self, batch_id: str, batch: Batch | None) -> None:
        if batch is None:
            self.gone.append(batch_id)
        else:
            self.fetched.append(batch)
        if len(self.fetched) + len(self.gone) >= self.chunk:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            if self.fetched or self.gone:
                batches, missing = self.fetched[:], self.gone[:]
                del self.fetched[:], self.gone[:]
                await self.save(batches, missing)


@dataclass
class _Asks:
    """Asks by id within the time budget left; with `first_once`, the first is asked once
    should the budget be spent; those in `once`, once (see refresh_by_id)."""

    client: ApiClient
    first_once: bool
    once: Collection[str]

    async def ask(self, batch_id: str, left: float | None) -> Batch | None:
        first, self.first_once = self.first_once and spent(left), False
        if first:
            return await self.client.fetch_batch(batch_id, attempts=1)
        attempts = 1 if batch_id in self.once else None
        return await before_deadline(self.client.fetch_batch(batch_id, attempts=attempts), left)


class _FailureStreak:
    """Batches failing one after the other (refused, or past their retries), no answer between.

    After FAILURES_IN_A_ROW, `check_api()` asks the API something else: its list failing
    too, the API is down (the list's error raised: a batch's own refusal, raised instead,
    failed the run for good, 88B); its list answering but not another batch asked by id,
    the by-id route itself is failing (a proxy without it, say), and full retries for
    every batch left would take minutes each: the refresh stops short. Both answering, these batches
    are odd and skipped (ten failing alone, a 5xx each, marked the route failing though it
    answered every other: those ended naming no file waited behind them for good, 84B).
    With no other batch to ask ("unknown"), as many failing again are the route's.
    """

    def __init__(self, check_api: Callable[[], Awaitable[Verdict]]) -> None:
        self._check_api = check_api
        self._in_a_row = 0
        self._list_answered = False
        self.checks_answered = 0  # checks finding the route answering
        self._asking = asyncio.Lock()  # one worker asks; those failing meanwhile wait
        # The route failing, once told: each worker failing after (one waiting for the
        # check, or asking meanwhile) asked again, each check as long as a failed ask,
        # eight in a row for one refresh (pass 87B).
        self._route_failing = False

    def answered(self) -> None:
        # An answer between: "unknown" twice apart is no failing route (89B).
        self._in_a_row, self._list_answered = 0, False

    async def failed(
        self, time_left: Callable[[], float | None]
    ) -> Literal["skip", "route failing", "out of time"]:
        """What one more failure says; asking the API takes requests, within the budget."""
        try:
            return await before_deadline(self._verdict(), time_left())
        except OutOfTime:
            return "out of time"

    async def _verdict(self) -> Literal["skip", "route failing"]:
        self._in_a_row += 1
        if self._route_failing:
            return "route failing"
        if self._in_a_row < FAILURES_IN_A_ROW:
            return "skip"
        async with self._asking:
            if self._route_failing:
                return "route failing"
            if self._in_a_row < FAILURES_IN_A_ROW:
                return "skip"  # another worker asked meanwhile, and the streak began again
            verdict = await self._check_api()
            if verdict == "route failing" or (verdict == "unknown" and self._list_answered):
                self._route_failing = True
                return "route failing"
            self._list_answered = self._list_answered or verdict == "unknown"
            self.checks_answered += verdict == "answers"
            self._in_a_row = 0
            return "skip"
