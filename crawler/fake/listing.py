"""The pages of `GET /v1/batches`: the `limit` check, rendering, broken chains, a cache."""

from __future__ import annotations

import re
from typing import Any

from .data import FakeBatches
from .faults import build_envelope
from .flavors import Flavor
from .replies import encode

_INTEGER = re.compile(r"-?[0-9]+")
_RENDERED_MAX_BYTES = 1 << 30


def parse_limit(raw: str | None) -> int | dict[str, Any]:
    """Return the page size, or the 400 envelope explaining why it is refused."""
    if raw is None:
        return 20
    if not _INTEGER.fullmatch(raw):
        message = "Invalid type for 'limit': expected an integer, but got a string instead."
        return build_envelope(message, "invalid_request_error", "limit", "invalid_type")
    limit = int(raw)
    if limit > 100:
        message = (
            "Invalid 'limit': integer above maximum value. "
            f"Expected a value <= 100, but got {limit} instead."
        )
        return build_envelope(message, "invalid_request_error", "limit", "integer_above_max_value")
    if limit < 0:
        message = (
            "Invalid 'limit': integer below minimum value. "
            f"Expected a value >= 0, but got {limit} instead."
        )
        return build_envelope(message, "invalid_request_error", "limit", "integer_below_min_value")
    return limit


class ListPages:
    """The bodies of list pages, broken as `broken_pagination` asks.

    Rendered pages are kept while the data holds still, so that repeated walks (a
    benchmark's runs) measure the client rather than the data generator.
    """

    def __init__(self, data: FakeBatches, broken_pagination: str | None, flavor: Flavor) -> None:
        self.data = data
        self._flavor = flavor
        self._mode = broken_pagination
        self._rendered: dict[tuple[int | None, int], bytes] = {}
        self._rendered_bytes = 0
        self._rendered_at = data.clock

    def body(self, after_index: int | None, limit: int) -> bytes:
        """The body of the page of `limit` batches strictly after index `after_index`."""
        if self._rendered_at != self.data.clock:  # the data moved since these were rendered
            self._rendered.clear()
            self._rendered_bytes = 0
            self._rendered_at = self.data.clock
        body = self._rendered.get((after_index, limit))
        if body is None:
            body = self._render(after_index, limit)
            if self._rendered_bytes + len(body) <= _RENDERED_MAX_BYTES:
                self._rendered[after_index, limit] = body
                self._rendered_bytes += len(body)
        return body

    def _render(self, after_index: int | None, limit: int) -> bytes:
        data = self.data
        indices, has_more = data.page(after_index, limit)
        mode = self._mode
        # Page 3 on (by position): cursor offset of two pages or more.
        late = limit > 0 and (0 if after_index is None else len(data) - after_index) >= 2 * limit
        if late and mode == "empty-has-more":
            indices, has_more = [], True
        elif late and mode == "stuck-cursor":
            indices, has_more = data.page(len(data) - 2 * limit, limit)[0], True
        items = [self._flavor.batch(data.batch(i)) for i in indices]
        last_id = items[-1]["id"] if items else None
        if mode == "wrong-last-id" and indices:
            last = indices[-1]
            last_id = data.batch_id(last - 1 if last > 0 else last + 1)
        page = {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": last_id,
            "has_more": has_more,
        }
        return encode(self._flavor.page(page))
