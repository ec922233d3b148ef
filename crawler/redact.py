"""Keeping the API key out of sight: masked wherever it may be echoed, never shown.

What is masked is a `Secret`: the key, or the Entra ID tokens a run holds valid (a list its
token source updates as it renews them, read at each use), several of these (`Secrets`), or
nothing.
"""

from __future__ import annotations

import abc
import base64
import bisect
import contextlib
import decimal
import functools
import html
import html.entities
import itertools
import math
import re
import string
import unicodedata
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, overload
from urllib.parse import quote, quote_plus

from .jsontext import is_json, parse, to_text

Secret: TypeAlias = str | Sequence[str] | None


def _each(secret: Secret) -> tuple[str, ...]:
    """The keys `secret` holds, empty ones left out."""
    if isinstance(secret, str):
        return (secret,) if secret else ()
    return () if secret is None else tuple(key for key in secret if key)


class Secrets(Sequence[str]):
    """The secrets of the accounts synced at once, as one: a server may echo one account's
    key or token in its answer to another's request (a gateway's cached answer). Each is
    read at each use, since Entra ID tokens change as they are renewed."""

    def __init__(self, *secrets: Secret) -> None:
        self._secrets = list(secrets)

    def add(self, secret: Secret) -> None:
        self._secrets.append(secret)

    def as_secret(self) -> Secret:
        """The one secret held as itself (a run of one account: searching a page for it
        costs nothing more), else all of them."""
        return self._secrets[0] if len(self._secrets) == 1 else self

    def _keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(key for secret in self._secrets for key in _each(secret)))

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._keys()[index]


def looks_like_secret(value: Any) -> bool:
    """Whether `value` may be an API key pasted in the wrong place, and so must not be shown.

    A key prefix (sk-, as OpenAI's and many compatible servers' keys begin), a long token of
    hexadecimal digits (Azure's classic keys), or a long token mixing lower case, upper case
    and digits as random keys do, changing between them at every other character or so:
    names do so at their words' first letters and numbers alone (`gpt-4o-2024-08-06-
    EastUS2-Prod01`, a deployment's name, masked every model name it begins).
    """
    if not isinstance(value, str):
        return False
    if value.startswith(_KEY_PREFIXES):
        return True
    if len(value) < 32:
        return False
    if re.fullmatch(r"[0-9a-fA-F]+", value):  # hexadecimal, as Azure's classic keys are
        return re.search("[0-9]", value) is not None and re.search("[a-fA-F]", value) is not None
    if re.fullmatch(r"[A-Za-z0-9_.\-]+", value) is None or not all(
        re.search(kind, value) for kind in ("[a-z]", "[A-Z]", "[0-9]")
    ):
        return False
    return _mixed_as_random(value)


# OpenAI's and many compatible servers' keys; Slack's tokens (digit groups, then a random
# word: the changes of the whole are too few).
_KEY_PREFIXES = ("sk-", "sk_", "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-")


def looks_generated(value: str) -> bool:
    """Whether a value is written as a machine writes a secret, not as a person writes
    words: 16 ASCII characters or more, letters and digits (or letters alone, changing case
    as a random token does, not as words do: a Hugging Face token, `hf_` and 34 letters,
    pass 79A), ten different ones at least, no blank, and no run of eight characters in a
    row (`12345678`, `abcdefgh`) (a key, a token, a generated password in base64 or with
    symbols). A template's placeholder (`your-openai-api-key-here`, `sk-` and 48 x,
    `sk-1234567890abcdef…`), a passphrase, a name in words or in letters no generator
    writes (`Grüße2024Passwort!`, whose search costs several times an ASCII one's) is not,
    and would mask the data spelling it (a placeholder with a version,
    `sk-your-openai-api-key-here-v2`, too: pass 78A)."""
    return _machine_written(value) and (
        any(char.isdigit() for char in value) or _letters_as_random(value)
    )


def _machine_written(value: str) -> bool:
    """What looks_generated asks but digits: a password of symbols may hold none (85A)."""
    return (
        len(value) >= _IDENTIFYING_RUN
        and value.isascii()
        and any(char.isalpha() for char in value)
        and len(set(value)) >= 10
        and not any(char.isspace() for char in value)
        and _IN_A_ROW.search(value) is None
        and _TEMPLATE_WORD.search(value) is None
    )


# Eight characters in a row (`12345678`, `abcdefgh`): a person's sequence. A random value
# of 32 hexadecimal digits holds one about once in ten million (five: once in 4,300, and
# Azure's keys are such values).
_RUN = 8
_IN_A_ROW = re.compile(
    "|".join(
        re.escape(letters[i : i + _RUN])
        for letters in ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        for i in range(len(letters) - _RUN + 1)
    )
)


# A template's words standing apart (`sk-your-openai-api-key-here-v2`, `REPLACE_ME_2024`):
# a value holding one is a placeholder, whatever else it holds; a random value holds one
# set apart by symbols next to never.
_TEMPLATE_WORD = re.compile(
    r"(?<![a-z0-9])(?:your|here|example|placeholder|changeme|replace)(?![a-z0-9])",
    re.IGNORECASE,
)


# A random token of letters of both cases and digits changes between them at about three
# characters in five; a name, at its words' first letters and numbers (about one in six).
_RANDOM_CHANGES = 4


def _mixed_as_random(value: str) -> bool:
    """Whether a value changes between lower case, upper case and digits as a random
    token does (see _RANDOM_CHANGES)."""
    return _RANDOM_CHANGES * _changes(value, _case_or_digit) >= len(value)


def _letters_as_random(value: str) -> bool:
    """Whether letters change case as a random token's do, not at words' first letters
    alone (`CorrectHorseBatteryStaple`): capitals side by side three times at least."""
    return _mixed_as_random(value) and len(_CAPITALS_SIDE_BY_SIDE.findall(value)) >= 3


_CAPITALS_SIDE_BY_SIDE = re.compile("(?=[A-Z]{2})")


def _case_or_digit(char: str) -> int:
    return 0 if char.isdigit() else 1 if char.islower() else 2


def _changes(value: str, kind: Callable[[str], Any]) -> int:
    """Changes of `kind` between neighbours in the words of `value` (between characters no
    token holds): a word's own, not those at its bounds."""
    return sum(
        kind(one) != kind(other)
        for word in _words(value)
        for one, other in itertools.pairwise(word)
    )


def _words(text: str) -> list[str]:
    """The runs of letters and digits of `text` (between characters no token holds)."""
    return _NOT_A_TOKENS.split(text)


_NOT_A_TOKENS = re.compile("[^A-Za-z0-9]+")


_MASK = "***"

# In a message, a run this long of a key is masked even when the rest is cut off or
# altered: past the prefix all keys share (sk-proj-), it tells which key it was.
_IDENTIFYING_RUN = 16


def _stored_run(secret: str) -> int:
    """The run of a key that stored data must never hold: half the key, 16 characters at
    least. Less leaves the rest of the key (78 characters of a project key) as unguessable
    as the whole; searching every page for shorter runs would cost the walk a sixth of its
    speed, for no secret kept."""
    return max(_IDENTIFYING_RUN, (len(secret) + 1) // 2)


def mask_secret(text: str, secret: Secret) -> str:
    """`text` (a message) with `secret` masked as `***` in every form a server may echo it in.

    As is, JSON-escaped, percent-encoded, with its whitespace collapsed, and any run of
    `_IDENTIFYING_RUN` characters or more of one of these (a key cut short, say). A key
    shorter than that (`x`, `EMPTY`: a placeholder a local server ignores, or a short test
    key) is masked only where it stands as a word of its own, never inside other words.
    """
    keys = _each(secret)
    long_keys = [
        form for key in keys if len(key) >= _IDENTIFYING_RUN for form in _compatible_too(key)
    ]
    scans = [_scan(key, _IDENTIFYING_RUN, in_a_message=True) for key in long_keys]
    text = _mask_all(text, scans, compatible=True)
    for key, scan in zip(long_keys, scans, strict=True):
        if len(set(key)) >= _SPREAD_ALPHABET:
            text = _mask_spread(text, scan)
    for key in keys:
        if len(key) < _IDENTIFYING_RUN:
            text = re.sub(rf"(?<![\w-]){re.escape(key)}(?![\w-])", _MASK, text, flags=re.I)
    return text


# A key of fewer characters (`0` 32 times: a local server's placeholder) spelled apart is
# no key shown: its characters are in any text, and their runs apart masked whole lines.
_SPREAD_ALPHABET = 6


def _mask_spread(text: str, scan: _Scan) -> str:
    """`text` with runs of the scan's key masked whose characters stand apart, any
    characters that are not the key's between them: a terminal shows the key whole
    through a zero-width space, a control character, a space, a list's `', '`. As written,
    in compatible letters (see _views), and decoded (see _Decoded: a gateway quoting an
    upstream's JSON writes a tab between them as `\\t`, of the key's own letters)."""
    spans = [span for view in _views(text) for span in _spread_runs(view, scan)]
    chains = _decoding_chains(text) if scan.escapes_in(text) else ()
    if "\\" in text and not chains:  # separators escaped: `\t`
        chains = ((_decoded(text),),)
    # Or references (`&#8203;`), whatever they write: what a command shows is short.
    for chain in (*chains, *_html_chains(text)):
        spans += [_span_written(chain, span) for span in _spread_runs(chain[-1].text, scan)]
    return _masked(text, _joined(spans)) if spans else text


def _spread_runs(text: str, scan: _Scan) -> list[tuple[int, int]]:
    """The spans of `text` holding runs of the key, what is not the key's taken out."""
    skeleton = scan.not_the_key.sub("", text)
    if len(skeleton) == len(text) or not scan.has_a_block(skeleton):
        return []
    places = [at for at, char in enumerate(text) if not scan.not_the_key.match(char)]
    return [(places[start], places[end - 1] + 1) for start, end in _find_runs(skeleton, scan)]


def mask_error(error: BaseException, secret: Secret) -> None:
    """Mask `secret` in `error`'s message, in place, before anyone sees it: a message may
    quote what the server sent (a cursor, an error it answered with a 200). The errors it
    came from are left behind: aiohttp's may quote a redirect URL naming the key."""
    if error.args and isinstance(error.args[0], str):
        error.args = (mask_secret(error.args[0], secret), *error.args[1:])
    error.__cause__ = error.__context__ = None


# A word spelled like a key (OpenAI's and many compatible servers' keys begin sk-), any case.
_KEY_LIKE = re.compile(r"(?<![A-Za-z0-9])sk[-_][A-Za-z0-9_\-]{8,}", re.IGNORECASE)


def mask_key_like(text: str) -> str:
    """`text` with every word spelled like a key masked: for what the command line says of
    a value no rule checks for the key (a path, a host), before any key is known."""
    return _KEY_LIKE.sub(_MASK, text)


# Variables named as ids and commits (GITHUB_SHA, CIRCLE_SHA1, GIT_COMMIT, Azure Pipelines'
# BUILD_SOURCEVERSION and SYSTEM_PULLREQUEST_SOURCECOMMITID, Heroku's SOURCE_VERSION,
# Netlify's COMMIT_REF, TeamCity's BUILD_VCS_NUMBER, Drone's DRONE_COMMIT_AFTER) or versions
# (IMAGE_TAG, SENTRY_RELEASE, COMMIT_HASH): their values are spelled as keys are (hex), and
# named after. A name of a key is no such name (`MAPS_API_KEY_RELEASE`, a key for release
# builds: see _named_as_no_key).
_NAMED_AS_NO_KEY = re.compile(
    r"(?:ID|SHA1?|COMMIT|REVISION|SOURCE_?VERSION|_REF|VCS_NUMBER|HASH|_TAG|RELEASE|_AFTER"
    r"|_BEFORE)$"
)
# Variables named as an API's keys: `…API_KEY`, `…_APIKEYS`, `…SECRET_ACCESS_KEY`,
# `…MASTER_KEY`, `AZURE_OPENAI_KEY1`, `…_API_KEY_…`, and an API's tokens
# (`ANTHROPIC_AUTH_TOKEN`, Claude Code's; `REPLICATE_API_TOKEN`, `AZURE_OPENAI_AD_TOKEN`,
# `AWS_BEARER_TOKEN_BEDROCK`), whose values are keys however they end. Data's keys
# (`S3_KEY`, `CACHE_KEY`, `IDEMPOTENCY_KEY`, `SORT_KEY`) are none (pass 81A).
_NAMED_AS_A_KEY = re.compile(
    r"(?:API|SECRET|ACCESS|MASTER|ADMIN|AUTH|PRIVATE|SUBSCRIPTION|OPENAI)_?KEYS?\d*(?:_|$)"
    r"|(?:^|_)(?:API|AUTH|AD|BEARER)_TOKENS?\d*(?:_|$)"
)


def _named_as_no_key(name: str) -> bool:
    """Whether a variable is named as an id, a commit or a version, and not as a key."""
    upper = name.upper()
    return _NAMED_AS_NO_KEY.search(upper) is not None and _NAMED_AS_A_KEY.search(upper) is None


def variable_secrets(value: str, *, any_shape: bool = False) -> tuple[str, ...]:
    """The secrets of a variable holding one (a key, a password): each line of its value,
    as GitHub Actions masks a secret of several lines, blanks and quotes around it left out
    (as an `--env-file` leaves them), and a comment after it (` # ...`); of a JSON
    document (a service account's credentials), each string value. Those written as a
    machine writes a secret (see looks_generated, or a password of symbols, digits or
    none) unless `any_shape` (a variable the user named in `mask_env`). A value holding
    several keys on one line (`sk-a,sk-b`) is one secret: a key of it echoed alone is
    masked in a message when 16 characters or more, and in stored data when half the line;
    a variable for each masks each whole."""
    if value.strip()[:1] in ("{", "["):
        with contextlib.suppress(ValueError, RecursionError):
            # A string of several lines (a PEM) line by line (read whole, a line of it
            # echoed was stored, 93A); a default variable's written as a secret alone (a
            # list of models masked them, 93A).
            lines = (
                line.strip() for one in _json_strings(parse(value)) for line in one.splitlines()
            )
            return tuple(dict.fromkeys(line for line in lines if _a_secret(line, any_shape)))
    secrets = []
    for line in value.splitlines():
        quoted = _QUOTED.fullmatch(line)
        if quoted:  # a comment after it is no part of it (90A)
            secret = quoted.group(2)
        elif line.strip()[:1] in ("'", '"'):
            secret = _unquoted(line)
        else:
            secret = _unquoted(_COMMENT.sub("", line))
        if _a_secret(secret, any_shape):
            secrets.append(secret)
    return tuple(dict.fromkeys(secrets))


def _a_secret(text: str, any_shape: bool) -> bool:
    """Whether a line of a variable's value is a secret (see variable_secrets): a line of
    symbols alone (a JSON document's `{`) would mask them as words."""
    return any(char.isalnum() for char in text) and (any_shape or written_as_a_secret(text))


def _json_strings(document: Any) -> Iterator[str]:
    """The strings of a JSON document's values, not its names: read line by line, a line's
    JSON (`"…": "…",`) was masked with the secret, and data echoing it stored broken (92A)."""
    if isinstance(document, str):
        yield document
    elif isinstance(document, list):
        for one in document:
            yield from _json_strings(one)
    elif isinstance(document, dict):
        for one in document.values():
            yield from _json_strings(one)


def written_as_a_secret(piece: str) -> bool:
    """Whether a piece is written as a machine writes a secret (see looks_generated), or as
    one writes a password of symbols, digits or none (85A)."""
    return looks_generated(piece) or (
        _PASSWORD.search(piece) is not None and _machine_written(piece)
    )


def spelled_as_a_secret(name: str) -> bool:
    """Whether a variable's name is spelled as a secret, not as names are: a key's shape, or
    written as a machine writes a secret, changing case and digits as a random token does
    (`OPENAI_API_KEY_2024` is a name): a key pasted where a name belongs (90A)."""
    return looks_like_secret(name) or (looks_generated(name) and _mixed_as_random(name))


def _unquoted(text: str) -> str:
    return text.strip().strip("\"'")


# A quoted value, to the first closing quote that ends it, and a comment after it an
# `--env-file` keeps (`'…' # rotated 2026-11`, `"…" # from "vault"`: read to the comment's
# last quote, the secret ran into it, 91A).
_QUOTED = re.compile(r"""\s*(["'])(.*?)\1(?:\s+#.*|\s*)""")
# A comment an `--env-file` keeps in an unquoted value (` # rotated 2026-11`).
_COMMENT = re.compile(r"\s#.*")
# A character no key is written in (base64, URL-safe base64, `.`, `~`): a password's.
_PASSWORD = re.compile(r"[^A-Za-z0-9_.~+/=-]")


def environment_keys(environ: Mapping[str, str], *named: str) -> tuple[str, ...]:
    """The keys `environ` may hold: the values of the variables `named` (the default keys',
    OpenAI's and Azure's, whatever their shape: a local server's token may look like no
    key) and every value spelled like a key (the key under whatever name `api_key_env`
    gives it), but those of variables named as ids or commits: an account id of 32 hex
    digits is spelled as Azure's keys are, and a gateway's URL holding it (Cloudflare's AI
    Gateway) was refused as holding a key; so was a CI job's database named after its
    commit (GITHUB_SHA, CI_COMMIT_SHA)."""
    values = {
        value.strip()
        for name, value in environ.items()
        if looks_like_secret(value.strip()) and not _named_as_no_key(name)
    }
    return tuple(sorted(values | {environ.get(name, "").strip() for name in named} - {""}))


def credentials(login: str | None, password: str | None) -> list[str]:
    """What of a proxy's user name and password is masked as the key is: the password, and
    a user name (of an e-mail address, what comes before its `@`) spelled like a token:
    long enough (a short one, "user", is a word), and mixing letters and digits, or spelled
    like a key. A person's or a service's name (`CORP\\jane.doe`, `svc-batch-crawler`) is
    none: spelled by the organization's own data, metadata and request lines holding it
    were masked, or left out."""
    found = [password] if password else []
    name = (login or "").partition("@")[0]  # as sent: decoded
    if _spelled_like_a_token(name):
        found.append(name)
    return found


# Changes between a letter and a digit in one word of a user name that make it a token:
# about 8 in a random one of 20 letters and digits, 1 to 3 in a name's words (`prod2`,
# `k8s`, `WIN10X64`).
_TOKEN_CHANGES = 4


def _spelled_like_a_token(name: str) -> bool:
    """Whether a user name is a token: long enough, a word of it mixing letters and digits
    as a random token does (a name's digits stand together: `svc-crawler-01`,
    `jane.doe2024`, `k8s-eu1-prod2`), or spelled like a key."""
    if len(name) < _IDENTIFYING_RUN:
        return False
    changes = max(_changes(word, str.isdigit) for word in _words(name))
    if changes >= _TOKEN_CHANGES or looks_like_secret(name):
        return True
    # A token written in groups (`Xk9m-Q2vL-7pR4`) changes in every group, as a name's
    # numbered words (`k8s-eu1-prod2`) do not.
    letters_and_digits = sum(char.isalnum() for char in name)
    grouped = _changes(name, str.isdigit)
    return grouped >= 2 * _TOKEN_CHANGES and 3 * grouped >= letters_and_digits


def mask_keys(text: str, keys: Iterable[Secret]) -> str:
    """`text` (what a command says) with each of `keys`, and any word spelled like a key,
    masked."""
    for key in keys:
        text = mask_secret(text, key)
    return mask_key_like(text)


def mask_keys_in_data(text: str, keys: Iterable[str]) -> str:
    """`text` showing stored data (a status, a report, in JSON or HTML too) with `keys`
    masked, but those too short to be searched for in stored data (see holds_secret): as
    words, they would mask the document's own (an `x` attribute, `null`, a count of 1). Not
    every word spelled like a key, as what a command says of its own: the data's own
    (`sk-learn-classifier-v2`, a model's name) showed masked (92A)."""
    for key in keys:
        if len(key) >= _IDENTIFYING_RUN:
            text = mask_secret(text, key)
    return text


def mask_keys_in_json(value: Any, keys: Iterable[str]) -> Any:
    """A JSON value (a document's, before it is written) with `keys` masked in each of its
    strings and numbers as mask_keys_in_data does (the keys alone: not every word spelled
    `sk-`, 93A): masked as text, a run of a key ending in
    a backslash took the document's own escape, and the document was no JSON. Key by key,
    over the whole value: each key's scan is worked out once (see _scan's cache)."""
    for key in keys:
        if len(key) >= _IDENTIFYING_RUN:
            value = _map_json(value, functools.partial(mask_secret, secret=key))
    return value


def _map_json(value: Any, change: Callable[[str], str]) -> Any:
    """`value` with `change` applied to its strings and names of members; a number
    `change` alters, spelled as text, is masked whole."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        spelled = _number_text(value)
        return value if change(spelled) == spelled else _MASK  # a number, not in part
    if isinstance(value, list):
        return [_map_json(item, change) for item in value]
    if isinstance(value, dict):
        return {change(str(name)): _map_json(item, change) for name, item in value.items()}
    return value


def _number_text(value: int | float) -> str:
    """A number as its digits: an integral float as the integer it stands for, another
    as written out and as Python writes it (1.234e-05 is 0.00001234 echoed)."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer():
        return str(int(value))
    if not math.isfinite(value):
        return str(value)
    return f"{decimal.Decimal(repr(value)):f} {value!r}"


def has_a_key_prefixed_word(value: str) -> bool:
    """Whether `value` holds a word spelled `sk-…`, as OpenAI's keys are (not the longer
    shapes `looks_like_secret` takes too: a gateway's URL holds a 32-digit hex account id)."""
    return _KEY_LIKE.search(value) is not None


def holds_a_key_like_word(value: str) -> bool:
    """Whether a word of `value` (between characters no key holds) is spelled like a key."""
    return any(looks_like_secret(word) for word in re.findall(r"[A-Za-z0-9_\-]+", value))


def holds_secret(text: str, secret: Secret, *, json_lines: bool = False) -> bool:
    """Whether stored `text` holds `secret`, or half of it or more, in any form.

    With `json_lines`, `text` is JSON texts one a line, which hold their own line breaks
    escaped: the breaks between them alone never make a text searched unfolded (once one
    is, a key folded across two texts is found too: more masking, never less).

    Always False for a key shorter than an identifying run: stored data is never searched
    for a placeholder key, which ordinary values (a status, a digit) may spell.
    """
    return any(
        scan.may_hold(text, json_lines) and _spans(text, scan, json_lines) != []
        for scan in _stored_data_scans(secret)
    )


def holds_secret_in_any_form(text: str, secret: Secret) -> bool:
    """`holds_secret` (the key in each of its forms, see _compatible_too), on the text as
    written and in compatible letters too (see _views): for what a user gives (a path, a
    URL, a setting), short; stored data is searched as it came (folding every page and
    request line cost a line of many scripts 16 times as long)."""
    return any(holds_secret(view, secret) for view in _views(text))


def texts_holding_secret(texts: Iterable[str], secret: Secret) -> frozenset[str]:
    """Those of `texts` (short ones: a page's ids) that hold `secret` (see holds_secret),
    the rest ruled out at once: looked at one by one, a page's ids and file ids took a
    quarter of the walk's time."""
    texts = list(texts)
    # Joined with a character no key holds: no run of a key spans two of them.
    if not texts or not may_hold_secret("\0".join(texts), secret):
        return frozenset()
    return frozenset(text for text in texts if holds_secret(text, secret))


def may_hold_secret(text: str, secret: Secret, *, json_lines: bool = False) -> bool:
    """A quick first look for `holds_secret`, C-fast on long texts: False rules `text` out."""
    return any(scan.may_hold(text, json_lines) for scan in _stored_data_scans(secret))


def mask_values(row: tuple[Any, ...], secret: Secret) -> tuple[Any, ...]:
    """`row` (values to store) with what `holds_secret` finds masked in each text value,
    and numbers spelling a key left out (see _stored_number).

    Each key is searched for in the value as it came, and what they find is masked at
    once: two tokens of one identity share long runs (a JWT's header and claims), and the
    first masked alone would leave the second in pieces shorter than its run, its
    signature stored whole."""
    scans = _stored_data_scans(secret)
    if not scans:
        return row
    if not any(scan.in_a_number for scan in scans):
        return tuple(_mask_stored(v, scans) if isinstance(v, str) else v for v in row)
    return tuple(
        _mask_stored(v, scans)
        if isinstance(v, str)
        else _stored_number(v, scans)
        if isinstance(v, int | float) and not isinstance(v, bool)
        else v
        for v in row
    )


def _stored_number(value: int | float, scans: Sequence[_Scan]) -> int | float | None:
    """`value`, or None where it spells a run of a key spelled as a number (a local
    server's token of digits, echoed as one): a number is left out, not masked in part."""
    spelled = _number_text(value)
    return value if _mask_all(spelled, scans) is spelled else None


def _mask_stored(text: str, scans: Sequence[_Scan]) -> str:
    """`text` masked (see _mask_all); JSON text whose masking breaks it (a proxy password
    holding `","`, echoed over two fields: its quotes are the JSON's) as a JSON string of
    the masked text, which queries can still read, rather than JSON none can."""
    masked = _mask_all(text, scans)
    if masked is text or not text.startswith(("{", "[")):
        return masked
    try:
        parse(masked)
    except ValueError:
        return to_text(masked) if is_json(text) else masked
    return masked


def _mask_all(text: str, scans: Sequence[_Scan], *, compatible: bool = False) -> str:
    """`text` with what each scan finds in it (the key's forms, and spans of its runs)
    masked, spans that meet or overlap masked as one; `compatible`: in compatible letters
    too (see _views)."""
    views = _views(text) if compatible else (text,)
    spans = [
        span
        for view in views
        for scan in scans
        if scan.may_hold(view)
        for span in _found(view, scan)
    ]
    return _masked(text, _joined(spans)) if spans else text


# What is worked out for each key is kept for this many: every message is searched for
# every key, and past 32 (a gateway's machine holding its providers' keys) each was worked
# out anew, a message taking 60 times as long (pass 80A).
_KEYS_KEPT = 1024


@functools.lru_cache(maxsize=_KEYS_KEPT)
def _compatible_too(key: str) -> tuple[str, ...]:
    """`key` as written, in compatible letters and decomposed: a key holding such a letter
    itself (µ, ², ½) is echoed so (μ, 2, 1 and 2 with a fraction slash), and the text
    searched in compatible letters (see _views) holds it so; one holding é may be echoed
    as e and an accent (NFD, as macOS names files), or as Ã© (its UTF-8 read as Latin-1);
    one sent as Latin-1 (a proxy's password, in Basic auth) may be echoed as its bytes read
    as UTF-8, é replaced by U+FFFD or left out."""
    forms = (unicodedata.normalize(form, key) for form in ("NFKC", "NFD", "NFKD"))
    # Sent as UTF-8 in a header, read back by servers that read headers as Latin-1, or as
    # Windows-1252, as browsers and many programs read "Latin-1" (ß as ÃŸ, not Ã\x9f).
    latin1 = key.encode("utf-8", "surrogatepass").decode("latin-1")
    cp1252 = latin1.translate(_WINDOWS_1252)
    return tuple(
        dict.fromkeys((key, _folded(key), *forms, latin1, cp1252, *_latin1_read_as_utf8(key)))
    )


# Windows-1252's characters for the bytes 128-159 where it has one (the others are read as
# the Latin-1 control characters, as browsers do).
_WINDOWS_1252 = {
    byte: bytes([byte]).decode("cp1252")
    for byte in range(0x80, 0xA0)
    if byte not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}


def _latin1_read_as_utf8(key: str) -> tuple[str, ...]:
    """`key` sent as Latin-1 and read as UTF-8, what is no UTF-8 replaced or left out."""
    try:
        sent = key.encode("latin-1")
    except UnicodeEncodeError:
        return ()
    read = (sent.decode("utf-8", errors) for errors in ("replace", "ignore"))
    return tuple(form for form in read if form)  # a key of such letters alone reads as none


def _views(text: str) -> tuple[str, ...]:
    """`text` as written, and in compatible letters (see _folded) where that differs: a key
    holding such a letter itself (a password's ², µ) is found as written."""
    folded = _folded(text)
    return (text,) if folded is text else (text, folded)


def _folded(text: str) -> str:
    """`text` with each character that is another in a compatible form (NFKC) as that one,
    position for position: a terminal shows a key in full-width (U+FF53 for s) or mathematical
    letters legibly, and IDNA sends a host so spelled as the key. Text that no character
    changes in (ASCII, most of any other) is gone through in C alone."""
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return text
    return text.translate(
        {ord(char): _compatible(char) for char in set(text) if not char.isascii()}
    )


@functools.lru_cache(maxsize=4096)
def _compatible(char: str) -> str:
    """`char` in its compatible form, if that is one character (not a ligature's two)."""
    folded = unicodedata.normalize("NFKC", char)
    return folded if len(folded) == 1 else char


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each of `spans` (in order, apart) as `***`."""
    kept, last = [], 0
    for start, end in spans:
        kept += [text[last:start], _MASK]
        last = end
    return "".join([*kept, text[last:]])


def _found(text: str, scan: _Scan) -> list[tuple[int, int]]:
    """The spans of `text` holding a form of the key, as written or JSON-escaped, or runs
    of it."""
    spans = _forms_found(text, scan)
    for chain in _decodings(text, scan):
        spans += [_span_written(chain, span) for span in _forms_found(chain[-1].text, scan)]
    return spans + _spans(text, scan)


def _forms_found(text: str, scan: _Scan) -> list[tuple[int, int]]:
    """The spans of `text` holding a form of the key whole (one shorter than a run too)."""
    spans = []
    for form in scan.forms:
        at = text.find(form)
        while at != -1:
            spans.append((at, at + len(form)))
            at = text.find(form, at + 1)
    return spans


def _stored_data_scans(secret: Secret) -> tuple[_Scan, ...]:
    """How stored data is searched for each key of `secret`: none for a key too short to
    search for."""
    return _scans_of(_each(secret))


@functools.lru_cache(maxsize=64)  # worked out once a key: the walk asks for each batch
def _scans_of(keys: tuple[str, ...]) -> tuple[_Scan, ...]:
    return tuple(
        # Half the key in each form, or half that form if shorter: decomposed or misread,
        # a key is longer, and half of it so spelled was shorter than half that form;
        # composed, a key written decomposed is shorter.
        _scan(form, min(_stored_run(key), _stored_run(form)), in_a_message=False)
        for key in keys
        if len(key) >= _IDENTIFYING_RUN
        for form in _compatible_too(key)  # one form for an ASCII key
    )


# What a run of a key spelled by a number (a key of digits, a decimal, a negative) holds.
_NUMBER_SPELLING = re.compile(r"[-+.0-9eE]+")


@dataclass(frozen=True)
class _Scan:
    """What searching for runs of one key takes, worked out once per key and run."""

    forms: tuple[str, ...]  # longest first, so that no form is masked only in part
    run: int
    # Every run holds one of its form's blocks of (run + 1) // 2 characters, aligned at
    # multiples of that size: finding none of them rules a text out quickly, and a run is
    # found by growing a block found both ways along each form it stands in, where it
    # stands. (Every run kept in a set took memory growing with the key's square: 2 GB for
    # a value of 30,000 characters in the environment.)
    places: dict[str, tuple[tuple[str, int], ...]]  # block: (form, where it stands)
    in_a_number: bool  # a run may be spelled by a number (a key of digits)
    not_the_key: re.Pattern[str]  # a character that is none of the key's, in any case
    # The key holds a character a JSON encoder may escape (see _Decoded), and these are
    # the blocks holding one: the others stand as written, but in a text escaping what
    # no encoder does (see _escapes_the_unescaped).
    escapable: bool
    escapable_blocks: tuple[str, ...]
    # The blocks of no percent-encoded form, those of one holding two escapes in a row
    # (`%6B%2D`: a form encoding each byte), and those holding one escape at a time.
    unquoted_blocks: tuple[str, ...]
    encoded_blocks: tuple[str, ...]
    quoted_blocks: tuple[str, ...]
    equals: bool  # the key holds `=` (see unfoldings)
    # An HTML character reference writing one of the forms' characters (see _html_chains):
    # others (`&amp;`, `&#8212;` in ordinary text, for a key of letters and digits) leave
    # no run of it, and decoding them all took a file of model answers 5 times as long.
    references: tuple[re.Pattern[str], re.Pattern[str]]

    def may_hold(self, text: str, json_lines: bool = False) -> bool:
        if self.has_a_block(text):
            return True
        fold = _has_a_line_break(text, json_lines)
        if fold and self.has_a_block_unfolded(text):
            return True
        for chain in _decodings(text, self):
            decoded = chain[-1].text
            # Any character may be written as a reference: an escaper's choice, or hostile.
            hostile = len(chain) > 1 or _escapes_the_unescaped(text) or _is_html(chain)
            blocks = self.places if hostile else self.escapable_blocks
            if any(block in decoded for block in blocks):
                return True
            if _folds_decoded(fold, chain) and self.has_a_block_unfolded(decoded):
                return True
        return False

    def has_a_block_unfolded(self, text: str) -> bool:
        return any(self.has_a_block(_unfolded(text, folds)) for folds in self.unfoldings(text))

    def unfoldings(self, text: str) -> tuple[_Folds, ...]:
        """How `text` is unfolded: a key holding `=` as quoted-printable's soft breaks are
        taken out, and with `=` kept before a break too (the key's own, at a line's end,
        was taken out with the break, and the key stored in two runs each under half)."""
        return (_FOLDS, _FOLDS_KEEPING_EQUALS) if self.equals and "=" in text else (_FOLDS,)

    def referenced_in(self, text: str) -> bool:
        """Whether `text` may hold a character of the key written as an HTML reference
        (as written, or with its `&` JSON-escaped, as Go writes it)."""
        written, escaped = self.references
        if _matches_at(text, "&", written):
            return True
        return _escapes_latin(text) and _matches_at(text, "\\", escaped)

    def escapes_in(self, text: str) -> bool:
        """Whether `text` may hold the key escaped in a way the text as written does not
        show."""
        return "\\" in text and (self.escapable or _escapes_the_unescaped(text))

    def has_a_block(self, text: str) -> bool:
        if any(block in text for block in self.unquoted_blocks):
            return True
        if "%" not in text:
            return False
        if any(block in text for block in self.quoted_blocks):
            return True
        # A text holding one of these holds two escapes in a row (a URL's `a%20b` does not).
        return _BYTES_ESCAPED.search(text) is not None and any(
            block in text for block in self.encoded_blocks
        )


def _one_case(secret: str) -> bool:
    """Whether `secret` is spelled in one case (hex, say), so that in another it is the
    same key to a server that reads it either way: stored data is searched for both."""
    return secret.lower() == secret or secret.upper() == secret


@functools.lru_cache(maxsize=_KEYS_KEPT)
def _scan(secret: str, run: int, *, in_a_message: bool) -> _Scan:
    """Messages are searched for the key in upper and lower case too (cheap, and a key in
    one case tells most of it); stored data for the key in another case only if it has
    one case, since searching every page for more forms costs the walk, and an OpenAI key
    in one case is no longer the key. Both for the key percent-encoded byte by byte, in
    upper- and lower-case hex, looked for only in a text holding two escapes in a row
    (searched on every page, that form alone cost a third of the search)."""
    forms = _secret_forms(secret)
    read_decoded = _read_decoded(secret)
    if read_decoded:
        # And with none of its backslashes: a hostile server escaping what follows one
        # (`\\\u006b`) makes a run of the two (not counted in runs: they are the key's).
        forms |= {*read_decoded, _decoded(secret.replace("\\", "")).text} - {""}
        # A run is counted in the key's characters: those its backslashes lost too.
        shortest = min(len(read) for read in read_decoded)
        run = max(run - (len(secret) - shortest), (run + 1) // 2)
    every_byte = "".join(f"%{byte:02X}" for byte in _encoded(secret))  # letters too
    forms |= {every_byte, every_byte.lower()}
    if in_a_message or _one_case(secret):
        forms |= {case for form in forms for case in (form.lower(), form.upper())}
    size = (run + 1) // 2
    # The key's characters, and those its backslashes make decoded (`\\n`: a line break).
    escapable = set(secret).union(*read_decoded) - _NEVER_ESCAPED
    alphabet = "".join(sorted({*secret, *secret.lower(), *secret.upper()}))
    places: dict[str, list[tuple[str, int]]] = {}
    for form in forms:
        for at in range(0, len(form) - size + 1, size):
            places.setdefault(form[at : at + size], []).append((form, at))
    return _Scan(
        forms=tuple(sorted(forms, key=len, reverse=True)),
        run=run,
        places={block: tuple(found) for block, found in places.items()},
        in_a_number=any(
            len(spelled) >= run for form in forms for spelled in _NUMBER_SPELLING.findall(form)
        ),
        not_the_key=re.compile(f"[^{re.escape(alphabet)}]"),
        escapable=bool(escapable),
        equals="=" in secret,
        references=_references_to(frozenset("".join(forms))),
        escapable_blocks=tuple(block for block in places if escapable.intersection(block)),
        unquoted_blocks=tuple(block for block in places if "%" not in block),
        encoded_blocks=tuple(block for block in places if _BYTES_ESCAPED.search(block)),
        quoted_blocks=tuple(
            block for block in places if "%" in block and not _BYTES_ESCAPED.search(block)
        ),
    )


_BYTES_ESCAPED = re.compile("%[0-9A-Fa-f]{2}%[0-9A-Fa-f]{2}")  # a literal first: searched fast
# What no JSON encoder escapes: a key of these alone (an OpenAI key, Azure's) is written
# as itself however many times it is escaped.
_NEVER_ESCAPED = frozenset(string.ascii_letters + string.digits + "_.~- ")
_BACKSLASHES_BEFORE_ESCAPABLE = re.compile(r"\\+(?=[^A-Za-z0-9_.~ -])")
# One of those, a backslash, or what a key's percent-encoded forms hold (`%`, `+`: .NET
# escapes it), escaped as \uXXXX: a hostile server's spelling, or a form of the key.
_UNESCAPED_ESCAPED = re.compile(
    r"\\u00(?:2[05bBdDeE]|3\d|4[1-9a-fA-F]|5[0-9aAcCfF]|6[1-9a-fA-F]|7[0-9aAeE])"
)


def _escapes_the_unescaped(text: str) -> bool:
    """Whether `text` escapes a character no encoder escapes (a key's letter as `\\u0073`):
    the key is then searched for decoded whatever its characters."""
    return _escapes_latin(text) and _UNESCAPED_ESCAPED.search(text) is not None


@functools.lru_cache(maxsize=1)  # asked of a text by each scan, for two things
def _escapes_latin(text: str) -> bool:
    """Whether `text` holds an escape `\\u00XX`: searched for whole, a page's backslashes
    make that take a third of a page's search for a key."""
    return "\\u00" in text


def _secret_forms(secret: str) -> set[str]:
    """The spellings of `secret` an error message may hold. JSON's escapes are none of
    them: each encoder escapes other characters (Go `&`, .NET `+`, Gson `=`, PHP `/`), a
    gateway quoting a gateway escapes them again, and their spellings, each searched for,
    were never all (see _Decoded)."""
    sent = _encoded(secret)
    quoted = {quote(sent, safe=""), quote(sent), quote_plus(sent)}
    if not secret.isascii() and all(ord(char) < 256 for char in secret):
        quoted.add(quote(secret, safe="", encoding="latin-1"))  # as a proxy's password is sent
    # Quoted twice: a URL carried in another's query (a gateway naming its upstream).
    quoted |= {quote(q, safe="") for q in quoted}
    lower_hex = {re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), q) for q in quoted}
    forms = {
        secret,
        " ".join(secret.split()),  # messages are shown with their whitespace collapsed
        " ".join(secret),  # spelled out, a character at a time
        *_base64_cores(secret),
        *quoted,
        *lower_hex,
    }
    return {form for form in forms if form}


def _encoded(secret: str) -> bytes:
    """`secret` in UTF-8, or as the bytes the environment or a command line gave where
    they are no UTF-8 (Python holds those as lone surrogates, which UTF-8 cannot carry)."""
    for errors in ("strict", "surrogateescape"):
        with contextlib.suppress(UnicodeEncodeError):
            return secret.encode("utf-8", errors)
    return secret.encode("utf-8", "surrogatepass")  # a lone surrogate a JSON text held


def _read_decoded(secret: str) -> set[str]:
    """`secret` as a decoded text (see _Decoded) reads it JSON-escaped, where that is not
    as written: its own backslashes, escaped, make one run with the escape of the character
    after them, and read as one backslash (or as a control character, `\\n`), or as none
    where an encoder escapes that character."""
    if "\\" not in secret:
        return set()
    reads = (secret, _BACKSLASHES_BEFORE_ESCAPABLE.sub("", secret))
    return {_decoded(read).text for read in reads} - {""}


def _base64_cores(secret: str) -> set[str]:
    """What every base64 text holding `secret` holds of it (a header echoed encoded, as
    `Bearer sk-...`): the key encoded at each of the three offsets it can start at, less
    the characters that depend on the bytes around it, in both alphabets."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + _encoded(secret)).decode()
        core = encoded[(0, 2, 3)[offset] : -4]
        cores |= {core, core.replace("+", "-").replace("/", "_")}
    return {core for core in cores if len(core) >= _IDENTIFYING_RUN}


# A key folded over lines (base64 wrapped at 76 columns, a text at 64, an indent after each
# break, quoted-printable's soft breaks) has no run of half its length on any one line: text
# holding a line break, raw or JSON-escaped, is searched with its breaks and blanks taken out
# too. Runs of backslashes are made one first, so that a break escaped twice (JSON in a JSON
# string) goes as well; then the soft breaks, = and a break; then the escaped breaks. Each
# step in one pass: soft breaks nested (`==` and two breaks), taken out a level a pass, took
# a pass per level (30 s for 200 KB of them).
_Folds: TypeAlias = "tuple[tuple[re.Pattern[str], str], ...]"
_FOLDS: _Folds = (
    (re.compile(r"\\{2,}"), "\\"),
    (re.compile(r"=+(?:\\r\\n|\\n|\r\n|\n|\\u000[dD]\\u000[aA]|\\u000[aA])+"), ""),
    (re.compile(r"\\[rnt]|\\u000[aAdD]"), ""),  # \u000a: left by an escape escaped
    (re.compile(r"[ \r\n\t]+"), ""),
)
_FOLDS_KEEPING_EQUALS = (_FOLDS[0], *_FOLDS[2:])
_NO_BLANKS = str.maketrans("", "", " \r\n\t")


def _without_blanks(text: str) -> str:
    """`text` with its blanks (see _NO_BLANKS) taken out, in C: str.translate is fast on
    ASCII alone, and took 20 times as long as four replaces on text of other letters (a
    file of Chinese answers synced 2.5 times as slowly with a key at hand)."""
    if text.isascii():
        return text.translate(_NO_BLANKS)
    for blank in " \r\n\t":
        if blank in text:
            text = text.replace(blank, "")
    return text


# Without one of these, only \n of the escaped folds can be in a text (taking out one
# \n never makes another escape): the common case, taken in two C passes. (Searches each
# fast on its first characters, where one for any is slow.)
_RARE_ESCAPES = re.compile(r"\\[\\rt]")
_SOFT_BREAKS = re.compile(r"=(?:\\n|[\r\n]|\\u000[aAdD])")
_UNICODE_BREAK = re.compile(r"\\u000[aAdD]")


_ESCAPED_BREAK = re.compile(r"\\(?:[nr]|u000)")


def _has_a_line_break(text: str, json_lines: bool) -> bool:
    """Whether `text` holds a break a key may be folded at: in JSON lines, an escaped one.
    (One search for the escapes, after a look for a backslash: three searches took 150 us
    on the rows of a page.)"""
    escaped = "\\" in text and _ESCAPED_BREAK.search(text) is not None
    return escaped or (not json_lines and ("\n" in text or "\r" in text))


@functools.lru_cache(maxsize=4)  # each scan of a run's keys asks, of a text and its decoding
def _unfolded(text: str, folds: _Folds = _FOLDS) -> str:
    """`text` with what may fold a key taken out."""
    if any(rare.search(text) for rare in (_RARE_ESCAPES, _SOFT_BREAKS, _UNICODE_BREAK)):
        for fold, kept in folds[:-1]:
            text = fold.sub(_literal(kept), text)
    else:
        text = text.replace("\\n", "")
    return _without_blanks(text)


# Where the pieces a step of unfolding kept start: in the text after it, and before it.
_Cut: TypeAlias = "tuple[array[int], array[int]]"


def _unfolded_with_cuts(text: str, folds: _Folds = _FOLDS) -> tuple[str, list[_Cut]]:
    """`_unfolded(text, folds)`, and the cuts that lead back from its positions to `text`'s:
    two numbers a fold taken out (a position per character took 60 times a long line's
    size)."""
    cuts: list[_Cut] = []
    for fold, kept in folds:
        after, before = array("q", [0]), array("q", [0])
        shrunk = 0
        for found in fold.finditer(text):
            shrunk += found.end() - found.start() - len(kept)
            before.append(found.end())
            after.append(found.end() - shrunk)
        if len(after) > 1:
            cuts.append((after, before))
            # Blanks, the most, taken out in C: a regex's pieces took 14 times a text's size.
            blanks = fold is _FOLDS[-1][0]
            text = _without_blanks(text) if blanks else fold.sub(_literal(kept), text)
    return text, cuts


def _literal(replacement: str) -> str:
    """`replacement` as re.sub writes it as it is."""
    return replacement.replace("\\", "\\\\")


def _position_before(position: int, cuts: list[_Cut]) -> int:
    """Where `position` of an unfolded text stands in the text it was unfolded from: a
    character that stands for `old` (a backslash of two) is that of `old`'s first."""
    for after, before in reversed(cuts):
        piece = bisect.bisect_right(after, position) - 1
        position = before[piece] + position - after[piece]
    return position


def _spans(text: str, scan: _Scan, json_lines: bool = False) -> list[tuple[int, int]]:
    """The spans of `text` holding runs of the key, as they stand or folded over lines,
    as written or JSON-escaped (see _Decoded)."""
    fold = _has_a_line_break(text, json_lines)
    spans = _spans_as_written(text, scan, fold)
    for chain in _decodings(text, scan):
        decoded, folds = chain[-1].text, _folds_decoded(fold, chain)
        spans += [_span_written(chain, span) for span in _spans_as_written(decoded, scan, folds)]
    return _joined(spans)


# A text is decoded once for any encoder at any depth (see _Decoded), and again while a
# hostile server's escapes of escapes are left (`\u005cu0073` decodes as `\u0073`), or a
# backslash so written makes escapes anew (`\u005cu002b`: `\u002b`), up to this many times.
_DECODINGS = 8
_ESCAPED_BACKSLASH = re.compile(r"\\u005[cC]")


def _decodings(text: str, scan: _Scan) -> tuple[_Chain, ...]:
    """`text` decoded, where the scan's key may be escaped in it, and decoded again while
    that leaves escapes of what no encoder escapes, and with its HTML character references
    decoded where one may write a character of the key: each as the decodings leading to
    it."""
    chains = _decoding_chains(text) if scan.escapes_in(text) else ()
    return chains + _html_chains(text) if scan.referenced_in(text) else chains


def _references_to(chars: frozenset[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Patterns finding the HTML references (see _REFERENCE) that write one of `chars`,
    numeric in any case of hex and any zeros before, or named, and those that write
    nothing, which decoded join a key's pieces: their `&` as written, and JSON-escaped."""
    codes = sorted(
        {ord(char) for char in chars}
        | {code for code, written in _NUMBERS_WRITING_OTHERWISE.items() if written in {"", *chars}}
    )
    names = sorted(  # `&fjlig;` writes two letters
        name
        for name, value in html.entities.html5.items()
        if name.endswith(";") and chars.issuperset(value)
    )
    numbers = "|".join(str(code) for code in codes)
    hexes = "|".join(f"{code:x}" for code in codes)
    named = "".join(f"|{re.escape(name)}" for name in names)
    numeric = rf"#0*(?:{numbers})(?![0-9])|#[xX]0*(?i:{hexes})(?![0-9a-fA-F])"
    # Each begins with a literal, which re searches for fast (an alternation of the two
    # was tried at every character: 20 ns each).
    return (
        re.compile(rf"&(?:{numeric}{named})"),
        re.compile(rf"\\u0026(?:{numeric}{named}|\\+u0023)"),  # `#` escaped too
    )


# The numbers whose reference html writes as another character (128-159: Windows-1252's,
# `&#154;` is š) or as none (controls, noncharacters), and what it writes.
_NUMBERS_WRITING_OTHERWISE = {
    code: html.unescape(f"&#{code};")
    for code in (
        *range(0xA0),
        *range(0xFDD0, 0xFDF0),
        *(plane + last for plane in range(0, 0x110000, 0x10000) for last in (0xFFFE, 0xFFFF)),
    )
    if html.unescape(f"&#{code};") != chr(code)
}

# An HTML character reference: numeric, or named and ended by `;` as escapers write them (a
# URL's `&b=2` is none); a name html.unescape does not know is left as written.
_REFERENCE = re.compile(
    r"&(?:#0*[0-9]{1,8};?|#[xX]0*[0-9a-fA-F]{1,8};?|[A-Za-z][A-Za-z0-9]{0,31};)"
)


@functools.lru_cache(maxsize=1)  # each scan of each key asks, as for _decoding_chains
def _html_chains(text: str) -> tuple[_Chain, ...]:
    """`text` with its HTML character references decoded, as written and (a page's text
    in JSON, Go's escaping the `&` too) once JSON-decoded, where it holds any: an HTML page
    (a gateway's error page) may write any character of the key as one, each escaper its
    own way (`&#34;`, `&#x22;`, `&quot;`; `&#039;`, `&apos;`), and their spellings, each
    searched for, were never all."""
    chains: list[_Chain] = []
    references = "&" in text and _REFERENCE.search(text) is not None
    if references:
        view = _HtmlDecoded(text)
        if view.text != text:
            chains.append((view,))
    if "\\" in text and (references or _holds_an_escaped_ampersand(text)):
        first = _decoded(text)
        if first.text != text and _REFERENCE.search(first.text) is not None:
            view = _HtmlDecoded(first.text)
            if view.text != first.text:
                chains.append((first, view))
    return tuple(chains)


def _matches_at(text: str, char: str, pattern: re.Pattern[str]) -> bool:
    """Whether `pattern` (beginning with `char`) matches where `char` stands in `text`: at
    each of the first places in turn, found in C (a regex searches a character at a time:
    on a page, a tenth of the search for a key), then by its search."""
    at = text.find(char)
    for _ in range(_FEW_PLACES):
        if at == -1:
            return False
        if pattern.match(text, at) is not None:
            return True
        at = text.find(char, at + 1)
    return at != -1 and pattern.search(text, at) is not None


_FEW_PLACES = 64


def _holds_an_escaped_ampersand(text: str) -> bool:
    """Whether `text` holds `&` JSON-escaped, as Go writes it."""
    return _escapes_latin(text) and "\\u0026" in text


def _is_html(chain: _Chain) -> bool:
    return isinstance(chain[-1], _HtmlDecoded)


class _WrittenAt(abc.ABC):
    """A decoded text that tells where each of its characters was written."""

    def span_written(self, start: int, end: int) -> tuple[int, int]:
        """Where the decoded span `start:end` was written in the text."""
        return self._written(start, start=True), self._written(end - 1, start=False)

    @abc.abstractmethod
    def _written(self, position: int, *, start: bool) -> int:
        """Where the character at `position` was written: its first or past its last."""


class _HtmlDecoded(_WrittenAt):
    """A text with its HTML character references decoded (see _html_chains), and where each
    decoded character was written."""

    def __init__(self, written: str) -> None:
        kept: list[str] = []
        # Each reference: where its characters stand decoded, how many, its span written.
        self._at, self._lengths = array("q"), array("q")
        self._starts, self._ends = array("q"), array("q")
        last = decoded = 0
        for reference in _REFERENCE.finditer(written):
            chars = html.unescape(reference.group())
            if chars == reference.group():
                continue  # no reference html knows
            kept += [written[last : reference.start()], chars]
            decoded += reference.start() - last
            self._at.append(decoded)
            self._lengths.append(len(chars))
            self._starts.append(reference.start())
            self._ends.append(reference.end())
            decoded += len(chars)
            last = reference.end()
        self.text = "".join([*kept, written[last:]])

    def _written(self, position: int, *, start: bool) -> int:
        """Where the character at `position` was written: its first or past its last."""
        reference = bisect.bisect_right(self._at, position) - 1
        if reference < 0:
            return position + (0 if start else 1)
        into = position - self._at[reference]
        if into < self._lengths[reference]:  # a character a reference wrote
            return self._starts[reference] if start else self._ends[reference]
        return self._ends[reference] + into - self._lengths[reference] + (0 if start else 1)


# Each scan of each key asks for a text's decodings, ruling it out and finding spans:
# worked out once, a hostile nest of escapes deep in a long text was decoded to its depth
# some 30 times (9 MB, four keys: 58 s).
@functools.lru_cache(maxsize=1)
def _decoding_chains(text: str) -> tuple[_Chain, ...]:
    """The chains of decodings of `text` (see _decodings). Decoded once, a text is the same
    again but around the escapes left: only excerpts around them are decoded further (a
    nest eight levels deep in 49 MB of escaped lines was decoded and searched whole at
    every level, 25 s a key)."""
    first = _decoded(text)
    chains: list[_Chain] = [(first,)]
    if not _decodes_again(first):
        return tuple(chains)
    for excerpt in _excerpts_around_escapes(first.text):
        last = _Decoded(excerpt.text)
        chain: _Chain = (first, excerpt, last)
        chains.append(chain)
        for _ in range(_DECODINGS - 2):
            if not _decodes_again(last):
                break
            last = _Decoded(last.text)
            chain = (*chain, last)
            chains.append(chain)
    return tuple(chains)


def _decodes_again(decoded: _Decoded) -> bool:
    """Whether a decoded text holds escapes of what no encoder escapes, or a backslash
    written `\u005c` made escapes anew."""
    text = decoded.text
    rebuilt = "\\" in text and _ESCAPED_BACKSLASH.search(decoded.written) is not None
    return rebuilt or _escapes_the_unescaped(text)


# How far around an escape left a decoded text's excerpt reaches: past any key's longest
# form (percent-encoded byte by byte, folded over lines).
_EXCERPT_MARGIN = 1 << 14
_ESCAPE_LEFT = re.compile(r"\\+(?:u[0-9a-fA-F]{4}|[\"'/bfnrt])")


def _excerpts_around_escapes(text: str) -> list[_Excerpt]:
    """The parts of `text` within _EXCERPT_MARGIN of an escape, those that meet joined."""
    excerpts: list[_Excerpt] = []
    start = end = -1
    for escape in _ESCAPE_LEFT.finditer(text):
        reach = (max(escape.start() - _EXCERPT_MARGIN, 0), escape.end() + _EXCERPT_MARGIN)
        if reach[0] <= end:
            end = reach[1]
            continue
        if end > start:
            excerpts.append(_Excerpt(text, start, end))
        start, end = reach
    if end > start:
        excerpts.append(_Excerpt(text, start, end))
    return excerpts


class _Excerpt:
    """A part of a decoded text, decoded further alone (see _decoding_chains)."""

    def __init__(self, whole: str, start: int, end: int) -> None:
        self.text = whole[start:end]
        self._start = start

    def span_written(self, start: int, end: int) -> tuple[int, int]:
        """Where the span `start:end` stands in the whole text."""
        return start + self._start, end + self._start


def _folds_decoded(fold: bool, chain: _Chain) -> bool:
    """Whether a text's decoding is searched unfolded: where the text is (see
    _has_a_line_break), and where a decoding of its decoding holds a break (`\u005cn`)."""
    decoded = chain[-1].text
    return fold or (len(chain) > 1 and ("\n" in decoded or "\r" in decoded))


def _span_written(chain: _Chain, span: tuple[int, int]) -> tuple[int, int]:
    """Where a span of the last of `chain`'s decodings was written in the first's text."""
    for decoded in reversed(chain):
        span = decoded.span_written(*span)
    return span


def _spans_as_written(text: str, scan: _Scan, fold: bool) -> list[tuple[int, int]]:
    """The spans of `text` holding runs of the key; with `fold`, folded over lines too."""
    spans = _find_runs(text, scan)
    for folds in scan.unfoldings(text) if fold else ():
        if scan.has_a_block(_unfolded(text, folds)):
            unfolded, cuts = _unfolded_with_cuts(text, folds)
            spans += [
                (_position_before(start, cuts), _position_before(end - 1, cuts) + 1)
                for start, end in _find_runs(unfolded, scan)
            ]
    return _joined(spans)


# A JSON escape, each backslash a run of them (escaped again, as a gateway's error quoting
# an upstream one is, a backslash doubles): a UTF-16 pair, a \u and four hex digits, a
# backslash and the character it escapes, or backslashes before any other character (or
# none), a backslash as written.
_ESCAPE = re.compile(
    r"\\+u[dD][89abAB][0-9a-fA-F]{2}\\+u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|\\+u[0-9a-fA-F]{4}|\\+[\"'/bfnrt]|\\+",
)


class _Decoded(_WrittenAt):
    """A text with its JSON escapes decoded, however many times escaped: searched for the
    key as written, it finds the key as any encoder escapes it (Go `&` as `\\u0026`, .NET
    in upper-case hex, Gson `=` as `\\u003d`, PHP `/` as `\\/`), at any depth (a gateway
    quoting a gateway), and runs of it counted in the key's characters (counted in an
    escaped form's, 16 were three letters of a key: `Gr\\u00f6\\u00dfe`, the word Größe,
    was masked)."""

    def __init__(self, written: str) -> None:
        self.written = written
        self.text = _decoded_text(written)
        self._escapes_by_piece: dict[int, _Escapes] = {}

    def _written(self, position: int, *, start: bool) -> int:
        """Where the character at `position` was written: its first or past its last."""
        piece = bisect.bisect_right(self._pieces[1], position) - 1
        at, starts, ends = self._escapes(piece)
        escape = bisect.bisect_right(at, position) - 1
        if escape >= 0 and at[escape] == position:
            return starts[escape] if start else ends[escape]
        if escape >= 0:
            since = ends[escape] - at[escape] - 1
        else:
            since = self._pieces[0][piece] - self._pieces[1][piece]
        return position + since + (0 if start else 1)

    @functools.cached_property
    def _pieces(self) -> tuple[list[int], list[int]]:
        """Where the pieces of the text begin, as written and decoded: each begins where an
        escape does, and is decoded alone in C, so that only those where a key was found
        are gone through in Python (8 MB of escaped quotes took 5 s)."""
        written, decoded = [0], [0]
        while True:
            cut = _escape_starting_after(self.written, written[-1] + _PIECE)
            if cut is None:
                return written, decoded
            decoded.append(decoded[-1] + len(_decoded_text(self.written[written[-1] : cut])))
            written.append(cut)

    def _escapes(self, piece: int) -> _Escapes:
        """Each escape of a piece: where its character stands decoded, and the span it was
        written in."""
        if piece not in self._escapes_by_piece:
            written, decoded = self._pieces
            end = written[piece + 1] if piece + 1 < len(written) else len(self.written)
            at, starts, ends = array("q"), array("q"), array("q")
            since = written[piece] - decoded[piece]  # what the escapes before it took
            for escape in _ESCAPE.finditer(self.written, written[piece], end):
                at.append(escape.start() - since)
                starts.append(escape.start())
                ends.append(escape.end())
                since += escape.end() - escape.start() - 1
            self._escapes_by_piece[piece] = (at, starts, ends)
        return self._escapes_by_piece[piece]


_Escapes: TypeAlias = "tuple[array[int], array[int], array[int]]"
# A text's decodings, each from the one before: the first decodes the text as written.
_Chain: TypeAlias = "tuple[_Decoded | _Excerpt | _HtmlDecoded, ...]"
_PIECE = 1 << 16
# A run of backslashes begins an escape, but for a UTF-16 pair's second one.
_RUN_OF_BACKSLASHES = re.compile(r"(?<!\\)\\")
_HIGH_SURROGATE_BEFORE = re.compile(r"u[dD][89abAB][0-9a-fA-F]{2}")
_LOW_SURROGATE = re.compile(r"\\+u[dD][c-fC-F][0-9a-fA-F]{2}")


def _escape_starting_after(text: str, at: int) -> int | None:
    """Where the first escape of `text` from `at` on begins, if any (see _ESCAPE)."""
    while (found := _RUN_OF_BACKSLASHES.search(text, at)) is not None:
        start = found.start()
        paired = _HIGH_SURROGATE_BEFORE.match(text, start - 5, start) and (
            _LOW_SURROGATE.match(text, start)
        )
        if not paired:
            return start
        at = start + 1
    return None


def _decoded_text(text: str) -> str:
    """`text` with its escapes decoded (see _ESCAPE), in passes in C: a page holds hundreds
    (quotes in messages and metadata), each gone through in Python took milliseconds."""
    if "\\" not in text:
        return text
    while "\\\\" in text:
        text = text.replace("\\\\", "\\")
    for escape, char in _ESCAPED_CHARACTERS.items():
        text = text.replace(escape, char)
    return _UNICODE_ESCAPE.sub(_unicode_character, text) if "\\u" in text else text


_ESCAPED_CHARACTERS = {
    f"\\{escape}": char for escape, char in zip("\"'/bfnrt", "\"'/\b\f\n\r\t", strict=True)
}
_UNICODE_ESCAPE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})"
)


def _unicode_character(escape: re.Match[str]) -> str:
    high, low, unit = escape.groups()
    if high:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
    return chr(int(unit, 16))


@functools.lru_cache(maxsize=1)  # each scan of a run's keys searches one text in turn
def _decoded(text: str) -> _Decoded:
    return _Decoded(text)


def _joined(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`spans` in order, overlapping ones joined."""
    joined: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return joined


def _find_runs(text: str, scan: _Scan) -> list[tuple[int, int]]:
    """The spans of `text` made of the scan's runs, overlapping ones joined.

    Every run holds one of the scan's blocks whole: only the places around a block found
    are looked at, so that a long text (a 16 MiB line) is not gone through a character at
    a time in Python. A place whose whole reach lies within the spans found around the
    block's earlier finds adds nothing, and is not grown (a key of one letter repeated
    finds its block at every character of a text of that letter, at each of its places)."""
    spans = []
    for block, places in scan.places.items():
        start = end = -1  # the spans found around this block so far, and overlapping
        at = text.find(block)
        while at != -1:
            for form, where in places:
                if start <= at - where and at - where + len(form) <= end:
                    continue
                if not _may_be_a_run(text, at, form, where, len(block), scan.run):
                    continue
                grown_start, grown_end = _grown(text, at, form, where, len(block))
                if grown_end - grown_start < scan.run:
                    continue
                if grown_start <= end and start <= grown_end:
                    start, end = min(start, grown_start), max(end, grown_end)
                else:
                    if end > start:
                        spans.append((start, end))
                    start, end = grown_start, grown_end
            at = text.find(block, at + 1)
        if end > start:
            spans.append((start, end))
    return _joined(spans)


def _may_be_a_run(text: str, at: int, form: str, where: int, size: int, run: int) -> bool:
    """Whether the block at `at` may be grown into a run of `form` where it stands at
    `where`: the run's characters past the block on one side, at least, are there. Two
    searches in C rule out a block standing alone (a text of a key's block repeated grew
    a span at every block, at each of its places: seconds a megabyte)."""
    need = run - size  # on the two sides together
    after = need - min(where, at)  # at least, on this side, all the other can hold
    if after > 0 and not text.startswith(form[where + size : where + size + after], at + size):
        return False
    before = need - (len(form) - where - size)
    if before <= 0:
        return True
    return before <= min(where, at) and text.startswith(form[where - before : where], at - before)


def _grown(text: str, at: int, form: str, where: int, size: int) -> tuple[int, int]:
    """The span of `text` around the block at `at` that spells `form` around the same block
    at `where`."""
    if where <= at and text.startswith(form, at - where):
        return at - where, at - where + len(form)  # the whole form: no further
    before = _common_start(text[max(0, at - where) : at][::-1], form[:where][::-1])
    after = _common_start(text[at + size : at + len(form) - where], form[where + size :])
    return at - before, at + size + after


def _common_start(one: str, other: str) -> int:
    """How many characters `one` and `other` begin with in common (by halves, each
    comparison in C)."""
    low, high = 0, min(len(one), len(other))
    while low < high:
        middle = (low + high + 1) // 2
        if one[:middle] == other[:middle]:
            low = middle
        else:
            high = middle - 1
    return low
