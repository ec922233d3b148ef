"""The `batch-crawler` command's entry point, light enough to import that a Ctrl-C while
the command's modules load (aiohttp and the rest, half a second) ends it with one line,
not a traceback: nothing has started, so nothing is left to resume."""

import sys

from .errors import EXIT_INTERRUPTED


def main() -> int:
    """Load the command line and run it; returns the process exit code."""
    try:
        from .cli import main as run_command  # noqa: PLC0415 (the point: caught as it loads)
    except KeyboardInterrupt:
        print("batch-crawler: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return run_command()
