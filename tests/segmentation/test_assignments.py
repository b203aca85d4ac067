"""Effective membership: a move to another segment only counts once it has held long enough."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import select

from nurture.embedding import HashingEmbedder
from nurture.profiling import build_profiles
from nurture.segmentation import (
    current_segments,
    effective_memberships,
    effective_segments,
    segment_entries,
    segment_members,
)
from nurture.segmentation.assignments import (
    update_cluster_assignments,
    update_cluster_assignments_in_chunks,
    update_rule_assignments,
)
from nurture.storage.models import (
    Answer,
    AssignmentState,
    Member,
    Segment,
    SegmentAssignment,
)

from .conftest import GOALS, GROUPS, NOW

DAY = dt.timedelta(days=1)
HOLD = dt.timedelta(days=3)


@pytest.fixture
def world(session):
    members = [Member(email=f"m{i}@example.org", joined_at=NOW - 100 * DAY) for i in range(3)]
    segments = [Segment(key=f"seg-{i}", label=f"S{i}", kind="cluster") for i in (1, 2, 3)]
    segments.append(Segment(key="founders", label="Founders", kind="rule"))
    session.add_all(members + segments)
    session.commit()
    return [m.id for m in members], [s.id for s in segments]


def rows(session) -> dict[tuple[int, int], tuple[str, dt.datetime]]:
    return {
        (row.member_id, row.segment_id): (row.state.value, row.since)
        for row in session.scalars(select(SegmentAssignment))
    }


def test_a_move_counts_once_it_has_held(session, world) -> None:
    (m1, m2, _), (a, b, c, _) = world
    active = {a, b, c}

    def run(assignment, when):
        changes = update_cluster_assignments(
            session, assignment, when, move_after=HOLD, active_segments=active
        )
        session.commit()
        return changes

    first = run({m1: a, m2: a}, NOW)
    assert first.entered == 2 and first.moved == 0
    assert effective_segments(session) == {m1: a, m2: a}

    # m1 looks like b now: pending, still effective in a.
    second = run({m1: b, m2: a}, NOW + DAY)
    assert (second.moved, second.pending) == (0, 1)
    assert effective_segments(session) == {m1: a, m2: a}
    assert rows(session)[m1, b] == ("pending", NOW + DAY)

    # Two days later it has not held 3 days yet.
    assert run({m1: b, m2: a}, NOW + 3 * DAY).pending == 1
    assert effective_segments(session)[m1] == a

    # Three days after it was first seen, the move counts: m1 enters b now.
    third = run({m1: b, m2: a}, NOW + 4 * DAY)
    assert (third.entered, third.moved, third.pending) == (1, 1, 0)
    assert effective_segments(session) == {m1: b, m2: a}
    assert rows(session) == {
        (m1, b): ("effective", NOW + 4 * DAY),
        (m2, a): ("effective", NOW),
    }
    entries = segment_entries(session, since=NOW + DAY)
    assert [(e.member_id, e.segment_key, e.entered_at) for e in entries] == [
        (m1, "seg-2", NOW + 4 * DAY)
    ]


def test_a_flip_back_or_elsewhere_restarts_the_wait(session, world) -> None:
    (m1, _, _), (a, b, c, _) = world
    active = {a, b, c}
    for when, target in ((NOW, a), (NOW + DAY, b), (NOW + 2 * DAY, a)):
        update_cluster_assignments(
            session, {m1: target}, when, move_after=HOLD, active_segments=active
        )
    assert rows(session) == {(m1, a): ("effective", NOW)}  # back home: nothing pending
    update_cluster_assignments(
        session, {m1: b}, NOW + 3 * DAY, move_after=HOLD, active_segments=active
    )
    update_cluster_assignments(
        session, {m1: c}, NOW + 5 * DAY, move_after=HOLD, active_segments=active
    )
    update_cluster_assignments(
        session, {m1: c}, NOW + 7 * DAY, move_after=HOLD, active_segments=active
    )
    assert rows(session)[m1, c] == ("pending", NOW + 5 * DAY)  # c since day 5, not day 3
    assert effective_segments(session) == {m1: a}


def test_a_gone_segment_or_no_wait_moves_at_once(session, world) -> None:
    (m1, m2, m3), (a, b, c, _) = world
    update_cluster_assignments(
        session, {m1: a, m2: a, m3: c}, NOW, move_after=HOLD, active_segments={a, b, c}
    )
    # a is gone: its members move at once; m3 was not placed and c is gone: m3 loses it.
    changes = update_cluster_assignments(
        session, {m1: b, m2: b}, NOW + DAY, move_after=HOLD, active_segments={b}
    )
    assert (changes.moved, changes.pending) == (2, 0)
    assert effective_segments(session) == {m1: b, m2: b}
    # No wait configured: a move counts at once.
    update_cluster_assignments(
        session, {m1: a}, NOW + 2 * DAY, move_after=dt.timedelta(0), active_segments={a, b}
    )
    assert effective_segments(session)[m1] == a


def test_an_update_by_ranges_of_members_does_what_one_update_of_everyone_does(
    session, world
) -> None:
    (m1, m2, m3), (a, b, c, _) = world
    update_cluster_assignments(
        session, {m1: a, m2: a, m3: c}, NOW, move_after=HOLD, active_segments={a, b, c}
    )
    update_cluster_assignments(
        session, {m1: b, m2: a, m3: c}, NOW + DAY, move_after=HOLD, active_segments={a, b, c}
    )
    session.commit()
    # m1's move holds, m2 waits to move, m3 is not placed and its segment c is gone.
    run = ({m1: b, m2: b}, NOW + 5 * DAY)
    results = []
    for chunk_size in (None, 1):
        with session.begin_nested() as nested:
            if chunk_size is None:
                changes = update_cluster_assignments(
                    session, run[0], run[1], move_after=HOLD, active_segments={a, b}
                )
            else:
                changes = update_cluster_assignments_in_chunks(
                    session,
                    np.array(sorted(run[0])),
                    np.array([run[0][m] for m in sorted(run[0])]),
                    run[1],
                    move_after=HOLD,
                    active_segments={a, b},
                    chunk_size=chunk_size,
                )
            results.append((changes, rows(session), effective_segments(session)))
            nested.rollback()
    assert results[0] == results[1]
    assert results[1][0].moved == 1 and results[1][0].pending == 1
    assert results[1][2] == {m1: b, m2: a}
    with pytest.raises(ValueError, match="increasing order"):
        update_cluster_assignments_in_chunks(
            session, np.array([m2, m1]), np.array([a, a]), NOW, move_after=HOLD, active_segments={a}
        )


def test_rule_segments_enter_and_leave_at_once(session, world) -> None:
    (m1, m2, m3), (a, _, _, rule) = world
    update_cluster_assignments(session, {m1: a}, NOW, move_after=HOLD, active_segments={a})
    assert update_rule_assignments(session, rule, [m1, m2], NOW).entered == 2
    changes = update_rule_assignments(session, rule, [m2, m3], NOW + DAY)
    assert (changes.entered, changes.left) == (1, 1)
    assert effective_memberships(session) == {m1: {a}, m2: {rule}, m3: {rule}}
    assert effective_segments(session) == {m1: a}  # clusters only
    entries = segment_entries(session, since=NOW, segment_keys=["founders"])
    assert [(e.member_id, e.kind, e.entered_at) for e in entries] == [
        (m2, "rule", NOW),
        (m3, "rule", NOW + DAY),
    ]
    assert {r.state for r in session.scalars(select(SegmentAssignment))} == {
        AssignmentState.EFFECTIVE
    }


def test_segmentation_keeps_a_member_where_they_were_for_a_while(
    session, questionnaire, population
) -> None:
    embedder = HashingEmbedder(32)
    build_profiles(session, embedder, questionnaire, NOW)
    segment_members(session, questionnaire=questionnaire, now=NOW)
    session.commit()
    before = effective_segments(session)
    # One founder now answers exactly like the event organisers.
    member_id = next(m for m, group in population.items() if GROUPS[group] == "founder")
    organiser = next(m for m, group in population.items() if GROUPS[group] == "event_organiser")
    theirs = {
        a.question_key: a.value
        for a in session.scalars(select(Answer).where(Answer.member_id == organiser))
    }
    for answer in session.scalars(select(Answer).where(Answer.member_id == member_id)):
        answer.value = theirs[answer.question_key]
    assert theirs["goals"][0] in GOALS["event_organiser"]
    session.commit()

    later = NOW + DAY
    build_profiles(session, embedder, questionnaire, later)
    summary = segment_members(session, questionnaire=questionnaire, now=later)
    session.commit()
    assert current_segments(session)[member_id] == before[organiser]  # clustering says so...
    assert effective_segments(session)[member_id] == before[member_id]  # ...not counted yet
    assert (summary.moved, summary.pending) == (0, 1)

    much_later = NOW + 5 * DAY
    build_profiles(session, embedder, questionnaire, much_later)
    summary = segment_members(session, questionnaire=questionnaire, now=much_later)
    session.commit()
    assert effective_segments(session)[member_id] == before[organiser]
    assert (summary.moved, summary.pending) == (1, 0)
    assert effective_segments(session) == current_segments(session)


def test_an_update_of_some_members_leaves_the_others_as_an_update_of_everyone_would(
    session, world
) -> None:
    (m1, m2, m3), (a, b, c, _) = world
    active = {a, b, c}
    update_cluster_assignments(
        session, {m1: a, m2: a, m3: b}, NOW, move_after=HOLD, active_segments=active
    )
    session.commit()
    # Only m1 changed: it looks like b now, and waits.
    changes = update_cluster_assignments(
        session, {m1: b}, NOW + DAY, move_after=HOLD, active_segments=active, member_ids={m1}
    )
    session.commit()
    assert (changes.entered, changes.pending) == (0, 1)
    assert rows(session) == {
        (m1, a): ("effective", NOW),
        (m1, b): ("pending", NOW + DAY),
        (m2, a): ("effective", NOW),
        (m3, b): ("effective", NOW),
    }
    # A pending member is updated with the changed ones: its move counts once it has held.
    changes = update_cluster_assignments(
        session, {m1: b}, NOW + 4 * DAY, move_after=HOLD, active_segments=active, member_ids={m1}
    )
    session.commit()
    assert changes.moved == 1
    assert effective_segments(session) == {m1: b, m2: a, m3: b}
