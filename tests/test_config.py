"""Settings: layering, validation with named keys, and the example config file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from crawler.config import CONFIG_KEYS, DEFAULT_BASE_URL, Settings, load_settings
from crawler.errors import ConfigError

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
    config = write(tmp_path, 'base_url = "http://file/v1"\npage_size = 10\nproject = "p-file"\n')
    env = {"OPENAI_BASE_URL": "http://env/v1", "OPENAI_PROJECT_ID": "p-env"}
    settings = load_settings({"page_size": 20, "base_url": None}, env, config)
    assert settings.base_url == "http://env/v1"
    assert settings.page_size == 20
    assert settings.project == "p-env"
    assert load_settings({"base_url": "http://flag/v1/"}, env, config).base_url == "http://flag/v1"


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
        ("request_timeout = -1", "request_timeout: must be a positive number"),
        ("pagesize = 10", "unknown key 'pagesize'"),
        ("page_size = ", "is not valid TOML"),
        ('organization = ""', "organization: expected a non-empty string"),
        ('base_url = "http://[::1"', "base_url: expected an http(s) URL"),
        ('base_url = "http://127.0.0.1:99999/v1"', "base_url: expected an http(s) URL"),
        ('base_url = "http://a..b/v1"', "base_url: expected an http(s) URL"),
        ('base_url = "http://host/v1 "', "base_url: expected an http(s) URL"),
        ('db = "a\\u0000b"', "db: expected a file path"),
    ],
)
def test_bad_config_names_the_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    """A bad file value is reported with the file, the key and the problem."""
    config = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=r"c\.toml") as caught:
        load_settings({}, {}, config)
    assert fragment in str(caught.value)


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    """A config file in another encoding is a clear error, not a traceback."""
    config = tmp_path / "c.toml"
    config.write_bytes(b"\xff\xfe bad = 1\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_settings({}, {}, config)


@pytest.mark.parametrize("var", ["OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"])
def test_header_values_with_control_characters_are_refused(var: str) -> None:
    """A key read from a CRLF file is refused by name, without echoing the value."""
    secret = "sk-secret-value-1234\r"
    with pytest.raises(ConfigError, match="control character") as caught:
        load_settings({}, {var: secret})
    assert secret.strip() not in str(caught.value)


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
