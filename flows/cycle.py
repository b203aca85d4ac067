"""One full cycle: the nightly flow, then the deliver flow, as subflows of one run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from prefect import Flow, flow

from flows.deliver import deliver
from flows.nightly import nightly
from nurture.orchestration import CYCLE
from nurture.runtime import resolve_now

__all__ = ["FLOWS", "cycle"]

FLOWS: Mapping[str, Flow[..., dict[str, Any]]] = {"nightly": nightly, "deliver": deliver}
"""The flow of each stage list, by the list's name."""


@flow(name="cycle")
def cycle(
    workspace: str | None = None,
    data_dir: str | None = None,
    now: dt.datetime | None = None,
    lists: list[str] | None = None,
) -> dict[str, Any]:
    """Run the flows of several stage lists, in order: by default nightly, then deliver.

    Args:
        workspace: The workspace folder (default: ``NURTURE_WORKSPACE``).
        data_dir: The data folder (default: ``NURTURE_DATA_DIR``).
        now: The time every flow acts at (default: now).
        lists: The stage lists to run (default: ``nightly``, ``deliver``).

    Returns:
        ``{list name: {stage name: what it did}}``.
    """
    when = resolve_now(now)
    return {name: FLOWS[name](workspace, data_dir, when) for name in lists or CYCLE}
