"""JSON in and out of the hot path: orjson, with the standard library for what it refuses.

orjson parses a page about 2.5 times and serializes a batch about 10 times faster than the
json module (measured on this project's pages; see the README's Performance section).
It refuses to write integers wider than 64 bits, so those fall back to the json module; it
reads an integer wider than 64 bits as a float, which no field of this API comes near.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any, TypeGuard

import orjson

# How deep orjson reads; the json module, on a deep stack, reads and writes somewhat less.
MAX_DEPTH = 1024


class TooDeepError(ValueError):
    """JSON nested too deeply to read: the same document sent again would fail again."""


def parse(body: bytes | bytearray | str) -> Any:
    """Decode a JSON document.

    Raises:
        TooDeepError: it is nested deeper than either parser goes.
        ValueError: it is not JSON.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return json.loads(body, parse_int=_integer)
        except RecursionError:
            raise TooDeepError("nested too deeply to read") from None


def _integer(digits: str) -> int | float:
    """A JSON integer: one of more digits than Python converts (4,300, a conversion whose
    time grows with their square) is a float, as orjson reads a wide one, rather than a
    document refused (a batch so counted stopped every walk at its page)."""
    if len(digits) <= _INT_DIGITS:
        return int(digits)
    return float(digits)


_INT_DIGITS = sys.get_int_max_str_digits() or 4300


def is_json(body: bytes | bytearray | str) -> bool:
    """Whether `body` is a JSON document (see parse)."""
    try:
        parse(body)
    except ValueError:
        return False
    return True


def to_text(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as it is, for anything `parse` returns."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson writes only 254 levels, and no integer wider than 64 bits
        try:
            return _json_text(value)
        except RecursionError:
            # What orjson read (up to MAX_DEPTH levels) must be written back, not crash.
            with _recursion_limit(sys.getrecursionlimit() + 2 * MAX_DEPTH):
                return _json_text(value)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@contextlib.contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def is_storable_text(value: Any) -> TypeGuard[str]:
    """Whether `value` is non-empty text that SQLite and a URL can carry (UTF-8 encodable:
    a str decoded from JSON holds a lone surrogate when its escape came alone)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
