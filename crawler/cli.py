"""The `batch-crawler` command: parse, load settings, run, map errors to one line and a code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .accounts import sync_accounts
from .cli_args import Parser, build_parser, keys_at_hand
from .config import (
    ENV_LOG_FORMAT,
    Settings,
    environment_proxies,
    keys_named_in,
    load_accounts,
    proxy_secrets,
    read_config_file,
    url_holds_secret,
    without_credentials,
)
from .datasette import datasette_metadata
from .demo import ACCOUNTS_QUERY, DEMO_QUERIES, ask, run_accounts_demo, run_demo
from .errors import (
    EXIT_DATABASE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_TERMINATED,
    EXIT_TRANSIENT,
    EXIT_USAGE,
    ConfigError,
    CrawlerError,
)
from .events import WARNING, Event, failure_event
from .fake import (
    AZURE_API_VERSIONS,
    FakeApiOptions,
    serve,
)
from .logs import JsonEvents, configure_logging
from .prices import PriceFile, PriceFileError, read_prices
from .progress import AccountsProgress, ProgressLine
from .redact import (
    holds_secret_in_any_form,
    mask_keys,
    mask_keys_in_data,
    mask_keys_in_json,
)
from .report import Report, format_answer, format_report, parse_since, read_report, utc
from .report_html import render_html
from .runs import SyncResult
from .setting_rules import check_setting, setting_rule
from .status import format_status, read_status
from .store import check_file, is_a_database, open_store
from .sync_run import sync

T = TypeVar("T")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stopped(Exception):
    """The work was cancelled by a signal (SIGINT or SIGTERM), and has wound down."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, where the first SIGINT or SIGTERM cancels the work.

    A repeated signal is ignored, not turned into a KeyboardInterrupt in the middle of the
    winding down: that broke off the ledger's last write and printed a traceback.

    Raises:
        _Stopped: a signal cancelled the work.
    """
    received: list[int] = []

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def stop(signum: int) -> None:
            if not received:
                received.append(signum)
                task.cancel()

        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, stop, signum)
        try:
            return await coro
        finally:
            for signum in _STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        if received:
            raise _Stopped(received[0]) from None
        raise


def _out(text: str) -> None:
    """Print a line to stdout. Once the reader has gone (`| head`), print nothing more, as
    Unix tools do, and let the command end with its own exit code."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null, so that the interpreter's last flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def format_summary(result: SyncResult) -> str:
    """The lines printed after a sync."""
    lines = [
        f"{'Synced' if result.complete else 'Partly synced'}: {result.pages:,} pages, "
        f"{result.batches_seen:,} batches ({result.batches_new:,} new, "
        f"{result.batches_updated:,} updated), {result.error_lines:,} error lines, "
        f"{result.retries:,} retries, {result.seconds:,.1f} s [{result.mode}]"
    ]
    if result.refreshed_by_id:
        gone = (
            f" ({result.gone:,} answered not found: asked again on later runs, until three "
            "in a row agree)"
            if result.gone
            else ""
        )
        lines.append(f"Refreshed {result.refreshed_by_id:,} batches by id{gone}.")
    if result.files:
        lines.append(
            f"Stored {result.files:,} request files: {result.request_lines:,} request lines, "
            f"{result.file_bytes / 2**20:,.1f} MiB."
        )
    lines.extend(f"warning: {w}" for w in result.warnings)
    if not result.complete:
        lines.append(
            "Stopped early (a budget spent, files failing one after the other, or the list after "
            "where the walk stopped: see the warnings); the next "
            "`batch-crawler sync` resumes where this one stopped."
        )
    return "\n".join(lines)


@contextlib.contextmanager
def _progress_line(*, show: bool) -> Iterator[ProgressLine | None]:
    """A live progress line on a terminal's stderr, erased at the end; None elsewhere."""
    if not show or not _draws_progress():
        yield None
        return
    progress = ProgressLine(sys.stderr)

    def erase_first(record: logging.LogRecord) -> bool:
        progress.close()  # a log line written over the progress line would be garbled
        return True

    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(erase_first)
    try:
        yield progress
    finally:
        for handler in handlers:
            handler.removeFilter(erase_first)
        progress.close()


def _cmd_sync(args: argparse.Namespace) -> int:
    flags = {
        "db": args.db,
        "base_url": args.base_url,
        "provider": args.provider,
        "azure_endpoint": args.azure_endpoint,
        "api_version": args.api_version,
        "auth": args.auth,
        "page_size": args.page_size,
        "max_pages": args.max_pages,
        "max_seconds": args.max_seconds,
        "concurrency": args.concurrency,
        "requests_per_minute": args.requests_per_minute,
        "allow_insecure_http": args.allow_insecure_http,
        "files": args.files,
        "outputs": args.outputs,
        "bodies": args.bodies,
        "log_format": args.log_format,
    }
    accounts = load_accounts(flags, os.environ, args.config, only=args.account or ())
    _check_urls(accounts, keys_at_hand())
    log_format = accounts[0].log_format
    json_lines = log_format == "json"
    if json_lines != (args.events is not None):  # the config file chose it
        _configure_logging(args, log_format)
    if len(accounts) > 1 or accounts[0].account != "default":
        others = _other_accounts_keys(flags, args, accounts)
        return _sync_accounts(args, accounts, others, show_progress=not (args.quiet or json_lines))
    with _progress_line(show=not (args.quiet or json_lines)) as progress:
        result = _run_async(
            sync(
                accounts[0],
                restart=args.restart,
                full=args.full,
                on_progress=progress,
                on_event=args.events,
            )
        )
    if args.json:
        _out(json.dumps(result.as_json()))
    elif not args.quiet:
        _out(format_summary(result))
    return EXIT_OK if result.complete else EXIT_PARTIAL


# Which of several accounts' exit codes the run ends with: the one that most needs a person.
_WORST_FIRST = (EXIT_USAGE, EXIT_DATABASE, EXIT_FAILED, EXIT_TRANSIENT, EXIT_PARTIAL, EXIT_OK)


def _other_accounts_keys(
    flags: dict[str, Any], args: argparse.Namespace, synced: list[Settings]
) -> list[str]:
    """The keys of the config file's accounts that `--account` leaves out of this run: a
    gateway may echo them too; none when the others cannot be read."""
    if not args.account:
        return []
    try:
        every = load_accounts(flags, os.environ, args.config)
    except ConfigError:
        return []
    names = {settings.account for settings in synced}
    return [a.api_key for a in every if a.account not in names and a.api_key]


def _sync_accounts(
    args: argparse.Namespace,
    accounts: list[Settings],
    also_masked: list[str],
    *,
    show_progress: bool,
) -> int:
    """Sync named accounts at once: a summary (or a JSON line) and an exit code each, the
    run ending with the worst."""
    with _progress_line(show=show_progress) as line:
        combined = None if line is None else AccountsProgress(line)
        outcomes = _run_async(
            sync_accounts(
                accounts,
                restart=args.restart,
                full=args.full,
                on_progress=combined,
                on_event=args.events,
                also_masked=also_masked,
            )
        )
    codes = []
    for outcome in outcomes:
        result, error = outcome.result, outcome.error
        if result is not None:
            codes.append(EXIT_OK if result.complete else EXIT_PARTIAL)
            if args.json:
                _out(json.dumps({"account": outcome.account, **result.as_json()}))
            elif not args.quiet:
                _out(_account_summary(outcome.account, result))
        elif error is not None:
            codes.append(error.exit_code)
            said = _masked(str(error))  # each account's own key is masked already, not others'
            if args.json:
                _out(json.dumps({"account": outcome.account, "outcome": "failed", "error": said}))
            if args.events is None:
                print(f"batch-crawler: [{outcome.account}] {said}", file=sys.stderr)
    return min(codes, key=_WORST_FIRST.index)


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.accounts:
        return _demo_accounts(args)
    _out(
        _masked(
            f"Serving {args.batches:,} synthetic batches on 127.0.0.1; syncing them into {args.db}"
        )
    )
    with _progress_line(show=True) as progress:
        result = _run_async(run_demo(args.db, args.batches, progress))
    _out(format_summary(result))
    for answer in ask(args.db):
        _out("\n" + _masked_data(format_answer(answer)))
    _out(_masked(f"\nExplore further: sqlite3 {args.db}"))
    return EXIT_OK


def _account_summary(account: str, result: SyncResult) -> str:
    """`format_summary` for one of several accounts: named, its lines indented."""
    return f"[{account}] " + format_summary(result).replace("\n", "\n  ")


def _demo_accounts(args: argparse.Namespace) -> int:
    _out(
        f"Serving two accounts on 127.0.0.1, an OpenAI project and an Azure OpenAI resource, "
        f"{args.batches:,} synthetic batches each; syncing both into {args.db}"
    )
    with _progress_line(show=True) as line:
        combined = None if line is None else AccountsProgress(line)
        outcomes = _run_async(run_accounts_demo(args.db, args.batches, combined))
    for outcome in outcomes:
        if outcome.result is not None:
            _out(_account_summary(outcome.account, outcome.result))
    for answer in ask(args.db, [*DEMO_QUERIES, ACCOUNTS_QUERY]):
        _out("\n" + _masked_data(format_answer(answer)))
    _out(_masked(f"\nExplore further: sqlite3 {args.db}"))
    return EXIT_OK


def _cmd_fake_api(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(FakeApiOptions)}
    try:
        options = FakeApiOptions(**{k: v for k, v in vars(args).items() if k in fields})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    def ready(base_url: str) -> None:
        _out(f"Fake Batches API on {base_url} ({options.batches:,} batches); Ctrl-C stops it.")
        _out(f"Try: {_sync_command(options, base_url)}")

    try:
        _run_async(serve(options, args.host, args.port, ready))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    except _Stopped:
        pass  # Ctrl-C and SIGTERM are how a server is meant to stop.
    return EXIT_OK


def _sync_command(options: FakeApiOptions, base_url: str) -> str:
    """The sync command that reads the fake serving `options` at `base_url`."""
    key = options.api_key
    if options.flavor in {"azure", "azure-v1"}:
        endpoint = base_url.removesuffix("/v1").removesuffix("/openai")
        version = f" --api-version {AZURE_API_VERSIONS[0]}" if options.flavor == "azure" else ""
        return (
            f"AZURE_OPENAI_API_KEY={key} batch-crawler sync --provider azure "
            f"--azure-endpoint {endpoint}{version}"
        )
    provider = " --provider compatible" if options.flavor == "no-has-more" else ""
    return f"OPENAI_API_KEY={key} batch-crawler sync --base-url {base_url}{provider}"


def _cmd_status(args: argparse.Namespace) -> int:
    report = _run_async(read_status(_reading_db(args)))
    if args.json:
        _out(_json_text(mask_keys_in_json(report.as_json(), keys_at_hand())))
    else:
        _out(_masked_data(format_status(report)))
    return EXIT_OK


def _reading_db(args: argparse.Namespace) -> Path:
    """The database `status` or `report` reads: --db, the --config file's db, or batches.db."""
    if args.db is not None:
        return Path(args.db)
    db = None if args.config is None else read_config_file(args.config, os.environ).get("db")
    if db is None:
        return Path("batches.db")
    try:
        check_setting("db", db)
    except ConfigError as exc:
        raise ConfigError(f"config file {args.config}: {exc}") from None
    return Path(db)


def _masked(text: str) -> str:
    """`text` with the keys at hand masked: a stored value may hold up to half the key a
    server echoed (see README, Config file), and printing it would show it again."""
    return mask_keys(text, keys_at_hand())


def _masked_data(text: str) -> str:
    """`text` showing stored data (see mask_keys_in_data) with the keys at hand masked."""
    return mask_keys_in_data(text, keys_at_hand())


def _json_text(value: Any) -> str:
    """A command's JSON document, as printed."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def _config_paths(words: list[str]) -> list[Path]:
    """The paths `--config` (or a prefix argparse takes for it) names, read before parsing:
    each, as argparse takes the last, and the command may be refused before it does."""
    named = []
    for word, following in itertools.pairwise([*words, ""]):
        flag, equals, value = word.partition("=")
        # Any prefix argparse may take: `--c` is `--config` to `status` and `report`.
        if len(flag) > 2 and "--config".startswith(flag):
            named.append(value if equals else following)
    return [Path(path) for path in named if path]


def _masked_page(report: Report) -> str:
    """The report's HTML page with the keys at hand masked, in each text before the page
    escapes it too: the letters of an escape (`&#x27;`) joined a key's pieces apart."""
    keys = keys_at_hand()
    texts_masked = report.with_texts(lambda text: mask_keys_in_data(text, keys))
    return mask_keys_in_data(render_html(texts_masked), keys)


def _cmd_report(args: argparse.Namespace) -> int:
    since = parse_since(args.since)
    report = _run_async(read_report(_reading_db(args), since=since, now=int(time.time())))
    page = None if args.html is None else _masked_page(report)
    to_a_file = page is not None and _write_whole(args.html, page)
    if args.json:
        _out(_json_text(mask_keys_in_json(report.as_json(), keys_at_hand())))
    elif args.html is None:
        _out(_masked_data(format_report(report)))
    elif to_a_file:  # not after a page sent to stdout or a pipe: the line would join it
        _out(
            _masked(f"Wrote {args.html}: the report of batches created since {utc(report.start)}.")
        )
    return EXIT_OK


def _write_whole(path: Path, page: str) -> bool:
    """Write `page` to `path`, whole or not at all where that is a file: a reader never opens
    half a file. A link is followed, its file written and the link kept. A pipe, a terminal,
    a device, or any name under /dev or /proc (/dev/stdout, whatever it leads to: a file
    the shell appends to) is written to as it is, never replaced by a file; `-` is stdout.

    Returns whether `page` went to a file (not a stream)."""
    if str(path) == "-":
        _out(page.removesuffix("\n"))
        return False
    partial = None
    try:
        target = path.resolve()  # the file a link leads to, itself if none
        streams = [p.parts[1:2] for p in (path.absolute(), target)]
        if (target.exists() and not target.is_file()) or {("dev",), ("proc",)} & set(streams):
            # Appended: /dev/stdout reopens the file the shell appends to, and "w" would
            # empty it.
            with path.open("a", encoding="utf-8") as stream:
                stream.write(page)
            return False
        if is_a_database(target):
            raise ConfigError(
                f"{path} is a SQLite database or a file beside one: not written over "
                "(choose another file)"
            )
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(page, encoding="utf-8")
        partial.replace(target)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a loop of links (Python 3.11)
        if partial is not None:
            partial.unlink(missing_ok=True)
        why = exc.strerror if isinstance(exc, OSError) else "a loop of symbolic links"
        raise ConfigError(f"cannot write {path}: {why}") from None
    return True


def _cmd_datasette_metadata(args: argparse.Namespace) -> int:
    check_file(args.db, must_exist=True)  # a --db mistyped would name a database not there
    # Datasette names a database after its file's stem.
    text = json.dumps(datasette_metadata(args.db.stem), indent=2, ensure_ascii=False)
    if args.output is None:
        _out(text)
    elif _write_whole(args.output, text + "\n"):
        _out(_masked(f"Wrote {args.output}; browse with: datasette {args.db} -m {args.output}"))
    return EXIT_OK


def _cmd_prices(args: argparse.Namespace) -> int:
    prices = read_prices(_read_price_file(args.file), str(args.file))
    keys = keys_at_hand()
    if any(holds_secret_in_any_form(price.model, key) for price in prices.prices for key in keys):
        # Stored, it would be shown by every view and tool that reads the prices.
        raise PriceFileError(f"{args.file}: a model name holds an API key (not shown)")
    as_of = dt.datetime.now(dt.UTC).date().isoformat()
    _run_async(_save_prices(args.db, prices, source=args.file.name, as_of=as_of))
    _out(_masked(f"Loaded {len(prices.prices):,} model prices from {args.file} into {args.db}."))
    return EXIT_OK


def _read_price_file(path: Path) -> str:
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the read
            raise PriceFileError(f"price file {path} is not a regular file")
        return path.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" begins with a BOM
    except FileNotFoundError:
        raise PriceFileError(f"no price file at {path}") from None
    except UnicodeDecodeError:
        raise PriceFileError(f"price file {path} is not UTF-8 text") from None
    except OSError as exc:  # a name too long, a folder it may not enter...
        raise PriceFileError(f"cannot read price file {path}: {exc.strerror}") from exc


async def _save_prices(db: Path, prices: PriceFile, *, source: str, as_of: str) -> None:
    async with open_store(db) as store:
        await store.save_prices(prices, source, as_of)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "prices": _cmd_prices,
    "report": _cmd_report,
    "datasette-metadata": _cmd_datasette_metadata,
    "sync": _cmd_sync,
    "status": _cmd_status,
    "demo": _cmd_demo,
    "fake-api": _cmd_fake_api,
}


def _configure_logging(args: argparse.Namespace, log_format: str) -> None:
    """Logs in `log_format`; `args.events` receives a run's events in JSON."""
    json_lines = log_format == "json"
    args.events = JsonEvents(sys.stderr, keys_at_hand()) if json_lines else None
    configure_logging(
        args.verbose,
        json_lines=json_lines,
        quiet=getattr(args, "quiet", False),
        progress_line=_draws_progress(),
    )


def _asks_for_json(words: list[str]) -> bool:
    """Whether a command line (or the environment) asks for JSON logs, read before parsing
    it: its own errors are then said in JSON too."""
    for word, following in itertools.pairwise([*words, ""]):
        if (word == "--log-format" and following == "json") or word == "--log-format=json":
            return True
    return os.environ.get(ENV_LOG_FORMAT, "").strip().lower() == "json"


def _log_format(args: argparse.Namespace) -> str:
    """The flag's format, else the environment's; a sync's config file may still choose.

    Raises:
        ConfigError: the environment names no format.
    """
    if args.log_format is not None:
        return str(args.log_format)
    text = os.environ.get(ENV_LOG_FORMAT, "").strip().lower()
    if not text:
        return "text"
    problem = setting_rule("log_format").problem(text)
    if problem:
        raise ConfigError(f"{ENV_LOG_FORMAT}: {problem}")
    return text


def _draws_progress() -> bool:
    """Whether a sync or demo draws its progress line (see `_progress_line`)."""
    return sys.stderr.isatty()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    words = sys.argv[1:] if argv is None else argv
    Parser.json_errors = _asks_for_json(words)
    Parser.config_keys = tuple(
        key for path in _config_paths(words) for key in keys_named_in(path, os.environ)
    )
    args = build_parser().parse_args(argv)
    args.events = None
    keys = keys_at_hand()
    try:
        _configure_logging(args, _log_format(args))
        # A proxy's user name is masked in messages, as it may be a token, but a path
        # holding it (a home folder named as the user) holds no key.
        _check_paths(args, keys_at_hand(proxy_user_names=False))
        return COMMANDS[args.command](args)
    except CrawlerError as exc:
        # A key pasted into a path or a host is said back in the message: never shown.
        events: JsonEvents | None = args.events
        if events is None:
            print(f"batch-crawler: {mask_keys(str(exc), keys)}", file=sys.stderr)
        elif not events.failure_told:  # the failure came before or outside a sync
            events(failure_event(exc, *keys))
        return exc.exit_code
    except _Stopped as stopped:
        if stopped.signum == signal.SIGTERM:
            return _stopped(args, "terminated", EXIT_TERMINATED)
        return _stopped(args, "interrupted", EXIT_INTERRUPTED)
    except KeyboardInterrupt:  # before or after the asynchronous work
        return _stopped(args, "interrupted", EXIT_INTERRUPTED)


# The paths a command takes, by the flag that names them.
_PATH_FLAGS = {"db": "--db", "config": "--config", "html": "--html", "output": "--output",
               "file": "FILE"}  # fmt: skip


def _check_paths(args: argparse.Namespace, keys: tuple[str, ...]) -> None:
    """Refuse a path holding the API key (half of it or more): a command says its paths
    back when it succeeds (`Wrote ...`), and names files and databases after them."""
    for name, flag in _PATH_FLAGS.items():
        path = getattr(args, name, None)
        # The key cut into folders too: a path is said back whole.
        spellings = () if path is None else (str(path), "".join(Path(path).parts))
        # Percent-encoded too: Datasette serves a database under its file's name, decoded.
        if any(url_holds_secret(text, key) for text in spellings for key in keys):
            raise ConfigError(f"{flag}: the path holds an API key (not shown); name it otherwise")


def _check_urls(accounts: list[Settings], keys: tuple[str, ...]) -> None:
    """Refuse a base URL, or a proxy outside its user name and password, holding a key at
    hand that is not the run's (the environment's other key, one a config file names): it
    would be logged, stored with every run, and sent in the URL (a host looked up by name)."""
    for settings in accounts:
        if any(url_holds_secret(settings.base_url, key) for key in keys):
            raise ConfigError(
                "base_url holds an API key (not shown); give the base URL alone and the key "
                "in the environment variable named by api_key_env"
            )
    for variable, url in environment_proxies().items():
        # Its own user name (an e-mail address on its domain, say) is no key to it.
        others = set(keys) - set(proxy_secrets(url))
        if any(url_holds_secret(without_credentials(url), key) for key in others):
            raise ConfigError(
                f"{variable} holds an API key (not shown); give the proxy's URL alone "
                "(http://host:port, a user and password before the host if it asks for them)"
            )


def _stopped(args: argparse.Namespace, how: str, exit_code: int) -> int:
    """Say that a signal stopped the command (a warning event in JSON); its exit code."""
    # Only a sync (the demo runs one) has anything to resume.
    message = f"{how}; the next sync resumes" if args.command in ("sync", "demo") else how
    events: JsonEvents | None = args.events
    if events is None:
        print(f"batch-crawler: {message}", file=sys.stderr)
    else:
        events(Event(WARNING, {"message": message, "exit_code": exit_code}, "warning"))
    return exit_code
