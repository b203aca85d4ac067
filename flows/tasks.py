"""Each declared stage as Prefect tasks, and a stage list run as the body of a flow.

:func:`run_stage_list` walks a :class:`~nurture.stages.StageList` as the in-process runner
does (:func:`nurture.orchestration.run_stage`), with each call a task named after the library
function it wraps: one task for a stage, one for the listing of its items, one for its start,
and one per chunk. Chunks of ids go to the flow's task runner at once (threads, or Dask
workers); files go one after the other in the flow's process. Tasks receive plain values only
(settings overrides, ids, paths, a time), build their own runtime, and return plain summaries.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.futures import PrefectFuture
from prefect.states import Completed, State

from flows import reports
from flows.common import chunk_name, task_runtime, task_settings
from nurture.orchestration import chunk_batches, combine_chunks, plain, worth_retrying
from nurture.outcomes import NEEDS_ATTENTION, run_outcome
from nurture.progress import LineProgress
from nurture.runtime import resolve_now, settings_from
from nurture.stages import Stage, StageList

__all__ = ["RETRIED", "chunk_task", "final_state", "run_stage_list", "single_task"]


def _worth_retrying(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Whether a failed task is retried: a refused backfill would only be refused again."""
    error = state.data if isinstance(state.data, BaseException) else None
    return worth_retrying(error)


RETRIED: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": 10,
    "retry_condition_fn": _worth_retrying,
    "cache_policy": NO_CACHE,
}
"""Every task may be retried (see nurture.stages: each stage is safe to run again), but a
refused backfill; nothing is cached: each run reads fresh data."""


def _named(wrapper: Callable[..., Any], function: Callable[..., Any]) -> Callable[..., Any]:
    # A task keeps the name of the library function it wraps; Prefect keys tasks by qualname.
    wrapper.__name__ = wrapper.__qualname__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


@functools.cache
def single_task(function: Callable[..., Any]) -> Task[..., Any]:
    """The task calling ``function(runtime, now)``: a stage, a listing or a start."""

    def call(settings: dict[str, Any], now: dt.datetime) -> Any:
        with task_runtime(settings) as runtime, runtime.progress.task(function.__name__):
            return plain(function(runtime, now))

    return task(_named(call, function), name=function.__name__, **RETRIED)


@functools.cache
def chunk_task(function: Callable[..., Any]) -> Task[..., Any]:
    """The task calling ``function(runtime, items, now, **started)`` on one chunk."""

    def call(
        settings: dict[str, Any], items: list[Any], now: dt.datetime, started: dict[str, Any]
    ) -> Any:
        with task_runtime(settings) as runtime:
            return plain(function(runtime, items, now, **started))

    return task(_named(call, function), name=function.__name__, **RETRIED)


def _run_stage(
    stage: Stage, settings: dict[str, Any], now: dt.datetime, listed: dict[str, list[Any]]
) -> Any:
    logger = get_run_logger()
    progress = LineProgress(logger.info)
    if stage.over is None:
        summary = single_task(stage.run)(settings, now)
        logger.info("%s", stage.describe(summary))
        return summary
    if stage.over.name not in listed:
        listed[stage.over.name] = single_task(stage.over.list_items)(settings, now)
        logger.info("%s", stage.over.says.format(count=len(listed[stage.over.name])))
    items = listed[stage.over.name]
    started = single_task(stage.start)(settings, now) if stage.start is not None else {}
    each = chunk_task(stage.run)
    batches = chunk_batches(stage, items, settings_from(settings))
    watched = progress.task(stage.name, len(items), stage.over.name)
    if stage.over.in_order:
        summaries = []
        with watched:
            for batch in batches:
                named = each.with_options(task_run_name=f"{stage.run.__name__} {chunk_name(batch)}")
                summaries.append(named(settings, batch, now, started))
                logger.info("%s", stage.describe(summaries[-1]))
                watched.advance(len(batch))
    else:
        futures: list[PrefectFuture[Any]] = [
            each.with_options(task_run_name=f"{stage.run.__name__} {chunk_name(batch)}").submit(
                settings, batch, now, started
            )
            for batch in batches
        ]
        summaries = []
        with watched:
            for batch, future in zip(batches, futures, strict=True):
                summaries.append(future.result())
                logger.info("%s", stage.describe(summaries[-1]))
                watched.advance(len(batch))
    return combine_chunks(stage, started, items, summaries)


def run_stage_list(
    stages: StageList, workspace: str | None, data_dir: str | None, now: dt.datetime | None
) -> dict[str, Any]:
    """Run every stage of ``stages`` as tasks, in order, publishing the reports as artifacts.

    Call it from the body of a flow.

    Returns:
        ``{stage name: plain summary}``, as :func:`nurture.orchestration.run_stage_list`.
    """
    settings = task_settings(workspace, data_dir)
    when = resolve_now(now)
    listed: dict[str, list[Any]] = {}
    results: dict[str, Any] = {}
    for stage in stages:
        results[stage.name] = _run_stage(stage, settings, when, listed)
        publish = reports.PUBLISHERS.get(stage.name)
        if publish is not None:
            publish(results, settings_from(settings))
    return results


def final_state(stages: StageList, results: dict[str, Any]) -> State[dict[str, Any]]:
    """The state a flow ends in: ``Completed``, or ``Needs attention`` when input was refused.

    Both are completed states (the run did its work; its result is ``results``); the second
    tells the Prefect UI, ``nurture status`` and an automation that something in the run needs
    a look (:func:`nurture.outcomes.run_outcome`). The message says what the run did.
    """
    outcome = run_outcome(stages.name, results)
    logger = get_run_logger()
    if outcome.needs_attention:
        logger.warning("%s", outcome.message)
        return Completed(name=NEEDS_ATTENTION, message=outcome.message, data=results)
    logger.info("%s", outcome.message)
    return Completed(message=outcome.message, data=results)
