"""A Dagster asset: the organization's batches in SQLite, materialized on a schedule.

A transient failure raises for Dagster's retry policy; a refusal (a bad key, a bad setting,
a broken database) raises `Failure(allow_retries=False)`, since retrying cannot help. The
run's figures become the materialization's metadata. Load it with
`dagster dev -f examples/dagster_asset.py`, with OPENAI_API_KEY set.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from typing import Any

from crawler import CrawlerError, load_settings, sync

DB = os.environ.get("BATCH_CRAWLER_DB", "batches.db")


def sync_batches(db: str = DB) -> dict[str, Any]:
    """One sync; its figures, as `batch-crawler sync --json` prints them."""
    settings = load_settings({"db": db}, os.environ)
    return asyncio.run(sync(settings)).as_json()


if importlib.util.find_spec("dagster") is not None:
    import dagster as dg

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=3, delay=300))
    def openai_batches() -> dg.MaterializeResult:
        """Every batch of the organization, in the SQLite file at BATCH_CRAWLER_DB."""
        try:
            figures = sync_batches()
        except CrawlerError as error:
            if error.retryable:
                raise
            raise dg.Failure(str(error), allow_retries=False) from error
        numbers = {k: v for k, v in figures.items() if isinstance(v, int | float)}
        return dg.MaterializeResult(metadata={**numbers, "outcome": figures["outcome"]})

    defs = dg.Definitions(
        assets=[openai_batches],
        schedules=[
            dg.ScheduleDefinition(
                name="openai_batches_every_15_minutes",
                target=[openai_batches],
                cron_schedule="*/15 * * * *",
            )
        ],
    )
