"""Creation and other times as the API sends them, and as compatible servers do."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any


def unix_seconds(value: Any) -> int | None:
    """Whole unix seconds from a time as the API sends it (an integer), or as compatible
    servers do: a float, or text ("1714000000", "1714000000.5", ISO 8601, UTC unless it
    says otherwise); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    return _text_seconds(value) if isinstance(value, str) else None


def _text_seconds(text: str) -> int | None:
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())
