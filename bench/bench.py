"""Benchmark: our sync against the loop a user would write, and against a fetch-only floor.

    python bench/bench.py --batches 50000 --latency 0.02 --runs 3
    python bench/bench.py --batches 200000 --latency 0 --runs 3 --ids random

Starts the fake API in a process of its own, walks it once (uncounted) so that it has
every page rendered, then runs, alternated and each in a fresh process with a fresh database:

- ours:     `crawler.sync` (what `batch-crawler sync` runs);
- baseline: the official SDK's `AsyncOpenAI().batches.list(limit=100)` paged with
            `async for`, upserting into sqlite3 with a commit per page;
- floor:    a fetch-only walk of the same server: ask for each page, read its last id.

`--ids` picks the fake's batch ids: `realistic` (the default) begin with their creation
second, as OpenAI's do; `random` are fully random, the worst case for the primary-key index.

Prints the medians (wall seconds, batches/s, CPU seconds, peak RSS, pages) and the ratios
ours/floor and baseline/ours, and writes every figure as JSON (`--out`), the id style with them.
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

from crawler.fake import ID_STYLES  # noqa: E402

KINDS = ("ours", "baseline", "floor")


# Workers: each runs in its own process and prints {"seconds", "pages", "batches"}.


async def run_ours(base_url: str, db: Path) -> dict[str, Any]:
    from crawler import Settings, sync

    started = time.perf_counter()
    # The list alone: bench/walk_files.py measures the request files.
    result = await sync(Settings(db=db, base_url=base_url, api_key=API_KEY, files=False))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "pages": result.pages, "batches": result.batches_seen}


BASELINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, status TEXT, endpoint TEXT, model TEXT, created_at INTEGER,
    completed_at INTEGER, failed_at INTEGER, request_total INTEGER, request_failed INTEGER,
    total_tokens INTEGER, raw TEXT
)
"""
BASELINE_UPSERT = (
    "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
    "status = excluded.status, completed_at = excluded.completed_at, "
    "failed_at = excluded.failed_at, request_total = excluded.request_total, "
    "request_failed = excluded.request_failed, total_tokens = excluded.total_tokens, "
    "raw = excluded.raw"
)


async def run_baseline(base_url: str, db: Path) -> dict[str, Any]:
    """What a user would write with the official SDK and the standard library."""
    from openai import AsyncOpenAI

    started = time.perf_counter()
    conn = sqlite3.connect(db)
    conn.execute(BASELINE_SCHEMA)
    pages = batches = 0
    async with AsyncOpenAI(base_url=base_url, api_key=API_KEY) as client:
        first = await client.batches.list(limit=100)
        async for page in first.iter_pages():
            rows = [
                (
                    b.id,
                    b.status,
                    b.endpoint,
                    getattr(b, "model", None),
                    b.created_at,
                    b.completed_at,
                    b.failed_at,
                    b.request_counts.total if b.request_counts else None,
                    b.request_counts.failed if b.request_counts else None,
                    b.usage.total_tokens if b.usage else None,
                    b.model_dump_json(),
                )
                for b in page.data
            ]
            conn.executemany(BASELINE_UPSERT, rows)
            conn.commit()
            pages += 1
            batches += len(rows)
    conn.close()
    return {"seconds": time.perf_counter() - started, "pages": pages, "batches": batches}


async def run_floor(base_url: str, db: Path) -> dict[str, Any]:
    """The least a walk can cost: each page asked for once, its last id read, nothing kept."""
    import aiohttp

    started = time.perf_counter()
    pages = batches = 0
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        params = {"limit": "100"}
        while True:
            async with session.get(f"{base_url}/batches", params=params) as resp:
                body = json.loads(await resp.read())
            pages += 1
            batches += len(body["data"])
            if not body["has_more"]:
                break
            params = {"limit": "100", "after": body["data"][-1]["id"]}
    return {"seconds": time.perf_counter() - started, "pages": pages, "batches": batches}


WORKERS = {"ours": run_ours, "baseline": run_baseline, "floor": run_floor}


# The driver.


def measure(kind: str, base_url: str, workdir: Path) -> dict[str, Any]:
    """Run one worker process; its own timing plus CPU and peak RSS from wait4()."""
    db = workdir / f"{kind}.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", kind, "--base-url", base_url, "--db", str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed with exit code {proc.returncode}")
    figures: dict[str, Any] = json.loads(output)
    figures["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    figures["batches_per_second"] = figures["batches"] / figures["seconds"]
    return figures


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    keys = ("seconds", "batches_per_second", "cpu_seconds", "peak_rss_mb", "pages")
    return {
        kind: {key: statistics.median(r[key] for r in results) for key in keys}
        for kind, results in runs.items()
        if results
    }


def print_table(
    medians: dict[str, dict[str, float]], batches: int, latency: float, ids: str
) -> None:
    print(f"\n{batches:,} batches, {ids} ids, latency {latency * 1000:g} ms, medians")
    print(f"{'':<10}{'wall s':>9}{'batches/s':>12}{'CPU s':>9}{'peak RSS MB':>13}{'pages':>8}")
    for kind, m in medians.items():
        print(
            f"{kind:<10}{m['seconds']:>9.2f}{m['batches_per_second']:>12,.0f}"
            f"{m['cpu_seconds']:>9.2f}{m['peak_rss_mb']:>13.1f}{m['pages']:>8.0f}"
        )
    if "ours" in medians and "floor" in medians:
        ratio = medians["ours"]["seconds"] / medians["floor"]["seconds"]
        print(f"ours / floor (wall):      {ratio:.3f}")
    if "ours" in medians and "baseline" in medians:
        ratio = medians["ours"]["batches_per_second"] / medians["baseline"]["batches_per_second"]
        print(f"baseline / ours (time):   {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=50_000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per response")
    parser.add_argument("--ids", choices=ID_STYLES, default="realistic", help="batch id style")
    parser.add_argument("--runs", type=int, default=3, help="alternated runs of each kind")
    parser.add_argument("--only", default=",".join(KINDS), help="comma-separated kinds to run")
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(asyncio.run(WORKERS[args.worker](args.base_url, args.db))))
        return

    kinds = [k for k in args.only.split(",") if k]
    print(f"{args.batches:,} batches, {args.ids} ids, latency {args.latency * 1000:g} ms")
    server, base_url = start_fake_api(
        "--ids", args.ids, "--batches", str(args.batches), "--latency", str(args.latency)
    )
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # A first walk, not counted, has the server render every page once; the
            # measured runs then all see the same server and measure the clients.
            measure("floor", base_url, Path(tmp))
            for n in range(args.runs):
                # Alternate the order so that no kind always runs on a warmer machine.
                order = kinds if n % 2 == 0 else kinds[::-1]
                for kind in order:
                    figures = measure(kind, base_url, Path(tmp))
                    runs[kind].append(figures)
                    print(
                        f"run {n + 1} {kind:<9} {figures['seconds']:7.2f} s "
                        f"{figures['batches_per_second']:>9,.0f}/s "
                        f"cpu {figures['cpu_seconds']:6.2f} s rss {figures['peak_rss_mb']:5.1f} MB",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait()
    medians = summarize(runs)
    print_table(medians, args.batches, args.latency, args.ids)
    if args.out:
        report = {
            "batches": args.batches,
            "latency": args.latency,
            "ids": args.ids,
            "runs": runs,
            "medians": medians,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
