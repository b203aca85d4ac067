"""Each member's best hour of day to get an email, from when they open and click.

A member's opens and clicks of the last ``HISTORY_DAYS`` days, counted by hour of their own day
(their time zone), give their hour profile; few events say little, so the profile is shrunk
towards their cluster segment's, itself shrunk towards the community's (an empirical-Bayes
blend: each level counts as ``PRIOR_STRENGTH`` events of the level above). The best hour is
the profile's highest; a community without any open or click gets ``DEFAULT_HOUR``.

``hour_profile`` and ``best_hour_of`` are pure; ``BestHours.load`` reads the events once;
``store_best_hours`` (the nightly run) writes every member's best hour to ``Member.best_hour``,
which a send step with ``at: best_hour`` reads (:mod:`nurture.journeys.engine`; a member never
computed yet gets one computed on the spot).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.journeys.triggers import local_zone
from nurture.segmentation.assignments import effective_segments
from nurture.storage.models import ActivityEvent, Member

__all__ = [
    "DEFAULT_HOUR",
    "HISTORY_DAYS",
    "PRIOR_STRENGTH",
    "BestHours",
    "BestHoursSummary",
    "best_hour_of",
    "hour_profile",
    "next_local_hour",
    "store_best_hours",
]

DEFAULT_HOUR = 10
"""The hour (local) when nobody in the community ever opened or clicked."""

HISTORY_DAYS = 90
"""Opens and clicks older than this are not counted."""

PRIOR_STRENGTH = 8.0
"""How many events the level above (segment, community) weighs in a member's profile."""

_HOURS = 24
_UNIFORM = [1 / _HOURS] * _HOURS


def hour_profile(counts: Sequence[float], prior: Sequence[float], strength: float) -> list[float]:
    """Shares of events by hour, shrunk towards ``prior``: ``(n_h + k p_h) / (N + k)``.

    Args:
        counts: Events per hour (24 values).
        prior: The profile of the level above (24 shares summing to 1).
        strength: ``k``, the prior's weight in events.

    Returns:
        24 shares summing to 1; the prior itself when there is no event.
    """
    total = sum(counts)
    return [
        (count + strength * share) / (total + strength)
        for count, share in zip(counts, prior, strict=True)
    ]


def best_hour_of(profile: Sequence[float]) -> int:
    """The hour with the highest share (the earliest of equals).

    Args:
        profile: 24 shares.

    Returns:
        The hour, 0-23.
    """
    return max(range(_HOURS), key=lambda hour: (profile[hour], -hour))


@dataclasses.dataclass(frozen=True)
class BestHours:
    """Hour profiles of the community, its segments and its members, read once.

    Attributes:
        member_counts: Opens and clicks per member by local hour (members with any).
        segment_of: Each member's cluster segment.
        strength: The shrinkage weight (``PRIOR_STRENGTH``).
    """

    member_counts: Mapping[int, Sequence[int]]
    segment_of: Mapping[int, int]
    strength: float = PRIOR_STRENGTH
    _segment_profiles: dict[int, list[float]] = dataclasses.field(
        default_factory=dict, init=False, repr=False
    )
    _community: list[float] = dataclasses.field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        community = [0] * _HOURS
        by_segment: dict[int, list[int]] = defaultdict(lambda: [0] * _HOURS)
        for member_id, counts in self.member_counts.items():
            segment = self.segment_of.get(member_id)
            for hour, count in enumerate(counts):
                community[hour] += count
                if segment is not None:
                    by_segment[segment][hour] += count
        if sum(community):
            self._community.extend(hour_profile(community, _UNIFORM, _HOURS))
        else:  # nothing to learn from: the default hour
            self._community.extend(1.0 if hour == DEFAULT_HOUR else 0.0 for hour in range(_HOURS))
        for segment, counts in by_segment.items():
            self._segment_profiles[segment] = hour_profile(counts, self._community, self.strength)

    @classmethod
    def load(cls, session: Session, now: dt.datetime) -> BestHours:
        """Read the community's opens and clicks of the last ``HISTORY_DAYS`` days.

        Args:
            session: The database session (read only).
            now: The current time; older and later events are left out.

        Returns:
            The profiles.
        """
        zones = dict(session.execute(select(Member.id, Member.time_zone)).tuples().all())
        rows = session.execute(
            select(ActivityEvent.member_id, ActivityEvent.occurred_at).where(
                ActivityEvent.type.in_(("email_open", "email_click")),
                ActivityEvent.occurred_at > now - dt.timedelta(days=HISTORY_DAYS),
                ActivityEvent.occurred_at <= now,
            )
        ).tuples()
        counts: dict[int, list[int]] = defaultdict(lambda: [0] * _HOURS)
        for member_id, occurred_at in rows:
            counts[member_id][occurred_at.astimezone(local_zone(zones.get(member_id))).hour] += 1
        return cls(dict(counts), effective_segments(session))

    def profile(self, member_id: int) -> list[float]:
        """A member's hour profile, shrunk towards their segment's, then the community's."""
        segment = self.segment_of.get(member_id)
        prior = self._segment_profiles.get(segment, self._community) if segment else self._community
        counts = self.member_counts.get(member_id)
        return hour_profile(counts, prior, self.strength) if counts else list(prior)

    def best_hour(self, member_id: int) -> int:
        """A member's best hour of their day (0-23).

        Args:
            member_id: The member.

        Returns:
            The hour.
        """
        return best_hour_of(self.profile(member_id))


@dataclasses.dataclass(frozen=True)
class BestHoursSummary:
    """What ``store_best_hours`` wrote.

    Attributes:
        members: Members whose best hour was computed.
        from_own_events: Of them, members with opens or clicks of their own (the others take
            their segment's or the community's hour).
    """

    members: int
    from_own_events: int


def store_best_hours(
    session: Session, now: dt.datetime, *, chunk_size: int = 1000
) -> BestHoursSummary:
    """Compute every member's best hour and store it in ``Member.best_hour``.

    Args:
        session: The database session; the caller commits.
        now: The current time (the last ``HISTORY_DAYS`` days of opens and clicks count).
        chunk_size: Members updated per statement.

    Returns:
        How many members were given a best hour.
    """
    hours = BestHours.load(session, now)
    stored = session.execute(
        select(Member.id, Member.best_hour, Member.updated_at).order_by(Member.id)
    ).all()
    # Only the members whose best hour moved are written, and their ``updated_at`` is kept:
    # a best hour is derived from activity, not an edit of the member's record (which the
    # incremental nightly looks for by ``updated_at``).
    moved = [
        {"id": member_id, "best_hour": best, "updated_at": updated_at}
        for member_id, current, updated_at in stored
        if (best := hours.best_hour(member_id)) != current
    ]
    for chunk in chunked(moved, chunk_size):
        session.execute(update(Member), chunk)
    ids = [row.id for row in stored]
    return BestHoursSummary(len(ids), sum(m in hours.member_counts for m in ids))


def next_local_hour(now: dt.datetime, hour: int, time_zone: str | None) -> dt.datetime:
    """The next start of ``hour`` in a time zone, at or after ``now`` (UTC).

    Args:
        now: The current time (aware).
        hour: The local hour, 0-23.
        time_zone: The IANA zone; UTC when unknown.

    Returns:
        The moment, in UTC; a local time skipped by a daylight-saving change moves forward.
    """
    zone = local_zone(time_zone)
    local = now.astimezone(zone)
    for days in range(3):
        day = local.date() + dt.timedelta(days=days)
        moment = dt.datetime.combine(day, dt.time(hour)).replace(tzinfo=zone).astimezone(dt.UTC)
        if moment >= now:
            return moment
    raise AssertionError("an hour comes back within three days")
