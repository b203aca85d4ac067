"""Runs of the flows, as the orchestrator reports them, in a shape of nurture's own.

nurture does not talk to Prefect: the command line (or a flow) reads the runs and hands them
over as :class:`FlowRunSummary` values or mappings with the same fields.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["FAILED_STATE_TYPES", "FlowRunSummary", "flow_run_summary"]

FAILED_STATE_TYPES = frozenset({"FAILED", "CRASHED", "CANCELLED"})
"""State types of a run that ended without doing its work."""

COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class FlowRunSummary:
    """One run of a flow.

    Attributes:
        flow: The flow's name (``nightly``, ``deliver``...).
        name: The run's name.
        state_type: Its state type: ``COMPLETED``, ``FAILED``, ``CRASHED``, ``RUNNING``,
            ``SCHEDULED``...
        state_name: Its state as the UI shows it (``Completed``, ``Late``...).
        start_time: When it started (ISO 8601), None if it did not.
        end_time: When it ended (ISO 8601), None if it did not.
        message: The state's message (why it failed), if any.
    """

    flow: str
    name: str
    state_type: str
    state_name: str
    start_time: str | None = None
    end_time: str | None = None
    message: str | None = None

    @property
    def completed(self) -> bool:
        """Whether the run completed."""
        return self.state_type == COMPLETED

    @property
    def failed(self) -> bool:
        """Whether the run ended without doing its work (failed, crashed or cancelled)."""
        return self.state_type in FAILED_STATE_TYPES

    @property
    def started(self) -> dt.datetime | None:
        """``start_time`` as a timezone-aware time."""
        return _parse(self.start_time)

    @property
    def ended(self) -> dt.datetime | None:
        """``end_time`` as a timezone-aware time."""
        return _parse(self.end_time)


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return aware.isoformat()
    return str(value)


def flow_run_summary(run: FlowRunSummary | Mapping[str, Any]) -> FlowRunSummary:
    """A flow run given as a summary or as a mapping of its fields (times as text or datetimes).

    Raises:
        ValueError: The mapping lacks ``flow``, ``name``, ``state_type`` or ``state_name``.
    """
    if isinstance(run, FlowRunSummary):
        return run
    known = {field.name for field in fields(FlowRunSummary)}
    values = {key: value for key, value in run.items() if key in known}
    missing = sorted({"flow", "name", "state_type", "state_name"} - set(values))
    if missing:
        raise ValueError(f"flow run {dict(run)!r}: expected fields {', '.join(missing)}")
    for key in ("start_time", "end_time"):
        values[key] = _iso(values.get(key))
    return FlowRunSummary(**values)
