"""The backfill guard: a run that would start emailing much of the community at once.

A first run on a community that already exists, or a new journey whose trigger matches old
history (every member silent for 30 days, every member who ever answered), enrols a large share
of the members at once: rarely what the marketer meant. ``measure_backfill`` counts the members
a pass has just enrolled, journey by journey, against the community; a run whose count goes over
the workspace's limit (``sending.yaml``, :class:`~nurture.journeys.policy.BackfillLimit`) is
refused unless told, and ``nurture journeys simulate`` shows it beforehand.

Journeys meant for everyone at once do not count: a ``schedule`` (the monthly digest) and a
``community_milestone`` trigger.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.journeys.models import JourneyDefinition
from nurture.journeys.policy import BackfillLimit
from nurture.storage.models import Enrollment, Member

__all__ = ["BROADCAST_TRIGGERS", "Backfill", "measure_backfill"]

BROADCAST_TRIGGERS = frozenset({"schedule", "community_milestone"})
"""Trigger kinds meant for everyone at once: never a backfill."""


@dataclasses.dataclass(frozen=True)
class Backfill:
    """The members a run starts emailing at once, against the community and the limit.

    Attributes:
        at: The run's time.
        members: Members enrolled by the run in the journeys that count (each once).
        community: Members of the community at that time (of the members run on).
        by_journey: Enrollments per journey that counts, largest first (none at 0).
        limit: The workspace's limit.
    """

    at: dt.datetime
    members: int
    community: int
    by_journey: Mapping[str, int]
    limit: BackfillLimit

    @property
    def share(self) -> float:
        """The share of the community enrolled at once (0 for an empty community)."""
        return self.members / self.community if self.community else 0.0

    @property
    def exceeded(self) -> bool:
        """Whether this run is a backfill: over the share, and not a handful of members."""
        return self.members >= self.limit.min_members and self.share > self.limit.max_share

    def describe(self) -> str:
        """One line: how many members, what share, and the journeys that enrol them."""
        journeys = ", ".join(f"{key} {count}" for key, count in self.by_journey.items())
        return (
            f"{self.members} of {self.community} members ({self.share:.0%}) at once, over the "
            f"backfill limit of {self.limit.max_share:.0%} (sending.yaml backfill.max_share): "
            f"{journeys or 'no journey'}"
        )

    def refusal(self) -> str:
        """Why a run is refused, and what to do about it."""
        return (
            f"refused: this run would start emailing {self.describe()}. Nothing was enrolled or "
            "sent. `nurture journeys simulate all --days 1` shows who and when; narrow the "
            "journeys' triggers (within_days) or their audience, or, to email them all, run "
            "again with `nurture run --allow-backfill` (NURTURE_ALLOW_BACKFILL=true)"
        )

    def to_dict(self) -> dict[str, Any]:
        """The measure as JSON values."""
        return {
            "at": self.at.isoformat(),
            "members": self.members,
            "community": self.community,
            "share": round(self.share, 4),
            "by_journey": dict(self.by_journey),
            "max_share": self.limit.max_share,
            "min_members": self.limit.min_members,
            "exceeded": self.exceeded,
        }


def measure_backfill(
    session: Session,
    definitions: Sequence[JourneyDefinition],
    now: dt.datetime,
    limit: BackfillLimit,
    *,
    member_ids: Collection[int] | None = None,
) -> Backfill:
    """The members the pass at ``now`` has just enrolled, journey by journey.

    Args:
        session: The database session, after the pass's enrolments (flushed).
        definitions: The journeys in force; those with a broadcast trigger do not count.
        now: The pass's time: its enrollments have ``enrolled_at == now``.
        limit: The workspace's backfill limit.
        member_ids: Only these members (a simulation of a few); None: everyone.

    Returns:
        The measure; ``exceeded`` tells whether it is a backfill.
    """
    keys = sorted(d.id for d in definitions if d.trigger.type not in BROADCAST_TRIGGERS)
    enrolled = (
        select(Enrollment.journey_key, Enrollment.member_id)
        .where(Enrollment.enrolled_at == now, Enrollment.journey_key.in_(keys))
        .distinct()
    )
    community = select(func.count(Member.id)).where(Member.joined_at <= now)
    if member_ids is not None:
        chosen = sorted(member_ids)
        enrolled = enrolled.where(Enrollment.member_id.in_(chosen))
        community = community.where(Member.id.in_(chosen))
    counts: dict[str, int] = {}
    members: set[int] = set()
    for journey_key, member_id in session.execute(enrolled).tuples():
        counts[journey_key] = counts.get(journey_key, 0) + 1
        members.add(member_id)
    by_journey = dict(sorted(counts.items(), key=lambda pair: (-pair[1], pair[0])))
    return Backfill(
        at=now,
        members=len(members),
        community=int(session.scalar(community) or 0),
        by_journey=by_journey,
        limit=limit,
    )
