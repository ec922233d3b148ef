"""The list walk on its own, as async iterators, for pipelines that load the batches elsewhere.

The same client as `sync` (retries, rate limiter, timeouts, key scrubbing) and the same
cursor guards (a chain that loops or ends early raises PaginationError); no database, so
no resume: the list is newest first, so a pipeline continues an interrupted walk by passing
the last id it loaded as `after`, and loads only what is new by stopping at the newest id
its last run loaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from .api import RetryEvent, RetryPolicy, build_client, create_session, secrets_of_a_run
from .config import Settings
from .entra import entra_tokens
from .errors import ConfigError, CrawlerError
from .events import WARNING, Event, EventHandler, retry_event
from .pages import Batch, BatchPage, walk_pages
from .redact import mask_error, mask_secret


async def iter_pages(
    settings: Settings,
    *,
    after: str | None = None,
    on_event: EventHandler | None = None,
    retry: RetryPolicy | None = None,
) -> AsyncGenerator[BatchPage, None]:
    """Every page of `GET /batches`, newest first, from the top or from after batch `after`.

    `settings.page_size`, the retry and timeout settings and `requests_per_minute` apply;
    the sync's budgets and database settings do not (stop by leaving the loop).
    `on_event` receives the `retry`, `rate_limited` and `warning` events.

    Raises:
        ConfigError: no API key.
        ApiError: the API refused, or kept failing past the retry budget.
        PaginationError: the cursor chain loops or ends early.
    """
    if not settings.has_credentials:
        raise ConfigError(settings.missing_key_message())
    try:
        async with create_session(settings) as session, entra_tokens(settings) as tokens:
            secret = secrets_of_a_run(settings, tokens)

            def tell_retry(event: RetryEvent) -> None:
                if on_event is not None:
                    on_event(retry_event(event, secret))

            client = build_client(
                session, settings, retry=retry, on_retry=tell_retry, auth=tokens, secret=secret
            )
            steps = walk_pages(client.fetch_page, after=after, limit=settings.page_size)
            async with contextlib.aclosing(steps):
                try:
                    async for step in steps:
                        for warning in step.warnings:
                            if on_event is not None:
                                message = mask_secret(warning, secret)
                                on_event(Event(WARNING, {"message": message}, "warning"))
                        yield step.page
                except CrawlerError as exc:
                    # It may quote what the server sent, and so may its cause (aiohttp's error,
                    # a URL the server named): masked, and the cause left behind, as sync does.
                    mask_error(exc, secret)
                    raise exc from None
    except CrawlerError as exc:  # one raised before the walk (a proxy, the credential)
        mask_error(exc, settings.api_key)
        raise exc from None


async def iter_batches(
    settings: Settings,
    *,
    after: str | None = None,
    on_event: EventHandler | None = None,
    retry: RetryPolicy | None = None,
) -> AsyncGenerator[Batch, None]:
    """Every batch the list walk yields, newest first, each a Batch object as the API sent
    it (a dict); see `iter_pages`, whose arguments and errors these are."""
    pages = iter_pages(settings, after=after, on_event=on_event, retry=retry)
    async with contextlib.aclosing(pages):
        async for page in pages:
            for batch in page.batches:
                yield batch
