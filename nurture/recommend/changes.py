"""The incremental nightly: which members changed since the last complete run.

A match run records, when it starts, a *watermark* of the database (``MatchRun.params
["watermark"]``): the largest activity event and answer ids, the wall-clock time, the run's time,
and the content library's state. Once the run's members are all matched, the nightly marks the
watermark complete (:func:`complete_watermark`). The next nightly then profiles and matches only
the members changed since the latest complete watermark (:func:`members_to_profile`,
:func:`members_to_match`): new activity or answers, an edited answer, a new segment, no profile
yet, a profile built with another feature layout, an edited member record, or a profile older
than the refresh age (time alone moves activity windows and lifecycle stages). Without a
complete watermark (a first run, a run that failed half-way) every member is redone; a changed
content library, embedding model or ranking parameters re-match everyone.

Changes that arrive while a nightly runs, between its member listing and the start of its match
run, are only caught by the refresh age: the nightly imports its files before it lists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import CompoundSelect, Select, func, select
from sqlalchemy.orm import Session

from nurture.profiling.profiles import every_profile_has_layout
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    ContentItem,
    MatchRun,
    Member,
    MemberProfile,
    Message,
    SegmentAssignment,
)

__all__ = [
    "Watermark",
    "complete_watermark",
    "last_watermark",
    "members_to_match",
    "members_to_profile",
    "take_watermark",
]


@dataclass(frozen=True)
class Watermark:
    """The state of the database a nightly started from.

    Attributes:
        activity_id: The largest activity event id (events are only ever added).
        answer_id: The largest answer id (new answers).
        wall: The wall-clock time it was taken (edited answers and members are newer).
        now: The run's time (segment assignments and profiles carry it).
        items: Content items in the library.
        items_at: The latest change to a content item (ISO), or ``""``.
        params: The match run's model and parameters.
        complete: Whether every member of the run was matched.
    """

    activity_id: int
    answer_id: int
    wall: dt.datetime
    now: dt.datetime
    items: int = 0
    items_at: str = ""
    params: Mapping[str, Any] | None = None
    complete: bool = False

    def to_json(self) -> dict[str, Any]:
        """The watermark as JSON-ready values."""
        values = asdict(self)
        values["wall"] = self.wall.isoformat()
        values["now"] = self.now.isoformat()
        values["params"] = dict(self.params or {})
        return values

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> Watermark:
        """A watermark stored by :meth:`to_json`."""
        return cls(
            activity_id=int(values["activity_id"]),
            answer_id=int(values["answer_id"]),
            wall=dt.datetime.fromisoformat(values["wall"]),
            now=dt.datetime.fromisoformat(values["now"]),
            items=int(values.get("items", 0)),
            items_at=str(values.get("items_at", "")),
            params=dict(values.get("params") or {}),
            complete=bool(values.get("complete", False)),
        )


def _library_state(session: Session) -> tuple[int, str]:
    count, latest = session.execute(
        select(func.count(ContentItem.id), func.max(ContentItem.updated_at))
    ).one()
    if isinstance(latest, str):  # SQLite may lose the column type on max()
        latest = dt.datetime.fromisoformat(latest)
    return int(count or 0), latest.isoformat() if latest is not None else ""


def take_watermark(
    session: Session, now: dt.datetime, wall: dt.datetime, params: Mapping[str, Any]
) -> Watermark:
    """The database's state now, for a match run with model and ``params``."""
    activity_id = session.scalar(select(func.max(ActivityEvent.id))) or 0
    answer_id = session.scalar(select(func.max(Answer.id))) or 0
    items, items_at = _library_state(session)
    return Watermark(
        activity_id=int(activity_id),
        answer_id=int(answer_id),
        wall=wall,
        now=now,
        items=items,
        items_at=items_at,
        params=dict(params),
    )


def last_watermark(session: Session) -> Watermark | None:
    """The watermark of the latest complete match run; None when there is none."""
    for params in session.scalars(select(MatchRun.params).order_by(MatchRun.id.desc()).limit(20)):
        stored = (params or {}).get("watermark")
        if stored and stored.get("complete"):
            return Watermark.from_json(stored)
    return None


def complete_watermark(session: Session) -> int | None:
    """Mark the latest match run's watermark complete (its members are all matched).

    Returns:
        The run's id; None when the latest run has no watermark.
    """
    run = session.scalars(select(MatchRun).order_by(MatchRun.id.desc()).limit(1)).first()
    if run is None or not (run.params or {}).get("watermark"):
        return None
    params = dict(run.params)
    params["watermark"] = {**params["watermark"], "complete": True}
    run.params = params
    session.flush()
    return run.id


def _ids(session: Session, query: Select[tuple[int]] | CompoundSelect[tuple[int]]) -> set[int]:
    return set(session.scalars(query))


def members_to_profile(
    session: Session,
    since: Watermark | None,
    now: dt.datetime,
    *,
    layout_hash: str | None = None,
    max_age: dt.timedelta | None = None,
) -> list[int]:
    """Ids of the members whose profile must be rebuilt, in id order.

    Every member when ``since`` is None; else those with activity or answers added since, an
    answer edited since (wall clock), no profile, a profile of another layout than
    ``layout_hash``, a profile computed more than ``max_age`` before ``now``, or their own
    record edited since (``updated_at``, wall clock: the nightly's best hours leave it alone).
    """
    if since is None:
        return list(session.scalars(select(Member.id).order_by(Member.id)))
    changed = _ids(
        session, select(ActivityEvent.member_id).where(ActivityEvent.id > since.activity_id)
    )
    # One condition per query, each answered by an index (an OR, or a join of every member
    # to their profile, would read every row: the profiles' vectors are most of their table).
    changed |= _ids(session, select(Answer.member_id).where(Answer.id > since.answer_id))
    changed |= _ids(session, select(Answer.member_id).where(Answer.answered_at > since.wall))
    changed |= _ids(session, select(Member.id).where(Member.updated_at > since.wall))
    changed |= _ids(session, select(Member.id).except_(select(MemberProfile.member_id)))
    if layout_hash is not None and not every_profile_has_layout(session, layout_hash):
        changed |= _ids(
            session,
            select(MemberProfile.member_id).where(MemberProfile.feature_names_hash != layout_hash),
        )
    if max_age is not None:
        changed |= _ids(
            session,
            select(MemberProfile.member_id).where(MemberProfile.computed_at < now - max_age),
        )
    return sorted(changed)


def members_to_match(
    session: Session,
    since: Watermark | None,
    now: dt.datetime,
    params: Mapping[str, Any],
    *,
    layout_hash: str | None = None,
    max_age: dt.timedelta | None = None,
) -> list[int]:
    """Ids of the members whose recommendations must be redone, in id order.

    Every member when ``since`` is None, or when the content library, the embedding model or
    the ranking parameters (``params``) differ from the watermark's; else the members to
    profile (:func:`members_to_profile`), those profiled since the watermark's run, those whose
    segment changed since, and those sent an email since (what was sent is not recommended).
    """
    if since is None or dict(since.params or {}) != dict(params):
        return list(session.scalars(select(Member.id).order_by(Member.id)))
    if _library_state(session) != (since.items, since.items_at):
        return list(session.scalars(select(Member.id).order_by(Member.id)))
    changed = set(members_to_profile(session, since, now, layout_hash=layout_hash, max_age=max_age))
    changed |= _ids(
        session, select(MemberProfile.member_id).where(MemberProfile.computed_at > since.now)
    )
    changed |= _ids(
        session,
        select(SegmentAssignment.member_id).where(SegmentAssignment.updated_at > since.now),
    )
    changed |= _ids(session, select(Message.member_id).where(Message.sent_at >= since.now))
    return sorted(changed)
