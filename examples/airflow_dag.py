"""An Airflow DAG that syncs the organization's batches every 15 minutes.

Transient failures (the API down, rate limits outlasting the retries) fail the task for
Airflow to retry; a refusal (a bad key, a bad setting, a broken database) fails it for good,
since retrying cannot help. The run's figures go to XCom. Put this file in the DAGs folder,
with batch-crawler installed and OPENAI_API_KEY set for the workers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from datetime import datetime, timedelta
from typing import Any

from crawler import CrawlerError, load_settings, sync

DB = os.environ.get("BATCH_CRAWLER_DB", "batches.db")


def sync_batches(db: str = DB) -> dict[str, Any]:
    """One sync; its figures, as `batch-crawler sync --json` prints them."""
    try:
        settings = load_settings({"db": db, "max_seconds": 840}, os.environ)
        result = asyncio.run(sync(settings))
    except CrawlerError as error:
        if error.retryable:
            raise  # Airflow retries the task
        from airflow.exceptions import AirflowFailException  # noqa: PLC0415 (Airflow only)

        raise AirflowFailException(str(error)) from error
    return result.as_json()


if importlib.util.find_spec("airflow") is not None:
    from airflow.sdk import dag, task  # Airflow 2: from airflow.decorators import dag, task

    @dag(
        schedule=timedelta(minutes=15),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,  # one sync at a time: a second would exit 4 (database busy)
        default_args={"retries": 3, "retry_delay": timedelta(minutes=5)},
    )
    def openai_batches() -> None:
        task(sync_batches)()

    openai_batches()
