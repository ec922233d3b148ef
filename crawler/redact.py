"""Keeping the API key out of sight: masked wherever it may be echoed, never shown."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus


def looks_like_secret(value: Any) -> bool:
    """Whether `value` may be an API key pasted in the wrong place, and so must not be shown.

    A key prefix (sk-, as OpenAI's and many compatible servers' keys begin), or a long token
    mixing lower case, upper case and digits, as random keys do and variable names rarely do.
    """
    if not isinstance(value, str):
        return False
    if value.startswith(("sk-", "sk_")):
        return True
    return (
        len(value) >= 32
        and re.fullmatch(r"[A-Za-z0-9_.\-]+", value) is not None
        and all(re.search(kind, value) for kind in ("[a-z]", "[A-Z]", "[0-9]"))
    )


_MASK = "***"

# A run this long of a key is masked even when the rest is cut off or altered: past the
# prefix all keys share (sk-proj-), it identifies the key; shorter runs are not secret.
_IDENTIFYING_RUN = 16

# Every run of _IDENTIFYING_RUN characters of a form holds one of the form's blocks of this
# size (aligned at multiples of it): finding none of them rules a text out quickly.
_BLOCK = _IDENTIFYING_RUN // 2


def mask_secret(text: str, secret: str | None) -> str:
    """`text` with `secret` masked as `***` in every form a server may echo it in.

    As is, JSON-escaped, percent-encoded, with its whitespace collapsed, and any run of
    `_IDENTIFYING_RUN` characters or more of one of these (a key cut short, say). A key
    shorter than that (`x`, `EMPTY`: a placeholder a local server ignores, or a short test
    key) is masked only where it stands as a word of its own, never inside other words.
    """
    if not secret:
        return text
    if len(secret) < _IDENTIFYING_RUN:
        return re.sub(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", _MASK, text)
    scan = _scan(secret)
    if not scan.may_hold(text):
        return text
    for form in scan.forms:
        text = text.replace(form, _MASK)
    return _mask_runs(text, scan.runs)


def holds_secret(text: str, secret: str | None) -> bool:
    """Whether `text` holds `secret`, or a run of it long enough to identify it, in any form.

    Always False for a key shorter than an identifying run: stored data is never searched
    for a placeholder key, which ordinary values (a status, a digit) may spell.
    """
    if not secret or len(secret) < _IDENTIFYING_RUN:
        return False
    scan = _scan(secret)
    return scan.may_hold(text) and _find_runs(text, scan.runs) != []


def mask_values(row: tuple[Any, ...], secret: str) -> tuple[Any, ...]:
    """`row` with `secret` masked in each of its text values."""
    return tuple(mask_secret(v, secret) if isinstance(v, str) else v for v in row)


@dataclass(frozen=True)
class _Scan:
    """What searching for one key takes, worked out once per key."""

    forms: tuple[str, ...]  # longest first, so that no form is masked only in part
    runs: frozenset[str]  # every identifying run of every form
    blocks: tuple[str, ...]

    def may_hold(self, text: str) -> bool:
        return any(block in text for block in self.blocks)


@functools.lru_cache(maxsize=4)
def _scan(secret: str) -> _Scan:
    forms = _secret_forms(secret)
    size = _IDENTIFYING_RUN
    return _Scan(
        forms=tuple(sorted(forms, key=len, reverse=True)),
        runs=frozenset(form[i : i + size] for form in forms for i in range(len(form) - size + 1)),
        blocks=tuple(
            {
                form[i : i + _BLOCK]
                for form in forms
                for i in range(0, len(form) - _BLOCK + 1, _BLOCK)
            }
        ),
    )


def _secret_forms(secret: str) -> set[str]:
    """The spellings of `secret` an error message may hold."""
    quoted = {quote(secret, safe=""), quote(secret), quote_plus(secret)}
    lower_hex = {re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), q) for q in quoted}
    forms = {
        secret,
        " ".join(secret.split()),  # messages are shown with their whitespace collapsed
        json.dumps(secret)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),  # as PHP's json_encode writes it
        json.dumps(secret, ensure_ascii=False)[1:-1],
        *quoted,
        *lower_hex,
    }
    return {form for form in forms if form}


def _find_runs(text: str, runs: frozenset[str]) -> list[tuple[int, int]]:
    """The spans of `text` made of identifying runs, overlapping ones joined."""
    size = _IDENTIFYING_RUN
    spans: list[tuple[int, int]] = []
    for i in range(len(text) - size + 1):
        if text[i : i + size] in runs:
            if spans and i <= spans[-1][1]:
                spans[-1] = (spans[-1][0], i + size)
            else:
                spans.append((i, i + size))
    return spans


def _mask_runs(text: str, runs: frozenset[str]) -> str:
    """`text` with every span of identifying runs masked."""
    kept, last = [], 0
    for start, end in _find_runs(text, runs):
        kept += [text[last:start], _MASK]
        last = end
    return "".join([*kept, text[last:]])
