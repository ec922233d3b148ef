"""batch-crawler: copy an organization's OpenAI Batches into SQLite.

import asyncio
from crawler import Settings, sync

result = asyncio.run(sync(Settings(db="batches.db", api_key="sk-...")))

The names below load with their modules on first use, not with the package: the command's
entry point (`crawler.launch`) then imports nothing heavy before it can catch a Ctrl-C.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers and editors; at run time, __getattr__ below
    from .accounts import AccountOutcome, sync_accounts
    from .api import RetryPolicy
    from .config import Settings, load_accounts, load_settings
    from .errors import (
        ApiError,
        AuthenticationError,
        ConfigError,
        CrawlerError,
        DatabaseBusyError,
        DatabaseError,
        PaginationError,
        UnstorableBatchError,
    )
    from .events import Event
    from .pages import BatchPage
    from .runs import Progress, SyncResult
    from .stream import iter_batches, iter_pages
    from .sync_run import sync

# The public names, by the module that defines them.
_MODULES = {
    "AccountOutcome": "accounts",
    "sync_accounts": "accounts",
    "RetryPolicy": "api",
    "Settings": "config",
    "load_accounts": "config",
    "load_settings": "config",
    "ApiError": "errors",
    "AuthenticationError": "errors",
    "ConfigError": "errors",
    "CrawlerError": "errors",
    "DatabaseBusyError": "errors",
    "DatabaseError": "errors",
    "PaginationError": "errors",
    "UnstorableBatchError": "errors",
    "Event": "events",
    "BatchPage": "pages",
    "Progress": "runs",
    "SyncResult": "runs",
    "iter_batches": "stream",
    "iter_pages": "stream",
    "sync": "sync_run",
}

__all__ = [
    "AccountOutcome",
    "ApiError",
    "AuthenticationError",
    "BatchPage",
    "ConfigError",
    "CrawlerError",
    "DatabaseBusyError",
    "DatabaseError",
    "Event",
    "PaginationError",
    "Progress",
    "RetryPolicy",
    "Settings",
    "SyncResult",
    "UnstorableBatchError",
    "__version__",
    "iter_batches",
    "iter_pages",
    "load_accounts",
    "load_settings",
    "sync",
    "sync_accounts",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return __all__
