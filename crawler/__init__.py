"""batch-crawler: copy an organization's OpenAI Batches into SQLite.

import asyncio
from crawler import Settings, sync

result = asyncio.run(sync(Settings(db="batches.db", api_key="sk-...")))
"""

__version__ = "0.1.0"

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
from .sync import sync

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
