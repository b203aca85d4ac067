"""The nightly flow: import pending files, sync content, profile, segment, match, report."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow

from flows.common import with_task_runner
from flows.tasks import final_state, run_stage_list
from nurture.stages import NIGHTLY

__all__ = ["nightly"]


@flow(name=NIGHTLY.name, log_prints=True)
def nightly(
    workspace: str | None = None, data_dir: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Import pending files, then profile, segment and match every member, and report.

    Runs the stages of :data:`nurture.stages.NIGHTLY`. Import files waiting in
    ``<data_dir>/imports`` are imported first, in the flow's process (they are on its disk).
    Profiling and matching go one task per chunk of members, submitted to the flow's task
    runner, which may spread them over a Dask cluster.

    Args:
        workspace: The workspace folder (default: ``NURTURE_WORKSPACE``).
        data_dir: The data folder (default: ``NURTURE_DATA_DIR``).
        now: The time the run computes for (default: now).

    Returns:
        ``{stage name: what it did}``; the run ends ``Completed``, or ``Needs attention`` (a
        completed state) when input was refused or emails failed
        (:func:`flows.tasks.final_state`).
    """
    results = run_stage_list(NIGHTLY, workspace, data_dir, now)
    # A state carrying the results: calling the flow returns them, its run shows the state.
    return final_state(NIGHTLY, results)  # type: ignore[return-value]


# Deployments load the flow from this module in a process of their own: the task runner is the
# one the environment of that process chooses (NURTURE_TASK_RUNNER...). Callers that hold their
# own settings pass ``with_task_runner(nightly, settings)`` instead.
nightly = with_task_runner(nightly)
