"""File lines to `batch_requests` rows: each endpoint's body, each kind of failure, junk."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crawler.request_rows import REQUEST_COLUMNS, UnusableLineError, build_request_row


def row(line: Any, kind: str = "output", *, keep_body: bool = False) -> dict[str, Any]:
    values = build_request_row(line, "batch_1", "file-1", kind, keep_body=keep_body)
    return dict(zip(REQUEST_COLUMNS, values, strict=True))


def output_line(body: dict[str, Any], custom_id: str = "req-1") -> dict[str, Any]:
    return {
        "id": "batch_req_1",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": "req_abc", "body": body},
        "error": None,
    }


CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "length"}],
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 4},
    },
}


def test_a_chat_completion_maps_prompt_and_completion_tokens() -> None:
    assert row(output_line(CHAT)) == {
        "batch_id": "batch_1",
        "custom_id": "req-1",
        "batch_request_id": "batch_req_1",
        "file_id": "file-1",
        "kind": "output",
        "status_code": 200,
        "request_id": "req_abc",
        "error_code": None,
        "error_message": None,
        "error_type": None,
        "error_param": None,
        "model": "gpt-4o-mini-2024-07-18",
        "finish_reason": "length",
        "input_tokens": 30,
        "cached_input_tokens": 8,
        "output_tokens": 12,
        "reasoning_tokens": 4,
        "total_tokens": 42,
        "body": None,
    }


def test_the_body_is_kept_only_when_asked_for() -> None:
    assert json.loads(row(output_line(CHAT), keep_body=True)["body"]) == CHAT


@pytest.mark.parametrize(
    ("status", "incomplete", "reason"),
    [
        ("completed", None, "completed"),
        ("incomplete", {"reason": "max_output_tokens"}, "max_output_tokens"),
    ],
)
def test_a_response_says_completed_or_why_it_is_incomplete(
    status: str, incomplete: dict[str, str] | None, reason: str
) -> None:
    body = {
        "object": "response",
        "model": "gpt-4.1",
        "status": status,
        "incomplete_details": incomplete,
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 2},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 1},
            "total_tokens": 15,
        },
    }
    got = row(output_line(body))
    assert got["finish_reason"] == reason
    tokens = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
    assert [got[k] for k in (*tokens, "total_tokens")] == [10, 2, 5, 1, 15]


def test_an_embedding_has_input_tokens_and_no_finish_reason() -> None:
    body = {
        "object": "list",
        "model": "text-embedding-3-small",
        "data": [],
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    got = row(output_line(body))
    assert (got["input_tokens"], got["output_tokens"], got["total_tokens"]) == (7, None, 7)
    assert got["finish_reason"] is None


def test_a_refused_request_carries_the_endpoints_error() -> None:
    line = {
        "id": "batch_req_2",
        "custom_id": "req-2",
        "response": {
            "status_code": 400,
            "request_id": "req_def",
            "body": {
                "error": {
                    "message": "max_tokens is too large",
                    "type": "invalid_request_error",
                    "param": "max_tokens",
                    "code": None,
                }
            },
        },
        "error": None,
    }
    got = row(line, "error")
    assert (got["kind"], got["status_code"], got["error_type"], got["error_param"]) == (
        "error",
        400,
        "invalid_request_error",
        "max_tokens",
    )
    assert (got["error_code"], got["error_message"]) == (None, "max_tokens is too large")


def test_a_request_never_run_carries_the_lines_own_error() -> None:
    line = {
        "id": "batch_req_3",
        "custom_id": "req-3",
        "response": None,
        "error": {"code": "batch_expired", "message": "This request could not be executed."},
    }
    got = row(line, "error")
    assert (got["status_code"], got["request_id"], got["error_code"]) == (
        None,
        None,
        "batch_expired",
    )
    assert got["input_tokens"] is None


def test_odd_values_are_kept_as_text_or_left_null_never_fatal() -> None:
    body = {
        "model": {"name": "x"},
        "choices": [],
        "usage": {"prompt_tokens": "many", "completion_tokens": True, "total_tokens": 2**70},
        "error": {"code": 429, "message": "slow down"},
    }
    line = {"custom_id": "req-4", "response": {"status_code": "200", "body": body}}
    got = row(line)
    assert (got["model"], got["error_code"], got["status_code"]) == ('{"name":"x"}', "429", None)
    assert (got["input_tokens"], got["output_tokens"], got["total_tokens"]) == (None, None, None)
    assert got["batch_request_id"] is None


@pytest.mark.parametrize("line", [None, [], "text", 3, {}, {"custom_id": ""}, {"custom_id": 5}])
def test_a_line_without_a_custom_id_is_unusable(line: Any) -> None:
    with pytest.raises(UnusableLineError):
        row(line)
