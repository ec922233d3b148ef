"""The content of one fake batch: status tables, progress, usage, metadata, errors (pure).

Every function here turns random words (drawn per batch by `crawler.fake.data`) into fields
that agree with each other and with the reference: in-flight statuses only within 24 h,
terminal request counts that add up, files only when there is something in them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .ids import mix

DAY = 86_400
IN_FLIGHT = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
# Only these have output and error files (when they have lines to hold).
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
UNKNOWN_STATUS = "paused_for_review"
NEXT = {
    "validating": "in_progress",
    "in_progress": "finalizing",
    "finalizing": "completed",
    "cancelling": "cancelled",
}
# Newest four batches get these, so every in-flight status occurs in any dataset.
FORCED = ("validating", "in_progress", "finalizing", "cancelling")


def _table(weights: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    """Expand (status, share of 1024) pairs into a 1024-entry lookup table."""
    table = tuple(status for status, share in weights for _ in range(share))
    assert len(table) == 1024
    return table


RECENT = _table(
    (
        ("validating", 82),
        ("in_progress", 410),
        ("finalizing", 71),
        ("cancelling", 41),
        ("completed", 358),
        ("failed", 31),
        ("cancelled", 31),
    )
)
OLD = _table((("completed", 870), ("failed", 62), ("expired", 51), ("cancelled", 41)))
ENDPOINTS = ("/v1/chat/completions", "/v1/chat/completions", "/v1/responses", "/v1/embeddings")
MODELS = (
    ("gpt-4o-mini", "gpt-4.1", "gpt-4o-2024-08-06", "gpt-4.1-mini"),
    ("gpt-4o-mini", "gpt-4.1", "gpt-4o-2024-08-06", "gpt-4.1-mini"),
    ("gpt-4.1", "o4-mini", "gpt-4.1-nano", "gpt-5-mini"),
    ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-3-small", "ada-002"),
)
_REASONING = frozenset({"o4-mini", "gpt-5-mini"})
_METADATA: tuple[dict[str, str], ...] = (
    {"team": "équipe données", "job": "nightly-eval"},
    {"region": "東京", "owner": "kenji"},
    {"note": "🚀 launch batch", "ticket": "OPS-1432"},
    {"purpose": "embeddings refresh", "customer": "Müller & Söhne"},
    {"job": "weekly-summaries"},
)


def draw_total(r2: int, requests_per_batch: int | None = None) -> int:
    """Number of requests in a batch: as asked, else usually <= 1024, sometimes up to 8192."""
    if requests_per_batch is not None:
        return requests_per_batch
    return 1 + (r2 & 1023) if (r2 >> 10) & 15 else 1 + (r2 & 8191)


def draw_final_failed(total: int, r2: int) -> int:
    """Requests that fail once the batch is fully processed."""
    roll = (r2 >> 14) & 127
    if roll < 90:
        return 0
    if roll < 125:
        return min(total, 1 + ((r2 >> 21) & 0xFFFF) % (total // 10 + 1))
    return total  # every request failed: no output file


class RequestUsage(NamedTuple):
    """The mean tokens of one request of a batch; its batch's usage is `completed` times this."""

    input: int
    cached: int
    output: int
    reasoning: int


def draw_request_usage(r: int, endpoint: str, model: str) -> RequestUsage:
    """Per-request token sizes of a batch, drawn from `r` (embeddings have no output)."""
    inp = 20 + ((r >> 34) & 1023)
    out = 0 if endpoint.endswith("/embeddings") else 5 + ((r >> 44) & 511)
    reasoning = out * ((r >> 56) & 3) // 4 if model in _REASONING else 0
    return RequestUsage(inp, inp * ((r >> 53) & 7) // 16, out, reasoning)


def build_usage(r: int, completed: int, endpoint: str, model: str) -> dict[str, Any]:
    """Token usage of `completed` requests: the sum of what their output file lines say."""
    inp, cached, out, reasoning = draw_request_usage(r, endpoint, model)
    return {
        "input_tokens": completed * inp,
        "input_tokens_details": {"cached_tokens": completed * cached},
        "output_tokens": completed * out,
        "output_tokens_details": {"reasoning_tokens": completed * reasoning},
        "total_tokens": completed * (inp + out),
    }


def build_metadata(r: int, i: int) -> dict[str, str] | None:
    """Metadata of a batch: null (40 %), empty, or a fresh copy of a sample, some unicode."""
    pick = (r >> 14) & 255
    if pick < 102:
        return None
    if pick < 112:
        return {}
    metadata = dict(_METADATA[pick % len(_METADATA)])
    if (r >> 58) & 1:
        metadata["run"] = f"run-{i}"
    return metadata


def fill_progress(
    b: dict[str, Any], *, total: int, limit: int, now: int, r2: int, r3: int, model: str
) -> None:
    """Set timestamps, request counts and errors of batch b of `total` requests consistently
    with its status."""
    status, c = b["status"], b["created_at"]
    failed_final = draw_final_failed(total, r2)
    frac = (r2 >> 37) & 255  # share of the work done when the batch stopped or is now
    done = total * frac // 256 - failed_final * frac // 256
    partial_failed = failed_final * frac // 256
    started = min(limit, c + 2 + (r3 & 127))
    if status in ("completed", "finalizing"):
        b["in_progress_at"] = started
        b["finalizing_at"] = finalizing = min(limit, started + 60 + ((r3 >> 7) & 0x7FFF))
        b["request_counts"] = {
            "total": total,
            "completed": total - failed_final,
            "failed": failed_final,
        }
        if status == "completed":
            b["completed_at"] = min(limit, finalizing + 5 + ((r3 >> 22) & 511))
    elif status in ("in_progress", UNKNOWN_STATUS):
        b["in_progress_at"] = started
        b["request_counts"] = {"total": total, "completed": done, "failed": partial_failed}
    elif status in ("validating", "failed"):
        if not (r2 >> 45) & 1:  # else null counts, as some real batches have
            b["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
        if status == "failed":
            b["failed_at"] = started
            b["errors"] = {"object": "list", "data": build_batch_errors(mix(r3), model, total)}
    elif status == "expired":
        b["in_progress_at"] = started
        b["expired_at"] = min(now, c + DAY + 60 + ((r3 >> 39) & 4095))
        b["request_counts"] = {"total": total, "completed": done, "failed": total - done}
    else:  # cancelling, cancelled; 1 in 8 was cancelled before it started
        ran = (r2 >> 46) & 7 != 0
        work = done if ran else 0
        b["in_progress_at"] = started if ran else None
        b["cancelling_at"] = cancelling = min(limit, (started if ran else c) + 30)
        if status == "cancelled":
            b["cancelled_at"] = min(limit, cancelling + 5 + ((r3 >> 31) & 255))
            b["request_counts"] = {"total": total, "completed": work, "failed": total - work}
        else:
            failed = partial_failed if ran else 0
            b["request_counts"] = {"total": total, "completed": work, "failed": failed}


# (code, message, param) of validation failures that name a line of the input file.
_LINE_ERRORS = (
    ("invalid_json_line", "This line is not parseable as valid JSON.", None),
    (
        "invalid_url",
        "The URL provided for this request does not prefix-match the batch endpoint.",
        "url",
    ),
    ("missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id"),
    ("duplicate_custom_id", "The custom_id for this request is a duplicate.", "custom_id"),
)


def build_batch_errors(word: int, model: str, total: int) -> list[dict[str, Any]]:
    """Return the 1-3 `errors.data` entries of a failed batch, drawn from `word`."""
    if word & 3 == 0:
        message = (
            f"Enqueued token limit reached for {model} in organization org-fake. Limit: "
            "2,000,000 enqueued tokens. Please try again once some in_progress batches have "
            "been completed."
        )
        return [{"code": "token_limit_exceeded", "message": message, "param": None, "line": None}]
    code, message, param = _LINE_ERRORS[(word >> 2) & 3]
    count = 1 + (word >> 4) % 3
    lines = sorted({1 + (word >> (8 + 12 * k)) % total for k in range(count)})
    return [{"code": code, "message": message, "param": param, "line": line} for line in lines]
