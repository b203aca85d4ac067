"""plan_cluster_assignments on plain data: who enters, who waits, who moves, without a database."""

from __future__ import annotations

import datetime as dt

from nurture.segmentation.assignments import (
    AssignmentChanges,
    StoredAssignment,
    plan_cluster_assignments,
)
from nurture.storage.models import AssignmentState

NOW = dt.datetime(2025, 6, 10, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
EFFECTIVE, PENDING = AssignmentState.EFFECTIVE, AssignmentState.PENDING


def _plan(stored, segment_of, *, move_after=3 * DAY, active=(1, 2, 3)):
    return plan_cluster_assignments(
        stored, segment_of, NOW, move_after=move_after, active_segments=active
    )


def _row(member_id: int, segment_id: int, state: AssignmentState) -> dict[str, object]:
    return {
        "member_id": member_id,
        "segment_id": segment_id,
        "state": state,
        "since": NOW,
        "updated_at": NOW,
    }


def test_a_first_segment_counts_at_once_and_staying_clears_a_pending_move() -> None:
    stored = [
        StoredAssignment(10, member_id=2, segment_id=1, state=EFFECTIVE, since=NOW - 9 * DAY),
        StoredAssignment(11, member_id=2, segment_id=3, state=PENDING, since=NOW - DAY),
    ]
    plan = _plan(stored, {1: 2, 2: 1})
    assert plan.inserts == [_row(1, 2, EFFECTIVE)]
    assert plan.deletes == [11]
    assert (plan.updates, plan.departures) == ([], [])
    assert plan.changes == AssignmentChanges(entered=1)


def test_a_move_waits_then_counts_once_it_held() -> None:
    effective = StoredAssignment(
        10, member_id=1, segment_id=1, state=EFFECTIVE, since=NOW - 9 * DAY
    )
    waits = _plan([effective], {1: 2})
    assert waits.inserts == [_row(1, 2, PENDING)]
    assert waits.changes == AssignmentChanges(pending=1)

    young = StoredAssignment(11, member_id=1, segment_id=2, state=PENDING, since=NOW - DAY)
    still = _plan([effective, young], {1: 2})
    assert (still.inserts, still.updates, still.deletes) == ([], [], [])
    assert still.changes == AssignmentChanges(pending=1)

    old = StoredAssignment(11, member_id=1, segment_id=2, state=PENDING, since=NOW - 3 * DAY)
    moves = _plan([effective, old], {1: 2})
    assert moves.deletes == [11]
    assert moves.updates == [{"id": 10, "segment_id": 2, "since": NOW, "updated_at": NOW}]
    assert moves.departures == [{"member_id": 1, "segment_id": 1, "left_at": NOW}]
    assert moves.changes == AssignmentChanges(entered=1, moved=1)


def test_a_pending_move_elsewhere_starts_again() -> None:
    stored = [
        StoredAssignment(10, member_id=1, segment_id=1, state=EFFECTIVE, since=NOW - 9 * DAY),
        StoredAssignment(11, member_id=1, segment_id=2, state=PENDING, since=NOW - 5 * DAY),
    ]
    plan = _plan(stored, {1: 3})
    assert plan.updates == [{"id": 11, "segment_id": 3, "since": NOW, "updated_at": NOW}]
    assert plan.changes == AssignmentChanges(pending=1)


def test_a_gone_segment_or_no_dwell_time_moves_at_once() -> None:
    stored = [StoredAssignment(10, member_id=1, segment_id=9, state=EFFECTIVE, since=NOW)]
    gone = _plan(stored, {1: 2})
    at_once = _plan(stored, {1: 2}, move_after=dt.timedelta(0), active=(2, 9))
    for plan in (gone, at_once):
        assert plan.updates == [{"id": 10, "segment_id": 2, "since": NOW, "updated_at": NOW}]
        assert plan.departures == [{"member_id": 1, "segment_id": 9, "left_at": NOW}]
        assert plan.changes == AssignmentChanges(entered=1, moved=1)


def test_unplaced_members_lose_rows_of_gone_segments_and_duplicates_go() -> None:
    stored = [
        StoredAssignment(10, member_id=1, segment_id=9, state=EFFECTIVE, since=NOW),
        StoredAssignment(11, member_id=2, segment_id=9, state=PENDING, since=NOW),
        StoredAssignment(12, member_id=3, segment_id=1, state=EFFECTIVE, since=NOW),
        StoredAssignment(13, member_id=3, segment_id=2, state=EFFECTIVE, since=NOW),
    ]
    plan = _plan(stored, {})
    assert plan.deletes == [13, 10, 11]
    assert plan.departures == [{"member_id": 1, "segment_id": 9, "left_at": NOW}]
    assert plan.changes == AssignmentChanges()
