"""Row mapping: Batch objects to `batches` and `batch_errors` rows, purely."""

from __future__ import annotations

import json

import pytest

from crawler.rows import (
    BATCH_COLUMNS,
    MAX_ERROR_LINES,
    build_batch_row,
    build_error_rows,
    build_page_rows,
    build_page_rows_fitted,
    fill_left_out,
    fill_page_rows,
    moves_back,
)

from .conftest import make_batch


def as_dict(row: tuple[object, ...]) -> dict[str, object]:
    return dict(zip(BATCH_COLUMNS, row, strict=True))


def test_every_documented_field_gets_its_column() -> None:
    """A full batch maps each documented field, nested counts and usage included."""
    row = as_dict(build_batch_row(make_batch(7), seen_at=99))
    assert row["id"] == "batch_" + "0" * 31 + "7"
    assert row["status"] == "completed"
    assert row["created_at"] == 1_700_000_007
    assert row["request_counts_total"] == 10
    assert row["request_counts_failed"] == 1
    assert row["cached_input_tokens"] == 20
    assert row["reasoning_tokens"] == 5
    assert row["total_tokens"] == 150
    assert json.loads(str(row["metadata"])) == {"team": "équipe"}
    assert row["first_seen_at"] == row["last_seen_at"] == 99


def test_old_batch_without_model_and_usage_maps_to_nulls() -> None:
    """Fields that older batches lack, or send as null, become NULL."""
    batch = make_batch(1, usage=None, request_counts=None, metadata=None)
    del batch["model"]
    row = as_dict(build_batch_row(batch, seen_at=1))
    assert row["model"] is None
    assert row["input_tokens"] is None
    assert row["request_counts_total"] is None
    assert row["metadata"] is None


def test_minimal_batch_with_only_required_fields() -> None:
    """A batch with only the required fields maps without error."""
    batch = {
        "id": "batch_x",
        "object": "batch",
        "endpoint": "/v1/embeddings",
        "input_file_id": "f",
        "completion_window": "24h",
        "status": "validating",
        "created_at": 5,
    }
    row = as_dict(build_batch_row(batch, seen_at=1))
    assert row["status"] == "validating"
    assert row["total_tokens"] is None
    assert row["model"] is None
    assert build_error_rows(batch) == []


def test_unknown_fields_and_statuses_are_kept_in_raw() -> None:
    """Data this version does not know survives in the raw JSON."""
    batch = make_batch(2, status="paused_for_review", x_future_field={"a": [1, 2]})
    row = as_dict(build_batch_row(batch, seen_at=1))
    assert row["status"] == "paused_for_review"
    assert json.loads(str(row["raw"])) == batch


@pytest.mark.parametrize("usage", [{"input_tokens": 3}, {"input_tokens_details": None}, "junk"])
def test_partial_or_odd_usage_does_not_break_the_row(usage: object) -> None:
    """Missing nested details, a null detail or a non-object give NULLs, not errors."""
    row = as_dict(build_batch_row(make_batch(3, usage=usage), seen_at=1))
    assert row["cached_input_tokens"] is None


def test_error_lines_keep_their_position_and_fields() -> None:
    """Each errors.data line becomes a row numbered by its position."""
    errors = {
        "object": "list",
        "data": [
            {"code": "token_limit_exceeded", "message": "too many", "param": None, "line": None},
            {"code": "invalid_json", "message": "bad line", "param": "body", "line": 12},
        ],
    }
    batch = make_batch(4, status="failed", errors=errors)
    assert build_error_rows(batch) == [
        (batch["id"], 0, "token_limit_exceeded", "too many", None, None),
        (batch["id"], 1, "invalid_json", "bad line", "body", 12),
    ]


@pytest.mark.parametrize("errors", [None, {}, {"object": "list", "data": None}, "junk"])
def test_absent_errors_give_no_rows(errors: object) -> None:
    """Null, empty or malformed `errors` give no error rows."""
    assert build_error_rows(make_batch(5, errors=errors)) == []


def test_page_rows_collect_batches_and_errors() -> None:
    """A page maps to one row per batch and all of their error lines."""
    failed = make_batch(6, errors={"data": [{"code": "c", "message": "m"}]})
    batch_rows, error_rows = build_page_rows([make_batch(7), failed], seen_at=1)
    assert [r[0] for r in batch_rows] == [make_batch(7)["id"], failed["id"]]
    assert error_rows == [(failed["id"], 0, "c", "m", None, None)]


def test_fitted_rows_make_every_value_storable_and_say_what_changed() -> None:
    """Objects and lists become NULL, wide integers NULL, lone surrogates U+FFFD: each said."""
    odd = make_batch(
        3,
        model={"name": "x"},
        completed_at=[1],
        created_at=2**70,
        metadata={"k": "a\ud800b"},
        errors={"data": [{"code": {"c": 1}, "message": "m", "param": None, "line": 2}]},
    )
    batch_rows, error_rows, warnings = build_page_rows_fitted([odd], seen_at=5)
    row = as_dict(batch_rows[0])
    assert (row["model"], row["completed_at"], row["created_at"]) == (None, None, None)
    assert row["metadata"] == '{"k":"a\ufffdb"}'
    assert "\ufffd" in str(row["raw"])
    assert error_rows == [(odd["id"], 0, None, "m", None, 2)]
    assert warnings == [
        f"batch {odd['id']}: model is a dict, not text: NULL",
        f"batch {odd['id']}: created_at is wider than 64 bits: NULL",
        f"batch {odd['id']}: completed_at is a list, not a number: NULL",
        f"batch {odd['id']}: metadata holds a lone surrogate: replaced",
        f"batch {odd['id']}: raw holds a lone surrogate: replaced",
        f"batch {odd['id']}: code is a dict, not text: NULL",
    ]


def test_fitted_rows_of_a_plain_page_are_the_plain_rows() -> None:
    """Nothing to fit: the same rows, no warnings."""
    batches = [make_batch(n) for n in range(3)]
    assert build_page_rows_fitted(batches, 5) == (*build_page_rows(batches, 5), [])


def test_error_lines_past_what_a_batch_can_hold_are_not_kept() -> None:
    """A batch has at most 50,000 requests: a longer error list is a hostile server's."""
    batch = make_batch(1, errors={"object": "list", "data": [{}] * (MAX_ERROR_LINES + 5)})
    rows = build_error_rows(batch)
    assert len(rows) == MAX_ERROR_LINES
    assert rows[-1][1] == MAX_ERROR_LINES - 1


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("1700000007", 1_700_000_007),
        ("1700000007.9", 1_700_000_007),
        ("2023-11-14T22:13:27Z", 1_700_000_007),
        ("2023-11-14T23:13:27+01:00", 1_700_000_007),
        ("2023-11-14 22:13:27", 1_700_000_007),
        ("yesterday", None),
        ("nan", None),
        (1700000007.5, 1_700_000_007),
    ],
)
def test_times_sent_as_text_are_stored_as_unix_seconds(
    sent: str | float, stored: int | None
) -> None:
    """Novita sends created_at as a string: the column holds seconds, `raw` what was sent.
    So for a float: stored with its fraction (as REAL), the batch was found by no search by
    creation time (the walk's stop in the head's second, visits to a batch refused by id)."""
    batch = make_batch(7, created_at=sent, completed_at="1700000207")
    row = as_dict(build_batch_row(batch, seen_at=99))
    assert row["created_at"] == stored
    assert row["completed_at"] == 1_700_000_207
    assert json.loads(str(row["raw"]))["created_at"] == sent


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("/chat/completions", "/v1/chat/completions"),
        ("/embeddings", "/v1/embeddings"),
        ("/v1/responses", "/v1/responses"),
        ("/v1", "/v1"),
        ("chat", "chat"),
    ],
)
def test_an_endpoint_without_its_version_is_stored_as_openais(sent: str, stored: str) -> None:
    """Azure's batches say /chat/completions: stored as /v1/chat/completions, so that the
    views group both providers' batches together; `raw` keeps what was sent."""
    row = as_dict(build_batch_row(make_batch(7, endpoint=sent), seen_at=99))
    assert row["endpoint"] == stored
    assert json.loads(str(row["raw"]))["endpoint"] == sent


@pytest.mark.parametrize(
    ("stored", "listed", "stale"),
    [
        ("completed", "in_progress", True),
        ("completed", "COMPLETED", True),
        ("finalizing", "in_progress", True),
        ("in_progress", "validating", True),
        ("cancelling", "validating", True),
        ("validating", "in_progress", False),
        ("in_progress", "cancelling", False),
        ("finalizing", "cancelling", False),
        ("cancelling", "finalizing", False),
        ("in_progress", "in_progress", False),
        ("finalizing", "failed", False),
        ("completed", "failed", False),
        ("in_progress", "queued", False),
        ("queued", "validating", False),
        (None, "validating", False),
    ],
)
def test_a_listing_at_an_earlier_stage_than_stored_is_stale(
    stored: object, listed: object, stale: bool
) -> None:
    """A status the API does not document is never stale nor makes another one stale,
    except in place of a terminal one: a batch never leaves a terminal status."""
    assert moves_back(stored, listed) is stale


@pytest.mark.parametrize(
    ("stored", "listed", "filled"),
    [
        (
            '{"errors": {"data": []}, "model": "m"}',
            '{"errors": null, "model": "m"}',
            {"errors": {"data": []}, "model": "m"},
        ),
        ('{"usage": {"total_tokens": 1}}', "{}", {"usage": {"total_tokens": 1}}),
        ('{"model": "m", "x_own": 1}', '{"usage": {}}', {"usage": {}, "model": "m"}),
        ('{"errors": null}', '{"usage": {"total_tokens": 1}}', None),
        (
            '{"error_file_id": "f", "model": "m"}',
            '{"error_file_id": null}',
            {"error_file_id": None, "model": "m"},
        ),
        ('{"status": "failed", "failed_at": 1}', '{"status": "completed"}', None),
        (
            '{"status": "failed", "failed_at": 1}',
            '{"status": "failed"}',
            {"status": "failed", "failed_at": 1},
        ),
        ('{"model": "m"}', '{"model": "n", "usage": {}}', None),
        ('{"model": "m"}', '{"model": "m"}', None),
        ("not JSON", '{"model": "m"}', None),
        ("[1]", "{}", None),
    ],
)
def test_a_listing_is_filled_with_the_api_fields_it_leaves_out_that_the_stored_batch_gives(
    stored: str, listed: str, filled: object
) -> None:
    assert fill_left_out(stored, listed) == filled


def test_a_page_filled_from_stored_batches_gets_their_rows_and_error_lines() -> None:
    stored = make_batch(1, status="failed", errors={"data": [{"code": "bad", "line": 1}]})
    listed = {key: value for key, value in stored.items() if key not in {"errors", "usage"}}
    other = make_batch(2)
    batch_rows, error_rows = build_page_rows([listed, other], seen_at=5, account="a")
    stored_rows, stored_errors = build_page_rows([stored], seen_at=5, account="a")
    raw = BATCH_COLUMNS.index("raw")
    filled, filled_errors, ids = fill_page_rows(
        {stored["id"]: stored_rows[0][raw]}, batch_rows, error_rows
    )
    assert [{**as_dict(row), "raw": json.loads(row[raw])} for row in filled] == [
        {**as_dict(row), "raw": json.loads(row[raw])} for row in (stored_rows[0], batch_rows[1])
    ]
    assert (filled_errors, ids) == (stored_errors, {stored["id"]})


def test_another_accounts_listing_fills_only_what_the_stored_copy_leaves_out() -> None:
    """The stored copy's values first: another account's listing of a batch ended adds
    only what it lacks (the first account to store it may have been a gateway's)."""
    full = make_batch(1, status="failed", model="m-direct")
    stored = {**full, "usage": None, "model": "m-gateway"}
    (stored_row,), _ = build_page_rows([stored], seen_at=5, account="b")
    rows, errors = build_page_rows([full], seen_at=6, account="a")
    raw = BATCH_COLUMNS.index("raw")
    (filled,), _, ids = fill_page_rows(
        {full["id"]: stored_row[raw]}, rows, errors, stored_first={full["id"]}
    )
    assert json.loads(filled[raw]) == {**full, "model": "m-gateway"}
    assert ids == {full["id"]}


@pytest.mark.parametrize(
    ("stored_fields", "column", "value"),
    [
        ({"expires_at": "2025-10-10T08:53:50+00:00"}, "expires_at", 1760086430),
        ({"model": {"name": "m"}}, "model", None),
    ],
    ids=["a compatible API's time as text", "a value SQLite cannot store"],
)
def test_what_a_page_takes_from_a_stored_batch_is_made_storable(
    stored_fields: dict[str, object], column: str, value: object
) -> None:
    """It was stored as sent: a time as text in a time column, or an object SQLite
    refused on every sync."""
    stored = make_batch(1, **stored_fields)
    listed = {**make_batch(1), column: None}
    batch_rows, error_rows = build_page_rows([listed], seen_at=5, account="a")
    raw = BATCH_COLUMNS.index("raw")
    stored_raw = build_page_rows([stored], seen_at=5, account="a")[0][0][raw]
    (filled,), _, _ = fill_page_rows({stored["id"]: stored_raw}, batch_rows, error_rows)
    assert as_dict(filled)[column] == value
