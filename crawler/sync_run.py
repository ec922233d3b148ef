"""One sync run: own the session and the store, fetch and write in parallel, keep the ledger."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from .api import ApiClient, RetryPolicy, build_client, create_session, secrets_of_a_run
from .budget import OutOfTime, before_deadline
from .config import Settings
from .entra import entra_tokens
from .errors import (
    FAILED_ANSWERS,
    ApiError,
    ConfigError,
    CrawlerError,
    RateLimitedError,
    first_exception,
)
from .events import REFRESH_DONE, RUN_FINISHED, RUN_STARTED, EventHandler, failure_event
from .pages import Batch
from .ratelimit import RateLimiter
from .redact import Secret, Secrets, mask_error, mask_secret
from .refresh import RefreshEnd, Verdict, refresh_by_id
from .request_files import FAILURES_IN_A_ROW, FileFetcher
from .rows import is_terminal
from .run import Run, close_run
from .runs import Progress, SyncResult
from .store import Store, open_store
from .walk import WalkState, plan_refresh, starting_walk


async def _plan_refresh(store: Store, run: Run) -> None:
    """Decide which unsettled batches the walk goes on down to, and which are fetched by id."""
    unsettled = await store.load_unsettled()
    plan = plan_refresh(unsettled, run.settings.page_size)
    run.to_refresh = set(plan.to_refresh)
    run.refresh_order = [batch_id for batch_id, _ in unsettled]
    run.unsettled = frozenset(run.refresh_order)
    if run.walks_instead_of_by_id() and unsettled:
        run.note(
            "requests by id (GET /batches/{id}) kept failing on an earlier sync: "
            "in-flight batches are refreshed from the list, for a day after that"
        )
    # A budget may stop a walk at the same depth on every run; by id, least recently
    # seen first, every run gets further.
    budgeted = run.settings.max_pages is not None or run.settings.max_seconds is not None
    run.walk_targets = set() if budgeted else set(plan.walk_targets)
    run.visit_resume = await store.visit_resume() if budgeted else None


async def _refresh(run: Run, client: ApiClient) -> bool:
    """Bring up to date the unsettled batches the walk did not pass: by id, then those by
    id failed from the pages of the list that hold them. While requests by id are known to
    fail, every one is looked for in the list first, and asked by id only when the list did
    not show it. False if the budget ran out first.

    Those this account asked for by id as the time budget ran out on an earlier run, and
    that no sync stored since, are looked for in the list before any is asked by id: asked
    by id first, a batch whose retries outlast the budget was never looked for in the list,
    and asked after the others, the others' asks spent every run's budget."""
    if run.walks_instead_of_by_id():
        done = await _visit(run, client, set(run.to_refresh)) and await _ask_by_id_if_any(
            run, client, set(run.to_refresh)
        )
    else:
        done = await _refresh_asking_by_id(run, client)
    return done and await _refreshed(run)


async def _refresh_asking_by_id(run: Run, client: ApiClient) -> bool:
    """The refresh while requests by id work. Looked for in the list first: those cut
    before (asked by id right after, if not listed), and those answered 404 on two runs (a
    third 404 is the last word: counted gone, unless listed). Then the others asked by id,
    those failed by id looked for in the list (or first next run, should the time budget
    run out before: see _cut_unvisited), and those cut before and not asked yet asked by
    id, whatever page budget the visits left (it counts list pages alone). False if the
    budget ran out first.

    A batch answered 404 twice is looked for first: asked by id first, on a budget that
    left no visit after the asks, one its list still showed was counted gone; and with a
    404 counted only once a visit after the asks missed the batch, on such a budget none
    was ever counted, and, first in line, they kept every other batch from its turn."""
    cut, nearly_gone = await _looked_for_first(run)
    first = cut | nearly_gone
    others = run.to_refresh - first
    with run.sharing_time(_share_of_the_first(run, first, others)):
        visited_first = not first or await _visit(run, client, first)
        # Cut before and not listed (deleted since, say): asked by id again now, or the
        # asks of the others spent every run's budget and it was never counted gone.
        unlisted = cut & run.not_listed & run.to_refresh
        answered = not unlisted or await _refresh_by_id(run, client, unlisted)
        if not answered:
            _warn_cut_again(run, unlisted)
    await _count_gone(run, nearly_gone & run.not_listed)
    if not (visited_first and answered) and run.time_spent():
        return False
    if others and not await _refresh_by_id(run, client, others, first_once=True):
        await _cut_unvisited(run)
        return False
    left = run.to_refresh - first  # failed by id
    visited = not left or await _visit(run, client, left)
    if not visited and run.time_spent():
        await _cut_unvisited(run)
        return False
    # Those cut before not asked yet: after the others, as their asks may outlast it.
    asked = run.answered_gone | run.cut | run.by_id_failures.keys()
    again = run.to_refresh & cut - asked
    if again and not await _refresh_by_id(run, client, again):
        _warn_cut_again(run, again)
        return False
    return visited and visited_first and answered


def _warn_cut_again(run: Run, asked: set[str]) -> None:
    """Neither answered in time nor listed: every run on this budget ends partial there."""
    for batch_id in sorted(asked & run.not_listed & run.cut):
        run.note(
            f"batch {batch_id} is not in the list, and its ask by id outlasted the time "
            "budget again: a sync without --max-seconds waits for its answer"
        )


def _share_of_the_first(run: Run, first: set[str], others: set[str]) -> float:
    """The share of the time left the batches looked for first take: half at most, so that
    visits for many batches gone from the list (read from the top) leave the others their
    asks (they spent every run's, and no other batch was asked by id for dozens of runs);
    but all of it when no other waits, or when one of theirs was cut on the last run (a
    visit needing more than half was cut at the same place on every run)."""
    resumed = run.visit_resume is not None and run.visit_resume[0] in first
    return 1.0 if resumed or not others else 0.5


async def _cut_unvisited(run: Run) -> None:
    """Those failed by id this run and not looked for in the list before the time budget
    ran out are looked for first next run, as those cut by it are (asked by id first
    again, their asks and the others' spent every run's budget before their visit)."""
    unvisited = sorted(run.to_refresh & run.by_id_failures.keys())
    if unvisited:
        await run.store.save_visits([], run.visit_resume, unvisited)


async def _looked_for_first(run: Run) -> tuple[set[str], set[str]]:
    """Those to refresh to look for in the list before any is asked by id: those cut by the
    time budget before, and those answered 404 on two runs (see _refresh_asking_by_id)."""
    cut = await run.store.cut(run.to_refresh)
    return cut, await run.store.nearly_gone(run.to_refresh) - cut


async def _ask_by_id_if_any(run: Run, client: ApiClient, batch_ids: set[str]) -> bool:
    """`_refresh_by_id` for `batch_ids`, if any."""
    return not batch_ids or await _refresh_by_id(run, client, batch_ids)


async def _refreshed(run: Run) -> bool:
    """Close a refresh that went through every batch: warn of those neither by id nor in
    the list, count the asks for those another account's listing ended. True."""
    # Neither by id nor in the list: deleted, or a server out of step with itself.
    for batch_id in sorted(run.to_refresh - run.answered_gone):
        why = run.by_id_failures.get(batch_id, "requests by id are failing")
        run.note(f"batch {batch_id} was not refreshed: {why}; nor is it in the list")
    # Those another account's listing ended are asked a few times at most.
    await run.store.asked_for_ended(list(run.refresh_order))
    run.emit(
        REFRESH_DONE,
        refreshed_by_id=run.figures.refreshed_by_id,
        gone=run.figures.gone,
        not_refreshed=len(run.to_refresh),
    )
    return True


async def _count_gone(run: Run, batch_ids: set[str]) -> None:
    """Count this run as one answering 404 for each of `batch_ids`, answered 404 by two
    runs before and not in the list where a visit of this one looked: gone, asked no more."""
    if batch_ids:
        run.answered_gone.update(batch_ids)
        run.figures = run.figures.plus(gone=len(batch_ids))
        await run.save([], None, sorted(batch_ids))


async def _visit(run: Run, client: ApiClient, targets: set[str]) -> bool:
    """Read `targets` where the list holds them, keeping what the visits missed and where
    one stopped; False if the budget ran out first."""
    run.walk_targets = set(targets)
    visited = await run.pipeline(client, None)
    # The starts found gone are no start on the next runs either (each run on a budget
    # tried the same gone starts and was cut before the top; without a budget, each read
    # the list from the top), until a walk lists them again.
    await run.store.save_visits([*run.missed, *sorted(run.left_list)], run.visit_resume)
    return visited


async def _refresh_by_id(
    run: Run, client: ApiClient, batch_ids: set[str], *, first_once: bool = False
) -> bool:
    """Ask for each of `batch_ids` by id; False if the time budget ran out first.
    `first_once`: see refresh_by_id (not for those cut before, whose asks outlast it)."""
    once = await run.store.failed_by_id(batch_ids)
    end = await _ask_by_id(run, client, batch_ids, first_once, once)
    run.cut |= end.cut
    again = sorted(once & end.failed)
    if again:
        # Each waits out a timeout on every sync, said (92B).
        run.note(
            f"{len(again):,} batches in flight failed by id again on this sync (batch "
            f"{again[0]}: {run.by_id_failures[again[0]]}): asked once a sync until they "
            "answer, and looked for in the list"
        )
    # Failing alone, asked once next time: one whose every ask hangs cost every sync its
    # every retry (90B). Failing with the route, they are the route's.
    await run.store.save_asks_by_id(set() if end.route_failing else end.failed, end.answered)
    if end.out_of_time:
        # Next time from the list first: its retries may outlast every run's budget.
        await run.store.save_visits([], run.visit_resume, sorted(end.cut))
        return False
    if end.route_failing:
        if not run.walks_instead_of_by_id():
            run.note(
                "requests by id (GET /batches/{id}) kept failing while the list answered: "
                "in-flight batches are refreshed from the list instead, for a day"
            )
        await run.mark_by_id_failed(int(time.time()))
    elif run.by_id_failed_at is not None and (end.answered or not run.walks_instead_of_by_id()):
        await run.mark_by_id_failed(None)  # requests by id work again
    # One 404 is not the last word (a replica behind, a blip): a batch answered so is looked
    # for in the list too, where it may stand changed; listed, it is no longer counted gone.
    run.to_refresh -= end.answered - run.answered_gone
    return True


async def _ask_by_id(
    run: Run, client: ApiClient, batch_ids: set[str], first_once: bool, once: set[str]
) -> RefreshEnd:
    async def save(batches: Sequence[Batch], gone: Sequence[str]) -> None:
        run.answered_gone.update(gone)
        run.figures = run.figures.plus(refreshed_by_id=len(batches) + len(gone), gone=len(gone))
        await run.save(batches, None, gone)

    def skip(batch_id: str, error: ApiError) -> None:
        run.by_id_failures[batch_id] = str(error)

    return await refresh_by_id(
        client,
        [batch_id for batch_id in run.refresh_order if batch_id in batch_ids],
        concurrency=run.settings.concurrency,
        chunk=run.settings.page_size,
        save=save,
        skip=skip,
        time_left=run.time_left,
        first_once=first_once,
        once=once,
        check_api=lambda: _check_api(run, client, batch_ids),
    )


# The batches ended naming no file asked for first: should those answered name none (a
# route that never does), the others are counted asked without being asked.
FILE_PROBE = 10


async def _ask_for_files(run: Run, client: ApiClient) -> None:
    """Ask by id, newest first, for the batches ended naming no file (see
    Store.ended_without_files), each answer counted as it comes: counted once all were
    made, a time budget cutting them counted none, and every sync asked the same again, cut
    again, partial for good (pass 80B). They refresh nothing in flight: a budget cutting
    them leaves the run complete. Should the first FILE_PROBE answer, naming no file, the
    others are counted asked without asking (a gateway naming none was asked three times
    for every batch); should none of them tell (404s, refusals, copies behind, failures
    while a batch the list names answers by id), the others are asked; should none answer
    (the route failing), the others wait for the next sync (counted, they were never asked
    once the route healed, 81B).
    Failing, they say so and leave the run as it is (an outage failed a run whose walk and
    refresh were done, pass 82B)."""
    # Those whose last ask failed or was cut, after the others: a hang spent every sync's
    # budget before them (91B).
    failed_before = await run.store.failed_by_id(run.without_files)
    ordered = sorted(run.without_files, key=lambda batch_id: batch_id in failed_before)
    probe, rest = ordered[:FILE_PROBE], ordered[FILE_PROBE:]
    try:
        said = await _asked_for_files(run, client, probe, failed_before)
        if said in ("named", "unclear"):
            await _asked_for_files(run, client, rest, failed_before)
        elif said == "none named":
            await run.store.asked_for_files(rest)
    except FAILED_ANSWERS as exc:  # a refused key fails the run, as anywhere
        run.note(
            f"asking for the files of batches ended naming none failed ({exc}): asked next sync"
        )


async def _asked_for_files(
    run: Run, client: ApiClient, batch_ids: list[str], failed_before: set[str]
) -> Literal["named", "none named", "unclear", "unanswered"]:
    """Ask for `batch_ids` by id (see _ask_for_files): whether an answer named a file, none
    did, none could tell (404s, copies at an earlier stage: a cache behind, pass 83B), or
    none came (the route failing, or the time budget ran out). A 404 is counted as an answer
    and counts none gone (a route without them would have batches its list shows so), and
    so is a refusal or a failure the route answered after; a failure of the route, or a
    copy at an earlier stage, is not counted. Those `failed_before` (their last ask failed)
    are asked once."""
    named, answered, heard = False, False, False
    refused: list[str] = []
    failed: list[str] = []

    async def save(batches: Sequence[Batch], answered_404: Sequence[str]) -> None:
        nonlocal named, answered, heard
        # A copy at an earlier stage (a cache behind) is kept out, and says nothing of the
        # files: taken for an answer, the others were taken for a route naming none (83B),
        # and three syncs of them used up the batch's asks (84B).
        ended = [b for b in batches if is_terminal(b.get("status"))]
        named = named or any(b.get("output_file_id") or b.get("error_file_id") for b in ended)
        answered = answered or bool(ended)
        heard = True
        # Their 404s count no batch gone, nor refreshed (the summary said them refreshed,
        # none answered not found, 87B).
        run.figures = run.figures.plus(refreshed_by_id=len(batches))
        await run.save(batches, None)
        await run.store.asked_for_files([*(b["id"] for b in ended), *answered_404])

    def skip(batch_id: str, error: ApiError) -> None:
        run.by_id_failures[batch_id] = str(error)
        if isinstance(error, RateLimitedError):
            return
        (failed if isinstance(error, FAILED_ANSWERS) else refused).append(batch_id)

    end = await refresh_by_id(
        client,
        batch_ids,
        concurrency=run.settings.concurrency,
        chunk=1,  # counted as they come: a run killed before a page of them kept none (85B)
        save=save,
        skip=skip,
        time_left=run.time_left,
        once=failed_before,
        check_api=lambda: _check_api(run, client, batch_ids),
    )
    # Refused or failing (a 5xx, a hang, a broken answer) while the route answers others, a
    # batch is answered, counted: failing ones were asked again with every retry on every
    # sync, silently, for 30 days (86B, 89B). Not a 429: the key's load, no batch's
    # (counted, under a rate limit three syncs used up a batch's asks, 88B). Nor before the
    # route answered after them: one or two batches failing with the whole route made no
    # streak to check (90B), nor did those failing once it began shedding load (91B), and
    # three syncs of an outage used up their asks.
    unanswered = [*failed, *refused]
    verdict = None
    if end.unheard:
        # Out of time, they wait for the next sync's check.
        verdict = "unknown" if end.out_of_time else await _checked(run, client, batch_ids)
    heard = heard or end.route_answered or verdict == "answers"
    if end.route_failing or verdict == "route failing":
        # As the refresh does: retried on every sync, a failing route cost each a minute.
        # Its refusals are the route's, no answers (they used up every batch's, 85B).
        run.note(
            "requests by id (GET /batches/{id}) kept failing while the list answered: the "
            "files of batches ended naming none are asked for again in a day"
        )
        await run.mark_by_id_failed(int(time.time()))
        return "unanswered"
    # Failing or cut, asked once next time, after the others (91B).
    await run.store.save_asks_by_id(end.failed | end.cut, end.answered)
    for batch_id in sorted(end.cut):
        run.note(
            f"asking batch {batch_id} by id for its files outlasted the time budget: asked "
            "once, after the others, on the next syncs"
        )
    if verdict == "unknown":
        if end.out_of_time:
            return "unanswered"
        run.note(
            f"{len(unanswered):,} batches ended naming no file were not answered by id "
            f"({run.by_id_failures[unanswered[0]]}), and no other batch told whether "
            "requests by id work: asked again next sync, not counted"
        )
        return "unanswered"
    if failed:
        run.note(
            f"{len(failed):,} batches ended naming no file failed when asked for by id "
            f"({run.by_id_failures[failed[0]]}): each is asked on three syncs at most"
        )
    await run.store.asked_for_files(unanswered)
    if end.out_of_time or not heard:
        return "unanswered"
    if named:
        return "named"
    return "none named" if answered else "unclear"


async def _checked(run: Run, client: ApiClient, asking: Collection[str]) -> Verdict:
    """_check_api within the time budget left ("unknown" past it)."""
    try:
        return await before_deadline(_check_api(run, client, asking), run.time_left())
    except OutOfTime:
        return "unknown"


# The batches asked by id to tell whether the route answers, each failing: one may fail
# alone, as the batches checked for do. Stored batches failing by id before are passed
# over, so many at most.
_WITNESSES = 2
_MARKED_SKIPPED = 8


async def _check_api(run: Run, client: ApiClient, asking: Collection[str]) -> Verdict:
    """What batches failing by id in a row say (see refresh_by_id): the API down when its
    list fails too (a page of one, as any server takes: its error raised); else the by-id
    route failing, or those batches odd, as one of the newest _WITNESSES batches stored
    besides those `asking` and those failed by id (this run, or last asked) is answered by
    id (a 404 too: the route answers) or neither; "unknown" with no other batch stored, or
    a witness rate-limited (a 429 says the key is busy, not the route failing: marked, it
    waited a day, 88B)."""
    await client.fetch_page(None, 1)
    besides = {*asking, *run.by_id_failures}
    stored = await run.store.newest_ids(len(besides) + _WITNESSES + _MARKED_SKIPPED)
    stored = [batch_id for batch_id in stored if batch_id not in besides]
    # Not one failing by id before: newest, it condemned the route every day (92B).
    failed_before = await run.store.failed_by_id(stored)
    witnesses = [batch_id for batch_id in stored if batch_id not in failed_before]
    if not witnesses:
        return "unknown"
    rate_limited = False
    for witness in witnesses[:_WITNESSES]:
        try:
            await client.fetch_batch(witness)
        except RateLimitedError:
            rate_limited = True  # the key busy, or that batch alone: another is asked (93B)
        except ApiError:
            continue  # one failing alone condemns no route: another is asked (92B)
        else:
            return "answers"
    return "unknown" if rate_limited else "route failing"


async def _walk_and_refresh(run: Run, client: ApiClient, walk: WalkState) -> bool:
    """The list walk, then the refresh by id; False when a budget cut it short.

    A walk cut by the page budget leaves the batches stored in flight refreshed all the
    same (asks by id are no pages, and visits read a page or so at least): a list growing
    close to the budget between runs left every run's walk unfinished, and no batch was
    ever refreshed."""
    complete = await run.pipeline(client, walk)
    if run.to_refresh and (complete or not run.time_spent()):
        refreshed = await _refresh(run, client)
        complete = complete and refreshed
    elif run.to_refresh and not run.walks_instead_of_by_id():
        # A walk cut by the time budget on every run (a list growing faster than a run
        # reads it) left every batch in flight stale: one is asked for all the same, the
        # least recently seen or missed, those cut or answered 404 too (left out, one
        # failed ask left a batch out for as long as the list outgrew the runs).
        await _refresh_by_id(run, client, set(run.to_refresh), first_once=True)
    if run.without_files and not (run.time_spent() or run.walks_instead_of_by_id()):
        await _ask_for_files(run, client)
    return complete


async def _walk_and_fetch(run: Run, client: ApiClient, walk: WalkState) -> bool:
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
    if fetcher.key_refused:
        who = "identity (Entra ID)" if run.settings.auth == "entra" else "key"
        run.note(
            f"every request file asked for was refused (HTTP 403): this {who} may not read "
            f"files. Give it read access to files, or {_without_files(run)} for the batches "
            "alone",
            summary=True,
        )
    elif fetcher.no_files_route:
        run.note(
            "every request file asked for answered HTTP 404 for the path (GET "
            "/files/{id}/content): this API serves no request files at the files route. "
            f"Check the base URL, or {_without_files(run)} for the batches alone",
            summary=True,
        )
    elif fetcher.route_down:
        run.note(
            f"{FAILURES_IN_A_ROW} request files in a row failed past their retries (the "
            "files route seems down): the run stopped fetching files; the next sync goes on",
            summary=True,
        )
    if fetcher.cut_by_the_budget:
        run.note(_cut_by_the_budget([file.file_id for file in fetcher.cut_by_the_budget]))
        await run.store.put_files_last(fetcher.cut_by_the_budget)
    # Files no sync reads until the user acts: not complete, though each was asked.
    unreadable = fetcher.key_refused or fetcher.no_files_route
    return complete and files.result() and not unreadable


def _without_files(run: Run) -> str:
    """How to sync this account without files: where accounts are synced together,
    --no-files would stop those of the others too."""
    if run.store.accounts_in_run > 1:
        return f"set files = false in [accounts.{run.settings.account}]"
    return "sync with --no-files (files = false)"


def _cut_by_the_budget(file_ids: list[str]) -> str:
    """What to say of files the time budget ended in flight (downloading, or waiting to ask
    again): a file is read from its first line again, so one longer to download than the
    budget never completes under it."""
    some = ", ".join(file_ids[:3]) + (
        f" and {len(file_ids) - 3:,} more" if len(file_ids) > 3 else ""
    )
    return (
        f"the time budget (--max-seconds) ended {len(file_ids):,} files in flight ({some}: "
        "downloading, or waiting to ask again); each is read from its first line, after the "
        "other files, next sync, so a file that takes longer than the budget to download "
        "never completes: if these come back, give one sync more time, or none"
    )


@dataclass(frozen=True)
class RunOptions:
    """How every account of a sync runs (see `sync`)."""

    restart: bool
    full: bool
    on_event: EventHandler | None
    retry: RetryPolicy | None
    clock: Callable[[], float]
    # What every account's run masks: each account's key, and the tokens of those on Entra
    # ID, added as each run starts (a server may echo any account's to another's request).
    secrets: Secrets = field(default_factory=Secrets)


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
        if isinstance(exc, CrawlerError):  # one raised before the run masks its own, too
            mask_error(exc, Secrets(settings.api_key, options.secrets))
        tell_failure(on_event, exc, settings, options.secrets)
        raise


def tell_failure(
    on_event: EventHandler | None, error: BaseException, settings: Settings, secret: Secret
) -> None:
    """The run_failed event, with the account's key masked, and `secret` (the keys and
    tokens of the accounts synced with it: a server may quote any of them)."""
    if on_event is not None:
        event = failure_event(error, settings.api_key, secret)
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
    async with (
        create_session(settings) as session,
        entra_tokens(settings, options.secrets) as tokens,
    ):
        saved = None if options.restart else await store.load_walk()
        walk, mode = starting_walk(saved, restart=options.restart, full=options.full)
        if walk != saved:
            await store.save_walk(walk)
        run_id = await store.start_run(mode, settings.base_url)
        options.secrets.add(secrets_of_a_run(settings, tokens))
        secret = options.secrets.as_secret()
        run = Run(store, settings, run_id, on_progress, clock, started, secret, options.on_event)
        run.emit(
            RUN_STARTED,
            run_id=run_id,
            mode=mode,
            db=str(settings.db),
            host=urlsplit(settings.base_url).hostname,
            files=list(settings.file_kinds),
        )
        limiter = RateLimiter(settings.requests_per_minute)
        client = build_client(
            session,
            settings,
            retry=options.retry,
            on_retry=run.count_retry,
            limiter=limiter,
            auth=tokens,
            secret=secret,
        )
        if settings.file_kinds:
            run.fetcher = FileFetcher(
                client,
                store,
                kinds=settings.file_kinds,
                keep_body=settings.bodies,
                concurrency=settings.concurrency,
                on_outcome=run.file_done,
                time_left=run.budget_left,
                secret=secret,
            )
        outcome, error = "failed", None
        try:
            run.stored_mark = await store.last_rowid()
            run.by_id_failed_at = await store.by_id_failed_at()
            if mode != "full":
                # A resumed walk ends like an incremental one: the pages committed before
                # the interruption hold batches that may have moved on since.
                await _plan_refresh(store, run)
            # A full walk too: the list that left their file ids out leaves them out again.
            without_files = await store.ended_without_files()
            run.without_files = [i for i in without_files if i not in run.unsettled]
            complete = await _walk_and_fetch(run, client, walk)
            outcome = "complete" if complete else "partial"
        except CrawlerError as exc:
            # A message may quote what the server sent (a cursor, an id), which may echo
            # the key: it is masked before anyone sees it or the ledger keeps it.
            mask_error(exc, secret)
            error = str(exc)
            raise exc from None  # its cause (aiohttp's error) may quote the key unmasked
        except asyncio.CancelledError:
            outcome = "interrupted"
            raise
        except Exception as exc:
            # Not expected, but never a failed run with no word of why in its ledger row.
            error = mask_secret(f"unexpected {type(exc).__name__}: {exc}", secret)
            raise
        finally:
            run.figures = dataclasses.replace(
                run.figures,
                limiter_waits=limiter.waits,
                limiter_wait_seconds=round(limiter.waited, 3),
            )
            await close_run(store, run, outcome, error)
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
