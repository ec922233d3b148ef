"""The demo, the README's first command: sync the fake API, then answer four example queries."""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from crawler import Progress
from crawler.cli import main
from crawler.demo import DEMO_QUERIES, QueryAnswer, ask, run_demo
from crawler.report import format_answer


def fetch(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def sql_sum(values: Iterable[int | None]) -> int | None:
    """SQL's sum(): NULLs skipped, and NULL when nothing is left."""
    present = [v for v in values if v is not None]
    return sum(present) if present else None


@pytest.fixture
async def demo_db(tmp_path: Path) -> Path:
    """A database the demo synced 300 synthetic batches into."""
    db = tmp_path / "demo.db"
    await run_demo(db, 300)
    return db


@pytest.mark.parametrize(("batches", "pages"), [(1, 1), (250, 3)])
async def test_run_demo_syncs_exactly_the_batches_asked_for(
    tmp_path: Path, batches: int, pages: int
) -> None:
    """run_demo serves N batches and stores each of them once, reporting every page."""
    db = tmp_path / "demo.db"
    reports: list[Progress] = []
    result = await run_demo(db, batches, reports.append)
    assert result.complete
    assert result.mode == "full"
    assert (result.pages, result.batches_seen, result.batches_new) == (
        pages,
        batches,
        batches,
    )
    assert fetch(db, "SELECT count(*), count(DISTINCT id) FROM batches") == [(batches, batches)]
    # A report after every page, and after every request file stored alongside.
    assert sorted({p.pages for p in reports}) == list(range(1, pages + 1))
    assert [p.pages for p in reports] == sorted(p.pages for p in reports)
    assert (reports[-1].batches, reports[-1].files) == (batches, result.files)


async def test_the_answers_are_the_demo_queries_in_order(demo_db: Path) -> None:
    """ask() answers each DEMO_QUERIES entry, in order, with its title and SQL."""
    answers = ask(demo_db)
    assert [(a.title, a.sql) for a in answers] == list(DEMO_QUERIES)


async def test_batches_by_status_agree_with_the_database(demo_db: Path) -> None:
    """The status counts are the database's, largest first, and add up to every batch."""
    answer = ask(demo_db)[0]
    assert answer.columns == ("status", "batches")
    expected = Counter(status for (status,) in fetch(demo_db, "SELECT status FROM batches"))
    assert dict(answer.rows) == expected
    assert sum(count for _, count in answer.rows) == 300
    counts = [count for _, count in answer.rows]
    assert counts == sorted(counts, reverse=True)


async def test_requests_and_tokens_by_model_agree_with_the_database(
    demo_db: Path,
) -> None:
    """Per model (unrecorded ones grouped): batches, failed requests and tokens, as stored."""
    answer = ask(demo_db)[1]
    assert answer.columns == ("model", "batches", "failed_requests", "tokens")
    groups: defaultdict[str, list[tuple[int | None, int | None]]] = defaultdict(list)
    for model, failed, tokens in fetch(
        demo_db, "SELECT model, request_counts_failed, total_tokens FROM batches"
    ):
        groups[model if model is not None else "(not recorded)"].append((failed, tokens))
    expected = {
        model: (len(rows), sql_sum(f for f, _ in rows), sql_sum(t for _, t in rows))
        for model, rows in groups.items()
    }
    assert {model: tuple(rest) for model, *rest in answer.rows} == expected
    assert sum(row[1] for row in answer.rows) == 300
    counts = [row[1] for row in answer.rows]
    assert counts == sorted(counts, reverse=True)


async def test_why_batches_failed_agrees_with_the_error_lines(demo_db: Path) -> None:
    """The five most common error codes, each with its batch count and its first message."""
    answer = ask(demo_db)[2]
    assert answer.columns == ("code", "batches", "example")
    batches_by_code: defaultdict[str | None, set[str]] = defaultdict(set)
    messages: defaultdict[str | None, list[str]] = defaultdict(list)
    for batch_id, code, message in fetch(
        demo_db, "SELECT batch_id, code, message FROM batch_errors"
    ):
        batches_by_code[code].add(batch_id)
        if message is not None:
            messages[code].append(message)
    assert batches_by_code, "the demo data has failed batches with error lines"
    assert len(answer.rows) == min(5, len(batches_by_code))
    for code, count, example in answer.rows:
        assert count == len(batches_by_code[code])
        assert example == (min(messages[code])[:60] if messages[code] else None)
    shown = {code for code, _, _ in answer.rows}
    left_out = [len(ids) for code, ids in batches_by_code.items() if code not in shown]
    assert min(row[1] for row in answer.rows) >= max(left_out, default=0)


async def test_why_requests_failed_agrees_with_the_request_lines(demo_db: Path) -> None:
    """The five most common reasons a request failed, from the error files' lines."""
    answer = ask(demo_db)[3]
    assert answer.columns == ("reason", "requests", "example")
    reasons = Counter(
        code or kind or f"HTTP {status}"
        for code, kind, status in fetch(
            demo_db,
            "SELECT error_code, error_type, status_code FROM batch_requests WHERE kind = 'error'",
        )
    )
    assert reasons, "the demo data has error files"
    assert len(answer.rows) == min(5, len(reasons))
    assert all(reasons[reason] == n for reason, n, _ in answer.rows)
    shown = {reason for reason, _, _ in answer.rows}
    left_out = [n for reason, n in reasons.items() if reason not in shown]
    assert min(row[1] for row in answer.rows) >= max(left_out, default=0)


@pytest.mark.parametrize(
    ("answer", "table"),
    [
        (
            QueryAnswer(
                "By status",
                "SELECT 1",
                ("status", "batches"),
                [("completed", 1234), ("failed", 5)],
            ),
            [
                "  status     batches",
                "  ---------  -------",
                "  completed     1234",
                "  failed           5",
            ],
        ),
        (
            QueryAnswer(
                "Durations",
                "SELECT 2",
                ("model", "avg_seconds"),
                [(None, 12.5), ("gpt-4o", 3.25)],
            ),
            [
                "  model   avg_seconds",
                "  ------  -----------",
                "                 12.5",
                "  gpt-4o         3.25",
            ],
        ),
        (
            QueryAnswer("Nothing failed", "SELECT 3", ("code", "batches"), []),
            ["  (none)"],
        ),
    ],
    ids=["text and integers", "blank text and floats", "no rows"],
)
def test_format_answer_aligns_the_columns(answer: QueryAnswer, table: list[str]) -> None:
    """Title, SQL, header and its underline; text left-aligned, numbers right-aligned."""
    assert format_answer(answer) == "\n".join([f"-- {answer.title}", f"{answer.sql};", *table])


def test_a_column_of_numbers_with_a_null_is_still_right_aligned() -> None:
    """A sum that is NULL for one group shows blank; the other figures still align right."""
    answer = QueryAnswer(
        "Tokens", "SELECT 4", ("model", "tokens"), [("a", 100), ("b", None), ("c", 5)]
    )
    assert format_answer(answer).splitlines()[2:] == [
        "  model  tokens",
        "  -----  ------",
        "  a         100",
        "  b",
        "  c           5",
    ]


def test_the_demo_command_syncs_and_prints_the_four_answers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`batch-crawler demo` exits 0: what it serves, the sync summary, four tables, a hint."""
    db = tmp_path / "demo.db"
    assert main(["demo", "--db", str(db), "--batches", "300"]) == 0
    captured = capsys.readouterr()
    head, summary, rest = captured.out.split("\n", 2)
    assert head == f"Serving 300 synthetic batches on 127.0.0.1; syncing them into {db}"
    (error_lines,) = fetch(db, "SELECT count(*) FROM batch_errors")[0]
    assert summary.startswith(
        f"Synced: 3 pages, 300 batches (300 new, 0 updated), {error_lines:,} error lines, "
        "0 retries, "
    )
    assert summary.endswith(" s [full]")
    files, rest = rest.split("\n", 1)
    (stored, lines) = fetch(
        db, "SELECT count(*), sum(lines) FROM batch_files WHERE state = 'complete'"
    )[0]
    assert files.startswith(f"Stored {stored:,} request files: {lines:,} request lines, ")
    tables = "".join(f"\n{format_answer(answer)}\n" for answer in ask(db))
    assert rest == f"{tables}\nExplore further: sqlite3 {db}\n"
    assert captured.err == ""


def readme_example_queries() -> list[str]:
    """The statements of the README's "Example queries" block, comments left out."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Example queries") :]
    start = section.index("```sql\n") + len("```sql\n")
    block = section[start : section.index("```", start)]
    sql = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in sql.split(";") if statement.strip()]


async def test_every_readme_example_query_runs_on_a_synced_database(demo_db: Path) -> None:
    queries = readme_example_queries()
    assert len(queries) >= 15
    answered = [query for query in queries if fetch(demo_db, query)]
    # Only two may find nothing in the demo: answers cut off (its outputs are not stored)
    # and a field the API does not send.
    assert len(answered) >= len(queries) - 2


def test_the_accounts_demo_syncs_two_accounts_into_one_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`demo --accounts`: an OpenAI project and an Azure OpenAI resource (each served by the
    fake in its flavor) into one database, and a query by account."""
    db = tmp_path / "accounts.db"
    assert main(["demo", "--accounts", "--db", str(db), "--batches", "150"]) == 0
    out = capsys.readouterr().out
    assert "[project] Synced: 2 pages, 150 batches (150 new" in out
    assert "[azure] Synced: 2 pages, 150 batches (150 new" in out
    assert "-- Batches and spend by account" in out
    with contextlib.closing(sqlite3.connect(db)) as conn:
        owners = dict(conn.execute("SELECT account, count(*) FROM batches GROUP BY 1"))
    assert owners == {"azure": 150, "project": 150}


@pytest.mark.parametrize("accounts", [False, True], ids=["one account", "two accounts"])
def test_the_demo_never_mixes_its_batches_into_a_real_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], accounts: bool
) -> None:
    """`demo --db batches.db` mixed synthetic batches into the real ones for good, exit 0.
    A database the demo made, run again, is the demo's still."""
    demo_db = tmp_path / "demo.db"
    for _ in range(2):
        assert main(["demo", "--db", str(demo_db), "--batches", "20"]) == 0
    with contextlib.closing(sqlite3.connect(demo_db)) as conn, conn:
        conn.execute("UPDATE sync_runs SET base_url = 'https://api.openai.com/v1' WHERE id = 1")
    before = fetch(demo_db, "SELECT count(*) FROM batches")
    capsys.readouterr()
    argv = ["demo", "--db", str(demo_db), *(["--accounts"] if accounts else [])]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"batch-crawler: {demo_db} holds batches synced from https://api.openai.com/v1: the "
        "demo would mix synthetic ones into them; choose another --db (the demo's own is "
        "demo.db)\n"
    )
    assert fetch(demo_db, "SELECT count(*) FROM batches") == before


@pytest.mark.parametrize(
    "proxy", ["http://u:p@10.255.255.1:3128", "http://127.0.0.1:9"], ids=["elsewhere", "down"]
)
def test_the_demo_runs_on_a_machine_whose_programs_have_a_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    """HTTP_PROXY set (as on many office machines): the demo was refused (plain http to
    this machine through a proxy elsewhere, and the flag that would allow it is not the
    demo's), or sent its requests to a proxy that was down. This machine is reached directly."""
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    assert main(["demo", "--db", str(tmp_path / "d.db"), "--batches", "20"]) == 0


def test_what_the_demo_prints_from_the_database_masks_the_keys_at_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`demo --db` on a database a local gateway filled (allowed) printed its answers
    unmasked: a run of the key a server echoed, stored as under half of it, was shown.
    Here the key at hand spells a model the demo's answers name."""
    monkeypatch.setenv("OPENAI_API_KEY", "text-embedding-3-large")
    assert main(["demo", "--db", str(tmp_path / "d.db"), "--batches", "50"]) == 0
    printed = capsys.readouterr().out
    assert "gpt-4o" in printed
    assert "text-embedding-3-" not in printed  # 16 characters of it, in -small too
