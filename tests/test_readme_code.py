"""The README's Python examples and the files in examples/ run as written, against the fake
API on 127.0.0.1, each in a process of its own as a user would run it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crawler.fake import FakeApiOptions, FakeApiServer

from .waits import HANG_GUARD

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-proj-" + "ReadmeExample0" * 5


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(FakeApiOptions(batches=321, seed=4, api_key=KEY)) as running:
        yield running


async def run(
    server: FakeApiServer, cwd: Path, *argv: str, **env: str
) -> tuple[int | None, str, str]:
    """Run `argv` in `cwd` with the key and base URL of `server` in the environment, and
    this interpreter's scripts (batch-crawler) first on the PATH."""
    scripts = str(Path(sys.executable).parent)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env={
            **os.environ,
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": server.base_url,
            "PATH": scripts + os.pathsep + os.environ.get("PATH", ""),
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=HANG_GUARD)
    return proc.returncode, out.decode(), err.decode()


def test_the_readme_has_python_examples() -> None:
    """The blocks below are found: a README without them would pass every test vacuously."""
    assert len(python_blocks()) >= 3


@pytest.mark.parametrize("number", range(len(python_blocks())))
async def test_each_readme_python_block_runs(
    server: FakeApiServer, tmp_path: Path, number: int
) -> None:
    """Each block runs as written, in a process of its own, and shows what it got, keyless."""
    code, out, err = await run(server, tmp_path, sys.executable, "-c", python_blocks()[number])
    assert code == 0, err
    assert KEY[:16] not in out + err
    assert out.strip(), "each example shows what it got"


async def test_the_library_example_syncs_and_reports_its_events(
    server: FakeApiServer, tmp_path: Path
) -> None:
    """The first library example syncs every batch and prints events as the JSON log would."""
    first = next(b for b in python_blocks() if "on_event=show" in b)
    code, out, err = await run(server, tmp_path, sys.executable, "-c", first)
    assert code == 0, err
    *events, summary = out.splitlines()
    assert json.loads(events[-1])["event"] == "run_finished"
    assert summary == "True 321 0 0"
    with sqlite3.connect(tmp_path / "batches.db") as conn:
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (321,)


async def test_the_cron_example_syncs_once_and_skips_while_another_holds_the_lock(
    server: FakeApiServer, tmp_path: Path
) -> None:
    """cron.sh syncs, skips while the lock is held, and fails loudly only for a person's fault."""
    script = str(ROOT / "examples" / "cron.sh")
    code, out, err = await run(server, tmp_path, "sh", script, BATCH_CRAWLER_DB="b.db")
    assert (code, out) == (0, ""), err
    assert json.loads(err.splitlines()[-1])["event"] == "run_finished"
    # While another holds the lock, a run is skipped and says so.
    holder = await asyncio.create_subprocess_exec(
        "flock", "b.db.cron-lock", "-c", "echo held; read _", cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdin is not None
    assert await holder.stdout.readline() == b"held\n"
    code, out, err = await run(server, tmp_path, "sh", script, BATCH_CRAWLER_DB="b.db")
    holder.stdin.close()
    await holder.wait()
    assert code == 0
    skipped = json.loads(err)
    assert (skipped["event"], skipped["level"]) == ("skipped", "info")
    assert skipped["ts"].endswith("Z")
    # A refused key is not the next run's to get past: the exit code says so.
    code, _, err = await run(
        server, tmp_path, "sh", script, BATCH_CRAWLER_DB="b.db", OPENAI_API_KEY="sk-wrong-key"
    )
    assert code == 1
    assert json.loads(err.splitlines()[-1])["failure_type"] == "config_error"


@pytest.mark.parametrize("example", ["airflow_dag.py", "dagster_asset.py"])
async def test_the_orchestrator_examples_sync_without_their_framework(
    server: FakeApiServer, tmp_path: Path, example: str
) -> None:
    """Without Airflow or Dagster installed, each example imports, and its sync function
    syncs and returns the run's figures."""
    path = str(ROOT / "examples" / example)
    call = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('example', {path!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(json.dumps(module.sync_batches('x.db')))\n"
    )
    code, out, err = await run(server, tmp_path, sys.executable, "-c", call)
    assert code == 0, err
    figures = json.loads(out)
    assert (figures["outcome"], figures["batches_new"]) == ("complete", 321)
