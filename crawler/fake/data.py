"""Deterministic synthetic OpenAI Batch objects for the fake API (pure, no I/O).

Batch number i (0 = oldest) is a pure function of (seed, i), generated on demand: a million
batches cost no memory. Only batches changed by `add_batches` or `advance_statuses` are kept,
as overrides. Listing order is newest first, i.e. index `len - 1` first.

Content follows the reference: in-flight statuses only within 24 h of `now`, terminal ones
before; `model` is absent on the oldest 30 %, `usage` absent there and null up to 40 %; a few
batches carry `x_future_field` or the unknown status `paused_for_review`. Terminal request
counts add up (completed + failed == total); in-flight ones are partial. A terminal batch names
an output file when some requests completed and an error file when some failed; both are
served from `file_source` (see `crawler.fake.lines`).
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterator
from typing import Any

from .content import (
    DAY,
    ENDPOINTS,
    FORCED,
    IN_FLIGHT,
    MODELS,
    NEXT,
    OLD,
    RECENT,
    TERMINAL,
    UNKNOWN_STATUS,
    build_metadata,
    build_usage,
    draw_final_failed,
    draw_total,
    fill_progress,
)
from .ids import BatchIds, FileIds, IdStyle, build_opaque_file_id, derive_key, mix
from .lines import FileSource

_SPAN = 180 * DAY  # history length when batches are sparse enough
_M64 = (1 << 64) - 1
_ODD = 0x9E3779B97F4A7C15
_ODD2 = 0xD6E8FEB86659FD93


class FakeBatches:
    """The fake server's dataset: `count` batches generated lazily from (seed, index).

    `ids` picks how batch ids are spelled (see `crawler.fake.ids`); the content is the same.
    `requests_per_batch` gives every batch that many requests (a large file on demand).
    """

    def __init__(
        self,
        count: int,
        seed: int = 0,
        now: int = 1_767_225_600,
        ids: IdStyle = "realistic",
        requests_per_batch: int | None = None,
    ) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if requests_per_batch is not None and requests_per_batch < 1:
            raise ValueError(f"requests_per_batch must be >= 1, got {requests_per_batch}")
        self.seed = seed
        self.ids = BatchIds(seed, ids)
        self.files = FileIds(seed)
        self.requests_per_batch = requests_per_batch
        self.now = now
        self.clock = now  # the fake "current time": moves 1 s per add/advance call
        self._base = count  # generation depends on the original count only
        self._count = count
        self._overrides: dict[int, dict[str, Any]] = {}
        self._in_flight: deque[int] | None = None
        self._k_content = derive_key(seed, 3)
        self._k_time = derive_key(seed, 4)
        self._k_lines = derive_key(seed, 6)
        self._k_tie = derive_key(seed, 7)
        self._gap = max(2, min(900, _SPAN // max(count, 1)))
        self._t0 = now - count * self._gap
        self._no_model = count * 3 // 10
        self._null_usage = count * 4 // 10

    def __len__(self) -> int:
        """Return how many batches exist now (added ones included)."""
        return self._count

    # -- identity ---------------------------------------------------------------------------

    def batch_id(self, i: int) -> str:
        """Return the id of batch i."""
        override = self._overrides.get(i)
        if override is not None:  # an added batch: its id tells its own creation second
            return str(override["id"])
        return self.ids.build(self.ids.word(i), self._created_at(i))

    def index_of(self, batch_id: str) -> int | None:
        """Map a batch id back to its index in O(1), or None for an id this dataset never had."""
        word = self.ids.parse(batch_id)
        if word is None:
            return None
        i = self.ids.index(word)
        # Re-encoding rejects other seeds' ids, wrong seconds and lenient hex spellings.
        return i if i < self._count and self.batch_id(i) == batch_id else None

    # -- reading ----------------------------------------------------------------------------

    def change(self, i: int, **fields: Any) -> None:
        """Set fields of batch i, as the API would show them from now on (tests plant
        a straggler in flight deep in the history this way)."""
        self.clock += 1
        self._overrides[i] = {**self.batch(i), **fields}

    def batch(self, i: int) -> dict[str, Any]:
        """Return batch i in its current state, as a fresh dict the caller may keep or change."""
        if not 0 <= i < self._count:
            raise IndexError(f"batch index {i} out of range 0..{self._count - 1}")
        override = self._overrides.get(i)
        if override is not None:
            return copy.deepcopy(override)
        return self._generate(i)

    def page(self, after: int | None, limit: int) -> tuple[list[int], bool]:
        """Return the indices of one list page strictly after index `after`, and `has_more`."""
        start = self._count - 1 if after is None else after - 1
        indices = list(range(start, max(start - limit, -1), -1))
        # limit=0 still reports whether anything is left after the cursor.
        return indices, (indices[-1] if indices else start + 1) > 0

    def snapshot(self) -> Iterator[dict[str, Any]]:
        """Yield every batch in its current state, newest first."""
        for i in range(self._count - 1, -1, -1):
            yield self.batch(i)

    def file_source(self, file_id: str) -> FileSource | None:
        """Return what the lines of a file are drawn from, or None unless a terminal batch
        names that file now."""
        found = self.files.parse(file_id)
        if found is None or found[0] >= self._count:
            return None
        i, kind = found
        b = self._overrides.get(i) or self._generate(i)
        if b["status"] not in TERMINAL or b.get(f"{kind}_file_id") != file_id:
            return None
        r = self._words(i)[1]
        endpoint_kind = (r >> 10) & 3
        counts = b["request_counts"]
        return FileSource(
            file_id=file_id,
            kind=kind,
            batch_id=b["id"],
            status=b["status"],
            endpoint=b["endpoint"],
            model=b.get("model") or MODELS[endpoint_kind][(r >> 12) & 3],
            created_at=b.get(f"{b['status']}_at") or b["created_at"],  # when the batch ended
            total=counts["total"],
            failed=counts["failed"],
            usage_word=r,
            key=mix(i ^ self._k_lines),
        )

    # -- moving target ----------------------------------------------------------------------

    def add_batches(self, k: int) -> None:
        """Add k new validating batches at the head, created at the current fake time."""
        self.clock += 1
        for _ in range(k):
            i = self._count
            self._count += 1
            self._overrides[i] = self._generate(i, fresh_at=self.clock)
            if self._in_flight is not None:
                self._in_flight.append(i)

    def advance_statuses(self, k: int) -> None:
        """Move up to k in-flight batches one step on (round robin, oldest first)."""
        self.clock += 1
        if self._in_flight is None:
            self._in_flight = self._scan_in_flight()
        queue = self._in_flight
        for _ in range(min(k, len(queue))):
            i = queue.popleft()
            current = self._overrides.get(i) or self._generate(i)
            self._overrides[i] = self._step(i, current)
            if current["status"] in IN_FLIGHT:
                queue.append(i)

    def _scan_in_flight(self) -> deque[int]:
        """Find every in-flight batch: only the last 24 h can hold one, so scan just those."""
        lo, hi = 0, self._base
        cutoff = self.now - DAY
        while lo < hi:
            mid = (lo + hi) // 2
            if self._created_at(mid) > cutoff:
                hi = mid
            else:
                lo = mid + 1
        return deque(
            i
            for i in range(lo, self._count)
            if (self._overrides.get(i) or self._generate(i))["status"] in IN_FLIGHT
        )

    def _step(self, i: int, b: dict[str, Any]) -> dict[str, Any]:
        """Advance batch dict b one status step in place, keeping every field consistent."""
        _, r, r2, _ = self._words(i)
        status = b["status"]
        total = draw_total(r2, self.requests_per_batch)
        counts = b["request_counts"] or {"total": total, "completed": 0, "failed": 0}
        if status == "validating":
            b["in_progress_at"] = self.clock
            counts = {"total": total, "completed": 0, "failed": 0}
        elif status == "in_progress":
            b["finalizing_at"] = self.clock
            failed = draw_final_failed(total, r2)
            counts = {"total": total, "completed": total - failed, "failed": failed}
        elif status == "finalizing":
            b["completed_at"] = self.clock
        elif status == "cancelling":
            b["cancelled_at"] = self.clock
            done = counts["completed"]
            counts = {"total": counts["total"], "completed": done, "failed": counts["total"] - done}
        b["status"] = NEXT[status]
        b["request_counts"] = counts
        if b["status"] in TERMINAL:
            self._set_files(i, b)
        if b.get("usage") is not None:
            b["usage"] = build_usage(r, counts["completed"], b["endpoint"], b.get("model") or "")
        return b

    # -- generation -------------------------------------------------------------------------

    def _words(self, i: int) -> tuple[int, int, int, int]:
        """Return the id word and three random words of batch i."""
        hi = self.ids.word(i)
        r = mix(hi ^ self._k_content)
        # Content only needs to look random: one multiply per extra word instead of a `mix`.
        r2 = ((r ^ (r >> 29)) * _ODD) & _M64
        return hi, r, r2, ((r2 ^ (r2 >> 31)) * _ODD2) & _M64

    def _created_at(self, i: int) -> int:
        """Creation second of generated batch i: non-decreasing in i, with some ties."""
        j = i
        # About 1 in 64 batches (and always n // 3) shares its predecessor's second.
        # Multiplicative hashes are enough here and cost a tenth of `mix`.
        if (i > 0 and (((i ^ self._k_tie) * _ODD) & _M64) >> 58 == 0) or i == self._base // 3 > 0:
            j = i - 1
        return self._t0 + j * self._gap + (((j ^ self._k_time) * _ODD) & _M64) % (self._gap // 2)

    def _set_files(self, i: int, b: dict[str, Any]) -> None:
        """Set output/error file ids from the final request counts: a file only when it has
        lines (a batch whose every request failed has no output file)."""
        counts = b["request_counts"] or {"completed": 0, "failed": 0}
        b["output_file_id"] = self.files.build(i, "output") if counts["completed"] else None
        b["error_file_id"] = self.files.build(i, "error") if counts["failed"] else None

    def _roll_status(self, i: int, r: int, recent: bool) -> str:
        """Pick the status of generated batch i; only recent batches may still be moving."""
        n = self._base
        if recent:
            return FORCED[n - 1 - i] if i >= n - 4 else RECENT[r & 1023]
        if i == n // 2 or (r >> 22) & 4095 >= 4090:
            return UNKNOWN_STATUS
        return OLD[r & 1023]

    def _generate(self, i: int, fresh_at: int | None = None) -> dict[str, Any]:
        """Build batch i from scratch; `fresh_at` makes it a just-created validating batch."""
        hi, r, r2, r3 = self._words(i)
        if fresh_at is None:
            c = self._created_at(i)
            limit = min(self.now, c + DAY)  # nothing happened after now or after expiry
            status = self._roll_status(i, r, recent=c + DAY > self.now)
        else:
            c = limit = fresh_at
            status = "validating"
        kind = (r >> 10) & 3
        model = MODELS[kind][(r >> 12) & 3]
        b: dict[str, Any] = {
            "id": self.ids.build(hi, c),
            "object": "batch",
            "endpoint": ENDPOINTS[kind],
            "errors": None,
            "input_file_id": build_opaque_file_id(r2 << 64 | r3),
            "completion_window": "24h",
            "status": status,
            "output_file_id": None,
            "error_file_id": None,
            "created_at": c,
            "in_progress_at": None,
            "expires_at": c + DAY,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": None,
            "metadata": build_metadata(r, i),
        }
        total = draw_total(r2, self.requests_per_batch)
        fill_progress(b, total=total, limit=limit, now=self.now, r2=r2, r3=r3, model=model)
        counts = b["request_counts"]
        if status in TERMINAL:
            self._set_files(i, b)
        if i >= self._no_model:
            b["model"] = model
            in_usage = i >= self._null_usage
            b["usage"] = (
                build_usage(r, counts["completed"] if counts else 0, b["endpoint"], model)
                if in_usage
                else None
            )
        if i == self._base // 2 + 1 or (r >> 22) & 4095 < 40:
            b["x_future_field"] = {"tier": "flex", "reason": "a field newer than any client"}
        return b
