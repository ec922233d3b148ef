"""A local fake of the OpenAI Batches API: the demo, the tests and the benchmarks run on it.

`FakeApiServer` serves `FakeBatches` (synthetic batches, generated on demand from a seed) on a
loopback port with the fault knobs of `FakeApiOptions`; `serve` runs it until cancelled
(`batch-crawler fake-api`). Modules: `server` (the aiohttp app), `options`, `listing` (list
pages), `files` (output and error file routes), `replies` (answers and error bodies), `gate`
(holding requests for tests), `data`, `content` (the fields of one batch), `lines` (the lines
of its files), `ids` (batch and file ids), `faults`.
"""

from __future__ import annotations

from .data import FakeBatches
from .faults import FakeApiStats
from .flavors import AZURE_API_VERSIONS, FLAVORS
from .ids import ID_STYLES, IdStyle
from .options import BAD_PAGE_MODES, BROKEN_PAGINATION_MODES, FakeApiOptions
from .server import FakeApiServer, serve

__all__ = [
    "AZURE_API_VERSIONS",
    "BAD_PAGE_MODES",
    "BROKEN_PAGINATION_MODES",
    "FLAVORS",
    "ID_STYLES",
    "FakeApiOptions",
    "FakeApiServer",
    "FakeApiStats",
    "FakeBatches",
    "IdStyle",
    "serve",
]
