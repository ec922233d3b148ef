"""The metadata Datasette reads for a batch-crawler database: what each table and view
holds, its facets and order, and where its full-text search is. Pure: a name in, data out.

See https://docs.datasette.io/en/0.65/metadata.html for the keys.
"""

from __future__ import annotations

from typing import Any

_TIME = "unix seconds"

_BATCH_COLUMNS = {
    "id": "the batch's id (batch_...)",
    "endpoint": "the API the requests went to: /v1/chat/completions, /v1/responses, ...",
    "model": "the model the batch ran on (NULL for batches older than the API's model field)",
    "status": "validating, in_progress, finalizing, completed, failed, expired, cancelling, "
    "cancelled",
    "completion_window": "24h",
    "input_file_id": "the requests the batch was given",
    "output_file_id": "the answers (NULL when every request failed)",
    "error_file_id": "the failed requests",
    "created_at": _TIME,
    "in_progress_at": _TIME,
    "expires_at": _TIME,
    "finalizing_at": _TIME,
    "completed_at": _TIME,
    "failed_at": _TIME,
    "expired_at": _TIME,
    "cancelling_at": _TIME,
    "cancelled_at": _TIME,
    "request_counts_total": "requests in the batch",
    "request_counts_completed": "requests answered",
    "request_counts_failed": "requests that failed",
    "input_tokens": "from usage (batches created from 2025-09-07 on)",
    "cached_input_tokens": "input tokens read from the prompt cache",
    "output_tokens": "from usage",
    "reasoning_tokens": "output tokens spent reasoning",
    "total_tokens": "input and output",
    "metadata": "the tags the batch was created with, as JSON (see batch_metadata)",
    "raw": "the whole batch object as the API sent it, as JSON",
    "first_seen_at": "when a sync first stored the batch (unix seconds)",
    "last_seen_at": "when a sync last stored it",
    "gone_at": "the first time GET /batches/{id} answered 404",
    "not_found_runs": "syncs in a row that answered 404, every account's",
    "not_found_by": "each account's 404s since it was last listed (a JSON object); from 3 "
    "on, that account no longer asks",
    "ended_by": "the account whose list showed it ended first, another listing it too: the "
    "others ask for it until its owner's answer is stored (or each answered, the owner's list "
    "having ended it); *: ended before schema 23, asked of each, its owner too",
    "ended_asks": "each other account's asks for it since (a JSON object; 3 each at most, 3 "
    "once it answered)",
    "file_asks": "its owner's asks by id answered, ended naming no file (3 at most)",
    "missed_by": "when each account last looked for it by id and in its list and found "
    "nothing to store (a JSON object); refreshes take the least recently seen or missed first",
    "cut_by": "when each account last asked for it by id as its time budget ran out (a JSON "
    "object): it is looked for in the list first",
}

_REQUEST_COLUMNS = {
    "batch_id": "the batch",
    "custom_id": "the id the request was given in the input file",
    "batch_request_id": "the line's batch_req_... id",
    "file_id": "the file the line came from",
    "kind": "output (answered) or error (failed, or never run)",
    "status_code": "the HTTP status of the request; NULL if never run (expired, cancelled)",
    "request_id": "the API's request id",
    "error_code": "why it failed: context_length_exceeded, batch_expired, ...",
    "error_message": "the API's message (search them in request_error_messages, or with "
    "the query requests_by_error_message)",
    "error_type": "invalid_request_error, server_error, ...",
    "error_param": "the parameter at fault",
    "model": "the model the answer names",
    "finish_reason": "stop, length, content_filter; responses: completed, or why incomplete",
    "input_tokens": "from the answer's usage",
    "cached_input_tokens": "input tokens read from the prompt cache",
    "output_tokens": "from the answer's usage",
    "reasoning_tokens": "output tokens spent reasoning",
    "total_tokens": "input and output",
    "body": "the whole answer as JSON, only when synced with --bodies",
    "reading": "which reading of its file wrote the row (a random number)",
}

_FACETS = ["status", "model", "endpoint"]


def _table(
    description: str,
    columns: dict[str, str] | None = None,
    *,
    facets: list[str] | None = None,
    sort_desc: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    table: dict[str, Any] = {"description": description}
    if columns:
        table["columns"] = columns
    if facets:
        table["facets"] = facets
    if sort_desc:
        table["sort_desc"] = sort_desc
    return {**table, **extra}


TABLES: dict[str, dict[str, Any]] = {
    "batches": _table(
        "One row per batch the API lists, as the last sync saw it.",
        _BATCH_COLUMNS,
        facets=_FACETS,
        sort_desc="created_at",
        label_column="model",
    ),
    "batch_errors": _table(
        "Why a batch failed as a whole: its errors.data lines (a bad input file, say). "
        "Search the messages with the search box.",
        {
            "batch_id": "the batch",
            "position": "the line's place in errors.data",
            "code": "the error's code",
            "message": "the error's message (full-text searchable)",
            "param": "the parameter at fault",
            "line": "the line of the input file at fault",
        },
        facets=["code"],
        fts_table="batch_errors_fts",
    ),
    "batch_requests": _table(
        "One row per request of a finished batch, from its error file (and output file, "
        "with --outputs): kept after the API deletes the files, 30 days on.",
        _REQUEST_COLUMNS,
        facets=["kind", "error_code", "status_code", "model"],
    ),
    "request_error_messages": _table(
        "Every error message a request line holds, once: search them with the search box, "
        "then find their requests with the query requests_by_error_message.",
        {"message": "an error_message of batch_requests (full-text searchable)"},
        fts_table="request_error_messages_fts",
    ),
    "batch_files": _table(
        "Every file a finished batch names, and whether its lines are stored.",
        {
            "state": "pending, complete, expired (the API answered 404), failed",
            "bytes": "size of the file read",
            "lines": "request lines stored from it",
            "error": "why it failed",
            "fetched_at": "unix seconds",
            "expires_at": "when the API deletes the file (unix seconds)",
            "not_found_runs": "syncs that got a 404 since it was last read (6: expired for good)",
            "empty_runs": "syncs in a row that read it without one request line",
            "named_by": "the account whose list named it (the batch's owner)",
            "failed_by": (
                "accounts whose ask failed since it was last read (a JSON array, the last to "
                "fail last)"
            ),
            "not_found_by": "accounts whose ask got a 404 since it was last read (a JSON array)",
        },
        facets=["kind", "state"],
    ),
    "model_prices": _table(
        "USD per 1M tokens, by model: standard and batch rates (batch-crawler prices load "
        "FILE updates them).",
        facets=["source"],
    ),
    "sync_runs": _table(
        "One row per sync: how it ended and what it did.",
        {
            "mode": "full, resume or incremental",
            "outcome": "running, complete, partial, failed, interrupted, killed",
            "pages": "list pages walked",
            "pages_without_has_more": "of those, pages of a list that never says has_more "
            "(walked until an empty page)",
            "refreshed_by_id": "batches asked for one by one",
            "files": "request files stored",
            "request_lines": "request lines stored",
        },
        facets=["mode", "outcome"],
        sort_desc="started_at",
    ),
    "batch_listings": _table(
        "The accounts other than its owner whose list showed each batch: they refresh it too.",
        hidden=True,
    ),
    "walk_state": _table("Where the walk of the list stands, for the next sync.", hidden=True),
    "schema_migrations": _table("The schema's migrations applied.", hidden=True),
    "batch_costs": _table(
        "What each batch cost at batch rates (USD), from its usage and model_prices. NULL: a "
        "model with no price, or no usage.",
        {"priced_as": "the priced model: the batch's own, or a dated name's base"},
        facets=_FACETS,
        sort_desc="created_at",
    ),
    "daily_usage": _table(
        "Per UTC day of creation, account, model and endpoint: batches, requests, failures, "
        "tokens, USD.",
        facets=["account", "model", "endpoint"],
        sort_desc="day",
    ),
    "request_costs": _table(
        "Each stored request priced at batch rates, by the model its answer names.",
        facets=["kind", "model"],
    ),
    "in_flight": _table(
        "Batches not settled yet, with their age and progress.",
        {"age_seconds": "since creation", "percent_done": "requests answered or failed"},
        facets=_FACETS,
    ),
    "failure_rates": _table(
        "Per model and endpoint: failed batches and requests, and the top error codes.",
        facets=["model", "endpoint"],
    ),
    "failed_requests": _table(
        "The requests that failed, newest batch first.",
        facets=["error_code", "status_code", "model"],
    ),
    "request_outcomes": _table(
        "Per batch: its requests by status code and finish reason.",
        facets=["kind", "finish_reason"],
    ),
    "batch_durations": _table(
        "Seconds each batch spent validating, in progress and finalizing.",
        facets=["status", "model"],
    ),
    "batch_metadata": _table(
        "One row per metadata tag of each batch: GROUP BY key and value.",
        facets=["key"],
    ),
    "model_rates": _table("Each priced model's batch rates (USD per 1M tokens)."),
}


# Requests are found by their messages' words: the index holds each distinct message once.
QUERIES: dict[str, dict[str, str]] = {
    "requests_by_error_message": {
        "title": "Requests by the words of their error message",
        "description": "Full-text search (FTS5): every word must appear, in any order; "
        '"quotes" for a phrase, OR between words for either.',
        "sql": "SELECT batch_id, custom_id, kind, status_code, error_code, error_type, "
        "error_message, model FROM batch_requests WHERE error_message IN (SELECT message "
        "FROM request_error_messages_fts WHERE request_error_messages_fts MATCH :words)",
    },
}


def datasette_metadata(database: str) -> dict[str, Any]:
    """Datasette's metadata for a database Datasette names `database` (its file's stem)."""
    return {
        "title": "OpenAI Batches",
        "description": "Every batch of an OpenAI organization and the outcome of each of its "
        "requests, copied by batch-crawler.",
        "source": "OpenAI Batches API, via batch-crawler",
        "databases": {database: {"tables": TABLES, "queries": QUERIES}},
    }
