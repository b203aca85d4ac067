"""Lifecycle stages: where a member stands, from tenure and recent activity.

Rules, first match wins (``days`` are whole or fractional days before ``now``):

``ambassador``
    at least 15 contributions (posts + comments) in the last 90 days, and active in the last
    30 days.
``contributor``
    at least 3 contributions in the last 90 days, and active in the last 30 days.
``new``
    joined less than 7 days ago.
``onboarding``
    joined less than 30 days ago.
``active``
    any activity (any event type, email opens included) in the last 30 days.
``at_risk``
    last activity 30 to 90 days ago, or never active and joined less than 90 days ago.
``dormant``
    no activity in the last 90 days (or ever) and a member for 90 days or more.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from nurture.storage.models import LifecycleStage

__all__ = [
    "AMBASSADOR_CONTRIBUTIONS",
    "CONTRIBUTION_TYPES",
    "CONTRIBUTOR_CONTRIBUTIONS",
    "ActivitySummary",
    "lifecycle_stage",
]

CONTRIBUTION_TYPES: Final = ("post", "comment")
"""Event types that count as contributions."""

AMBASSADOR_CONTRIBUTIONS: Final = 15
CONTRIBUTOR_CONTRIBUTIONS: Final = 3
NEW_DAYS: Final = 7
ONBOARDING_DAYS: Final = 30
ACTIVE_DAYS: Final = 30
AT_RISK_DAYS: Final = 90


@dataclass
class ActivitySummary:
    """A member's activity up to ``now``, aggregated by event type.

    Attributes:
        last_activity_at: Time of the latest event of any type, or ``None``.
        counts: ``{event type: {window days: count}}`` for the windows 7, 30 and 90 days.
        totals: ``{event type: count}`` over all time.
    """

    last_activity_at: dt.datetime | None = None
    counts: dict[str, dict[int, int]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)

    def count(self, event_type: str, days: int) -> int:
        """Events of ``event_type`` in the last ``days`` days (a window of 7, 30 or 90)."""
        return self.counts.get(event_type, {}).get(days, 0)

    def add(
        self,
        event_type: str,
        *,
        last_at: dt.datetime | None,
        total: int,
        windows: Mapping[int, int],
    ) -> None:
        """Merge the aggregate of one event type into the summary."""
        self.totals[event_type] = self.totals.get(event_type, 0) + total
        mine = self.counts.setdefault(event_type, {})
        for days, count in windows.items():
            mine[days] = mine.get(days, 0) + count
        if last_at is not None and (
            self.last_activity_at is None or last_at > self.last_activity_at
        ):
            self.last_activity_at = last_at


def _days(earlier: dt.datetime, now: dt.datetime) -> float:
    return (now - earlier).total_seconds() / 86400.0


def lifecycle_stage(
    joined_at: dt.datetime, summary: ActivitySummary, now: dt.datetime
) -> LifecycleStage:
    """The lifecycle stage of a member (rules in the module docstring).

    Args:
        joined_at: When the member joined (timezone-aware).
        summary: The member's activity up to ``now``.
        now: The time of the computation (timezone-aware).

    Returns:
        The stage.
    """
    tenure = _days(joined_at, now)
    idle = None if summary.last_activity_at is None else _days(summary.last_activity_at, now)
    recently_active = idle is not None and idle < ACTIVE_DAYS
    contributions = sum(summary.count(kind, 90) for kind in CONTRIBUTION_TYPES)
    if recently_active and contributions >= AMBASSADOR_CONTRIBUTIONS:
        return LifecycleStage.AMBASSADOR
    if recently_active and contributions >= CONTRIBUTOR_CONTRIBUTIONS:
        return LifecycleStage.CONTRIBUTOR
    if tenure < NEW_DAYS:
        return LifecycleStage.NEW
    if tenure < ONBOARDING_DAYS:
        return LifecycleStage.ONBOARDING
    if recently_active:
        return LifecycleStage.ACTIVE
    if idle is not None and idle < AT_RISK_DAYS:
        return LifecycleStage.AT_RISK
    if idle is None and tenure < AT_RISK_DAYS:
        return LifecycleStage.AT_RISK
    return LifecycleStage.DORMANT
