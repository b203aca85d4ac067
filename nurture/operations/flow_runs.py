"""Runs of the flows, as the orchestrator reports them, in a shape of nurture's own.

nurture does not talk to Prefect: the command line (or a flow) reads the runs and hands them
over as :class:`FlowRunSummary` values or mappings with the same fields.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from nurture.outcomes import NEEDS_ATTENTION

__all__ = [
    "FAILED_STATE_TYPES",
    "FINISHED_STATE_TYPES",
    "UPCOMING_STATE_TYPES",
    "FlowRunSummary",
    "flow_run_summary",
    "schedule_period",
    "time_ago",
]

FAILED_STATE_TYPES = frozenset({"FAILED", "CRASHED", "CANCELLED"})
"""State types of a run that ended without doing its work."""

COMPLETED = "COMPLETED"
FINISHED_STATE_TYPES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
"""State types of a run that ended."""
UPCOMING_STATE_TYPES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")
"""State types of a run that has not ended: waiting for its time, starting, running."""
SCHEDULED = "SCHEDULED"


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
        message: The state's message (why it failed, what it did), if any.
        expected_start_time: When it was scheduled to start (ISO 8601), if known.
        id: The orchestrator's id of the run, if known.
    """

    flow: str
    name: str
    state_type: str
    state_name: str
    start_time: str | None = None
    end_time: str | None = None
    message: str | None = None
    expected_start_time: str | None = None
    id: str | None = None

    @property
    def completed(self) -> bool:
        """Whether the run completed."""
        return self.state_type == COMPLETED

    @property
    def failed(self) -> bool:
        """Whether the run ended without doing its work (failed, crashed or cancelled)."""
        return self.state_type in FAILED_STATE_TYPES

    @property
    def needs_attention(self) -> bool:
        """Whether the run completed with something to look at (refused input, failed emails)."""
        return self.completed and self.state_name == NEEDS_ATTENTION

    @property
    def scheduled(self) -> bool:
        """Whether the run waits for its scheduled time (on time or late)."""
        return self.state_type == SCHEDULED

    @property
    def expected(self) -> dt.datetime | None:
        """``expected_start_time`` as a timezone-aware time."""
        return _parse(self.expected_start_time)

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
    for key in ("start_time", "end_time", "expected_start_time"):
        values[key] = _iso(values.get(key))
    return FlowRunSummary(**values)


def schedule_period(runs: Sequence[FlowRunSummary]) -> dt.timedelta | None:
    """How often the schedule starts runs: the shortest gap between the scheduled runs' times.

    The orchestrator schedules a few runs ahead of time; None when fewer than two are known.
    """
    times = sorted({run.expected for run in runs if run.scheduled and run.expected is not None})
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    positive = [gap for gap in gaps if gap > dt.timedelta(0)]
    return min(positive) if positive else None


def time_ago(time: dt.datetime | None, now: dt.datetime) -> str:
    """``just now``, ``15 min ago``, ``3 h ago``, ``2 days ago``; ``in 5 h`` for a future time."""
    if time is None:
        return "-"
    seconds = (now - time).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        return "just now" if not future else "in less than a minute"
    if seconds < 3600:
        text = f"{seconds // 60:.0f} min"
    elif seconds < 48 * 3600:
        text = f"{seconds / 3600:.0f} h" if seconds >= 10 * 3600 else f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.0f} days"
    return f"in {text}" if future else f"{text} ago"
