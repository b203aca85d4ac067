"""Properties: whatever the sequence of runs, one enrollment step never gets two messages, and
with a budget no member ever gets more emails in one window than it allows.

Runs on the shared ``engine`` fixture (SQLite, and PostgreSQL when configured); every example
starts from an emptied database.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from nurture.journeys import JourneyDefinition, advance_journeys, load_journey
from nurture.journeys.policy import Budget, QuietHours, SendingRules
from nurture.storage.models import Base, Enrollment, EnrollmentState, Member, Message

WELCOME = load_journey(Path(__file__).parents[2] / "content" / "journeys" / "welcome.yaml")
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _empty(engine: Engine) -> None:
    """Delete every row, children first, so that each example starts from an empty database."""
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))


def _pick(
    session: Session, member_id: int, count: int, kinds: Any, exclude_keys: frozenset[str]
) -> list[dict[str, Any]]:
    keys = [f"item-{n}" for n in range(40) if f"item-{n}" not in exclude_keys]
    return [{"key": key} for key in keys[:count]]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    joins=st.lists(st.integers(min_value=0, max_value=10 * 24), min_size=1, max_size=6),
    steps=st.lists(st.integers(min_value=0, max_value=5 * 24), min_size=1, max_size=12),
    repeat=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_no_two_messages_for_one_enrollment_step(
    engine: Engine, joins: list[int], steps: list[int], repeat: list[bool]
) -> None:
    _empty(engine)
    with Session(engine) as session:
        for n, hours in enumerate(joins):
            session.add(
                Member(email=f"m{n}@example.org", joined_at=START + dt.timedelta(hours=hours))
            )
        session.commit()

        now = START
        for index, hours in enumerate(steps):
            now += dt.timedelta(hours=hours)
            advance_journeys(session, [WELCOME], now, _pick, chunk_size=2)
            if repeat[index]:  # the same run again, as after a retry
                advance_journeys(session, [WELCOME], now, _pick, chunk_size=2)
            session.commit()

        pairs = Counter(session.execute(select(Message.enrollment_id, Message.step_id)))
        assert all(count == 1 for count in pairs.values())
        per_member = Counter(
            session.scalars(select(Enrollment.member_id).where(Enrollment.journey_key == "welcome"))
        )
        assert all(count == 1 for count in per_member.values())
        for enrollment in session.scalars(select(Enrollment)):
            sent = {step for (enrollment_id, step) in pairs if enrollment_id == enrollment.id}
            if enrollment.arm == "control":  # the shipped welcome holds 10% out: sent nothing
                assert sent == set()
            elif enrollment.state is EnrollmentState.COMPLETED:
                assert sent == {"send_welcome", "send_followup"}
            else:
                assert sent == {"send_welcome"}
            items = [
                item["key"]
                for message in session.scalars(
                    select(Message).where(Message.member_id == enrollment.member_id)
                )
                for item in message.context["items"]
            ]
            assert len(items) == len(set(items))  # no item sent twice to one member


NUDGE = JourneyDefinition.model_validate(
    {
        "id": "nudge",
        "name": "Two nudges a day apart",
        "category": "promotion",
        "over_budget": "skip",
        "trigger": {"type": "member_joined"},
        "steps": [
            {"id": "first", "type": "send", "template": "t", "subject": "s", "next": "pause"},
            {"id": "pause", "type": "wait", "duration": "1d", "next": "second"},
            {"id": "second", "type": "send", "template": "t", "subject": "s", "next": "done"},
            {"id": "done", "type": "exit"},
        ],
    }
)
BIRTHDAY = load_journey(Path(__file__).parents[2] / "content" / "journeys" / "birthday.yaml")
ZONES = ("UTC", "Europe/Paris", "America/Los_Angeles", "Pacific/Auckland", "Asia/Kolkata")

members_strategy = st.lists(
    st.tuples(
        st.integers(min_value=-5 * 24, max_value=8 * 24),  # joined, hours after START
        st.sampled_from(ZONES),
        st.integers(min_value=0, max_value=9),  # birthday, days after START
    ),
    min_size=1,
    max_size=6,
)
runs_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=60),  # hours since the previous run
        st.integers(min_value=0, max_value=3),  # this worker's clock is behind by (hours)
        st.booleans(),  # run by the second worker
        st.booleans(),  # only for some members (a simulation)
        st.booleans(),  # run again at once, as after a retry
        st.integers(min_value=1, max_value=4),  # chunk size
    ),
    min_size=1,
    max_size=10,
)
rules_strategy = st.one_of(
    st.none(),
    st.builds(
        SendingRules,
        budget=st.builds(
            Budget,
            messages=st.integers(min_value=1, max_value=3),
            window=st.sampled_from(["12h", "1d", "3d", "7d"]),
        ),
        quiet_hours=st.sampled_from([None, QuietHours()]),
    ),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    members=members_strategy,
    runs=runs_strategy,
    journeys=st.sets(st.sampled_from(["welcome", "nudge", "birthday"]), min_size=1),
    rules=rules_strategy,
)
def test_runs_at_random_times_never_send_a_step_twice_nor_over_budget(
    engine: Engine,
    members: list[tuple[int, str, int]],
    runs: list[tuple[int, int, bool, bool, bool, int]],
    journeys: set[str],
    rules: SendingRules | None,
) -> None:
    _empty(engine)
    definitions = [d for d in (WELCOME, NUDGE, BIRTHDAY) if d.id in journeys]
    with Session(engine) as first, Session(engine) as second:
        for n, (hours, zone, birthday) in enumerate(members):
            first.add(
                Member(
                    email=f"m{n}@example.org",
                    time_zone=zone,
                    joined_at=START + dt.timedelta(hours=hours),
                    birthday=(START + dt.timedelta(days=birthday)).date().replace(year=1990),
                )
            )
        first.commit()
        ids = sorted(first.scalars(select(Member.id)))

        clock = START
        for hours, behind, other, some, repeat, chunk_size in runs:
            clock += dt.timedelta(hours=hours)
            now = clock - dt.timedelta(hours=behind)
            worker = second if other else first
            chosen = ids[::2] if some else None
            for _ in range(2 if repeat else 1):
                advance_journeys(
                    worker,
                    definitions,
                    now,
                    _pick,
                    chunk_size=chunk_size,
                    rules=rules,
                    member_ids=chosen,
                )
            worker.commit()

        rows = first.execute(
            select(Message.enrollment_id, Message.step_id, Message.member_id, Message.created_at)
        ).all()
        pairs = Counter((enrollment_id, step_id) for enrollment_id, step_id, _, _ in rows)
        assert all(count == 1 for count in pairs.values())
        if rules is not None and rules.budget is not None:
            window, limit = rules.budget.window_delta, rules.budget.messages
            times: dict[int, list[dt.datetime]] = {}
            for _, _, member_id, created_at in rows:
                times.setdefault(member_id, []).append(created_at)
            for moments in times.values():
                for end in moments:
                    in_window = [m for m in moments if end - window < m <= end]
                    assert len(in_window) <= limit, (sorted(moments), window, limit)


def _written(session: Session) -> list[list[tuple[Any, ...]]]:
    """Every enrollment and message, in id order, by what they hold rather than their ids.

    Ids are left out (PostgreSQL's sequences go on after the rows are deleted): a row names its
    member by address and its enrollment by member, journey and occurrence.
    """
    ids = ("id", "journey_id", "member_id", "enrollment_id")
    enrollments = Enrollment.__table__
    messages = Message.__table__
    members = Member.__table__
    return [
        [
            tuple(row)
            for row in session.execute(
                select(members.c.email, *(c for c in enrollments.c if c.name not in ids))
                .join(members, members.c.id == enrollments.c.member_id)
                .order_by(enrollments.c.id)
            )
        ],
        [
            tuple(row)
            for row in session.execute(
                select(
                    members.c.email,
                    enrollments.c.journey_key,
                    enrollments.c.occurrence,
                    *(c for c in messages.c if c.name not in ids),
                )
                .join(members, members.c.id == messages.c.member_id)
                .join(enrollments, enrollments.c.id == messages.c.enrollment_id)
                .order_by(messages.c.id)
            )
        ],
    ]


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    members=members_strategy,
    hours=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=6),
    chunk_size=st.integers(min_value=1, max_value=3),
    rules=rules_strategy,
)
def test_small_chunks_and_a_small_member_capacity_write_what_one_chunk_writes(
    engine: Engine,
    members: list[tuple[int, str, int]],
    hours: list[int],
    chunk_size: int,
    rules: SendingRules | None,
) -> None:
    """What a pass keeps of its members, and how it pages through them, change nothing written."""
    written = []
    for small in (False, True):
        _empty(engine)
        with Session(engine) as session:
            for n, (joined, zone, birthday) in enumerate(members):
                session.add(
                    Member(
                        id=n + 1,  # the same ids on both sides: draws (holdout) key on them
                        email=f"m{n}@example.org",
                        time_zone=zone,
                        joined_at=START + dt.timedelta(hours=joined),
                        birthday=(START + dt.timedelta(days=birthday)).date().replace(year=1990),
                    )
                )
            session.commit()
            now = START
            for step in hours:
                now += dt.timedelta(hours=step)
                advance_journeys(
                    session,
                    [WELCOME, NUDGE, BIRTHDAY],
                    now,
                    _pick,
                    rules=rules,
                    chunk_size=chunk_size if small else 500,
                    member_capacity=1 if small else 10_000,
                )
                session.commit()
            written.append(_written(session))
    assert written[0] == written[1]
