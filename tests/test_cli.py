"""The command line in-process: exit codes, one-line errors, summary and status."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from crawler import cli, report, status
from crawler.cli import main
from crawler.fake import FakeApiOptions, FakeApiServer
from crawler.logs import configure_logging

from .conftest import API_KEY, BASE_URL, list_body, make_batch, serve_the_end


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean environment with a key, pointing at the mocked API."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", BASE_URL)


def serve_three_pages(mock: aioresponses, statuses: dict[int, str] | None = None) -> None:
    """Batches 6 to 1, two a page; `statuses` overrides some batches' "completed"."""
    pages = [[6, 5], [4, 3], [2, 1]]
    after = ""
    statuses = statuses or {}
    for i, numbers in enumerate(pages):
        batches = [make_batch(n, status=statuses.get(n, "completed")) for n in numbers]
        body = list_body(batches, i < len(pages) - 1)
        mock.get(f"{BASE_URL}/batches?limit=2{after}", payload=body)
        after = f"&after={make_batch(numbers[-1])['id']}"
    serve_the_end(mock, make_batch(1))


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["sync", "--bogus"], "unrecognized arguments: --bogus"),
        (["sync", "--page-size", "0"], "--page-size: must be between 1 and 100"),
        (["sync", "--page-size", "101"], "--page-size: must be between 1 and 100"),
        (["sync", "--page-size", "x"], "--page-size: expected an integer"),
        (["sync", "--max-seconds", "-1"], "--max-seconds: must be a positive number of seconds"),
        (["sync", "--max-seconds", "inf"], "--max-seconds: expected a finite number"),
        # The command line follows the config file's rules: 1..64, not merely positive.
        (["sync", "--concurrency", "65"], "--concurrency: must be between 1 and 64, got 65"),
        (["sync", "--requests-per-minute", "0"], "--requests-per-minute: must be at least 1"),
        (["sync", "--requests-per-minute", "1e-300"], "--requests-per-minute: must be at least 1"),
        (["nope"], "invalid choice: 'nope'"),
        (["fake-api", "--port", "99999"], "--port: must be between 0 and 65535"),
        (["fake-api", "--requests-per-second", "inf"], "expected a finite number"),
        (["fake-api", "--latency", "nan"], "expected a finite number"),
        (["fake-api", "--error-rate", "2"], "--error-rate: must be a share from 0 to 1"),
        (["demo", "--batches", "0"], "--batches: must be at least 1"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    """Bad flags and values give one line on stderr and exit code 2."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    code = exited.value.code
    assert code == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1


def test_bad_url_from_flag_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A URL that is not http(s) is refused before anything runs."""
    assert main(["sync", "--db", str(tmp_path / "b.db"), "--base-url", "ftp://x"]) == 2
    assert capsys.readouterr().err.startswith("batch-crawler: base_url:")
    assert not (tmp_path / "b.db").exists()


def test_missing_key_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No key in the environment: one line naming the variable, exit 2."""
    monkeypatch.delenv("OPENAI_API_KEY")
    assert main(["sync", "--db", str(tmp_path / "b.db")]) == 2
    err = capsys.readouterr().err
    assert "no API key: set OPENAI_API_KEY" in err
    assert err.count("\n") == 1


def test_bad_config_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An invalid config value is named with its file."""
    config = tmp_path / "c.toml"
    config.write_text("page_size = 1000\n")
    assert main(["sync", "--config", str(config)]) == 2
    assert "page_size: must be between 1 and 100" in capsys.readouterr().err


def test_sync_prints_a_summary_and_exits_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A complete sync prints its figures on stdout."""
    db = tmp_path / "b.db"
    with aioresponses() as mock:
        serve_three_pages(mock)
        assert main(["sync", "--db", str(db), "--page-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "Synced: 3 pages, 6 batches (6 new, 0 updated)" in out
    assert API_KEY not in out


def test_quiet_sync_prints_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--quiet prints nothing on success."""
    with aioresponses() as mock:
        serve_three_pages(mock)
        assert main(["sync", "--db", str(tmp_path / "b.db"), "--page-size", "2", "-q"]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


def test_page_budget_exits_3_and_says_how_to_go_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--max-pages stops early with the 'partial' exit code."""
    with aioresponses() as mock:
        serve_three_pages(mock)
        argv = ["sync", "--db", str(tmp_path / "b.db"), "--page-size", "2", "--max-pages", "1"]
        assert main(argv) == 3
    summary, advice = capsys.readouterr().out.splitlines()
    assert summary.startswith(
        "Partly synced: 1 pages, 2 batches (2 new, 0 updated), 0 error lines, 0 retries, "
    )
    assert summary.endswith(" s [full]")
    assert advice == (
        "Stopped early (a budget spent, files failing one after the other, or the list after "
        "where the walk stopped: see the warnings); the next "
        "`batch-crawler sync` resumes where this one stopped."
    )


def test_wrong_key_exits_1_with_the_api_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A 401 gives the API's own message, without the key, and exit 1."""
    with aioresponses() as mock:
        mock.get(
            f"{BASE_URL}/batches?limit=100",
            status=401,
            payload={
                "error": {"message": f"Incorrect API key {API_KEY}", "code": "invalid_api_key"}
            },
        )
        assert main(["sync", "--db", str(tmp_path / "b.db")]) == 1
    err = capsys.readouterr().err
    assert "invalid_api_key" in err
    assert API_KEY not in err


def test_status_without_a_database_exits_4(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """status on a missing file says to sync first and creates nothing."""
    assert main(["status", "--db", str(tmp_path / "none.db")]) == 4
    assert "run `batch-crawler sync` first" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def by_status(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM batches GROUP BY status"))


def test_status_reports_runs_walk_and_counts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """status shows the walk, each status's count as stored, and the last runs; --json too."""
    db = tmp_path / "odd #name?.db"
    with aioresponses() as mock:
        serve_three_pages(mock, {6: "failed", 5: "in_progress", 3: "failed"})
        main(["sync", "--db", str(db), "--page-size", "2", "--max-pages", "2", "-q"])
    stored = by_status(db)
    assert stored == {"failed": 2, "in_progress": 1, "completed": 1}
    assert main(["status", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        f"database: {db}",
        f"walk: unfinished, the next sync resumes after {make_batch(3)['id']}",
        "batches: 4  error lines: 0",
    ]
    table = lines[3 : lines.index("request lines: 0")]
    # Output files are recorded for the finished batches, fetched once outputs are on.
    assert lines[lines.index("request lines: 0") + 1] == "  output files: to fetch 3"
    counts = [re.fullmatch(r"  (\S+) +([\d,]+)", line) for line in table]
    assert all(counts), table
    shown = {m[1]: int(m[2].replace(",", "")) for m in counts if m}
    assert shown == stored
    assert list(shown.values()) == sorted(shown.values(), reverse=True)
    assert len({len(line) for line in table}) == 1  # the counts line up on the right
    (run,) = lines[lines.index("last runs:") + 1 :]
    assert re.fullmatch(
        r"  #1 \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ full +partial +pages 2  batches 4 "
        r"\(new 4, updated 0\)  by id 0  retries 0",
        run,
    ), run
    assert main(["status", "--db", str(db), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["batches"], report["error_lines"], report["by_status"]) == (4, 0, stored)
    assert (report["files"], report["request_lines"]) == ({"output": {"pending": 3}}, 0)
    assert report["walk"] == {
        "cursor": make_batch(3)["id"],
        "stop_id": None,
        "head_id": make_batch(6)["id"],
        "finished": False,
        "pages_past_stop": None,
        "end_unchecked": False,
        "holder": [make_batch(5)["id"]],
        "top": None,
    }
    (first_run,) = report["runs"]
    assert {
        k: first_run[k] for k in ("mode", "outcome", "pages", "batches_seen", "batches_new")
    } == {
        "mode": "full",
        "outcome": "partial",
        "pages": 2,
        "batches_seen": 4,
        "batches_new": 4,
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "odd #name?.db",
        "odd #name?.db-shm",
        "odd #name?.db-wal",
        "odd #name?.db.lock",
    ]


def test_a_time_budget_exits_3_and_the_next_sync_continues(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--max-seconds spent by the first page: exit 3 after it; the next sync walks the rest."""
    db = tmp_path / "b.db"
    with aioresponses() as mock:
        serve_three_pages(mock)
        # A nanosecond: whatever the machine, the first page takes longer than that.
        assert main(["sync", "--db", str(db), "--page-size", "2", "--max-seconds", "1e-9"]) == 3
    out = capsys.readouterr().out
    assert out.startswith("Partly synced: 1 pages, 2 batches (2 new, 0 updated), ")
    assert out.endswith(
        "Stopped early (a budget spent, files failing one after the other, or the list after "
        "where the walk stopped: see the warnings); the next "
        "`batch-crawler sync` resumes where this one stopped.\n"
    )
    with aioresponses() as mock:
        serve_three_pages(mock)  # the rest, then the top again down to the first head
        assert main(["sync", "--db", str(db), "--page-size", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Synced: 3 pages, 6 batches (4 new, 0 updated), ")
    assert out.endswith(" s [resume]\n")
    assert by_status(db) == {"completed": 6}


class Tty(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "--quiet"])
def test_on_a_terminal_sync_draws_a_progress_line_then_erases_it(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    quiet: bool,
) -> None:
    """On a terminal stderr the figures show on one line, blanked before the summary; -q: none."""
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    argv = ["sync", "--db", str(tmp_path / "b.db"), "--page-size", "2"]
    with aioresponses() as mock:
        serve_three_pages(mock)
        assert main(argv + ["-q"] * quiet) == 0
    out = capsys.readouterr().out
    if quiet:
        assert (tty.getvalue(), out) == ("", "")
        return
    drawn = re.fullmatch(r"((?:\rpages [^\r]*)+)\r( +)\r", tty.getvalue())
    assert drawn, repr(tty.getvalue())
    lines = drawn[1].split("\r")[1:]
    assert lines[0].startswith("pages 1  batches 2  ")
    assert len(drawn[2]) == len(lines[-1].rstrip()), "the erase covers the last line"
    assert out.startswith("Synced: 3 pages, 6 batches ")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The root logger as it was, after a test configures it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize(
    ("json_lines", "quiet", "progress_line", "shown"),
    [
        (False, False, False, {"renewal", "retry"}),
        (False, False, True, {"renewal"}),  # the progress line tells the retries
        (True, False, False, {"renewal"}),  # `retry` events tell them
        (True, True, False, {"renewal"}),
        (False, True, False, set()),
    ],
    ids=["text", "a progress line", "json", "json --quiet", "--quiet"],
)
def test_without_v_the_runs_own_warnings_are_logged_and_no_others(
    capsys: pytest.CaptureFixture[str],
    json_lines: bool,
    quiet: bool,
    progress_line: bool,
    shown: set[str],
) -> None:
    """The run's own warnings (an Entra ID renewal failing) were left out of a JSON log and
    from under a progress line; other libraries' warnings and info lines stay out."""
    configure_logging(0, json_lines=json_lines, quiet=quiet, progress_line=progress_line)
    logging.getLogger("crawler.entra").warning("renewal")
    logging.getLogger("crawler.api").warning("retry")
    logging.getLogger("aiohttp.client").warning("theirs")
    logging.getLogger("crawler.walk").info("info")
    err = capsys.readouterr().err
    assert {word for word in ("renewal", "retry", "theirs", "info") if word in err} == shown


# `batch-crawler status | head -0`: the reader is gone before anything is written.


ROOT = Path(__file__).resolve().parent.parent


def run_into_a_closed_pipe(*argv: str) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m crawler argv` with a stdout whose reading end is already closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "crawler", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["table", "json"])
def test_status_into_a_closed_pipe_exits_0_without_a_traceback(
    tmp_path: Path, extra: list[str]
) -> None:
    """When stdout's reader has gone, status stops quietly: exit 0, nothing on stderr."""
    db = tmp_path / "b.db"
    with aioresponses() as mock:
        serve_three_pages(mock)
        assert main(["sync", "--db", str(db), "--page-size", "2", "-q"]) == 0
    done = run_into_a_closed_pipe("status", "--db", str(db), *extra)
    assert (done.returncode, done.stderr.decode()) == (0, "")


async def test_a_partial_sync_into_a_closed_pipe_still_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync --max-pages 1 | head -0` keeps the partial exit code: the next sync must resume."""
    async with FakeApiServer(FakeApiOptions(batches=300)) as server:
        monkeypatch.setenv("OPENAI_API_KEY", server.options.api_key)
        argv = ["sync", "--db", str(tmp_path / "b.db"), "--base-url", server.base_url]
        done = await asyncio.to_thread(run_into_a_closed_pipe, *argv, "--max-pages", "1")
    assert (done.returncode, done.stderr.decode()) == (3, "")


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one line `main(argv)` prints on stderr, once it has exited 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


@pytest.mark.parametrize(
    "pasted",
    [
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "9f8e7d6c5b4a39281706f5e4d3c2b1a0",  # Azure's keys are 32 hexadecimal digits
        "f9e8d7c6b5a4938271605f4e3d2c1b0a",  # ... which may spell a variable's name
    ],
)
def test_a_key_pasted_as_api_key_env_exits_2_without_showing_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pasted: str
) -> None:
    """api_key_env = "<the key>" is refused by name, and the key is not echoed (an Azure
    key was, whole)."""
    config = tmp_path / "c.toml"
    config.write_text(f'provider = "azure"\napi_key_env = "{pasted}"\n')
    base = ["--base-url", "https://example.openai.azure.com/openai/v1"]
    err = refused(capsys, ["sync", "--db", str(tmp_path / "b.db"), "--config", str(config), *base])
    assert "api_key_env" in err
    assert pasted not in err


@pytest.mark.parametrize(
    ("where", "argv_of"),
    [
        ("--page-size", lambda key, config: ["--page-size", key]),
        ("--max-seconds", lambda key, config: ["--max-seconds", key]),
        ("--log-format", lambda key, config: ["--log-format", key]),
        ("--account", lambda key, config: ["--account", key]),
        ("page_size", lambda key, config: ["--config", config(f'page_size = "{key}"')]),
        (
            "[accounts.KEY]",
            lambda key, config: ["--config", config(f'[accounts."{key}"]\napi_key_env = "X"')],
        ),
    ],
)
def test_a_key_pasted_into_any_setting_is_not_shown(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    where: str,
    argv_of: Callable[[str, Callable[[str], str]], list[str]],
) -> None:
    """Each echoed what it refused, the key pasted there too ([accounts."sk-..."] became an
    account so named, shown and stored)."""
    pasted = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"

    def config(text: str) -> str:
        path = tmp_path / "c.toml"
        path.write_text(text + "\n")
        return str(path)

    argv = ["sync", "--db", str(tmp_path / "b.db"), *argv_of(pasted, config)]
    with contextlib.suppress(SystemExit):  # argparse's refusals exit; the config's return 2
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert pasted not in err
    assert "not shown here" in err or "looks like an API key" in err


def test_a_key_shaped_variable_name_is_not_shown_when_unset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A pasted key that happens to be a valid name is refused as no variable's name,
    unshown (it reached "no API key", which said back one spelled as no key is, 90A)."""
    pasted = "gsk_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    config = tmp_path / "c.toml"
    config.write_text(f'api_key_env = "{pasted}"\n')
    argv = ["sync", "--db", str(tmp_path / "b.db"), "--config", str(config)]
    err = refused(capsys, [*argv, "--base-url", "https://api.test/v1"])
    assert "api_key_env: must name the environment variable that holds the key" in err
    assert pasted not in err


def test_credentials_in_the_base_url_exit_2_and_are_never_stored(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """user:password@ is refused before the database is opened, the password unshown."""
    db = tmp_path / "b.db"
    url = "https://user:hunter2@api.test/v1"
    err = refused(capsys, ["sync", "--db", str(db), "--base-url", url])
    assert err.startswith("batch-crawler: base_url: must not hold a user name or password")
    assert "hunter2" not in err
    assert not db.exists()


def test_a_query_in_the_base_url_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A base URL with ?api-version=... is refused, not mangled into a bare 404."""
    url = "https://h.example/v1?api-version=2024-10-21"
    err = refused(capsys, ["sync", "--db", str(tmp_path / "b.db"), "--base-url", url])
    assert "base_url: query parameters (?...) are not supported" in err


def test_plain_http_to_another_host_exits_2_unless_allowed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """http:// to a remote host is refused, and --allow-insecure-http lets it through."""
    remote = "http://api.example/v1"
    argv = ["sync", "--db", str(tmp_path / "b.db"), "--base-url", remote, "--page-size", "2"]
    err = refused(capsys, argv)
    assert "would send the API key in clear text" in err
    assert "--allow-insecure-http" in err
    assert not (tmp_path / "b.db").exists()
    with aioresponses() as mock:
        mock.get(f"{remote}/batches?limit=2", payload=list_body([make_batch(1)], False))
        assert main([*argv, "--allow-insecure-http", "-q"]) == 0


def synced_then_edited(tmp_path: Path, *edits: str) -> Path:
    """A database synced from three pages, then edited by hand with `edits`."""
    db = tmp_path / "b.db"
    with aioresponses() as mock:
        serve_three_pages(mock)
        assert main(["sync", "--db", str(db), "--page-size", "2", "-q"]) == 0
    with sqlite3.connect(db) as conn:
        for edit in edits:
            conn.execute(edit)
    return db


def test_a_walk_state_edited_into_a_blob_is_one_line_and_restart_goes_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A cursor that is not text: exit 4 with what to do; --restart walks from the top."""
    db = synced_then_edited(
        tmp_path,
        "UPDATE walk_state SET cursor = x'00ff', finished = 0",
        "UPDATE batches SET status = x'01' WHERE rowid = 1",
    )
    assert main(["sync", "--db", str(db), "--page-size", "2"]) == 4
    assert main(["status", "--db", str(db)]) == 4
    err = capsys.readouterr().err.splitlines()
    assert (
        err
        == [
            f"batch-crawler: {db}: its walk_state row holds an id that is not text; run "
            "`batch-crawler sync --restart` to walk from the top again"
        ]
        * 2
    )
    with aioresponses() as mock:
        serve_three_pages(mock)
        assert main(["sync", "--db", str(db), "--page-size", "2", "--restart", "-q"]) == 0
    assert main(["status", "--db", str(db)]) == 0
    assert "  (blob)" not in capsys.readouterr().out  # the listing restored its status


def test_a_status_edited_into_a_blob_is_shown_by_its_type(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = synced_then_edited(tmp_path, "UPDATE batches SET status = x'01' WHERE rowid = 1")
    assert main(["status", "--db", str(db)]) == 0
    assert main(["status", "--db", str(db), "--json"]) == 0
    out = capsys.readouterr().out
    assert "  (blob)" in out
    assert '"(blob)": 1' in out


def test_status_masks_the_key_and_reads_odd_ledger_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A cursor a server echoed the key in is shown masked; a start time out of range is
    shown as it is, not a traceback."""
    db = tmp_path / "b.db"
    with aioresponses() as mock:
        serve_three_pages(mock)
        assert main(["sync", "--db", str(db), "--page-size", "2", "-q"]) == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE walk_state SET cursor = ?, finished = 0", (API_KEY,))
        conn.execute("UPDATE sync_runs SET started_at = 10000000000000000")
    assert main(["status", "--db", str(db)]) == 0
    assert main(["status", "--db", str(db), "--json"]) == 0
    out = capsys.readouterr().out
    assert API_KEY not in out
    assert "resumes after ***" in out
    assert "#1 10000000000000000 full" in out


@pytest.mark.parametrize(("command", "resumes"), [("sync", True), ("report", False)])
def test_a_command_stopped_by_a_signal_says_a_sync_resumes_only_for_a_sync(
    capsys: pytest.CaptureFixture[str], command: str, resumes: bool
) -> None:
    """`report --html` to a pipe with no reader, interrupted, said "the next sync resumes"."""
    args = argparse.Namespace(command=command, events=None)
    assert cli._stopped(args, "interrupted", 130) == 130
    said = capsys.readouterr().err
    assert said == (
        "batch-crawler: interrupted; the next sync resumes\n"
        if resumes
        else "batch-crawler: interrupted\n"
    )


def another_batch_committed(db: Path, read: Callable[..., Any]) -> Callable[..., Any]:
    """`read`, after which a batch is committed to `db` (as a sync commits a page)."""

    def reading(conn: sqlite3.Connection, *args: object) -> Any:
        answer = read(conn, *args)
        with contextlib.closing(sqlite3.connect(db)) as writer, writer:
            columns = [row[1] for row in writer.execute("PRAGMA table_info(batches)")]
            shown = ", ".join(columns)
            picked = ", ".join("id || random()" if c == "id" else c for c in columns)
            writer.execute(f"INSERT INTO batches ({shown}) SELECT {picked} FROM batches LIMIT 1")
        return answer

    return reading


def test_status_and_report_read_the_database_as_of_one_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each section was read on its own, a sync committing pages between them: a report's
    spend by model counted 20,000 batches and its outcomes 21,900; a status's accounts
    added up to 300 batches fewer than its own total (pass 72B)."""
    db = tmp_path / "d.db"
    assert main(["demo", "--db", str(db), "--batches", "20"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(
        status, "select_accounts", another_batch_committed(db, status.select_accounts)
    )
    assert main(["status", "--db", str(db), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["batches"] == sum(account["batches"] for account in said["accounts"].values())
    answer = another_batch_committed(db, report.answer_queries)

    def each_answered_apart(conn: sqlite3.Connection, queries: list[Any]) -> list[Any]:
        return [one for query in queries for one in answer(conn, [query])]

    monkeypatch.setattr(report, "answer_queries", each_answered_apart)
    assert main(["report", "--db", str(db), "--json", "--since", "3650d"]) == 0
    by_model, by_day, by_outcome = json.loads(capsys.readouterr().out)["sections"][:3]
    counted = [sum(row["batches"] for row in s["rows"]) for s in (by_model, by_day, by_outcome)]
    assert len(set(counted)) == 1, counted


def test_status_says_each_run_of_a_killed_sync_of_several_accounts_was_killed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the newest run the ledger said was running was shown killed: a sync of two
    accounts killed showed one killed, the other running, with no sync running (72B)."""
    db = tmp_path / "d.db"
    assert main(["demo", "--db", str(db), "--batches", "20", "--accounts"]) == 0
    capsys.readouterr()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE sync_runs SET outcome = 'running'")
    assert main(["status", "--db", str(db), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [run["outcome"] for run in runs] == ["killed"] * len(runs)
    assert len(runs) == 2
