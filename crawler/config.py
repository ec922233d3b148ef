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


def _integer(low: int, high: int | None) -> Callable[[Any], str | None]:
    def problem(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expected an integer, got {value!r}"
        if value < low or (high is not None and value > high):
            return (
                f"must be between {low} and {high}, got {value}"
                if high
                else (f"must be at least {low}, got {value}")
            )
        return None

    return problem


def _positive_number(unit: str) -> Callable[[Any], str | None]:
    def problem(value: Any) -> str | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"expected a number of {unit}, got {value!r}"
        if not math.isfinite(value) or value <= 0:
            return f"must be a positive number of {unit}, got {value}"
        return None

    return problem


_seconds = _positive_number("seconds")


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


_RULES: dict[str, Callable[[Any], str | None]] = {
    "db": _path,
    "base_url": _url,
    "api_key": _header_text,
    "api_key_env": _text,
    "organization": _header_text,
    "project": _header_text,
    "page_size": _integer(1, 100),
    "max_attempts": _integer(1, 100),
    "max_retry_seconds": _seconds,
    "request_timeout": _seconds,
    "connect_timeout": _seconds,
    "max_pages": _integer(1, None),
    "max_seconds": _seconds,
    "concurrency": _integer(1, 64),
    "requests_per_minute": _positive_number("requests per minute"),
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
    problem = _RULES[name](value)
    if problem:
        raise ConfigError(f"{name}: {problem}")


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
