"""The report as one self-contained HTML page: its tables, and charts drawn as inline SVG.

No JavaScript, no stylesheet or font fetched: the page opens offline, from a mail
attachment or a CI artifact, as it was written. Pure: a Report in, text out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from .report import Report, utc
from .store.reads import QueryAnswer

# Colours told apart by most forms of colour blindness (Okabe and Ito), then grey for the rest.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
OTHERS = "#999999"

# Outcomes keep one colour in every report: red for failure, green for success.
STATUS_COLOURS = {
    "completed": "#009E73",
    "failed": "#D55E00",
    "expired": "#E69F00",
    "cancelled": "#999999",
    "cancelling": "#BBBBBB",
    "in_progress": "#0072B2",
    "finalizing": "#56B4E9",
    "validating": "#CC79A7",
}

_WIDTH, _HEIGHT = 760, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 170, 16, 40


@dataclass(frozen=True)
class Series:
    """One stack of a bar chart: a name and its value on each day."""

    name: str
    colour: str
    by_day: dict[str, float]


def chart_series(answer: QueryAnswer, colours: dict[str, str] | None = None) -> list[Series]:
    """Series from rows of (day, name, value), the largest first; past the palette, the
    smaller names are summed as "others"."""
    totals: dict[str, dict[str, float]] = {}
    for day, name, value in answer.rows:
        per_day = totals.setdefault(str(name), {})
        per_day[str(day)] = per_day.get(str(day), 0.0) + float(value or 0)
    ranked = sorted(totals.items(), key=lambda item: -sum(item[1].values()))
    if colours is not None:
        return [Series(name, colours.get(name, OTHERS), days) for name, days in ranked]
    kept = ranked[: len(PALETTE)]
    series = [
        Series(name, colour, days) for (name, days), colour in zip(kept, PALETTE, strict=False)
    ]
    rest: dict[str, float] = {}
    for _, days in ranked[len(PALETTE) :]:
        for day, value in days.items():
            rest[day] = rest.get(day, 0.0) + value
    return [*series, Series("others", OTHERS, rest)] if rest else series


def stacked_bars(title: str, unit: str, days: Sequence[str], series: Sequence[Series]) -> str:
    """An SVG chart: one bar a day, stacked by series, with a scale and a legend."""
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    totals = [sum(s.by_day.get(day, 0.0) for s in series) for day in days]
    top = _nice_ceiling(max(totals, default=0.0))
    parts = [
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'width="{_WIDTH}" height="{_HEIGHT}">',
        f"<title>{escape(title)}</title>",
    ]
    for step in range(5):  # the scale: five lines from zero to the top
        value = top * step / 4
        y = _TOP + plot_h - plot_h * step / 4
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_amount(value, unit)}</text>'
        )
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.7, 1.0)
    for i, day in enumerate(days):
        x = _LEFT + i * slot + (slot - bar) / 2
        base = float(_TOP + plot_h)
        for s in series:
            value = s.by_day.get(day, 0.0)
            if value <= 0 or top <= 0:
                continue
            height = plot_h * value / top
            base -= height
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{s.colour}"><title>{escape(day)} {escape(s.name)}: '
                f"{_amount(value, unit)}</title></rect>"
            )
        if len(days) <= 16 or i % -(-len(days) // 16) == 0:  # at most 16 day labels
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{_HEIGHT - _BOTTOM + 16}" '
                f'text-anchor="middle">{escape(day[5:])}</text>'
            )
    for n, s in enumerate(series):
        y = _TOP + 6 + n * 18
        parts.append(
            f'<rect x="{_WIDTH - _RIGHT + 16}" y="{y}" width="12" height="12" fill="{s.colour}"/>'
            f'<text x="{_WIDTH - _RIGHT + 34}" y="{y + 10}">{escape(s.name[:20])}</text>'
        )
    if not days:
        parts.append(
            f'<text x="{_LEFT + plot_w / 2}" y="{_TOP + plot_h / 2}" '
            'text-anchor="middle">no batches in the period</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Report) -> str:
    """The whole page: heading, the two charts, then every answer as a table."""
    spend, outcomes = report.charts
    days = _days(report.start, report.end)
    heading = f"Batches created since {utc(report.start)} (to {utc(report.end)})"
    charts = [
        (
            "Daily spend by model",
            stacked_bars("Daily spend by model", "$", days, chart_series(spend)),
        ),
        (
            "Outcomes by day of creation",
            stacked_bars(
                "Outcomes by day of creation", "", days, chart_series(outcomes, STATUS_COLOURS)
            ),
        ),
    ]
    body = [f"<h1>{escape(heading)}</h1>", f"<p>From {escape(str(report.db))}.</p>"]
    for title, svg in charts:
        body += [f"<h2>{escape(title)}</h2>", svg]
    for answer in report.answers:
        body += [f"<h2>{escape(answer.title)}</h2>", _table(answer)]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(heading)}</title>",
            f"<style>{_STYLE}</style></head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )


_STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:60em}"
    "table{border-collapse:collapse;margin-bottom:1em}"
    "th,td{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "svg text{font:11px system-ui,sans-serif;fill:#444}"
)


def _table(answer: QueryAnswer) -> str:
    if not answer.rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in answer.columns)
    rows = []
    for row in answer.rows:
        cells = "".join(
            f'<td class="n">{v}</td>'
            if isinstance(v, int | float)
            else f"<td>{'' if v is None else escape(str(v))}</td>"
            for v in row
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _days(start: int, end: int) -> list[str]:
    """Every UTC day from `start` to `end`, as YYYY-MM-DD."""
    first = dt.datetime.fromtimestamp(start, dt.UTC).date()
    last = dt.datetime.fromtimestamp(end, dt.UTC).date()
    return [str(first + dt.timedelta(days=n)) for n in range((last - first).days + 1)]


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** (len(str(int(value))) - 1) if value >= 1 else 1.0
    while power > value:
        power /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _amount(value: float, unit: str) -> str:
    if unit == "$":
        return f"${value:,.2f}" if value < 100 else f"${value:,.0f}"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
