"""`report --html`: one self-contained page, its charts drawn from the period's rows."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.cli import main
from crawler.report import Report
from crawler.report_html import PALETTE, chart_series, render_html
from crawler.store.reads import QueryAnswer

from .test_answer_views import db  # noqa: F401  (a fixture: a database with known costs)
from .waits import HANG_GUARD

DAY = 1_767_225_600  # 2026-01-01 00:00Z


def answer(
    rows: list[tuple[object, ...]], columns: tuple[str, ...] = ("a", "b", "c")
) -> QueryAnswer:
    return QueryAnswer("t", "SELECT 1", columns, rows)


def report(spend: list[tuple[object, ...]], outcomes: list[tuple[object, ...]]) -> Report:
    table = answer([("<gpt>", 2, 1.5)], ("model", "batches", "usd"))
    return Report(Path("b.db"), DAY, DAY + 2 * 86_400, [table], [answer(spend), answer(outcomes)])


def test_the_page_fetches_nothing_and_runs_no_script() -> None:
    page = render_html(report([("2026-01-01", "gpt-4o", 1.0)], [("2026-01-01", "failed", 3)]))
    assert page.count("<svg") == 2
    for fetch in ("<script", "src=", "href=", "url(", "@import", "http:", "https:"):
        assert fetch not in page, fetch
    assert "<td>&lt;gpt&gt;</td>" in page, "values are escaped"


def test_each_day_of_the_period_has_a_slot_and_each_bar_its_value() -> None:
    """$3 and $1 on the first day, $2 on the third: bar heights in proportion, the top of
    the scale a round $5; the second day has a label but no bar."""
    spend = [("2026-01-01", "gpt-4o", 3.0), ("2026-01-01", "o3", 1.0), ("2026-01-03", "o3", 2.0)]
    page = render_html(report(spend, []))
    chart = page[: page.index("Outcomes by day of creation</h2>")]
    heights = {
        title: float(height)
        for height, title in re.findall(r'height="([\d.]+)" fill="[^"]+"><title>([^<]+)<', chart)
    }
    assert heights.keys() == {
        "2026-01-01 gpt-4o: $3.00",
        "2026-01-01 o3: $1.00",
        "2026-01-03 o3: $2.00",
    }
    unit = heights["2026-01-01 o3: $1.00"]
    assert heights["2026-01-01 gpt-4o: $3.00"] == pytest.approx(3 * unit, abs=0.1)
    assert heights["2026-01-03 o3: $2.00"] == pytest.approx(2 * unit, abs=0.1)
    assert ">$5.00</text>" in chart
    assert [label for label in ("01-01", "01-02", "01-03") if f">{label}</text>" in chart] == [
        "01-01",
        "01-02",
        "01-03",
    ]


def test_past_the_palette_the_smallest_series_are_summed_as_others() -> None:
    rows = [("2026-01-01", f"model-{n}", float(n + 1)) for n in range(len(PALETTE) + 2)]
    series = chart_series(answer(rows))
    assert len(series) == len(PALETTE) + 1
    assert series[0].name == f"model-{len(PALETTE) + 1}"  # the largest first
    assert (series[-1].name, series[-1].by_day) == ("others", {"2026-01-01": 3.0})


def test_report_html_writes_the_page(
    db: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = tmp_path / "report.html"
    assert main(["report", "--db", str(db), "--since", "10000d", "--html", str(page)]) == 0
    assert capsys.readouterr().out.startswith(f"Wrote {page}: the report of batches created since")
    text = page.read_text(encoding="utf-8")
    assert "<h2>Top error codes</h2>" in text
    assert "gpt-4o-mini: $0.53" in text, "batch 1 and 2's day, at batch rates"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_an_unwritable_page_is_one_line_and_exit_2(
    db: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = tmp_path / "missing" / "report.html"
    assert main(["report", "--db", str(db), "--html", str(page)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"cannot write {page}" in err


def test_a_page_written_through_a_link_keeps_the_link(
    db: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The page was renamed over the link: the file it led to (served, say) stayed stale."""
    (tmp_path / "www").mkdir()
    served = tmp_path / "www" / "report.html"
    served.write_text("old", encoding="utf-8")
    link = tmp_path / "report.html"
    link.symlink_to(served)
    assert main(["report", "--db", str(db), "--html", str(link)]) == 0
    assert link.is_symlink()
    assert "<h2>Top error codes</h2>" in served.read_text(encoding="utf-8")
    assert [p.name for p in served.parent.iterdir()] == ["report.html"]


def test_a_page_written_to_a_pipe_reaches_its_reader(
    db: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A FIFO (or /dev/stdout) was replaced by a regular file: its reader got nothing."""
    fifo = tmp_path / "page.fifo"
    os.mkfifo(fifo)
    handle = tmp_path / "the same fifo"  # still the FIFO if the page is renamed over its name
    os.link(fifo, handle)
    with concurrent.futures.ThreadPoolExecutor(1) as reader:
        read = reader.submit(fifo.read_text, encoding="utf-8")
        try:
            assert main(["report", "--db", str(db), "--html", str(fifo)]) == 0
        finally:  # a reader never written to waits for a writer: one comes and goes
            with contextlib.suppress(OSError):  # none waits
                os.close(os.open(handle, os.O_WRONLY | os.O_NONBLOCK))
        assert "<h2>Top error codes</h2>" in read.result(timeout=HANG_GUARD)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_page_written_to_dev_stdout_sent_to_a_file_is_appended_to_it(
    db: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """/dev/stdout leads to the file the shell opened: the page was renamed over it, what
    it held lost, and all printed after it went to a file no longer there. Nothing follows
    the page (a "Wrote" line joined it)."""
    log = tmp_path / "log"
    log.write_text("EXISTING\n", encoding="utf-8")
    with log.open("a", encoding="utf-8") as out:
        done = subprocess.run(
            [sys.executable, "-m", "crawler", "report", "--db", str(db), "--html", "/dev/stdout"],
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=HANG_GUARD,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    said = log.read_text(encoding="utf-8")
    assert said.startswith("EXISTING\n")
    assert "<h2>Top error codes</h2>" in said
    assert said.endswith("</html>\n")


def test_a_loop_of_links_is_one_line_and_exit_2(
    db: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Python 3.11 raises RuntimeError resolving a loop: it was a traceback."""
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert main(["report", "--db", str(db), "--html", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("command", ["report --html", "datasette-metadata -o"])
@pytest.mark.parametrize(
    "target", ["the database", "another database", "a link to it", "its WAL", "its lock"]
)
def test_a_database_is_never_written_over(
    db: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    target: str,
) -> None:
    """`--html batches.db` mistyped replaced a synced database with a page, exit 0; its
    `-wal` (tab completion offers it) lost every page a killed sync had committed."""
    other = tmp_path / "other.db"
    other.write_bytes(db.read_bytes())
    path = {
        "the database": db,
        "another database": other,
        "a link to it": tmp_path / "l",
        "its WAL": tmp_path / "other.db-wal",  # a killed sync's committed pages
        "its lock": tmp_path / "other.db.lock",
    }[target]
    if target == "a link to it":
        path.symlink_to(other)
    elif not path.exists():
        path.write_bytes(b"pages a killed sync committed")
    before = path.read_bytes()
    name, flag = command.split()
    assert main([name, "--db", str(db), flag, str(path)]) == 2
    assert capsys.readouterr().err == (
        f"batch-crawler: {path} is a SQLite database or a file beside one: not written over "
        "(choose another file)\n"
    )
    assert path.read_bytes() == before


@pytest.mark.parametrize("command", ["report --html", "datasette-metadata -o"])
def test_a_dash_sends_the_output_to_stdout_alone(
    db: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """`-o -` wrote a file named `-`, and said "Wrote -"."""
    monkeypatch.chdir(tmp_path)
    name, flag = command.split()
    assert main([name, "--db", str(db), flag, "-"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "-").exists()
    assert "Wrote" not in out
    assert out.endswith("</html>\n") if name == "report" else json.loads(out)


@pytest.mark.parametrize("database", ["missing", "not SQLite"])
def test_metadata_for_a_database_not_there_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str
) -> None:
    """A --db mistyped got metadata naming it, "Wrote ... browse with datasette", exit 0."""
    path = tmp_path / "batches.db"
    if database == "not SQLite":
        path.write_text("notes\n")
    assert main(["datasette-metadata", "--db", str(path), "-o", str(tmp_path / "m.json")]) == 4
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "m.json").exists()
