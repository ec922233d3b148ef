"""Azure OpenAI (dated and v1 APIs) and compatible lists without has_more, each served by the
fake in its flavor on 127.0.0.1, synced by the real client and the real command."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from crawler import iter_batches, sync
from crawler.api import RetryPolicy
from crawler.config import Settings, load_settings
from crawler.errors import ApiError, AuthenticationError, BrokenResponseError, ConfigError
from crawler.fake import AZURE_API_VERSIONS, FakeApiOptions, FakeApiServer

from .exact import assert_database_matches
from .test_request_files import expected_rows, stored_rows
from .waits import HANG_GUARD

ROOT = Path(__file__).resolve().parent.parent
KEY = "azure-key-" + "0123456789abcdef" * 2
FAST = RetryPolicy(max_attempts=3, max_seconds=10, initial_backoff=0, max_backoff=0)


def azure(server: FakeApiServer, db: Path, **extra: Any) -> Settings:
    layers = {"api_key": KEY, **extra}
    return Settings(db=db, provider="azure", azure_endpoint=server.root_url, **layers)


@pytest.mark.parametrize(
    ("flavor", "version"),
    [("azure", "2024-10-21"), ("azure", "2025-04-01-preview"), ("azure-v1", None)],
)
async def test_azure_syncs_exactly_with_its_request_files(
    db_path: Path, flavor: str, version: str | None
) -> None:
    """The api-key header, the path and the api-version on every request, files included;
    Azure's `/chat/completions` stored as `/v1/chat/completions`, `raw` as sent."""
    options = FakeApiOptions(batches=450, seed=6, api_key=KEY, flavor=flavor)
    async with FakeApiServer(options) as server:
        result = await sync(azure(server, db_path, api_version=version), retry=FAST)
        assert_database_matches(db_path, server.served())
        assert stored_rows(db_path) == expected_rows(server, {"error"})
    assert result.complete
    assert result.files > 0
    with sqlite3.connect(db_path) as conn:
        endpoints = {e for (e,) in conn.execute("SELECT DISTINCT endpoint FROM batches")}
        sent = {e for (e,) in conn.execute("SELECT DISTINCT raw ->> 'endpoint' FROM batches")}
    assert all(e.startswith("/v1/") for e in endpoints)
    # Fields OpenAI's batches lack (Azure's first_id inside a batch) are kept in raw.
    if flavor == "azure":
        with sqlite3.connect(db_path) as conn:
            kept = conn.execute("SELECT count(*) FROM batches WHERE raw ->> 'first_id' = id")
            assert kept.fetchone() == (450,)
    assert sent == (endpoints if flavor == "azure-v1" else {e[3:] for e in endpoints})


async def test_azure_refusals_say_what_azure_said(db_path: Path) -> None:
    """Azure's 401 and its refusal of an unknown api-version reach the user in Azure's words."""
    options = FakeApiOptions(batches=10, api_key=KEY, flavor="azure")
    async with FakeApiServer(options) as server:
        with pytest.raises(AuthenticationError, match="Access denied due to invalid subscription"):
            await sync(azure(server, db_path, api_version="2024-10-21", api_key="wrong-key"))
        with pytest.raises(ApiError, match="API version 2023-05-15 is not supported"):
            await sync(azure(server, db_path, api_version="2023-05-15"), retry=FAST)


async def test_a_list_without_has_more_is_walked_until_an_empty_page(db_path: Path) -> None:
    """Groq's list: every batch stored, the walk's last request an empty page, and the
    ledger shows how the list was walked. As OpenAI's, the same list is a broken response."""
    options = FakeApiOptions(batches=250, seed=2, flavor="no-has-more")
    async with FakeApiServer(options) as server:
        settings = Settings(
            db=db_path,
            provider="compatible",
            base_url=server.base_url,
            api_key=options.api_key,
            files=False,
        )
        result = await sync(settings, retry=FAST)
        assert_database_matches(db_path, server.served())
        # Its last page is empty, as every walk of such a list ends: no cursor to confirm.
        assert server.stats.requests["retrieve_batch"] == 0
        streamed = [b async for b in iter_batches(settings)]
        again = await sync(settings, retry=FAST)
        strict = Settings(db=db_path.with_name("strict.db"), base_url=server.base_url,
                          api_key=options.api_key, files=False)  # fmt: skip
        asked = server.stats.requests["list_batches"]
        with pytest.raises(BrokenResponseError, match='set provider = "compatible"') as caught:
            await sync(strict, retry=FAST)
        # Asking again would get the same page: no retry, and not exit 75 ("try later").
        assert server.stats.requests["list_batches"] == asked + 1
        assert caught.value.exit_code == 1
    assert (result.complete, result.pages, result.pages_without_has_more) == (True, 4, 4)
    assert result.warnings == ()
    assert streamed == list(server.served())
    assert (again.mode, again.batches_new) == ("incremental", 0)
    with sqlite3.connect(db_path) as conn:
        ledger = conn.execute("SELECT pages, pages_without_has_more FROM sync_runs").fetchall()
    assert ledger[0] == (4, 4)


async def test_the_command_syncs_azure_from_flags_and_from_the_sdks_variables(
    db_path: Path, tmp_path: Path
) -> None:
    """The same Azure resource from flags, and from AZURE_OPENAI_* with OPENAI_BASE_URL set for
    OpenAI."""
    options = FakeApiOptions(batches=120, api_key=KEY, flavor="azure")
    async with FakeApiServer(options) as server:
        by_flags = await run_cli(
            ["sync", "--db", str(db_path), "--provider", "azure", "--azure-endpoint",
             server.root_url, "--api-version", AZURE_API_VERSIONS[0], "-q"],
            AZURE_OPENAI_API_KEY=KEY,
        )  # fmt: skip
        config = tmp_path / "azure.toml"
        config.write_text('provider = "azure"\n')
        by_env = await run_cli(
            ["sync", "--db", str(tmp_path / "env.db"), "--config", str(config), "-q"],
            AZURE_OPENAI_API_KEY=KEY,
            AZURE_OPENAI_ENDPOINT=server.root_url,
            OPENAI_API_VERSION=AZURE_API_VERSIONS[0],
            OPENAI_BASE_URL="https://api.openai.com/v1",
        )
    assert by_flags == (0, "")
    assert by_env == (0, "")
    with sqlite3.connect(tmp_path / "env.db") as conn:
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (120,)


async def run_cli(argv: list[str], **env: str) -> tuple[int | None, str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", *argv, cwd=ROOT, env={**variables, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=HANG_GUARD)
    return proc.returncode, (out + err).decode()


def test_azure_settings_are_checked_together() -> None:
    """Settings across keys: the endpoint is required, the version only for Azure, one base URL."""
    with pytest.raises(ConfigError, match="azure_endpoint: a value is required"):
        Settings(provider="azure")
    with pytest.raises(ConfigError, match='api_version: only for provider = "azure"'):
        Settings(api_version="2024-10-21")
    with pytest.raises(ConfigError, match="azure_endpoint or base_url, not both"):
        Settings(
            provider="azure", azure_endpoint="https://a.openai.azure.com", base_url="https://b/v1"
        )
    with pytest.raises(ConfigError, match="api_version: expected a version such as"):
        Settings(provider="azure", azure_endpoint="https://a.openai.azure.com", api_version="v1")
    dated = Settings(
        provider="azure", azure_endpoint="https://a.openai.azure.com/", api_version="2024-10-21"
    )
    assert (dated.base_url, dated.query) == (
        "https://a.openai.azure.com/openai",
        {"api-version": "2024-10-21"},
    )
    v1 = Settings(provider="azure", azure_endpoint="https://a.openai.azure.com", api_key="k")
    assert (v1.base_url, v1.query, v1.auth_headers) == (
        "https://a.openai.azure.com/openai/v1",
        {},
        {"api-key": "k"},
    )


def test_azure_reads_the_sdks_variables_and_its_own_key() -> None:
    """With provider azure, AZURE_OPENAI_API_KEY is the key; without it, OPENAI_API_KEY stays."""
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://a.openai.azure.com",
        "AZURE_OPENAI_API_KEY": "azure-key",
        "OPENAI_API_KEY": "openai-key",
        "OPENAI_API_VERSION": "2024-10-21",
    }
    settings = load_settings({"provider": "azure"}, env)
    assert (settings.api_key, settings.api_version) == ("azure-key", "2024-10-21")
    assert settings.base_url == "https://a.openai.azure.com/openai"
    assert load_settings({}, env).api_key == "openai-key", "only for provider azure"


AZURE = "https://a.openai.azure.com"
GATEWAY = "https://gw.example/v1"


@pytest.mark.parametrize(
    ("flags", "file", "env", "base_url"),
    [
        # A flag wins over the environment, and base_url and azure_endpoint are one setting.
        ({"base_url": GATEWAY}, "", {"AZURE_OPENAI_ENDPOINT": AZURE}, GATEWAY),
        ({"azure_endpoint": AZURE}, f'base_url = "{GATEWAY}"', {}, AZURE + "/openai/v1"),
        # The environment wins over the file.
        ({}, f'base_url = "{GATEWAY}"', {"AZURE_OPENAI_ENDPOINT": AZURE}, AZURE + "/openai/v1"),
        # OPENAI_API_VERSION=preview is the SDK's v1 API, not a dated version.
        (
            {},
            f'azure_endpoint = "{AZURE}"',
            {"OPENAI_API_VERSION": "preview"},
            AZURE + "/openai/v1",
        ),
    ],
    ids=["flag-over-env", "flag-over-file", "env-over-file", "sdk-preview-version"],
)
def test_azure_settings_take_flags_over_the_environment_over_the_file(
    tmp_path: Path, flags: dict[str, str], file: str, env: dict[str, str], base_url: str
) -> None:
    """The layers' usual order holds for Azure's settings too."""
    config = tmp_path / "azure.toml"
    config.write_text(f'provider = "azure"\n{file}\n')
    settings = load_settings(flags, env, config)
    assert settings.base_url == base_url


def test_openais_base_url_variable_does_not_point_azure_elsewhere() -> None:
    """OPENAI_BASE_URL names OpenAI's endpoint: an Azure key is not sent there."""
    env = {"OPENAI_BASE_URL": "https://gw.example/v1", "AZURE_OPENAI_API_KEY": "k"}
    with pytest.raises(ConfigError, match="azure_endpoint: a value is required"):
        load_settings({"provider": "azure"}, env)


def test_an_azure_endpoint_that_is_no_url_is_shown_what_one_looks_like() -> None:
    """Its message quoted OpenAI's URL as the example of an Azure endpoint."""
    with pytest.raises(ConfigError) as caught:
        Settings(provider="azure", azure_endpoint="notaurl", api_key="k")
    assert str(caught.value) == (
        "azure_endpoint: expected an http(s) URL such as https://NAME.openai.azure.com, "
        'got "notaurl"'
    )
