"""The sending rules' decision for one email, on plain values (no database)."""

from __future__ import annotations

import datetime as dt

from nurture.journeys.holds import Hold, hold_for
from nurture.journeys.policy import Budget, QuietHours, SendingRules

UTC = dt.UTC
NOON = dt.datetime(2026, 11, 10, 12, tzinfo=UTC)
RULES = SendingRules(budget=Budget(messages=2, window="7d"), quiet_hours=QuietHours())


def test_no_rules_and_room_in_the_budget_let_the_email_go() -> None:
    assert hold_for(None, over_budget="wait", time_zone=None, recent=[NOON], now=NOON) is None
    recent = [NOON - dt.timedelta(days=8), NOON - dt.timedelta(days=1)]
    assert hold_for(RULES, over_budget="wait", time_zone="UTC", recent=recent, now=NOON) is None


def test_quiet_hours_wait_until_their_end_in_the_members_zone() -> None:
    # Noon in UTC is 23:00 in Nouméa (UTC+11): quiet until 08:00 there, 21:00 UTC.
    hold = hold_for(RULES, over_budget="skip", time_zone="Pacific/Noumea", recent=[], now=NOON)
    assert hold == Hold("quiet_hours", dt.datetime(2026, 11, 10, 21, tzinfo=UTC))


def test_a_spent_budget_waits_for_the_oldest_email_to_leave_the_window_or_skips() -> None:
    recent = [NOON - dt.timedelta(days=2), NOON - dt.timedelta(days=5), NOON]
    waiting = hold_for(RULES, over_budget="wait", time_zone=None, recent=recent, now=NOON)
    assert waiting == Hold("budget", NOON - dt.timedelta(days=2) + dt.timedelta(days=7))
    skipped = hold_for(RULES, over_budget="skip", time_zone=None, recent=recent, now=NOON)
    assert skipped == Hold("budget_skip", None)
