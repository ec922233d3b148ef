"""Settings: layering, validation with named keys, and the example config file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from crawler.cli import main
from crawler.config import CONFIG_KEYS, Settings, load_accounts, load_settings
from crawler.errors import ConfigError
from crawler.setting_rules import DEFAULT_BASE_URL

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    """With nothing given, the documented defaults apply and no key is set."""
    settings = load_settings({}, {})
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.db == Path("batches.db")
    assert settings.page_size == 100
    assert settings.api_key is None


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    """Each layer overrides the one below it, key by key."""
    config = write(tmp_path, 'base_url = "https://file/v1"\npage_size = 10\nproject = "p-file"\n')
    env = {"OPENAI_BASE_URL": "https://env/v1", "OPENAI_PROJECT_ID": "p-env"}
    settings = load_settings({"page_size": 20, "base_url": None}, env, config)
    assert settings.base_url == "https://env/v1"
    assert settings.page_size == 20
    assert settings.project == "p-env"
    flagged = load_settings({"base_url": "https://flag/v1/"}, env, config)
    assert flagged.base_url == "https://flag/v1"


def test_key_comes_from_the_named_variable(tmp_path: Path) -> None:
    """api_key_env names the variable that holds the key."""
    config = write(tmp_path, 'api_key_env = "MY_KEY"\n')
    env = {"OPENAI_API_KEY": "sk-default", "MY_KEY": "sk-mine"}
    assert load_settings({}, env, config).api_key == "sk-mine"
    assert load_settings({}, env).api_key == "sk-default"


def test_org_and_project_from_env() -> None:
    """OPENAI_ORG_ID and OPENAI_PROJECT_ID fill organization and project."""
    settings = load_settings({}, {"OPENAI_ORG_ID": "org-1", "OPENAI_PROJECT_ID": "proj_1"})
    assert (settings.organization, settings.project) == ("org-1", "proj_1")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("page_size = 0", "page_size: must be between 1 and 100, got 0"),
        ("page_size = 101", "page_size: must be between 1 and 100"),
        ('page_size = "ten"', "page_size: expected an integer"),
        ("max_attempts = true", "max_attempts: expected an integer"),
        ('base_url = "ftp://x"', "base_url: expected an http(s) URL"),
        ("request_timeout = -1", "request_timeout: must be a number of seconds above 0"),
        ("pagesize = 10", "unknown key 'pagesize'"),
        ("page_size = ", "is not valid TOML"),
        ('organization = ""', "organization: expected a non-empty string"),
        ('base_url = "http://[::1"', "base_url: expected an http(s) URL"),
        ('base_url = "http://127.0.0.1:99999/v1"', "base_url: expected an http(s) URL"),
        ('base_url = "http://a..b/v1"', "base_url: expected an http(s) URL"),
        ('base_url = "http://host/v1 "', "base_url: expected an http(s) URL"),
        ('base_url = "http://[v1.x]/v1"', "base_url: expected an http(s) URL"),
        ('base_url = "http://a<b/v1"', "base_url: expected an http(s) URL"),
        ('db = "a\\u0000b"', "db: expected a file path"),
        ('api_key_env = "MY-KEY"', "api_key_env: must name the environment variable"),
        ('api_key_env = "1KEY"', 'got "1KEY"'),
        ('api_key_env = ""', "api_key_env: must name the environment variable"),
        ('allow_insecure_http = "yes"', "allow_insecure_http: expected true or false"),
        ('base_url = "https://h/v1?api-version=1"', "base_url: query parameters (?...) are not"),
        ('base_url = "https://h/v1?"', "base_url: query parameters (?...) are not supported"),
        ('base_url = "https://h/v1#top"', "base_url: a fragment (#...) is not supported"),
    ],
)
def test_bad_config_names_the_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    """A bad file value is reported with the file, the key and the problem."""
    config = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=r"c\.toml") as caught:
        load_settings({}, {}, config)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("max_attempts = true", "got true"),
        ('allow_insecure_http = "yes"', 'got "yes"'),
        ('api_key_env = ["KA"]', 'got ["KA"]'),
        ("page_size = { a = 1 }", "got { a = 1 }"),
        ("page_size = 1979-05-27", "got 1979-05-27"),
        ("request_timeout = -inf", "got -inf"),
    ],
)
def test_a_bad_config_value_is_said_back_as_toml_spells_it(
    tmp_path: Path, text: str, said: str
) -> None:
    """It was said as Python spells it (True, 'yes', ['KA']): another value in TOML."""
    config = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {}, config)
    assert str(caught.value).endswith(said)


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("request_timeout", "must be a number of seconds above 0 and at most 3600"),
        ("max_seconds", "must be a positive number of seconds"),
        ("page_size", "must be between 1 and 100"),
    ],
)
def test_an_integer_wider_than_any_float_is_refused_by_its_length(
    tmp_path: Path, name: str, said: str
) -> None:
    """A TOML integer of 401 digits: a number setting failed with an OverflowError
    traceback, and an integer setting said all its digits back."""
    config = write(tmp_path, f"{name} = 1{'0' * 400}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {}, config)
    assert str(caught.value).endswith(f"{name}: {said}, got an integer of 401 digits")
    # Past what Python converts, TOML's reader failed with a ValueError traceback.
    config = write(tmp_path, f"{name} = 1{'0' * 5000}\n")
    with pytest.raises(ConfigError, match=r"is not valid TOML: a number too long$"):
        load_settings({}, {}, config)


@pytest.mark.parametrize(
    "text",
    [
        'base_url = ["http://u:hunter2pass@127.0.0.1/v1"]',
        'api_key_env = ["correct-horse-battery-staple-0123456789"]',
        'page_size = { token = "sk-abcdefghijklmnop" }',
    ],
)
def test_a_bad_config_value_holding_a_secret_in_a_list_or_table_is_not_said_back(
    tmp_path: Path, text: str
) -> None:
    """A text holding a password or a key was hidden, but not one in a list or a table."""
    config = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {}, config)
    assert str(caught.value).endswith("not shown here (it may hold a secret)") or str(
        caught.value
    ).endswith("got a value not shown")


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    """A config file in another encoding is a clear error, not a traceback."""
    config = tmp_path / "c.toml"
    config.write_bytes(b"\xff\xfe bad = 1\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_settings({}, {}, config)


@pytest.mark.parametrize("var", ["OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"])
def test_header_values_with_control_characters_are_refused(var: str) -> None:
    """A value broken by a line end is refused by name, without echoing the value."""
    secret = "sk-secret-value\r\n-1234"
    with pytest.raises(ConfigError, match="control character") as caught:
        load_settings({}, {var: secret})
    assert "sk-secret-value" not in str(caught.value)


@pytest.mark.parametrize("copied", [" sk-copied-key", "sk-copied-key\n", "\tsk-copied-key\r\n"])
def test_a_key_copied_with_whitespace_around_it_is_still_the_key(copied: str) -> None:
    """Spaces and line ends around a pasted key are not part of it."""
    assert load_settings({}, {"OPENAI_API_KEY": copied}).api_key == "sk-copied-key"


def test_a_key_of_whitespace_alone_is_no_key() -> None:
    assert load_settings({}, {"OPENAI_API_KEY": " \n"}).api_key is None


@pytest.mark.parametrize(
    "url",
    [
        "https://proxy.example/v1/sk-copied-0123456789abcdef",
        "https://proxy.example/sk-copied-0123456789abcdef/v1",
        "https://proxy.example/v1/sk-copied-0123456789abc",  # cut short: still identifying
        "https://sk-copied-0123456789abcdef.example/v1",
        "https://proxy.example/sk-proj-another0123456789abcdef/v1",  # another account's key
    ],
)
def test_a_base_url_holding_the_key_is_refused_unshown(url: str) -> None:
    """The URL is logged and stored with every run: the key must not be in it, nor another
    account's (it was shown in retry lines and events, and stored with that run)."""
    with pytest.raises(ConfigError, match="base_url holds an API key") as caught:
        load_settings({"base_url": url}, {"OPENAI_API_KEY": "sk-copied-0123456789abcdef"})
    assert "0123456789" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://gateway.ai.cloudflare.com/v1/0123456789abcdef0123456789abcdef/gw/openai",
        "https://sk-openai-prod.openai.azure.com/openai/v1",
    ],
    ids=["a gateway's hex account id", "a host beginning sk-"],
)
def test_a_base_url_spelled_somewhat_like_a_key_is_taken(url: str) -> None:
    """Refusing every word shaped like a key refused Cloudflare AI Gateway's documented URLs."""
    assert load_settings({"base_url": url}, {"OPENAI_API_KEY": "sk-x"}).base_url == url


def test_a_base_url_holding_another_accounts_key_is_refused_unshown(tmp_path: Path) -> None:
    """Shown in retry lines and events, stored with the run, and sent in the URL."""
    azure_key = "0123456789abcdef0123456789abcdef"
    config = tmp_path / "accounts.toml"
    config.write_text(
        f'[accounts.a]\nbase_url = "https://proxy.example/{azure_key}/v1"\n'
        '[accounts.b]\nprovider = "azure"\nazure_endpoint = "https://b.openai.azure.com"\n'
        'api_key_env = "KEY_B"\n'
    )
    env = {"OPENAI_API_KEY": "sk-a-0123456789", "KEY_B": azure_key}
    with pytest.raises(ConfigError, match=r"\[accounts.a\]: base_url holds another") as caught:
        load_accounts({}, env, config)
    assert azure_key[:16] not in str(caught.value)


@pytest.mark.parametrize("setting", ["organization", "project"])
def test_an_organization_or_project_holding_another_accounts_key_is_refused_unshown(
    tmp_path: Path, setting: str
) -> None:
    """Sent in the OpenAI-Organization (or OpenAI-Project) header to the other account's
    server: only the account's own key was looked for there."""
    key_a = "correct-horse-battery-staple-0123456789"
    config = tmp_path / "accounts.toml"
    config.write_text(
        '[accounts.a]\nbase_url = "https://a.example/v1"\napi_key_env = "KEY_A"\n'
        '[accounts.b]\nbase_url = "https://b.example/v1"\napi_key_env = "KEY_B"\n'
        f'{setting} = "{key_a}"\n'
    )
    env = {"KEY_A": key_a, "KEY_B": "zebra-giraffe-okapi-9876543210"}
    with pytest.raises(ConfigError, match=rf"\[accounts.b\]: {setting} holds an") as caught:
        load_accounts({}, env, config)
    assert key_a[:16] not in str(caught.value)


@pytest.mark.parametrize("setting", ["organization", "project", "account"])
def test_a_setting_holding_half_of_the_key_is_refused(tmp_path: Path, setting: str) -> None:
    """An account name of 24 of the key's 39 characters was shown in every line and stored
    with every batch; an organization so was sent in a header."""
    key = "correct-horse-battery-staple-0123456789"
    with pytest.raises(ConfigError, match=f"^{setting}: .*holds the API key"):
        Settings(db=tmp_path / "b.db", api_key=key, **{setting: key[:24]})


def test_a_settings_error_keeps_no_error_quoting_the_key(tmp_path: Path) -> None:
    """Its message was masked, but the error it came from (int() refusing the key) was kept
    as its context, for any code reading it."""
    key = "correct-horse-battery-staple-0123456789"
    with pytest.raises(ConfigError) as caught:
        Settings(db=tmp_path / "b.db", api_key=key, page_size=key)  # type: ignore[arg-type]
    assert key[:16] not in str(caught.value)
    assert (caught.value.__cause__, caught.value.__context__) == (None, None)


@pytest.mark.parametrize("quoted", ["whole", "a part"])
def test_what_toml_says_of_a_file_it_cannot_read_masks_the_environments_values(
    tmp_path: Path, quoted: str
) -> None:
    """A table named by the key, declared twice: the parser's words quoted it, and a file
    TOML cannot read names no variable to mask. Only a value quoted whole was masked: 30
    characters of a key of 46 were shown."""
    key = "correct-horse-battery-staple-0123456789"
    name = key if quoted == "whole" else key[:30]
    config = tmp_path / "dup.toml"
    config.write_text(f'[accounts."{name}"]\n[accounts."{name}"]\n')
    with pytest.raises(ConfigError, match="is not valid TOML: Cannot declare") as caught:
        load_accounts({}, {"MY_KEY": key, "HOME": "/home/x"}, config)
    assert key[:16] not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_config_file_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer for good; it is refused before it is opened."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_settings({}, {}, fifo)


def test_a_config_path_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_settings({}, {}, tmp_path)


@pytest.mark.parametrize("name", ["request_timeout", "read_timeout", "connect_timeout"])
@pytest.mark.parametrize("value", [0, 3601, 1e12])
def test_timeouts_are_bounded(name: str, value: float) -> None:
    """Past an hour a timeout is a typo; past about 1e9 s asyncio cannot schedule it."""
    with pytest.raises(ConfigError, match=f"{name}: must be a number of seconds above 0"):
        load_settings({name: value}, {})


def test_unreadable_config(tmp_path: Path) -> None:
    """A missing config file is a clear error."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings({}, {}, tmp_path / "missing.toml")


def test_bad_env_url_is_refused() -> None:
    """A non-http(s) URL from the environment is refused like a flag."""
    with pytest.raises(ConfigError, match="base_url"):
        load_settings({}, {"OPENAI_BASE_URL": "api.openai.com"})


def test_library_users_get_the_same_validation() -> None:
    """Settings built directly are validated too."""
    with pytest.raises(ConfigError, match="page_size"):
        Settings(page_size=500)


def test_example_config_parses_and_covers_every_setting() -> None:
    """config.example.toml loads and names every setting, set or commented out, at its default."""
    settings = load_settings({}, {}, EXAMPLE)
    assert settings == Settings()
    text = EXAMPLE.read_text(encoding="utf-8")
    active = tomllib.loads(text)
    commented = {
        line.lstrip("# ").split(" =")[0]
        for line in text.splitlines()
        if " = " in line and line.startswith("# ")
    }
    assert set(CONFIG_KEYS) == set(active) | commented
    defaults = Settings()
    for key, value in active.items():
        assert getattr(defaults, key) == (Path(value) if key == "db" else value), key


PASTED_KEY = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


@pytest.mark.parametrize(
    "value",
    [
        PASTED_KEY,
        "sk-ant-api03-x",
        "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z-_.0",
        "1gngas4fwkw33r5adc5yalheozq28czrnfhqtvlq",  # no key's shape: was echoed
    ],
)
def test_a_key_pasted_as_api_key_env_is_refused_unshown(tmp_path: Path, value: str) -> None:
    """api_key_env must be a variable's name; a value that may be a key is not echoed."""
    config = write(tmp_path, f'api_key_env = "{value}"\n')
    with pytest.raises(ConfigError, match="api_key_env: must name the environment variable") as e:
        load_settings({}, {"OPENAI_API_KEY": "sk-real"}, config)
    assert value not in str(e.value)
    assert "not shown" in str(e.value)


def test_a_key_shaped_variable_name_is_refused_unshown() -> None:
    """A key pasted as api_key_env that is a valid name is refused, never shown (it was
    said back by the missing key's message when spelled as no key is, pass 90A)."""
    for pasted in ("gsk_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", "Xk9mQ2vL7pR4tZ8wYb3N"):
        with pytest.raises(ConfigError, match="must name the environment variable") as e:
            Settings(api_key_env=pasted)
        assert pasted not in str(e.value)
    assert "set MY_KEY " in Settings(api_key_env="MY_KEY").missing_key_message()


def test_the_missing_key_message_with_azure_names_entra_id_too() -> None:
    """Azure's users may have no key at all, only an identity: the message says how."""
    azure = Settings(provider="azure", azure_endpoint="https://x.openai.azure.com")
    assert azure.missing_key_message().endswith(
        "or use Microsoft Entra ID instead of a key: --auth entra"
    )
    assert "entra" not in Settings().missing_key_message()


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@api.example.com/v1",
        "http://:hunter2@127.0.0.1:8000/v1",
        "https://hunter2@api.example.com/v1",
        "https://user:hunter2@api.example.com:99999/v1",
        "https://user:hunter2@[::1/v1",
    ],
)
@pytest.mark.parametrize("layer", ["flag", "env", "file"])
def test_credentials_in_the_base_url_are_refused_unshown(
    tmp_path: Path, url: str, layer: str
) -> None:
    """user:password@ in base_url is refused from any layer, and the password never echoed."""
    flags = {"base_url": url} if layer == "flag" else {}
    env = {"OPENAI_BASE_URL": url} if layer == "env" else {}
    config = write(tmp_path, f'base_url = "{url}"\n') if layer == "file" else None
    with pytest.raises(ConfigError, match="base_url: ") as caught:
        load_settings(flags, env, config)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/v1",
        "http://LOCALHOST/v1",
        "http://127.0.0.1:8000/v1",
        "http://127.8.9.10/v1",
        "http://[::1]:8000/v1",
        "https://api.example.com/v1",
    ],
)
def test_http_to_this_machine_and_https_are_allowed(url: str) -> None:
    """Loopback hosts may use plain http: the key does not leave the machine."""
    assert load_settings({"base_url": url}, {}).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com/v1",
        "http://10.0.0.5:8000/v1",
        "http://[::2]/v1",
        "http://localhost.:8000/v1",  # with its dot, a name DNS resolves, not the hosts file
    ],
)
def test_plain_http_to_another_host_is_refused(url: str) -> None:
    """The key would travel in clear text: refused, saying why and how to allow it."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"base_url": url}, {})
    message = str(caught.value)
    assert message.startswith("base_url: plain http to ")
    assert "clear text" in message
    assert "--allow-insecure-http" in message
    assert "allow_insecure_http = true" in message


def test_library_users_are_refused_plain_http_too() -> None:
    """Settings built directly follow the same transport rule."""
    with pytest.raises(ConfigError, match="clear text"):
        Settings(base_url="http://api.example.com/v1")
    assert Settings(base_url="http://api.example.com/v1", allow_insecure_http=True)


def test_plain_http_can_be_allowed_from_any_layer(tmp_path: Path) -> None:
    """allow_insecure_http from a flag or the file lets a URL from any other layer through."""
    remote = "http://api.example.com/v1"
    in_file = write(tmp_path, f'base_url = "{remote}"\n')
    allowed = load_settings({"allow_insecure_http": True}, {}, in_file)
    assert (allowed.base_url, allowed.allow_insecure_http) == (remote, True)
    allowing_file = write(tmp_path, "allow_insecure_http = true\n")
    from_env = load_settings(
        {"allow_insecure_http": None}, {"OPENAI_BASE_URL": remote}, allowing_file
    )
    assert from_env.base_url == remote


def test_sqlites_memory_database_is_refused() -> None:
    with pytest.raises(ConfigError, match="would keep nothing"):
        Settings(db=Path(":memory:"))


def test_a_blank_key_given_to_the_library_is_refused() -> None:
    with pytest.raises(ConfigError, match="api_key: expected a non-empty string"):
        Settings(api_key="   ")


NO_KEY_SHAPE = "1gngas4fwkw33r5adc5yalheozq28czrnfhqtvlq"


@pytest.mark.parametrize("whose", ["its own", "another account's"])
def test_an_account_named_by_a_key_is_refused_unshown(tmp_path: Path, whose: str) -> None:
    """A key of no key's shape as an account's name was shown in every line and event,
    and stored with every batch."""
    config = write(
        tmp_path,
        f'[accounts.{NO_KEY_SHAPE}]\napi_key_env = "KEY_C"\n[accounts.b]\napi_key_env = "KEY_D"\n',
    )
    keys = {"KEY_C": NO_KEY_SHAPE, "KEY_D": "sk-other-0123456789abcdef"}
    if whose == "another account's":
        keys = {"KEY_C": "z" * 32, "KEY_D": NO_KEY_SHAPE}
    with pytest.raises(ConfigError, match=r"name holds .*API key") as caught:
        load_accounts({}, keys, config)
    assert NO_KEY_SHAPE not in str(caught.value)
    with pytest.raises(ConfigError, match="the name holds the API key"):
        Settings(account=NO_KEY_SHAPE, api_key=NO_KEY_SHAPE)


@pytest.mark.parametrize(
    "config",
    [
        'api_key_env = "MYKEY"\npage_size = "{key}"\n',
        'api_key_env = "MYKEY"\n{key} = 1\n',
        '[accounts.a]\napi_key_env = "MYKEY"\n[accounts.b]\nauth = "{key}"\n',
        '[accounts.{key}]\napi_key_env = "MYKEY"\nbogus = 1\n',
    ],
    ids=["a value", "a key of the file", "another account's value", "a table's name"],
)
def test_a_key_a_config_file_names_is_masked_in_what_its_checks_say(
    tmp_path: Path, config: str
) -> None:
    """The file's values were checked before the key its api_key_env names was read: a
    key of no key's shape pasted as a value was said back whole."""
    path = write(tmp_path, config.format(key=NO_KEY_SHAPE))
    with pytest.raises(ConfigError) as caught:
        load_accounts({}, {"MYKEY": NO_KEY_SHAPE}, path)
    assert NO_KEY_SHAPE not in str(caught.value)


def test_an_unknown_account_named_by_a_key_is_masked(tmp_path: Path) -> None:
    path = write(tmp_path, 'api_key_env = "MYKEY"\n')
    with pytest.raises(ConfigError, match="no account here is named") as caught:
        load_accounts({}, {"MYKEY": NO_KEY_SHAPE}, path, only=[NO_KEY_SHAPE])
    assert NO_KEY_SHAPE not in str(caught.value)


def test_a_rule_between_an_account_tables_settings_names_the_table_and_the_file(
    tmp_path: Path,
) -> None:
    """A rule between settings broken in an `[accounts.NAME]` table was said without the
    table or the file, and an organization holding the key sent the user to
    OPENAI_API_KEY, whatever variable held the key."""
    config = write(tmp_path, '[accounts.x]\nauth = "entra"\n[accounts.y]\napi_key_env = "Y"\n')
    with pytest.raises(ConfigError) as caught:
        load_accounts({}, {}, config)
    assert str(caught.value) == (
        f'config file {config}, [accounts.x]: auth: "entra" is only for provider = "azure"'
    )
    key = "correct-horse-battery-staple-0123456789"
    config = write(tmp_path, f'[accounts.y]\napi_key_env = "Y"\norganization = "org-{key}"\n')
    with pytest.raises(ConfigError) as caught:
        load_accounts({}, {"Y": key}, config)
    assert str(caught.value) == (
        f"config file {config}, [accounts.y]: organization: holds the API key (not shown); "
        "give the organization id alone, and the key in the variable api_key_env names"
    )


def test_a_config_file_nested_too_deeply_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2,000 brackets: a RecursionError traceback, read for its keys and as the config."""
    config = tmp_path / "deep.toml"
    config.write_text("a = " + "[" * 2000 + "]" * 2000 + "\n")
    assert main(["sync", "--config", str(config), "--db", str(tmp_path / "x.db")]) == 2
    assert "is not valid TOML: nested too deeply" in capsys.readouterr().err
