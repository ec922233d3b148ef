"""Keeping the key secret in error messages, whatever form a server echoes it in."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus

import pytest

from crawler.replies import build_api_error

# Characters that JSON, percent-encoding and whitespace collapsing all spell differently.
ODD_KEY = 'sk-proj-a"b\\c/d+e=f  é~0123456789ABCDEFxyz'


def lower_hex(text: str) -> str:
    """`text` with its %XX escapes in lower case, as some servers write them."""
    return re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def message_of(echo: str, secret: str = ODD_KEY) -> str:
    """The error text built from a 401 whose message quotes `echo`."""
    body = json.dumps({"error": {"message": f'bad header "Bearer {echo}" (x)'}}).encode()
    return str(build_api_error(401, body, {}, "https://h/v1/batches", secret=secret))


MASKED = 'API error 401: bad header "Bearer ***" (x) [GET https://h/v1/batches]'


@pytest.mark.parametrize(
    "echo",
    [
        pytest.param(ODD_KEY, id="as-is"),
        pytest.param(" ".join(ODD_KEY.split()), id="whitespace-collapsed"),
        pytest.param(json.dumps(ODD_KEY)[1:-1], id="json"),
        pytest.param(json.dumps(ODD_KEY)[1:-1].replace("/", "\\/"), id="json-escaped-slash"),
        pytest.param(json.dumps(ODD_KEY, ensure_ascii=False)[1:-1], id="json-unicode"),
        pytest.param(quote(ODD_KEY, safe=""), id="percent"),
        pytest.param(lower_hex(quote(ODD_KEY, safe="")), id="percent-lower-hex"),
        pytest.param(quote(ODD_KEY), id="percent-path"),
        pytest.param(quote_plus(ODD_KEY), id="percent-form"),
    ],
)
def test_the_key_is_masked_in_every_form_a_server_echoes_it(echo: str) -> None:
    """Escaped, percent-encoded or whitespace-collapsed, the key never gets through."""
    assert message_of(echo) == MASKED


@pytest.mark.parametrize(
    ("echo", "shown"),
    [
        pytest.param(ODD_KEY[:24] + "...", "***...", id="head"),
        pytest.param("..." + ODD_KEY[-20:], "...***", id="tail"),
        pytest.param(ODD_KEY[5:25], "***", id="middle"),
        pytest.param(json.dumps(ODD_KEY)[1:18] + "...", "***...", id="json-head"),
        pytest.param(quote(ODD_KEY, safe="")[-16:], "***", id="percent-tail"),
    ],
)
def test_a_key_cut_short_is_masked_from_16_characters(echo: str, shown: str) -> None:
    """A run of 16 or more of the key's characters, in any of its forms, identifies it."""
    assert message_of(echo) == MASKED.replace("***", shown)


def test_a_short_run_shared_with_the_key_stays_readable() -> None:
    """Text that only shares the key's prefix, or fewer than 16 characters, is not masked."""
    echo = ODD_KEY[:15]
    assert (
        message_of(echo)
        == f'API error 401: bad header "Bearer {echo}" (x) [GET https://h/v1/batches]'
    )


def test_a_short_key_is_masked_whole() -> None:
    """A key shorter than an identifying run is still masked where it appears whole."""
    assert message_of("sk-short", secret="sk-short") == MASKED


def test_several_echoes_are_each_masked() -> None:
    """Every occurrence is masked, in whichever forms, and the text between them is kept."""
    echo = f"{ODD_KEY} and {quote(ODD_KEY, safe='')}"
    assert message_of(echo) == MASKED.replace("***", "*** and ***")
