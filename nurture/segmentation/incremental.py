"""Segment the members changed since the last clustering, without fitting again.

When few profiles changed since the latest clustering run (a share of at most ``max_share``),
that run is recent (``max_age``) and every profile has its feature layout, the incremental
nightly places only the changed members (profiled since, or not placed by the run) at the
nearest of the run's active segments, in the run's own scaled space (stored with it as
``params["scaling"]``). The run's memberships of those members are replaced, the segments'
sizes updated, the effective segment of the changed members and of those whose move is
pending brought up to date (moves still wait ``move_after``; every other member's already
follows the run), and the rule segments evaluated again for the members whose data or
activity windows changed (``evaluate_rule_segments(only_changed=True)``). Otherwise the
caller clusters everyone (:func:`~nurture.segmentation.segments.segment_members`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Select, delete, func, insert, or_, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.profiling.profiles import every_profile_has_layout
from nurture.segmentation.assignments import update_cluster_assignments
from nurture.segmentation.rules import SegmentRule, evaluate_rule_segments
from nurture.segmentation.segments import SegmentationSummary
from nurture.storage import integer_rows
from nurture.storage.models import (
    AssignmentState,
    MemberProfile,
    Segment,
    SegmentAssignment,
    SegmentationRun,
    SegmentKind,
    SegmentMembership,
)

__all__ = ["assign_changed_members"]

_CHUNK = 5000


def _latest_cluster_run(session: Session) -> SegmentationRun | None:
    runs = session.scalars(select(SegmentationRun).order_by(SegmentationRun.id.desc()).limit(20))
    for run in runs:
        if (run.params or {}).get("scaling"):
            return run
    return None


def _cluster_rows(run_id: int) -> Select[tuple[int]]:
    """The member ids of the run's cluster memberships (a member may repeat)."""
    return (
        select(SegmentMembership.member_id)
        .join(Segment, Segment.id == SegmentMembership.segment_id)
        .where(SegmentMembership.run_id == run_id, Segment.kind == SegmentKind.CLUSTER)
    )


def _placements(run_id: int, member_ids: Sequence[int] | None = None) -> Select[tuple[int, int]]:
    """Each profiled member's placement by the run: ``(member id, segment id)`` of their last row.

    A member's last cluster membership of the run (the largest row id) is where the run put
    them; members without a profile are left out. Only ``member_ids`` when given.
    """
    last = (
        select(func.max(SegmentMembership.id))
        .join(Segment, Segment.id == SegmentMembership.segment_id)
        .where(SegmentMembership.run_id == run_id, Segment.kind == SegmentKind.CLUSTER)
        .group_by(SegmentMembership.member_id)
    )
    query = select(SegmentMembership.member_id, SegmentMembership.segment_id)
    if member_ids is not None:
        last = last.where(SegmentMembership.member_id.in_(member_ids))
        query = query.where(SegmentMembership.member_id.in_(member_ids))
    return query.where(
        SegmentMembership.id.in_(last),
        SegmentMembership.member_id.in_(select(MemberProfile.member_id)),
    )


def _last_rows(session: Session, run_id: int) -> np.ndarray:
    """Each member's last cluster membership of the run: ``(member id, segment id)`` rows.

    The placement :func:`_placements` finds in SQL, for every member (profile or not), found
    here from all the run's cluster rows read once: grouping them in the database costs
    more than reading them.

    Returns:
        An ``(n, 2)`` array, by member id.
    """
    rows = integer_rows(
        session,
        select(SegmentMembership.member_id, SegmentMembership.id, SegmentMembership.segment_id)
        .join(Segment, Segment.id == SegmentMembership.segment_id)
        .where(SegmentMembership.run_id == run_id, Segment.kind == SegmentKind.CLUSTER),
        3,
    )
    if not len(rows):
        return np.zeros((0, 2), dtype=np.int64)
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]  # by member, then row id
    last = np.append(rows[1:, 0] != rows[:-1, 0], True)
    return rows[last][:, [0, 2]]


def _unsettled_members(
    session: Session, run_id: int, segment_ids: Sequence[int], profiled: np.ndarray
) -> set[int]:
    """Members whose effective cluster segment may not follow their unchanged placement.

    Those waiting to move (a pending assignment: time may settle it), those with an assignment
    to a segment other than the run's active ones, and those the run placed (profiled:
    ``profiled``, sorted) without an effective assignment. Every other unchanged member's
    effective segment is already the one the run placed them in (an earlier update left it
    so), and stays. The database finds them: nobody else's rows are read.
    """
    clusters = (
        select(SegmentAssignment.member_id)
        .join(Segment, Segment.id == SegmentAssignment.segment_id)
        .where(Segment.kind == SegmentKind.CLUSTER)
    )
    unsettled = set(
        session.scalars(
            clusters.where(
                or_(
                    SegmentAssignment.state == AssignmentState.PENDING,
                    SegmentAssignment.segment_id.not_in(list(segment_ids)),
                )
            )
        )
    )
    # The members the run placed: any cluster row of theirs will do (EXCEPT keeps each once),
    # without finding the last of each member's rows as the placement itself needs; the few
    # without an effective assignment are then kept if profiled (``profiled`` is already read:
    # a test against the profiles in SQL would read that wide table again).
    effective = clusters.where(SegmentAssignment.state == AssignmentState.EFFECTIVE)
    lacking = integer_rows(session, _cluster_rows(run_id).except_(effective), 1)[:, 0]
    unsettled.update(lacking[np.isin(lacking, profiled, assume_unique=True)].tolist())
    return unsettled


def assign_changed_members(
    session: Session,
    now: dt.datetime,
    *,
    max_share: float,
    max_age: dt.timedelta,
    move_after: dt.timedelta,
    rules: Sequence[SegmentRule] | None = None,
) -> SegmentationSummary | None:
    """Place the members changed since the last clustering among its segments.

    Args:
        session: Database session (the caller commits).
        now: Time of the run (timezone-aware).
        max_share: Largest share of the profiled members that may have changed.
        max_age: Oldest the last clustering run may be.
        move_after: How long a member's move to another segment must hold before it counts.
        rules: The workspace's rule segments, evaluated again; ``None`` leaves them alone.

    Returns:
        The summary (``algorithm`` is ``"assigned"``), or None when everyone must be clustered
        again: no clustering run to extend, one too old, another feature layout, too many
        changes.
    """
    run = _latest_cluster_run(session)
    if run is None or run.created_at < now - max_age:
        return None
    params = run.params
    layout_hash = params.get("feature_names_hash")
    if layout_hash is None:  # no profile can have its layout
        return None
    # The profiles' table is wide (their vectors): its member ids are read once, and every
    # question about who is profiled answered from them.
    profiled = integer_rows(
        session, select(MemberProfile.member_id).order_by(MemberProfile.member_id), 1
    )[:, 0]
    total = len(profiled)
    if total < 2 or not every_profile_has_layout(session, layout_hash):
        return None
    segments = list(
        session.scalars(
            select(Segment)
            .where(
                Segment.kind == SegmentKind.CLUSTER,
                Segment.active.is_(True),
                Segment.last_run_id == run.id,
            )
            .order_by(Segment.id)
        )
    )
    if not segments or any(segment.centroid is None for segment in segments):
        return None
    changed = set(
        session.scalars(
            select(MemberProfile.member_id).where(MemberProfile.computed_at > run.created_at)
        )
    )
    # Each member's placement by the run before this update (profile or not), which also says
    # whom the run placed at all: the profiled members it never placed (a profile built
    # since, or before a move) changed.
    before = _last_rows(session, run.id)
    changed.update(np.setdiff1d(profiled, before[:, 0], assume_unique=True).tolist())
    if len(changed) > max_share * total:
        return None
    offset = np.asarray(params["scaling"]["offset"], dtype=np.float32)
    factor = np.asarray(params["scaling"]["factor"], dtype=np.float32)
    centroids = [np.asarray(segment.centroid, dtype=np.float32) for segment in segments]
    centers = (np.stack(centroids) - offset) * factor
    segment_ids = [segment.id for segment in segments]
    rows = []
    moved_to: dict[int, int] = {}
    for chunk in chunked(sorted(changed), _CHUNK):
        found = session.execute(
            select(MemberProfile.member_id, MemberProfile.features).where(
                MemberProfile.member_id.in_(chunk)
            )
        ).all()
        if not found:
            continue
        scaled = (np.stack([features for _, features in found]) - offset) * factor
        distances = np.sqrt(
            np.maximum(
                (scaled**2).sum(axis=1)[:, None]
                - 2.0 * scaled @ centers.T
                + (centers**2).sum(axis=1)[None, :],
                0.0,
            )
        )
        nearest = distances.argmin(axis=1)
        for row, (member_id, _) in enumerate(found):
            segment_id = segment_ids[int(nearest[row])]
            moved_to[member_id] = segment_id
            rows.append(
                {
                    "run_id": run.id,
                    "member_id": member_id,
                    "segment_id": segment_id,
                    "distance": float(distances[row, nearest[row]]),
                    "created_at": now,
                }
            )
    for chunk in chunked(sorted(changed), _CHUNK):
        session.execute(
            delete(SegmentMembership).where(
                SegmentMembership.run_id == run.id,
                SegmentMembership.member_id.in_(chunk),
                SegmentMembership.segment_id.in_(segment_ids),
            )
        )
    for batch in chunked(rows, _CHUNK):
        session.execute(insert(SegmentMembership), batch)
    session.flush()
    # Everyone's placement now (profiled only): the unchanged members' rows were left alone,
    # so their last row is the one read before; the changed members' is their new row, or,
    # for one not placed again, whatever row of theirs is left (read again).
    changed_ids = np.asarray(sorted(changed), dtype=np.int64)
    kept = np.isin(before[:, 0], profiled, assume_unique=True) & ~np.isin(
        before[:, 0], changed_ids, assume_unique=True
    )
    unchanged = dict(zip(before[kept, 0].tolist(), before[kept, 1].tolist(), strict=True))
    placed_now = dict(moved_to)
    for chunk in chunked(sorted(changed - moved_to.keys()), _CHUNK):
        placed_now.update(session.execute(_placements(run.id, chunk)).tuples().all())
    counts = Counter(unchanged.values()) + Counter(placed_now.values())
    for segment in segments:
        segment.size = counts.get(segment.id, 0)
    concerned = sorted(changed | _unsettled_members(session, run.id, segment_ids, profiled))
    segment_of = {
        member_id: placed
        for member_id in concerned
        if (placed := placed_now.get(member_id, unchanged.get(member_id))) is not None
    }
    changes = update_cluster_assignments(
        session,
        dict(sorted(segment_of.items())),
        now,
        move_after=move_after,
        active_segments=set(segment_ids),
        member_ids=concerned,
    )
    session.flush()
    summary = SegmentationSummary(
        run_id=run.id,
        n_segments=len(segments),
        quality=run.quality,
        sizes={segment.key: segment.size for segment in segments},
        labels={segment.key: segment.label for segment in segments},
        n_members=sum(counts.values()),
        algorithm="assigned",
        moved=changes.moved,
        pending=changes.pending,
    )
    if rules is None:
        return summary
    ruled = evaluate_rule_segments(session, rules, now, run_id=run.id, only_changed=True)
    return dataclasses.replace(
        summary, rule_sizes=ruled.sizes, rule_labels=ruled.labels, rule_errors=ruled.errors
    )
