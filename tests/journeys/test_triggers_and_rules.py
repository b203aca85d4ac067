"""Triggers, goals, re-entry, audience, branches and the message budget, against a real database."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.journeys import SendingRules, advance_journeys
from nurture.journeys.policy import Budget
from nurture.storage.models import (
    Answer,
    AssignmentState,
    CommunityMilestone,
    ContentItem,
    Member,
    ProviderEvent,
    Segment,
    SegmentAssignment,
    SegmentDeparture,
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

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 10, 12, tzinfo=UTC)
LONG_AGO = NOW - dt.timedelta(days=400)
EXIT = {"id": "done", "type": "exit"}


def test_first_post_is_thanked_once_with_the_post_and_old_history_is_not(
    session: Session,
) -> None:
    fresh = add_member(session, "fresh@x.test", LONG_AGO)
    veteran = add_member(session, "veteran@x.test", LONG_AGO)
    add_event(session, fresh, "post", NOW - dt.timedelta(days=1), properties={"title": "Hello all"})
    add_event(session, fresh, "post", NOW - dt.timedelta(hours=2))
    add_event(session, veteran, "post", NOW - dt.timedelta(days=90))
    add_event(session, veteran, "post", NOW - dt.timedelta(days=1))
    thanks = journey({"type": "activity", "events": ["post"]}, id="thanks")

    advance_journeys(session, [thanks], NOW, no_content)
    advance_journeys(session, [thanks], NOW + dt.timedelta(hours=1), no_content)

    (message,) = messages(session)
    assert message.member_id == fresh.id
    assert message.context["trigger"]["event"]["properties"] == {"title": "Hello all"}
    assert message.context["trigger"]["event"]["count"] == 1


def test_tenth_contribution_counts_posts_and_comments_together(session: Session) -> None:
    member = add_member(session, "busy@x.test", LONG_AGO)
    for day in range(9):
        kind = "post" if day % 2 else "comment"
        add_event(session, member, kind, NOW - dt.timedelta(days=20 - day))
    tenth = journey({"type": "activity", "events": ["post", "comment"], "count": 10}, id="tenth")
    assert advance_journeys(session, [tenth], NOW, no_content).enrolled == 0
    add_event(session, member, "comment", NOW - dt.timedelta(minutes=5))
    assert advance_journeys(session, [tenth], NOW, no_content).enrolled == 1
    add_event(session, member, "post", NOW - dt.timedelta(minutes=1))
    assert advance_journeys(session, [tenth], NOW + dt.timedelta(days=1), no_content).enrolled == 0


def test_activity_counts_only_its_types_among_the_members_other_events(session: Session) -> None:
    member = add_member(session, "mixed@x.test", LONG_AGO)
    add_event(session, member, "post", NOW - dt.timedelta(days=3), properties={"title": "One"})
    add_event(session, member, "comment", NOW - dt.timedelta(days=2))
    add_event(session, member, "content_view", NOW - dt.timedelta(days=2, hours=1))
    add_event(session, member, "post", NOW - dt.timedelta(days=1), properties={"title": "Two"})
    add_event(session, member, "comment", NOW - dt.timedelta(hours=1))
    second = journey({"type": "activity", "events": ["post"], "count": 2}, id="second_post")

    advance_journeys(session, [second], NOW, no_content)

    (message,) = messages(session)
    event = message.context["trigger"]["event"]
    assert (event["type"], event["properties"], event["count"]) == ("post", {"title": "Two"}, 2)


def test_activity_where_filters_event_properties(session: Session) -> None:
    member = add_member(session, "leader@x.test", LONG_AGO)
    add_event(session, member, "post", NOW - dt.timedelta(days=1), properties={"kind": "chat"})
    launched = journey(
        {"type": "activity", "events": ["post"], "where": {"kind": "initiative"}}, id="launch"
    )
    assert advance_journeys(session, [launched], NOW, no_content).enrolled == 0
    add_event(session, member, "post", NOW, properties={"kind": "initiative"})
    assert advance_journeys(session, [launched], NOW, no_content).enrolled == 1


def test_inactivity_fires_once_per_silence(session: Session) -> None:
    silent = add_member(session, "silent@x.test", LONG_AGO)
    active = add_member(session, "active@x.test", LONG_AGO)
    never = add_member(session, "never@x.test", NOW - dt.timedelta(days=40))
    newcomer = add_member(session, "newcomer@x.test", NOW - dt.timedelta(days=3))
    add_event(session, silent, "post", NOW - dt.timedelta(days=31))
    add_event(session, silent, "email_open", NOW - dt.timedelta(days=2))  # opens do not count
    add_event(session, active, "comment", NOW - dt.timedelta(days=5))
    silence = journey({"type": "inactivity", "days": 30}, id="reengage")

    advance_journeys(session, [silence], NOW, no_content)
    assert {m.member_id for m in messages(session)} == {silent.id, never.id}  # not the newcomer
    assert (
        advance_journeys(session, [silence], NOW + dt.timedelta(days=5), no_content).enrolled == 0
    )

    # Back, then silent again for 30 days: a new occurrence.
    add_event(session, silent, "post", NOW + dt.timedelta(days=6))
    later = NOW + dt.timedelta(days=37)
    advance_journeys(session, [silence], later, no_content)
    assert [m.member_id for m in messages(session)].count(silent.id) == 2
    assert newcomer.id in {m.member_id for m in messages(session)}  # silent since joining


def test_milestone_is_celebrated_once_ever_and_only_the_highest_at_once(
    session: Session,
) -> None:
    for number in range(99):
        add_member(session, f"m{number}@x.test", LONG_AGO)
    party = journey({"type": "community_milestone", "thresholds": [100, 1000]}, id="party")
    assert advance_journeys(session, [party], NOW, no_content).enrolled == 0

    hundredth = add_member(session, "m99@x.test", NOW - dt.timedelta(minutes=1))
    assert advance_journeys(session, [party], NOW, no_content).enrolled == 100
    assert {e.context["threshold"] for e in enrollments(session)} == {100}
    assert hundredth.id in {m.member_id for m in messages(session)}

    # Someone leaves and someone joins: 100 again, never a second celebration.
    session.delete(session.get(Member, hundredth.id))
    session.flush()
    add_member(session, "m100@x.test", NOW + dt.timedelta(hours=1))
    assert advance_journeys(session, [party], NOW + dt.timedelta(days=2), no_content).enrolled == 0
    assert session.scalars(select(CommunityMilestone.threshold)).all() == [100]


def test_crossing_two_thresholds_at_once_celebrates_the_highest(session: Session) -> None:
    for number in range(12):
        add_member(session, f"m{number}@x.test", NOW - dt.timedelta(days=2, minutes=number))
    party = journey({"type": "community_milestone", "thresholds": [5, 10, 50]}, id="party")
    assert advance_journeys(session, [party], NOW, no_content).enrolled == 12
    assert {e.occurrence for e in enrollments(session)} == {10}
    rows = {row.threshold: row.celebrated for row in session.scalars(select(CommunityMilestone))}
    assert rows == {5: False, 10: True}


def test_a_threshold_crossed_long_ago_is_never_celebrated_on_a_first_run(
    session: Session,
) -> None:
    # A community of 300 whose 100th member joined a year ago, and a few newcomers.
    for number in range(296):
        add_member(session, f"old{number}@x.test", LONG_AGO + dt.timedelta(hours=number))
    for number in range(4):
        add_member(session, f"new{number}@x.test", NOW - dt.timedelta(days=1))
    party = journey(
        {"type": "community_milestone", "thresholds": [100, 1000], "within_days": 7}, id="party"
    )
    assert advance_journeys(session, [party], NOW, no_content).enrolled == 0
    (row,) = session.scalars(select(CommunityMilestone))
    assert (row.threshold, row.celebrated) == (100, False)  # recorded: never celebrated later
    assert advance_journeys(session, [party], NOW + dt.timedelta(hours=1), no_content).enrolled == 0


def test_a_threshold_crossed_within_the_window_is_celebrated_late(session: Session) -> None:
    # nurture was stopped: the 10th member joined five days before the first run.
    for number in range(10):
        add_member(session, f"m{number}@x.test", NOW - dt.timedelta(days=20 - number * 1.5))
    party = journey({"type": "community_milestone", "thresholds": [10]}, id="party")
    assert advance_journeys(session, [party], NOW, no_content).enrolled == 10
    stale = journey(
        {"type": "community_milestone", "thresholds": [10], "within_days": 3}, id="stale"
    )
    session.query(CommunityMilestone).delete()
    assert advance_journeys(session, [stale], NOW, no_content).enrolled == 0


def test_new_joins_and_answers_are_only_the_last_14_days_by_default(session: Session) -> None:
    veteran = add_member(session, "veteran@x.test", LONG_AGO)
    newcomer = add_member(session, "newcomer@x.test", NOW - dt.timedelta(days=13))
    for member, days in ((veteran, 200), (newcomer, 1)):
        session.add(
            Answer(
                member_id=member.id,
                question_key="role",
                value="founder",
                answered_at=NOW - dt.timedelta(days=days),
            )
        )
    session.flush()
    welcome = journey({"type": "member_joined"}, id="welcome")
    thanks = journey({"type": "questionnaire_answered"}, id="thanks")
    everyone = journey({"type": "member_joined", "within_days": None}, id="everyone")
    assert welcome.trigger.within_days == thanks.trigger.within_days == 14

    advance_journeys(session, [welcome, thanks, everyone], NOW, no_content)

    assert {e.member_id for e in enrollments(session, "welcome")} == {newcomer.id}
    assert {e.member_id for e in enrollments(session, "thanks")} == {newcomer.id}
    assert {e.member_id for e in enrollments(session, "everyone")} == {veteran.id, newcomer.id}


def _segment(session: Session, key: str) -> Segment:
    segment = Segment(key=key, label=key.title(), kind="rule", created_at=LONG_AGO)
    session.add(segment)
    session.flush()
    return segment


def test_segment_entered_after_its_hold_and_segment_left(session: Session) -> None:
    regulars = _segment(session, "event-regulars")
    member = add_member(session, "regular@x.test", LONG_AGO)
    session.add(
        SegmentAssignment(
            member_id=member.id,
            segment_id=regulars.id,
            state=AssignmentState.EFFECTIVE,
            since=NOW - dt.timedelta(days=1),
        )
    )
    session.add(
        SegmentDeparture(
            member_id=member.id, segment_id=regulars.id, left_at=NOW - dt.timedelta(hours=3)
        )
    )
    session.flush()
    entered = journey(
        {"type": "segment_entered", "segment": "event-regulars", "hold": "2d"}, id="entered"
    )
    left = journey({"type": "segment_left", "segment": "event-regulars"}, id="left")

    assert advance_journeys(session, [entered, left], NOW, no_content).enrolled == 1
    assert enrollments(session, "left")[0].context["segment_label"] == "Event-Regulars"
    later = NOW + dt.timedelta(days=1, minutes=1)
    assert advance_journeys(session, [entered, left], later, no_content).enrolled == 1
    assert advance_journeys(session, [entered, left], later, no_content).enrolled == 0


def test_content_gap_invites_members_close_to_a_thin_topic(session: Session) -> None:
    for key, tags in [
        ("a", ["burnout", "open source"]),
        ("b", ["open source"]),
        ("c", ["open source", "moderation"]),
    ]:
        session.add(
            ContentItem(
                key=key,
                title=key,
                url=f"https://x.test/{key}",
                kind="article",
                language="en",
                tags=tags,
                text_hash=key,
                source_path=key,
                published_at=LONG_AGO,
            )
        )
    close = add_member(session, "close@x.test", LONG_AGO)
    once = add_member(session, "once@x.test", LONG_AGO)
    for days in (3, 10):
        add_event(session, close, "content_view", NOW - dt.timedelta(days=days), content_key="a")
    add_event(session, once, "content_view", NOW - dt.timedelta(days=3), content_key="c")
    gap = journey({"type": "content_gap", "max_items": 1}, id="gap", reentry="once")

    advance_journeys(session, [gap], NOW, no_content)
    (enrollment,) = enrollments(session)
    assert enrollment.member_id == close.id
    assert enrollment.context == {"topic": "burnout", "item_count": 1, "engagements": 2}
    assert advance_journeys(session, [gap], NOW + dt.timedelta(days=1), no_content).enrolled == 0


def test_goal_exits_the_member_and_stops_further_emails(session: Session) -> None:
    member = add_member(session, "quiet@x.test", NOW - dt.timedelta(hours=1))
    nudge = journey(
        {"type": "member_joined"},
        send("first", "wait"),
        {"id": "wait", "type": "wait", "duration": "3d", "next": "second"},
        send("second", "done"),
        EXIT,
        id="nudge",
        goal={"events": ["post"]},
    )
    advance_journeys(session, [nudge], NOW, no_content)
    add_event(session, member, "post", NOW + dt.timedelta(days=1))
    summary = advance_journeys(session, [nudge], NOW + dt.timedelta(days=4), no_content)

    assert summary.goal_reached == 1
    assert [m.step_id for m in messages(session)] == ["first"]
    (enrollment,) = enrollments(session)
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "goal")


def test_goal_condition_and_branch_on_answers(session: Session) -> None:
    member = add_member(session, "asked@x.test", NOW - dt.timedelta(hours=1), language="fr")
    reminder = journey(
        {"type": "member_joined"},
        {"id": "wait", "type": "wait", "duration": "3d", "next": "answered"},
        {
            "id": "answered",
            "type": "branch",
            "cases": [{"when": "answers", "next": "done"}],
            "otherwise": "remind",
        },
        send("remind", "done"),
        EXIT,
        id="reminder",
    )
    advance_journeys(session, [reminder], NOW, no_content)
    advance_journeys(session, [reminder], NOW + dt.timedelta(days=3), no_content)
    assert [m.step_id for m in messages(session)] == ["remind"]

    other = add_member(session, "answered@x.test", NOW + dt.timedelta(days=3))
    session.add(
        Answer(
            member_id=other.id,
            question_key="role",
            value="founder",
            answered_at=NOW + dt.timedelta(days=4),
        )
    )
    session.flush()
    advance_journeys(session, [reminder], NOW + dt.timedelta(days=3, hours=1), no_content)
    advance_journeys(session, [reminder], NOW + dt.timedelta(days=7), no_content)
    assert [m.member_id for m in messages(session)] == [member.id]


def test_branch_on_opened_earlier_step(session: Session) -> None:
    opener = add_member(session, "opener@x.test", NOW - dt.timedelta(hours=1))
    add_member(session, "ignorer@x.test", NOW - dt.timedelta(hours=1))
    follow = journey(
        {"type": "member_joined"},
        send("first", "wait"),
        {"id": "wait", "type": "wait", "duration": "2d", "next": "check"},
        {
            "id": "check",
            "type": "branch",
            "cases": [{"when": "opened('first')", "next": "more"}],
            "otherwise": "nudge",
        },
        send("more", "done"),
        send("nudge", "done"),
        EXIT,
        id="follow",
    )
    advance_journeys(session, [follow], NOW, no_content)
    first = next(m for m in messages(session) if m.member_id == opener.id)
    session.add(
        ProviderEvent(
            provider="sendgrid",
            event_id="e1",
            message_id=first.id,
            type="open",
            occurred_at=NOW + dt.timedelta(hours=2),
        )
    )
    session.flush()
    advance_journeys(session, [follow], NOW + dt.timedelta(days=2), no_content)
    second = {m.member_id: m.step_id for m in messages(session) if m.step_id != "first"}
    assert second[opener.id] == "more"
    assert sorted(second.values()) == ["more", "nudge"]


def test_audience_and_a_failing_condition(session: Session) -> None:
    add_member(session, "en@x.test", NOW - dt.timedelta(hours=1), language="en")
    french = add_member(session, "fr@x.test", NOW - dt.timedelta(hours=1), language="fr")
    french_only = journey({"type": "member_joined"}, id="fr-only", audience="language == 'fr'")
    broken = journey({"type": "member_joined"}, id="broken", audience="member.id > 'x'")
    summary = advance_journeys(session, [french_only, broken], NOW, no_content)
    assert [m.member_id for m in messages(session)] == [french.id]
    assert summary.condition_errors == 2


def test_reentry_once_versus_each_occurrence_with_cooldown(session: Session) -> None:
    member = add_member(session, "back@x.test", LONG_AGO)
    add_event(session, member, "post", NOW - dt.timedelta(days=40))
    once = journey({"type": "inactivity", "days": 30}, id="once", reentry="once")
    cooled = journey({"type": "inactivity", "days": 30}, id="cooled", cooldown="60d")
    advance_journeys(session, [once, cooled], NOW, no_content)
    add_event(session, member, "post", NOW + dt.timedelta(days=1))
    # Silent again 30 days later: "once" never again; "cooled" only after its 60-day cooldown.
    advance_journeys(session, [once, cooled], NOW + dt.timedelta(days=32), no_content)
    assert len(enrollments(session, "once")) == 1
    assert len(enrollments(session, "cooled")) == 1
    advance_journeys(session, [once, cooled], NOW + dt.timedelta(days=61), no_content)
    assert len(enrollments(session, "once")) == 1
    assert len(enrollments(session, "cooled")) == 2


def test_budget_care_first_promotion_waits_or_skips(session: Session) -> None:
    member = add_member(session, "busy@x.test", NOW - dt.timedelta(hours=1))
    care = journey({"type": "member_joined"}, id="care", category="care")
    waits = journey({"type": "member_joined"}, id="promo-wait", category="promotion")
    skips = journey(
        {"type": "member_joined"}, id="promo-skip", category="promotion", over_budget="skip"
    )
    rules = SendingRules(budget=Budget(messages=1, window="7d"), quiet_hours=None)

    summary = advance_journeys(session, [waits, skips, care], NOW, no_content, rules=rules)
    assert [m.journey_key for m in messages(session)] == ["care"]
    assert (summary.budget_deferred, summary.budget_skipped) == (1, 1)
    held = enrollments(session, "promo-wait")[0]
    assert held.waiting_on == "budget"
    assert held.next_action_at == NOW + dt.timedelta(days=7)
    assert enrollments(session, "promo-skip")[0].state == "completed"

    advance_journeys(
        session, [waits, skips, care], NOW + dt.timedelta(days=3), no_content, rules=rules
    )
    assert len(messages(session)) == 1
    advance_journeys(
        session, [waits, skips, care], NOW + dt.timedelta(days=7), no_content, rules=rules
    )
    assert [m.journey_key for m in messages(session)] == ["care", "promo-wait"]
    assert {m.member_id for m in messages(session)} == {member.id}


def test_transactional_journeys_ignore_consent_and_quiet_hours(session: Session) -> None:
    add_member(session, "notice@x.test", NOW - dt.timedelta(days=1), consent_status="denied")
    notice = journey({"type": "member_joined"}, id="notice", transactional=True)
    rules = SendingRules(budget=Budget(messages=1, window="7d"))
    advance_journeys(
        session, [notice], dt.datetime(2026, 11, 10, 3, tzinfo=UTC), no_content, rules=rules
    )
    assert [m.journey_key for m in messages(session)] == ["notice"]


def test_a_category_unsubscribe_stops_enrolment_and_running_journeys(session: Session) -> None:
    member = add_member(session, "picky@x.test", NOW - dt.timedelta(hours=1))
    digest = journey(
        {"type": "member_joined"},
        send("first", "wait"),
        {"id": "wait", "type": "wait", "duration": "1d", "next": "second"},
        send("second", "done"),
        EXIT,
        id="digest",
        category="promotion",
    )
    care = journey({"type": "member_joined"}, id="care", category="care")
    advance_journeys(session, [digest], NOW, no_content)
    member.unsubscribed_categories = ["promotion"]
    session.flush()
    advance_journeys(session, [digest, care], NOW + dt.timedelta(days=1), no_content)

    assert [(m.journey_key, m.step_id) for m in messages(session)] == [
        ("digest", "first"),
        ("care", "hello"),
    ]
    assert enrollments(session, "digest")[0].exit_reason == "consent"
