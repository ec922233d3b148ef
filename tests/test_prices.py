"""Model prices from a CSV or a price map, and what each batch cost at them."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crawler.cli import main
from crawler.prices import (
    ModelPrice,
    PriceFileError,
    read_price_csv,
    read_price_map,
    read_prices,
)
from crawler.rows import build_page_rows
from crawler.runs import RunFigures
from crawler.store import open_store

from .conftest import make_batch

CSV = """# a comment, then the header
model,input,cached_input,output,batch_input,batch_output
gpt-4o-mini,0.15,0.075,0.6,,
my-model,1,,2,0.4,0.9
"""


def test_a_csv_gives_rates_per_million_tokens_and_none_for_empty_cells() -> None:
    assert read_price_csv(CSV, "p.csv") == (
        ("input", "cached_input", "output", "batch_input", "batch_output"),
        [
            ModelPrice("gpt-4o-mini", 0.15, 0.075, 0.6, None, None, None),
            ModelPrice("my-model", 1.0, None, 2.0, 0.4, None, 0.9),
        ],
    )


def test_a_price_map_gives_per_token_rates_per_million() -> None:
    price_map = {
        "sample_spec": {"input_cost_per_token": 0},
        "gpt-4.1": {
            "input_cost_per_token": 2e-06,
            "output_cost_per_token": 8e-06,
            "cache_read_input_token_cost": 5e-07,
            "input_cost_per_token_batches": 1e-06,
            "output_cost_per_token_batches": 4e-06,
            "litellm_provider": "openai",
        },
        "dall-e-3": {"output_cost_per_image": 0.04},
    }
    assert read_prices(json.dumps(price_map), "map.json").prices == [
        ModelPrice("gpt-4.1", 2.0, 0.5, 8.0, 1.0, None, 4.0)
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model,input\ngpt,abc\n", "p.csv line 2: input 'abc' is not a number"),
        ("model,input\n\n# note\ngpt,-1\n", "p.csv line 4: input '-1' is not a price"),
        ("model,input\ngpt,1,2\n", "p.csv line 2: 3 cells where the header has 2"),
        ("name,input\ngpt,1\n", "p.csv line 1: the header must name `model`"),
        ("model,input,colour\ngpt,1,red\n", "(not colour)"),
        ("model,input\n,1\n", "p.csv line 2: no model name"),
        ("model,input\ngpt,1\ngpt,2\n", "model 'gpt' is priced twice"),
        ("# only a comment\n", "p.csv: no prices in it"),
    ],
)
def test_a_bad_csv_says_what_and_where(text: str, message: str) -> None:
    with pytest.raises(PriceFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_price_csv(text, "p.csv")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"gpt": {"input_cost_per_token": 1e-6,\n "output_cost_per_token": }}',
            "line 2: not JSON",
        ),
        ('{"gpt": {"input_cost_per_token": "cheap"}}', "model 'gpt': input_cost_per_token"),
        ('{"gpt": {"input_cost_per_token": true}}', "is not a number"),
        ('{"dall-e-3": {"output_cost_per_image": 0.04}}', "no model in it has a per-token price"),
        ('{"gpt": {"input_cost_per_token": 1%s}}' % ("0" * 5_000), "is not a price"),
    ],
)
def test_a_bad_price_map_says_what_and_where(text: str, message: str) -> None:
    with pytest.raises(PriceFileError, match=message):
        read_price_map(text, "map.json")


def usage(input_tokens: int, cached: int, output: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output,
    }


async def costs_of(db: Path, batches: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    async with open_store(db) as store:
        run = await store.start_run("full", "http://x")
        rows, errors = build_page_rows(batches, 1)
        await store.save_page(rows, errors, None, run, RunFigures())
    with contextlib.closing(sqlite3.connect(db)) as conn:
        found = conn.execute(
            "SELECT batch_id, priced_as, input_usd, output_usd, usd FROM batch_costs"
        )
        return {row[0]: row[1:] for row in found}


async def test_a_batch_costs_its_tokens_at_the_shipped_batch_rates(db_path: Path) -> None:
    """Computed by hand from the shipped rates (USD per 1M tokens):
    gpt-4o-mini-2024-07-18: batch input 0.075, cached 0.075 / 2, batch output 0.3;
    gpt-4.1-mini-2099-01-01 is priced as gpt-4.1-mini: batch input 0.2, cached 0.1 / 2,
    batch output 0.8; text-embedding-3-small: input 0.02 / 2, no output."""
    batches = [
        make_batch(1, model="gpt-4o-mini-2024-07-18", usage=usage(1_000_000, 200_000, 500_000)),
        make_batch(2, model="gpt-4.1-mini-2099-01-01", usage=usage(300_000, 100_000, 40_000)),
        make_batch(3, model="text-embedding-3-small", usage=usage(2_000_000, 0, 0)),
        make_batch(4, model="someone-elses-model", usage=usage(10, 0, 10)),
        make_batch(5, model="gpt-4o-mini", usage=None),
    ]
    costs = await costs_of(db_path, batches)
    ids = [b["id"] for b in batches]
    expected = {
        ids[0]: ("gpt-4o-mini-2024-07-18", 0.06 + 0.0075, 0.15),
        ids[1]: ("gpt-4.1-mini", 0.04 + 0.005, 0.032),
        ids[2]: ("text-embedding-3-small", 0.02, 0.0),
    }
    for batch_id, (priced_as, input_usd, output_usd) in expected.items():
        got = costs[batch_id]
        assert got[0] == priced_as
        assert got[1:] == pytest.approx((input_usd, output_usd, input_usd + output_usd))
    # An unknown model, or no usage: NULL, never 0.
    assert costs[ids[3]] == (None, None, None, None)
    assert costs[ids[4]] == ("gpt-4o-mini", None, None, None)


def test_prices_load_adds_models_and_replaces_only_the_rates_it_gives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "b.db"
    prices = tmp_path / "prices.csv"
    prices.write_text("model,batch_input,batch_output\ngpt-4o-mini,1,2\nnew-model,3,4\n")
    assert main(["prices", "load", str(prices), "--db", str(db)]) == 0
    assert capsys.readouterr().out == f"Loaded 2 model prices from {prices} into {db}.\n"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT model, input, batch_input, batch_output, source FROM model_prices "
            "WHERE model IN ('gpt-4o-mini', 'new-model') ORDER BY model"
        ).fetchall()
    assert rows == [
        ("gpt-4o-mini", 0.15, 1.0, 2.0, "prices.csv"),
        ("new-model", None, 3.0, 4.0, "prices.csv"),
    ]


def test_a_price_map_changes_only_the_rates_each_entry_gives(tmp_path: Path) -> None:
    """A LiteLLM map's entry naming one rate blanked a model's others: every rate column
    was set, those the entry left out to NULL (pass 65A: gpt-4.1's output rate gone, its
    batches unpriced, the report's spend down)."""
    db = tmp_path / "b.db"
    prices = tmp_path / "p.json"
    prices.write_text(json.dumps({"gpt-4.1": {"input_cost_per_token": 1.8e-6}}))
    query = "SELECT * FROM model_prices WHERE model = 'gpt-4.1'"
    other = tmp_path / "other.csv"
    other.write_text("model,input\nanother-model,1\n")
    assert main(["prices", "load", str(other), "--db", str(db)]) == 0  # the shipped rates
    with contextlib.closing(sqlite3.connect(db)) as conn:
        before = conn.execute(query).fetchone()
    assert main(["prices", "load", str(prices), "--db", str(db)]) == 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        after = dict(conn.execute(query).fetchone())
    assert after["input"] == 1.8
    assert after["source"] == "p.json"
    shipped = dict(zip(after, before, strict=True))
    kept = ("cached_input", "output", "batch_cached_input", "batch_output")
    assert {c: after[c] for c in kept} == {c: shipped[c] for c in kept}
    assert after["output"] is not None
    assert after["batch_input"] is None  # derived from the new input rate


@pytest.mark.parametrize(
    "text",
    [
        "model,input,output\ngpt-4o-mini,1.5,6\n",
        json.dumps(
            {"gpt-4o-mini": {"input_cost_per_token": 1.5e-6, "output_cost_per_token": 6e-6}}
        ),
    ],
    ids=["csv", "map"],
)
def test_new_standard_rates_make_the_batch_rates_derived_from_them(
    tmp_path: Path, text: str
) -> None:
    """gpt-4o-mini ships with batch rates of its own: a file giving new standard rates
    alone left them, the costs at the old prices (a tenth of the new), and `source` naming
    the file (pass 72B). Batch rates are half the standard ones unless a file gives them."""
    db = tmp_path / "b.db"
    prices = tmp_path / ("p.json" if text.startswith("{") else "p.csv")
    prices.write_text(text)
    assert main(["prices", "load", str(prices), "--db", str(db)]) == 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rates = conn.execute(
            "SELECT input_rate, cached_input_rate, output_rate FROM model_rates "
            "WHERE model = 'gpt-4o-mini'"
        ).fetchone()
    assert rates == pytest.approx((0.75, 0.0375, 3.0))


def test_a_price_file_naming_a_model_by_the_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model name is stored and shown by every view and tool reading the prices: one
    holding the key (pasted in the wrong cell) was stored whole (pass 65A)."""
    key = "sk-proj-" + "Ab3dEf9hIjKlMn0pQrStUvWxYz" * 3
    monkeypatch.setenv("OPENAI_API_KEY", key)
    prices = tmp_path / "prices.csv"
    prices.write_text(f"model,input\ngpt-x-{key[:60]},1\n")
    assert main(["prices", "load", str(prices), "--db", str(tmp_path / "b.db")]) == 2
    err = capsys.readouterr().err
    assert err == f"batch-crawler: {prices}: a model name holds an API key (not shown)\n"
    assert not (tmp_path / "b.db").exists()


def test_a_price_csv_saved_by_excel_loads(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" begins with a byte order mark: its header was refused, "(not
    model)", the mark unseen."""
    prices = tmp_path / "prices.csv"
    prices.write_bytes("model,batch_input\ngpt-4o-mini,0.075\n".encode("utf-8-sig"))
    assert main(["prices", "load", str(prices), "--db", str(tmp_path / "b.db")]) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no price file at"),
        ("model,input\ngpt,x\n", "line 2: input 'x' is not a number"),
        (b"\xff\xfe", "is not UTF-8 text"),
        ("a name too long", "File name too long"),  # was a traceback: Path.exists raised
        ("model,input,input\ngpt,1,2\n", "line 1: the header names input twice"),  # kept 2
        ("model,input\ng\x00pt,1\n", "model name 'g\\x00pt' holds a control character"),
        ("model,input\n" + "a" * 200_000, "not a price CSV (field larger than field limit"),
        ("[" * 200_000, "JSON nested too deeply"),  # a traceback
        ("model,input\ng\u2028pt,1\n", "model name 'g\\u2028pt' holds a control character"),
        ("[1, 2]", "a price map is a JSON object of models"),  # a CSV's header, "not [1"
        ('{"a":' * 5000 + "1" + "}" * 5000, "JSON nested too deeply"),  # a RecursionError
        ("model," + ",".join(f"m{n}" for n in range(50_000)), "(not m0, m1, m2, ...)"),
    ],
)
def test_a_bad_price_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, message: str
) -> None:
    prices = tmp_path / "prices.csv"
    if content == "a name too long":
        prices = tmp_path / ("a" * 300 + ".csv")
    elif isinstance(content, bytes):
        prices.write_bytes(content)
    elif content is not None:
        prices.write_text(content)
    assert main(["prices", "load", str(prices), "--db", str(tmp_path / "b.db")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    assert len(err) < 1000  # a 280 KB line was quoted whole
    assert not (tmp_path / "b.db").exists()
