"""The lines of a fake batch's output and error files, and their File object (pure, lazy).

A line is a pure function of its file's `FileSource` and its position, so a 50,000-line file is
generated one line at a time (once to measure it, once to send it) and never held whole. A
keyed permutation deals a batch's requests out: its first `failed` positions make the error
file, the rest the output file, so each custom_id occurs once across the two files, and neither
file is in input order. Output lines' tokens vary, yet add up to the batch's `usage`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .content import RequestUsage, draw_request_usage
from .ids import FileKind, build_b62_word, mix

_M64 = (1 << 64) - 1
_ODD = 0x9E3779B97F4A7C15
_FILE_LIFETIME = 30 * 86_400  # batch_output files expire 30 days after creation by default
_TEXTS = (
    "Sure! Here is a short summary of the document.",
    "The answer is 42.",
    "Voilà : la réponse est prête.",
    "東京の天気は晴れです。",
    "Done ✅",
    "Three points:\n\n1. **Cost**: half the price.\n2. **Time**: within 24 hours.\n3. Done.",
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
        429,
        {
            "message": "Rate limit reached in organization org-fake on tokens per min (TPM): "
            "Limit 200000, Used 199500, Requested 1200. Please try again in 210ms.",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
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


@dataclass(frozen=True)
class FileSource:
    """What one file's lines are drawn from (see `FakeBatches.file_source`)."""

    file_id: str
    kind: FileKind
    batch_id: str
    status: str
    endpoint: str
    model: str
    created_at: int  # when the batch ended, and wrote the file
    total: int
    failed: int
    usage_word: int  # the batch's word for per-request token sizes
    key: int  # the batch's key for its permutation and per-line words

    @property
    def line_count(self) -> int:
        """How many lines the file has: request_counts.failed, or .completed."""
        return self.failed if self.kind == "error" else self.total - self.failed


def build_file_object(source: FileSource, size: int) -> dict[str, Any]:
    """The File object of `GET /v1/files/{id}`; `size` is the content's length in bytes."""
    return {
        "id": source.file_id,
        "object": "file",
        "bytes": size,
        "created_at": source.created_at,
        "expires_at": source.created_at + _FILE_LIFETIME,
        "filename": f"{source.batch_id}_{source.kind}.jsonl",
        "purpose": "batch_output",
        "status": "processed",
        "status_details": None,
    }


class Shuffle:
    """A keyed permutation of range(n), one position at a time: a small Feistel network on
    the next even bit width, walked until it lands inside range(n) (no table, O(1) memory)."""

    def __init__(self, n: int, key: int) -> None:
        bits = max(2, (n - 1).bit_length())
        self._half = (bits + 1) // 2
        self._mask = (1 << self._half) - 1
        self._n = n
        self._keys = tuple(mix(key ^ k) for k in range(3))

    def __getitem__(self, position: int) -> int:
        """Return the request that `position` holds."""
        half, mask = self._half, self._mask
        x = position
        while True:
            left, right = x >> half, x & mask
            for k in self._keys:
                left, right = right, left ^ ((((right ^ k) * _ODD) & _M64) >> 40 & mask)
            x = left << half | right
            if x < self._n:
                return x


def iter_lines(source: FileSource) -> Iterator[bytes]:
    """Yield the file's lines, newline-terminated, generated one at a time."""
    order = Shuffle(source.total, source.key)
    first = 0 if source.kind == "error" else source.failed
    n = source.line_count
    mean = draw_request_usage(source.usage_word, source.endpoint, source.model)
    carried = (0, 0)
    for j in range(n):
        p = first + j
        w = mix(source.key ^ (p * _ODD & _M64))
        record: dict[str, Any] = {
            "id": f"batch_req_{w:016x}{mix(w):016x}",
            "custom_id": f"request-{order[p] + 1}",
            "response": None,
            "error": None,
        }
        if source.kind == "error":
            _fill_error(record, source.status, j, w)
        else:
            # Each line gives back what the previous one took: the sum stays n times the mean.
            nxt = (0, 0) if j + 1 == n else _wobble(mix(w ^ _ODD), mean)
            usage = mean._replace(
                input=mean.input + carried[0] - nxt[0], output=mean.output + carried[1] - nxt[1]
            )
            carried = nxt
            record["response"] = {
                "status_code": 200,
                "request_id": f"req_{mix(w ^ 1):016x}{mix(w ^ 2):016x}",
                "body": _build_body(source, usage, w),
            }
        yield orjson.dumps(record) + b"\n"


def _wobble(word: int, mean: RequestUsage) -> tuple[int, int]:
    """A line's share of input and output tokens handed to the next line: under a quarter
    of the mean, so every line keeps at least its cached and reasoning tokens."""
    return (word & 0xFFFFFFFF) % (mean.input // 4 + 1), (word >> 32) % (mean.output // 4 + 1)


def _build_body(source: FileSource, usage: RequestUsage, w: int) -> dict[str, Any]:
    """The endpoint's answer to one request; about 1 in 20 stopped at the token limit."""
    inp, cached, out, reasoning = usage
    created = source.created_at - (w >> 40) % 3600
    text = _TEXTS[(w >> 8) % len(_TEXTS)]
    cut_short = (w >> 16) % 20 == 0
    if source.endpoint.endswith("/embeddings"):
        vector = [((w >> (8 * k)) & 255) / 128 - 1 for k in range(8)]
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": source.model,
            "usage": {"prompt_tokens": inp, "total_tokens": inp},
        }
    if source.endpoint.endswith("/responses"):
        status = "incomplete" if cut_short else "completed"
        message = {"type": "output_text", "text": text, "annotations": []}
        return {
            "id": f"resp_{w:016x}{mix(w ^ 3):016x}",
            "object": "response",
            "created_at": created,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if cut_short else None,
            "model": source.model,
            "output": [
                {
                    "id": f"msg_{mix(w ^ 4):016x}",
                    "type": "message",
                    "status": status,
                    "role": "assistant",
                    "content": [message],
                }
            ],
            "usage": {
                "input_tokens": inp,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": out,
                "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": inp + out,
            },
        }
    return {
        "id": f"chatcmpl-{build_b62_word(w)}{build_b62_word(mix(w ^ 5))[:7]}",
        "object": "chat.completion",
        "created": created,
        "model": source.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "length" if cut_short else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": inp,
            "completion_tokens": out,
            "total_tokens": inp + out,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
        "system_fingerprint": f"fp_{w & 0xFFFFFFFFFF:010x}",
    }


def _fill_error(record: dict[str, Any], status: str, j: int, w: int) -> None:
    """Make `record` the j-th failure of a batch in `status`.

    HTTP-level failures carry `response` (with `body.error`) and `error: null`; the others
    (timeouts, and requests an expired or cancelled batch never ran) carry `error` and
    `response: null`. The first line is an HTTP failure and the second not, so any file of
    two lines or more has both kinds.
    """
    unanswered = _UNANSWERED.get(status)
    if j > 0 and unanswered is not None and (j == 1 or w & 3):  # most never ran
        code, message = unanswered
        record["error"] = {"code": code, "message": message}
    elif j == 1 or (j > 1 and w & 7 == 0):
        code, message = _TIMEOUT
        record["error"] = {"code": code, "message": message}
    else:
        status_code, error = _HTTP_ERRORS[(w >> 8) % len(_HTTP_ERRORS)]
        record["response"] = {
            "status_code": status_code,
            "request_id": f"req_{mix(w ^ 1):016x}{mix(w ^ 2):016x}",
            "body": {"error": error},
        }
