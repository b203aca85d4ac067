"""Property: whatever the sequence of runs, one enrollment step never gets two messages.

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

from nurture.journeys import advance_journeys, load_journey
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
            if enrollment.state is EnrollmentState.COMPLETED:
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
