"""The content of one fake batch: status tables, progress, usage, metadata, errors (pure).

Every function here turns random words (drawn per batch by `crawler.fake.data`) into fields
that agree with each other and with the reference: in-flight statuses only within 24 h,
terminal request counts that add up, files only when there is something in them.
"""

from __future__ import annotations

import random
from typing import Any

from .ids import mix

DAY = 86_400
IN_FLIGHT = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
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
WITH_FILES = frozenset({"completed", "expired", "cancelled"})
_REASONING = frozenset({"o4-mini", "gpt-5-mini"})
_METADATA: tuple[dict[str, str], ...] = (
    {"team": "équipe données", "job": "nightly-eval"},
    {"region": "東京", "owner": "kenji"},
    {"note": "🚀 launch batch", "ticket": "OPS-1432"},
    {"purpose": "embeddings refresh", "customer": "Müller & Söhne"},
    {"job": "weekly-summaries"},
)


def draw_total(r2: int) -> int:
    """Number of requests in a batch (usually <= 1024, sometimes up to 8192)."""
    return 1 + (r2 & 1023) if (r2 >> 10) & 15 else 1 + (r2 & 8191)


def draw_final_failed(total: int, r2: int) -> int:
    """Requests that fail once the batch is fully processed."""
    roll = (r2 >> 14) & 127
    if roll < 90:
        return 0
    if roll < 125:
        return min(total, 1 + ((r2 >> 21) & 0xFFFF) % (total // 10 + 1))
    return total  # every request failed: no output file


def build_usage(r: int, completed: int, endpoint_kind: int, model: str) -> dict[str, Any]:
    """Token usage for `completed` requests with per-batch sizes drawn from `r`."""
    inp = completed * (20 + ((r >> 34) & 1023))
    out = 0 if endpoint_kind == 3 else completed * (5 + ((r >> 44) & 511))
    reasoning = out * ((r >> 56) & 3) // 4 if model in _REASONING else 0
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": inp * ((r >> 53) & 7) // 16},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
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


def fill_progress(b: dict[str, Any], *, limit: int, now: int, r2: int, r3: int, model: str) -> None:
    """Set timestamps, request counts and errors of batch b consistently with its status."""
    status, c = b["status"], b["created_at"]
    total = draw_total(r2)
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
# (status_code, error body) of requests the model endpoint answered with an HTTP error.
_HTTP_ERRORS: tuple[tuple[int, dict[str, Any]], ...] = (
    (
        400,
        {
            "message": "This model's maximum context length is 128000 tokens. However, your "
            "messages resulted in 131072 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        },
    ),
    (
        400,
        {
            "message": "Invalid 'input': string too long. Expected a string with maximum "
            "length 8192, but got a string with length 9001 instead.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "string_above_max_length",
        },
    ),
    (
        500,
        {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
)
# Requests that never got an HTTP answer, by batch status.
_UNANSWERED = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": ("batch_cancelled", "This request was not executed: the batch was cancelled."),
}
_TIMEOUT = ("request_timeout", "The request timed out.")


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


def build_error_lines(word: int, status: str, total: int, failed: int) -> list[dict[str, Any]]:
    """Return the error-file records of a batch's `failed` requests, in no particular order.

    HTTP-level failures carry `response` (with `body.error`) and `error: null`; the others
    (timeouts, and requests an expired or cancelled batch never ran) carry `error` and
    `response: null`. With two or more lines, both kinds occur.
    """
    rng = random.Random(word)
    unanswered = _UNANSWERED.get(status)
    # An expired/cancelled batch's failures are mostly requests it never got to.
    answered = max(2, failed // 4) if unanswered else failed
    records: list[dict[str, Any]] = []
    for n, k in enumerate(rng.sample(range(total), failed)):
        record: dict[str, Any] = {
            "id": f"batch_req_{rng.getrandbits(128):032x}",
            "custom_id": f"request-{k + 1}",
            "response": None,
            "error": None,
        }
        if n >= answered and unanswered is not None:
            code, message = unanswered
            record["error"] = {"code": code, "message": message}
        elif n == 1 or (n > 1 and rng.random() < 0.3):
            code, message = _TIMEOUT
            record["error"] = {"code": code, "message": message}
        else:
            status_code, error = _HTTP_ERRORS[rng.randrange(len(_HTTP_ERRORS))]
            record["response"] = {
                "status_code": status_code,
                "request_id": f"req_{rng.getrandbits(128):032x}",
                "body": {"error": dict(error)},
            }
        records.append(record)
    return records
