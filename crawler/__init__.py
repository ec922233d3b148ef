"""batch-crawler: copy an organization's OpenAI Batches into SQLite.

import asyncio
from crawler import Settings, sync

result = asyncio.run(sync(Settings(db="batches.db", api_key="sk-...")))
"""

__version__ = "0.1.0"

from .api import RetryPolicy
from .config import Settings, load_settings
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
from .runs import Progress, SyncResult
from .sync import sync

__all__ = [
    "ApiError",
    "AuthenticationError",
    "ConfigError",
    "CrawlerError",
    "DatabaseBusyError",
    "DatabaseError",
    "PaginationError",
    "Progress",
    "RetryPolicy",
    "Settings",
    "SyncResult",
    "UnstorableBatchError",
    "__version__",
    "load_settings",
    "sync",
]
