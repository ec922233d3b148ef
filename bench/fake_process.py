"""The fake API in a process of its own, for the benchmarks: its CPU is not theirs."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# As long as a project key (sk-proj-, 164 characters): the sync searches every page for
# runs of the key a server may echo, and that search costs with the key's length.
_RANDOM = hashlib.sha512(b"batch-crawler bench").digest() * 2
API_KEY = "sk-proj-" + base64.urlsafe_b64encode(_RANDOM).decode()[:156]


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
