"""Keeping the API key out of sight: masked wherever it may be echoed, never shown."""

from __future__ import annotations

import json
import re
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


def mask_secret(text: str, secret: str | None) -> str:
    """`text` with `secret` masked as `***` in every form a server may echo it in.

    As is, JSON-escaped, percent-encoded, with its whitespace collapsed, and any run of
    `_IDENTIFYING_RUN` characters or more of one of these (a key cut short, say).
    """
    if not secret:
        return text
    forms = _secret_forms(secret)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, _MASK)
    return _mask_runs(text, forms)


def mask_values(row: tuple[Any, ...], secret: str) -> tuple[Any, ...]:
    """`row` with `secret` masked in each of its text values."""
    return tuple(mask_secret(v, secret) if isinstance(v, str) else v for v in row)


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


def _mask_runs(text: str, forms: set[str]) -> str:
    """`text` with every run of `_IDENTIFYING_RUN` or more characters of a form masked."""
    size = _IDENTIFYING_RUN
    pieces = {form[i : i + size] for form in forms for i in range(len(form) - size + 1)}
    spans: list[tuple[int, int]] = []
    for i in range(len(text) - size + 1):
        if text[i : i + size] in pieces:
            if spans and i <= spans[-1][1]:
                spans[-1] = (spans[-1][0], i + size)
            else:
                spans.append((i, i + size))
    kept, last = [], 0
    for start, end in spans:
        kept += [text[last:start], _MASK]
        last = end
    return "".join([*kept, text[last:]])
