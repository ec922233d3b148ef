"""The live progress line, and the progress a real sync reports after every committed page."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aioresponses import aioresponses

from crawler import Progress, Settings, sync
from crawler.api import RetryPolicy
from crawler.cli import _progress_line, main
from crawler.errors import TransportError
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.progress import ProgressLine

from .conftest import BASE_URL, list_body, make_batch


class Terminal(io.StringIO):
    """A stream that counts its flushes, like a terminal that shows only what is flushed."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()

    def screen(self) -> tuple[str, int]:
        """What the terminal line shows after everything written, and the cursor's column."""
        cells: list[str] = []
        cursor = 0
        for char in self.getvalue():
            if char == "\r":
                cursor = 0
                continue
            if cursor < len(cells):
                cells[cursor] = char
            else:
                cells.append(char)
            cursor += 1
        return "".join(cells), cursor


def progress(pages: int, batches: int = 0, retries: int = 0, elapsed: float = 1.0) -> Progress:
    return Progress(pages=pages, batches=batches, retries=retries, elapsed=elapsed)


@pytest.mark.parametrize(
    ("figures", "line"),
    [
        (progress(3, 300, 0, 2.0), "pages 3  batches 300  150/s  retries 0  2.0s"),
        (
            progress(1234, 123_456, 7, 2.0),
            "pages 1,234  batches 123,456  61,728/s  retries 7  2.0s",
        ),
        (progress(0, 0, 1, 0.0), "pages 0  batches 0  0/s  retries 1  0.0s"),
        (
            progress(5, 500, 0, 4321.06),
            "pages 5  batches 500  0/s  retries 0  4,321.1s",
        ),
    ],
    ids=["plain", "thousands", "no time yet", "long run"],
)
def test_the_line_shows_pages_batches_rate_retries_and_time(figures: Progress, line: str) -> None:
    """One update draws the figures on the current line, from its start, and flushes them."""
    tty = Terminal()
    ProgressLine(tty, clock=lambda: 50.0)(figures)
    assert tty.getvalue() == "\r" + line
    assert tty.flushes == 1


@pytest.mark.parametrize(
    ("interval", "times", "shown"),
    [
        (0.0, [10.0, 10.0, 10.1, 10.2], [1, 2, 3, 4]),
        (1.0, [10.0, 10.5, 10.99, 11.0, 11.5, 12.25], [1, 4, 6]),
        (5.0, [10.0, 11.0, 12.0, 14.99], [1]),
    ],
    ids=["every update", "at most one a second", "only the first"],
)
def test_updates_closer_than_the_interval_are_skipped(
    interval: float, times: list[float], shown: list[int]
) -> None:
    """The first update is drawn at once; later ones only `interval` after the last drawn."""
    tty = Terminal()
    clock = iter(times)
    line = ProgressLine(tty, clock=lambda: next(clock), interval=interval)
    for n in range(1, len(times) + 1):
        line(progress(n))
    drawn = [int(p) for p in re.findall(r"\rpages (\d+) ", tty.getvalue())]
    assert drawn == shown
    assert tty.getvalue().count("\r") == len(shown)
    assert tty.flushes == len(shown)
    assert tty.screen()[0].startswith(f"pages {shown[-1]}  ")


def test_a_shorter_line_leaves_nothing_of_the_longer_one() -> None:
    """A line shorter than the one before is padded over it: no stale figures remain."""
    tty = Terminal()
    line = ProgressLine(tty, clock=lambda: 0.0, interval=0.0)
    line(progress(1234, 123_456, 99, 1234.5))
    long_width = len(tty.screen()[0])
    line(progress(1, 1, 0, 1.0))
    shown, cursor = tty.screen()
    assert shown.rstrip() == "pages 1  batches 1  1/s  retries 0  1.0s"
    assert len(shown) == long_width
    assert cursor == long_width


@pytest.mark.parametrize("updates", [1, 3])
def test_close_erases_the_line_and_returns_to_its_start(updates: int) -> None:
    """After close() the line is blank and the cursor at column 0; a second close adds nothing."""
    tty = Terminal()
    line = ProgressLine(tty, clock=lambda: 0.0, interval=0.0)
    for n in range(updates):
        line(progress(10**n, 100 * 10**n))
    line.close()
    shown, cursor = tty.screen()
    assert shown.strip() == ""
    assert cursor == 0
    assert tty.flushes == updates + 1
    written = tty.getvalue()
    line.close()
    assert tty.getvalue() == written


def test_close_without_any_update_writes_nothing() -> None:
    """A run that never reported leaves the terminal untouched."""
    tty = Terminal()
    ProgressLine(tty, clock=lambda: 0.0).close()
    assert (tty.getvalue(), tty.flushes) == ("", 0)


# The figures a real sync reports.


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    """The fake API serving 250 batches: five pages of 50."""
    async with FakeApiServer(FakeApiOptions(batches=250)) as running:
        yield running


def stored_figures(db: Path) -> tuple[int, int]:
    """Batches stored and pages recorded in the ledger, as another reader sees them now."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (batches,) = conn.execute("SELECT count(*) FROM batches").fetchone()
        (pages,) = conn.execute("SELECT pages FROM sync_runs").fetchone()
    return batches, pages


async def test_progress_follows_every_committed_page(server: FakeApiServer, db_path: Path) -> None:
    """on_progress comes after each page's commit, with growing counts; the last is the result's."""
    settings = Settings(
        db=db_path,
        base_url=server.base_url,
        api_key=server.options.api_key,
        page_size=50,
        files=False,
    )
    reports: list[tuple[Progress, tuple[int, int]]] = []
    result = await sync(
        settings, on_progress=lambda p: reports.append((p, stored_figures(db_path)))
    )
    assert result.complete
    assert [(p.pages, p.batches, p.retries) for p, _ in reports] == [
        (n, 50 * n, 0) for n in range(1, 6)
    ]
    # Each report sees its page committed: the rows and the ledger's page count.
    assert [committed for _, committed in reports] == [(50 * n, n) for n in range(1, 6)]
    elapsed = [p.elapsed for p, _ in reports]
    assert elapsed == sorted(elapsed)
    last = reports[-1][0]
    assert (last.pages, last.batches, last.retries) == (
        result.pages,
        result.batches_seen,
        result.retries,
    )


async def test_a_retry_is_reported_before_the_page_it_delays(
    settings: Settings, fast_retry: RetryPolicy
) -> None:
    """A retry sends a report of its own, counted; the page then follows with the same count."""
    reports: list[Progress] = []
    with aioresponses() as mock:
        mock.get(f"{BASE_URL}/batches?limit=2", status=503, body="busy")
        mock.get(f"{BASE_URL}/batches?limit=2", payload=list_body([make_batch(1)], False))
        result = await sync(settings, retry=fast_retry, on_progress=reports.append)
    assert [(p.pages, p.batches, p.retries) for p in reports] == [(0, 0, 1), (1, 1, 1)]
    assert result.retries == 1


async def test_the_progress_line_fed_by_a_sync_ends_on_its_figures(
    server: FakeApiServer, db_path: Path
) -> None:
    """A ProgressLine as on_progress shows the run's final figures, then close() erases them."""
    settings = Settings(
        db=db_path,
        base_url=server.base_url,
        api_key=server.options.api_key,
        page_size=50,
    )
    tty = Terminal()
    line = ProgressLine(tty, clock=lambda: 0.0, interval=0.0)
    result = await sync(settings, on_progress=line)
    assert sorted(set(re.findall(r"\rpages (\d+) ", tty.getvalue()))) == ["1", "2", "3", "4", "5"]
    # The error files are fetched alongside the walk: the last figures count them all.
    assert result.files > 0
    assert tty.screen()[0].startswith(
        f"pages 5  batches 250  files {result.files:,} ({result.request_lines:,} lines)  "
    )
    line.close()
    assert tty.screen() == (" " * len(tty.screen()[0]), 0)


# What a run waiting on a slow or failing server shows.


def test_a_retry_is_drawn_at_once_and_the_next_page_clears_it() -> None:
    """A retry shows however soon after the last update; the next page replaces it at once."""
    tty = Terminal()
    line = ProgressLine(tty, clock=lambda: 10.0, interval=5.0, columns=lambda: 120)
    line(progress(1, 100))
    line(Progress(1, 100, 1, 1.0, retrying="attempt 2/8: HTTP 503"))
    assert tty.screen()[0] == "pages 1  batches 100  1.0s  retrying, attempt 2/8: HTTP 503"
    line(progress(2, 200, 1))
    assert tty.screen()[0].rstrip() == "pages 2  batches 200  200/s  retries 1  1.0s"
    line(progress(3, 300, 1))  # nothing new to say within the interval: skipped
    assert tty.getvalue().count("\r") == 3


def test_a_line_wider_than_the_terminal_is_cut_short() -> None:
    """A line that would wrap could not be redrawn in place: it stops short of the last column."""
    tty = Terminal()
    line = ProgressLine(tty, clock=lambda: 0.0, columns=lambda: 40)
    line(Progress(1, 1, 1, 1.0, retrying="attempt 2/8: cannot connect to api.example:443"))
    assert tty.screen() == ("pages 1  batches 1  1.0s  retrying, att", 39)


def test_a_terminal_of_unknown_width_is_taken_as_80_columns() -> None:
    """A pseudo-terminal nobody sized (as under `script` or CI) says 0 columns: 80 it is."""
    leader, follower = os.openpty()
    with open(follower, "w", encoding="utf-8") as tty:
        ProgressLine(tty, clock=lambda: 0.0)(Progress(1, 1, 1, 1.0, retrying="x" * 100))
        shown = os.read(leader, 200).decode()  # what the write put there, all at once
    os.close(leader)
    assert shown == ("\r" + "pages 1  batches 1  1.0s  retrying, " + "x" * 100)[:80]


async def test_a_sync_waiting_on_a_silent_server_says_so(db_path: Path) -> None:
    """Each attempt that timed out is reported: why, and which attempt comes next."""
    options = FakeApiOptions(batches=4, slow_rate=1.0, slow_seconds=3600.0)
    retry = RetryPolicy(max_attempts=3, max_seconds=60, initial_backoff=0, max_backoff=0)
    reports: list[Progress] = []
    async with FakeApiServer(options) as server:
        settings = Settings(
            db=db_path, base_url=server.base_url, api_key=server.options.api_key, read_timeout=0.2
        )
        with pytest.raises(TransportError, match=r"timed out, silent for 0\.2 s"):
            await sync(settings, retry=retry, on_progress=reports.append)
    assert [(p.retries, p.retrying) for p in reports] == [
        (1, "attempt 2/3: timed out, silent for 0.2 s"),
        (2, "attempt 3/3: timed out, silent for 0.2 s"),
    ]


class Tty(Terminal):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_progress_line_says_a_sync_is_retrying(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """`batch-crawler sync`, without -v, shows on its line that it is asking again, and why."""
    loopback = "http://127.0.0.1:9/v1"  # mocked: nothing listens there
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setattr(sys, "stderr", Tty())
    with aioresponses() as mock:
        mock.get(f"{loopback}/batches?limit=2", status=503, headers={"retry-after-ms": "1"})
        mock.get(f"{loopback}/batches?limit=2", payload=list_body([make_batch(1)], False))
        argv = ["sync", "--db", str(db_path), "--base-url", loopback, "--page-size", "2"]
        assert main(argv) == 0
    drawn = sys.stderr.getvalue().split("\r")
    assert any(d.endswith("  retrying, attempt 2/8: HTTP 503") for d in drawn), drawn
    assert drawn[-1] == "", "the line is erased at the end"


def test_a_log_line_on_a_terminal_starts_on_a_line_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With -v, a warning is written once the progress line is erased, not over its end,
    and the line comes back with the next figures."""
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(logging.root, "handlers", [logging.StreamHandler(tty)])
    level = logging.root.level
    logging.root.setLevel(logging.WARNING)  # as -v sets it, whatever an earlier test set
    try:
        with _progress_line(show=True) as line:
            assert line is not None
            line(Progress(1, 100, 0, 1.0))
            logging.getLogger("crawler.api").warning("asking again")
            line(Progress(2, 200, 0, 1.01))
    finally:
        logging.root.setLevel(level)
    before, _, after = tty.getvalue().partition("asking again\n")
    assert "pages 1" in before
    assert before.split("\r")[-1] == "", repr(before)
    assert "pages 2" in after
