"""The real `batch-crawler` process against the fake API: kill -9 at random moments, bad keys.

The fake holds list requests at a chosen point, so that a signal always lands while the
process runs, after the pages it was meant to commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.request_files import LINES_PER_COMMIT
from crawler.request_rows import REQUEST_COLUMNS

from .exact import assert_database_matches
from .test_request_files import expected_rows
from .waits import HANG_GUARD, until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    """3,000 batches: 30 pages."""
    async with FakeApiServer(FakeApiOptions(batches=3000)) as running:
        yield running


async def start_cli(
    server: FakeApiServer, *args: str, key: str | None = None
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "OPENAI_API_KEY": key or server.options.api_key,
        "OPENAI_BASE_URL": server.base_url,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_cli(server: FakeApiServer, *args: str, key: str | None = None) -> tuple[int, str]:
    proc = await start_cli(server, *args, key=key)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=HANG_GUARD)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


def query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of a read-only query; none while the database or its schema does not exist yet."""
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # no schema yet, or the schema being created
        return []


def ledger(db: Path) -> list[tuple[str, str, int]]:
    return query(db, "SELECT mode, outcome, pages FROM sync_runs ORDER BY id")


def stored_cursor(db: Path) -> str | None:
    rows = query(db, "SELECT cursor FROM walk_state")
    return rows[0][0] if rows else None


def pages_committed(db: Path, runs_before: int) -> int:
    """Pages committed by the run after the first `runs_before` ones (0 before it starts)."""
    rows = query(db, "SELECT pages FROM sync_runs ORDER BY id LIMIT 1 OFFSET ?", runs_before)
    return rows[0][0] if rows else 0


async def wait_for_pages(
    proc: asyncio.subprocess.Process, db: Path, runs_before: int, pages: int
) -> None:
    """Wait until the process's run has committed `pages` pages; fail if it exits first."""
    committed = await until(
        lambda: pages_committed(db, runs_before) >= pages,
        unless=lambda: proc.returncode is not None,
    )
    if not committed:
        out, err = await proc.communicate()
        raise AssertionError(f"exited {proc.returncode} first: {(out + err).decode()}")


def assert_no_walk_restarted_from_the_top(runs: list[tuple[str, str, int]], pages: int) -> None:
    """After a run that was cut short with pages committed, the next run resumed.

    A walk episode (a full run and the resumes that follow it) commits the list once,
    plus one catch-up page per resumed run: never a second walk from the top.
    """
    episode = 0
    for (_, outcome, done), (mode, _, _) in itertools.pairwise(runs):
        if outcome in {"killed", "interrupted"} and done > 0:
            assert mode == "resume", runs
    for mode, outcome, done in runs:
        # A resume continues the walk before it; any other mode begins a walk of its own.
        episode = episode + done if mode == "resume" else done
        if outcome == "complete":
            assert episode <= pages + sum(m == "resume" for m, _, _ in runs), runs


async def test_sigkill_at_random_moments_then_resume_is_exact(
    server: FakeApiServer, db_path: Path
) -> None:
    """However often the process is killed, the next runs resume and end exact."""
    rng = random.Random(20261129)
    kills = resumed_from_cursor = 0
    for _ in range(5):
        cursor_before = stored_cursor(db_path)
        runs_before = len(ledger(db_path))
        # At most 5 pages a run, 25 in all: the 30-page walk is never done before a kill.
        gate = rng.randint(1, 5)
        server.hold_list_requests(after=gate)
        proc = await start_cli(server, "sync", "--db", str(db_path), "-q")
        await wait_for_pages(proc, db_path, runs_before, rng.randint(1, gate))
        proc.send_signal(signal.SIGKILL)
        kills += 1
        await proc.wait()
        server.release_list_requests()
        if cursor_before is not None:
            resumed_from_cursor += 1
    code, output = await run_cli(server, "sync", "--db", str(db_path))
    assert code == 0, output
    assert_database_matches(db_path, server.data.snapshot())
    runs = ledger(db_path)
    assert kills == 5
    assert resumed_from_cursor == 4
    assert [(mode, outcome) for mode, outcome, _ in runs] == [
        ("full", "killed"),
        *[("resume", "killed")] * resumed_from_cursor,
        ("resume", "complete"),
    ]
    assert_no_walk_restarted_from_the_top(runs, pages=30)


async def test_sigterm_is_recorded_as_interrupted_and_resumed(
    server: FakeApiServer, db_path: Path
) -> None:
    """SIGTERM ends the run cleanly (exit 143, ledger 'interrupted'); the next run resumes."""
    server.hold_list_requests(after=2)
    proc = await start_cli(server, "sync", "--db", str(db_path), "-q")
    await wait_for_pages(proc, db_path, 0, 1)
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=HANG_GUARD)
    server.release_list_requests()
    assert proc.returncode == 143, err
    assert b"the next sync resumes" in err
    assert ledger(db_path)[0][1] == "interrupted"
    code, output = await run_cli(server, "sync", "--db", str(db_path))
    assert code == 0, output
    assert "[resume]" in output
    assert_database_matches(db_path, server.data.snapshot())


@pytest.mark.parametrize(
    ("signals", "codes"),
    [
        ((signal.SIGINT, signal.SIGINT), {130}),
        ((signal.SIGTERM, signal.SIGTERM), {143}),
        # Pending together, the kernel may deliver either first: the first handled wins.
        ((signal.SIGINT, signal.SIGTERM, signal.SIGINT), {130, 143}),
    ],
    ids=["ctrl-c twice", "term twice", "three at once"],
)
async def test_signals_in_a_burst_stop_the_run_once_and_cleanly(
    server: FakeApiServer, db_path: Path, signals: tuple[signal.Signals, ...], codes: set[int]
) -> None:
    """A second signal while the run winds down is ignored: no traceback, ledger interrupted."""
    for attempt in range(4):
        server.hold_list_requests(after=1)
        proc = await start_cli(server, "sync", "--db", str(db_path), "-q", "--full")
        await wait_for_pages(proc, db_path, attempt, 1)
        for signum in signals:
            proc.send_signal(signum)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=HANG_GUARD)
        server.release_list_requests()
        assert proc.returncode in codes, err
        assert err.decode().count("\n") == 1, err.decode()
        assert ledger(db_path)[-1][1] == "interrupted"


async def test_a_second_sync_on_a_busy_database_refuses_at_once(
    server: FakeApiServer, db_path: Path
) -> None:
    """While one sync runs, another exits 4 at once and touches nothing; readers see pages."""
    server.hold_list_requests(after=1)
    first = await start_cli(server, "sync", "--db", str(db_path), "-q")
    await wait_for_pages(first, db_path, 0, 1)
    await until(lambda: server.stats.held == 1)
    # The first sync is alive, holding its lock, and waits on its second page.
    assert query(db_path, "SELECT count(*) FROM batches") == [(100,)]
    code, output = await run_cli(server, "sync", "--db", str(db_path))
    first.kill()
    await first.wait()
    assert code == 4
    assert "another sync is writing" in output
    assert len(ledger(db_path)) == 1
    assert server.stats.requests["list_batches"] == 2


async def test_wrong_key_exits_1_with_the_api_message_and_no_key(
    server: FakeApiServer, db_path: Path
) -> None:
    """A rejected key: exit 1, OpenAI's message, and the key nowhere in the output."""
    secret = "sk-proj-THISISASECRETKEY0123456789"
    code, output = await run_cli(server, "sync", "--db", str(db_path), key=secret)
    assert code == 1
    assert "Incorrect API key provided" in output
    assert secret not in output
    assert output.count("\n") == 1


async def test_sigkill_mid_file_then_the_next_sync_stores_every_line_once(db_path: Path) -> None:
    """Killed while files are half read and partly committed: the next sync reads those
    files again from their first line, and every line of every file is stored once."""
    # Files of two commits' lines, held halfway through the second: one commit lands mid-file.
    options = FakeApiOptions(batches=12, seed=3, requests_per_batch=2 * LINES_PER_COMMIT)
    async with FakeApiServer(options) as files_server:
        files_server.hold_file_contents(lines=LINES_PER_COMMIT * 3 // 2)
        proc = await start_cli(files_server, "sync", "--db", str(db_path), "--outputs", "-q")
        # Lines committed of a file not stored whole yet: the kill lands mid-file.
        half_stored = (
            "SELECT 1 FROM batch_requests AS r JOIN batch_files AS f ON f.file_id = r.file_id "
            "WHERE f.state = 'pending' LIMIT 1"
        )
        committed = await until(
            lambda: bool(query(db_path, half_stored)), unless=lambda: proc.returncode is not None
        )
        assert committed, await proc.communicate()
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert query(db_path, half_stored)
        files_server.release_file_contents()
        code, output = await run_cli(files_server, "sync", "--db", str(db_path), "--outputs")
        assert code == 0, output
        expected = expected_rows(files_server, {"error", "output"})
    stored = sorted(query(db_path, f"SELECT {', '.join(REQUEST_COLUMNS)} FROM batch_requests"))
    assert stored == expected
    assert query(db_path, "SELECT DISTINCT state FROM batch_files") == [("complete",)]


@pytest.mark.parametrize(
    "entry",
    [["-m", "crawler"], ["-c", "import sys; from crawler.launch import main; sys.exit(main())"]],
    ids=["python -m crawler", "the batch-crawler script"],
)
def test_ctrl_c_while_the_command_loads_ends_with_one_line(
    tmp_path: Path, entry: list[str]
) -> None:
    """Ctrl-C in the half second the command's modules take to load: exit 130 and one line,
    no traceback. An aiohttp that raises KeyboardInterrupt as it loads stands in for it."""
    shadow = tmp_path / "shadow" / "aiohttp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise KeyboardInterrupt\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, *entry, "status", "--db", str(tmp_path / "b.db")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert (done.returncode, done.stderr) == (130, "batch-crawler: interrupted\n")
