"""Model prices read from a file: a CSV in `model_prices`' columns, or a LiteLLM-style price
map (JSON, USD per token). Pure: text in, rows out, a one-line error naming the place of
anything that is not a price."""

from __future__ import annotations

import collections
import csv
import io
import json
import math
import re
from dataclasses import astuple, dataclass
from typing import Any

from .errors import ConfigError
from .jsontext import TooDeepError, parse

# USD per 1M tokens, as OpenAI's price pages and `model_prices` give them.
RATE_COLUMNS = (
    "input",
    "cached_input",
    "output",
    "batch_input",
    "batch_cached_input",
    "batch_output",
)

# A value a message quotes is cut to this many characters.
MAX_SHOWN = 60

# A LiteLLM price map's per-token keys, for each of our columns.
_PRICE_MAP_KEYS = {
    "input": "input_cost_per_token",
    "cached_input": "cache_read_input_token_cost",
    "output": "output_cost_per_token",
    "batch_input": "input_cost_per_token_batches",
    "batch_cached_input": "cache_read_input_token_cost_batches",
    "batch_output": "output_cost_per_token_batches",
}


class PriceFileError(ConfigError):
    """A price file that cannot be read as prices (exit 2, as for a bad config)."""


@dataclass(frozen=True)
class ModelPrice:
    """One model's rates in USD per 1M tokens; None where the file gives none."""

    model: str
    input: float | None = None
    cached_input: float | None = None
    output: float | None = None
    batch_input: float | None = None
    batch_cached_input: float | None = None
    batch_output: float | None = None

    def row(self) -> tuple[Any, ...]:
        """The `model_prices` values, in `("model", *RATE_COLUMNS)` order."""
        return astuple(self)


@dataclass(frozen=True)
class PriceFile:
    """The prices a file gives, and the rate columns it gives them in: loading it changes
    those columns only. A price map's entries each give the rates they name (`per_entry`):
    loading it changes those alone, a model's other rates kept."""

    prices: list[ModelPrice]
    columns: tuple[str, ...] = RATE_COLUMNS
    per_entry: bool = False


def read_prices(text: str, name: str) -> PriceFile:
    """The prices in `text`, read from the file `name`: a price map if it is a JSON object,
    else a CSV.

    Raises:
        PriceFileError: what is wrong, and where.
    """
    if text.lstrip().startswith(("{", "[")):  # a list is JSON too, and said to be no map
        return PriceFile(read_price_map(text, name), per_entry=True)
    try:
        header, prices = read_price_csv(text, name)
    except csv.Error as exc:  # a cell past the csv module's limit (128 KiB), say
        raise PriceFileError(f"{name}: not a price CSV ({exc})") from None
    return PriceFile(prices, header)


_LINE_END = re.compile(r"\r\n|\r|\n")


def read_price_csv(text: str, name: str) -> tuple[tuple[str, ...], list[ModelPrice]]:
    """The rate columns a CSV names and its prices: a `model` column and any of RATE_COLUMNS
    (USD per 1M tokens); lines starting with `#` are comments, an empty cell is no rate."""
    lines = [
        (number, line)
        # Lines end at line ends alone: str.splitlines() also splits at U+2028 and NEL,
        # inside a cell.
        for number, line in enumerate(_LINE_END.split(text), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise PriceFileError(f"{name}: no prices in it")
    header_number, header_line = lines[0]
    header = [cell.strip() for cell in next(csv.reader([header_line]))]
    rates = [column for column in header if column in RATE_COLUMNS]
    unknown = [column for column in header if column not in {"model", *RATE_COLUMNS}]
    twice = sorted(column for column, count in collections.Counter(header).items() if count > 1)
    if twice:
        raise PriceFileError(
            f"{name} line {header_number}: the header names {_cut(twice[0])} twice"
        )
    if "model" not in header or not rates or unknown:
        named = ", ".join(_cut(column) for column in unknown[:3])
        more = ", ..." if len(unknown) > 3 else ""
        raise PriceFileError(
            f"{name} line {header_number}: the header must name `model` and rate columns "
            f"among {', '.join(RATE_COLUMNS)}" + (f" (not {named}{more})" if unknown else "")
        )
    prices = []
    for number, line in lines[1:]:
        cells = next(csv.reader(io.StringIO(line)))
        if len(cells) != len(header):
            raise PriceFileError(
                f"{name} line {number}: {len(cells)} cells where the header has {len(header)}"
            )
        values = dict(zip(header, (cell.strip() for cell in cells), strict=True))
        where = f"{name} line {number}"
        model = _model(values["model"], where)
        rates_of = {column: _per_million(values[column], column, where) for column in rates}
        prices.append(ModelPrice(model, **rates_of))
    return tuple(rates), _unique(prices, name)


def read_price_map(text: str, name: str) -> list[ModelPrice]:
    """Prices from a LiteLLM-style map: `{model: {"input_cost_per_token": ..., ...}}`, USD
    per token; entries with no rate we know (an image model, `sample_spec`) are skipped."""
    try:
        entries = parse(text)
    except json.JSONDecodeError as exc:
        raise PriceFileError(f"{name} line {exc.lineno}: not JSON ({exc.msg})") from None
    except TooDeepError:
        raise PriceFileError(f"{name}: JSON nested too deeply to be a price map") from None
    if not isinstance(entries, dict):
        raise PriceFileError(f"{name}: a price map is a JSON object of models")
    prices = []
    for model, entry in entries.items():
        if model == "sample_spec" or not isinstance(entry, dict):
            continue
        where = f"{name}, model {_cut(repr(model))}"
        rates = {
            column: _per_token(entry[key], key, where)
            for column, key in _PRICE_MAP_KEYS.items()
            if entry.get(key) is not None
        }
        if rates:
            prices.append(ModelPrice(_model(model, where), **rates))
    if not prices:
        raise PriceFileError(f"{name}: no model in it has a per-token price")
    return _unique(prices, name)


def _model(value: str, where: str) -> str:
    if not value.strip():
        raise PriceFileError(f"{where}: no model name")
    if not value.isprintable():  # a NUL, a line end: no model the API names
        raise PriceFileError(f"{where}: model name {_cut(repr(value))} holds a control character")
    return value.strip()


def _number(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PriceFileError(f"{where}: {what} {_cut(repr(value))} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise PriceFileError(f"{where}: {what} {_cut(repr(value))} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise PriceFileError(f"{where}: {what} {_cut(repr(value))} is not a price")
    return number


def _per_million(cell: str, column: str, where: str) -> float | None:
    return None if cell == "" else _number(cell, column, where)


def _per_token(value: Any, key: str, where: str) -> float:
    # Rounded to what a decimal price per 1M tokens holds: 2.5e-06 * 1e6 is 2.4999999999999996.
    return round(_number(value, key, where) * 1_000_000, 9)


def _cut(text: str) -> str:
    """`text` as a message quotes it: a file may hold one line of 280 KB."""
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _unique(prices: list[ModelPrice], name: str) -> list[ModelPrice]:
    seen: set[str] = set()
    for price in prices:
        if price.model in seen:
            raise PriceFileError(f"{name}: model {_cut(repr(price.model))} is priced twice")
        seen.add(price.model)
    return prices
