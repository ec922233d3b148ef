"""The views that answer recurring questions: usage by day, costs per request, what is in
flight, where failures are, metadata tags as rows."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crawler.cli import main
from crawler.errors import ConfigError
from crawler.report import format_report, parse_since, read_report
from crawler.rows import build_page_rows
from crawler.runs import RunFigures
from crawler.store import open_store

from .conftest import make_batch

DAY = 1_767_225_600  # 2026-01-01 00:00:00 UTC


def usage(input_tokens: int, cached: int, output: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output,
    }


BATCHES = [
    make_batch(
        1,
        created_at=DAY + 10,
        model="gpt-4o-mini",
        usage=usage(1_000_000, 0, 1_000_000),
        metadata={"team": "search", "env": "prod"},
        request_counts={"total": 10, "completed": 8, "failed": 2},
    ),
    make_batch(
        2,
        created_at=DAY + 20,
        model="gpt-4o-mini",
        usage=usage(2_000_000, 0, 0),
        metadata={"team": "ads"},
        request_counts={"total": 30, "completed": 30, "failed": 0},
    ),
    make_batch(
        3,
        created_at=DAY + 30,
        model="gpt-4o-mini",
        status="in_progress",
        usage=None,
        metadata=None,
        request_counts={"total": 40, "completed": 10, "failed": 0},
    ),
    make_batch(4, created_at=DAY + 86_400, model="unpriced-model", status="failed"),
]
REQUESTS = [
    # batch_id, custom_id, kind, status_code, error_code, model, input, cached, output
    (BATCHES[0]["id"], "a", "error", 400, "invalid_prompt", "gpt-4o-mini-2024-07-18", 0, 0, 0),
    (BATCHES[0]["id"], "b", "error", 400, "invalid_prompt", None, None, None, None),
    (BATCHES[0]["id"], "c", "error", 500, None, None, None, None, None),
    (BATCHES[0]["id"], "d", "output", 200, None, "gpt-4o-mini-2024-07-18", 2_000, 1_000, 400),
]


@pytest.fixture
async def db(db_path: Path) -> Path:
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        rows, errors = build_page_rows(BATCHES, 1)
        await store.save_page(rows, errors, None, run, RunFigures())
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.executemany(
            "INSERT INTO batch_requests (batch_id, custom_id, kind, status_code, error_code, "
            "model, input_tokens, cached_input_tokens, output_tokens, file_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'file-1')",
            REQUESTS,
        )
    return db_path


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def test_daily_usage_sums_a_days_batches_and_counts_the_unpriced(db: Path) -> None:
    """gpt-4o-mini at batch rates 0.075 in, 0.3 out per 1M: batch 1 costs 0.075 + 0.3,
    batch 2 costs 0.15; batch 3 has no usage yet; batch 4's model has no price."""
    rows = query(
        db,
        "SELECT day, model, batches, requests, failed_requests, input_tokens, output_tokens, "
        "round(usd, 6), unpriced_batches FROM daily_usage ORDER BY day, model",
    )
    assert rows == [
        ("2026-01-01", "gpt-4o-mini", 3, 80, 2, 3_000_000, 1_000_000, 0.525, 1),
        ("2026-01-02", "unpriced-model", 1, 10, 1, 100, 50, None, 1),
    ]


def test_costs_and_batches_in_flight_say_which_account_they_are_of(db: Path) -> None:
    """Two accounts in one database: daily_usage sums each apart; every row names its own."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE batches SET account = 'azure' WHERE id = ?", (BATCHES[1]["id"],))
    rows = query(
        db,
        "SELECT day, account, batches, round(usd, 6) FROM daily_usage "
        "WHERE model = 'gpt-4o-mini' ORDER BY account",
    )
    assert rows == [("2026-01-01", "azure", 1, 0.15), ("2026-01-01", "default", 2, 0.375)]
    costs = query(db, "SELECT batch_id, account FROM batch_costs WHERE account = 'azure'")
    assert costs == [(BATCHES[1]["id"], "azure")]
    assert query(db, "SELECT account FROM in_flight") == [("default",)]


def test_request_costs_price_each_request_by_its_answers_model(db: Path) -> None:
    """Request d: 1,000 uncached input at 0.075, 1,000 cached at 0.0375, 400 output at 0.3
    per 1M, priced as gpt-4o-mini (its dated name is priced too: the same rates)."""
    rows = query(db, "SELECT custom_id, priced_as, usd FROM request_costs ORDER BY custom_id")
    assert rows[0] == ("a", "gpt-4o-mini-2024-07-18", 0.0)
    assert rows[1][1:] == (None, None)
    assert rows[3][0:2] == ("d", "gpt-4o-mini-2024-07-18")
    assert rows[3][2] == pytest.approx((1_000 * 0.075 + 1_000 * 0.0375 + 400 * 0.3) / 1e6)


def test_in_flight_lists_the_unsettled_with_their_progress(db: Path) -> None:
    rows = query(db, "SELECT batch_id, status, percent_done, age_seconds > 0 FROM in_flight")
    assert rows == [(BATCHES[2]["id"], "in_progress", 25.0, 1)]


def test_failure_rates_name_the_most_frequent_error_codes(db: Path) -> None:
    rows = query(
        db,
        "SELECT model, batches, failed_batches, requests, failed_requests, failed_percent, "
        "top_error_codes FROM failure_rates ORDER BY model",
    )
    assert rows == [
        ("gpt-4o-mini", 3, 0, 80, 2, 2.5, "invalid_prompt, HTTP 500"),
        ("unpriced-model", 1, 1, 10, 1, 10.0, None),
    ]


def test_batch_metadata_has_a_row_per_tag(db: Path) -> None:
    rows = query(db, "SELECT key, value, count(*) FROM batch_metadata GROUP BY 1, 2 ORDER BY 1, 2")
    # make_batch's batch 4 keeps its default tag.
    assert rows == [
        ("env", "prod", 1),
        ("team", "ads", 1),
        ("team", "search", 1),
        ("team", "équipe", 1),
    ]


@pytest.mark.parametrize(("text", "seconds"), [("12h", 43_200), ("7d", 604_800), ("2w", 1_209_600)])
def test_a_period_is_hours_days_or_weeks(text: str, seconds: int) -> None:
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["7", "0d", "1y", "-1d", "d7"])
def test_another_period_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="give a period such as 12h, 7d or 2w"):
        parse_since(text)


@pytest.mark.parametrize("text", ["3000000d", "99999999999h", "5201w"])
def test_a_period_longer_than_a_century_is_refused(text: str) -> None:
    """It ended in a traceback (a year before the calendar's first)."""
    with pytest.raises(ConfigError, match="at most 100 years"):
        parse_since(text)


async def test_the_report_answers_for_the_period_only(db: Path) -> None:
    """Two days after DAY, a day's report sees batch 4 alone; the in-flight section is now."""
    report = await read_report(db, since=86_400, now=DAY + 2 * 86_400)
    sections = {answer.title: answer for answer in report.answers}
    spend = sections["Spend by model (USD at batch rates; unpriced: no price or no usage)"]
    assert [row[:2] for row in spend.rows] == [("unpriced-model", 1)]
    assert sections["Batches and requests by outcome"].rows == [("failed", 1, 10, 1)]
    assert sections["In flight now"].rows[0][:2] == ("in_progress", 1)
    text = format_report(report)
    assert text.startswith("Batches created since 2026-01-02 00:00Z (to 2026-01-03 00:00Z)")
    assert "-- Slowest batches\n  batch_id" in text


def test_report_prints_tables_or_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--db", str(db), "--since", "10000d"]) == 0
    assert "-- Top error codes\n  reason" in capsys.readouterr().out
    assert main(["report", "--db", str(db), "--since", "10000d", "--json"]) == 0
    sections = json.loads(capsys.readouterr().out)["sections"]
    errors = next(s for s in sections if s["title"] == "Top error codes")
    assert errors["rows"][0] == {"reason": "invalid_prompt", "times": 2, "example": None}


def test_report_on_no_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--db", str(tmp_path / "none.db")]) == 4
    assert capsys.readouterr().err.count("\n") == 1


async def test_the_reports_spend_keeps_a_fraction_of_a_cent(db_path: Path) -> None:
    """A batch of a few hundred tokens costs less than a cent: rounded to cents, its spend
    read 0.0 with none unpriced (pass 72B)."""
    cheap = make_batch(9, created_at=DAY, model="gpt-4o-mini", usage=usage(1_000, 0, 200))
    async with open_store(db_path) as store:
        run = await store.start_run("full", "http://x")
        rows, errors = build_page_rows([cheap], 1)
        await store.save_page(rows, errors, None, run, RunFigures())
    report = await read_report(db_path, since=86_400, now=DAY + 3600)
    (spend,) = [a for a in report.answers if a.title.startswith("Spend by model")]
    ((model, batches, tokens, usd, unpriced),) = spend.rows
    assert (model, batches, tokens, unpriced) == ("gpt-4o-mini", 1, 1_200, 0)
    assert 0 < usd < 0.01
