"""What the flows share: settings overrides, a runtime per task, the task runner, run names."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prefect import Flow, get_run_logger
from prefect.exceptions import MissingContextError
from prefect.settings import get_current_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from sqlalchemy import Engine

from nurture.progress import LineProgress
from nurture.runtime import Runtime, open_database, settings_from
from nurture.settings import Settings

__all__ = [
    "DEFAULT_THREADS",
    "chunk_name",
    "flat_row",
    "overrides",
    "shared_engine",
    "task_runner_for",
    "task_runtime",
    "task_settings",
    "with_task_runner",
]

F = TypeVar("F", bound=Flow[Any, Any])

DEFAULT_THREADS = 2
"""Threads of the thread task runner, unless ``PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS``."""


def overrides(workspace: str | None, data_dir: str | None) -> dict[str, Any]:
    """The settings a flow run was given; everything else comes from ``NURTURE_*``.

    The database URL is deliberately not a flow parameter: it can hold a password, and flow
    parameters show in the Prefect UI. Set ``NURTURE_DATABASE_URL`` where the flow runs.
    """
    values: dict[str, Any] = {}
    if workspace is not None:
        values["workspace"] = workspace
    if data_dir is not None:
        values["data_dir"] = data_dir
    return values


def task_settings(workspace: str | None, data_dir: str | None) -> dict[str, Any]:
    """The settings overrides a flow's tasks get: its folders, as absolute paths.

    Absolute, so that a task on a Dask worker started elsewhere finds the same folders.

    Raises:
        ConfigurationError: A setting is invalid; the message names each one.
    """
    settings = settings_from(overrides(workspace, data_dir))
    return {
        "workspace": str(settings.workspace.resolve()),
        "data_dir": str(settings.data_dir.resolve()),
    }


def chunk_name(items: Sequence[Any]) -> str:
    """A readable name for a chunk of ids (first, last, count) or of files, for task run names."""
    if not items:
        return "empty"
    if all(isinstance(item, int) for item in items):
        return f"{items[0]}-{items[-1]} ({len(items)})"
    return ", ".join(Path(str(item)).name for item in items)


# --- a runtime per task ---------------------------------------------------------------------

_MAX_ENGINES = 8
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def shared_engine(settings: Settings) -> Engine:
    """This process's engine on the database of ``settings``, opened and migrated once.

    Every task of the process (threads, or a Dask worker's tasks) shares it and its connection
    pool. Beyond a few databases (tests), the oldest engine is closed.
    """
    url = settings.resolved_database_url
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = open_database(settings)
            while len(_engines) > _MAX_ENGINES:
                _engines.pop(next(iter(_engines))).dispose()
        return engine


def _run_log() -> Callable[[str], None]:
    """Where progress lines go: the log of the flow or task run, else this module's log."""
    try:
        return get_run_logger().info
    except MissingContextError:
        return logging.getLogger(__name__).info


@contextmanager
def task_runtime(settings: Mapping[str, Any]) -> Iterator[Runtime]:
    """A runtime for one task call, on the settings it was given and the process's engine.

    Each call reads the workspace afresh: a long-running worker sees the marketers' edits.

    Raises:
        ConfigurationError: A setting is invalid; the message names each one.
    """
    resolved = settings_from(settings)
    progress = LineProgress(_run_log())  # long work tells its progress in the run's log
    with Runtime(resolved, engine=shared_engine(resolved), progress=progress) as runtime:
        yield runtime


# --- task runner ----------------------------------------------------------------------------


def task_runner_for(settings: Settings) -> TaskRunner[Any]:
    """The task runner ``settings`` choose for the chunk tasks.

    ``thread`` (the default) runs chunks in a few threads of the flow's process
    (``PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS``, default 2). ``dask`` spreads them over a
    Dask cluster: the scheduler at ``dask_address``, or else a local cluster of
    ``dask_workers`` processes started for the flow run and stopped after it.
    """
    if settings.task_runner == "thread":
        # Prefect's own default is unbounded: thousands of chunks would each hold a database
        # connection and a chunk of members at once. The stages are CPU-bound (the model uses
        # every core already), so more threads would add memory and lock waits, not speed.
        threads = get_current_settings().tasks.runner.thread_pool_max_workers
        return ThreadPoolTaskRunner(max_workers=threads or DEFAULT_THREADS)
    from prefect_dask import DaskTaskRunner  # imports dask: only when asked for

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "processes": True,
            "threads_per_worker": 1,
            # The Dask dashboard would need bokeh and a free port 8787; nurture needs neither.
            "dashboard_address": None,
        }
    )


def with_task_runner(flow: F, settings: Settings | None = None) -> F:
    """``flow`` with the task runner of ``settings`` (default: the ``NURTURE_*`` environment).

    Raises:
        ConfigurationError: A setting of the environment is invalid.
    """
    chosen = settings if settings is not None else settings_from()
    return flow.with_options(task_runner=task_runner_for(chosen))


# --- summaries ------------------------------------------------------------------------------


def flat_row(row: Any) -> dict[str, Any]:
    """A dataclass (or mapping) as a table row of JSON scalars, for a table artifact.

    Lists and mappings become readable text; dates become ISO strings.
    """
    values = dataclasses.asdict(row) if dataclasses.is_dataclass(row) else dict(row)
    return {key: _scalar(value) for key, value in values.items()}


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {_scalar(item)}" for key, item in value.items())
    if isinstance(value, list | tuple | set):
        return ", ".join(str(_scalar(item)) for item in value)
    return json.dumps(value, default=str)
