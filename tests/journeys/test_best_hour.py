"""The member's best hour: profiles shrunk towards segment and community, sends at that hour."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy.orm import Session

from nurture.journeys import advance_journeys, journey_status
from nurture.journeys.best_hour import (
    DEFAULT_HOUR,
    BestHours,
    BestHoursSummary,
    HourPriors,
    best_hour_of,
    hour_profile,
    next_local_hour,
    store_best_hours,
)
from nurture.journeys.policy import QuietHours, SendingRules
from nurture.journeys.triggers import local_zone
from nurture.storage.models import (
    AssignmentState,
    Segment,
    SegmentAssignment,
    SegmentKind,
    WaitReason,
)
from tests.journeys.engine_helpers import (
    add_event,
    add_member,
    enrollments,
    journey,
    messages,
    no_content,
    send,
)

NOW = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)  # a Monday, 07:00 in Paris
PARIS = "Europe/Paris"


def _counts(**by_hour: int) -> list[int]:
    counts = [0] * 24
    for hour, count in by_hour.items():
        counts[int(hour[1:])] = count
    return counts


def test_a_profile_is_shrunk_towards_its_prior() -> None:
    uniform = [1 / 24] * 24
    assert hour_profile([0] * 24, uniform, 8) == pytest.approx(uniform)
    profile = hour_profile(_counts(h19=2), uniform, 8)
    assert sum(profile) == pytest.approx(1)
    assert profile[19] == pytest.approx((2 + 8 / 24) / 10)
    assert best_hour_of(profile) == 19
    assert best_hour_of([1 / 24] * 24) == 0  # the earliest of equals


def test_few_events_lean_on_the_segment_then_the_community() -> None:
    member_counts = {
        1: _counts(h7=1),  # one open at 7: too little to beat the segment's evenings
        2: _counts(h20=30),  # the segment's members open in the evening
        3: _counts(h20=30),
        4: _counts(h8=50),  # another segment, in the morning
        5: _counts(h7=40),  # a member with plenty of opens of their own at 7
    }
    hours = BestHours(member_counts, {1: 100, 2: 100, 3: 100, 4: 200, 5: 100, 6: 200})
    assert hours.best_hour(1) == 20
    assert hours.best_hour(5) == 7
    assert hours.best_hour(6) == 8  # no event: their segment's hour
    assert hours.best_hour(7) == best_hour_of(hours.profile(7))  # no segment: the community's
    assert BestHours({}, {}).best_hour(1) == DEFAULT_HOUR


def test_next_local_hour_crosses_days_and_zones() -> None:
    assert next_local_hour(NOW, 19, PARIS) == dt.datetime(2026, 11, 2, 18, 0, tzinfo=dt.UTC)
    assert next_local_hour(NOW, 6, PARIS) == dt.datetime(2026, 11, 3, 5, 0, tzinfo=dt.UTC)
    assert next_local_hour(NOW, 6, None) == NOW


def test_a_send_waits_for_the_members_best_hour(session: Session) -> None:
    ada = add_member(session, "ada@example.org", NOW - dt.timedelta(days=1), time_zone=PARIS)
    for days in range(5):  # Ada opens her emails around 19:00 Paris time (CET)
        add_event(
            session, ada, "email_open", dt.datetime(2026, 10, 26 + days, 18, 10, tzinfo=dt.UTC)
        )
    definition = journey(
        {"type": "member_joined"},
        send("hello", "done", at="best_hour"),
        {"id": "done", "type": "exit"},
    )

    advance_journeys(session, [definition], NOW, no_content)
    (enrollment,) = enrollments(session)
    assert messages(session) == []
    assert enrollment.waiting_on == WaitReason.BEST_HOUR
    assert enrollment.next_action_at == dt.datetime(2026, 11, 2, 18, 0, tzinfo=dt.UTC)

    advance_journeys(session, [definition], NOW + dt.timedelta(hours=6), no_content)
    assert messages(session) == []  # not yet
    (status,) = journey_status(session, [definition])
    assert status.versions[0].waiting_on_best_hour == 1

    late = dt.datetime(2026, 11, 2, 18, 20, tzinfo=dt.UTC)  # the run comes a little late
    advance_journeys(session, [definition], late, no_content)
    (message,) = messages(session)
    assert message.scheduled_at == late
    assert enrollment.waiting_on is None


def test_the_quiet_hours_still_apply_after_the_best_hour(session: Session) -> None:
    owl = add_member(session, "owl@example.org", NOW - dt.timedelta(days=1), time_zone=PARIS)
    for days in range(5):  # opens at 23:00 Paris (CET), inside the quiet hours
        add_event(
            session, owl, "email_open", dt.datetime(2026, 10, 26 + days, 22, 5, tzinfo=dt.UTC)
        )
    definition = journey(
        {"type": "member_joined"},
        send("hello", "done", at="best_hour"),
        {"id": "done", "type": "exit"},
    )
    rules = SendingRules(budget=None, quiet_hours=QuietHours(start="21:00", end="08:00"))

    advance_journeys(session, [definition], NOW, no_content, rules=rules)
    (enrollment,) = enrollments(session)
    assert enrollment.next_action_at == dt.datetime(2026, 11, 2, 22, 0, tzinfo=dt.UTC)
    advance_journeys(session, [definition], enrollment.next_action_at, no_content, rules=rules)
    assert enrollment.waiting_on == WaitReason.QUIET_HOURS and messages(session) == []
    morning = enrollment.next_action_at
    assert morning is not None
    advance_journeys(session, [definition], morning, no_content, rules=rules)
    assert len(messages(session)) == 1  # at the end of the quiet hours, not a day later


def test_the_nightly_run_stores_each_members_best_hour(session: Session) -> None:
    ada = add_member(session, "ada@example.org", NOW - dt.timedelta(days=1), time_zone=PARIS)
    bob = add_member(session, "bob@example.org", NOW - dt.timedelta(days=1))
    for days in range(5):
        add_event(
            session, ada, "email_open", dt.datetime(2026, 10, 26 + days, 18, 10, tzinfo=dt.UTC)
        )
    add_event(session, ada, "email_open", NOW - dt.timedelta(days=100))  # too old to count

    summary = store_best_hours(session, NOW)

    assert summary == BestHoursSummary(members=2, from_own_events=1)
    session.refresh(ada)
    session.refresh(bob)
    assert ada.best_hour == 19
    assert bob.best_hour == 19  # no opens of his own: the community's hour
    # the engine then reads the stored hour
    bob.best_hour = 7
    definition = journey(
        {"type": "member_joined"},
        send("hello", "done", at="best_hour"),
        {"id": "done", "type": "exit"},
    )
    advance_journeys(session, [definition], NOW, no_content, member_ids=[bob.id])
    (enrollment,) = enrollments(session)
    assert enrollment.next_action_at == dt.datetime(2026, 11, 2, 7, 0, tzinfo=dt.UTC)


def test_storing_best_hours_writes_the_moved_hours_and_keeps_updated_at(
    session: Session,
) -> None:
    ada = add_member(session, "ada@example.org", NOW - dt.timedelta(days=1), time_zone=PARIS)
    bob = add_member(session, "bob@example.org", NOW - dt.timedelta(days=1))
    cy = add_member(session, "cy@example.org", NOW - dt.timedelta(days=1))
    for days in range(3):
        add_event(
            session, ada, "email_open", dt.datetime(2026, 10, 26 + days, 18, 10, tzinfo=dt.UTC)
        )
    bob.best_hour, cy.best_hour = 3, 19  # bob's is wrong, cy's already right
    session.flush()
    for member in (ada, bob, cy):
        session.refresh(member)
    edited = {member.id: member.updated_at for member in (ada, bob, cy)}

    summary = store_best_hours(session, NOW)

    assert summary == BestHoursSummary(members=3, from_own_events=1)
    for member in (ada, bob, cy):
        session.refresh(member)
        assert member.best_hour == 19
        assert member.updated_at == edited[member.id]  # not an edit of the member's record


def test_best_hours_read_a_page_at_a_time_match_the_whole_community_read_at_once(
    session: Session,
) -> None:
    evening = Segment(key="seg-1", label="Evenings", kind=SegmentKind.CLUSTER)
    morning = Segment(key="seg-2", label="Mornings", kind=SegmentKind.CLUSTER)
    session.add_all([evening, morning])
    session.flush()
    joined = NOW - dt.timedelta(days=30)
    zones = [PARIS, None, "America/New_York", PARIS, None, "Asia/Tokyo", None]
    people = [
        add_member(session, f"m{n}@example.org", joined, time_zone=zone)
        for n, zone in enumerate(zones)
    ]
    opens = {0: (18, 1), 1: (19, 6), 2: (7, 4), 3: (8, 9), 5: (12, 2)}  # index: (UTC hour, days)
    for index, (hour, days) in opens.items():
        for day in range(days):
            at = dt.datetime(2026, 10, 1 + day, hour, 15, tzinfo=dt.UTC)
            add_event(session, people[index], "email_open", at)
    segment_of = {0: evening, 1: evening, 2: morning, 3: morning, 4: morning}
    for index, segment in segment_of.items():
        session.add(
            SegmentAssignment(
                member_id=people[index].id,
                segment_id=segment.id,
                state=AssignmentState.EFFECTIVE,
                since=NOW,
            )
        )
    session.flush()
    counts: dict[int, list[int]] = {}
    for index, (hour, days) in opens.items():
        local = dt.datetime(2026, 10, 1, hour, 15, tzinfo=dt.UTC).astimezone(
            local_zone(zones[index])
        )
        counts[people[index].id] = _counts(**{f"h{local.hour}": days})
    whole = BestHours(counts, {people[i].id: s.id for i, s in segment_of.items()})

    summary = store_best_hours(session, NOW, chunk_size=2)  # pages of two members

    assert summary == BestHoursSummary(members=len(people), from_own_events=len(opens))
    for member in people:
        session.refresh(member)
        assert member.best_hour == whole.best_hour(member.id)
    some = [people[1].id, people[4].id, people[6].id]
    assert HourPriors.load(session, NOW, page_size=3) == whole.priors
    loaded = BestHours.load(session, NOW, some)
    assert [loaded.best_hour(m) for m in some] == [whole.best_hour(m) for m in some]
    assert set(loaded.member_counts) == {people[1].id}  # only the members asked for are read


def test_the_nightly_hours_are_each_members_own_profile_computed_alone(session: Session) -> None:
    rng = random.Random(5)
    segments = [
        Segment(key=f"seg-{n}", label=f"Segment {n}", kind=SegmentKind.CLUSTER) for n in range(3)
    ]
    session.add_all(segments)
    session.flush()
    zones = [PARIS, None, "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Nope/Nowhere"]
    people = [
        add_member(
            session, f"m{n}@example.org", NOW - dt.timedelta(days=200), time_zone=rng.choice(zones)
        )
        for n in range(40)
    ]
    for member in people:
        for _ in range(rng.choice([0, 0, 1, 2, 5])):  # ties between hours too
            at = NOW - dt.timedelta(minutes=rng.randrange(60 * 24 * 120))
            add_event(session, member, rng.choice(["email_open", "email_click", "post"]), at)
        if rng.random() < 0.8:  # the last segment gets members but none with events, maybe
            session.add(
                SegmentAssignment(
                    member_id=member.id,
                    segment_id=rng.choice(segments).id,
                    state=AssignmentState.EFFECTIVE,
                    since=NOW,
                )
            )
    session.flush()
    alone = BestHours.load(session, NOW, [member.id for member in people])

    store_best_hours(session, NOW, chunk_size=7)

    for member in people:
        session.refresh(member)
        assert member.best_hour == alone.best_hour(member.id)
