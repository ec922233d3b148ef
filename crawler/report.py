"""The period's answers: spend, outcomes, failures, slow and in-flight work, as tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .setting_rules import shown
from .store import open_reader
from .store.reads import QueryAnswer, answer_queries

_SINCE = re.compile(r"^(\d+)([hdw])$")
_UNIT_SECONDS = {"h": 3600, "d": 86_400, "w": 7 * 86_400}
# A longer period would start before the calendar's first year.
_LONGEST = 5200 * _UNIT_SECONDS["w"]


def parse_since(text: str) -> int:
    """Seconds in a period written `12h`, `7d` or `2w`.

    Raises:
        ConfigError: anything else.
    """
    match = _SINCE.match(text.strip())
    if not match or int(match[1]) == 0:
        raise ConfigError(f"--since {shown(text)}: give a period such as 12h, 7d or 2w")
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds > _LONGEST:
        raise ConfigError(f"--since {shown(text)}: at most 100 years (5200w)")
    return seconds


def report_queries(start: int) -> list[tuple[str, str]]:
    """The report's (title, SQL) pairs for batches created from unix time `start` on."""
    since = f"created_at >= {int(start)}"
    return [
        (
            "Spend by model (USD at batch rates; unpriced: no price or no usage)",
            "SELECT coalesce(model, '(not recorded)') AS model, count(*) AS batches,\n"
            "       sum(total_tokens) AS tokens, round(sum(usd), 4) AS usd,\n"
            "       sum(usd IS NULL) AS unpriced\n"
            f"FROM batch_costs WHERE {since} GROUP BY 1 ORDER BY sum(usd) DESC, batches DESC",
        ),
        (
            "Spend by day",
            "SELECT date(created_at, 'unixepoch') AS day, count(*) AS batches,\n"
            "       round(sum(usd), 4) AS usd\n"
            f"FROM batch_costs WHERE {since} GROUP BY 1 ORDER BY 1",
        ),
        (
            "Batches and requests by outcome",
            "SELECT coalesce(status, '(none)') AS status, count(*) AS batches,\n"
            "       sum(request_counts_total) AS requests,\n"
            "       sum(request_counts_failed) AS failed_requests\n"
            f"FROM batches WHERE {since} GROUP BY 1 ORDER BY batches DESC",
        ),
        (
            "Top error codes",
            "SELECT reason, count(*) AS times, substr(min(example), 1, 60) AS example FROM (\n"
            "  SELECT coalesce(q.error_code, q.error_type, 'HTTP ' || q.status_code) AS reason,\n"
            "         q.error_message AS example\n"
            "  FROM batch_requests q JOIN batches b ON b.id = q.batch_id\n"
            f"  WHERE q.kind = 'error' AND b.{since}\n"
            "  UNION ALL\n"
            "  SELECT e.code, e.message FROM batch_errors e JOIN batches b ON b.id = e.batch_id\n"
            f"  WHERE b.{since}\n"
            ") GROUP BY 1 ORDER BY times DESC LIMIT 10",
        ),
        (
            "Slowest batches",
            "SELECT id AS batch_id, model, status, round(total_seconds / 3600.0, 1) AS hours\n"
            f"FROM batch_durations WHERE {since} AND total_seconds IS NOT NULL\n"
            "ORDER BY total_seconds DESC LIMIT 5",
        ),
        (
            "In flight now",
            "SELECT coalesce(status, '(none)') AS status, count(*) AS batches,\n"
            "       round(max(age_seconds) / 3600.0, 1) AS oldest_hours\n"
            "FROM in_flight GROUP BY 1 ORDER BY batches DESC",
        ),
    ]


def chart_queries(start: int) -> list[tuple[str, str]]:
    """The charts' (title, SQL) pairs: rows of (day, series, value), for `report --html`."""
    since = f"created_at >= {int(start)}"
    return [
        (
            "Daily spend by model",
            "SELECT date(created_at, 'unixepoch') AS day,\n"
            "       coalesce(model, '(not recorded)') AS model, sum(usd) AS usd\n"
            f"FROM batch_costs WHERE {since} AND usd > 0 GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            "Outcomes by day of creation",
            "SELECT date(created_at, 'unixepoch') AS day, coalesce(status, '(none)') AS status,\n"
            "       count(*) AS batches\n"
            f"FROM batches WHERE {since} GROUP BY 1, 2 ORDER BY 1, 2",
        ),
    ]


@dataclass(frozen=True)
class Report:
    """A period's answers, and the rows its charts are drawn from."""

    db: Path
    start: int
    end: int
    answers: list[QueryAnswer]
    charts: list[QueryAnswer]

    def with_texts(self, change: Callable[[str], str]) -> Report:
        """This report with `change` applied to each text its answers and charts hold."""

        def changed(answer: QueryAnswer) -> QueryAnswer:
            rows = [tuple(change(v) if isinstance(v, str) else v for v in r) for r in answer.rows]
            return dataclasses.replace(answer, rows=rows)

        return dataclasses.replace(
            self,
            answers=[changed(a) for a in self.answers],
            charts=[changed(a) for a in self.charts],
        )

    def as_json(self) -> dict[str, Any]:
        """A plain-data form for `report --json`."""
        return {
            "db": str(self.db),
            "from": self.start,
            "to": self.end,
            "sections": [
                {
                    "title": a.title,
                    "columns": list(a.columns),
                    "rows": [dict(zip(a.columns, row, strict=True)) for row in a.rows],
                }
                for a in self.answers
            ],
        }


async def read_report(db: Path, *, since: int, now: int) -> Report:
    """The answers for batches created in the `since` seconds before unix time `now`."""
    start = now - since
    async with open_reader(db) as reader, reader.snapshot():
        answers = await reader.read(answer_queries, report_queries(start))
        charts = await reader.read(answer_queries, chart_queries(start))
    return Report(db, start, now, answers, charts)


def format_report(report: Report) -> str:
    """The report as text: a heading, then each answer as a table (its SQL left out)."""
    start = utc(report.start)
    lines = [f"Batches created since {start} (to {utc(report.end)}), from {report.db}"]
    for answer in report.answers:
        lines += ["", format_answer(answer, with_sql=False)]
    return "\n".join(lines)


def utc(unix: int) -> str:
    """Unix time as a UTC minute: 2026-12-05 04:30Z."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%MZ")


def format_answer(answer: QueryAnswer, *, with_sql: bool = True) -> str:
    """A query's title (and SQL) and its rows as an aligned text table."""
    cells = [answer.columns, *[tuple("" if v is None else str(v) for v in r) for r in answer.rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(answer.columns))]
    # Numbers line up on the right, as in any table of figures.
    numeric = [_is_numeric([r[i] for r in answer.rows]) for i in range(len(answer.columns))]
    lines = [f"-- {answer.title}", *([answer.sql + ";"] if with_sql else [])]
    if not answer.rows:
        return "\n".join([*lines, "  (none)"])
    for n, row in enumerate(cells):
        padded = (
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(row, widths, numeric, strict=True)
        )
        lines.append("  " + "  ".join(padded).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_numeric(column: list[Any]) -> bool:
    """Whether a column holds numbers, NULLs aside (a sum over no values is NULL)."""
    values = [v for v in column if v is not None]
    return bool(values) and all(isinstance(v, int | float) for v in values)
