"""Effective segment membership: the segments journeys see, and since when.

A clustering run says where each member belongs today; a member near the border of two
segments could flip between them from one night to the next. So a move to another cluster
segment only counts once it has held for ``move_after`` (``NURTURE_SEGMENT_MOVE_AFTER_DAYS``):
until then the member stays in their segment (``effective``) and the new one is ``pending``. A
first segment, or a move out of a segment that no longer exists, counts at once. Rule segments
are statements marketers wrote: a member enters or leaves one as soon as the rule says so.

Journeys triggered by entering a segment read :func:`segment_entries` (or
:func:`effective_segments`), never a single run's ``SegmentMembership`` rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.storage import among
from nurture.storage.models import (
    AssignmentState,
    Segment,
    SegmentAssignment,
    SegmentDeparture,
    SegmentKind,
)

__all__ = [
    "AssignmentChanges",
    "AssignmentPlan",
    "SegmentEntry",
    "StoredAssignment",
    "effective_memberships",
    "effective_segment_keys",
    "effective_segments",
    "plan_cluster_assignments",
    "segment_entries",
    "update_cluster_assignments",
    "update_cluster_assignments_in_chunks",
    "update_rule_assignments",
]

_BATCH = 1000
_CHUNK = 20_000


@dataclass(frozen=True)
class AssignmentChanges:
    """What an update of the effective memberships did.

    Attributes:
        entered: Members who entered a segment (first segment, move that took effect, rule that
            now holds).
        moved: Of those, members who moved from another cluster segment.
        pending: Members whose move to another cluster segment waits to hold long enough.
        left: Members who left a rule segment.
    """

    entered: int = 0
    moved: int = 0
    pending: int = 0
    left: int = 0


@dataclass(frozen=True)
class SegmentEntry:
    """A member's entry into a segment, as journeys see it."""

    member_id: int
    segment_id: int
    segment_key: str
    kind: str
    entered_at: dt.datetime


def _apply(
    session: Session,
    deletes: Sequence[int],
    updates: Sequence[dict[str, Any]],
    inserts: Sequence[dict[str, Any]],
    departures: Sequence[dict[str, Any]] = (),
) -> None:
    """Deletes, then updates, then inserts: a member's rows never collide on the way.

    ``departures`` (``member_id``, ``segment_id``, ``left_at``) record members leaving a
    segment they were effectively in, for journeys triggered by leaving a segment.
    """
    for batch in chunked(departures, _BATCH):
        session.execute(insert(SegmentDeparture), list(batch))
    for ids in chunked(deletes, _BATCH):
        session.execute(delete(SegmentAssignment).where(SegmentAssignment.id.in_(ids)))
    for batch in chunked(updates, _BATCH):
        session.execute(update(SegmentAssignment), list(batch))
    for batch in chunked(inserts, _BATCH):
        session.execute(insert(SegmentAssignment), list(batch))


@dataclass(frozen=True)
class StoredAssignment:
    """A member's stored place in a cluster segment, as plain data."""

    id: int
    member_id: int
    segment_id: int
    state: AssignmentState
    since: dt.datetime


@dataclass(frozen=True)
class AssignmentPlan:
    """The rows an update of the effective memberships deletes, updates, inserts and records.

    Attributes:
        deletes: Ids of ``SegmentAssignment`` rows to delete.
        updates: ``SegmentAssignment`` rows to update (``id`` and the new values).
        inserts: ``SegmentAssignment`` rows to insert.
        departures: ``SegmentDeparture`` rows to insert.
        changes: What it amounts to.
    """

    deletes: list[int] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    departures: list[dict[str, Any]] = field(default_factory=list)
    changes: AssignmentChanges = AssignmentChanges()


def _load_cluster_assignments(
    session: Session,
    member_ids: Collection[int] | None = None,
    between: tuple[int | None, int | None] = (None, None),
) -> list[StoredAssignment]:
    """The stored cluster assignments of ``member_ids`` (everyone's when None).

    Only those whose member id lies in ``between`` (``[low, high)``, open where None).
    """
    session.flush()
    query = (
        select(
            SegmentAssignment.id,
            SegmentAssignment.member_id,
            SegmentAssignment.segment_id,
            SegmentAssignment.state,
            SegmentAssignment.since,
        )
        .join(Segment, Segment.id == SegmentAssignment.segment_id)
        .where(Segment.kind == SegmentKind.CLUSTER)
    )
    low, high = between
    if low is not None:
        query = query.where(SegmentAssignment.member_id >= low)
    if high is not None:
        query = query.where(SegmentAssignment.member_id < high)
    if member_ids is None:
        return [StoredAssignment(*row) for row in session.execute(query)]
    found: list[StoredAssignment] = []
    for batch in chunked(sorted(set(member_ids)), _BATCH):
        rows = session.execute(query.where(SegmentAssignment.member_id.in_(batch)))
        found.extend(StoredAssignment(*row) for row in rows)
    return found


def _row(
    member_id: int, segment_id: int, state: AssignmentState, now: dt.datetime
) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "segment_id": segment_id,
        "state": state,
        "since": now,
        "updated_at": now,
    }


def plan_cluster_assignments(
    stored: Sequence[StoredAssignment],
    segment_of: Mapping[int, int],
    now: dt.datetime,
    *,
    move_after: dt.timedelta,
    active_segments: Collection[int],
) -> AssignmentPlan:
    """Decide, on plain data, how each member's effective cluster segment follows this run.

    Args:
        stored: The stored cluster assignments.
        segment_of: ``{member id: cluster segment id}`` of this run.
        now: Time of the run.
        move_after: How long a move must hold before it counts; zero counts it at once.
        active_segments: Ids of the cluster segments still active after this run.

    Returns:
        The rows to change and the counts.
    """
    active = set(active_segments)
    effective: dict[int, StoredAssignment] = {}
    pending: dict[int, StoredAssignment] = {}
    plan = AssignmentPlan()
    for row in stored:
        target = effective if row.state == AssignmentState.EFFECTIVE else pending
        if row.member_id in target:  # a duplicate left by an older version: keep one
            plan.deletes.append(row.id)
            continue
        target[row.member_id] = row
    entered = moved = waiting = 0
    for member_id, segment_id in segment_of.items():
        current = effective.get(member_id)
        waiting_for = pending.get(member_id)
        stays_pending = waiting_for is not None and waiting_for.segment_id == segment_id
        if current is None or current.segment_id == segment_id:
            if waiting_for is not None:
                plan.deletes.append(waiting_for.id)
            if current is None:
                plan.inserts.append(_row(member_id, segment_id, AssignmentState.EFFECTIVE, now))
                entered += 1
            continue
        held = stays_pending and waiting_for is not None and now - waiting_for.since >= move_after
        if current.segment_id not in active or move_after <= dt.timedelta(0) or held:
            if waiting_for is not None:
                plan.deletes.append(waiting_for.id)
            plan.departures.append(
                {"member_id": member_id, "segment_id": current.segment_id, "left_at": now}
            )
            plan.updates.append(
                {"id": current.id, "segment_id": segment_id, "since": now, "updated_at": now}
            )
            entered += 1
            moved += 1
            continue
        waiting += 1
        if waiting_for is None:
            plan.inserts.append(_row(member_id, segment_id, AssignmentState.PENDING, now))
        elif not stays_pending:
            plan.updates.append(
                {"id": waiting_for.id, "segment_id": segment_id, "since": now, "updated_at": now}
            )
    # Members this run did not place: drop their rows of segments that no longer exist.
    for member_id, row in [*effective.items(), *pending.items()]:
        if member_id not in segment_of and row.segment_id not in active:
            plan.deletes.append(row.id)
            if effective.get(member_id) is row:
                plan.departures.append(
                    {"member_id": member_id, "segment_id": row.segment_id, "left_at": now}
                )
    return dataclasses.replace(
        plan, changes=AssignmentChanges(entered=entered, moved=moved, pending=waiting)
    )


def update_cluster_assignments(
    session: Session,
    segment_of: Mapping[int, int],
    now: dt.datetime,
    *,
    move_after: dt.timedelta,
    active_segments: Collection[int],
    member_ids: Collection[int] | None = None,
) -> AssignmentChanges:
    """Bring each member's effective cluster segment up to date with this run's clusters.

    Reads the stored assignments, decides (:func:`plan_cluster_assignments`), then writes.

    Args:
        session: Database session (the caller commits).
        segment_of: ``{member id: cluster segment id}`` of this run.
        now: Time of the run.
        move_after: How long a move must hold before it counts; zero counts it at once.
        active_segments: Ids of the cluster segments still active after this run; members
            whose effective segment is not among them move at once, and the rows of members
            this run did not place in such segments are dropped.
        member_ids: Only these members' assignments are read and brought up to date (the
            others are known to follow the run already); everyone's when none.

    Returns:
        Counts of what changed.
    """
    plan = plan_cluster_assignments(
        _load_cluster_assignments(session, member_ids),
        segment_of,
        now,
        move_after=move_after,
        active_segments=active_segments,
    )
    _apply(session, plan.deletes, plan.updates, plan.inserts, plan.departures)
    return plan.changes


def update_cluster_assignments_in_chunks(
    session: Session,
    member_ids: np.ndarray,
    segment_ids: np.ndarray,
    now: dt.datetime,
    *,
    move_after: dt.timedelta,
    active_segments: Collection[int],
    chunk_size: int = _CHUNK,
) -> AssignmentChanges:
    """:func:`update_cluster_assignments` for a whole run, one range of member ids at a time.

    Each member's rows are read, decided and written with their range only, so memory follows
    the chunk, not the community; the result is the same as one update of everyone.

    Args:
        session: Database session (the caller commits).
        member_ids: Every member the run placed, in increasing order.
        segment_ids: The cluster segment of each (same order).
        now: Time of the run.
        move_after: How long a move must hold before it counts; zero counts it at once.
        active_segments: Ids of the cluster segments still active after this run.
        chunk_size: Members of the run per range.

    Returns:
        Counts of what changed.
    """
    if np.any(np.diff(member_ids) <= 0):
        raise ValueError("member_ids must be distinct and in increasing order")
    entered = moved = pending = 0
    for start in range(0, max(len(member_ids), 1), chunk_size):
        stop = start + chunk_size
        low = int(member_ids[start]) if start else None
        high = int(member_ids[stop]) if stop < len(member_ids) else None
        plan = plan_cluster_assignments(
            _load_cluster_assignments(session, between=(low, high)),
            dict(
                zip(member_ids[start:stop].tolist(), segment_ids[start:stop].tolist(), strict=True)
            ),
            now,
            move_after=move_after,
            active_segments=active_segments,
        )
        _apply(session, plan.deletes, plan.updates, plan.inserts, plan.departures)
        entered += plan.changes.entered
        moved += plan.changes.moved
        pending += plan.changes.pending
    return AssignmentChanges(entered=entered, moved=moved, pending=pending)


def update_rule_assignments(
    session: Session, segment_id: int, member_ids: Collection[int], now: dt.datetime
) -> AssignmentChanges:
    """Make ``member_ids`` the effective members of a rule segment, entering and leaving at once.

    Args:
        session: Database session (the caller commits).
        segment_id: The rule segment.
        member_ids: The members the rule holds for now.
        now: Time of the evaluation: when new members enter.

    Returns:
        Counts of members who entered and left.
    """
    session.flush()
    rows = session.execute(
        select(SegmentAssignment.member_id, SegmentAssignment.id)
        .where(SegmentAssignment.segment_id == segment_id)
        .execution_options(yield_per=_CHUNK)
    ).tuples()
    existing = np.fromiter((value for row in rows for value in row), dtype=np.int64).reshape(-1, 2)
    wanted = np.unique(np.fromiter(member_ids, dtype=np.int64, count=len(member_ids)))
    leaving = ~np.isin(existing[:, 0], wanted)
    entering = wanted[~np.isin(wanted, existing[:, 0])]
    for start in range(0, max(len(existing), len(entering)), _CHUNK):
        gone = existing[start : start + _CHUNK][leaving[start : start + _CHUNK]]
        _apply(
            session,
            gone[:, 1].tolist(),
            [],
            [
                {
                    "member_id": member_id,
                    "segment_id": segment_id,
                    "state": AssignmentState.EFFECTIVE,
                    "since": now,
                    "updated_at": now,
                }
                for member_id in entering[start : start + _CHUNK].tolist()
            ],
            [
                {"member_id": member_id, "segment_id": segment_id, "left_at": now}
                for member_id in gone[:, 0].tolist()
            ],
        )
    return AssignmentChanges(entered=len(entering), left=int(leaving.sum()))


def effective_segments(
    session: Session,
    member_ids: Collection[int] | None = None,
    *,
    between: tuple[int, int] | None = None,
) -> dict[int, int]:
    """Each member's effective cluster segment: the one journeys see.

    Args:
        session: Database session.
        member_ids: Members wanted; everyone when ``None``.
        between: Instead, the members with ids from the first to the last (a page of them
            all: one range of the index, not a list of ids).

    Returns:
        ``{member id: segment id}``; members never segmented are left out.
    """
    query = (
        select(SegmentAssignment.member_id, SegmentAssignment.segment_id)
        .join(Segment, Segment.id == SegmentAssignment.segment_id)
        .where(
            Segment.kind == SegmentKind.CLUSTER,
            SegmentAssignment.state == AssignmentState.EFFECTIVE,
        )
    )
    if between is not None:
        query = query.where(SegmentAssignment.member_id.between(*between))
        return dict(session.execute(query).tuples().all())
    if member_ids is None:
        return dict(session.execute(query).tuples().all())
    found: dict[int, int] = {}
    for batch in chunked(sorted(set(member_ids)), _BATCH):
        found.update(
            session.execute(query.where(among(session, SegmentAssignment.member_id, batch)))
            .tuples()
            .all()
        )
    return found


def effective_memberships(
    session: Session, member_ids: Collection[int] | None = None
) -> dict[int, set[int]]:
    """Every effective segment of each member: their cluster segment and their rule segments.

    Args:
        session: Database session.
        member_ids: Members wanted; everyone when ``None``.

    Returns:
        ``{member id: {segment id}}``.
    """
    query = select(SegmentAssignment.member_id, SegmentAssignment.segment_id).where(
        SegmentAssignment.state == AssignmentState.EFFECTIVE
    )
    batches: Iterable[Sequence[int] | None] = (
        [None] if member_ids is None else chunked(sorted(set(member_ids)), _BATCH)
    )
    found: dict[int, set[int]] = {}
    for batch in batches:
        statement = query if batch is None else query.where(SegmentAssignment.member_id.in_(batch))
        for member_id, segment_id in session.execute(statement).tuples():
            found.setdefault(member_id, set()).add(segment_id)
    return found


def effective_segment_keys(session: Session, member_ids: Collection[int]) -> dict[int, list[str]]:
    """The keys of each member's effective segments, sorted (``{member id: [seg-3, ...]}``).

    Args:
        session: Database session.
        member_ids: The members; one without a segment is absent.

    Returns:
        ``{member id: segment keys}``.
    """
    memberships = effective_memberships(session, member_ids)
    segment_ids = sorted({sid for ids in memberships.values() for sid in ids})
    keys: dict[int, str] = {}
    for batch in chunked(segment_ids, _BATCH):
        keys.update(
            session.execute(select(Segment.id, Segment.key).where(Segment.id.in_(batch)))
            .tuples()
            .all()
        )
    return {
        member_id: sorted(keys[sid] for sid in ids if sid in keys)
        for member_id, ids in memberships.items()
    }


def segment_entries(
    session: Session,
    *,
    since: dt.datetime,
    until: dt.datetime | None = None,
    segment_keys: Collection[str] | None = None,
) -> list[SegmentEntry]:
    """Members who entered a segment (effectively) in ``[since, until)``: journey triggers.

    Args:
        session: Database session.
        since: Start of the window (inclusive).
        until: End of the window (exclusive); open when ``None``.
        segment_keys: Only these segments; all when ``None``.

    Returns:
        The entries, by time, then member, then segment key.
    """
    query = (
        select(
            SegmentAssignment.member_id,
            SegmentAssignment.segment_id,
            Segment.key,
            Segment.kind,
            SegmentAssignment.since,
        )
        .join(Segment, Segment.id == SegmentAssignment.segment_id)
        .where(
            SegmentAssignment.state == AssignmentState.EFFECTIVE,
            SegmentAssignment.since >= since,
        )
    )
    if until is not None:
        query = query.where(SegmentAssignment.since < until)
    if segment_keys is not None:
        query = query.where(Segment.key.in_(sorted(segment_keys)))
    entries = [
        SegmentEntry(member_id, segment_id, key, kind, entered_at)
        for member_id, segment_id, key, kind, entered_at in session.execute(query).tuples()
    ]
    entries.sort(key=lambda entry: (entry.entered_at, entry.member_id, entry.segment_key))
    return entries
