"""Journey simulations: what they report, that they keep nothing, and the demo over 30 days."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.journeys import (
    JourneyDefinition,
    advance_journeys,
    load_journey,
    load_journeys,
    load_sending_rules,
)
from nurture.journeys.experiments import in_holdout
from nurture.journeys.models import (
    ActivityTrigger,
    AnniversaryTrigger,
    ContentGapTrigger,
    InactivityTrigger,
    MemberJoinedTrigger,
)
from nurture.journeys.policy import Budget, QuietHours, SendingRules
from nurture.journeys.simulate import (
    DEFAULT_TRIGGER_EVERY,
    HeldDay,
    SimulationReport,
    sample_members,
    simulate_journeys,
)
from nurture.journeys.triggers import ENGAGEMENT_TYPES, local_zone, topic_coverage
from nurture.orchestration import run_cycle
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import open_session
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    Base,
    Enrollment,
    Member,
    MemberProfile,
    Message,
)
from tests.pipeline_helpers import CONTENT, NOW, seed_demo

# The shipped welcome, for members of any seniority (these members joined long ago).
_SHIPPED_WELCOME = load_journey(Path(__file__).parents[2] / "content" / "journeys" / "welcome.yaml")
WELCOME = _SHIPPED_WELCOME.model_copy(
    update={"trigger": _SHIPPED_WELCOME.trigger.model_copy(update={"within_days": None})}
)
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # a Monday
NO_RULES = SendingRules(budget=None, quiet_hours=None)


def _pick(
    session: Session, member_id: int, count: int, kinds: Any, exclude_keys: frozenset[str]
) -> list[dict[str, Any]]:
    keys = [f"item-{n}" for n in range(60) if f"item-{n}" not in exclude_keys]
    return [{"key": key, "title": key} for key in keys[:count]]


def _journey(key: str, trigger: dict[str, Any], **fields: Any) -> JourneyDefinition:
    """A one-email journey (plus whatever ``fields`` replace)."""
    return JourneyDefinition.model_validate(
        {
            "id": key,
            "name": key.title(),
            "category": "care",
            "trigger": trigger,
            "steps": [
                {
                    "id": "send",
                    "type": "send",
                    "template": key,
                    "subject": key,
                    "content": {"count": 1},
                    "next": "done",
                },
                {"id": "done", "type": "exit"},
            ],
            **fields,
        }
    )


def _member(session: Session, email: str, **fields: Any) -> Member:
    fields.setdefault("joined_at", START - dt.timedelta(days=400))
    member = Member(email=email, first_name=email.split("@")[0].title(), **fields)
    session.add(member)
    session.flush()
    return member


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return value


def _snapshot(session: Session) -> dict[str, list[str]]:
    """Every row of every table, as sorted text: equal snapshots, equal databases."""
    return {
        table.name: sorted(
            repr(tuple(_plain(value) for value in row)) for row in session.execute(select(table))
        )
        for table in Base.metadata.sorted_tables
    }


def _sends(report: SimulationReport) -> list[tuple[dt.datetime, str, str, str]]:
    return [(s.at, s.email, s.journey_key, s.step_id) for s in report.sends]


# --- what a simulation reports --------------------------------------------------------------


def test_welcome_and_follow_up_are_reported_and_nothing_is_kept(session: Session) -> None:
    ada = _member(session, "ada@example.org", time_zone="Europe/Paris")
    _member(session, "bob@example.org", joined_at=START + dt.timedelta(days=1, minutes=20))
    session.commit()
    before = _snapshot(session)

    report = simulate_journeys(
        session, [WELCOME], start=START, days=5, rules=NO_RULES, pick_content=_pick
    )

    assert _sends(report) == [
        (START, "ada@example.org", "welcome", "send_welcome"),
        (START + dt.timedelta(days=1, hours=1), "bob@example.org", "welcome", "send_welcome"),
        (START + dt.timedelta(days=3), "ada@example.org", "welcome", "send_followup"),
        (START + dt.timedelta(days=4, hours=1), "bob@example.org", "welcome", "send_followup"),
    ]
    assert [s.step_id for s in report.timeline(ada.id)] == ["send_welcome", "send_followup"]
    assert report.timeline(ada.id)[0].local_at.hour == 10  # Paris, in March
    assert report.totals.messages_queued == 4 and report.totals.completed == 2
    assert report.members_reached("welcome") == {ada.id, ada.id + 1}
    assert report.entered == {"welcome": 2}
    assert report.held == () and report.budget is None and report.over_budget == ()
    volumes = report.daily_volumes()
    assert len(volumes) == 6 and volumes[START.date()] == {"welcome": 1}  # 9:00 to 9:00
    assert sum(sum(day.values()) for day in volumes.values()) == 4
    assert report.passes < 5 * 24  # idle hours are skipped

    assert _snapshot(session) == before
    session.commit()
    with open_session(session.get_bind()) as other:  # type: ignore[arg-type]
        assert _snapshot(other) == before


def test_a_failing_run_keeps_nothing_and_the_session_stays_usable(session: Session) -> None:
    for n in range(3):
        _member(session, f"m{n}@example.org", joined_at=START + dt.timedelta(hours=10 * n))
    session.commit()
    before = _snapshot(session)
    calls = []

    def failing(*args: Any) -> list[dict[str, Any]]:
        calls.append(args)
        if len(calls) == 3:
            raise RuntimeError("the recommender is down")
        return _pick(*args)

    with pytest.raises(RuntimeError, match="recommender is down"):
        simulate_journeys(
            session, [WELCOME], start=START, days=3, rules=NO_RULES, pick_content=failing
        )

    assert _snapshot(session) == before
    session.commit()
    assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_a_simulation_runs_like_the_engine_run_at_every_tick(session: Session) -> None:
    """Skipping idle ticks changes nothing for triggers with a clock (joins, dates, schedules)."""
    zones = ["Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Auckland", "UTC"]
    for n in range(10):
        birthday = (START + dt.timedelta(days=n % 6)).date().replace(year=1990)
        member = _member(
            session,
            f"m{n}@example.org",
            time_zone=zones[n % len(zones)],
            birthday=birthday,
            joined_at=START + dt.timedelta(hours=7 * n - 20),
        )
        if n % 3 == 0:  # a first post, some of them during the period
            session.add(
                ActivityEvent(
                    member_id=member.id,
                    type="post",
                    occurred_at=START + dt.timedelta(hours=13 * n - 5),
                    idempotency_key=f"post-{n}",
                )
            )
    session.commit()
    definitions = [
        WELCOME,
        _journey("birthday", {"type": "anniversary", "date": "birthday", "hour": 9}),
        _journey("thanks", {"type": "activity", "events": ["post"]}, reentry="once"),
        _journey(
            "weekly",
            {"type": "schedule", "cron": "30 7 * * TUE", "time_zone": "Europe/Paris"},
            category="promotion",
            over_budget="skip",
        ),
    ]
    rules = SendingRules(budget=Budget(messages=2, window="3d"), quiet_hours=QuietHours())

    report = simulate_journeys(
        session, definitions, start=START, days=8, rules=rules, pick_content=_pick
    )

    expected = []
    savepoint = session.begin_nested()
    for hour in range(8 * 24):
        now = START + dt.timedelta(hours=hour)
        advance_journeys(session, definitions, now, _pick, rules=rules)
    for message in session.scalars(select(Message)):
        email = session.get(Member, message.member_id).email  # type: ignore[union-attr]
        expected.append((message.created_at, email, message.journey_key, message.step_id))
    savepoint.rollback()
    assert sorted(_sends(report)) == sorted(expected)
    assert {s.journey_key for s in report.sends} == {"welcome", "birthday", "thanks", "weekly"}
    assert report.passes < 8 * 24


def test_budget_waits_and_skips_are_counted_per_journey(session: Session) -> None:
    ada = _member(session, "ada@example.org")
    bob = _member(session, "bob@example.org")
    session.commit()
    skipping = _journey(
        "news",
        {"type": "member_joined", "within_days": None},
        category="promotion",
        over_budget="skip",
    )
    rules = SendingRules(budget=Budget(messages=1, window="7d"), quiet_hours=None)

    report = simulate_journeys(
        session, [WELCOME, skipping], start=START, days=12, rules=rules, pick_content=_pick
    )

    steps = Counter((s.member_id, s.step_id) for s in report.sends)
    assert steps == {
        (ada.id, "send_welcome"): 1,
        (bob.id, "send_welcome"): 1,
        (ada.id, "send_followup"): 1,
        (bob.id, "send_followup"): 1,
    }
    followups = [s.at for s in report.sends if s.step_id == "send_followup"]
    assert followups == [START + dt.timedelta(days=7)] * 2  # waited for room, not 3 days
    welcome, news = report.held
    assert (welcome.journey_key, welcome.budget_deferred, welcome.budget_skipped) == (
        "welcome",
        2,
        0,
    )
    assert (news.journey_key, news.budget_deferred, news.budget_skipped) == ("news", 0, 2)
    assert welcome.members == news.members == (ada.id, bob.id)
    assert report.totals.budget_deferred == 2 and report.totals.budget_skipped == 2
    day = START.date()
    assert report.held_daily == (
        HeldDay(day, "news", budget_skipped=2),
        HeldDay(day + dt.timedelta(days=3), "welcome", budget_deferred=2),
    )
    assert report.to_dict()["held_daily"][1] == {
        "day": "2026-03-05",
        "journey": "welcome",
        "budget_deferred": 2,
        "budget_skipped": 0,
        "quiet_deferred": 0,
    }
    assert report.max_in_window == 1 and report.over_budget == ()
    assert report.window_peaks == {ada.id: 1, bob.id: 1}


def test_quiet_hours_hold_emails_until_the_morning(session: Session) -> None:
    kiri = _member(session, "kiri@example.org", time_zone="Pacific/Auckland")
    session.commit()
    rules = SendingRules(budget=None, quiet_hours=QuietHours(start="21:00", end="08:00"))

    report = simulate_journeys(
        session, [WELCOME], start=START, days=1, rules=rules, pick_content=_pick
    )

    (send,) = report.sends
    assert send.member_id == kiri.id
    assert send.local_at.hour == 8  # 22:00 in Auckland at START, held until 08:00
    (held,) = report.held
    assert (held.journey_key, held.quiet_deferred, held.members) == ("welcome", 1, (kiri.id,))
    assert report.totals.quiet_deferred == 1


def test_emails_queued_before_the_period_count_in_the_budget_window(session: Session) -> None:
    ada = _member(session, "ada@example.org")
    old = _journey("old", {"type": "member_joined", "within_days": None})
    advance_journeys(session, [old], START - dt.timedelta(days=2), _pick)
    session.commit()
    rules = SendingRules(budget=Budget(messages=2, window="7d"), quiet_hours=None)

    report = simulate_journeys(
        session, [WELCOME], start=START, days=10, rules=rules, pick_content=_pick
    )

    assert report.window_peaks == {ada.id: 2}
    followup = next(s for s in report.sends if s.step_id == "send_followup")
    assert followup.at == START + dt.timedelta(days=5)  # room once the old email is 7 days old


def test_only_the_given_members_are_simulated(session: Session) -> None:
    members = [_member(session, f"m{n}@example.org") for n in range(20)]
    session.commit()

    chosen = sample_members(session, 5, seed=42)
    again = sample_members(session, 5, seed=42)
    report = simulate_journeys(
        session,
        [WELCOME],
        start=START,
        days=1,
        rules=NO_RULES,
        member_ids=chosen,
        pick_content=_pick,
    )

    assert chosen == again and len(chosen) == 5
    assert sample_members(session, 50, seed=1) == [member.id for member in members]
    assert {s.member_id for s in report.sends} == set(chosen)
    assert report.member_ids == tuple(chosen)
    with pytest.raises(ValueError, match="at least 1"):
        sample_members(session, 0, seed=1)


def test_the_report_is_json_ready(session: Session) -> None:
    _member(session, "ada@example.org")
    session.commit()
    rules = SendingRules(budget=Budget(messages=3, window="7d"), quiet_hours=None)
    report = simulate_journeys(
        session, [WELCOME], start=START, days=2, rules=rules, pick_content=_pick
    )

    data = json.loads(json.dumps(report.to_dict()))

    assert data["start"] == START.isoformat()
    assert data["trigger_every_seconds"] == DEFAULT_TRIGGER_EVERY.total_seconds()
    assert data["budget"] == {
        "messages": 3,
        "window": "7d",
        "max_in_window": 1,
        "over_budget": [],
    }
    assert data["daily"][START.date().isoformat()] == {"welcome": 1}
    assert data["entered"] == {"welcome": 1}
    assert data["sends"][0]["step"] == "send_welcome"
    assert report.to_dict("other")["sends"] == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": START.replace(tzinfo=None)}, "naive"),
        ({"days": 0}, "positive"),
        ({"tick": dt.timedelta(0)}, "positive"),
    ],
)
def test_invalid_arguments_are_refused(
    session: Session, fields: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"start": START, "days": 1, "rules": None, **fields}
    with pytest.raises(ValueError, match=message):
        simulate_journeys(session, [WELCOME], **arguments)


# --- the demo community over 30 days --------------------------------------------------------

DEMO_START = NOW - dt.timedelta(days=1)
"""When ``seed_demo`` generates the community: its activity stops there."""
DEMO_DAYS = 30


@pytest.fixture
def demo(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        workspace=CONTENT,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
    )
    with Runtime(settings) as runtime:
        seed_demo(runtime, 300)
        run_cycle(runtime, DEMO_START, lists=("nightly",))
        yield runtime


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _same_day(date: dt.date, on: dt.date) -> bool:
    try:
        return date.replace(year=on.year) == on
    except ValueError:  # 29 February falls on 28 February in other years
        return on.month == 2 and on.day == 28


def test_thirty_days_of_the_demo_community(demo: Runtime) -> None:
    settings = demo.settings
    definitions = {d.id: d for d in load_journeys(settings.journeys_dir, settings.templates_dir)}
    rules = load_sending_rules(settings.sending_rules_path)
    assert rules.budget is not None
    with demo.open_session() as session:
        before = session.scalar(select(func.count()).select_from(Enrollment))
        report = simulate_journeys(
            session,
            list(definitions.values()),
            start=DEMO_START,
            days=DEMO_DAYS,
            rules=rules,
            suppression_salt=settings.suppression_salt.get_secret_value(),
        )
        assert session.scalar(select(func.count()).select_from(Enrollment)) == before
        checks = _DemoChecks(session, report, settings.suppression_salt.get_secret_value())
        for key in definitions:
            # Every threshold of the demo was crossed long ago: nothing to celebrate.
            if key != "milestone":
                assert report.members_reached(key), f"{key}: nobody in {DEMO_DAYS} days"
            getattr(checks, key, checks.unknown)(definitions[key])
    assert report.over_budget == ()
    assert report.max_in_window <= rules.budget.messages
    assert len(report.sends) == report.totals.messages_queued
    for held in ("budget_deferred", "budget_skipped", "quiet_deferred"):  # all attributed
        assert sum(getattr(entry, held) for entry in report.held) == getattr(report.totals, held)
        assert sum(getattr(day, held) for day in report.held_daily) == getattr(report.totals, held)
    pairs = Counter((s.member_id, s.journey_key, s.step_id) for s in report.sends)
    assert max(pairs.values()) == 1  # every journey here is once per member in 30 days


class _DemoChecks:
    """Per journey of the demo workspace: its recipients are the members its trigger allows."""

    def __init__(self, session: Session, report: SimulationReport, salt: str) -> None:
        self.session = session
        self.report = report
        self.salt = salt
        self.members = {m.id: m for m in session.scalars(select(Member))}
        self.sends: dict[str, list[Any]] = defaultdict(list)
        for send in report.sends:
            self.sends[send.journey_key].append(send)

    def _steps(self, journey: JourneyDefinition, step: str) -> dict[int, dt.datetime]:
        return {s.member_id: s.at for s in self.sends[journey.id] if s.step_id == step}

    def unknown(self, journey: JourneyDefinition) -> None:
        pytest.fail(f"journey {journey.id} of the demo workspace has no check in this test yet")

    def welcome(self, key: JourneyDefinition) -> None:
        assert isinstance(key.trigger, MemberJoinedTrigger) and key.trigger.within_days
        first = self._steps(key, "send_welcome")
        recent = DEMO_START - dt.timedelta(days=key.trigger.within_days)
        newcomers = {m.id for m in self.members.values() if _aware(m.joined_at) >= recent}
        control = {m for m in newcomers if in_holdout(key, m, self.salt)}  # holdout: 10%
        assert self.report.arms[key.id]["control"] == len(control)
        assert set(first) == newcomers - control  # the newcomers only, once: never older ones
        for member_id, at in self._steps(key, "send_followup").items():
            assert at >= first[member_id] + dt.timedelta(days=3)

    def questionnaire_reminder(self, key: JourneyDefinition) -> None:
        assert isinstance(key.trigger, MemberJoinedTrigger) and key.trigger.within_days
        answered = set(self.session.scalars(select(Answer.member_id).distinct()))
        for member_id, at in self._steps(key, "send_reminder").items():
            member = self.members[member_id]
            assert member_id not in answered
            assert member.joined_at >= DEMO_START - dt.timedelta(days=key.trigger.within_days)
            assert at >= member.joined_at + dt.timedelta(days=3)

    def first_contribution(self, key: JourneyDefinition) -> None:
        assert isinstance(key.trigger, ActivityTrigger) and key.trigger.count == 1
        first_post = dict(
            self.session.execute(
                select(ActivityEvent.member_id, func.min(ActivityEvent.occurred_at))
                .where(ActivityEvent.type == "post")
                .group_by(ActivityEvent.member_id)
            )
            .tuples()
            .all()
        )
        for member_id, at in self._steps(key, "send_thanks").items():
            posted = first_post[member_id]
            posted = posted if posted.tzinfo else posted.replace(tzinfo=dt.UTC)
            assert DEMO_START - dt.timedelta(days=key.trigger.within_days) <= posted <= at

    def birthday(self, key: JourneyDefinition) -> None:
        assert isinstance(key.trigger, AnniversaryTrigger) and key.trigger.date == "birthday"
        for send in self.sends[key.id]:
            birthday = self.members[send.member_id].birthday
            assert birthday is not None and _same_day(birthday, send.local_at.date())
            assert send.local_at.hour >= key.trigger.hour

    def milestone(self, key: JourneyDefinition) -> None:
        assert self._steps(key, "send_celebration") == {}  # no stale threshold celebrated

    def reengagement(self, key: JourneyDefinition) -> None:
        assert isinstance(key.trigger, InactivityTrigger) and key.trigger.events
        types = key.trigger.events
        last = dict(
            self.session.execute(
                select(ActivityEvent.member_id, func.max(ActivityEvent.occurred_at))
                .where(ActivityEvent.type.in_(types))
                .group_by(ActivityEvent.member_id)
            )
            .tuples()
            .all()
        )
        checkins = self._steps(key, "send_checkin")
        for member_id, at in checkins.items():
            member = self.members[member_id]
            silent_since = last.get(member_id) or member.joined_at
            silent_since = (
                silent_since if silent_since.tzinfo else silent_since.replace(tzinfo=dt.UTC)
            )
            assert silent_since <= at - dt.timedelta(days=key.trigger.days)
        for member_id, at in self._steps(key, "send_last_note").items():
            assert at >= checkins[member_id] + dt.timedelta(days=7)

    def content_invitation(self, key: JourneyDefinition) -> None:
        trigger = key.trigger
        assert isinstance(trigger, ContentGapTrigger)
        coverage = topic_coverage(self.session, DEMO_START)
        ignored = {tag.lower() for tag in trigger.ignore_tags}
        gap_items = {
            tag: keys
            for tag, keys in coverage.items()
            if tag not in ignored and len(keys) <= trigger.max_items
        }
        for member_id, at in self._steps(key, "send_invitation").items():
            member = self.members[member_id]
            assert member.joined_at <= at - dt.timedelta(days=14)  # the audience
            engaged = Counter(
                self.session.scalars(
                    select(ActivityEvent.content_key).where(
                        ActivityEvent.member_id == member_id,
                        ActivityEvent.type.in_(ENGAGEMENT_TYPES),
                        ActivityEvent.occurred_at
                        >= DEMO_START - dt.timedelta(days=trigger.within_days),
                        ActivityEvent.occurred_at <= at,
                    )
                )
            )
            assert any(
                sum(engaged[item] for item in items) >= trigger.min_engagements
                for items in gap_items.values()
            ), member.email

    def digest(self, key: JourneyDefinition) -> None:
        stages = dict(
            self.session.execute(select(MemberProfile.member_id, MemberProfile.lifecycle_stage))
            .tuples()
            .all()
        )
        for send in self.sends[key.id]:
            local = send.at.astimezone(local_zone(send.time_zone))
            assert local.weekday() == 0 and local.hour >= 9  # Monday morning, their time
            assert stages.get(send.member_id) != "dormant"
