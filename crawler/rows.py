"""Pure mapping of Batch objects to table rows: no network, no disk."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from .jsontext import is_storable_text, parse, to_text
from .pages import Batch
from .redact import Secret, holds_secret, mask_values, texts_holding_secret
from .times import unix_seconds

# Order matters: it is the column order of the INSERT that `store` builds from it.
BATCH_COLUMNS = (
    "id",
    "object",
    "endpoint",
    "model",
    "status",
    "completion_window",
    "input_file_id",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts_total",
    "request_counts_completed",
    "request_counts_failed",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "metadata",
    "raw",
    "first_seen_at",
    "last_seen_at",
    "account",  # the one that stored it first (see migrations/0010_accounts.sql)
)

ERROR_COLUMNS = ("batch_id", "position", "code", "message", "param", "line")

# Top-level fields copied as they are, in BATCH_COLUMNS order.
_PLAIN_FIELDS = BATCH_COLUMNS[: BATCH_COLUMNS.index("request_counts_total")]
_RAW = BATCH_COLUMNS.index("raw")
_SEEN = BATCH_COLUMNS.index("last_seen_at")
_ACCOUNT = BATCH_COLUMNS.index("account")
_ENDPOINT = BATCH_COLUMNS.index("endpoint")
_TIMES = range(BATCH_COLUMNS.index("created_at"), BATCH_COLUMNS.index("cancelled_at") + 1)


def _object(value: Any) -> dict[str, Any]:
    """A nested object, or an empty one where the API sent null, nothing, or junk."""
    return value if isinstance(value, dict) else {}


def build_batch_row(batch: Batch, seen_at: int, account: str = "default") -> tuple[Any, ...]:
    """The `batches` row for one Batch object, seen at unix time `seen_at` by `account`.

    Missing and null fields become NULL; the whole object is kept as JSON in `raw`,
    so fields and statuses this version does not know are not lost. A compatible API's
    times sent as text or floats and unversioned endpoints are read as OpenAI's
    (`_compatible_row`).
    """
    endpoint = batch.get("endpoint")
    # Checked on two fields, not all: this runs for every batch of every page.
    if type(batch.get("created_at")) in (str, float) or (
        isinstance(endpoint, str) and not endpoint.startswith("/v1")
    ):
        return _compatible_row(_row_as_sent(batch, seen_at, account))
    return _row_as_sent(batch, seen_at, account)


def _row_as_sent(batch: Batch, seen_at: int, account: str) -> tuple[Any, ...]:
    """The `batches` row of a batch as OpenAI sends it: every value as it came."""
    get = batch.get
    counts = _object(get("request_counts"))
    usage = _object(get("usage"))
    metadata = get("metadata")
    return (
        *map(get, _PLAIN_FIELDS),
        counts.get("total"),
        counts.get("completed"),
        counts.get("failed"),
        usage.get("input_tokens"),
        _object(usage.get("input_tokens_details")).get("cached_tokens"),
        usage.get("output_tokens"),
        _object(usage.get("output_tokens_details")).get("reasoning_tokens"),
        usage.get("total_tokens"),
        None if metadata is None else to_text(metadata),
        to_text(batch),
        seen_at,
        seen_at,
        account,
    )


def _compatible_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row of a compatible API's batch made like OpenAI's (`raw` keeps what it sent):
    times sent as text (Novita's) or floats as unix seconds, NULL where they do not parse
    (stored as sent, a float's fraction hid the batch from every search by creation time:
    the walk's stop in the head's second, visits); an endpoint without its version
    (Azure's `/chat/completions`) as `/v1/chat/completions`."""
    fixed = list(row)
    for i in _TIMES:
        if isinstance(fixed[i], str | float):
            fixed[i] = unix_seconds(fixed[i])
    endpoint = fixed[_ENDPOINT]
    if isinstance(endpoint, str) and endpoint.startswith("/") and not endpoint.startswith("/v1"):
        fixed[_ENDPOINT] = "/v1" + endpoint
    return tuple(fixed)


# A batch holds at most 50,000 requests, so its input file at most that many lines to
# fault; a list past that is a hostile server's, and would take gigabytes as rows.
MAX_ERROR_LINES = 50_000


def build_error_rows(batch: Batch) -> list[tuple[Any, ...]]:
    """The `batch_errors` rows of one batch: its `errors.data` lines, by position (the
    first MAX_ERROR_LINES of them)."""
    lines = _object(batch.get("errors")).get("data")
    if not isinstance(lines, list):
        return []
    lines = lines[:MAX_ERROR_LINES]
    batch_id = batch["id"]
    return [
        (batch_id, position, e.get("code"), e.get("message"), e.get("param"), e.get("line"))
        for position, e in enumerate(map(_object, lines))
    ]


def build_page_rows(
    batches: Iterable[Batch], seen_at: int, secret: Secret = None, account: str = "default"
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Batch rows and error rows for a page; a batch listed twice is kept once (see
    furthest_copies).

    A page holding `secret` (the API key, echoed by a server into a field or an error
    line) has it masked in every value: the database is shared more widely than the key.
    """
    listed = list(batches)
    unique: Collection[Batch] = {b["id"]: b for b in listed}.values()
    if len(unique) < len(listed):
        unique = furthest_copies(listed)
    batch_rows = [build_batch_row(batch, seen_at, account) for batch in unique]
    # Most batches have no errors (null): skip the call for them.
    error_rows = [row for batch in unique if batch.get("errors") for row in build_error_rows(batch)]
    # `raw` holds every value of the batch, error lines included, as JSON writes them.
    raws = (row[_RAW] for row in batch_rows)
    if secret and holds_secret("\n".join(raws), secret, json_lines=True):
        batch_rows = [mask_values(row, secret) for row in batch_rows]
        error_rows = [mask_values(row, secret) for row in error_rows]
    return batch_rows, error_rows


# Statuses a batch never leaves: it never changes again, and its files are final.
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})

FILE_KINDS = {"output_file_id": "output", "error_file_id": "error"}


# The order a batch moves through its statuses; cancelling may come after any stage in flight.
_STAGES = {"validating": 0, "in_progress": 1, "finalizing": 2, "cancelling": 2}


def is_terminal(status: Any) -> bool:
    """Whether `status` is one a batch never leaves."""
    return isinstance(status, str) and status in TERMINAL_STATUSES


# The Batch object's fields as the API documents them (a gateway may add its own).
_API_FIELDS = frozenset({*_PLAIN_FIELDS, "errors", "request_counts", "usage", "metadata"})

# What one listing of a batch ended takes from another: the API's fields but its file ids,
# which are those its owner's listing names (a gateway may mint ids of its own).
_FILLED_FIELDS = _API_FIELDS - FILE_KINDS.keys()


def fill_left_out(stored_raw: str, listed_raw: str, *, file_ids: bool = False) -> Batch | None:
    """The batch listed as `listed_raw` with each field of the API's it leaves out (missing
    or null) that `stored_raw` gives taken from there (_FILLED_FIELDS, and the file ids
    with `file_ids`: both the owner's); None when it leaves none out. For a batch ended,
    which never changes again: two listings of it (a gateway's leaving out `usage` or
    `errors`, another's `model`) each say part of it, if they agree on its status. A field
    of a gateway's own is no part of it."""
    if stored_raw == listed_raw:
        return None
    try:
        stored, listed = parse(stored_raw.encode()), parse(listed_raw.encode())
    except ValueError:  # a raw edited by hand: the listing is stored over it
        return None
    if not isinstance(stored, dict) or not isinstance(listed, dict):
        return None
    if stored.get("status") != listed.get("status"):  # one of them is wrong: the listing wins
        return None
    left_out = {
        key: value
        for key, value in stored.items()
        if value is not None
        and (key in _FILLED_FIELDS or (file_ids and key in _API_FIELDS))
        and listed.get(key) is None
    }
    return {**listed, **left_out} if left_out else None


def fill_page_rows(
    stored_raws: dict[str, str],
    batch_rows: Sequence[tuple[Any, ...]],
    error_rows: Sequence[tuple[Any, ...]],
    secret: Secret = None,
    *,
    stored_first: Collection[str] = (),
    owners_own: Collection[str] = (),
) -> tuple[Sequence[tuple[Any, ...]], Sequence[tuple[Any, ...]], set[str]]:
    """A page's batch rows and error rows, each listing of a batch ended and the copy stored
    of it (`stored_raws[id]`) filling what the other leaves out (`fill_left_out`): the
    listing's values first (its owner's), or the stored copy's for the ids `stored_first`
    (another account's listing, which adds only what the stored copy lacks: the first to
    store the batch ended may have been a gateway leaving fields out). `secret` is masked
    in what is taken, as in the page (another account's run, not knowing this one's key,
    stored it). The file ids are filled too for the ids `owners_own`, the owner's listing
    over a copy the owner's own answer ended (a list leaving them out nulled those its
    answer by id gave, pass 72B). Also returns the ids filled."""
    filled = {}
    for row in batch_rows:
        stored = stored_raws.get(row[0])
        if stored is None:
            continue
        first, then = (stored, row[_RAW]) if row[0] in stored_first else (row[_RAW], stored)
        own = row[0] in owners_own
        if (batch := fill_left_out(then, first, file_ids=own)) is not None:
            filled[row[0]] = batch
    if not filled:
        return batch_rows, error_rows, set()
    # A value taken may be a compatible API's (a time as text), or one SQLite cannot store
    # (made storable when stored first, as here again).
    merged = [
        _compatible_row(_row_as_sent(filled[row[0]], row[_SEEN], row[_ACCOUNT]))
        for row in batch_rows
        if row[0] in filled
    ]
    fitted = {row[0]: mask_values(row, secret) for row in fit_rows(BATCH_COLUMNS, merged, [])}
    batch_rows = [fitted.get(row[0], row) for row in batch_rows]
    error_rows = [row for row in error_rows if row[0] not in filled]
    taken = [row for batch in filled.values() for row in build_error_rows(batch)]
    taken = [mask_values(row, secret) for row in fit_rows(ERROR_COLUMNS, taken, [])]
    return batch_rows, [*error_rows, *taken], set(filled)


def moves_back(stored: Any, listed: Any) -> bool:
    """Whether a batch stored in status `stored` is shown in an earlier one: a stale answer
    (another account's caching gateway), since a batch never goes back a stage."""
    if is_terminal(stored):
        return not is_terminal(listed)
    # Not a status (a list, say): no stage, and unhashable.
    now = _STAGES.get(listed) if isinstance(listed, str) else None
    was = _STAGES.get(stored) if isinstance(stored, str) else None
    return was is not None and now is not None and now < was


def furthest_copies(batches: Iterable[Batch]) -> Collection[Batch]:
    """Each batch once: its last copy, unless an earlier one is further along (a page
    listing a batch ended, then in flight, kept it in flight: a batch never goes back)."""
    kept: dict[str, Batch] = {}
    for batch in batches:
        have = kept.get(batch["id"])
        if have is None or not moves_back(have.get("status"), batch.get("status")):
            kept[batch["id"]] = batch
    return kept.values()


def build_file_rows(batches: Iterable[Batch], secret: Secret = None) -> list[tuple[str, str, str]]:
    """(file_id, batch_id, kind) for every file a terminal batch names: the files to fetch.

    A file id holding `secret` (a server's echo of the key) is no file to fetch: asking for
    it would put the key in a URL, and storing it would keep the key.
    """
    files = [
        (file_id, batch["id"], kind)
        for batch in batches
        if is_terminal(batch.get("status"))
        for field, kind in FILE_KINDS.items()
        if is_storable_text(file_id := batch.get(field))
    ]
    holding = texts_holding_secret((file_id for file_id, _, _ in files), secret)
    return [file for file in files if file[0] not in holding] if holding else files


# Columns SQLite stores as numbers; every other column is text.
_NUMBER_COLUMNS = frozenset(
    BATCH_COLUMNS[BATCH_COLUMNS.index("created_at") : BATCH_COLUMNS.index("metadata")]
) | {"first_seen_at", "last_seen_at", "position", "line"}
_INT64 = range(-(2**63), 2**63)
# A str decoded from JSON holds a surrogate only when it came alone, which UTF-8 cannot carry.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _fit(column: str, value: Any) -> tuple[Any, str | None]:
    """A value SQLite can store in `column`, and what was changed to get it (None: nothing)."""
    if value is None or isinstance(value, float):
        return value, None
    if isinstance(value, int):
        return (value, None) if value in _INT64 else (None, "is wider than 64 bits: NULL")
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value):
            return _LONE_SURROGATE.sub("\ufffd", value), "holds a lone surrogate: replaced"
        return value, None
    if column in _NUMBER_COLUMNS:
        return None, f"is a {type(value).__name__}, not a number: NULL"
    return None, f"is a {type(value).__name__}, not text: NULL"


def _fit_row(
    columns: Sequence[str], row: tuple[Any, ...], batch_id: str, warnings: list[str]
) -> tuple[Any, ...]:
    fitted = []
    for column, value in zip(columns, row, strict=True):
        kept, problem = _fit(column, value)
        if problem:
            warnings.append(f"batch {batch_id}: {column} {problem}")
        fitted.append(kept)
    return tuple(fitted)


def fit_rows(
    columns: Sequence[str], rows: Sequence[tuple[Any, ...]], warnings: list[str]
) -> list[tuple[Any, ...]]:
    """`rows` with every value made storable (see `build_page_rows_fitted`); the first
    column names the batch in each warning."""
    return [_fit_row(columns, row, row[0], warnings) for row in rows]


def build_page_rows_fitted(
    batches: Iterable[Batch], seen_at: int, secret: Secret = None, account: str = "default"
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[str]]:
    """Like `build_page_rows`, with every value made storable, and a warning for each change.

    For the rare page SQLite refuses (a `model` that is an object, a time that is a list,
    text with a lone surrogate): such a value becomes NULL, or its text has the character
    replaced, and `raw` keeps all that JSON can carry. Slower, so only used on refusal.
    """
    batch_rows, error_rows = build_page_rows(batches, seen_at, secret, account)
    warnings: list[str] = []
    fitted_batches = fit_rows(BATCH_COLUMNS, batch_rows, warnings)
    fitted_errors = fit_rows(ERROR_COLUMNS, error_rows, warnings)
    return fitted_batches, fitted_errors, warnings
