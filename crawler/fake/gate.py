"""Gates on list requests and file contents, so that a test can stop a client at a known point."""

from __future__ import annotations

import asyncio

from .faults import FakeApiStats


class ListGate:
    """Let a given number of list requests through, then hold the following ones.

    A held request waits before the server has done anything for it (no page served, no
    data moved), until `release()`. Open until `hold` is called.
    """

    def __init__(self, stats: FakeApiStats) -> None:
        self._stats = stats
        self._passes: int | None = None  # requests still let through; None while open
        self._open = asyncio.Event()
        self._open.set()

    def hold(self, after: int) -> None:
        """Let `after` more list requests through, then hold every following one."""
        if after < 0:
            raise ValueError(f"after must be >= 0, got {after}")
        self._passes = after
        self._open.clear()

    def release(self) -> None:
        """Let every held request go on, and open the gate."""
        self._passes = None
        self._open.set()

    async def enter(self) -> None:
        """Return once this request may be answered."""
        if self._passes is None:
            return
        if self._passes > 0:
            self._passes -= 1
            return
        self._stats.held += 1
        await self._open.wait()


class FileGate:
    """Hold every file's content part-way: once `lines` lines of it are sent, until
    `release()`. Open until `hold` is called."""

    def __init__(self) -> None:
        self._lines: int | None = None
        self._open = asyncio.Event()
        self._open.set()

    def hold(self, lines: int) -> None:
        """Stop every content response once it has sent `lines` lines."""
        if lines < 0:
            raise ValueError(f"lines must be >= 0, got {lines}")
        self._lines = lines
        self._open.clear()

    def release(self) -> None:
        """Let every held response go on, and hold no more."""
        self._lines = None
        self._open.set()

    async def pass_at(self, sent: int) -> None:
        """Return once a response that has sent `sent` lines may go on."""
        if self._lines is not None and sent >= self._lines:
            await self._open.wait()
