"""Settings: flags > environment > TOML file > defaults, merged and validated once."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Environment variables read the way the official SDK reads them.
ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_ORGANIZATION = "OPENAI_ORG_ID"
ENV_PROJECT = "OPENAI_PROJECT_ID"


@dataclass(frozen=True)
class Settings:
    """Everything a sync needs to know; build it with `load_settings` or directly.

    The API key is held here but never shown: it is left out of `repr`.
    """

    db: Path = Path("batches.db")
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = "OPENAI_API_KEY"
    organization: str | None = None
    project: str | None = None
    page_size: int = 100
    max_attempts: int = 8
    max_retry_seconds: float = 300.0
    request_timeout: float = 120.0
    connect_timeout: float = 10.0
    max_pages: int | None = None
    max_seconds: float | None = None
    concurrency: int = 8
    requests_per_minute: float | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f.name, getattr(self, f.name))
        object.__setattr__(self, "db", Path(self.db))
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))


# Keys a config file may set: every field but the key itself, which only the
# environment holds so that it never sits in a file next to the database.
CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(Settings) if f.name != "api_key")


@dataclass(frozen=True)
class Rule:
    """What values a setting takes: `problem` says what is wrong with a value (None: nothing),
    `convert` reads one from command-line text. The config file, the environment and the
    command line are all checked by the same rules."""

    problem: Callable[[Any], str | None]
    convert: Callable[[str], Any] = str

    def from_text(self, text: str) -> Any:
        """The value `text` spells, checked.

        Raises:
            ValueError: its message says what is wrong, without naming the setting.
        """
        value = self.convert(text)
        problem = self.problem(value)
        if problem:
            raise ValueError(problem)
        return value


def _convert(kind: type[int] | type[float], noun: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"expected {noun}, got {text!r}") from None

    return convert


def integer_rule(low: int, high: int | None = None) -> Rule:
    """Whole numbers from `low` to `high` (no upper bound when None)."""

    def problem(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expected an integer, got {value!r}"
        if high is not None and not low <= value <= high:
            return f"must be between {low} and {high}, got {value}"
        if value < low:
            return f"must be at least {low}, got {value}"
        return None

    return Rule(problem, _convert(int, "an integer"))


def number_rule(what: str, ok: Callable[[float], bool]) -> Rule:
    """Finite numbers for which `ok` holds; `what` names them ("a positive number of seconds")."""

    def problem(value: Any) -> str | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"expected {what}, got {value!r}"
        if not math.isfinite(value):
            return f"expected a finite number, got {value}"
        if not ok(value):
            return f"must be {what}, got {value}"
        return None

    return Rule(problem, _convert(float, "a number"))


_SECONDS = number_rule("a positive number of seconds", lambda v: v > 0)


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"expected a non-empty string, got {value!r}"
    return None


def _header_text(value: Any) -> str | None:
    """A value sent in an HTTP header; the value itself is never echoed (it may be the key)."""
    if not isinstance(value, str) or not value:
        return "expected a non-empty string"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character (a stray newline or carriage return?)"
    return None


def _path(value: Any) -> str | None:
    if not isinstance(value, str | Path) or not str(value) or "\x00" in str(value):
        return f"expected a file path, got {value!r}"
    return None


def _url(value: Any) -> str | None:
    problem = f"expected an http(s) URL such as {DEFAULT_BASE_URL}, got {value!r}"
    if not isinstance(value, str) or any(ord(c) <= 32 or ord(c) == 127 for c in value):
        return problem
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port  # raises ValueError when out of range
        if host:
            host.encode("idna")
    except (ValueError, UnicodeError):
        return problem
    if parts.scheme not in {"http", "https"} or not host:
        return problem
    return None


_RULES: dict[str, Rule] = {
    "db": Rule(_path),
    "base_url": Rule(_url),
    "api_key": Rule(_header_text),
    "api_key_env": Rule(_text),
    "organization": Rule(_header_text),
    "project": Rule(_header_text),
    "page_size": integer_rule(1, 100),
    "max_attempts": integer_rule(1, 100),
    "max_retry_seconds": _SECONDS,
    "request_timeout": _SECONDS,
    "connect_timeout": _SECONDS,
    "max_pages": integer_rule(1),
    "max_seconds": _SECONDS,
    "concurrency": integer_rule(1, 64),
    "requests_per_minute": number_rule("a positive number of requests per minute", lambda v: v > 0),
}
_OPTIONAL = {
    "api_key",
    "organization",
    "project",
    "max_pages",
    "max_seconds",
    "requests_per_minute",
}


def _check(name: str, value: Any) -> None:
    """Raise ConfigError naming the setting if `value` is not acceptable for it."""
    if value is None:
        if name in _OPTIONAL:
            return
        raise ConfigError(f"{name}: a value is required")
    problem = _RULES[name].problem(value)
    if problem:
        raise ConfigError(f"{name}: {problem}")


def setting_rule(name: str) -> Rule:
    """The rule that values of setting `name` follow, wherever they come from."""
    return _RULES[name]


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file into a dict of known keys, or raise ConfigError."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key {unknown[0]!r} (known keys: {', '.join(CONFIG_KEYS)})"
        )
    return data


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: Path | None = None,
) -> Settings:
    """Merge the layers into validated Settings.

    Args:
        flags: values given on the command line; None means "not given".
        env: the process environment.
        config_file: an optional TOML file whose keys are `CONFIG_KEYS`.

    Raises:
        ConfigError: a value is invalid; the message names the key and, for a
            file, the file.
    """
    merged: dict[str, Any] = {}
    if config_file is not None:
        from_file = read_config_file(config_file)
        try:
            Settings(**from_file)
        except ConfigError as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from None
        merged.update(from_file)
    for key, var in (
        ("base_url", ENV_BASE_URL),
        ("organization", ENV_ORGANIZATION),
        ("project", ENV_PROJECT),
    ):
        if env.get(var):
            merged[key] = env[var]
    merged.update({k: v for k, v in flags.items() if v is not None})
    key_env = merged.get("api_key_env", Settings.api_key_env)
    if isinstance(key_env, str) and env.get(key_env):
        merged["api_key"] = env[key_env]
    return Settings(**merged)
