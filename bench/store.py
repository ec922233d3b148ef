"""Benchmark: what SQLite alone costs a page, with no network and no event loop to share.

    python bench/store.py --batches 200000
    python bench/store.py --batches 200000 --ids random

Builds the pages of the fake API's batches in memory, then writes them one transaction a
page, each run into a fresh database, the two kinds alternated:

- ours:    `crawler.store` (our schema, its indexes, the counts of new and updated batches);
- minimal: the baseline's schema of `bench/bench.py` (11 columns, the primary key only),
           written with our settings, `executemany` and a commit a page.

`--ids` picks the fake's batch ids: `realistic` (the default) begin with their creation
second, as OpenAI's do, so a walk's keys arrive nearly in order; `random` are fully random,
the worst case for the primary-key index.

Prints each run's seconds for all the pages (wall and the process's CPU), then the medians
in milliseconds a page: a sync cannot walk faster than its writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import BASELINE_SCHEMA, BASELINE_UPSERT  # noqa: E402  (bench/bench.py, beside this file)
from crawler.fake import ID_STYLES, FakeBatches, IdStyle  # noqa: E402
from crawler.rows import BATCH_COLUMNS, build_page_rows  # noqa: E402
from crawler.runs import RunFigures  # noqa: E402
from crawler.store import open_store  # noqa: E402
from crawler.walk import WalkState  # noqa: E402

Rows = list[tuple[Any, ...]]
_MINIMAL = (
    "id",
    "status",
    "endpoint",
    "model",
    "created_at",
    "completed_at",
    "failed_at",
    "request_counts_total",
    "request_counts_failed",
    "total_tokens",
    "raw",
)


def build_pages(batches: int, page_size: int, ids: IdStyle) -> list[tuple[Rows, Rows]]:
    data = FakeBatches(batches, ids=ids)
    return [
        build_page_rows([data.batch(i) for i in range(start, min(start + page_size, batches))], 1)
        for start in range(0, batches, page_size)
    ]


def timed(write: Any, pages: Sequence[tuple[Rows, Rows]]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for batch_rows, error_rows in pages:
        write(batch_rows, error_rows)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


async def write_ours(
    db: Path, pages: Sequence[tuple[Rows, Rows]], drop_indexes: Sequence[str]
) -> dict[str, float]:
    if drop_indexes:
        async with open_store(db):
            pass  # created and migrated
        with contextlib.closing(sqlite3.connect(db)) as conn:
            for name in drop_indexes:
                conn.execute(f"DROP INDEX {name}")
    async with open_store(db) as store:
        run_id = await store.start_run("full", "bench")
        wall, cpu = time.perf_counter(), time.process_time()
        for n, (batch_rows, error_rows) in enumerate(pages, 1):
            walk = WalkState(cursor=batch_rows[-1][0])
            await store.save_page(batch_rows, error_rows, walk, run_id, RunFigures(pages=n))
        # Our writes run on the store's own thread: the process's CPU counts them.
        return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def write_minimal(db: Path, pages: Sequence[tuple[Rows, Rows]]) -> dict[str, float]:
    conn = sqlite3.connect(db, isolation_level=None)
    # The settings `crawler.store` writes with, so that the two differ by schema only.
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "wal_autocheckpoint = 10000"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(BASELINE_SCHEMA)
    picks = [BATCH_COLUMNS.index(name) for name in _MINIMAL]

    def write(batch_rows: Rows, _errors: Rows) -> None:
        conn.execute("BEGIN")
        conn.executemany(BASELINE_UPSERT, [tuple(row[i] for i in picks) for row in batch_rows])
        conn.execute("COMMIT")

    try:
        return timed(write, pages)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--ids", choices=ID_STYLES, default="realistic", help="batch id style")
    parser.add_argument("--runs", type=int, default=3, help="alternated runs of each kind")
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    parser.add_argument(
        "--drop-index",
        action="append",
        default=[],
        metavar="NAME",
        help="write ours without this index (what an index costs the writes); repeatable",
    )
    args = parser.parse_args()

    print(f"{args.batches:,} batches, {args.ids} ids", flush=True)
    pages = build_pages(args.batches, args.page_size, args.ids)
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "minimal": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.runs):
            for kind in ("ours", "minimal") if n % 2 == 0 else ("minimal", "ours"):
                db = Path(tmp) / f"{kind}{n}.db"
                if kind == "ours":
                    figures = asyncio.run(write_ours(db, pages, args.drop_index))
                else:
                    figures = write_minimal(db, pages)
                runs[kind].append(figures)
                print(
                    f"run {n + 1} {kind:<8} {figures['wall']:6.2f} s  cpu {figures['cpu']:6.2f} s",
                    flush=True,
                )
    dropped = f", ours without {', '.join(args.drop_index)}" if args.drop_index else ""
    print(f"\n{args.batches:,} batches, {args.ids} ids, {len(pages):,} pages{dropped}, medians")
    print(f"{'':<9}{'ms/page':>9}{'cpu ms/page':>13}")
    medians = {}
    for kind, results in runs.items():
        wall = sorted(r["wall"] for r in results)[len(results) // 2]
        cpu = sorted(r["cpu"] for r in results)[len(results) // 2]
        medians[kind] = {
            "ms_per_page": wall / len(pages) * 1000,
            "cpu_ms_per_page": cpu / len(pages) * 1000,
        }
        print(
            f"{kind:<9}{medians[kind]['ms_per_page']:>9.2f}{medians[kind]['cpu_ms_per_page']:>13.2f}"
        )
    if args.out:
        report = {
            "batches": args.batches,
            "pages": len(pages),
            "ids": args.ids,
            "dropped_indexes": args.drop_index,
            "runs": runs,
            "medians": medians,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
