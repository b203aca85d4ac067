"""What a journey changes: goal conversion and retention per arm (control, variants).

``journey_results`` reads a journey's enrollments and its members' activity and compares the
arms: the control group of a holdout, each variant of a split (or ``journey`` when there is no
split). Each member counts once, by their first enrollment in the journey. A member converts
when they do one of the goal's events within the goal's window after enrolling; only members
whose window has closed are counted, so a young journey is not judged on half its window.
Retention is the share of members active (a post, comment, event attended or content viewed;
emails opened or clicked are left out, since only members who got emails can open them) in the
30 days up to day 30, 60 and 90 after enrolling, among members enrolled that long ago. The
statistics are :mod:`nurture.journeys.stats`'s. Nothing is written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.journeys.experiments import CONTROL_ARM, JOURNEY_ARM
from nurture.journeys.models import JourneyDefinition, parse_duration
from nurture.journeys.stats import Comparison, Rate, compare_rates, sample_size_per_arm
from nurture.storage.models import ActivityEvent, Enrollment

__all__ = [
    "DEFAULT_EFFECT",
    "DEFAULT_WINDOW",
    "RETENTION_DAYS",
    "RETENTION_EVENTS",
    "ArmResult",
    "JourneyResults",
    "journey_results",
]

DEFAULT_WINDOW = "30d"
"""The goal's window when it does not say (``goal.within``)."""

DEFAULT_EFFECT = 0.05
"""The effect (in rate points) whose needed sample size results report by default."""

RETENTION_DAYS = (30, 60, 90)
"""Days after enrolment at which retention is measured."""

RETENTION_EVENTS = ("post", "comment", "event_attended", "content_view")
"""The activity that makes a member active, for retention."""

_ACTIVE_SPAN = dt.timedelta(days=30)


@dataclasses.dataclass(frozen=True)
class ArmResult:
    """One arm of a journey: its conversion, its comparison with the reference, its retention.

    Attributes:
        arm: ``control``, a variant's name, or ``journey``.
        enrolled: Members in the arm (first enrollments).
        in_window: Of them, members whose goal window has not closed yet (not counted).
        conversion: Goal conversion among members whose window closed (None: the goal has no
            events to count).
        comparison: Against the reference arm (None for the reference itself).
        retention: Active members on day 30, 60, 90, each among those enrolled that long ago.
    """

    arm: str
    enrolled: int
    in_window: int
    conversion: Rate | None
    comparison: Comparison | None
    retention: dict[int, Rate]

    def to_dict(self) -> dict[str, Any]:
        """The arm as JSON-ready values."""
        return {
            "arm": self.arm,
            "enrolled": self.enrolled,
            "in_window": self.in_window,
            "conversion": dataclasses.asdict(self.conversion) if self.conversion else None,
            "comparison": (
                {**dataclasses.asdict(self.comparison), "significant": self.comparison.significant}
                if self.comparison
                else None
            ),
            "retention": {str(day): dataclasses.asdict(r) for day, r in self.retention.items()},
        }


@dataclasses.dataclass(frozen=True)
class JourneyResults:
    """A journey's arms compared.

    Attributes:
        journey_key: The journey's id.
        name: Its name.
        goal_events: The goal's events counted as a conversion (empty: nothing to count).
        window_days: The goal's window, in days.
        reference: The arm the others are compared with (control, else the first variant).
        arms: Every arm, the reference first.
        effect: The effect (rate points) of ``needed_per_arm``.
        needed_per_arm: Members each arm needs to see ``effect`` at the reference's rate (None:
            no rate to start from yet).
        unassigned: Members enrolled who have not reached the split yet.
        now: When the results were computed.
    """

    journey_key: str
    name: str
    goal_events: tuple[str, ...]
    window_days: float
    reference: str | None
    arms: tuple[ArmResult, ...]
    effect: float
    needed_per_arm: int | None
    unassigned: int
    now: dt.datetime

    @property
    def notes(self) -> list[str]:
        """What a reader must know before reading the numbers."""
        notes: list[str] = []
        if not self.goal_events:
            notes.append(
                "the journey's goal names no events (or there is no goal): conversion cannot "
                "be counted, only retention"
            )
        if self.reference is None:
            notes.append("nothing to compare: add `holdout: 10%` or a split step to the journey")
        short = [arm.arm for arm in self.arms if arm.comparison and not arm.comparison.enough_data]
        if short:
            needed = (
                f" (about {self.needed_per_arm} members per arm are needed to see a change of "
                f"{self.effect * 100:g} points)"
                if self.needed_per_arm
                else ""
            )
            notes.append(
                f"not enough data to conclude for {', '.join(short)}{needed}: "
                "the difference and p-value are shown but may not hold"
            )
        if any(arm.in_window for arm in self.arms):
            waiting = sum(arm.in_window for arm in self.arms)
            notes.append(f"{waiting} members are still within the goal window and not counted")
        return notes

    def to_dict(self) -> dict[str, Any]:
        """The results as JSON-ready values."""
        return {
            "journey": self.journey_key,
            "name": self.name,
            "goal_events": list(self.goal_events),
            "window_days": self.window_days,
            "reference": self.reference,
            "arms": [arm.to_dict() for arm in self.arms],
            "effect": self.effect,
            "needed_per_arm": self.needed_per_arm,
            "unassigned": self.unassigned,
            "notes": self.notes,
            "now": self.now.isoformat(),
        }


@dataclasses.dataclass(frozen=True)
class _Entry:
    member_id: int
    arm: str | None
    enrolled_at: dt.datetime


def journey_results(
    session: Session,
    definition: JourneyDefinition,
    now: dt.datetime,
    *,
    effect: float = DEFAULT_EFFECT,
    window: dt.timedelta | None = None,
    events: Sequence[str] | None = None,
) -> JourneyResults:
    """Compare a journey's arms: goal conversion within its window, retention on day 30/60/90.

    Args:
        session: The database session (read only).
        definition: The journey (its goal, holdout and split).
        now: The moment results are computed at; later activity is ignored.
        effect: The change (rate points) whose needed sample size is reported.
        window: The goal's window; default: ``goal.within``, else 30 days.
        events: The activity types that count as a conversion; default: the goal's events.

    Returns:
        The arms compared.
    """
    goal = definition.goal
    goal_events = tuple(events) if events else tuple(goal.events or ()) if goal else ()
    if window is None:
        window = parse_duration(goal.within if goal and goal.within else DEFAULT_WINDOW)
    entries = _first_entries(session, definition.id, now)
    split = definition.split_step is not None
    by_arm: dict[str, list[_Entry]] = defaultdict(list)
    unassigned = 0
    for entry in entries:
        arm = entry.arm or (None if split else JOURNEY_ARM)
        if arm is None:
            unassigned += 1
        else:
            by_arm[arm].append(entry)
    activity = _events(session, [entry.member_id for entry in entries], goal_events, now)
    order = [arm for arm in definition.arms if arm in by_arm or arm != CONTROL_ARM]
    order += sorted(arm for arm in by_arm if arm not in order)  # variants since removed
    reference = order[0] if len(order) > 1 else None
    conversions = {
        arm: _conversion(by_arm[arm], activity, goal_events, window, now) for arm in order
    }
    retention = {arm: _retention(by_arm[arm], activity, now) for arm in order}
    arms: list[ArmResult] = []
    for arm in order:
        rate, waiting = conversions[arm]
        base = conversions[reference][0] if reference else None
        comparison = (
            compare_rates(rate, base)
            if rate is not None and base is not None and arm != reference
            else None
        )
        arms.append(ArmResult(arm, len(by_arm[arm]), waiting, rate, comparison, retention[arm]))
    base_rate = conversions[reference][0] if reference else None
    needed = None
    if base_rate is not None and base_rate.total and 0 < base_rate.rate < 1:
        try:
            needed = sample_size_per_arm(base_rate.rate, effect)
        except ValueError:
            needed = None
    return JourneyResults(
        journey_key=definition.id,
        name=definition.name,
        goal_events=goal_events,
        window_days=window.total_seconds() / 86400,
        reference=reference,
        arms=tuple(arms),
        effect=effect,
        needed_per_arm=needed,
        unassigned=unassigned,
        now=now,
    )


def _first_entries(session: Session, journey_key: str, now: dt.datetime) -> list[_Entry]:
    """Each member's first enrollment in the journey (by enrolment time, then id)."""
    rows = session.execute(
        select(Enrollment.member_id, Enrollment.arm, Enrollment.enrolled_at)
        .where(Enrollment.journey_key == journey_key, Enrollment.enrolled_at <= now)
        .order_by(Enrollment.member_id, Enrollment.enrolled_at, Enrollment.id)
    ).tuples()
    first: dict[int, _Entry] = {}
    for member_id, arm, enrolled_at in rows:
        if member_id not in first:
            first[member_id] = _Entry(member_id, arm, enrolled_at)
    return list(first.values())


def _events(
    session: Session, member_ids: Sequence[int], goal_events: Sequence[str], now: dt.datetime
) -> dict[int, list[tuple[str, dt.datetime]]]:
    """The goal and retention events of the members up to ``now``, by member."""
    kinds = sorted(set(goal_events) | set(RETENTION_EVENTS))
    found: dict[int, list[tuple[str, dt.datetime]]] = defaultdict(list)
    for chunk in chunked(sorted(set(member_ids)), 500):
        rows = session.execute(
            select(ActivityEvent.member_id, ActivityEvent.type, ActivityEvent.occurred_at).where(
                ActivityEvent.member_id.in_(chunk),
                ActivityEvent.type.in_(kinds),
                ActivityEvent.occurred_at <= now,
            )
        ).tuples()
        for member_id, kind, occurred_at in rows:
            found[member_id].append((kind, occurred_at))
    return found


def _conversion(
    entries: Sequence[_Entry],
    events: dict[int, list[tuple[str, dt.datetime]]],
    goal_events: Sequence[str],
    window: dt.timedelta,
    now: dt.datetime,
) -> tuple[Rate | None, int]:
    """(conversion among members whose window closed, members still in their window)."""
    closed = [entry for entry in entries if entry.enrolled_at + window <= now]
    waiting = len(entries) - len(closed)
    if not goal_events:
        return None, waiting
    converted = sum(
        any(
            kind in goal_events and entry.enrolled_at <= at <= entry.enrolled_at + window
            for kind, at in events.get(entry.member_id, ())
        )
        for entry in closed
    )
    return Rate.of(converted, len(closed)), waiting


def _retention(
    entries: Sequence[_Entry], events: dict[int, list[tuple[str, dt.datetime]]], now: dt.datetime
) -> dict[int, Rate]:
    """Active members in the 30 days up to day 30/60/90, among those enrolled that long ago."""
    retention: dict[int, Rate] = {}
    for days in RETENTION_DAYS:
        mark = dt.timedelta(days=days)
        old_enough = [entry for entry in entries if entry.enrolled_at + mark <= now]
        active = sum(
            any(
                kind in RETENTION_EVENTS
                and entry.enrolled_at + mark - _ACTIVE_SPAN < at <= entry.enrolled_at + mark
                for kind, at in events.get(entry.member_id, ())
            )
            for entry in old_enough
        )
        retention[days] = Rate.of(active, len(old_enough))
    return retention
