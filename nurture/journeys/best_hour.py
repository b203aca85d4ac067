"""Each member's best hour of day to get an email, from when they open and click.

A member's opens and clicks of the last ``HISTORY_DAYS`` days, counted by hour of their own day
(their time zone), give their hour profile; few events say little, so the profile is shrunk
towards their cluster segment's, itself shrunk towards the community's (an empirical-Bayes
blend: each level counts as ``PRIOR_STRENGTH`` events of the level above). The best hour is
the profile's highest; a community without any open or click gets ``DEFAULT_HOUR``.

``hour_profile`` and ``best_hour_of`` are pure; ``HourPriors.load`` sums the community's events
by segment, reading the members a page at a time (:func:`hour_count_pages`), so memory does not
grow with the community; ``store_best_hours`` (the nightly run) reads the community once, a page
at a time, keeping what each member's hour needs in compact arrays until the priors are known
(about 14 bytes a member, and 24 counts a member with opens or clicks), then writes every member's
best hour that moved to ``Member.best_hour``, which a send step with ``at: best_hour`` reads
(:mod:`nurture.journeys.engine`; a member never computed yet gets one computed on the spot,
against the priors read once per pass).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence

import numpy as np
from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.orm import Session

from nurture.journeys.triggers import local_zone
from nurture.segmentation.assignments import effective_segments
from nurture.storage import plain_connection
from nurture.storage.models import ActivityEvent, Member, table_of

__all__ = [
    "DEFAULT_HOUR",
    "HISTORY_DAYS",
    "PRIOR_STRENGTH",
    "BestHours",
    "BestHoursSummary",
    "HourCountsPage",
    "HourPriors",
    "best_hour_of",
    "hour_count_pages",
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


def _add_hour_counts(
    community: list[int],
    by_segment: dict[int, list[int]],
    member_counts: Mapping[int, Sequence[int]],
    segment_of: Mapping[int, int],
) -> None:
    """Add members' opens and clicks by hour to the community's and their segments' totals."""
    for member_id, counts in member_counts.items():
        segment = segment_of.get(member_id)
        for hour, count in enumerate(counts):
            community[hour] += count
            if segment is not None:
                by_segment[segment][hour] += count


@dataclasses.dataclass(frozen=True)
class HourPriors:
    """The community's hour profile and each cluster segment's, which members lean on.

    Attributes:
        community: The community's profile (24 shares).
        segments: ``{segment id: profile}`` for the segments with any open or click.
        strength: The shrinkage weight (``PRIOR_STRENGTH``).
    """

    community: Sequence[float]
    segments: Mapping[int, Sequence[float]]
    strength: float = PRIOR_STRENGTH

    @classmethod
    def from_totals(
        cls,
        community: Sequence[int],
        segments: Mapping[int, Sequence[int]],
        strength: float = PRIOR_STRENGTH,
    ) -> HourPriors:
        """The profiles of summed counts: the community's, then each segment's shrunk to it.

        Args:
            community: Opens and clicks of every member by local hour.
            segments: ``{segment id: counts}`` of the members of each segment.
            strength: The shrinkage weight.

        Returns:
            The priors.
        """
        if sum(community):
            profile = hour_profile(community, _UNIFORM, _HOURS)
        else:  # nothing to learn from: the default hour
            profile = [1.0 if hour == DEFAULT_HOUR else 0.0 for hour in range(_HOURS)]
        return cls(
            profile,
            {
                segment: hour_profile(counts, profile, strength)
                for segment, counts in segments.items()
            },
            strength,
        )

    @classmethod
    def load(cls, session: Session, now: dt.datetime, *, page_size: int = 1000) -> HourPriors:
        """Sum the community's opens and clicks of the last ``HISTORY_DAYS`` days, by segment.

        The members are read a page at a time: memory does not grow with the community.

        Args:
            session: The database session (read only).
            now: The current time; older and later events are left out.
            page_size: Members read per page.

        Returns:
            The priors.
        """
        community = [0] * _HOURS
        by_segment: dict[int, list[int]] = defaultdict(lambda: [0] * _HOURS)
        for page in hour_count_pages(session, now, page_size=page_size):
            _add_hour_counts(community, by_segment, page.counts, page.segment_of)
        return cls.from_totals(community, by_segment)

    def profile(self, counts: Sequence[int] | None, segment: int | None) -> list[float]:
        """A member's hour profile, shrunk towards their segment's, then the community's.

        Args:
            counts: The member's opens and clicks by local hour; None without any.
            segment: Their effective cluster segment, if any.

        Returns:
            24 shares.
        """
        prior = self.segments.get(segment, self.community) if segment else self.community
        return hour_profile(counts, prior, self.strength) if counts else list(prior)


@dataclasses.dataclass(frozen=True)
class HourCountsPage:
    """One page of members, as :func:`hour_count_pages` reads them.

    Attributes:
        member_ids: The page's members, in id order.
        counts: Opens and clicks per member by local hour (members with any).
        segment_of: Each member's effective cluster segment.
        best_hour: Each member's stored best hour (None: never computed).
    """

    member_ids: list[int]
    counts: dict[int, list[int]]
    segment_of: dict[int, int]
    best_hour: dict[int, int | None]


def _hour_counts(
    session: Session, now: dt.datetime, zones: Mapping[int, str | None], *, every: bool
) -> dict[int, list[int]]:
    """Opens and clicks by local hour of the members of ``zones`` (``{id: time zone}``).

    With ``every``, ``zones`` holds every member with an id in its range, which is read whole.
    """
    ids = sorted(zones)
    members = (
        and_(ActivityEvent.member_id >= ids[0], ActivityEvent.member_id <= ids[-1])
        if every
        else ActivityEvent.member_id.in_(ids)
    )
    rows = (
        session.connection()
        .execute(
            select(ActivityEvent.member_id, ActivityEvent.occurred_at).where(
                members,
                # ``type || ''``: the same test, but one no index on the type can answer: without
                # statistics SQLite prefers (type, occurred_at), which reads every open and click
                # of the year for each page; (member_id, occurred_at) reads the page's members only.
                ActivityEvent.type.concat("").in_(("email_open", "email_click")),
                ActivityEvent.occurred_at > now - dt.timedelta(days=HISTORY_DAYS),
                ActivityEvent.occurred_at <= now,
            )
        )
        .tuples()
    )
    counts: dict[int, list[int]] = defaultdict(lambda: [0] * _HOURS)
    for member_id, occurred_at in rows:
        counts[member_id][occurred_at.astimezone(local_zone(zones.get(member_id))).hour] += 1
    return dict(counts)


def hour_count_pages(
    session: Session,
    now: dt.datetime,
    *,
    page_size: int = 1000,
    member_ids: Collection[int] | None = None,
) -> Iterator[HourCountsPage]:
    """The members a page at a time (keyset pages by id), with their opens and clicks by hour.

    Args:
        session: The database session (read only).
        now: The current time; events of the last ``HISTORY_DAYS`` days count.
        page_size: Members per page.
        member_ids: Only these members; everyone when None.

    Yields:
        Pages of members, in id order.
    """
    query = select(Member.id, Member.time_zone, Member.best_hour).order_by(Member.id)
    wanted = sorted(set(member_ids)) if member_ids is not None else None
    last: int | None = None
    start = 0
    connection = plain_connection(session)
    while True:
        if wanted is None:
            paged = query if last is None else query.where(Member.id > last)
            rows = connection.execute(paged.limit(page_size)).all()
        else:
            batch = wanted[start : start + page_size]
            start += page_size
            rows = connection.execute(query.where(Member.id.in_(batch))).all() if batch else []
        if not rows:
            return
        ids = [row.id for row in rows]
        last = ids[-1]
        zones = {row.id: row.time_zone for row in rows}
        counts = _hour_counts(session, now, zones, every=wanted is None)
        yield HourCountsPage(
            member_ids=ids,
            counts=counts,
            segment_of=(
                effective_segments(session, between=(ids[0], ids[-1]))
                if wanted is None
                else effective_segments(session, ids)
            ),
            best_hour={row.id: row.best_hour for row in rows},
        )


@dataclasses.dataclass(frozen=True)
class BestHours:
    """Hour profiles of the community, its segments and some members.

    Built from every member's counts, the priors are computed from them; built by
    :meth:`load`, the priors are the whole community's (read a page at a time) and the counts
    only those of the members asked for.

    Attributes:
        member_counts: Opens and clicks per member by local hour (members with any).
        segment_of: Each member's cluster segment.
        strength: The shrinkage weight (``PRIOR_STRENGTH``).
        priors: The community's and segments' profiles; default: from ``member_counts``.
    """

    member_counts: Mapping[int, Sequence[int]]
    segment_of: Mapping[int, int]
    strength: float = PRIOR_STRENGTH
    priors: HourPriors | None = None

    def __post_init__(self) -> None:
        if self.priors is not None:
            return
        community = [0] * _HOURS
        by_segment: dict[int, list[int]] = defaultdict(lambda: [0] * _HOURS)
        _add_hour_counts(community, by_segment, self.member_counts, self.segment_of)
        priors = HourPriors.from_totals(community, by_segment, self.strength)
        object.__setattr__(self, "priors", priors)

    @classmethod
    def load(
        cls,
        session: Session,
        now: dt.datetime,
        member_ids: Collection[int],
        *,
        priors: HourPriors | None = None,
    ) -> BestHours:
        """The profiles of some members, against the whole community's priors.

        Args:
            session: The database session (read only).
            now: The current time; events of the last ``HISTORY_DAYS`` days count.
            member_ids: The members whose best hour is wanted.
            priors: The community's priors, if already read (:meth:`HourPriors.load`).

        Returns:
            The profiles.
        """
        priors = priors or HourPriors.load(session, now)
        counts: dict[int, list[int]] = {}
        segment_of: dict[int, int] = {}
        for page in hour_count_pages(session, now, member_ids=member_ids):
            counts.update(page.counts)
            segment_of.update(page.segment_of)
        return cls(counts, segment_of, priors.strength, priors)

    def profile(self, member_id: int) -> list[float]:
        """A member's hour profile, shrunk towards their segment's, then the community's."""
        assert self.priors is not None  # set by __post_init__
        return self.priors.profile(
            self.member_counts.get(member_id), self.segment_of.get(member_id)
        )

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

    The members are read once, a page at a time; until the priors are known, each member's id,
    segment and stored hour are kept in arrays, and the counts of those with opens or clicks
    (24 numbers each), rather than every page read again. The hours are the ones
    :meth:`HourPriors.profile` and :func:`best_hour_of` give, computed for many members at once.

    Args:
        session: The database session; the caller commits.
        now: The current time (the last ``HISTORY_DAYS`` days of opens and clicks count).
        chunk_size: Members read per page and updated per statement.

    Returns:
        How many members were given a best hour.
    """
    community = [0] * _HOURS
    by_segment: dict[int, list[int]] = defaultdict(lambda: [0] * _HOURS)
    ids: list[np.ndarray] = []
    segments: list[np.ndarray] = []
    stored: list[np.ndarray] = []
    counted: list[np.ndarray] = []  # for each page, the rows of ``counts`` of its members
    counts: list[np.ndarray] = []
    rows = 0
    for page in hour_count_pages(session, now, page_size=chunk_size):
        _add_hour_counts(community, by_segment, page.counts, page.segment_of)
        page_ids = np.asarray(page.member_ids, dtype=np.int32)
        ids.append(page_ids)
        segments.append(
            np.fromiter(
                (page.segment_of.get(m, 0) for m in page.member_ids), np.int32, len(page_ids)
            )
        )
        stored.append(
            np.fromiter(
                (-1 if (hour := page.best_hour[m]) is None else hour for m in page.member_ids),
                np.int16,
                len(page_ids),
            )
        )
        row_of = np.full(len(page_ids), -1, dtype=np.int32)
        if page.counts:
            positions = np.searchsorted(page_ids, np.fromiter(page.counts, np.int64))
            row_of[positions] = np.arange(rows, rows + len(page.counts))
            rows += len(page.counts)
            counts.append(np.asarray(list(page.counts.values()), dtype=np.int32))
        counted.append(row_of)
    if not ids:
        return BestHoursSummary(0, 0)
    priors = HourPriors.from_totals(community, by_segment)
    member_ids = np.concatenate(ids)
    best = _best_hours_of(
        priors,
        np.concatenate(segments),
        np.concatenate(counted),
        np.concatenate(counts) if counts else np.zeros((0, _HOURS), dtype=np.int32),
    )
    moved = np.flatnonzero(best != np.concatenate(stored))
    # Only the members whose best hour moved are written, and their ``updated_at`` is kept
    # (set to itself): a best hour is derived from activity, not an edit of the member's
    # record (which the incremental nightly looks for by ``updated_at``).
    table = table_of(Member)
    statement = (
        update(table)
        .where(table.c.id == bindparam("member"))
        .values(best_hour=bindparam("hour"), updated_at=table.c.updated_at)
    )
    for start in range(0, len(moved), chunk_size):
        batch = moved[start : start + chunk_size]
        session.execute(
            statement,
            [
                {"member": member, "hour": hour}
                for member, hour in zip(
                    member_ids[batch].tolist(), best[batch].tolist(), strict=True
                )
            ],
        )
    return BestHoursSummary(len(member_ids), rows)


def _best_hours_of(
    priors: HourPriors, segments: np.ndarray, rows: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Members' best hours, as ``best_hour_of(priors.profile(counts, segment))`` gives each.

    Args:
        priors: The priors.
        segments: Each member's segment (0: none).
        rows: Each member's row of ``counts`` (-1: no open or click).
        counts: Opens and clicks by hour, one row a member with any.

    Returns:
        Each member's best hour.
    """
    keys = [0, *priors.segments]
    shares = np.asarray([priors.community, *priors.segments.values()], dtype=np.float64)
    lookup = {key: index for index, key in enumerate(keys)}
    prior_of = np.fromiter((lookup.get(segment, 0) for segment in segments.tolist()), np.int64)
    # A prior's own best hour, for the members without events (their profile is the prior).
    best = np.asarray([best_hour_of(list(row)) for row in shares.tolist()], dtype=np.int64)[
        prior_of
    ]
    own = np.flatnonzero(rows >= 0)
    if len(own):
        mine = counts[rows[own]].astype(np.float64)
        # ``hour_profile`` term by term, in the same floating-point operations; ``argmax``
        # takes the first of equal shares, as ``best_hour_of`` the earliest hour.
        total = mine.sum(axis=1)
        profile = (mine + priors.strength * shares[prior_of[own]]) / (total + priors.strength)[
            :, None
        ]
        best[own] = profile.argmax(axis=1)
    return best


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
