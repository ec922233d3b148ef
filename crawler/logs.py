"""Where the command line's logs go: text lines for people, or JSON lines for pipelines."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import TextIO

from .events import RUN_FAILED, Event, Level
from .redact import Secret, mask_keys

_LEVELS: dict[int, Level] = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}
_TEXT_LINE = "%(levelname)s %(name)s: %(message)s"


class JsonEvents:
    """An event handler that writes each event as one JSON line to `stream`, the keys at
    hand (`keys`) masked in the `run_failed` event's message, the command's last word, as
    they are in a text log's last line (pass 79A: a key the run does not use, echoed by a
    gateway, was shown there)."""

    def __init__(self, stream: TextIO, keys: Iterable[Secret] = ()) -> None:
        self._stream = stream
        self._keys = tuple(keys)
        self.failure_told = False  # a run_failed event was written

    def __call__(self, event: Event) -> None:
        if event.name == RUN_FAILED:
            self.failure_told = True
            message = mask_keys(str(event.fields["message"]), self._keys)
            event = dataclasses.replace(event, fields={**event.fields, "message": message})
        self._stream.write(event.json_line())
        self._stream.flush()


class JsonRecords(logging.Formatter):
    """Formats a log record as a `log` event, so that stderr holds JSON lines only."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {"logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        level = _LEVELS.get(record.levelno, "error")
        return Event("log", fields, level, record.created).json_line().rstrip("\n")


def configure_logging(verbose: int, *, json_lines: bool, quiet: bool, progress_line: bool) -> None:
    """Log to stderr: errors, and unless `quiet` our own warnings; -v: more; -vv: every request.

    Our own warnings (an Entra ID renewal failing) are worth a line in every log: a pipeline
    reading JSON would hear of them only when the run failed. A retry is one of them, so that
    a run waiting on a slow or failing server says so (a cron job's mail, a CI log), unless
    something else tells it: the `retry` events of a JSON log, or the progress line.
    """
    level = {0: logging.ERROR, 1: logging.WARNING}.get(verbose, logging.DEBUG)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonRecords() if json_lines else logging.Formatter(_TEXT_LINE))
    if json_lines or (progress_line and verbose == 0):
        handler.addFilter(lambda r: not (r.name == "crawler.api" and r.levelno == logging.WARNING))
    if level > logging.WARNING and (json_lines or not quiet):
        level = logging.WARNING
        # Only ours: other libraries' warnings stay hidden without -v, as they always were.
        handler.addFilter(lambda r: r.levelno >= logging.ERROR or r.name.startswith("crawler."))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # aiosqlite's debug log echoes every row written: far too much, and never useful here.
    logging.getLogger("aiosqlite").setLevel(max(level, logging.INFO))
