"""The deliver flow: settle interrupted sends, advance the journeys, send what is due, report."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import reports
from flows.common import chunk_name, sum_counts, task_settings, with_task_runner
from nurture import pipeline
from nurture.delivery import DeliverySummary

__all__ = ["deliver"]

# Retrying is safe for every stage here. Advancing never queues a step twice. Sending claims each
# message (queued -> sending, committed) before the mail backend sees it: a retried chunk skips
# the messages an earlier attempt claimed or sent, and a message left "sending" by a crash is
# settled by recover_deliveries from provider events, never re-sent blindly. Reports only read.
_RETRIED: dict[str, Any] = {"retries": 2, "retry_delay_seconds": 10, "cache_policy": NO_CACHE}


@task(**_RETRIED)
def recover_deliveries(settings: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Settle the messages an interrupted run left in the middle of sending."""
    summary = dataclasses.asdict(pipeline.recover_deliveries(pipeline.settings_from(settings), now))
    get_run_logger().info("recovered deliveries: %s", summary)
    return summary


@task(**_RETRIED)
def run_journeys(settings: dict[str, Any], now: dt.datetime) -> dict[str, int]:
    """Enrol members and queue the messages that are due."""
    summary = pipeline.run_journeys(pipeline.settings_from(settings), now)
    get_run_logger().info("journeys: %s", summary)
    return dataclasses.asdict(summary)


@task(**_RETRIED)
def due_messages(settings: dict[str, Any], now: dt.datetime) -> list[int]:
    """Ids of the queued messages due now."""
    ids = pipeline.due_messages(pipeline.settings_from(settings), now)
    get_run_logger().info("%d messages due", len(ids))
    return ids


@task(**_RETRIED)
def deliver_chunk(settings: dict[str, Any], ids: list[int], now: dt.datetime) -> dict[str, int]:
    """Render and send one chunk of messages."""
    summary = pipeline.deliver_chunk(pipeline.settings_from(settings), ids, now)
    get_run_logger().info("delivery: %s", summary)
    return dataclasses.asdict(summary)


@task(**_RETRIED)
def finish_delivery(settings: dict[str, Any]) -> str:
    """Refresh the outbox's index.html."""
    return str(pipeline.finish_delivery(pipeline.settings_from(settings)))


@task(**_RETRIED)
def journey_funnel(settings: dict[str, Any]) -> int:
    """Publish the funnel of every journey step (artifact ``nurture-journey-funnel``)."""
    rows = pipeline.journey_funnel(pipeline.settings_from(settings))
    reports.publish_funnel([dataclasses.asdict(row) for row in rows])
    return len(rows)


@task(**_RETRIED)
def delivery_report(
    settings: dict[str, Any], this_run: dict[str, int], now: dt.datetime
) -> dict[str, Any]:
    """Publish this run's send counts and the messages by status (artifact ``nurture-delivery``)."""
    summary = pipeline.delivery_report(pipeline.settings_from(settings), now=now)
    report = dataclasses.asdict(summary)
    reports.publish_delivery(this_run, report)
    return report


@flow(name="deliver", log_prints=True)
def deliver(
    workspace: str | None = None, data_dir: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Advance every journey, then send the due messages; one task per chunk of messages.

    Chunks are submitted to the flow's task runner, which may spread them over a Dask cluster.

    Args:
        workspace: The workspace folder (default: ``NURTURE_WORKSPACE``).
        data_dir: The data folder (default: ``NURTURE_DATA_DIR``).
        now: The time the run acts at (default: now).

    Returns:
        Counts of what the journeys queued and what was sent.
    """
    settings = task_settings(workspace, data_dir)
    resolved = pipeline.settings_from(settings)
    when = pipeline.resolve_now(now)
    result: dict[str, Any] = {"recovered": recover_deliveries(settings, when)}
    result["journeys"] = run_journeys(settings, when)
    ids = due_messages(settings, when)
    sending = [
        deliver_chunk.with_options(task_run_name=f"deliver_chunk {chunk_name(chunk)}").submit(
            settings, chunk, when
        )
        for chunk in pipeline.chunked(ids, resolved.chunk_size)
    ]
    zero = dataclasses.asdict(DeliverySummary())
    result["delivery"] = sum_counts([zero, *(future.result() for future in sending)])
    if resolved.mail_backend == "outbox":
        result["outbox_index"] = finish_delivery(settings)
    journey_funnel(settings)
    delivery_report(settings, result["delivery"], when)
    get_run_logger().info("deliver: %s", result["delivery"])
    return result


# Deployments load the flow from this module in a process of their own: the task runner is the
# one the environment of that process chooses (NURTURE_TASK_RUNNER...). Callers that hold their
# own settings pass ``with_task_runner(deliver, settings)`` instead.
deliver = with_task_runner(deliver)
