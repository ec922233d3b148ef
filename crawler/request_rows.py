"""Pure mapping of a batch's output and error file lines to `batch_requests` rows.

Both files share one line shape:
`{"id": "batch_req_…", "custom_id": "…", "response": {"status_code", "request_id", "body"} |
null, "error": {"code", "message"} | null}`. The body is the endpoint's answer: its usage and
finish reason are read for chat and text completions, responses and embeddings; any other
endpoint keeps what is common. No network, no disk.
"""

from __future__ import annotations

from typing import Any

from .jsontext import to_text

# Order matters: it is the column order of the INSERT that `store` builds from it.
REQUEST_COLUMNS = (
    "batch_id",
    "custom_id",
    "batch_request_id",
    "file_id",
    "kind",
    "status_code",
    "request_id",
    "error_code",
    "error_message",
    "error_type",
    "error_param",
    "model",
    "finish_reason",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "body",
)


class UnusableLineError(ValueError):
    """A line that holds no request outcome we can key: not an object, or no `custom_id`."""


# Lines are decoded from JSON, so objects are exactly dicts: `type() is` checks are several
# times quicker than isinstance() against abstract types, at 50,000 lines a file.
_EMPTY: dict[str, Any] = {}


def _object(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else _EMPTY


def _text(value: Any) -> str | None:
    """Text as sent; a number or anything else shown as JSON, never dropped."""
    if value is None or type(value) is str:
        return value
    return to_text(value)


def _number(value: Any) -> int | float | None:
    """A count or a code as sent; anything that is not a number (a bool, text, junk) is NULL."""
    kind = type(value)
    if kind is int:
        return value if -(2**63) <= value < 2**63 else None
    return value if kind is float else None  # bool, text, junk: NULL


def _usage(usage: dict[str, Any]) -> tuple[Any, ...]:
    """Input, cached input, output, reasoning and total tokens, whichever names the endpoint
    uses: `input_tokens` (responses) or `prompt_tokens` (chat, completions, embeddings)."""
    if "input_tokens" in usage or "output_tokens" in usage:
        input_details = _object(usage.get("input_tokens_details"))
        output_details = _object(usage.get("output_tokens_details"))
        output = usage.get("output_tokens")
    else:
        input_details = _object(usage.get("prompt_tokens_details"))
        output_details = _object(usage.get("completion_tokens_details"))
        output = usage.get("completion_tokens")
    counts = (
        usage.get("input_tokens", usage.get("prompt_tokens")),
        input_details.get("cached_tokens"),
        output,
        output_details.get("reasoning_tokens"),
        usage.get("total_tokens"),
    )
    return tuple(map(_number, counts))


def _finish_reason(body: dict[str, Any]) -> Any:
    """The first choice's finish reason (chat, completions); for a response, `completed` or
    why it is incomplete; None for endpoints that have neither (embeddings, moderations)."""
    choices = body.get("choices")
    if isinstance(choices, list) and choices:
        return _object(choices[0]).get("finish_reason")
    status = body.get("status")
    if body.get("object") == "response" or "incomplete_details" in body:
        reason = _object(body.get("incomplete_details")).get("reason")
        return reason if reason is not None else status
    return None


def build_request_row(
    line: Any, batch_id: str, file_id: str, kind: str, *, keep_body: bool = False
) -> tuple[Any, ...]:
    """The `batch_requests` row for one decoded file line, in REQUEST_COLUMNS order.

    The error comes from the response body's `error` (a request the endpoint refused) or from
    the line's own `error` (a request never run: expired, cancelled). `body` is the response
    body as JSON text, kept only with `keep_body` (bodies are large and hold users' content).

    Raises:
        UnusableLineError: the line is not an object with a string `custom_id`.
    """
    if type(line) is not dict:
        raise UnusableLineError("not a JSON object")
    custom_id = line.get("custom_id")
    if type(custom_id) is not str or not custom_id:
        raise UnusableLineError("no custom_id")
    response = _object(line.get("response"))
    raw_body = response.get("body")
    body = _object(raw_body)
    error = _object(body.get("error")) or _object(line.get("error"))
    return (
        batch_id,
        custom_id,
        _text(line.get("id")),
        file_id,
        kind,
        _number(response.get("status_code")),
        _text(response.get("request_id")),
        _text(error.get("code")),
        _text(error.get("message")),
        _text(error.get("type")),
        _text(error.get("param")),
        _text(body.get("model")),
        _text(_finish_reason(body)),
        *_usage(_object(body.get("usage"))),
        to_text(raw_body) if keep_body and raw_body is not None else None,
    )
