"""One full cycle: the nightly flow, then the deliver flow, as subflows of one run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow

from flows.deliver import deliver
from flows.nightly import nightly
from nurture import pipeline

__all__ = ["cycle"]


@flow(name="cycle")
def cycle(
    workspace: str | None = None, data_dir: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Profile, segment and match every member, then advance journeys and send.

    Args:
        workspace: The workspace folder (default: ``NURTURE_WORKSPACE``).
        data_dir: The data folder (default: ``NURTURE_DATA_DIR``).
        now: The time both flows act at (default: now).

    Returns:
        ``{"nightly": ..., "deliver": ...}``, each flow's counts.
    """
    when = pipeline.resolve_now(now)
    return {
        "nightly": nightly(workspace, data_dir, when),
        "deliver": deliver(workspace, data_dir, when),
    }
