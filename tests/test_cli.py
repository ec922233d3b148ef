"""The command line in-process: exit codes, one-line errors, summary and status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aioresponses import aioresponses

from crawler.cli import main

from .conftest import API_KEY, BASE_URL, list_body, make_batch


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean environment with a key, pointing at the mocked API."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", BASE_URL)


def serve_three_pages(mock: aioresponses) -> None:
    pages = [[6, 5], [4, 3], [2, 1]]
    after = ""
    for i, numbers in enumerate(pages):
        body = list_body([make_batch(n) for n in numbers], i < len(pages) - 1)
        mock.get(f"{BASE_URL}/batches?limit=2{after}", payload=body)
        after = f"&after={make_batch(numbers[-1])['id']}"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["sync", "--bogus"], "unrecognized arguments: --bogus"),
        (["sync", "--page-size", "0"], "--page-size: must be between 1 and 100"),
        (["sync", "--page-size", "101"], "--page-size: must be between 1 and 100"),
        (["sync", "--page-size", "x"], "--page-size: expected an integer"),
        (["sync", "--max-seconds", "-1"], "--max-seconds: must be positive"),
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
    assert "the next `batch-crawler sync` resumes" in capsys.readouterr().out


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


def test_status_reports_runs_walk_and_counts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """status shows the walk, the counts by status and the last runs; --json too."""
    db = tmp_path / "odd #name?.db"
    with aioresponses() as mock:
        serve_three_pages(mock)
        main(["sync", "--db", str(db), "--page-size", "2", "--max-pages", "2", "-q"])
    assert main(["status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "walk: unfinished, the next sync resumes after" in out
    assert "completed" in out
    assert "partial" in out
    assert main(["status", "--db", str(db), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["batches"] == 4
    assert report["runs"][0]["outcome"] == "partial"
    assert report["walk"]["finished"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "odd #name?.db",
        "odd #name?.db-shm",
        "odd #name?.db-wal",
        "odd #name?.db.lock",
    ]
