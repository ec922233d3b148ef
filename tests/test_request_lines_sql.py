"""SQLite maps file lines to the same `batch_requests` rows as `build_request_row` does."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from crawler.request_rows import REQUEST_COLUMNS, UnusableLineError, build_request_row
from crawler.store.requests import store_lines
from crawler.store.schema import load_migrations

from .test_request_rows import CHAT, output_line

RESPONSE = {
    "object": "response",
    "model": "gpt-4.1",
    "status": "incomplete",
    "incomplete_details": {"reason": "max_output_tokens"},
    "usage": {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 15,
    },
}
REFUSED = {
    "status_code": 400,
    "request_id": "req_def",
    "body": {"error": {"message": "too large", "type": "invalid_request_error", "code": None}},
}
LINES: dict[str, Any] = {
    "chat": output_line(CHAT),
    "response incomplete": output_line(RESPONSE),
    "response completed": output_line(
        {**RESPONSE, "status": "completed", "incomplete_details": None}
    ),
    "incomplete details without object": output_line({"status": "x", "incomplete_details": None}),
    "embedding": output_line({"model": "e", "usage": {"prompt_tokens": 7, "total_tokens": 7}}),
    "moderation": output_line({"model": "m", "results": []}),
    "refused": {"custom_id": "r", "response": REFUSED, "error": None},
    "never run": {
        "custom_id": "r",
        "response": None,
        "error": {"code": "batch_expired", "message": "This request could not be executed."},
    },
    "empty body error falls back": {
        "custom_id": "r",
        "response": {"status_code": 500, "body": {"error": {}}},
        "error": {"code": "server_error", "message": "boom"},
    },
    "odd values": {
        "custom_id": "r",
        "id": {"nested": [1, 2]},
        "response": {
            "status_code": "200",
            "request_id": 12,
            "body": {
                "model": {"name": "x"},
                "choices": [],
                "usage": {
                    "prompt_tokens": "many",
                    "completion_tokens": True,
                    "total_tokens": 2**70,
                },
                "error": {"code": 429, "message": "slow down", "param": None},
            },
        },
    },
    "numbers at the edges": output_line(
        {"usage": {"input_tokens": 2**63 - 1, "output_tokens": -(2**63), "total_tokens": 1.5}}
    ),
    "choices not a list": output_line({"choices": {"0": {"finish_reason": "stop"}}}),
    "first choice not an object": output_line({"choices": ["stop"], "usage": []}),
    "finish reason a number": output_line({"choices": [{"finish_reason": 3}]}),
    "response a list": {"custom_id": "r", "response": [200], "error": "no"},
    "body text": {"custom_id": "r", "response": {"status_code": 200, "body": "plain"}},
    "unicode": output_line(
        {"model": "caf\u00e9 \U0001f600", "choices": [{"finish_reason": 'st"op'}]}
    ),
    "details not objects": output_line(
        {"usage": {"prompt_tokens": 1, "prompt_tokens_details": 5, "completion_tokens_details": []}}
    ),
}
UNUSABLE = {
    "null": (None, "not a JSON object"),
    "a list": ([], "not a JSON object"),
    "text": ("text", "not a JSON object"),
    "no custom_id": ({}, "no custom_id"),
    "empty custom_id": ({"custom_id": ""}, "no custom_id"),
    "numeric custom_id": ({"custom_id": 5}, "no custom_id"),
}


@contextlib.contextmanager
def database() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:", isolation_level=None)
    for migration in load_migrations():
        db.executescript(migration.sql)
    try:
        yield db
    finally:
        db.close()


def by_sql(line: str, keep_body: bool) -> tuple[Any, ...]:
    with database() as db:
        stored, unusable = store_lines(
            db,
            [(1, line)],
            batch_id="batch_1",
            file_id="file-1",
            kind="error",
            keep_body=keep_body,
            reading=1,
        )
        assert (stored, unusable) == (1, [])
        return db.execute(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM batch_requests").fetchone()


@pytest.mark.parametrize("keep_body", [False, True], ids=["no body", "body"])
@pytest.mark.parametrize("line", LINES.values(), ids=LINES.keys())
def test_sqlite_and_python_map_a_line_alike(line: dict[str, Any], keep_body: bool) -> None:
    expected = build_request_row(line, "batch_1", "file-1", "error", keep_body=keep_body)
    got = by_sql(json.dumps(line), keep_body)
    body = REQUEST_COLUMNS.index("body")
    assert got[:body] == expected[:body]
    # Both keep the body as JSON; SQLite keeps a string's escapes as sent.
    assert (got[body] and json.loads(got[body])) == (expected[body] and json.loads(expected[body]))


@pytest.mark.parametrize(("line", "why"), UNUSABLE.values(), ids=UNUSABLE.keys())
def test_a_line_without_a_custom_id_is_left_out_alike(line: Any, why: str) -> None:
    with pytest.raises(UnusableLineError, match=why):
        build_request_row(line, "batch_1", "file-1", "error")
    with database() as db:
        result = store_lines(
            db,
            [(7, json.dumps(line))],
            batch_id="b",
            file_id="f",
            kind="error",
            keep_body=False,
            reading=1,
        )
    assert result == (0, [(7, why)])


def test_a_line_that_is_not_json_is_named_by_its_number() -> None:
    lines = [(1, json.dumps(output_line(CHAT, "a"))), (2, '{"custom_id": "b"'), (3, "[1,]")]
    with database() as db:
        result = store_lines(
            db, lines, batch_id="b", file_id="f", kind="output", keep_body=False, reading=1
        )
    assert result == (1, [(2, "not JSON"), (3, "not JSON")])


def test_a_custom_id_twice_keeps_the_last_line() -> None:
    first, last = output_line(CHAT, "a"), output_line({**CHAT, "model": "last"}, "a")
    with database() as db:
        lines = [(1, json.dumps(first)), (2, json.dumps(last))]
        # Both lines count as stored (the second an upsert): none is taken for unusable.
        result = store_lines(
            db, lines, batch_id="b", file_id="f", kind="output", keep_body=False, reading=1
        )
        assert result == (2, [])
        assert db.execute("SELECT custom_id, model FROM batch_requests").fetchall() == [
            ("a", "last")
        ]
