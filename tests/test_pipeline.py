"""batch-crawler in a pipeline: JSON logs, the result on stdout, exit codes by kind, events
for embedding programs, and the list as an async iterator. Real processes and the real
client against the fake API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from crawler import Event, iter_batches, iter_pages, sync
from crawler.api import RetryPolicy
from crawler.cli import main
from crawler.config import Settings
from crawler.errors import (
    EXIT_TRANSIENT,
    AuthenticationError,
    ConfigError,
    DatabaseBusyError,
    PaginationError,
    ServerError,
)
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.runs import FIGURE_COLUMNS

from .test_cli_process import wait_for_pages
from .waits import HANG_GUARD, until

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-proj-" + "Pipe1ineKey" * 6
FAST = RetryPolicy(max_attempts=10, max_seconds=30, initial_backoff=0, max_backoff=0)
FLAKY = {"error_rate": 0.15, "rate_limit_rate": 0.1, "drop_rate": 0.05}


async def run_cli(
    server: FakeApiServer, *args: str, key: str = KEY, **env: str
) -> tuple[int, str, str]:
    """The exit code, stdout and stderr of `python -m crawler ARGS` against `server`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        *args,
        cwd=ROOT,
        env={**os.environ, "OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.base_url, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=HANG_GUARD)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` parsed as a JSON log object; fails on any other line."""
    events = [json.loads(line) for line in text.splitlines()]
    for event in events:
        assert isinstance(event, dict)
        assert {"ts", "level", "event"} <= event.keys(), event
        assert event["ts"].endswith("Z")
    return events


def ledger_row(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM sync_runs ORDER BY id DESC").fetchone())


async def test_a_flaky_sync_logs_only_json_lines_and_its_last_figures_are_the_ledgers(
    db_path: Path,
) -> None:
    """`sync --log-format json --json` under faults: stderr is JSON lines (retries, pages,
    files, the end), stdout one JSON result; both agree with the ledger; no key anywhere."""
    options = FakeApiOptions(batches=600, seed=5, api_key=KEY, **FLAKY)
    async with FakeApiServer(options) as server:
        code, out, err = await run_cli(
            server, "sync", "--db", str(db_path), "--log-format", "json", "--json"
        )
    assert code == 0, err
    assert KEY[:16] not in out + err
    events = json_lines(err)
    names = [e["event"] for e in events]
    assert names[0] == "run_started"
    assert names[-1] == "run_finished"
    assert {"retry", "rate_limited", "page_committed", "file_stored"} <= set(names)
    ledger = ledger_row(db_path)
    finished = events[-1]
    assert finished["outcome"] == ledger["outcome"] == "complete"
    assert {c: finished[c] for c in FIGURE_COLUMNS} == {c: ledger[c] for c in FIGURE_COLUMNS}
    retried = sum(n in {"retry", "rate_limited"} for n in names)
    assert retried == ledger["retries"] > 0
    pages = [e for e in events if e["event"] == "page_committed"]
    assert pages[-1]["pages"] == ledger["pages"] == 6
    assert sum(e["event"] == "file_stored" for e in events) == ledger["files"]
    result = json.loads(out)
    assert {c: result[c] for c in FIGURE_COLUMNS} == {c: ledger[c] for c in FIGURE_COLUMNS}
    assert (result["run_id"], result["outcome"]) == (ledger["id"], "complete")


async def test_retries_running_out_exit_with_the_transient_code(
    db_path: Path, tmp_path: Path
) -> None:
    """A server failing every request: exit 75, and run_failed says a retry may help."""
    config = tmp_path / "sync.toml"
    config.write_text("max_attempts = 2\nlog_format = 'json'\n")
    async with FakeApiServer(FakeApiOptions(batches=10, api_key=KEY, error_rate=1.0)) as server:
        code, out, err = await run_cli(
            server, "sync", "--db", str(db_path), "--config", str(config)
        )
    assert code == EXIT_TRANSIENT == 75
    assert out == ""
    events = json_lines(err)
    assert [e["event"] for e in events] == ["run_started", "retry", "run_failed"]
    failed = events[-1]
    assert failed["retryable"] is True
    assert failed["exit_code"] == 75
    assert failed["failure_type"] == "transient_error"
    assert failed["error_kind"] == "ServerError"
    assert ledger_row(db_path)["outcome"] == "failed"


async def test_a_refused_key_exits_1_as_a_config_error_that_retrying_cannot_fix(
    db_path: Path,
) -> None:
    """A 401 in text and in JSON: exit 1, one line, a config_error an orchestrator does not
    retry."""
    wrong = "sk-proj-" + "WrongKeyWrongKey" * 4
    async with FakeApiServer(FakeApiOptions(batches=10, api_key=KEY)) as server:
        code, _, err = await run_cli(server, "sync", "--db", str(db_path), key=wrong)
        json_code, _, json_err = await run_cli(
            server, "sync", "--db", str(db_path), key=wrong, BATCH_CRAWLER_LOG_FORMAT="json"
        )
    assert code == json_code == 1
    assert err.startswith("batch-crawler: ")
    assert err.count("\n") == 1
    failed = json_lines(json_err)[-1]
    assert failed["event"] == "run_failed"
    assert (failed["retryable"], failed["failure_type"]) == (False, "config_error")
    assert failed["error_kind"] == "AuthenticationError"
    assert wrong[:16] not in err + json_err


async def test_a_bad_setting_in_json_is_one_run_failed_line(db_path: Path) -> None:
    """A setting refused before any run still ends a JSON log with its run_failed line; a bad
    log format in the environment is said in words."""
    async with FakeApiServer(FakeApiOptions(batches=10, api_key=KEY)) as server:
        code, out, err = await run_cli(
            server, "sync", "--db", str(db_path), "--log-format", "json", OPENAI_BASE_URL="ftp://x"
        )
        env_code, _, env_err = await run_cli(
            server, "status", "--db", str(db_path), BATCH_CRAWLER_LOG_FORMAT="xml"
        )
    assert (code, out) == (2, "")
    [failed] = json_lines(err)
    assert failed["event"] == "run_failed"
    assert failed["failure_type"] == "config_error"
    assert failed["exit_code"] == 2
    assert "base_url" in failed["message"]
    assert env_code == 2
    assert (
        env_err
        == 'batch-crawler: BATCH_CRAWLER_LOG_FORMAT: expected one of text, json, got "xml"\n'
    )


async def test_a_budget_cut_run_finishes_partial_in_the_log(db_path: Path) -> None:
    """--max-pages: page_committed every ten pages and for the last, and run_finished says
    partial."""
    async with FakeApiServer(FakeApiOptions(batches=3000, api_key=KEY)) as server:
        code, out, err = await run_cli(
            server, "sync", "--db", str(db_path), "--max-pages", "12", "--log-format", "json",
            "--no-files", "-q",
        )  # fmt: skip
    assert (code, out) == (3, "")
    events = json_lines(err)
    pages = [e["pages"] for e in events if e["event"] == "page_committed"]
    assert pages == [10, 12], "every ten pages, and the last"
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["outcome"] == "partial"


async def test_an_embedding_program_receives_the_same_events(db_path: Path) -> None:
    """on_event gets every event the JSON log shows, run_finished last; a failing run ends
    with run_failed."""
    received: list[Event] = []
    async with FakeApiServer(FakeApiOptions(batches=250, seed=2, api_key=KEY, **FLAKY)) as server:
        settings = Settings(db=db_path, base_url=server.base_url, api_key=KEY)
        result = await sync(settings, retry=FAST, on_event=received.append)
    names = [e.name for e in received]
    assert names[0] == "run_started"
    assert names[-1] == "run_finished"
    assert received[-1].fields["batches_seen"] == result.batches_seen == 250
    assert sum(n in {"retry", "rate_limited"} for n in names) == result.retries
    assert all(e.level == "warning" for e in received if e.name in {"retry", "rate_limited"})

    failing: list[Event] = []
    with pytest.raises(ConfigError):
        await sync(Settings(db=db_path), on_event=failing.append)
    assert [e.name for e in failing] == ["run_failed"]
    assert failing[0].fields["exit_code"] == 2


async def test_iter_batches_yields_exactly_the_served_batches_under_faults() -> None:
    """Retried through 5xx, 429, drops and cut bodies, the stream holds each batch once, in
    order."""
    options = FakeApiOptions(batches=2345, seed=9, api_key=KEY, truncate_rate=0.05, **FLAKY)
    async with FakeApiServer(options) as server:
        settings = Settings(base_url=server.base_url, api_key=KEY)
        retries: list[Event] = []
        batches = [b async for b in iter_batches(settings, retry=FAST, on_event=retries.append)]
        served = list(server.data.snapshot())
    assert batches == served
    assert retries
    assert {e.name for e in retries} <= {"retry", "rate_limited", "warning"}


async def test_iter_pages_starts_after_a_cursor_and_guards_the_chain() -> None:
    """`after` continues a walk; a stuck cursor raises as the sync's walk does."""
    async with FakeApiServer(FakeApiOptions(batches=250, api_key=KEY)) as server:
        settings = Settings(base_url=server.base_url, api_key=KEY)
        ids = [b["id"] for b in server.data.snapshot()]
        pages = [p async for p in iter_pages(settings, after=ids[99])]
    assert [len(p.batches) for p in pages] == [100, 50]
    assert [b["id"] for p in pages for b in p.batches] == ids[100:]
    options = FakeApiOptions(batches=500, api_key=KEY, broken_pagination="stuck-cursor")
    async with FakeApiServer(options) as server:
        settings = Settings(base_url=server.base_url, api_key=KEY)
        with pytest.raises(PaginationError) as stuck:
            [p async for p in iter_pages(settings)]
    assert "committed" not in str(stuck.value)  # a stream commits nothing


async def test_iter_batches_without_a_key_says_which_variable() -> None:
    """No key: the same one-line ConfigError as sync, before any request."""
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        [b async for b in iter_batches(Settings())]


def test_exit_codes_follow_what_a_retry_can_do() -> None:
    """75 where a later run may pass, 1 where a person must look; the server's x-should-retry
    counts."""
    assert ServerError("HTTP 503").exit_code == EXIT_TRANSIENT
    assert ServerError("HTTP 503", should_retry=False).exit_code == 1
    assert AuthenticationError("HTTP 401").exit_code == 1
    asked_again = AuthenticationError("HTTP 401", should_retry=True)
    assert (asked_again.exit_code, asked_again.failure_type) == (75, "transient_error")
    assert PaginationError("loop").exit_code == 1
    busy = DatabaseBusyError("busy")
    assert (busy.exit_code, busy.retryable, busy.failure_type) == (4, True, "transient_error")


async def test_sigterm_in_json_ends_the_log_with_an_interrupted_run(db_path: Path) -> None:
    """SIGTERM mid-walk: the log ends with run_finished `interrupted`, then a warning with
    the exit code, every line JSON."""
    async with FakeApiServer(FakeApiOptions(batches=3000, api_key=KEY)) as server:
        server.hold_list_requests(after=2)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crawler", "sync", "--db", str(db_path),
            "--log-format", "json", "--no-files",
            cwd=ROOT,
            env={**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await wait_for_pages(proc, db_path, 0, 2)
        await until(lambda: server.stats.held == 1)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=HANG_GUARD)
        server.release_list_requests()
    assert proc.returncode == 143, err
    assert out == b""
    *_, finished, stopped = json_lines(err.decode())
    assert (finished["event"], finished["outcome"], finished["pages"]) == (
        "run_finished",
        "interrupted",
        2,
    )
    assert (stopped["event"], stopped["exit_code"]) == ("warning", 143)
    assert ledger_row(db_path)["outcome"] == "interrupted"


async def test_an_incremental_run_tells_what_its_refresh_did(db_path: Path) -> None:
    """refresh_done carries the by-id figures of the run, and its account."""
    async with FakeApiServer(FakeApiOptions(batches=400, seed=3, api_key=KEY)) as server:
        settings = Settings(db=db_path, base_url=server.base_url, api_key=KEY, files=False)
        await sync(settings, retry=FAST)
        events: list[Event] = []
        result = await sync(settings, retry=FAST, on_event=events.append)
    assert result.mode == "incremental"
    assert result.refreshed_by_id > 0
    [refresh] = [e for e in events if e.name == "refresh_done"]
    assert refresh.fields == {
        "account": "default",
        "refreshed_by_id": result.refreshed_by_id,
        "gone": 0,
        "not_refreshed": 0,
    }


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["sync", "--page-size", "1000", "--log-format", "json"], {}),
        (["sync", "--log-format=json", "--no-such-flag"], {}),
        (["sync", "--no-such-flag"], {"BATCH_CRAWLER_LOG_FORMAT": " JSON"}),
    ],
    ids=["bad-value", "unknown-flag", "from-the-environment"],
)
def test_a_bad_flag_of_a_run_logging_json_is_said_in_json(
    argv: list[str],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """argparse's own errors, before logging is set up, are one run_failed line too."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    [failed] = json_lines(capsys.readouterr().err)
    assert (failed["event"], failed["failure_type"], failed["exit_code"]) == (
        "run_failed",
        "config_error",
        2,
    )
    assert "error:" in failed["message"]


def test_the_environments_log_format_is_read_as_dlt_spells_it(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`JSON`, or with spaces around: both the sync and the other commands read it."""
    monkeypatch.setenv("BATCH_CRAWLER_LOG_FORMAT", " JSON ")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["sync", "--db", str(db_path)]) == 2
    [failed] = json_lines(capsys.readouterr().err)
    assert failed["message"].startswith("no API key")
