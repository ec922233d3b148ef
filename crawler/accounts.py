"""Several accounts synced into one database at once, one failing while the others finish."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .api import RetryPolicy
from .config import Settings, check_accounts
from .errors import ConfigError, CrawlerError, first_exception
from .events import EventHandler
from .redact import Secrets, mask_error
from .runs import Progress, SyncResult
from .store import Store, open_store
from .sync_run import RunOptions, sync_account, tell_failure


@dataclass(frozen=True)
class AccountOutcome:
    """How one account's sync ended: its result, or the error that ended it."""

    account: str
    result: SyncResult | None = None
    error: CrawlerError | None = None


async def sync_accounts(
    accounts: Sequence[Settings],
    *,
    restart: bool = False,
    full: bool = False,
    on_progress: Callable[[str, Progress], None] | None = None,
    on_event: EventHandler | None = None,
    retry: RetryPolicy | None = None,
    clock: Callable[[], float] = time.monotonic,
    also_masked: Sequence[str] = (),
) -> list[AccountOutcome]:
    """Sync several accounts into their one database at once, each with its own walk,
    resume, rate limiter and ledger rows: one failing leaves the others to finish.

    Every event names its account; `on_progress` receives the account's name too. Each
    account's key is masked in all the accounts' runs, as are `also_masked` (the keys of
    accounts not synced this time): a gateway may echo another account's key.

    Raises:
        ConfigError: the accounts break a rule between them (see check_accounts).
        DatabaseError: the database is busy, not ours, or broken.
    """
    options = RunOptions(
        restart, full, on_event, retry, clock, Secrets(*(a.api_key for a in accounts), *also_masked)
    )
    check_accounts(accounts)  # settings made by hand, not read by load_accounts
    if not accounts:
        return []

    async def one(store: Store, settings: Settings) -> AccountOutcome:
        name = settings.account
        progress = None if on_progress is None else functools.partial(on_progress, name)
        try:
            if not settings.has_credentials:
                raise ConfigError(settings.missing_key_message())
            result = await sync_account(store, settings, progress, options)
        except CrawlerError as exc:
            # One raised before the run masks its own (a proxy, a credential refusing its
            # settings) may quote any account's key.
            mask_error(exc, options.secrets)
            tell_failure(on_event, exc, settings, options.secrets)
            return AccountOutcome(name, error=exc)
        return AccountOutcome(name, result)

    try:
        async with open_store(accounts[0].db) as store, asyncio.TaskGroup() as tasks:
            # Every account's view is made here, before any task runs: each knows the
            # files the others ask for from the start (see Store.files_to_fetch); one
            # without credentials asks for none.
            running = [
                tasks.create_task(
                    one(
                        store.for_account(
                            settings.account,
                            kinds=settings.file_kinds if settings.has_credentials else (),
                            bodies=settings.bodies,
                        ),
                        settings,
                    )
                )
                for settings in accounts
            ]
    except BaseExceptionGroup as group:
        raise first_exception(group) from None
    return [task.result() for task in running]
