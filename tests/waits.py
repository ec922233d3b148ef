"""Waiting on what the product did, never on the clock: poll until a condition holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Only a hang guard: a condition that never comes true fails the test instead of hanging it.
HANG_GUARD = 120.0


async def until(condition: Callable[[], bool], *, unless: Callable[[], bool] | None = None) -> bool:
    """Poll until `condition` holds (True), or until `unless` does (False), whichever first."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            if condition():
                return True
            if unless is not None and unless():
                return False
            await asyncio.sleep(0.005)
