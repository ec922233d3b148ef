"""What values each setting takes: the checks that the config file, the environment and the
command line share, so that a value is refused with the same words wherever it comes from."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError
from .redact import holds_a_key_like_word, looks_like_secret, spelled_as_a_secret

DEFAULT_BASE_URL = "https://api.openai.com/v1"
AZURE_ENDPOINT_EXAMPLE = "https://NAME.openai.azure.com"

PROVIDERS = ("openai", "azure", "compatible")
AUTH_MODES = ("key", "entra")  # with Azure, entra: Microsoft Entra ID tokens instead of a key

LOG_FORMATS = ("text", "json")


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
            raise ValueError(f"expected {noun}, got {shown(text)}") from None

    return convert


def integer_rule(low: int, high: int | None = None) -> Rule:
    """Whole numbers from `low` to `high` (no upper bound when None)."""

    def problem(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expected an integer, got {shown(value)}"
        if high is not None and not low <= value <= high:
            return f"must be between {low} and {high}, got {_number_shown(value)}"
        if value < low:
            return f"must be at least {low}, got {_number_shown(value)}"
        return None

    return Rule(problem, _convert(int, "an integer"))


def number_rule(what: str, ok: Callable[[float], bool]) -> Rule:
    """Finite numbers for which `ok` holds; `what` names them ("a positive number of seconds")."""

    def problem(value: Any) -> str | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"expected {what}, got {shown(value)}"
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer wider than any float
            return f"must be {what}, got {_number_shown(value)}"
        if not finite:
            return f"expected a finite number, got {value}"
        if not ok(value):
            return f"must be {what}, got {value}"
        return None

    return Rule(problem, _convert(float, "a number"))


def _number_shown(value: int | float) -> str:
    """`value` as a message shows it: an integer of hundreds of digits by its length."""
    digits = str(value)
    return digits if len(digits) <= 24 else f"an integer of {len(digits.lstrip('-'))} digits"


_SECONDS = number_rule("a positive number of seconds", lambda v: v > 0)
# A timeout past an hour is a typo, and past about 1e9 s asyncio cannot even schedule it.
_TIMEOUT = number_rule("a number of seconds above 0 and at most 3600", lambda v: 0 < v <= 3600)


def _header_text(value: Any) -> str | None:
    """A value sent in an HTTP header; the value itself is never echoed (it may be the key)."""
    if not isinstance(value, str) or not value.strip():
        return "expected a non-empty string"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character (a stray newline or carriage return?)"
    return None


def _account_id(prefix: str) -> Callable[[Any], str | None]:
    """An organization or project id (sent in a header of its own, so never the key)."""

    def problem(value: Any) -> str | None:
        header_problem = _header_text(value)
        if header_problem is not None:
            return header_problem
        if value.split() != [value]:
            return f"expected one id ({prefix}…), without spaces"
        if looks_like_secret(value) and not value.startswith(prefix):
            return (
                f"looks like an API key, not an id ({prefix}…); the key goes in the variable "
                "api_key_env names"
            )
        return None

    return problem


def _path(value: Any) -> str | None:
    if not isinstance(value, str | Path) or not str(value) or "\x00" in str(value):
        return f"expected a file path, got {shown(value)}"
    if str(value) == ":memory:":
        return "expected a file path; SQLite's :memory: would keep nothing"
    return None


def shown(value: Any) -> str:
    """`value` for an error message, unless it may hold a secret (a text of it, a list's or
    a table's too)."""
    if any(
        looks_like_secret(text) or "@" in text or holds_a_key_like_word(text)
        for text in _texts_of(value)
    ):
        return "a value not shown here (it may hold a secret)"
    return _spelled(value)


def _texts_of(value: Any) -> list[str]:
    """Every text `value` holds: itself, or those of its items (a table's keys too)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _texts_of(item)]
    if isinstance(value, dict):
        return [text for k, v in value.items() for text in (str(k), *_texts_of(v))]
    return []


def _spelled(value: Any) -> str:
    """`value` as TOML spells it (`true`, `"text"`, `[1, 2]`): settings come from a config
    file most often, and Python's spelling (`True`, `'text'`) would read as another value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[{}]".format(", ".join(map(_spelled, value)))
    if isinstance(value, dict):
        return "{{ {} }}".format(", ".join(f"{k} = {_spelled(v)}" for k, v in value.items()))
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)  # a number, as TOML spells it (inf and nan too)


def _url_like(example: str) -> Callable[[Any], str | None]:
    """A base URL's rule, `example` quoted as one."""

    def problem(value: Any) -> str | None:
        parts = split_url(value)
        if parts is None:
            return f"expected an http(s) URL such as {example}, got {shown(value)}"
        return _url_extras(value, parts, example)

    return problem


def split_url(value: Any) -> SplitResult | None:
    """The parts of `value` if it is an http(s) URL with a valid host and port, else None."""
    if not isinstance(value, str) or any(ord(c) <= 32 or ord(c) == 127 for c in value):
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError when out of range
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not _is_host(parts):
        return None
    return parts


# A label of a host name, as IDNA spells it; `_` too, which container networks name hosts with.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")


def _is_host(parts: SplitResult) -> bool:
    """Whether `parts` names a host: an address, or a name of letters, digits and hyphens
    (IDNA's spelling). Brackets hold an IPv6 address alone (urllib takes `[v1.x]` too, which
    aiohttp looks up as the name v1.x)."""
    host = parts.hostname
    if not host:
        return False
    if parts.netloc.rpartition("@")[2].startswith("["):
        try:
            return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
        except ValueError:
            return False
    try:
        name = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in name.removesuffix(".").split("."))


def _url_extras(value: str, parts: SplitResult, example: str) -> str | None:
    """What `value` holds besides a base URL: credentials, a query or a fragment."""
    # aiohttp refuses credentials in the URL next to the Authorization header, and the URL is
    # stored in sync_runs: a password must never get that far.
    if "@" in parts.netloc:
        return (
            "must not hold a user name or password (user:password@...); the API key goes "
            "in the environment variable named by api_key_env"
        )
    # Paths are appended to the base URL, so a query or a fragment would end up mid-URL.
    alone = f"give the API's base URL alone, such as {example}"
    if "?" in value.partition("#")[0]:
        return f"query parameters (?...) are not supported; {alone}"
    if "#" in value:
        return f"a fragment (#...) is not supported; {alone}"
    return None


def is_private_transport(url: str) -> bool:
    """Whether the key sent to `url` stays out of sight: https, or http to this machine."""
    return urlsplit(url).scheme != "http" or is_on_this_machine(url)


def is_on_this_machine(url: str) -> bool:
    """Whether `url`'s host is this machine: localhost or a loopback address."""
    # Not "localhost." with its trailing dot: that name is for DNS to resolve, not the hosts file.
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # ::ffff:127.0.0.1 is 127.0.0.1, whichever Python version says so.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _variable_name(value: Any) -> str | None:
    if isinstance(value, str) and _VARIABLE_NAME.fullmatch(value):
        if not spelled_as_a_secret(value):
            return None
        return (
            "must name the environment variable that holds the key, such as "
            "OPENAI_API_KEY, not the key itself; got a value spelled as a key (not shown)"
        )
    # A value this long, no variable's name, is likely the key pasted, whatever its shape.
    long = any(len(text) >= 16 for text in _texts_of(value))
    got = "a value not shown" if long else shown(value)
    return (
        "must name the environment variable that holds the key (letters, digits and _, not "
        f"starting with a digit), such as OPENAI_API_KEY, not the key itself; got {got}"
    )


def _variable_names(value: Any) -> str | None:
    expected = (
        "expected a list of the names of environment variables holding secrets, such as "
        '["ANTHROPIC_API_KEY"], not the secrets themselves'
    )
    if not isinstance(value, list | tuple):
        return f"{expected}; got a value not shown (it may hold a secret)"
    # An item that is none is not shown, whatever its length: a secret pasted there.
    wrong = next((at for at, name in enumerate(value, 1) if _variable_name(name)), None)
    if wrong is not None:
        return (
            f"{expected}; item {wrong} is no variable's name, or is spelled as a secret (not "
            "shown: it may be one)"
        )
    return None


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    """The check of a setting that takes one of `choices`."""

    def problem(value: Any) -> str | None:
        if value not in choices:
            return f"expected one of {', '.join(choices)}, got {shown(value)}"
        return None

    return problem


# Azure's API versions: a date, and for previews `-preview`.
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")


def api_version_problem(value: Any) -> str | None:
    if isinstance(value, str) and _API_VERSION.fullmatch(value):
        return None
    return f"expected a version such as 2024-10-21 or 2025-04-01-preview, got {shown(value)}"


_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def account_name_problem(value: Any) -> str | None:
    if looks_like_secret(value):
        return (
            "looks like an API key, not a name: name the account, and give its key in the "
            "variable its api_key_env names"
        )
    if isinstance(value, str) and _ACCOUNT_NAME.fullmatch(value):
        return None
    return (
        "expected a name of letters, digits, '_', '-' and '.' (64 at most, starting with a "
        f"letter or digit), got {shown(value)}"
    )


def _flag(value: Any) -> str | None:
    if not isinstance(value, bool):
        return f"expected true or false, got {shown(value)}"
    return None


def _convert_flag(text: str) -> bool:
    try:
        return {"true": True, "false": False}[text.lower()]
    except KeyError:
        raise ValueError(f"expected true or false, got {shown(text)}") from None


_RULES: dict[str, Rule] = {
    "db": Rule(_path),
    "base_url": Rule(_url_like(DEFAULT_BASE_URL)),
    "allow_insecure_http": Rule(_flag, _convert_flag),
    "api_key": Rule(_header_text),
    "api_key_env": Rule(_variable_name),
    "mask_env": Rule(_variable_names),
    "organization": Rule(_account_id("org-")),
    "project": Rule(_account_id("proj_")),
    "page_size": integer_rule(1, 100),
    "max_attempts": integer_rule(1, 100),
    "max_retry_seconds": _SECONDS,
    "request_timeout": _TIMEOUT,
    "read_timeout": _TIMEOUT,
    "connect_timeout": _TIMEOUT,
    "max_pages": integer_rule(1),
    "max_seconds": _SECONDS,
    "concurrency": integer_rule(1, 64),
    # Under one a minute, a sync of any size would take days, silently.
    "requests_per_minute": number_rule("at least 1 request per minute", lambda v: v >= 1),
    "files": Rule(_flag, _convert_flag),
    "outputs": Rule(_flag, _convert_flag),
    "bodies": Rule(_flag, _convert_flag),
    "log_format": Rule(_one_of(LOG_FORMATS)),
    "account": Rule(account_name_problem),
    "provider": Rule(_one_of(PROVIDERS)),
    "azure_endpoint": Rule(_url_like(AZURE_ENDPOINT_EXAMPLE)),
    "api_version": Rule(api_version_problem),
    "auth": Rule(_one_of(AUTH_MODES)),
}
_OPTIONAL = {
    "api_key",
    "azure_endpoint",
    "api_version",
    "organization",
    "project",
    "max_pages",
    "max_seconds",
    "requests_per_minute",
}


def check_setting(name: str, value: Any) -> None:
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
