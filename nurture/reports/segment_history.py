"""Segment sizes over time: each segment's members in each of the latest segmentation runs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from nurture.operations.shares import share_of
from nurture.storage.models import Segment, SegmentationRun, SegmentKind, SegmentMembership

__all__ = ["DEFAULT_HISTORY_RUNS", "SegmentSize", "segment_size_history"]

DEFAULT_HISTORY_RUNS = 30
"""Segmentation runs the history covers, the latest ones."""


@dataclass(frozen=True)
class SegmentSize:
    """One segment's size in one segmentation run.

    Attributes:
        run_id: The run.
        run_at: When it ran.
        key: The segment's key.
        label: Its label (today's: a label edited since is shown for old runs too).
        kind: ``cluster``, ``rule``...
        size: Its members in that run.
        share: ``size`` over the members the run clustered (None when it clustered nobody).
    """

    run_id: int
    run_at: dt.datetime
    key: str
    label: str
    kind: str
    size: int
    share: float | None


def segment_size_history(
    session: Session, *, runs: int = DEFAULT_HISTORY_RUNS
) -> list[SegmentSize]:
    """Count each segment's members in each of the latest segmentation runs.

    Args:
        session: Database session (only read).
        runs: How many runs, the latest ones.

    Returns:
        One entry per run and segment with members in it: by run (oldest first), then key.
    """
    run_times = dict(
        session.execute(
            select(SegmentationRun.id, SegmentationRun.created_at)
            .order_by(SegmentationRun.id.desc())
            .limit(runs)
        )
        .tuples()
        .all()
    )
    if not run_times:
        return []
    in_runs = SegmentMembership.run_id.in_(sorted(run_times))
    sizes = session.execute(
        select(SegmentMembership.run_id, SegmentMembership.segment_id, func.count())
        .where(in_runs)
        .group_by(SegmentMembership.run_id, SegmentMembership.segment_id)
    ).tuples()
    clustered = dict(
        session.execute(
            select(SegmentMembership.run_id, func.count(distinct(SegmentMembership.member_id)))
            .join(Segment, Segment.id == SegmentMembership.segment_id)
            .where(in_runs, Segment.kind == SegmentKind.CLUSTER)
            .group_by(SegmentMembership.run_id)
        )
        .tuples()
        .all()
    )
    segments = {
        segment_id: (key, label, kind)
        for segment_id, key, label, kind in session.execute(
            select(Segment.id, Segment.key, Segment.label, Segment.kind)
        ).tuples()
    }
    history = [
        SegmentSize(
            run_id=run_id,
            run_at=run_times[run_id],
            key=segments[segment_id][0],
            label=segments[segment_id][1],
            kind=segments[segment_id][2],
            size=size,
            share=share_of(size, clustered.get(run_id, 0)),
        )
        for run_id, segment_id, size in sizes
    ]
    return sorted(history, key=lambda entry: (entry.run_id, entry.key))
