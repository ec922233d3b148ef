"""Benchmark: does fetching the error files slow a first sync down?

    python bench/walk_files.py --batches 10000 --latency 0.02 --runs 3

Starts the fake API in a process of its own (every answer `--latency` late), then runs,
alternated, each a fresh process with a fresh database:

- walk:  `batch-crawler sync --no-files`, the list alone;
- files: the error files alone, as a download-only floor: every terminal batch's error
         file streamed and its lines counted, `--concurrency` at a time, nothing kept;
- ours:  `batch-crawler sync`, the list and the error files (the default).

Prints the medians and `ours / max(walk, files)`: 1.0 means the files cost nothing on top
of the longer of the two. The floor is measured against the same server, since serving a
file costs the server time too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fake_process import API_KEY, ROOT, start_fake_api

KINDS = ("walk", "files", "ours")
TERMINAL = {"completed", "failed", "expired", "cancelled"}


async def download_error_files(base_url: str, concurrency: int) -> None:
    """The floor: the list read for its error file ids (not timed), then the files."""
    import aiohttp

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        file_ids, after = [], None
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            async with session.get(f"{base_url}/batches", params=params) as resp:
                page = await resp.json()
            file_ids += [
                b["error_file_id"]
                for b in page["data"]
                if b["status"] in TERMINAL and b.get("error_file_id")
            ]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        pending = iter(file_ids)

        async def worker() -> None:
            for file_id in pending:
                async with session.get(f"{base_url}/files/{file_id}/content") as resp:
                    async for chunk in resp.content.iter_chunked(2**18):
                        chunk.count(b"\n")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(f"{time.perf_counter() - started:.6f} {len(file_ids)}")


def measure(kind: str, base_url: str, concurrency: int, workdir: Path) -> float:
    """Seconds for one run of `kind`, in a process of its own."""
    if kind == "files":
        command = [sys.executable, __file__, "--worker", "--base-url", base_url]
        command += ["--concurrency", str(concurrency)]
        out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
        return float(out.stdout.split()[0])
    db = workdir / f"{kind}.db"
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    command = [sys.executable, "-m", "crawler", "sync", "--db", str(db), "-q"]
    command += ["--base-url", base_url, "--concurrency", str(concurrency)]
    if kind == "walk":
        command.append("--no-files")
    env = {**os.environ, "OPENAI_API_KEY": API_KEY}
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="alternated runs of each kind")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(download_error_files(args.base_url, args.concurrency))
        return

    server, base_url = start_fake_api(
        "--batches", str(args.batches), "--latency", str(args.latency)
    )
    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for run in range(1, args.runs + 1):
                order = KINDS if run % 2 else KINDS[::-1]
                for kind in order:
                    seconds[kind].append(measure(kind, base_url, args.concurrency, Path(workdir)))
                    print(f"run {run} {kind:<6} {seconds[kind][-1]:7.2f} s")
    finally:
        server.kill()
    medians = {kind: statistics.median(values) for kind, values in seconds.items()}
    print(
        f"\n{args.batches:,} batches, latency {args.latency * 1000:.0f} ms, "
        f"concurrency {args.concurrency}, medians"
    )
    for kind in KINDS:
        print(f"{kind:<6} {medians[kind]:7.2f} s")
    longer = max(medians["walk"], medians["files"])
    print(f"ours / max(walk, files): {medians['ours'] / longer:.3f}")


if __name__ == "__main__":
    main()
