"""The deliver flow: advance the journeys, then send the due messages."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import chunk_name, overrides
from nurture import pipeline
from nurture.delivery import DeliverySummary

__all__ = ["deliver"]

# Advancing never queues a step twice and sending claims each message before sending it, so a
# retried task cannot send the same step twice.
_TASK_OPTIONS: dict[str, Any] = {"retries": 2, "retry_delay_seconds": 10, "cache_policy": NO_CACHE}


@task(name="advance journeys", **_TASK_OPTIONS)
def advance_journeys(settings: dict[str, Any], now: dt.datetime) -> dict[str, int]:
    """Enrol members and queue the messages that are due."""
    summary = pipeline.run_journeys(pipeline.settings_from(settings), now)
    get_run_logger().info("journeys: %s", summary)
    return dataclasses.asdict(summary)


@task(name="list due messages", **_TASK_OPTIONS)
def list_due_messages(settings: dict[str, Any], now: dt.datetime) -> list[int]:
    """Ids of the queued messages due now."""
    return pipeline.due_messages(pipeline.settings_from(settings), now)


@task(name="send messages", **_TASK_OPTIONS)
def send_messages(settings: dict[str, Any], ids: list[int], now: dt.datetime) -> dict[str, int]:
    """Render and send one chunk of messages."""
    summary = pipeline.deliver_chunk(pipeline.settings_from(settings), ids, now)
    get_run_logger().info("delivery: %s", summary)
    return dataclasses.asdict(summary)


@task(name="write outbox index", **_TASK_OPTIONS)
def write_outbox_index(settings: dict[str, Any]) -> str:
    """Refresh the outbox's index.html."""
    return str(pipeline.finish_delivery(pipeline.settings_from(settings)))


@flow(name="deliver", log_prints=True)
def deliver(
    workspace: str | None = None, data_dir: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Advance every journey, then send the due messages; one task per chunk of messages.

    Args:
        workspace: The workspace folder (default: ``NURTURE_WORKSPACE``).
        data_dir: The data folder (default: ``NURTURE_DATA_DIR``).
        now: The time the run acts at (default: now).

    Returns:
        Counts of what the journeys queued and what was sent.
    """
    settings = overrides(workspace, data_dir)
    when = pipeline.resolve_now(now)
    resolved = pipeline.settings_from(settings)
    journeys = advance_journeys(settings, when)
    ids = list_due_messages(settings, when)
    total = DeliverySummary()
    for chunk in pipeline.chunked(ids, resolved.chunk_size):
        sent = send_messages.with_options(task_run_name=f"send {chunk_name(chunk)}")(
            settings, chunk, when
        )
        total += DeliverySummary(**sent)
    result: dict[str, Any] = {"journeys": journeys, "delivery": dataclasses.asdict(total)}
    if resolved.mail_backend == "outbox":
        result["outbox_index"] = write_outbox_index(settings)
    return result
