"""Where members stand in each journey: per version, step, end, wait, holdout and split arm.

``journey_status`` reads the ``Journey`` version rows, the enrollments and their messages in a
few grouped queries; it changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.journeys.models import JourneyDefinition
from nurture.storage.models import Enrollment, EnrollmentState, ExitReason, Journey, Message

__all__ = ["JourneyStatus", "VersionStatus", "journey_status"]

GOAL = "goal"
"""The ``Enrollment.exit_reason`` of members who reached the journey's goal."""


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """The enrollments of one version of a journey.

    Attributes:
        journey_key: The journey's id.
        version: The version number (1, 2...).
        journey_id: The id of the version's ``Journey`` row.
        registered_at: When the version was first run.
        current: Whether it is the version of the workspace file (None: no file was given).
        at_step: Members in progress, by the step they are at (waiting ones included).
        waiting_on_budget: Members in progress held at a send step by their message budget.
        waiting_on_quiet_hours: Members in progress held at a send step by their quiet hours.
        waiting_on_best_hour: Members in progress waiting at a send step for their best hour.
        completed: Members who went through to an exit step.
        exited_goal: Members who left early because they reached the journey's goal.
        exited_other: Members who left early for another reason (consent, suppressed,
            missing_step...), by reason.
        messages: The version's emails by status (queued, sent, failed, suppressed...).
        held_out: Members held out as the control group (the journey's holdout): sent nothing.
        arms: Members by the split variant drawn for them (whatever they stand now).
    """

    journey_key: str
    version: int
    journey_id: int
    registered_at: dt.datetime
    current: bool | None
    at_step: dict[str, int]
    waiting_on_budget: int = 0
    waiting_on_quiet_hours: int = 0
    waiting_on_best_hour: int = 0
    completed: int = 0
    exited_goal: int = 0
    exited_other: dict[str, int] = dataclasses.field(default_factory=dict)
    messages: dict[str, int] = dataclasses.field(default_factory=dict)
    held_out: int = 0
    arms: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def active(self) -> int:
        """Members in progress."""
        return sum(self.at_step.values())

    @property
    def enrolled(self) -> int:
        """Every enrollment of the version, finished or not."""
        return (
            self.active
            + self.completed
            + self.exited_goal
            + self.held_out
            + sum(self.exited_other.values())
        )

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready values."""
        return {
            "version": self.version,
            "journey_id": self.journey_id,
            "registered_at": self.registered_at.isoformat(),
            "current": self.current,
            "enrolled": self.enrolled,
            "active": self.active,
            "at_step": dict(self.at_step),
            "waiting_on_budget": self.waiting_on_budget,
            "waiting_on_quiet_hours": self.waiting_on_quiet_hours,
            "waiting_on_best_hour": self.waiting_on_best_hour,
            "completed": self.completed,
            "exited_goal": self.exited_goal,
            "exited_other": dict(self.exited_other),
            "messages": dict(self.messages),
            "held_out": self.held_out,
            "arms": dict(self.arms),
        }


@dataclasses.dataclass(frozen=True)
class JourneyStatus:
    """A journey and its versions.

    Attributes:
        journey_key: The journey's id.
        name: Its readable name (of the workspace file, else of its newest version).
        in_workspace: Whether the workspace has a file for it (None: no file was given).
        versions: Its versions, oldest first (none when it never ran).
    """

    journey_key: str
    name: str
    in_workspace: bool | None
    versions: tuple[VersionStatus, ...]

    @property
    def current_version(self) -> int | None:
        """The version of the workspace file, if it already ran."""
        return next((v.version for v in self.versions if v.current), None)

    @property
    def active_elsewhere(self) -> int:
        """Members in progress in a version other than the workspace file's (0 without file)."""
        return sum(v.active for v in self.versions if v.current is False)

    @property
    def messages(self) -> dict[str, int]:
        """The journey's emails by status, every version together."""
        total: dict[str, int] = defaultdict(int)
        for version in self.versions:
            for status, count in version.messages.items():
                total[status] += count
        return dict(sorted(total.items()))

    def to_dict(self) -> dict[str, Any]:
        """The journey and its versions as JSON-ready values."""
        return {
            "journey": self.journey_key,
            "name": self.name,
            "in_workspace": self.in_workspace,
            "current_version": self.current_version,
            "messages": self.messages,
            "versions": [version.to_dict() for version in self.versions],
        }


def journey_status(
    session: Session, definitions: Sequence[JourneyDefinition] | None = None
) -> list[JourneyStatus]:
    """Count, for each journey and version, where its members stand and its emails.

    Args:
        session: The database session; nothing is written.
        definitions: The workspace's journeys: marks each one's current version, and lists
            those that never ran (with no versions). None: every journey that ran, as stored.

    Returns:
        One status per journey, by id.
    """
    rows = list(session.scalars(select(Journey).order_by(Journey.key, Journey.version)))
    enrollments = session.execute(
        select(
            Enrollment.journey_id,
            Enrollment.state,
            Enrollment.current_step,
            Enrollment.waiting_on,
            Enrollment.exit_reason,
            Enrollment.arm,
            func.count(),
        ).group_by(
            Enrollment.journey_id,
            Enrollment.state,
            Enrollment.current_step,
            Enrollment.waiting_on,
            Enrollment.exit_reason,
            Enrollment.arm,
        )
    ).tuples()
    counts: dict[int, dict[str, Any]] = defaultdict(
        lambda: {
            "at_step": defaultdict(int),
            "waiting_on_budget": 0,
            "waiting_on_quiet_hours": 0,
            "waiting_on_best_hour": 0,
            "completed": 0,
            "exited_goal": 0,
            "exited_other": defaultdict(int),
            "held_out": 0,
            "arms": defaultdict(int),
        }
    )
    for journey_id, state, step, waiting_on, reason, arm, count in enrollments:
        found = counts[journey_id]
        if arm is not None and reason != ExitReason.HOLDOUT:
            found["arms"][arm] += count
        if reason == ExitReason.HOLDOUT:
            found["held_out"] += count
        elif state == EnrollmentState.ACTIVE:
            found["at_step"][step or ""] += count
            if waiting_on in ("budget", "quiet_hours", "best_hour"):
                found[f"waiting_on_{waiting_on}"] += count
        elif state == EnrollmentState.COMPLETED:
            found["completed"] += count
        elif reason == GOAL:
            found["exited_goal"] += count
        else:
            found["exited_other"][reason or "unknown"] += count
    messages: dict[int, dict[str, int]] = defaultdict(dict)
    for journey_id, status, count in session.execute(
        select(Enrollment.journey_id, Message.status, func.count())
        .join(Enrollment, Enrollment.id == Message.enrollment_id)
        .group_by(Enrollment.journey_id, Message.status)
    ).tuples():
        messages[journey_id][str(status)] = count

    by_key = {d.id: d for d in definitions} if definitions is not None else None
    versions: dict[str, list[VersionStatus]] = defaultdict(list)
    names: dict[str, str] = {}
    for row in rows:
        found = counts[row.id]
        current = None
        if by_key is not None:
            definition = by_key.get(row.key)
            current = definition is not None and definition.definition_hash == row.definition_hash
        versions[row.key].append(
            VersionStatus(
                journey_key=row.key,
                version=row.version,
                journey_id=row.id,
                registered_at=row.created_at,
                current=current,
                at_step=dict(sorted(found["at_step"].items())),
                waiting_on_budget=found["waiting_on_budget"],
                waiting_on_quiet_hours=found["waiting_on_quiet_hours"],
                waiting_on_best_hour=found["waiting_on_best_hour"],
                completed=found["completed"],
                exited_goal=found["exited_goal"],
                exited_other=dict(sorted(found["exited_other"].items())),
                messages=dict(sorted(messages[row.id].items())),
                held_out=found["held_out"],
                arms=dict(sorted(found["arms"].items())),
            )
        )
        names[row.key] = str((row.definition or {}).get("name") or row.key)
    keys = set(versions) | set(by_key or {})
    return [
        JourneyStatus(
            journey_key=key,
            name=by_key[key].name if by_key and key in by_key else names.get(key, key),
            in_workspace=None if by_key is None else key in by_key,
            versions=tuple(versions.get(key, [])),
        )
        for key in sorted(keys)
    ]
