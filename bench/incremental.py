"""Benchmark: an incremental sync against a full walk, and against the two pure plans.

    python bench/incremental.py --batches 100000 --latency 0.02
    python bench/incremental.py --batches 100000 --latency 0.02 --ids random

Serves the fake API in this process (its data is moved between the syncs), makes a full
sync, then lets the target move as it does between two cron runs (new batches at the head,
in-flight batches advancing), and makes an incremental sync. Prints both syncs' wall time
and requests, and what each pure plan would have cost:

- walk only: from the top down past the oldest batch still in flight;
- by id only: from the top down to the last head, then every in-flight batch by id.

`--ids` picks the fake's batch ids: `realistic` (the default) begin with their creation
second, as OpenAI's do; `random` are fully random, the worst case for the primary-key index.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Measure the code beside this script, even where an older copy is installed.
sys.path.insert(0, str(ROOT))

from crawler import Settings, sync  # noqa: E402
from crawler.fake import ID_STYLES, FakeApiOptions, FakeApiServer, IdStyle  # noqa: E402
from crawler.store import open_store  # noqa: E402


def requests_made(server: FakeApiServer) -> int:
    return sum(server.stats.requests.values())


async def timed_sync(server: FakeApiServer, settings: Settings) -> dict[str, Any]:
    before = requests_made(server)
    started = time.perf_counter()
    result = await sync(settings)
    return {
        "seconds": time.perf_counter() - started,
        "requests": requests_made(server) - before,
        "mode": result.mode,
        "pages": result.pages,
        "refreshed_by_id": result.refreshed_by_id,
        "batches_new": result.batches_new,
        "batches_updated": result.batches_updated,
    }


async def run(batches: int, latency: float, new: int, advance: int, ids: IdStyle) -> dict[str, Any]:
    options = FakeApiOptions(batches=batches, latency=latency, ids=ids)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        async with FakeApiServer(options) as server:
            # The list alone: bench/walk_files.py measures the request files.
            settings = Settings(
                db=db, base_url=server.base_url, api_key=options.api_key, files=False
            )
            full = await timed_sync(server, settings)
            server.data.add_batches(new)
            server.data.advance_statuses(advance)
            async with open_store(db) as store:
                in_flight = await store.load_unsettled()
            page = settings.page_size
            head_pages = math.ceil((new + 1) / page)
            deepest = max((position for _, position in in_flight), default=-1)
            plans = {
                "walk_only": head_pages + (deepest // page + 1 if in_flight else 0),
                "by_id_only": head_pages + len(in_flight),
            }
            incremental = await timed_sync(server, settings)
    return {
        "batches": batches,
        "latency": latency,
        "ids": ids,
        "in_flight_before": len(in_flight),
        "full": full,
        "incremental": incremental,
        "pure_plans": plans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--ids", choices=ID_STYLES, default="realistic", help="batch id style")
    parser.add_argument("--new", type=int, default=30, help="batches created between syncs")
    parser.add_argument("--advance", type=int, default=200, help="status moves between syncs")
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    args = parser.parse_args()
    report = asyncio.run(run(args.batches, args.latency, args.new, args.advance, args.ids))
    full, inc, plans = report["full"], report["incremental"], report["pure_plans"]
    print(
        f"{args.batches:,} batches, {args.ids} ids, latency {args.latency * 1000:g} ms, "
        f"{report['in_flight_before']} in flight before the incremental sync"
    )
    print(f"full sync:        {full['seconds']:7.2f} s  {full['requests']:6,} requests")
    print(
        f"incremental sync: {inc['seconds']:7.2f} s  {inc['requests']:6,} requests "
        f"({inc['pages']} list pages, {inc['refreshed_by_id']} by id; "
        f"{inc['batches_new']} new, {inc['batches_updated']} updated)"
    )
    print(
        f"pure plans:       walk only {plans['walk_only']:,} requests, "
        f"by id only {plans['by_id_only']:,} requests"
    )
    print(f"incremental / full (wall): {inc['seconds'] / full['seconds']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
