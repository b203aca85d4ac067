"""The backfill guard: a run that would start emailing much of the community at once."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from nurture.errors import BackfillRefusedError
from nurture.journeys import advance_journeys
from nurture.journeys.backfill import measure_backfill
from nurture.journeys.policy import BackfillLimit, SendingRules
from nurture.journeys.simulate import simulate_journeys
from tests.journeys.engine_helpers import add_member, enrollments, journey, messages, no_content

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 10, 12, tzinfo=UTC)
LONG_AGO = NOW - dt.timedelta(days=400)


def _community(session: Session, old: int = 100, new: int = 5) -> None:
    for number in range(old):
        add_member(session, f"old{number}@x.test", LONG_AGO + dt.timedelta(hours=number))
    for number in range(new):
        add_member(session, f"new{number}@x.test", NOW - dt.timedelta(days=2))


def test_a_first_run_welcoming_everyone_is_refused_then_allowed(session: Session) -> None:
    _community(session)
    everyone = journey({"type": "member_joined", "within_days": None}, id="welcome")

    with pytest.raises(BackfillRefusedError) as refused, session.begin_nested():
        advance_journeys(session, [everyone], NOW, no_content, backfill=BackfillLimit())
    message = str(refused.value)
    assert "105 of 105 members (100%) at once" in message
    assert "over the backfill limit of 20% (sending.yaml backfill.max_share)" in message
    assert message.count("welcome 105") == 1
    assert "--allow-backfill" in message and "nurture journeys simulate" in message
    assert enrollments(session) == [] and messages(session) == []  # nothing kept

    summary = advance_journeys(session, [everyone], NOW, no_content, backfill=None)  # allowed
    assert (summary.enrolled, summary.messages_queued) == (105, 105)


def test_the_shipped_default_welcomes_only_newcomers_and_passes_the_guard(
    session: Session,
) -> None:
    _community(session)
    newcomers = journey({"type": "member_joined"}, id="welcome")  # within_days: 14
    summary = advance_journeys(session, [newcomers], NOW, no_content, backfill=BackfillLimit())
    assert summary.enrolled == 5


def test_a_small_run_is_never_a_backfill_and_the_limit_is_configurable(
    session: Session,
) -> None:
    _community(session, old=10, new=5)
    newcomers = journey({"type": "member_joined"}, id="welcome")
    strict = BackfillLimit(max_share=0.2, min_members=5)
    with (
        pytest.raises(BackfillRefusedError, match=r"5 of 15 members \(33%\)"),
        session.begin_nested(),
    ):
        advance_journeys(session, [newcomers], NOW, no_content, backfill=strict)
    # 5 members is fewer than the default min_members (50): a small community, not a backfill.
    allowed = advance_journeys(session, [newcomers], NOW, no_content, backfill=BackfillLimit())
    assert allowed.enrolled == 5


def test_journeys_meant_for_everyone_at_once_do_not_count(session: Session) -> None:
    _community(session)
    digest = journey({"type": "schedule", "cron": "0 12 10 * *"}, id="digest", category="promotion")
    summary = advance_journeys(session, [digest], NOW, no_content, backfill=BackfillLimit())
    assert summary.enrolled == 105
    found = measure_backfill(session, [digest], NOW, BackfillLimit())
    assert (found.members, found.exceeded) == (0, False)


def test_simulate_shows_the_backfill_a_run_would_refuse(session: Session) -> None:
    _community(session)
    session.commit()
    everyone = journey({"type": "member_joined", "within_days": None}, id="welcome")
    silence = journey({"type": "inactivity", "days": 30}, id="reengagement")
    rules = SendingRules(budget=None, quiet_hours=None)  # the default backfill limit

    report = simulate_journeys(
        session, [everyone, silence], start=NOW, days=2, rules=rules, pick_content=no_content
    )

    assert report.backfill is not None and report.backfill.exceeded
    assert report.backfill.at == NOW
    assert report.backfill.members == 105 and report.backfill.community == 105
    assert dict(report.backfill.by_journey) == {"welcome": 105, "reengagement": 100}
    data = report.to_dict()["backfill"]
    assert data["exceeded"] is True and data["share"] == 1.0
    assert enrollments(session) == []  # a simulation keeps nothing

    unguarded = SendingRules(budget=None, quiet_hours=None, backfill=None)
    report = simulate_journeys(
        session, [everyone], start=NOW, days=1, rules=unguarded, pick_content=no_content
    )
    assert report.backfill is None
