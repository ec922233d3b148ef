"""One batch's answer never freezes it or blocks the sync: 404s, refusals, odd values."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from crawler.api import RetryPolicy
from crawler.config import Settings
from crawler.errors import AuthenticationError, ServerError
from crawler.status import format_status, read_status
from crawler.sync_run import sync

from .conftest import BASE_URL, list_body, make_batch, serve_the_end

NUMBERS = list(range(7, 0, -1))  # newest first; batch 2 is in flight, five pages down
STRAGGLER = make_batch(2, status="in_progress", completed_at=None)
BY_ID = f"{BASE_URL}/batches/{STRAGGLER['id']}"


def serve_list(mock: aioresponses, batches: dict[int, dict[str, Any]], limit: int = 2) -> None:
    """Every list page of NUMBERS, the batches given replacing the plain ones."""
    after = ""
    for start in range(0, len(NUMBERS), limit):
        chunk = [batches.get(n) or make_batch(n) for n in NUMBERS[start : start + limit]]
        more = start + limit < len(NUMBERS)
        mock.get(f"{BASE_URL}/batches?limit={limit}{after}", payload=list_body(chunk, more))
        after = f"&after={chunk[-1]['id']}"
    serve_the_end(mock, make_batch(NUMBERS[-1]), limit)


def serve_head(mock: aioresponses) -> None:
    """The first page, all an incremental sync walks here (the head has not moved)."""
    body = list_body([make_batch(7), make_batch(6)], True)
    mock.get(f"{BASE_URL}/batches?limit=2", payload=body)


def serve_visit(mock: aioresponses, listed: list[int] = NUMBERS) -> None:
    """The head page, then the page after batch 3 (stored just above batch 2), as a visit
    to the batches that requests by id could not refresh reads it; those `listed` completed."""
    serve_head(mock)
    below = [make_batch(n) for n in listed if n < 3]
    after = f"&after={make_batch(3)['id']}"
    mock.get(f"{BASE_URL}/batches?limit=2{after}", payload=list_body(below, False))


def not_found(code: str | None, message: str = "No batch found with id 'x'.") -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


def straggler_row(db: Path) -> tuple[Any, ...]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            "SELECT status, gone_at IS NOT NULL, not_found_runs FROM batches WHERE id = ?",
            (STRAGGLER["id"],),
        ).fetchone()


async def first_sync(settings: Settings, retry: RetryPolicy) -> None:
    with aioresponses() as mock:
        serve_list(mock, {2: STRAGGLER})
        result = await sync(settings, retry=retry)
    assert result.complete
    assert straggler_row(settings.db) == ("in_progress", 0, 0)


async def test_one_404_does_not_freeze_a_batch(settings: Settings, fast_retry: RetryPolicy) -> None:
    """A 404 by id once (a blip) is asked again next time, and the batch's end is stored."""
    await first_sync(settings, fast_retry)
    with aioresponses() as mock:
        serve_visit(mock, listed=[1])  # gone from the list too
        mock.get(BY_ID, status=404, payload=not_found("batch_not_found"))
        blip = await sync(settings, retry=fast_retry)
    assert (blip.complete, blip.gone) == (True, 1)
    assert straggler_row(settings.db) == ("in_progress", 1, 1)
    with aioresponses() as mock:
        serve_head(mock)
        mock.get(BY_ID, payload=make_batch(2))
        again = await sync(settings, retry=fast_retry)
    assert (again.complete, again.refreshed_by_id, again.gone) == (True, 1, 0)
    assert straggler_row(settings.db) == ("completed", 0, 0)


async def test_three_404s_in_a_row_confirm_a_batch_gone(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """After three runs of 404 the batch is no longer asked about; its row stays."""
    await first_sync(settings, fast_retry)
    for runs in (1, 2, 3):
        with aioresponses() as mock:
            serve_visit(mock, listed=[1])  # gone from the list too
            mock.get(BY_ID, status=404, payload=not_found("batch_not_found"))
            await sync(settings, retry=fast_retry)
        assert straggler_row(settings.db) == ("in_progress", 1, runs)
    with aioresponses() as mock:
        serve_head(mock)  # a request by id now would fail: aioresponses knows no such URL
        quiet = await sync(settings, retry=fast_retry)
    assert (quiet.complete, quiet.refreshed_by_id) == (True, 0)
    report = await read_status(settings.db)
    assert report.gone == 1
    assert "gone: 1 answered 404 on 3 runs in a row of an account" in format_status(report)


async def test_a_listed_batch_clears_its_gone_mark(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A batch marked gone that the list shows again is no longer marked."""
    await first_sync(settings, fast_retry)
    with aioresponses() as mock:
        serve_visit(mock, listed=[1])  # gone from the list too
        mock.get(BY_ID, status=404, payload=not_found("batch_not_found"))
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        serve_list(mock, {2: STRAGGLER})
        await sync(settings, full=True, retry=fast_retry)
    assert straggler_row(settings.db) == ("in_progress", 0, 0)


@pytest.mark.parametrize("code", [None, "not_found", "batch_not_found"])
async def test_a_404_by_id_with_any_code_means_not_found(
    settings: Settings, fast_retry: RetryPolicy, code: str | None
) -> None:
    """OpenAI-compatible servers answer 404 with another code, or none: still not found."""
    await first_sync(settings, fast_retry)
    with aioresponses() as mock:
        serve_visit(mock, listed=[1])  # gone from the list too
        mock.get(BY_ID, status=404, payload=not_found(code))
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.gone) == (True, 1)
    with aioresponses() as mock:
        serve_head(mock)
        mock.get(BY_ID, payload=make_batch(2))
        await sync(settings, retry=fast_retry)
    assert straggler_row(settings.db) == ("completed", 0, 0)


UNUSABLE_ANSWERS = {
    "a 404 for its path": {
        "status": 404,
        "payload": not_found(None, message=f"Invalid URL (GET /v1/batches/{STRAGGLER['id']})"),
    },
    "refused": {
        "status": 400,
        "payload": {"error": {"message": "Invalid batch id.", "type": "invalid_request_error"}},
    },
    # After the list was read with the same key: the batch's answer, not the key's.
    "forbidden": {
        "status": 403,
        "payload": {"error": {"message": "Not allowed.", "type": "invalid_request_error"}},
    },
    "another batch": {"payload": make_batch(99)},
}


@pytest.mark.parametrize("answer", UNUSABLE_ANSWERS.values(), ids=UNUSABLE_ANSWERS.keys())
async def test_a_batch_whose_answer_by_id_is_unusable_is_refreshed_from_the_list(
    settings: Settings, fast_retry: RetryPolicy, answer: dict[str, Any]
) -> None:
    """The walk goes down the list to it instead, in the same run; it is never counted
    gone, and an answer naming another batch adds no row the list never showed."""
    await first_sync(settings, fast_retry)
    with aioresponses() as mock:
        serve_visit(mock)
        mock.get(BY_ID, **answer)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.pages, result.gone, result.warnings) == (True, 2, 0, ())
    assert straggler_row(settings.db) == ("completed", 0, 0)
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (len(NUMBERS),)


NOT_AFTER_IT = {
    "an empty page": (200, list_body([], False)),
    "a 400 without param": (400, not_found(None, "Invalid 'after'.")),
    "a 404": (404, not_found(None, "No such object.")),
}


@pytest.mark.parametrize(("status", "body"), NOT_AFTER_IT.values(), ids=NOT_AFTER_IT.keys())
async def test_a_visit_whose_cursor_left_the_list_tries_the_next_batch_above(
    settings: Settings, fast_retry: RetryPolicy, status: int, body: dict[str, Any]
) -> None:
    """Batch 3, stored just above the straggler, has left the list, and `after` it answers
    an empty page: the visit goes on from batch 4 rather than taking that for the end. A
    400 not naming `after`, or a 404, failed every sync."""
    await first_sync(settings, fast_retry)
    with aioresponses() as mock:
        serve_head(mock)
        mock.get(BY_ID, status=403, payload=not_found(None, "Not allowed."), repeat=True)
        gone = f"{BASE_URL}/batches?limit=2&after={make_batch(3)['id']}"
        mock.get(gone, status=status, payload=body, repeat=True)
        below = list_body([make_batch(2), make_batch(1)], False)
        mock.get(f"{BASE_URL}/batches?limit=2&after={make_batch(4)['id']}", payload=below)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.gone, result.warnings) == (True, 0, ())
    assert straggler_row(settings.db) == ("completed", 0, 0)


async def test_a_batch_refused_by_id_and_gone_from_the_list_is_named(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """Refused by id and not in the list (the walk down passes its creation time): left as
    stored, and the warning says both."""
    await first_sync(settings, fast_retry)
    with aioresponses() as mock:
        serve_visit(mock, [n for n in NUMBERS if n != 2])
        refused = {"error": {"message": "Invalid batch id.", "type": "invalid_request_error"}}
        mock.get(BY_ID, status=400, payload=refused)
        result = await sync(settings, retry=fast_retry)
    assert result.complete
    assert result.warnings == (
        f"batch {STRAGGLER['id']} was not refreshed: API error 400 (invalid_request_error): "
        f"Invalid batch id. [GET {BY_ID}]; nor is it in the list",
    )
    assert straggler_row(settings.db) == ("in_progress", 0, 0)


ODD_FIELDS = {
    "an object for a model": ({"model": {"name": "gpt-4o"}}, "model is a dict, not text: NULL"),
    "a list for a time": ({"completed_at": [1, 2]}, "completed_at is a list, not a number: NULL"),
    "a lone surrogate in metadata": (
        {"metadata": {"team": "a\ud800b"}},
        "metadata holds a lone surrogate: replaced",
    ),
}


def serve_as_text(mock: aioresponses, odd: dict[str, Any], wide: str = "") -> None:
    """Every list page of NUMBERS, `odd` in batch 4's place, sent as text: a lone surrogate
    survives JSON's escapes, as from a real server; `"WIDE"` in it as `wide`, a number."""
    after = ""
    for start in range(0, len(NUMBERS), 2):
        chunk = [odd if n == 4 else make_batch(n) for n in NUMBERS[start : start + 2]]
        text = json.dumps(list_body(chunk, start + 2 < len(NUMBERS)))
        mock.get(f"{BASE_URL}/batches?limit=2{after}", body=text.replace('"WIDE"', wide))
        after = f"&after={chunk[-1]['id']}"


async def test_a_batch_holding_an_integer_of_thousands_of_digits_is_stored(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """Python converts no integer of more than 4,300 digits: the page holding one was "not
    valid JSON", asked again 8 times, and every sync stopped there."""
    counts = {"total": "WIDE", "completed": 1, "failed": 0}
    with aioresponses() as mock:
        serve_as_text(mock, make_batch(4, request_counts=counts), wide="1" + "0" * 5_000)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new) == (True, len(NUMBERS))


@pytest.mark.parametrize("fields", [f for f, _ in ODD_FIELDS.values()], ids=ODD_FIELDS.keys())
async def test_a_batch_stored_with_a_value_sqlite_cannot_store_is_listed_again_without_it(
    settings: Settings, fast_retry: RetryPolicy, fields: dict[str, Any]
) -> None:
    """A listing of the batch ended leaving that field out was filled from the stored copy,
    the value unfitted: every later sync failed at that page."""
    with aioresponses() as mock:
        serve_as_text(mock, make_batch(4, **fields))
        await sync(settings, retry=fast_retry)
    left_out = {k: v for k, v in make_batch(4).items() if k not in fields}
    with aioresponses() as mock:
        serve_as_text(mock, left_out)
        result = await sync(settings, full=True, retry=fast_retry)
    assert (result.complete, result.batches_seen) == (True, len(NUMBERS))


@pytest.mark.parametrize(("fields", "warning"), ODD_FIELDS.values(), ids=ODD_FIELDS.keys())
async def test_a_batch_sqlite_cannot_store_is_stored_with_a_warning(
    settings: Settings, fast_retry: RetryPolicy, fields: dict[str, Any], warning: str
) -> None:
    """The odd value becomes NULL (or its character is replaced); every page is stored."""
    odd = make_batch(4, **fields)
    with aioresponses() as mock:
        serve_as_text(mock, odd)
        result = await sync(settings, retry=fast_retry)
    assert result.complete
    assert result.batches_new == len(NUMBERS)
    assert any(w == f"batch {odd['id']}: {warning}" for w in result.warnings), result.warnings
    column = next(iter(fields))
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        (stored, raw) = conn.execute(
            f"SELECT {column}, raw FROM batches WHERE id = ?", (odd["id"],)
        ).fetchone()
    assert stored == ('{"team":"a\ufffdb"}' if column == "metadata" else None)
    assert json.loads(raw)["id"] == odd["id"]


async def test_an_id_is_sent_as_one_path_segment(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """An id with slashes or a query mark cannot change the path it is asked at."""
    odd = make_batch(2, id="batch_a/../../files?x=1", status="in_progress")
    with aioresponses() as mock:
        serve_list(mock, {2: odd})
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        serve_head(mock)
        asked = URL(f"{BASE_URL}/batches/batch_a%2F..%2F..%2Ffiles%3Fx%3D1", encoded=True)
        mock.get(asked, payload=odd)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.refreshed_by_id, result.warnings) == (True, 1, ())


@pytest.mark.parametrize("dots", [".", ".."])
async def test_a_dot_id_is_asked_for_as_itself(
    settings: Settings, fast_retry: RetryPolicy, dots: str
) -> None:
    """An id of dots is not dropped as a dot segment, which would ask the list or the root."""
    odd = make_batch(2, id=dots, status="in_progress")
    with aioresponses() as mock:
        serve_list(mock, {2: odd})
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        serve_head(mock)
        asked = URL(f"{BASE_URL}/batches").joinpath(dots.replace(".", "%2E"), encoded=True)
        mock.get(asked, payload=make_batch(2, id=dots))
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.refreshed_by_id, result.warnings) == (True, 1, ())


async def test_refreshes_fetched_before_a_bad_key_are_kept(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A 401 ends the refresh, but the batches already fetched are committed first."""
    one_at_a_time = dataclasses.replace(settings, concurrency=1)
    newer = make_batch(3, status="in_progress", completed_at=None)
    with aioresponses() as mock:
        serve_list(mock, {2: STRAGGLER, 3: newer})
        await sync(one_at_a_time, retry=fast_retry)
    # Seen in the same run, they are asked newest first: batch 3 (answered), then 2 (refused).
    revoked = {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}}
    with aioresponses() as mock:
        serve_head(mock)
        mock.get(f"{BASE_URL}/batches/{newer['id']}", payload=make_batch(3))
        mock.get(BY_ID, status=401, payload=revoked)
        with pytest.raises(AuthenticationError):
            await sync(one_at_a_time, retry=fast_retry)
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        status = conn.execute("SELECT status FROM batches WHERE id = ?", (newer["id"],))
        assert status.fetchone() == ("completed",)
    assert straggler_row(settings.db) == ("in_progress", 0, 0)


async def test_an_item_without_a_usable_id_is_skipped_not_retried(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """The same page would come again: its other batches are stored and the walk goes on."""
    odd_ids: list[Any] = [None, 12, "", "batch_\ud800"]
    with aioresponses() as mock:
        after = ""
        for start in range(0, len(NUMBERS), 2):
            chunk = [make_batch(n) for n in NUMBERS[start : start + 2]]
            body = list_body(chunk, start + 2 < len(NUMBERS))
            if start == 2:  # a middle page: the walk must go on past it
                body["data"].insert(0, {**make_batch(99), "id": odd_ids[0]})
                body["data"][1:1] = [{"id": odd} for odd in odd_ids[1:]] + ["a string"]
            mock.get(f"{BASE_URL}/batches?limit=2{after}", body=json.dumps(body))
            after = f"&after={chunk[-1]['id']}"
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new, result.retries) == (True, len(NUMBERS), 0)
    assert result.warnings == (
        f"page after {make_batch(6)['id']}: 5 item(s) without a usable id were not stored: "
        "item 0 (id None), item 1 (id 12), item 2 (id ''), ...",
    )


@pytest.mark.parametrize("status", [None, {"phase": "done"}], ids=["null", "an object"])
async def test_a_batch_listed_without_a_usable_status_is_refreshed(
    settings: Settings, fast_retry: RetryPolicy, status: Any
) -> None:
    """Stored with a NULL status, a batch has not settled: it is asked for next time."""
    with aioresponses() as mock:
        serve_list(mock, {2: make_batch(2, status=status)})
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        serve_head(mock)
        mock.get(BY_ID, payload=make_batch(2))
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.refreshed_by_id) == (True, 1)
    assert straggler_row(settings.db) == ("completed", 0, 0)


def serve_without_batch_4(mock: aioresponses, *, cursor_answer: dict[str, Any]) -> None:
    """The list once batch 4, the last item of a page already walked, is gone: after it an
    empty end; asked for by id it answers `cursor_answer`; from the top, the rest."""
    after_4 = f"{BASE_URL}/batches?limit=2&after={make_batch(4)['id']}"
    mock.get(after_4, payload=list_body([], False), repeat=True)  # asked twice: an empty end
    mock.get(f"{BASE_URL}/batches/{make_batch(4)['id']}", **cursor_answer)
    serve_from_the_top(mock, [[7, 6], [5, 3], [2, 1]])


def serve_from_the_top(mock: aioresponses, chunks: list[list[int]]) -> None:
    """The list from the top, a page for each of `chunks`, and its end."""
    after = ""
    for n, chunk in enumerate(chunks):
        body = list_body([make_batch(i) for i in chunk], n < len(chunks) - 1)
        mock.get(f"{BASE_URL}/batches?limit=2{after}", payload=body)
        after = f"&after={make_batch(chunk[-1])['id']}"
    serve_the_end(mock, make_batch(chunks[-1][-1]))


CURSOR_ANSWERS = {
    "not found": {"status": 404, "payload": not_found("batch_not_found")},
    "forbidden": {"status": 403, "payload": not_found(None, "You do not have access.")},
    "refused": {"status": 400, "payload": not_found(None, "Invalid batch id.")},
    "another batch": {"payload": make_batch(99)},
}


@pytest.mark.parametrize("answer", CURSOR_ANSWERS.values(), ids=CURSOR_ANSWERS.keys())
async def test_a_cursor_that_cannot_be_confirmed_restarts_the_walk_from_the_top(
    settings: Settings, fast_retry: RetryPolicy, answer: dict[str, Any]
) -> None:
    """An empty end after a cursor whose batch is gone, refused or answered as another:
    the walk starts again from the top rather than ending early or failing every run."""
    with aioresponses() as mock:
        body = list_body([make_batch(7), make_batch(6)], True)
        mock.get(f"{BASE_URL}/batches?limit=2", payload=body)
        body = list_body([make_batch(5), make_batch(4)], True)
        mock.get(f"{BASE_URL}/batches?limit=2&after={make_batch(6)['id']}", payload=body)
        serve_without_batch_4(mock, cursor_answer=answer)
        result = await sync(settings, retry=fast_retry)
    assert result.complete
    assert any("gone from the list; walked from the top" in w for w in result.warnings)
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM batches")}
    assert stored == {make_batch(n)["id"] for n in (7, 6, 5, 4, 3, 2, 1)}


async def test_a_cursor_gone_in_a_walk_from_the_top_restarts_it_once(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """Batch 5 leaves the list between the first page and the second, and `after` naming it
    answers 400: a first walk starts again from the top, as a resumed one does."""
    gone = {
        "error": {
            "message": "Invalid after",
            "type": "invalid_request_error",
            "param": "after",
            "code": None,
        }
    }
    with aioresponses() as mock:
        mock.get(
            f"{BASE_URL}/batches?limit=2", payload=list_body([make_batch(6), make_batch(5)], True)
        )
        mock.get(
            f"{BASE_URL}/batches?limit=2&after={make_batch(5)['id']}", status=400, payload=gone
        )
        serve_from_the_top(mock, [[6, 4], [3, 2], [1]])
        result = await sync(settings, retry=fast_retry)
    assert result.complete
    assert result.warnings == (
        f"the cursor {make_batch(5)['id']} is gone from the list; walked from the top",
    )
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM batches")}
    assert stored == {make_batch(n)["id"] for n in (6, 5, 4, 3, 2, 1)}


class ShrinkingList:
    """A list of numbered batches that loses each batch `vanishing` names, in order, as the
    page after it is first asked for. `after` a batch it no longer lists answers as
    `unknown_after` says (an empty page, as some compatible servers do, or an error); by
    id, such a batch answers 404, or (`kept`) as before: it left the list alone."""

    def __init__(
        self, numbers: list[int], vanishing: list[int], unknown_after: str, *, kept: bool
    ) -> None:
        self.listed = [make_batch(n) for n in numbers]
        self.every = {batch["id"]: batch for batch in self.listed}
        self.vanishing = [make_batch(n)["id"] for n in vanishing]
        self.unknown_after = unknown_after
        self.kept = kept

    def serve(self, mock: aioresponses) -> None:
        mock.get(re.compile(r"^.*/batches\?.*$"), callback=self.page, repeat=True)
        mock.get(re.compile(r"^.*/batches/\w+$"), callback=self.by_id, repeat=True)

    def page(self, url: URL, **_: Any) -> CallbackResult:
        after, limit = url.query.get("after"), int(url.query["limit"])
        if self.vanishing and after == self.vanishing[0]:
            self.listed.remove(self.every[after])
            del self.vanishing[0]
        ids = [batch["id"] for batch in self.listed]
        if after is not None and after not in ids:
            if self.unknown_after == "empty":
                return CallbackResult(payload=list_body([], False))
            status = int(self.unknown_after)
            error = {"message": "Invalid 'after'", "type": "invalid_request_error"}
            return CallbackResult(status=status, payload={"error": {**error, "param": "after"}})
        start = 0 if after is None else ids.index(after) + 1
        chunk = self.listed[start : start + limit]
        return CallbackResult(payload=list_body(chunk, start + limit < len(ids)))

    def by_id(self, url: URL, **_: Any) -> CallbackResult:
        known = self.every if self.kept else {batch["id"]: batch for batch in self.listed}
        if url.name in known:
            return CallbackResult(payload=known[url.name])
        return CallbackResult(status=404, payload=not_found("batch_not_found"))


@pytest.mark.parametrize(
    ("unknown_after", "vanishing", "kept"),
    [
        ("empty", [7, 6], False),
        ("empty", [9, 8, 7, 6], True),
        ("400", [9, 8, 7, 6], True),
        ("404", [7, 6], True),
        ("500", [7, 6], True),
    ],
    ids=["two", "four, kept by id", "four refused", "404 after, kept by id", "500 after"],
)
async def test_cursors_gone_one_after_another_each_restart_the_walk(
    settings: Settings,
    fast_retry: RetryPolicy,
    unknown_after: str,
    vanishing: list[int],
    kept: bool,
) -> None:
    """Batches leave the list as it is walked, each the cursor of the next request. The
    walk restarted from the top once a run: at the second, it ended there, complete and
    with no word, the batches below left to a `--full` (pass 64B). It restarts once a
    cursor, three times a run; a fourth cursor gone stops the run there, partial, and the
    next run walks from the top: resumed from the cursor, answered by id, it ended there,
    and a 400 failed the run (pass 66B). Answered 404 or 500 after, the cursor answering by
    id, the page that listed it is read again (every sync failed there: pass 66B)."""
    api = ShrinkingList(list(range(10, 0, -1)), vanishing, unknown_after, kept=kept)
    runs = 1 + (len(vanishing) > 3)
    results = []
    with aioresponses() as mock:
        api.serve(mock)
        for _ in range(runs):
            results.append(await sync(settings, retry=fast_retry))
    assert [result.complete for result in results] == [False] * (runs - 1) + [True]
    gone = [w for w in results[0].warnings if "gone from the list; walked from the top" in w]
    assert len(gone) == min(len(vanishing), 3)
    if runs > 1:
        assert results[0].warnings[-1] == (
            f"the cursor {make_batch(6)['id']} seems gone from the list too, after 3 walks "
            "from the top this run: the run stopped there, and the next sync walks from the top"
        )
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM batches")}
    assert stored == {make_batch(n)["id"] for n in range(1, 11)}


@pytest.mark.parametrize("status", [400, 404])
async def test_a_stored_cursor_refused_by_a_400_naming_nothing_restarts_the_walk(
    settings: Settings, fast_retry: RetryPolicy, status: int
) -> None:
    """The walk was cut after batch 6, which then left the list while still answered by
    id, and `after` it answers a 400 naming no parameter, or a 404: every sync failed
    there (the 404: pass 69B)."""
    with aioresponses() as mock:
        serve_head(mock)
        await sync(dataclasses.replace(settings, max_pages=1), retry=fast_retry)
    refused = {"error": {"message": "Bad request.", "type": "invalid_request_error"}}
    with aioresponses() as mock:
        mock.get(
            f"{BASE_URL}/batches?limit=2&after={make_batch(6)['id']}",
            status=status,
            payload=refused,
        )
        mock.get(f"{BASE_URL}/batches/{make_batch(6)['id']}", payload=make_batch(6))
        serve_from_the_top(mock, [[7, 5], [4, 3], [2, 1]])
        result = await sync(settings, retry=fast_retry)
    assert result.complete
    assert result.warnings == (
        f"the cursor {make_batch(6)['id']} is gone from the list; walked from the top",
    )


async def test_a_stored_cursor_gone_from_a_list_without_has_more_restarts_the_walk(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A compatible list (no has_more) whose walk a budget cut after batch 5; batch 5 is
    then deleted and `after` it answers an empty page: the resume asks for batch 5 by id
    and walks from the top, rather than taking the empty page for the end of the list."""

    def page(*numbers: int) -> dict[str, Any]:
        body = list_body([make_batch(n) for n in numbers], False)
        del body["has_more"]
        return body

    def serve(mock: aioresponses, pages: list[list[int]]) -> None:
        after = ""
        for numbers in pages:
            mock.get(f"{BASE_URL}/batches?limit=2{after}", payload=page(*numbers), repeat=True)
            after = f"&after={make_batch(numbers[-1])['id']}" if numbers else after

    compatible = dataclasses.replace(settings, provider="compatible")
    with aioresponses() as mock:
        serve(mock, [[8, 7], [6, 5]])
        await sync(dataclasses.replace(compatible, max_pages=2), retry=fast_retry)
    with aioresponses() as mock:
        gone = make_batch(5)["id"]
        mock.get(f"{BASE_URL}/batches?limit=2&after={gone}", payload=page(), repeat=True)
        mock.get(f"{BASE_URL}/batches/{gone}", status=404, payload=not_found(None), repeat=True)
        serve(mock, [[8, 7], [6, 4], [3, 2], [1], []])
        result = await sync(compatible, retry=fast_retry)
    assert result.complete
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM batches")}
    assert stored == {make_batch(n)["id"] for n in range(8, 0, -1)}


async def test_an_absurdly_long_id_is_skipped_not_used_as_the_cursor(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """An id no server would take back in a URL is left out, not made the cursor."""
    long_id = "batch_" + "x" * 9000
    with aioresponses() as mock:
        page = list_body([make_batch(3), make_batch(2), {**make_batch(9), "id": long_id}], True)
        page["last_id"] = make_batch(2)["id"]
        mock.get(f"{BASE_URL}/batches?limit=2", payload=page)
        body = list_body([make_batch(1)], False)
        mock.get(f"{BASE_URL}/batches?limit=2&after={make_batch(2)['id']}", payload=body)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new) == (True, 3)
    assert "1 item(s) without a usable id" in result.warnings[0]


async def test_a_page_of_unusable_items_goes_on_from_its_last_id(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """When the page's last item cannot be the cursor, the server's last_id can."""
    with aioresponses() as mock:
        page = list_body([{"id": None}, {"id": None}], True)
        page["last_id"] = "batch_cursor"
        mock.get(f"{BASE_URL}/batches?limit=2", payload=page)
        body = list_body([make_batch(1)], False)
        mock.get(f"{BASE_URL}/batches?limit=2&after=batch_cursor", payload=body)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new) == (True, 1)


async def test_a_new_batch_with_an_early_creation_time_does_not_end_the_walk(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """One new batch listed with created_at 0 at the end of the first page: the walk goes on
    down to the old head, and the batches between are stored."""
    with aioresponses() as mock:
        serve_list(mock, {})
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        top = list_body([make_batch(10), make_batch(9, created_at=0)], True)
        mock.get(f"{BASE_URL}/batches?limit=2", payload=top)
        below = list_body([make_batch(8), make_batch(7)], True)
        mock.get(f"{BASE_URL}/batches?limit=2&after={make_batch(9)['id']}", payload=below)
        # The head's second may hold more: the walk ends on the first page below it.
        ties = list_body([make_batch(6), make_batch(5)], True)
        mock.get(f"{BASE_URL}/batches?limit=2&after={make_batch(7)['id']}", payload=ties)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new) == (True, 3)


def serve_pages(mock: aioresponses, numbers: list[int], batches: dict[int, Any]) -> None:
    """Every list page of `numbers` (newest first), two a page."""
    after = ""
    for start in range(0, len(numbers), 2):
        chunk = [batches.get(n) or make_batch(n) for n in numbers[start : start + 2]]
        body = list_body(chunk, start + 2 < len(numbers))
        mock.get(f"{BASE_URL}/batches?limit=2{after}", payload=body)
        after = f"&after={chunk[-1]['id']}"
    serve_the_end(mock, make_batch(numbers[-1]))


def serve_after(mock: aioresponses, numbers: list[int], batches: dict[int, Any]) -> None:
    """The page after each batch of `numbers` (newest first), two a page: whichever stored
    batch a visit starts after."""
    for i, n in enumerate(numbers):
        chunk = [batches.get(m) or make_batch(m) for m in numbers[i + 1 : i + 3]]
        body = list_body(chunk, i + 3 < len(numbers))
        mock.get(f"{BASE_URL}/batches?limit=2&after={make_batch(n)['id']}", payload=body)


def stored_by_another(db: Path) -> None:
    """Every batch stored as first stored by another account (`direct`), listed by this one."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE batches SET listed_by = account, account = 'direct'")
        conn.execute("INSERT INTO batch_listings SELECT id, listed_by FROM batches")


async def test_a_walk_target_gone_from_the_list_does_not_walk_the_whole_list(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """The plan walks on below the head to four in-flight batches; one has left the list.
    The walk stops once past its creation time, and asks for it by id instead."""
    everything = list(range(20, 0, -1))
    in_flight = {n: make_batch(n, status="in_progress") for n in (18, 17, 16, 15)}
    with aioresponses() as mock:
        serve_pages(mock, everything, in_flight)
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        serve_pages(mock, [n for n in everything if n != 15], {})
        mock.get(f"{BASE_URL}/batches/{make_batch(15)['id']}", status=404, payload=not_found(None))
        # One 404 is not the last word: the page after batch 16 is read, and 15 is not there.
        below = list_body([make_batch(14), make_batch(13)], True)
        mock.get(f"{BASE_URL}/batches?after={make_batch(16)['id']}&limit=2", payload=below)
        result = await sync(settings, retry=fast_retry)
    assert result.complete
    assert (result.pages, result.refreshed_by_id, result.gone) == (4, 1, 1)


@pytest.mark.parametrize("owned", [True, False])
async def test_a_head_gone_from_the_list_stops_the_walk_at_a_neighbour(
    settings: Settings, fast_retry: RetryPolicy, owned: bool
) -> None:
    """The last walk's head deleted: the batches stored just below it stop the next walk.
    For batches another account stored first, none was looked at, and every such sync
    walked the whole list."""
    everything = list(range(20, 0, -1))
    with aioresponses() as mock:
        serve_pages(mock, everything, {})
        await sync(settings, retry=fast_retry)
    if not owned:
        stored_by_another(settings.db)
    with aioresponses() as mock:
        serve_pages(mock, [22, 21, *everything[1:]], {})
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new, result.pages) == (True, 2, 2)


async def test_a_head_dated_in_the_future_does_not_hide_the_batches_below_it(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A server that sorts by created_at keeps a future-dated head on top: the new batches
    listed below it are walked to, down to a page that ends with a batch stored before."""
    future = make_batch(20, created_at=1_900_000_000)
    with aioresponses() as mock:
        serve_pages(mock, [20, 7, 6, 5, 4, 3, 2, 1], {20: future})
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        serve_pages(mock, [20, 12, 11, 10, 7, 6, 5, 4, 3, 2, 1], {20: future})
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new, result.pages) == (True, 3, 3)


async def test_a_batch_whose_answers_keep_failing_is_refreshed_from_the_list(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A 500 for one batch, past every retry, while the others answer: that batch is
    refreshed from the list, and the run completes."""
    newer = make_batch(3, status="in_progress", completed_at=None)
    with aioresponses() as mock:
        serve_list(mock, {2: STRAGGLER, 3: newer})
        await sync(settings, retry=fast_retry)
    broken = {"error": {"message": "internal error", "type": "server_error"}}
    with aioresponses() as mock:
        serve_visit(mock)
        mock.get(BY_ID, status=500, payload=broken, repeat=True)
        mock.get(f"{BASE_URL}/batches/{newer['id']}", payload=make_batch(3))
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.refreshed_by_id, result.warnings) == (True, 1, ())
    assert straggler_row(settings.db) == ("completed", 0, 0)


async def test_failures_in_a_row_with_the_api_down_end_the_run(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """Three batches in a row failing past their retries, and a list request failing too:
    the API is down, the run fails."""
    stragglers = {n: make_batch(n, status="in_progress") for n in (5, 4, 3, 2)}
    with aioresponses() as mock:
        serve_list(mock, stragglers)
        await sync(settings, retry=fast_retry)
    broken = {"error": {"message": "internal error", "type": "server_error"}}
    with aioresponses() as mock:
        serve_head(mock)
        for n in stragglers:
            mock.get(
                f"{BASE_URL}/batches/{make_batch(n)['id']}", status=500, payload=broken, repeat=True
            )
        mock.get(f"{BASE_URL}/batches?limit=1", status=500, payload=broken, repeat=True)
        # One at a time, and by id (a budget keeps the walk from going on below the head).
        by_id = dataclasses.replace(settings, concurrency=1, max_pages=10)
        with pytest.raises(ServerError):
            await sync(by_id, retry=fast_retry)


async def test_in_flight_batches_without_a_creation_time_are_asked_for_by_id(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """With no place in the list known, they are not walked to without bound: by id."""
    dateless = {n: make_batch(n, status="in_progress", created_at=None) for n in (4, 3, 2)}
    with aioresponses() as mock:
        serve_list(mock, dateless)
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        serve_head(mock)
        for n in dateless:
            mock.get(f"{BASE_URL}/batches/{make_batch(n)['id']}", payload=make_batch(n))
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.pages, result.refreshed_by_id) == (True, 1, 3)


@pytest.mark.parametrize(
    "by_id",
    [
        {"status": 404, "payload": {"detail": "Not Found"}},
        {"status": 500, "payload": {"error": {"message": "boom", "type": "server_error"}}},
    ],
    ids=["no such route", "failing"],
)
async def test_a_cursor_that_cannot_be_confirmed_restarts_the_walk_once_not_forever(
    settings: Settings, fast_retry: RetryPolicy, by_id: dict[str, Any]
) -> None:
    """A server that pages until an empty page, with no by-id route to confirm the last
    cursor: the walk starts again from the top once, then takes the end as the end."""
    numbers = [6, 5, 4, 3, 2, 1]
    with aioresponses() as mock:
        after = ""
        for start in range(0, len(numbers), 2):
            chunk = [make_batch(n) for n in numbers[start : start + 2]]
            mock.get(
                f"{BASE_URL}/batches?limit=2{after}", payload=list_body(chunk, True), repeat=True
            )
            after = f"&after={chunk[-1]['id']}"
        mock.get(f"{BASE_URL}/batches?limit=2{after}", payload=list_body([], False), repeat=True)
        mock.get(f"{BASE_URL}/batches/{make_batch(1)['id']}", **by_id, repeat=True)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new, result.pages) == (True, 6, 7)


async def test_a_block_of_batches_dated_in_the_future_does_not_hide_new_ones(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """More future-dated batches than a page hold the top of the list (a server that once
    sent milliseconds): the walk stops at the newest plausibly dated batch, not in them."""
    future = {n: make_batch(n, created_at=1_700_000_000_000 + n) for n in (30, 29, 28)}
    with aioresponses() as mock:
        serve_pages(mock, [30, 29, 28, 7, 6, 5, 4, 3, 2, 1], future)
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        serve_pages(mock, [30, 29, 28, 12, 11, 10, 7, 6, 5, 4, 3, 2, 1], future)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new) == (True, 3)


async def test_failures_in_a_row_with_the_api_up_skip_those_batches(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """Three batches failing, asked first on every run as the least recently seen, while
    a list request still answers: the ones after them are refreshed by id, and those three
    by walking the list down to them."""
    failing = {n: make_batch(n, status="in_progress") for n in (5, 4, 3)}
    fine = make_batch(2, status="in_progress")
    with aioresponses() as mock:
        serve_list(mock, {**failing, 2: fine})
        await sync(settings, retry=fast_retry)
    broken = {"error": {"message": "internal error", "type": "server_error"}}
    with aioresponses() as mock:
        serve_head(mock)
        serve_after(mock, NUMBERS, {})
        for n in failing:
            url = f"{BASE_URL}/batches/{make_batch(n)['id']}"
            mock.get(url, status=500, payload=broken, repeat=True)
        mock.get(BY_ID, payload=make_batch(2))
        mock.get(f"{BASE_URL}/batches?limit=1", payload=list_body([make_batch(7)], True))
        mock.get(f"{BASE_URL}/batches/{make_batch(7)['id']}", payload=make_batch(7))
        by_id = dataclasses.replace(settings, concurrency=1, max_pages=10)
        result = await sync(by_id, retry=fast_retry)
    assert (result.complete, result.refreshed_by_id, result.warnings) == (True, 1, ())
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        statuses = conn.execute("SELECT DISTINCT status FROM batches").fetchall()
    assert statuses == [("completed",)]


async def test_a_404_without_the_apis_envelope_is_about_the_path_not_the_batch(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A proxy with no by-id route answers {"detail": "Not Found"}: the batch is never
    counted gone, run after run, and each run reads it from the list instead."""
    await first_sync(settings, fast_retry)
    for _ in range(3):
        with aioresponses() as mock:
            serve_head(mock)
            serve_after(mock, NUMBERS, {2: STRAGGLER})
            mock.get(BY_ID, status=404, payload={"detail": "Not Found"})
            result = await sync(settings, retry=fast_retry)
        assert (result.complete, result.gone, result.warnings) == (True, 0, ())
    assert straggler_row(settings.db) == ("in_progress", 0, 0)


@pytest.mark.parametrize("status", [502, 429])
async def test_a_failing_by_id_route_gives_way_to_walking_the_list_for_a_day(
    settings: Settings, fast_retry: RetryPolicy, status: int
) -> None:
    """Every request by id fails while the list answers: after three failures in a row, and
    the newest listed batch failing by id too, the refresh walks the list down to the
    batches instead, and the run completes. Later
    syncs walk without asking by id, until a day has passed; then by id is tried again.
    A 429 past its retries ended every run (exit 75), the batches never refreshed."""
    numbers = list(range(14, 0, -1))
    stragglers = {n: make_batch(n, status="in_progress") for n in range(12, 0, -1)}
    with aioresponses() as mock:
        serve_pages(mock, numbers, stragglers)
        await sync(settings, retry=fast_retry)
    broken = {"error": {"message": "bad gateway", "type": "server_error"}}
    asked: list[str] = []

    def serve_by_id(mock: aioresponses, **answer: Any) -> None:
        for n in stragglers:
            mock.get(
                f"{BASE_URL}/batches/{make_batch(n)['id']}",
                **answer,
                repeat=True,
                callback=lambda u, **_: asked.append(str(u)),
            )

    by_id = dataclasses.replace(settings, concurrency=1, max_pages=20)
    with aioresponses() as mock:
        head = list_body([make_batch(14), make_batch(13)], True)
        mock.get(f"{BASE_URL}/batches?limit=2", payload=head)
        mock.get(f"{BASE_URL}/batches?limit=1", payload=list_body([make_batch(14)], True))
        mock.get(f"{BASE_URL}/batches/{make_batch(14)['id']}", status=status, payload=broken)
        serve_pages(mock, numbers, stragglers)  # still in flight
        serve_by_id(mock, status=status, payload=broken)
        failing = await sync(by_id, retry=fast_retry)
    assert (failing.complete, failing.pages, len(set(asked))) == (True, 1 + 6, 3)
    assert failing.warnings == (
        "requests by id (GET /batches/{id}) kept failing while the list answered: "
        "in-flight batches are refreshed from the list instead, for a day",
    )

    asked.clear()
    with aioresponses() as mock:
        serve_pages(mock, numbers, {**stragglers, 1: make_batch(1)})
        serve_by_id(mock, status=status, payload=broken)
        walked = await sync(by_id, retry=fast_retry)
    assert (walked.complete, walked.pages, asked) == (True, 7, [])
    assert walked.warnings[0].startswith("requests by id (GET /batches/{id}) kept failing on")
    assert "in-flight batches are refreshed from the list" in format_status(
        await read_status(settings.db)
    )

    with contextlib.closing(sqlite3.connect(settings.db)) as conn, conn:
        conn.execute("UPDATE walk_state SET by_id_failed_at = by_id_failed_at - 86400")
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", payload=head)
        for n in range(12, 1, -1):
            mock.get(f"{BASE_URL}/batches/{make_batch(n)['id']}", payload=make_batch(n))
        again = await sync(by_id, retry=fast_retry)
    assert (again.complete, again.refreshed_by_id, again.warnings) == (True, 11, ())
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        assert conn.execute("SELECT by_id_failed_at FROM walk_state").fetchone() == (None,)


async def test_a_server_dating_every_batch_in_the_future_still_stops_at_the_head(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """Milliseconds for every created_at: nothing is plausibly dated, so the head is the
    stop, as it would be for any server."""
    ms = {n: make_batch(n, created_at=1_700_000_000_000 + n) for n in range(12, 0, -1)}
    with aioresponses() as mock:
        serve_pages(mock, [7, 6, 5, 4, 3, 2, 1], ms)
        await sync(settings, retry=fast_retry)
    with aioresponses() as mock:
        serve_pages(mock, [12, 11, 10, 7, 6, 5, 4, 3, 2, 1], ms)
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.batches_new, result.pages) == (True, 3, 3)


def mark_by_id_failed(db: Path, seconds_ago: int) -> None:
    """As a sync records that requests by id kept failing while the list answered."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE walk_state SET by_id_failed_at = unixepoch() - ?", (seconds_ago,))


@pytest.mark.parametrize("owned", [True, False])
async def test_runs_on_a_budget_reach_deep_batches_when_requests_by_id_fail(
    settings: Settings, fast_retry: RetryPolicy, owned: bool
) -> None:
    """Requests by id known to fail, two batches in flight deep in the list, one page of
    budget: each run reads a page where one of them is listed, so the second run completes.
    Walking down from the top, every run would spend its page on the top and exit 3.
    So for batches another account stored first: their places were looked for among the
    account's own alone, and each walked to from the top (hours, at 100,000 batches)."""
    numbers = list(range(20, 0, -1))
    deep = {n: make_batch(n, status="in_progress") for n in (9, 3)}
    with aioresponses() as mock:
        serve_pages(mock, numbers, deep)
        await sync(settings, retry=fast_retry)
    if not owned:
        stored_by_another(settings.db)
    mark_by_id_failed(settings.db, 60)
    one_page = dataclasses.replace(settings, max_pages=1)
    ended = []
    for _ in range(2):
        with aioresponses() as mock:
            serve_pages(mock, numbers[:2], {})  # the head
            serve_after(mock, numbers, {})  # both completed since
            result = await sync(one_page, retry=fast_retry)
        ended.append((result.complete, result.pages))
    assert ended == [(False, 2), (True, 2)]
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        assert conn.execute("SELECT DISTINCT status FROM batches").fetchall() == [("completed",)]


async def test_one_odd_creation_time_does_not_end_a_walk_on_to_batches_in_flight(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A batch dated long ago, listed last on a page above the batches in flight: the walk
    goes on to them rather than stopping there and asking for each by id."""
    odd = make_batch(100, created_at=5)
    numbers = [21, 20, 19, 18, 17, 16, 15, 100, 14, 13, 12, 11]
    in_flight = {n: make_batch(n, status="in_progress") for n in (17, 16, 14)}
    four = dataclasses.replace(settings, page_size=4)

    def serve(mock: aioresponses, batches: dict[int, Any]) -> None:
        after = ""
        for start in range(0, len(numbers), 4):
            chunk = [batches.get(n) or make_batch(n) for n in numbers[start : start + 4]]
            body = list_body(chunk, start + 4 < len(numbers))
            mock.get(f"{BASE_URL}/batches?limit=4{after}", payload=body)
            after = f"&after={chunk[-1]['id']}"
        serve_the_end(mock, make_batch(numbers[-1]), 4)

    with aioresponses() as mock:
        serve(mock, {**in_flight, 100: odd})
        await sync(four, retry=fast_retry)
    with aioresponses() as mock:
        serve(mock, {100: odd})
        result = await sync(four, retry=fast_retry)
    assert (result.complete, result.pages, result.refreshed_by_id) == (True, 3, 0)
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        assert conn.execute("SELECT DISTINCT status FROM batches").fetchall() == [("completed",)]


async def test_a_mark_dated_ahead_of_the_clock_does_not_hold(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """Requests by id marked failing while the clock ran a year ahead: once the clock is
    right again they are tried at once, not a year later."""
    await first_sync(settings, fast_retry)
    mark_by_id_failed(settings.db, -365 * 86_400)
    with aioresponses() as mock:
        serve_head(mock)
        mock.get(BY_ID, payload=make_batch(2))
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.refreshed_by_id, result.warnings) == (True, 1, ())
    assert straggler_row(settings.db) == ("completed", 0, 0)


async def test_while_requests_by_id_fail_a_batch_with_no_place_in_the_list_is_asked_by_id(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """No creation time, no page to read it from: by id all the same, not left stale."""
    dateless = make_batch(2, status="in_progress", created_at=None)
    with aioresponses() as mock:
        serve_list(mock, {2: dateless})
        await sync(settings, retry=fast_retry)
    mark_by_id_failed(settings.db, 60)
    with aioresponses() as mock:
        serve_head(mock)
        mock.get(BY_ID, payload=make_batch(2))
        result = await sync(settings, retry=fast_retry)
    assert (result.complete, result.refreshed_by_id) == (True, 1)
    assert straggler_row(settings.db) == ("completed", 0, 0)


async def test_a_list_request_failing_mid_walk_asks_for_its_cursor_once(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """After the list request had spent its retries, its cursor's batch was asked for with
    as many again: a silent server held a sync twice as long as its retries say."""
    by_id = f"{BASE_URL}/batches/{make_batch(6)['id']}"
    with aioresponses() as mock:
        serve_head(mock)
        after_6 = f"{BASE_URL}/batches?limit=2&after={make_batch(6)['id']}"
        mock.get(after_6, status=503, repeat=True)
        mock.get(by_id, status=503, repeat=True)
        with pytest.raises(ServerError):
            await sync(settings, retry=fast_retry)
        asked = mock.requests[("GET", URL(by_id))]
    assert len(asked) == 1


@pytest.mark.parametrize(
    "status", [["in_progress"], {"stage": "in_progress"}], ids=["list", "object"]
)
async def test_a_batch_in_flight_listed_with_a_status_of_no_text_does_not_block_its_page(
    settings: Settings, fast_retry: RetryPolicy, status: Any
) -> None:
    """Stored in flight, then listed with a status that is a list or an object: every sync
    failed at that page with a TypeError (unhashable, comparing stages), the batches after
    it never refreshed."""
    await first_sync(settings, fast_retry)
    with aioresponses() as mock:
        serve_list(mock, {2: make_batch(2, status=status)})
        result = await sync(settings, full=True, retry=fast_retry)
    assert (result.complete, result.batches_seen) == (True, len(NUMBERS))
    assert any(w.startswith(f"batch {STRAGGLER['id']}: status") for w in result.warnings)
