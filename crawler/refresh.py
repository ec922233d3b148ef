"""Refreshing batches one by one (`GET /batches/{id}`), several at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

from .api import ApiClient
from .errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    BrokenResponseError,
    ServerError,
    TransportError,
    UnknownRouteError,
    first_exception,
)
from .pages import Batch

# Batches whose retries ran out one after the other, with no answer between, before the
# refresh checks whether the API itself is failing.
FAILURES_IN_A_ROW = 3

SaveChunk = Callable[[Sequence[Batch], Sequence[str]], Awaitable[None]]


async def refresh_by_id(
    client: ApiClient,
    batch_ids: Iterable[str],
    *,
    concurrency: int,
    chunk: int,
    save: SaveChunk,
    skip: Callable[[str, ApiError], None],
    stop: Callable[[], bool] = lambda: False,
    api_answers: Callable[[], Awaitable[bool]],
) -> bool:
    """Fetch each batch by id with `concurrency` workers and save them `chunk` at a time.

    Returns False when `stop()` said so before every batch was fetched (a time budget).

    `save(batches, gone_ids)` receives the batches fetched and the ids the API answered 404
    for; each call is one transaction, so an interruption loses at most the unsaved chunk,
    which the next sync fetches again. Writes happen one at a time, in no set order.

    `skip(batch_id, error)` hears of a batch whose own answer was refused (a 4xx other
    than 404, a 403 for this batch alone, a 404 for its path, a body that is not a batch):
    it is left as it is stored and the others go on, so that one batch cannot block the
    sync; so is one whose retries ran out (a 5xx, a timeout). After FAILURES_IN_A_ROW of
    those, `api_answers()` asks the API something else: if that fails too, the API is down
    and the refresh ends. Errors of the API as a whole (a bad key, quota) end it too, once
    the batches already fetched are saved.
    """
    pending = iter(batch_ids)
    fetched: list[Batch] = []
    gone: list[str] = []
    write_lock = asyncio.Lock()

    async def flush() -> None:
        async with write_lock:
            if fetched or gone:
                batches, missing = fetched[:], gone[:]
                fetched.clear()
                gone.clear()
                await save(batches, missing)

    stopped = False
    failing_in_a_row = 0

    async def worker() -> None:
        nonlocal stopped, failing_in_a_row
        for batch_id in pending:  # the iterator is shared: each id goes to one worker
            if stop():
                stopped = True
                return
            try:
                batch = await client.fetch_batch(batch_id)
            except ApiError as exc:
                if not _about_this_batch(exc):
                    if not isinstance(exc, ServerError | TransportError):
                        raise
                    # Retries spent on one batch: that batch's trouble, unless the next
                    # ones fail too, which is the API's.
                    failing_in_a_row += 1
                    if failing_in_a_row >= FAILURES_IN_A_ROW:
                        if not await api_answers():
                            raise
                        failing_in_a_row = 0  # the API answers: these batches are odd
                skip(batch_id, exc)
                continue
            failing_in_a_row = 0
            if batch is None:
                gone.append(batch_id)
            else:
                fetched.append(batch)
            if len(fetched) + len(gone) >= chunk:
                await flush()

    try:
        async with asyncio.TaskGroup() as workers:
            for _ in range(concurrency):
                workers.create_task(worker())
    except BaseExceptionGroup as group:
        error = first_exception(group)
        if isinstance(error, ApiError):
            await flush()  # the answers fetched before it are still good
        raise error from None
    await flush()
    return not stopped


def _about_this_batch(error: ApiError) -> bool:
    """Whether a refusal is about one batch, not the API: a 4xx other than 404 (a 403
    too, since the list was read with this key; a 401 is about the key), a 404 for its
    path, a body that is not that batch."""
    if isinstance(error, AuthenticationError):
        return error.status == 403
    return isinstance(error, BadRequestError | BrokenResponseError | UnknownRouteError)
