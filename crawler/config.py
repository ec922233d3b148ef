"""Settings: flags > environment > TOML file > defaults, merged and validated once."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import ConfigError
from .redact import (
    credentials,
    has_a_key_prefixed_word,
    holds_a_key_like_word,
    holds_secret_in_any_form,
    mask_error,
    mask_keys,
    variable_secrets,
)
from .setting_rules import (
    AZURE_ENDPOINT_EXAMPLE,
    DEFAULT_BASE_URL,
    account_name_problem,
    api_version_problem,
    check_setting,
    is_private_transport,
    setting_rule,
    shown,
)

# Environment variables read the way the official SDK reads them.
ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_ORGANIZATION = "OPENAI_ORG_ID"
ENV_PROJECT = "OPENAI_PROJECT_ID"
ENV_LOG_FORMAT = "BATCH_CRAWLER_LOG_FORMAT"
# Azure OpenAI's, as the official SDK's AzureOpenAI client reads them (provider = "azure").
ENV_AZURE_ENDPOINT = "AZURE_OPENAI_ENDPOINT"
ENV_AZURE_KEY = "AZURE_OPENAI_API_KEY"
# Entra ID's client secret, which `auth = "entra"` reads through azure-identity: base64 with
# `~` and `.`, of no key's shape.
ENV_CLIENT_SECRET = "AZURE_CLIENT_SECRET"
ENV_API_VERSION = "OPENAI_API_VERSION"


@dataclass(frozen=True)
class Settings:
    """Everything a sync needs to know; build it with `load_settings` or directly.

    The API key is held here but never shown: it is left out of `repr`.
    """

    db: Path = Path("batches.db")
    # The account's name in the database (see migrations/0010_accounts.sql).
    account: str = "default"
    # `openai`; `azure` (Azure OpenAI: the `api-key` header, `azure_endpoint`, and with
    # `api_version` the dated API, else the v1 API); `compatible` (an OpenAI-compatible list
    # that may not say has_more).
    provider: str = "openai"
    base_url: str = DEFAULT_BASE_URL
    azure_endpoint: str | None = None  # https://NAME.openai.azure.com; sets base_url
    api_version: str | None = None  # Azure's dated API, such as 2024-10-21
    # `key`, or with Azure `entra`: Microsoft Entra ID tokens instead (see crawler.entra).
    auth: str = "key"
    allow_insecure_http: bool = False
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = "OPENAI_API_KEY"
    # Variables holding other secrets a server may echo (a gateway's upstream keys): their
    # values are masked in what is shown and stored, as the key is (see variable_secrets).
    mask_env: tuple[str, ...] = ()
    organization: str | None = None
    project: str | None = None
    page_size: int = 100
    max_attempts: int = 8
    max_retry_seconds: float = 300.0
    # Per attempt: the whole answer, any silence while it comes, and opening the connection.
    # A page is tens of KB, answered in about a second: these are wide margins, not the
    # SDK's 600 s, which suits long completions.
    request_timeout: float = 60.0
    read_timeout: float = 30.0
    connect_timeout: float = 10.0
    max_pages: int | None = None
    max_seconds: float | None = None
    concurrency: int = 8
    requests_per_minute: float | None = None
    # The batches' request files: error files unless `files` is off, output files too with
    # `outputs`; response bodies (large, and the users' content) only with `bodies`.
    files: bool = True
    outputs: bool = False
    bodies: bool = False
    # How the command line logs: `text` for people, `json` (one object a line) for pipelines.
    log_format: str = "text"

    @property
    def file_kinds(self) -> tuple[str, ...]:
        """The kinds of request files a sync fetches."""
        if not self.files:
            return ()
        return ("error", "output") if self.outputs else ("error",)

    @property
    def has_credentials(self) -> bool:
        """Whether a run can authenticate: a key, or Entra ID tokens to ask for."""
        return bool(self.api_key) or self.auth == "entra"

    @property
    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the key (none with Entra ID: each request gets a token)."""
        if not self.api_key or self.auth == "entra":
            return {}
        if self.provider == "azure":
            return {"api-key": self.api_key}
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def query(self) -> dict[str, str]:
        """Query parameters every request carries: Azure's dated API wants its version."""
        return {"api-version": self.api_version} if self.api_version else {}

    def __post_init__(self) -> None:
        try:
            self._check()
        except ConfigError as exc:  # it may quote a value holding the key (a URL, a path)
            keys = [self.api_key] if isinstance(self.api_key, str) else []
            exc.args = (mask_keys(str(exc), keys),)
            # And the errors it came from (int() refusing the key, say) with it.
            exc.__cause__ = exc.__context__ = None
            raise
        object.__setattr__(self, "db", Path(self.db))
        object.__setattr__(self, "mask_env", tuple(self.mask_env))  # a TOML array
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def _check(self) -> None:
        """Every setting by its rule, and the rules between settings."""
        for f in dataclasses.fields(self):
            check_setting(f.name, getattr(self, f.name))
        # Sent in a header, said back by every command, or shown in every line and stored
        # with every batch.
        for name, said in _HOLDING_NO_KEY.items():
            if _holds_key(str(getattr(self, name) or ""), self.api_key):
                raise ConfigError(f"{name}: {said}")
        if self.auth == "entra" and self.provider != "azure":
            raise ConfigError('auth: "entra" is only for provider = "azure"')
        if self.api_version is not None and self.provider != "azure":
            raise ConfigError('api_version: only for provider = "azure"')
        if self.azure_endpoint is not None:
            if self.provider != "azure":
                raise ConfigError('azure_endpoint: only for provider = "azure"')
            if self.base_url != DEFAULT_BASE_URL:
                raise ConfigError("give azure_endpoint or base_url, not both")
            # The dated API lives under /openai, the v1 API under /openai/v1.
            path = "/openai" if self.api_version else "/openai/v1"
            object.__setattr__(self, "base_url", self.azure_endpoint.rstrip("/") + path)
        elif self.provider == "azure" and self.base_url == DEFAULT_BASE_URL:
            raise ConfigError(
                f'azure_endpoint: a value is required for provider = "azure" (or set '
                f"{ENV_AZURE_ENDPOINT}), such as {AZURE_ENDPOINT_EXAMPLE}"
            )
        if not self.allow_insecure_http and not is_private_transport(self.base_url):
            raise ConfigError(
                f"base_url: plain http to {urlsplit(self.base_url).hostname} would send the API "
                "key in clear text; use https, or allow it with --allow-insecure-http "
                "(allow_insecure_http = true in a config file)"
            )
        if url_holds_secret(self.base_url, self.api_key) or has_a_key_prefixed_word(
            urlsplit(self.base_url).path
        ):
            # It would be logged and stored with every run, and sent in the URL: a key (this
            # account's or another's) belongs in the header only.
            raise ConfigError(
                "base_url holds an API key, or a word spelled like one (not shown); give the "
                "base URL alone and the key in the environment variable named by api_key_env"
            )

    def missing_key_message(self) -> str:
        """What to tell a user who has no key (a key pasted as the variable's name is refused
        before: see setting_rules._variable_name)."""
        message = f"no API key: set {self.api_key_env} (or name another variable with api_key_env)"
        if self.provider == "azure":
            return f"{message}, or use Microsoft Entra ID instead of a key: --auth entra"
        return message


# Settings that hold no key, and what is said of one that does.
_HOLDING_NO_KEY = {
    "organization": "holds the API key (not shown); give the organization id alone, and the "
    "key in the variable api_key_env names",
    "project": "holds the API key (not shown); give the project id alone, and the key in the "
    "variable api_key_env names",
    "db": "the path holds the API key (not shown); name the file otherwise",
    "account": "the name holds the API key (not shown); name the account by what it is (a "
    "project, a team)",
}

# Keys a config file may set: every field but the key itself, which only the
# environment holds so that it never sits in a file next to the database.
CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(Settings) if f.name != "api_key")

# Keys an `[accounts.NAME]` table may set: all but those of the whole run.
ACCOUNT_KEYS = tuple(k for k in CONFIG_KEYS if k not in {"db", "log_format", "account"})

# Flags that name one account's API: with several accounts, their tables say it.
_ACCOUNT_FLAGS = ("base_url", "provider", "azure_endpoint", "api_version", "auth")


def _holds_key(value: str | None, key: str | None) -> bool:
    """Whether a setting's `value` holds `key`, or half of it or more, as stored data is
    searched (see holds_secret): not a key shorter than 16 characters (a placeholder such as
    `x`, which ordinary values spell)."""
    return bool(value and key and holds_secret_in_any_form(value, key))


# A config file is a few lines: one larger is none (and is not read for the keys it names).
MAX_CONFIG_BYTES = 2**20


def keys_named_in(path: Path, env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of `env` the config file at `path` names as keys or secrets
    (`api_key_env`, `mask_env`, its accounts' too), read before the command line is checked:
    a key pasted into a flag is masked whatever its shape. None from a file that cannot be
    read (said later)."""
    try:
        found = path.stat()
        # Not a FIFO (it would wait for a writer), nor a file no config is (read later).
        if not stat.S_ISREG(found.st_mode) or found.st_size > MAX_CONFIG_BYTES:
            return ()
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        return ()
    return _secrets_named(data, env)


def _secrets_named(data: Mapping[str, Any], env: Mapping[str, str], *names: str) -> tuple[str, ...]:
    """The values of `env` a config file names as keys or secrets (and those of `names`)."""
    keys = (env.get(name, "").strip() for name in {*names, *_key_variables(data)})
    masked = (
        one
        for name in _variables_to_mask(data)
        for one in variable_secrets(env.get(name, ""), any_shape=True)
    )
    return tuple(sorted({*keys, *masked} - {""}))


def _tables(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A config file's tables of settings: the file's, and its accounts'."""
    accounts = data.get("accounts")
    tables = [data, *(accounts.values() if isinstance(accounts, dict) else ())]
    return [table for table in tables if isinstance(table, dict)]


def _key_variables(data: Mapping[str, Any]) -> set[str]:
    """The variables a config file names as holding a key (`api_key_env`)."""
    names = (table.get("api_key_env") for table in _tables(data))
    return {name for name in names if isinstance(name, str)}


def _variables_to_mask(data: Mapping[str, Any]) -> set[str]:
    """The variables a config file names as holding other secrets (`mask_env`)."""
    lists = (table.get("mask_env") for table in _tables(data))
    names = (name for one in lists if isinstance(one, list) for name in one)
    return {name for name in names if isinstance(name, str)}


def read_config_file(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read a TOML config file into a dict of known keys, or raise ConfigError.

    A file TOML cannot read names no variable holding a key: what the parser says of it
    (which quotes the file: a table named by a key, declared twice) has each value of
    `env` of 16 characters or more masked, as a key is in messages (runs of it too)."""
    try:
        found = path.stat()
        if not stat.S_ISREG(found.st_mode):
            # Opening a FIFO would wait for a writer for good.
            raise ConfigError(f"config file {path} is not a regular file")
        if found.st_size > MAX_CONFIG_BYTES:  # keys_named_in reads none such
            raise ConfigError(f"config file {path} is over 1 MiB: no config file is")
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except RecursionError:
        raise ConfigError(f"config file {path} is not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        values = {v.strip() for v in (env or {}).values() if len(v.strip()) >= 16}
        said = mask_keys(str(exc), values)
        raise ConfigError(f"config file {path} is not valid TOML: {said}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except ValueError:  # what TOML reads past its own checks: an integer of 4,300+ digits
        raise ConfigError(f"config file {path} is not valid TOML: a number too long") from None
    return data


def _check_config_keys(path: Path, data: dict[str, Any]) -> None:
    """The keys a config file may have, and its `[accounts.NAME]` tables'."""
    unknown = sorted(set(data) - {*CONFIG_KEYS, "accounts"})
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key {_name_shown(unknown[0])} (known keys: "
            f"{', '.join(CONFIG_KEYS)})"
        )
    if "accounts" in data:
        _check_account_tables(path, data["accounts"])


def _named_keys(from_file: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, ...]:
    """The keys the variables a config file names hold (and the default ones), masked in
    what its checks say: a key pasted as a value there is said back otherwise, since the
    values are checked before the keys are read."""
    return _secrets_named(from_file, env, Settings.api_key_env, ENV_AZURE_KEY)


@contextlib.contextmanager
def _masking_named_keys(from_file: Mapping[str, Any], env: Mapping[str, str]) -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        mask_error(exc, _named_keys(from_file, env))
        raise


def _masked_by_every_account(tables: list[dict[str, Any]]) -> dict[str, Any]:
    """The `mask_env` lists of a file's tables as one, for every account to mask: a gateway
    may echo any account's upstream secret in an answer to another (an account's list
    replaced the file's, and one account's was masked in another's data only while its own
    run went, 90A). None while one is refused (said by its table)."""
    lists = [table["mask_env"] for table in tables if "mask_env" in table]
    if not lists or any(setting_rule("mask_env").problem(one) for one in lists):
        return {}
    return {"mask_env": tuple(dict.fromkeys(name for one in lists for name in one))}


def _check_account_tables(path: Path, tables: Any) -> None:
    """`[accounts.NAME]` tables: names and keys an account may have."""
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f"config file {path}: accounts must be [accounts.NAME] tables")
    if not tables:
        raise ConfigError(
            f"config file {path}: [accounts] names no account: add [accounts.NAME] tables, "
            "or remove it for one account"
        )
    for name, table in tables.items():
        problem = account_name_problem(name)
        table_name = "NAME" if holds_a_key_like_word(name) else name
        if problem:
            raise ConfigError(f"config file {path}: [accounts.{table_name}]: {problem}")
        unknown = sorted(set(table) - set(ACCOUNT_KEYS))
        if unknown:
            raise ConfigError(
                f"config file {path}: [accounts.{table_name}]: unknown key "
                f"{_name_shown(unknown[0])} (an account may set: {', '.join(ACCOUNT_KEYS)})"
            )


def _name_shown(name: str) -> str:
    """A setting's name as a message quotes it: a key pasted as one is not shown."""
    return (
        "(a name not shown here: it may hold a secret)"
        if holds_a_key_like_word(name)
        else repr(name)
    )


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
    from_file = {} if config_file is None else read_config_file(config_file, env)
    with _masking_named_keys(from_file, env):
        if config_file is not None:
            _check_config_keys(config_file, from_file)
        if "accounts" in from_file:
            raise ConfigError(
                f"config file {config_file} names several accounts: load them with load_accounts"
            )
        return _settings(from_file, env, flags, config_file)


def load_accounts(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: Path | None = None,
    only: Sequence[str] = (),
) -> list[Settings]:
    """Every account a sync reads: the config file's `[accounts.NAME]` tables, each over the
    file's other settings, or else the one account `load_settings` gives; `only` names
    those to keep.

    The environment's OpenAI and Azure variables (base URL, organization, project,
    endpoint, version) describe one account: named accounts take theirs from their tables,
    and their keys from the variables their `api_key_env` names.

    Raises:
        ConfigError: as load_settings; a flag naming one account's API given for several,
            or an account in `only` that the configuration does not name.
    """
    from_file = {} if config_file is None else read_config_file(config_file, env)
    with _masking_named_keys(from_file, env):
        if config_file is not None:
            _check_config_keys(config_file, from_file)
        return _accounts(flags, env, config_file, from_file, only)


def _accounts(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: Path | None,
    from_file: dict[str, Any],
    only: Sequence[str],
) -> list[Settings]:
    from_file = dict(from_file)
    tables: dict[str, dict[str, Any]] = from_file.pop("accounts", {})
    if not tables:
        accounts = [_settings(from_file, env, flags, config_file)]
    else:
        given = sorted(k for k in _ACCOUNT_FLAGS if flags.get(k) is not None)
        if given:
            option = "--" + given[0].replace("_", "-")
            raise ConfigError(
                f"{option} names one account's API, and {config_file} names several: "
                "set it in their [accounts.NAME] tables"
            )
        masked = _masked_by_every_account([from_file, *tables.values()])
        accounts = [
            _settings(
                {**from_file, **table, **masked, "account": name}, env, flags, config_file, name
            )
            for name, table in tables.items()
        ]
    check_accounts(accounts)
    names = [a.account for a in accounts]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise ConfigError(
            f"no account here is named {shown(unknown[0])} (accounts: {', '.join(names)})"
        )
    return [a for a in accounts if not only or a.account in only]


def check_accounts(accounts: Sequence[Settings]) -> None:
    """The rules between accounts synced together: one database, names of their own, and
    no account's key in another's name (shown in every line, stored with every batch), its
    organization or project (sent to its API), or its base URL (sent, and stored).

    Raises:
        ConfigError: an account breaks one (no key shown).
    """
    names = [a.account for a in accounts]
    if len({a.db for a in accounts}) > 1 or len(set(names)) < len(names):
        raise ConfigError("accounts synced together need one database and names of their own")
    for account in accounts:
        if any(_holds_key(account.account, other.api_key) for other in accounts):
            raise ConfigError(
                "an account's name holds an account's API key (not shown); name each account "
                "([accounts.NAME]) by what it is (a project, a team)"
            )
        for name in ("organization", "project"):  # sent to the account's API
            if any(_holds_key(getattr(account, name), other.api_key) for other in accounts):
                raise ConfigError(
                    f"[accounts.{account.account}]: {name} holds an account's API key (not "
                    f"shown); give the {name} id alone"
                )
        if any(url_holds_secret(account.base_url, other.api_key) for other in accounts):
            raise ConfigError(
                f"[accounts.{account.account}]: base_url holds another account's API key (not "
                "shown); give the base URL alone"
            )


# How many times a URL is decoded when searched for a key (see url_holds_secret).
URL_DECODINGS = 4


def url_holds_secret(url: str, secret: str | None) -> bool:
    """Whether a URL holds `secret` (half of it or more), as written or as read: its
    percent-escapes decoded, again (a server or proxy may decode once more), a few times
    (each decoding of a long URL nested deeper costs as long again)."""
    for _ in range(URL_DECODINGS + 1):
        if holds_secret_in_any_form(url, secret):
            return True
        decoded = unquote(url)
        if decoded == url:
            return False
        url = decoded
    return False


def environment_proxies() -> dict[str, str]:
    """The proxies the environment names (HTTPS_PROXY, https_proxy, ALL_PROXY, ...), by
    variable: each spelling, since urllib keeps one a scheme and other programs sharing the
    environment (a gateway) may read the other."""
    return {
        name: url
        for name, url in os.environ.items()
        if name.lower().endswith("_proxy") and name.lower() != "no_proxy" and url.strip()
    }


def proxy_secrets(url: str, *, user_name: bool = True) -> tuple[str, ...]:
    """What of a proxy URL is masked as the key is (see credentials), as sent (decoded
    once), and its password as written too: a proxy may echo it either way. Without
    `user_name`, the password alone."""
    # Without a scheme (`user:password@host:port`), as curl and httpx read it: urllib takes
    # the user name for a scheme, and finds no password.
    url = url.strip().strip("\"'")  # quoted, as an `--env-file` leaves it
    url = url if "://" in url else f"http://{url}"
    try:
        parts = urlsplit(url)
        login, password = parts.username if user_name else None, parts.password
    except ValueError:
        return ()
    found = credentials(unquote(login or ""), None if password is None else unquote(password))
    return tuple(sorted({*found, *([password] if password else [])}))


def without_credentials(url: str) -> str:
    """A URL without the user name and password it may hold (`//user:password@`)."""
    try:
        parts = urlsplit(url)
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    except ValueError:
        return url.rpartition("@")[2]


def _settings(
    from_file: dict[str, Any],
    env: Mapping[str, str],
    flags: Mapping[str, Any],
    config_file: Path | None,
    table: str | None = None,
) -> Settings:
    """Settings from the layers: a file's (or its account `table`'s) values, the
    environment's (its account variables only for no table), the flags'."""
    where = f"config file {config_file}" + (f", [accounts.{table}]" if table else "")
    try:
        # Key by key: a rule across keys (http needs allow_insecure_http) is checked
        # once every layer is merged, since a flag may satisfy it.
        for key, value in from_file.items():
            check_setting(key, value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    given = {k: v for k, v in flags.items() if v is not None}
    azure = given.get("provider", from_file.get("provider")) == "azure"
    from_env = _from_env(env, azure=azure)
    if table is not None:
        from_env = {k: v for k, v in from_env.items() if k == "log_format"}
    merged: dict[str, Any] = {}
    for layer in (from_file, from_env, given):
        # base_url and azure_endpoint say the same thing: the layer above wins either way.
        for one, other in (("base_url", "azure_endpoint"), ("azure_endpoint", "base_url")):
            if one in layer:
                merged.pop(other, None)
        merged.update(layer)
    if azure:
        merged.setdefault("api_key_env", ENV_AZURE_KEY)
    key_env = merged.get("api_key_env", Settings.api_key_env)
    # A key copied with a space or a newline around it is still the key.
    key = env.get(key_env, "").strip() if isinstance(key_env, str) else ""
    if key:
        merged["api_key"] = key
    try:
        return Settings(**merged)
    except ConfigError as exc:
        if table is None:
            raise
        # A rule between settings: the table's, or the file's above it.
        raise ConfigError(f"{where}: {exc}") from None


def _from_env(env: Mapping[str, str], *, azure: bool) -> dict[str, Any]:
    """The settings the environment gives, read as the official SDK reads them: for Azure
    OpenAI, its endpoint and API version, and not OPENAI_BASE_URL (OpenAI's endpoint)."""
    names = {
        "organization": ENV_ORGANIZATION,
        "project": ENV_PROJECT,
        "log_format": ENV_LOG_FORMAT,
        **(
            {"azure_endpoint": ENV_AZURE_ENDPOINT, "api_version": ENV_API_VERSION}
            if azure
            else {"base_url": ENV_BASE_URL}
        ),
    }
    values: dict[str, Any] = {key: env[var] for key, var in names.items() if env.get(var)}
    if api_version_problem(values.get("api_version", "2024-10-21")):
        # The SDK's `preview` (the v1 API's) or another tool's value: not a dated version.
        del values["api_version"]
    if "log_format" in values:  # "JSON", as dlt spells it, is json too
        values["log_format"] = values["log_format"].strip().lower()
    return values
