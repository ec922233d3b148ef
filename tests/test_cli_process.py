"""The real `batch-crawler` process against the fake API: kill -9 at random moments, bad keys."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crawler.fakeapi import FakeApiOptions, FakeApiServer

from .exact import assert_database_matches

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    """3,000 batches (30 pages) answered after 10 ms each, so a walk takes a while."""
    async with FakeApiServer(FakeApiOptions(batches=3000, latency=0.01)) as running:
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
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


def ledger(db: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT mode, outcome, pages FROM sync_runs ORDER BY id").fetchall()


def stored_cursor(db: Path) -> str | None:
    if not db.exists():
        return None
    with sqlite3.connect(db) as conn:
        try:
            row = conn.execute("SELECT cursor FROM walk_state").fetchone()
        except sqlite3.OperationalError:  # killed before the schema was committed
            return None
    return None if row is None else row[0]


async def wait_for_first_page(db: Path) -> None:
    """Poll until a sync has committed a page (bounded: 10 s)."""
    for _ in range(500):
        if stored_cursor(db) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no page was committed within 10 s")


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
    kills = 0
    resumed_from_cursor = 0
    for _ in range(5):
        cursor_before = stored_cursor(db_path)
        # --full: a finished walk is walked again, so that every run is long enough to kill.
        proc = await start_cli(server, "sync", "--db", str(db_path), "--full", "-q")
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        await proc.wait()
        if cursor_before is not None:
            resumed_from_cursor += 1
    code, output = await run_cli(server, "sync", "--db", str(db_path))
    assert code == 0, output
    assert_database_matches(db_path, server.data.snapshot())
    runs = ledger(db_path)
    assert kills >= 3
    assert resumed_from_cursor >= 1
    assert any(mode == "resume" for mode, _, _ in runs)
    assert_no_walk_restarted_from_the_top(runs, pages=30)


async def test_sigterm_is_recorded_as_interrupted_and_resumed(
    server: FakeApiServer, db_path: Path
) -> None:
    """SIGTERM ends the run cleanly (exit 143, ledger 'interrupted'); the next run resumes."""
    proc = await start_cli(server, "sync", "--db", str(db_path), "-q")
    await wait_for_first_page(db_path)
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 143, err
    assert b"the next sync resumes" in err
    assert ledger(db_path)[0][1] == "interrupted"
    code, output = await run_cli(server, "sync", "--db", str(db_path))
    assert code == 0, output
    assert "[resume]" in output
    assert_database_matches(db_path, server.data.snapshot())


async def test_a_second_sync_on_a_busy_database_refuses_at_once(db_path: Path) -> None:
    """While one sync runs, another exits 4 at once and touches nothing; readers see pages."""
    async with FakeApiServer(FakeApiOptions(batches=3000, latency=0.1)) as server:
        first = await start_cli(server, "sync", "--db", str(db_path), "-q")
        await wait_for_first_page(db_path)
        with sqlite3.connect(db_path) as reader:
            (seen,) = reader.execute("SELECT count(*) FROM batches").fetchone()
        assert seen >= 100  # whole pages, committed by the running sync
        code, output = await run_cli(server, "sync", "--db", str(db_path))
        first.kill()
        await first.wait()
    assert code == 4
    assert "another sync is writing" in output
    assert len(ledger(db_path)) == 1


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
