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
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.segmentation.assignments import update_cluster_assignments
from nurture.segmentation.rules import SegmentRule, evaluate_rule_segments
from nurture.segmentation.segments import SegmentationSummary
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


def _unsettled_members(
    session: Session, segment_ids: Sequence[int], placed: np.ndarray
) -> set[int]:
    """Members whose effective cluster segment may not follow their unchanged placement.

    Those waiting to move (a pending assignment: time may settle it), those with an assignment
    to a segment other than the run's active ones, and those placed (``placed``: sorted ids)
    without an effective assignment. Every other unchanged member's effective segment is
    already the one the run placed them in (an earlier update left it so), and stays.
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
    effective = _ids(
        session.scalars(clusters.where(SegmentAssignment.state == AssignmentState.EFFECTIVE))
    )
    unsettled.update(placed[~np.isin(placed, effective)].tolist())
    return unsettled


def _ids(values: Iterable[int]) -> np.ndarray:
    """Member ids as a sorted array of distinct int64 (a few bytes each, not a Python set)."""
    return np.unique(np.fromiter(values, dtype=np.int64))


def _last_of_each(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each member once, with its last row's segment, of rows sorted by member.

    Args:
        pairs: ``(n, 2)`` rows of ``(member id, segment id)``, sorted by member id.

    Returns:
        ``(member ids, segment ids)``.
    """
    if not len(pairs):
        return pairs[:, 0], pairs[:, 1]
    last = np.append(pairs[1:, 0] != pairs[:-1, 0], True)
    return pairs[last, 0], pairs[last, 1]


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
    total = session.scalar(select(func.count()).select_from(MemberProfile)) or 0
    other_layout = session.scalar(
        select(func.count())
        .select_from(MemberProfile)
        .where(MemberProfile.feature_names_hash != layout_hash)
    )
    if total < 2 or other_layout:
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
    pairs = session.execute(
        select(SegmentMembership.member_id, SegmentMembership.segment_id)
        .join(Segment, Segment.id == SegmentMembership.segment_id)
        .where(SegmentMembership.run_id == run.id, Segment.kind == SegmentKind.CLUSTER)
        .order_by(SegmentMembership.member_id, SegmentMembership.id)
        .execution_options(yield_per=_CHUNK)
    ).tuples()
    placed = np.fromiter((value for pair in pairs for value in pair), dtype=np.int64)
    placed_ids, placed_segments = _last_of_each(placed.reshape(-1, 2))
    profiled = _ids(session.scalars(select(MemberProfile.member_id)))
    changed = set(
        session.scalars(
            select(MemberProfile.member_id).where(MemberProfile.computed_at > run.created_at)
        )
    )
    changed.update(profiled[~np.isin(profiled, placed_ids)].tolist())
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
    # Everyone's placement now: the run's, but the changed members' new one; profiled only.
    kept = np.isin(placed_ids, profiled) & ~np.isin(placed_ids, list(moved_to))
    placed_ids = np.concatenate([placed_ids[kept], np.fromiter(moved_to, dtype=np.int64)])
    placed_segments = np.concatenate(
        [placed_segments[kept], np.fromiter(moved_to.values(), dtype=np.int64)]
    )
    order = np.argsort(placed_ids, kind="stable")
    placed_ids, placed_segments = placed_ids[order], placed_segments[order]
    segment_of, counts = np.unique(placed_segments, return_counts=True)
    sizes = dict(zip(segment_of.tolist(), counts.tolist(), strict=True))
    for segment in segments:
        segment.size = sizes.get(segment.id, 0)
    concerned = np.array(
        sorted(changed | _unsettled_members(session, segment_ids, placed_ids)), dtype=np.int64
    )
    rows_of = np.searchsorted(placed_ids, concerned)
    inside = rows_of < len(placed_ids)
    inside[inside] = placed_ids[rows_of[inside]] == concerned[inside]
    changes = update_cluster_assignments(
        session,
        dict(
            zip(
                concerned[inside].tolist(),
                placed_segments[rows_of[inside]].tolist(),
                strict=True,
            )
        ),
        now,
        move_after=move_after,
        active_segments=set(segment_ids),
        member_ids=concerned.tolist(),
    )
    session.flush()
    summary = SegmentationSummary(
        run_id=run.id,
        n_segments=len(segments),
        quality=run.quality,
        sizes={segment.key: segment.size for segment in segments},
        labels={segment.key: segment.label for segment in segments},
        n_members=len(placed_ids),
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
