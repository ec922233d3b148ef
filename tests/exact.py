"""Compare a database with the batches a server holds: exactly, field by field."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def expected_error_rows(batches: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = []
    for b in batches:
        for position, e in enumerate(((b.get("errors") or {}).get("data")) or []):
            rows.append(
                (b["id"], position, e.get("code"), e.get("message"), e.get("param"), e.get("line"))
            )
    return sorted(rows)


def assert_database_matches(db: Path, served: Iterable[dict[str, Any]]) -> None:
    """The database holds exactly the served batches: none missing, none extra, none stale."""
    expected = {b["id"]: b for b in served}
    with sqlite3.connect(db) as conn:
        stored = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT id, raw, status, model, created_at, request_counts_total, total_tokens "
                "FROM batches"
            )
        }
        errors = conn.execute(
            "SELECT batch_id, position, code, message, param, line FROM batch_errors "
            "ORDER BY batch_id, position"
        ).fetchall()
    missing = expected.keys() - stored.keys()
    extra = stored.keys() - expected.keys()
    assert not missing, f"{len(missing)} batches missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} batches never served, e.g. {sorted(extra)[:3]}"
    for batch_id, (raw, status, model, created_at, total, tokens) in stored.items():
        batch = expected[batch_id]
        assert json.loads(raw) == batch, batch_id
        assert (status, model, created_at) == (
            batch["status"],
            batch.get("model"),
            batch["created_at"],
        )
        assert total == (batch.get("request_counts") or {}).get("total")
        assert tokens == (batch.get("usage") or {}).get("total_tokens")
    assert sorted(errors) == expected_error_rows(expected.values())
