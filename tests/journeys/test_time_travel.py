"""Time travel: local moments in members' time zones, across daylight-saving changes."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from sqlalchemy.orm import Session

from nurture.journeys import SendingRules, advance_journeys, wait_until
from nurture.journeys.models import WaitStep
from nurture.journeys.policy import QuietHours
from nurture.journeys.triggers import _next_anniversary, anniversary_days
from tests.journeys.engine_helpers import add_member, enrollments, journey, messages, no_content

UTC = dt.UTC


def _wait(**fields: object) -> WaitStep:
    return WaitStep.model_validate({"id": "w", "type": "wait", "next": "x", **fields})


@pytest.mark.parametrize(
    ("now", "zone", "expected"),
    [
        # New York leaves daylight saving on Sunday 1 November 2026: Monday 9:00 is 14:00 UTC.
        (dt.datetime(2026, 10, 31, 12, tzinfo=UTC), "America/New_York", (2026, 11, 2, 14)),
        # The week before, still on daylight time: 9:00 EDT is 13:00 UTC.
        (dt.datetime(2026, 10, 24, 12, tzinfo=UTC), "America/New_York", (2026, 10, 26, 13)),
        # Paris enters daylight saving on Sunday 29 March 2026.
        (dt.datetime(2026, 3, 27, 12, tzinfo=UTC), "Europe/Paris", (2026, 3, 30, 7)),
        (dt.datetime(2026, 3, 20, 12, tzinfo=UTC), "Europe/Paris", (2026, 3, 23, 8)),
        # Auckland is a day ahead: Sunday 20:00 UTC is already Monday 9:00 there (NZDT, +13).
        (dt.datetime(2026, 11, 1, 19, tzinfo=UTC), "Pacific/Auckland", (2026, 11, 1, 20)),
        # Exactly at the moment: no need to wait a week.
        (dt.datetime(2026, 11, 1, 20, tzinfo=UTC), "Pacific/Auckland", (2026, 11, 1, 20)),
    ],
)
def test_wait_until_monday_nine_in_the_member_time_zone(
    now: dt.datetime, zone: str, expected: tuple[int, ...]
) -> None:
    step = _wait(until={"weekday": "monday", "hour": 9})
    assert wait_until(step, now, zone) == dt.datetime(*expected, tzinfo=UTC)
    local = wait_until(step, now, zone).astimezone(zoneinfo.ZoneInfo(zone))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)


def test_a_local_time_skipped_by_daylight_saving_moves_forward() -> None:
    # 2:30 does not exist in Paris on 29 March 2026: the clock jumps from 2:00 to 3:00.
    step = _wait(until={"weekday": "sunday", "hour": 2, "minute": 30})
    moment = wait_until(step, dt.datetime(2026, 3, 28, 12, tzinfo=UTC), "Europe/Paris")
    assert moment == dt.datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 3:30 CEST


def test_a_repeated_local_time_is_taken_the_first_time() -> None:
    # 1:30 happens twice in New York on 1 November 2026.
    step = _wait(until={"hour": 1, "minute": 30})
    moment = wait_until(step, dt.datetime(2026, 11, 1, 4, tzinfo=UTC), "America/New_York")
    assert moment == dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 1:30 EDT


def test_duration_then_until_and_unknown_zone_is_utc() -> None:
    step = _wait(duration="2d", until={"hour": 9})
    now = dt.datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert wait_until(step, now, "Not/A_Zone") == dt.datetime(2026, 6, 4, 9, tzinfo=UTC)
    assert wait_until(_wait(duration="36h"), now, "Asia/Tokyo") == now + dt.timedelta(hours=36)


def test_birthday_comes_on_the_member_own_day(session: Session) -> None:
    joined = dt.datetime(2025, 1, 1, tzinfo=UTC)
    kiwi = add_member(
        session, "kiwi@x.test", joined, time_zone="Pacific/Auckland", birthday=dt.date(1990, 11, 2)
    )
    angeleno = add_member(
        session, "la@x.test", joined, time_zone="America/Los_Angeles", birthday=dt.date(1985, 11, 2)
    )
    birthday = journey({"type": "anniversary", "date": "birthday", "hour": 9}, id="birthday")

    # 1 November 20:00 UTC: 2 November 9:00 in Auckland, 1 November 13:00 in Los Angeles,
    # whose member is enrolled ahead and waits for 9:00 on their day.
    first = dt.datetime(2026, 11, 1, 20, tzinfo=UTC)
    assert advance_journeys(session, [birthday], first, no_content).enrolled == 2
    assert [m.member_id for m in messages(session)] == [kiwi.id]
    assert [e.context["years"] for e in enrollments(session)] == [36, 41]
    # 2 November 17:00 UTC: 9:00 in Los Angeles (standard time since 1 November).
    waiting = next(e for e in enrollments(session) if e.member_id == angeleno.id)
    assert waiting.next_action_at == dt.datetime(2026, 11, 2, 17, tzinfo=UTC)
    assert waiting.context["on"] == "2026-11-02"

    assert (
        advance_journeys(session, [birthday], first + dt.timedelta(hours=20), no_content).enrolled
        == 0
    )
    assert [m.member_id for m in messages(session)] == [kiwi.id]
    later = dt.datetime(2026, 11, 2, 17, tzinfo=UTC)
    assert advance_journeys(session, [birthday], later, no_content).enrolled == 0
    assert [m.member_id for m in messages(session)] == [kiwi.id, angeleno.id]

    # Same day again: nothing; next year: once more each.
    assert (
        advance_journeys(session, [birthday], later + dt.timedelta(hours=5), no_content).enrolled
        == 0
    )
    next_year = [dt.datetime(2027, 11, 1, 20, tzinfo=UTC), dt.datetime(2027, 11, 2, 17, tzinfo=UTC)]
    assert [advance_journeys(session, [birthday], at, no_content).enrolled for at in next_year] == [
        2,
        0,
    ]
    assert [e.occurrence for e in enrollments(session)] == [2026, 2026, 2027, 2027]


def test_leap_day_birthday_and_membership_anniversary(session: Session) -> None:
    leap = add_member(
        session,
        "leap@x.test",
        dt.datetime(2024, 2, 29, 10, tzinfo=UTC),
        birthday=dt.date(2000, 2, 29),
    )
    birthday = journey({"type": "anniversary", "date": "birthday", "hour": 0}, id="birthday")
    anniversary = journey(
        {"type": "anniversary", "date": "joined_at", "hour": 0}, id="member-anniversary"
    )

    feb_28 = dt.datetime(2027, 2, 28, 12, tzinfo=UTC)
    summary = advance_journeys(session, [birthday, anniversary], feb_28, no_content)
    assert summary.enrolled == 2
    assert {e.context["years"] for e in enrollments(session)} == {27, 3}
    assert {m.member_id for m in messages(session)} == {leap.id}

    # The day they joined is not an anniversary.
    newcomer = add_member(session, "new@x.test", dt.datetime(2027, 3, 1, 8, tzinfo=UTC))
    advance_journeys(session, [anniversary], dt.datetime(2027, 3, 1, 12, tzinfo=UTC), no_content)
    assert newcomer.id not in {e.member_id for e in enrollments(session, "member-anniversary")}


def test_quiet_hours_hold_an_email_until_the_member_morning(session: Session) -> None:
    now = dt.datetime(2026, 11, 10, 14, tzinfo=UTC)  # 23:00 in Tokyo, 15:00 in Paris
    tokyo = add_member(session, "tokyo@x.test", now - dt.timedelta(hours=1), time_zone="Asia/Tokyo")
    paris = add_member(
        session, "paris@x.test", now - dt.timedelta(hours=1), time_zone="Europe/Paris"
    )
    welcome = journey({"type": "member_joined"}, id="welcome")
    rules = SendingRules(budget=None, quiet_hours=QuietHours(start="21:00", end="08:00"))

    summary = advance_journeys(session, [welcome], now, no_content, rules=rules)
    assert summary.quiet_deferred == 1
    assert [m.member_id for m in messages(session)] == [paris.id]
    held = next(e for e in enrollments(session) if e.member_id == tokyo.id)
    assert held.waiting_on == "quiet_hours"
    assert held.next_action_at == dt.datetime(2026, 11, 10, 23, tzinfo=UTC)  # 8:00 in Tokyo

    advance_journeys(session, [welcome], held.next_action_at, no_content, rules=rules)
    assert sorted(m.member_id for m in messages(session)) == sorted([paris.id, tokyo.id])
    assert held.waiting_on is None


def test_schedule_runs_in_its_time_zone_and_catches_up_only_briefly(session: Session) -> None:
    old = add_member(session, "old@x.test", dt.datetime(2026, 9, 1, tzinfo=UTC))
    november = add_member(session, "nov@x.test", dt.datetime(2026, 11, 15, tzinfo=UTC))
    invitation = journey(
        {
            "type": "schedule",
            "cron": "0 9 1 * *",
            "time_zone": "Europe/Paris",
            "audience": "joined_since_previous",
        },
        id="welcome-event",
    )
    digest = journey(
        {"type": "schedule", "cron": "0 9 1 * *", "time_zone": "Europe/Paris"}, id="digest"
    )
    before = dt.datetime(2026, 12, 1, 7, 59, tzinfo=UTC)  # 8:59 in Paris
    assert advance_journeys(session, [invitation, digest], before, no_content).enrolled == 0

    at = dt.datetime(2026, 12, 1, 8, 5, tzinfo=UTC)
    advance_journeys(session, [invitation, digest], at, no_content)
    assert {m.member_id for m in messages(session, "welcome-event")} == {november.id}
    assert {m.member_id for m in messages(session, "digest")} == {old.id, november.id}
    assert enrollments(session, "digest")[0].context["run_at"] == "2026-12-01T08:00:00+00:00"

    # Ten minutes later: same run, nothing new. Three days late (nurture was down): skipped.
    assert (
        advance_journeys(session, [digest], at + dt.timedelta(minutes=10), no_content).enrolled == 0
    )
    assert (
        advance_journeys(
            session, [digest], dt.datetime(2027, 1, 4, tzinfo=UTC), no_content
        ).enrolled
        == 0
    )
    # On time next month (summer time does not matter in winter; 9:00 CET is 8:00 UTC).
    assert (
        advance_journeys(
            session, [digest], dt.datetime(2027, 1, 1, 8, 1, tzinfo=UTC), no_content
        ).enrolled
        == 2
    )


def test_a_wait_that_ends_now_does_not_cost_a_pass(session: Session) -> None:
    monday_nine = dt.datetime(2026, 11, 2, 9, tzinfo=UTC)  # a Monday, 9:00 UTC
    add_member(session, "now@x.test", monday_nine - dt.timedelta(hours=1))
    weekly = journey(
        {"type": "member_joined"},
        {"id": "monday", "type": "wait", "until": {"weekday": "monday", "hour": 9}, "next": "hi"},
        {
            "id": "hi",
            "type": "send",
            "template": "welcome",
            "subject": "Hi",
            "content": {"count": 0},
            "next": "done",
        },
        {"id": "done", "type": "exit"},
        id="weekly",
    )
    advance_journeys(session, [weekly], monday_nine, no_content)
    assert [m.step_id for m in messages(session)] == ["hi"]


def test_a_birthday_is_never_late_for_a_run_in_the_quiet_hours(session: Session) -> None:
    # A run every evening at 22:00 Paris time only: in the quiet hours (21:00-08:00).
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    member = add_member(
        session,
        "anna@x.test",
        dt.datetime(2025, 1, 1, tzinfo=UTC),
        time_zone="Europe/Paris",
        birthday=dt.date(1992, 3, 12),
    )
    birthday = journey({"type": "anniversary", "date": "birthday", "hour": 9}, id="birthday")
    rules = SendingRules(budget=None, quiet_hours=QuietHours(start="21:00", end="08:00"))

    eve = dt.datetime(2026, 3, 11, 22, tzinfo=paris).astimezone(UTC)
    summary = advance_journeys(session, [birthday], eve, no_content, rules=rules)
    assert (summary.enrolled, summary.messages_queued, summary.quiet_deferred) == (1, 0, 0)
    (waiting,) = enrollments(session)
    assert waiting.next_action_at == dt.datetime(2026, 3, 12, 9, tzinfo=paris)

    # The deliver run at 9:00 on the day sends it, on the member's own day.
    nine = dt.datetime(2026, 3, 12, 9, tzinfo=paris).astimezone(UTC)
    assert advance_journeys(session, [birthday], nine, no_content, rules=rules).messages_queued == 1
    (message,) = messages(session)
    assert message.member_id == member.id
    assert message.scheduled_at.astimezone(paris).date() == dt.date(2026, 3, 12)


def test_an_anniversary_is_not_enrolled_more_than_a_day_ahead_nor_after_its_day(
    session: Session,
) -> None:
    add_member(
        session,
        "tokyo@x.test",
        dt.datetime(2025, 1, 1, tzinfo=UTC),
        time_zone="Asia/Tokyo",
        birthday=dt.date(1990, 6, 15),
    )
    birthday = journey({"type": "anniversary", "date": "birthday", "hour": 9}, id="birthday")
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    too_early = dt.datetime(2026, 6, 14, 8, tzinfo=tokyo)  # 25 hours before
    assert advance_journeys(session, [birthday], too_early, no_content).enrolled == 0
    too_late = dt.datetime(2026, 6, 16, 0, 30, tzinfo=tokyo)
    assert advance_journeys(session, [birthday], too_late, no_content).enrolled == 0
    late_on_the_day = dt.datetime(2026, 6, 15, 23, tzinfo=tokyo)
    assert advance_journeys(session, [birthday], late_on_the_day, no_content).messages_queued == 1


@pytest.mark.parametrize("zone_name", ["UTC", "Pacific/Auckland", "America/New_York"])
def test_anniversary_days_leave_out_only_dates_without_an_anniversary_found(
    zone_name: str,
) -> None:
    zone = zoneinfo.ZoneInfo(zone_name)
    dates = [dt.date(2000, 1, 1) + dt.timedelta(days=n) for n in range(366)]  # 2000: leap
    moments = [
        dt.datetime(2027, 2, 27, 23, tzinfo=UTC),  # 28 February next (no 29th in 2027)
        dt.datetime(2027, 2, 28, 12, tzinfo=UTC),
        dt.datetime(2028, 2, 28, 12, tzinfo=UTC),  # a leap year: the 29th is its own day
        dt.datetime(2026, 12, 31, 12, tzinfo=UTC),
    ]
    for now in moments:
        near = anniversary_days(zone, now)
        today = now.astimezone(zone).date()
        assert (today.month, today.day) in near
        for date in dates:
            found = _next_anniversary(date, 9, zone, now)
            if (date.month, date.day) not in near:
                assert found is None, (now, date)
    assert (2, 29) in anniversary_days(dt.UTC, dt.datetime(2027, 2, 28, 12, tzinfo=UTC))
    assert anniversary_days(dt.UTC, dt.datetime(2026, 12, 31, 12, tzinfo=UTC)) == {
        (12, 31),
        (1, 1),
    }
