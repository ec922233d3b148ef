"""The fake API in a process of its own, for the benchmarks: its CPU is not theirs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-fake-local"


def start_fake_api(*options: str) -> tuple[subprocess.Popen[str], str]:
    """Start `batch-crawler fake-api` with `options` on a free port: the process and its
    base URL. The caller kills the process."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crawler",
            "fake-api",
            "--port",
            "0",
            "--api-key",
            API_KEY,
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+/v1)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the fake API did not start: {line!r}")
    return proc, match[1]
