"""The `batch-crawler` command: parse, load settings, run, map errors to one line and a code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from . import __version__
from .config import load_settings
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, CrawlerError
from .progress import ProgressLine
from .status import dumps, format_status, read_status
from .sync import SyncResult, sync

T = TypeVar("T")

EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports it


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not a usage dump: the user sees what is wrong and where to look."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, subcommands included."""
    parser = _Parser(
        prog="batch-crawler",
        description="Copy an organization's OpenAI Batches into a local SQLite database.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log retries (-v) or every request (-vv)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sync_cmd = commands.add_parser(
        "sync",
        help="copy every batch into the database, resuming an unfinished walk",
        description="Copy every batch into the database. Example:\n"
        "  OPENAI_API_KEY=sk-... batch-crawler sync --db batches.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sync_cmd.add_argument("--db", type=Path, help="SQLite file to write (default: batches.db)")
    sync_cmd.add_argument("--base-url", help="API base URL (default: $OPENAI_BASE_URL or OpenAI)")
    sync_cmd.add_argument("--config", type=Path, help="TOML file with settings")
    sync_cmd.add_argument("--page-size", type=_page_size, help="batches per page, 1..100")
    sync_cmd.add_argument("--max-pages", type=_positive_int, help="stop after N pages (exit 3)")
    sync_cmd.add_argument(
        "--max-seconds", type=_positive_float, help="stop after S seconds (exit 3)"
    )
    sync_cmd.add_argument(
        "--restart", action="store_true", help="forget an unfinished walk; start at the top"
    )
    sync_cmd.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")

    status_cmd = commands.add_parser(
        "status",
        help="show the last runs, the walk state and batch counts",
        description="Show what the database holds. Example:\n"
        "  batch-crawler status --db batches.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status_cmd.add_argument("--db", type=Path, default=Path("batches.db"), help="SQLite file")
    status_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with SIGTERM cancelling the work as Ctrl-C does."""

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(guarded())


def format_summary(result: SyncResult) -> str:
    """The lines printed after a sync."""
    lines = [
        f"{'Synced' if result.complete else 'Partly synced'}: {result.pages:,} pages, "
        f"{result.batches_seen:,} batches ({result.batches_new:,} new, "
        f"{result.batches_updated:,} updated), {result.error_lines:,} error lines, "
        f"{result.retries:,} retries, {result.seconds:,.1f} s [{result.mode}]"
    ]
    lines.extend(f"warning: {w}" for w in result.warnings)
    if not result.complete:
        lines.append("Budget spent; the next `batch-crawler sync` resumes where this one stopped.")
    return "\n".join(lines)


def _cmd_sync(args: argparse.Namespace) -> int:
    flags = {
        "db": args.db,
        "base_url": args.base_url,
        "page_size": args.page_size,
        "max_pages": args.max_pages,
        "max_seconds": args.max_seconds,
    }
    settings = load_settings(flags, os.environ, args.config)
    progress = None if args.quiet or not sys.stderr.isatty() else ProgressLine(sys.stderr)
    try:
        result = _run_async(sync(settings, restart=args.restart, on_progress=progress))
    finally:
        if progress is not None:
            progress.close()
    if not args.quiet:
        print(format_summary(result))
    return EXIT_OK if result.complete else EXIT_PARTIAL


def _cmd_status(args: argparse.Namespace) -> int:
    report = _run_async(read_status(args.db))
    print(dumps(report) if args.json else format_status(report))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sync": _cmd_sync,
    "status": _cmd_status,
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    level = {0: logging.ERROR, 1: logging.WARNING}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except CrawlerError as exc:
        print(f"batch-crawler: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("batch-crawler: interrupted; the next sync resumes", file=sys.stderr)
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:
        print("batch-crawler: terminated; the next sync resumes", file=sys.stderr)
        return EXIT_TERMINATED
