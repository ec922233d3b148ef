"""The command line's words: every command, flag and its check, parsed into a Namespace."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .config import (
    ENV_AZURE_KEY,
    ENV_CLIENT_SECRET,
    ENV_LOG_FORMAT,
    Settings,
    environment_proxies,
    proxy_secrets,
)
from .errors import EXIT_USAGE, ConfigError
from .events import failure_event
from .fake import BAD_PAGE_MODES, BROKEN_PAGINATION_MODES, FLAVORS, ID_STYLES
from .redact import environment_keys, holds_a_key_like_word, mask_keys
from .setting_rules import LOG_FORMATS, Rule, integer_rule, number_rule, setting_rule, shown


class Parser(argparse.ArgumentParser):
    # Set by `main` before parsing: a bad flag of a run asked to log JSON is said in JSON.
    json_errors = False
    # Set by `main` before parsing: the keys the config file names (see keys_named_in).
    config_keys: tuple[str, ...] = ()

    def error(self, message: str) -> NoReturn:
        """One line, not a usage dump: the user sees what is wrong and where to look."""
        # argparse quotes what it refused (an invalid choice): a key pasted there is not shown.
        # Quoted as Python does, a value holding both quote marks has its ' escaped.
        message = message.replace("\\'", "'")
        # A key may stand inside a word (`--api-key=KEY`, `KEY,`, `"KEY"`): any word holding
        # one is not shown.
        words = (
            shown(word) if holds_a_key_like_word(word) else word for word in message.split(" ")
        )
        line = mask_keys(f"{self.prog}: error: {' '.join(words)} (see --help)", keys_at_hand())
        if Parser.json_errors:
            event = failure_event(ConfigError(line))
            self.exit(EXIT_USAGE, event.json_line())
        self.exit(EXIT_USAGE, line + "\n")


def keys_at_hand(*, proxy_user_names: bool = True) -> tuple[str, ...]:
    """The keys a command masks in what it says: the environment's, the passwords of the
    proxies it names (and their user names long enough to be tokens, unless not
    `proxy_user_names`), and those the config files the command was given name
    (Parser.config_keys)."""
    proxies = environment_proxies().values()
    return (
        *environment_keys(os.environ, Settings.api_key_env, ENV_AZURE_KEY, ENV_CLIENT_SECRET),
        *(one for url in proxies for one in proxy_secrets(url, user_name=proxy_user_names)),
        *Parser.config_keys,
    )


def _add_reading_flags(command: argparse.ArgumentParser) -> None:
    """--db and --config of a command showing what a database holds (see cli._reading_db)."""
    command.add_argument(
        "--db", type=Path, help="SQLite file (default: the config's, or batches.db)"
    )
    command.add_argument(
        "--config",
        type=Path,
        help="the syncs' TOML file: its db, and the keys it names masked in what is shown",
    )


def _checked(rule: Rule) -> Callable[[str], Any]:
    """An argparse type that reads and checks a value by `rule`, as the config file does."""

    def parse(text: str) -> Any:
        try:
            return rule.from_text(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _setting(name: str) -> Callable[[str], Any]:
    """The argparse type of the flag that sets setting `name`."""
    return _checked(setting_rule(name))


_positive_int = _checked(integer_rule(1))
_count = _checked(integer_rule(0))
_port = _checked(integer_rule(0, 65535))
_seconds = _checked(number_rule("0 or more", lambda v: v >= 0))
_rate = _checked(number_rule("a share from 0 to 1", lambda v: 0 <= v <= 1))
_per_second = _checked(number_rule("a positive number of requests a second", lambda v: v > 0))


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, subcommands included."""
    parser = Parser(
        prog="batch-crawler",
        description="Copy an organization's OpenAI Batches into a local SQLite database.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log retries (-v), and requests (-vv)"
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
    sync_cmd.add_argument(
        "--provider",
        type=_setting("provider"),
        help="openai (default), azure (Azure OpenAI) or compatible (an OpenAI-compatible API)",
    )
    sync_cmd.add_argument(
        "--azure-endpoint",
        type=_setting("azure_endpoint"),
        help="Azure OpenAI's https://NAME.openai.azure.com (default: $AZURE_OPENAI_ENDPOINT)",
    )
    sync_cmd.add_argument(
        "--auth",
        type=_setting("auth"),
        help='with Azure: "key" (default) or "entra" (Microsoft Entra ID tokens, '
        'pip install "batch-crawler[azure]")',
    )
    sync_cmd.add_argument(
        "--api-version",
        type=_setting("api_version"),
        help="Azure's dated API version, such as 2024-10-21 (default: the v1 API)",
    )
    sync_cmd.add_argument("--config", type=Path, help="TOML file with settings")
    sync_cmd.add_argument(
        "--account",
        action="append",
        metavar="NAME",
        help="sync only this account of the config file's [accounts.NAME] tables (repeatable)",
    )
    sync_cmd.add_argument(
        "--page-size", type=_setting("page_size"), help="batches per page, 1..100"
    )
    sync_cmd.add_argument(
        "--max-pages", type=_setting("max_pages"), help="stop after N pages (exit 3)"
    )
    sync_cmd.add_argument(
        "--max-seconds", type=_setting("max_seconds"), help="stop after S seconds (exit 3)"
    )
    sync_cmd.add_argument(
        "--restart", action="store_true", help="forget an unfinished walk; start at the top"
    )
    sync_cmd.add_argument(
        "--full", action="store_true", help="walk the whole list, not only what can have changed"
    )
    sync_cmd.add_argument(
        "--concurrency",
        type=_setting("concurrency"),
        help="batches refreshed by id at once, 1..64 (default 8)",
    )
    sync_cmd.add_argument(
        "--requests-per-minute",
        type=_setting("requests_per_minute"),
        help="cap on the request rate",
    )
    sync_cmd.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=None,  # None, not False: unset lets a config file's true stand
        help="allow a plain http:// base URL to another machine (sends the key in clear text)",
    )
    sync_cmd.add_argument(
        "--outputs",
        action="store_true",
        default=None,
        help="store every request's outcome from the output files too, not only the error files",
    )
    sync_cmd.add_argument(
        "--no-files",
        dest="files",
        action="store_false",
        default=None,
        help="store no request files (error nor output)",
    )
    sync_cmd.add_argument(
        "--bodies",
        action="store_true",
        default=None,
        help="keep each response body (large, and holds your content) in batch_requests.body",
    )
    sync_cmd.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    sync_cmd.add_argument(
        "--json", action="store_true", help="print the run's result as one JSON object"
    )

    status_cmd = commands.add_parser(
        "status",
        help="show the last runs, the walk state and batch counts",
        description="Show what the database holds. Example:\n"
        "  batch-crawler status --db batches.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_reading_flags(status_cmd)
    status_cmd.add_argument("--json", action="store_true", help="print the report as JSON")

    demo_cmd = commands.add_parser(
        "demo",
        help="sync a local fake API into a database (no key, no network)",
        description="Start the fake API on a free loopback port, sync it, and show four "
        "example queries. Example:\n  batch-crawler demo --db demo.db --batches 5000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo_cmd.add_argument("--db", type=Path, default=Path("demo.db"), help="SQLite file")
    demo_cmd.add_argument(
        "--batches", type=_positive_int, default=3000, help="batches to serve (default: 3000)"
    )
    demo_cmd.add_argument(
        "--accounts",
        action="store_true",
        help="two accounts, an OpenAI project and an Azure OpenAI resource, into one database",
    )
    report_cmd = commands.add_parser(
        "report",
        help="what batch work cost, how it ended, where it failed, what is in flight",
        description="Answer the recurring questions for the batches created in a period: "
        "spend by model and day, batches and requests by outcome, top error codes, the "
        "slowest batches, work in flight. Example:\n"
        "  batch-crawler report --db batches.db --since 7d",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_reading_flags(report_cmd)
    report_cmd.add_argument("--since", default="7d", help="the period: 12h, 7d, 2w (default: 7d)")
    report_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    report_cmd.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="also write the report as one self-contained page with charts (no scripts)",
    )

    prices_cmd = commands.add_parser(
        "prices",
        help="load model prices (USD per 1M tokens) for the cost views",
        description="Replace or add model prices from a CSV in model_prices' columns (model, "
        "input, cached_input, output, batch_input, batch_cached_input, batch_output; USD per "
        "1M tokens) or from a LiteLLM-style price map (JSON, USD per token). Example:\n"
        "  batch-crawler prices load prices.csv --db batches.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prices_actions = prices_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    load_cmd = prices_actions.add_parser("load", help="replace or add prices from FILE")
    load_cmd.add_argument("file", type=Path, metavar="FILE", help="a CSV or a JSON price map")
    load_cmd.add_argument("--db", type=Path, default=Path("batches.db"), help="SQLite file")
    metadata_cmd = commands.add_parser(
        "datasette-metadata",
        help="write the metadata Datasette reads to browse the database",
        description="Print (or write to -o FILE) Datasette's metadata for the database: "
        "what each table and view holds, facets on status, model and endpoint, newest "
        "first, and the full-text search over error messages. Example:\n"
        "  batch-crawler datasette-metadata --db batches.db -o metadata.json\n"
        "  datasette batches.db -m metadata.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    metadata_cmd.add_argument("--db", type=Path, default=Path("batches.db"), help="SQLite file")
    metadata_cmd.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE")
    _add_fake_api_command(commands)
    # Every command takes it: a pipeline may run any of them and parse what it logs.
    for command in [c for c in commands.choices.values() if c is not prices_cmd] + [load_cmd]:
        command.add_argument(
            "--log-format",
            choices=LOG_FORMATS,
            help=f"stderr as text lines (default) or JSON lines (also ${ENV_LOG_FORMAT})",
        )
    return parser


def _add_fake_api_command(commands: Any) -> None:
    cmd = commands.add_parser(
        "fake-api",
        help="serve a local fake of the Batches API, with fault knobs",
        description="Serve synthetic batches like OpenAI's Batches API, to rehearse a "
        "pipeline. Example:\n  batch-crawler fake-api --port 8000 --batches 100000 "
        "--error-rate 0.05\n  OPENAI_API_KEY=sk-fake-local batch-crawler sync "
        "--base-url http://127.0.0.1:8000/v1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    cmd.add_argument("--port", type=_port, default=8000, help="TCP port; 0 picks a free one")
    cmd.add_argument("--batches", type=_count, default=3000, help="batches to serve")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and faults")
    cmd.add_argument("--api-key", default="sk-fake-local", help="the key the server accepts")
    cmd.add_argument(
        "--ids",
        choices=ID_STYLES,
        default="realistic",
        help="batch ids begin with their creation time, as OpenAI's do (default), "
        "or are fully random",
    )
    cmd.add_argument("--latency", type=_seconds, default=0.0, help="seconds added to every answer")
    cmd.add_argument("--error-rate", type=_rate, default=0.0, help="share answered 500/502/503")
    cmd.add_argument("--html-errors", action="store_true", help="5xx bodies are HTML pages")
    cmd.add_argument("--rate-limit-rate", type=_rate, default=0.0, help="share answered 429")
    cmd.add_argument("--requests-per-second", type=_per_second, help="budget; over it, 429 answers")
    cmd.add_argument("--drop-rate", type=_rate, default=0.0, help="share of dropped connections")
    cmd.add_argument("--truncate-rate", type=_rate, default=0.0, help="share of cut bodies")
    cmd.add_argument("--slow-rate", type=_rate, default=0.0, help="share of slow answers")
    cmd.add_argument("--slow-seconds", type=_seconds, default=1.0, help="delay of a slow answer")
    cmd.add_argument(
        "--add-per-request", type=_count, default=0, help="new batches per list request"
    )
    cmd.add_argument(
        "--advance-per-request", type=_count, default=0, help="status moves per list request"
    )
    cmd.add_argument(
        "--flavor",
        choices=FLAVORS,
        default="openai",
        help="pass for OpenAI's API (default), Azure OpenAI's dated API (api-key header, "
        "api-version) or v1 API, or a compatible list that never says has_more",
    )
    cmd.add_argument(
        "--broken-pagination",
        choices=BROKEN_PAGINATION_MODES,
        help="serve a broken cursor chain from the third page on",
    )
    cmd.add_argument(
        "--bad-page",
        choices=BAD_PAGE_MODES,
        help="answer every list request after the first with a page no client should choke "
        "on (trickle: one byte every --slow-seconds)",
    )
    cmd.add_argument(
        "--requests-per-batch",
        type=_positive_int,
        help="requests in every batch, so files of that many lines (default: 1 to 8192)",
    )
    cmd.add_argument(
        "--now",
        type=_positive_int,
        help="the fake's present, unix seconds: the newest batch is created just before it "
        "(default: 2026-01-01, the same data on every run)",
    )
    cmd.add_argument(
        "--deleted-file-rate", type=_rate, default=0.0, help="share of files answered 404"
    )
    cmd.add_argument(
        "--file-drop-rate", type=_rate, default=0.0, help="share of downloads cut mid-line"
    )
    cmd.add_argument(
        "--file-truncate-rate",
        type=_rate,
        default=0.0,
        help="share of downloads cut after a whole line, short of Content-Length",
    )
    cmd.add_argument(
        "--file-slow-rate", type=_rate, default=0.0, help="share of downloads sent line by line"
    )
    cmd.add_argument(
        "--file-slow-seconds",
        type=_seconds,
        default=1.0,
        help="pause between the lines of a slow download",
    )
