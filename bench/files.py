"""Benchmark: storing a batch's output file, ours against the naive way and a download floor.

    python bench/files.py --lines 50000 --runs 3
    python bench/files.py --lines 500 --runs 3 --only ours

Starts the fake API in a process of its own, serving one completed batch whose output file
holds about `--lines` request lines, then runs, alternated and each in a fresh process with
a fresh database:

- ours:  the batch stored as a sync stores it, then its output file fetched by the sync's
         own `FileFetcher` (what `batch-crawler sync --outputs` runs for each file), streamed
         line by line into `batch_requests`;
- naive: what a user would write: the official SDK's `client.files.content(id)` read whole,
         `json.loads` per line, a few fields inserted with sqlite3 and one commit;
- floor: the download alone: the file streamed and its lines counted, nothing kept.

Prints the medians (wall seconds, lines/s, CPU seconds, peak RSS) and the ratios
ours/floor (time) and ours/naive (lines/s), and writes every figure as JSON (`--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Measure the code beside this script, even where an older copy is installed.
sys.path.insert(0, str(ROOT))

from fake_process import API_KEY, start_fake_api  # noqa: E402

from crawler.fake import FakeBatches  # noqa: E402

KINDS = ("ours", "naive", "floor")


BATCHES = 50  # the fake's; one of them, completed, is the batch measured


def pick_batch(lines: int) -> tuple[int, dict[str, Any]]:
    """A completed batch of the fake's with an output file: its index and the object."""
    data = FakeBatches(BATCHES, 0, requests_per_batch=lines)
    for i in range(BATCHES):
        batch = data.batch(i)
        if batch["status"] == "completed" and batch.get("output_file_id"):
            return i, batch
    raise SystemExit("no completed batch with an output file among the fake's")


# Workers: each runs in its own process and prints {"seconds", "lines"}.


async def run_ours(base_url: str, db: Path, batch: dict[str, Any]) -> dict[str, Any]:
    """The product's file path alone: the batch stored as a sync stores it, then its
    output file fetched by the sync's FileFetcher into `batch_requests`."""
    from crawler import Settings
    from crawler.api import ApiClient, RetryPolicy, create_session
    from crawler.request_files import FileFetcher, FileOutcome
    from crawler.rows import build_file_rows, build_page_rows
    from crawler.runs import RunFigures
    from crawler.store import open_store

    settings = Settings(db=db, base_url=base_url, api_key=API_KEY, outputs=True)
    async with open_store(db) as store, create_session(settings) as session:
        run_id = await store.start_run("full", base_url)
        rows, errors = build_page_rows([batch], 1)
        files = [row for row in build_file_rows([batch]) if row[2] == "output"]
        await store.save_page(rows, errors, None, run_id, RunFigures(), (), files)
        client = ApiClient(session, base_url, retry=RetryPolicy(), secret=API_KEY)
        lines = 0

        async def done(outcome: FileOutcome) -> None:
            nonlocal lines
            assert outcome.read is not None, outcome
            lines = outcome.read.lines
            await store.finish_file(
                outcome.file, outcome.state, run_id, RunFigures(), **outcome.record()
            )

        fetcher = FileFetcher(
            client,
            store,
            kinds=("output",),
            keep_body=False,
            concurrency=1,
            on_outcome=done,
            time_left=lambda: None,
            secret=API_KEY,  # as a sync runs it: every line is searched for the key
        )
        fetcher.walk_ended(complete=True)
        started = time.perf_counter()
        await fetcher.run()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "lines": lines}


NAIVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    custom_id TEXT PRIMARY KEY, status_code INTEGER, finish_reason TEXT, total_tokens INTEGER
)
"""


async def run_naive(base_url: str, db: Path, batch: dict[str, Any]) -> dict[str, Any]:
    """The SDK's file content read whole, parsed line by line, inserted with sqlite3."""
    from openai import AsyncOpenAI

    started = time.perf_counter()
    conn = sqlite3.connect(db)
    conn.execute(NAIVE_SCHEMA)
    async with AsyncOpenAI(base_url=base_url, api_key=API_KEY) as client:
        content = await client.files.content(batch["output_file_id"])
        rows = []
        for line in content.text.splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            body = (record.get("response") or {}).get("body") or {}
            choices = body.get("choices") or [{}]
            rows.append(
                (
                    record["custom_id"],
                    (record.get("response") or {}).get("status_code"),
                    choices[0].get("finish_reason"),
                    (body.get("usage") or {}).get("total_tokens"),
                )
            )
    conn.executemany("INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return {"seconds": time.perf_counter() - started, "lines": len(rows)}


async def run_floor(base_url: str, db: Path, batch: dict[str, Any]) -> dict[str, Any]:
    """The least storing a file can cost: its bytes read as they come, lines counted."""
    import aiohttp

    started = time.perf_counter()
    lines = 0
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{base_url}/files/{batch['output_file_id']}/content") as resp,
    ):
        async for chunk in resp.content.iter_chunked(2**18):
            lines += chunk.count(b"\n")
    return {"seconds": time.perf_counter() - started, "lines": lines}


WORKERS = {"ours": run_ours, "naive": run_naive, "floor": run_floor}


# The driver.


def measure(kind: str, base_url: str, index: int, requests: int, workdir: Path) -> dict[str, Any]:
    """Run one worker process; its own timing plus CPU and peak RSS from wait4()."""
    db = workdir / f"{kind}.db"
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    command = [sys.executable, __file__, "--worker", kind, "--base-url", base_url]
    command += ["--lines", str(requests)]
    proc = subprocess.Popen(
        [*command, "--db", str(db), "--batch", str(index)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{kind} failed with exit code {os.waitstatus_to_exitcode(status)}")
    figures: dict[str, Any] = json.loads(output)
    figures["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    figures["lines_per_second"] = figures["lines"] / figures["seconds"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=50_000, help="requests in the batch")
    parser.add_argument("--runs", type=int, default=3, help="alternated runs of each kind")
    parser.add_argument("--only", default=",".join(KINDS), help="comma-separated kinds to run")
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        batch = FakeBatches(BATCHES, 0, requests_per_batch=args.lines).batch(args.batch)
        figures = asyncio.run(WORKERS[args.worker](args.base_url, args.db, batch))
        print(json.dumps(figures))
        return

    kinds = [k for k in args.only.split(",") if k]
    index, batch = pick_batch(args.lines)
    lines = batch["request_counts"]["completed"]
    print(f"one output file of {lines:,} request lines ({batch['output_file_id']})")
    server, base_url = start_fake_api(
        "--batches", str(BATCHES), "--requests-per-batch", str(args.lines)
    )
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(args.runs):
                order = kinds if n % 2 == 0 else kinds[::-1]
                for kind in order:
                    figures = measure(kind, base_url, index, args.lines, Path(tmp))
                    if figures["lines"] != lines:
                        raise SystemExit(f"{kind} stored {figures['lines']} of {lines} lines")
                    runs[kind].append(figures)
                    print(
                        f"run {n + 1} {kind:<6} {figures['seconds']:7.2f} s "
                        f"{figures['lines_per_second']:>9,.0f} lines/s "
                        f"cpu {figures['cpu_seconds']:6.2f} s rss {figures['peak_rss_mb']:6.1f} MB"
                    )
    finally:
        server.terminate()
        server.wait()
    keys = ("seconds", "lines_per_second", "cpu_seconds", "peak_rss_mb")
    medians = {
        kind: {key: statistics.median(r[key] for r in results) for key in keys}
        for kind, results in runs.items()
    }
    print(f"\n{lines:,} request lines, medians")
    print(f"{'':<8}{'wall s':>9}{'lines/s':>12}{'CPU s':>9}{'peak RSS MB':>13}")
    for kind, m in medians.items():
        print(
            f"{kind:<8}{m['seconds']:>9.2f}{m['lines_per_second']:>12,.0f}"
            f"{m['cpu_seconds']:>9.2f}{m['peak_rss_mb']:>13.1f}"
        )
    if "ours" in medians and "floor" in medians:
        ratio = medians["ours"]["seconds"] / medians["floor"]["seconds"]
        print(f"ours / floor (time):     {ratio:.2f}")
    if "ours" in medians and "naive" in medians:
        speedup = medians["ours"]["lines_per_second"] / medians["naive"]["lines_per_second"]
        print(f"ours / naive (lines/s):  {speedup:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"lines": lines, "runs": runs, "medians": medians}))


if __name__ == "__main__":
    main()
