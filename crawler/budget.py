"""A run's time budget, kept while a request is in flight too."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class OutOfTime(Exception):
    """The time budget ran out while a request was in flight: it was abandoned."""


def spent(seconds_left: float | None) -> bool:
    """Whether a time budget with `seconds_left` (None: no budget) has run out."""
    return seconds_left is not None and seconds_left <= 0


async def before_deadline(request: Coroutine[Any, Any, T], seconds_left: float | None) -> T:
    """`request`'s answer, or OutOfTime once `seconds_left` have passed (None: no limit).

    A request that hangs (a silent server, retries after timeouts) would otherwise keep
    a run minutes past `--max-seconds`; abandoning a read loses nothing stored. With no
    time left, the request is not sent.
    """
    if seconds_left is None:
        return await request
    if seconds_left <= 0:
        request.close()
        raise OutOfTime
    timeout = asyncio.timeout(seconds_left)
    try:
        async with timeout:
            return await request
    except TimeoutError:
        if timeout.expired():
            raise OutOfTime from None
        raise
