"""The SQLite edge, by job: the file and its lock (`files`), the schema and its migrations
(`schema`), the SQL of writes (`writes`) and of reads (`reads`). Every SQL statement of
batch-crawler lives in this package."""

from .files import check_file, is_a_database, lock_path, sync_is_running
from .reads import Reader, open_reader
from .requests import FileToFetch
from .writes import PageCounts, Store, open_store

__all__ = [
    "FileToFetch",
    "PageCounts",
    "Reader",
    "Store",
    "check_file",
    "is_a_database",
    "lock_path",
    "open_reader",
    "open_store",
    "sync_is_running",
]
