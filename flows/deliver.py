"""The deliver flow: settle interrupted sends, advance the journeys, send what is due, report."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from prefect import Flow, flow
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner

from flows.common import task_runner_for
from flows.tasks import final_state, run_stage_list
from nurture.runtime import settings_from
from nurture.settings import Settings
from nurture.stages import DELIVER

__all__ = ["deliver", "delivery_task_runner", "with_delivery_runner"]

F = TypeVar("F", bound=Flow[Any, Any])


@flow(name=DELIVER.name, log_prints=True)
def deliver(
    workspace: str | None = None, data_dir: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Advance every journey, then send the due messages; one task per chunk of messages.

    Runs the stages of :data:`nurture.stages.DELIVER`. Chunks are submitted to the flow's task
    runner, which may spread them over a Dask cluster.

    Args:
        workspace: The workspace folder (default: ``NURTURE_WORKSPACE``).
        data_dir: The data folder (default: ``NURTURE_DATA_DIR``).
        now: The time the run acts at (default: now).

    Returns:
        ``{stage name: what it did}``; the run ends ``Completed``, or ``Needs attention`` (a
        completed state) when input was refused or emails failed
        (:func:`flows.tasks.final_state`).
    """
    results = run_stage_list(DELIVER, workspace, data_dir, now)
    # A state carrying the results: calling the flow returns them, its run shows the state.
    return final_state(DELIVER, results)  # type: ignore[return-value]


def delivery_task_runner(settings: Settings) -> TaskRunner[Any]:
    """The deliver flow's task runner: ``delivery_processes`` worker processes, if more than one.

    With the thread task runner and ``delivery_processes`` > 1, the chunks of due messages go to
    a pool of that many processes (each a Python interpreter of its own: rendering, which holds
    the interpreter lock, runs on every CPU), each chunk in a task that claims its messages and
    sends them with ``send_concurrency`` senders. Otherwise: ``task_runner_for(settings)``.
    """
    if settings.task_runner == "thread" and settings.delivery_processes > 1:
        return ProcessPoolTaskRunner(max_workers=settings.delivery_processes)
    return task_runner_for(settings)


def with_delivery_runner(flow: F, settings: Settings | None = None) -> F:
    """``flow`` (the deliver flow) with ``delivery_task_runner(settings)``.

    Args:
        flow: The flow.
        settings: The settings; default: the ``NURTURE_*`` environment.

    Raises:
        ConfigurationError: A setting of the environment is invalid.
    """
    chosen = settings if settings is not None else settings_from()
    return flow.with_options(task_runner=delivery_task_runner(chosen))


# Deployments load the flow from this module in a process of their own: the task runner is the
# one the environment of that process chooses (NURTURE_TASK_RUNNER, NURTURE_DELIVERY_PROCESSES).
# Callers that hold their own settings pass ``with_delivery_runner(deliver, settings)`` instead.
deliver = with_delivery_runner(deliver)
