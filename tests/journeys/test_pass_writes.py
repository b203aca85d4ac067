"""What one pass writes: each new enrollment once, in the state the pass leaves it.

A new enrollment whose goal is reached, or whose entry step is a wait, is written in the state
the rest of the pass would have left it (exited, or past its wait), never written, read back
and written again; anything else is advanced in its order. Conditions are evaluated once per
distinct value of what they read, their failures counted once per enrollment.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from nurture.journeys import JourneySummary, advance_journeys
from nurture.journeys.facts import Condition, ConditionFacts, condition_true
from nurture.storage.models import (
    Answer,
    Enrollment,
    EnrollmentState,
    ExitReason,
    Message,
)
from tests.journeys.engine_helpers import add_member, enrollments, journey, no_content, send

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)  # a Monday
JOINED = {"type": "member_joined", "within_days": 14}


def _waiting_first(**rules) -> object:
    return journey(
        JOINED,
        {"id": "wait", "type": "wait", "duration": "3d", "next": "hello"},
        send("hello", "done"),
        {"id": "done", "type": "exit"},
        **rules,
    )


def _writes(session: Session, action):
    """What ``action`` returns, and its INSERT and UPDATE statements on ``enrollments``.

    A ``COPY`` into the table (new rows written straight in bulk on PostgreSQL, which the
    driver runs without SQLAlchemy's events) counts as an INSERT.
    """
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        words = statement.split()
        if words[0] in ("INSERT", "UPDATE") and "enrollments" in words[:3]:
            seen.append(words[0])

    copy = psycopg.Cursor.copy

    def recorded_copy(cursor, statement, *args, **kwargs):
        if str(statement).split()[:2] == ["COPY", "enrollments"]:
            seen.append("INSERT")
        return copy(cursor, statement, *args, **kwargs)

    bind = session.get_bind()
    event.listen(bind, "before_cursor_execute", record)
    psycopg.Cursor.copy = recorded_copy  # type: ignore[method-assign]
    try:
        result = action()
    finally:
        psycopg.Cursor.copy = copy  # type: ignore[method-assign]
        event.remove(bind, "before_cursor_execute", record)
    return result, seen


def test_a_new_enrollment_waiting_first_is_written_once_past_its_wait(session: Session) -> None:
    definition = _waiting_first()
    add_member(session, "ada@example.org", NOW - dt.timedelta(days=1))
    add_member(session, "bob@example.org", NOW - dt.timedelta(days=2), time_zone="Asia/Tokyo")

    summary, writes = _writes(session, lambda: advance_journeys(session, [definition], NOW))
    session.commit()

    assert summary == JourneySummary(enrolled=2, advanced=2)
    assert writes == ["INSERT"]  # one insert of both, no update
    for enrollment in session.scalars(select(Enrollment)):
        assert enrollment.state is EnrollmentState.ACTIVE
        assert enrollment.current_step == "hello"
        assert enrollment.next_action_at == NOW + dt.timedelta(days=3)
        assert enrollment.waiting_on is None

    again = advance_journeys(session, [definition], NOW)
    assert again == JourneySummary()
    later = advance_journeys(session, [definition], NOW + dt.timedelta(days=3), no_content)
    session.commit()
    assert later == JourneySummary(messages_queued=2, advanced=2, completed=2)
    assert len(session.scalars(select(Message)).all()) == 2
    assert advance_journeys(session, [definition], NOW + dt.timedelta(days=3)) == JourneySummary()


def test_a_wait_until_a_moment_is_computed_in_each_members_time_zone(session: Session) -> None:
    definition = journey(
        JOINED,
        {"id": "wait", "type": "wait", "until": {"weekday": "tuesday", "hour": 10}, "next": "hi"},
        send("hi", "done"),
        {"id": "done", "type": "exit"},
    )
    paris = add_member(session, "ada@example.org", NOW, time_zone="Europe/Paris")
    tokyo = add_member(session, "bob@example.org", NOW, time_zone="Asia/Tokyo")

    advance_journeys(session, [definition], NOW)
    session.commit()

    rows = session.execute(select(Enrollment.member_id, Enrollment.next_action_at)).tuples()
    due = dict(rows.all())
    assert due[paris.id] == dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)  # 10:00 CET
    assert due[tokyo.id] == dt.datetime(2026, 11, 3, 1, 0, tzinfo=dt.UTC)  # 10:00 JST


def test_a_goal_reached_at_enrolment_exits_at_the_entry_step(session: Session) -> None:
    definition = _waiting_first(goal={"condition": "answers"})
    ada = add_member(session, "ada@example.org", NOW - dt.timedelta(days=1))
    bob = add_member(session, "bob@example.org", NOW - dt.timedelta(days=1))
    session.add(Answer(member_id=ada.id, question_key="role", value="founder"))
    session.flush()

    summary, writes = _writes(session, lambda: advance_journeys(session, [definition], NOW))
    session.commit()

    assert summary == JourneySummary(enrolled=2, advanced=1, goal_reached=1)
    assert writes == ["INSERT"]
    rows = {e.member_id: e for e in session.scalars(select(Enrollment))}
    assert rows[ada.id].state is EnrollmentState.EXITED
    assert rows[ada.id].exit_reason is ExitReason.GOAL
    assert rows[ada.id].current_step == "wait"  # as an exit by _apply_goal leaves it
    assert rows[ada.id].finished_at == NOW and rows[ada.id].next_action_at is None
    assert rows[bob.id].state is EnrollmentState.ACTIVE and rows[bob.id].current_step == "hello"


def test_a_failing_goal_counts_one_error_per_enrollment_and_a_pass(session: Session) -> None:
    definition = _waiting_first(goal={"condition": "member.days_since_joined > 'a'"})
    add_member(session, "ada@example.org", NOW - dt.timedelta(days=1))
    add_member(session, "bob@example.org", NOW - dt.timedelta(days=1))

    summary = advance_journeys(session, [definition], NOW)

    assert summary == JourneySummary(enrolled=2, advanced=2, condition_errors=2)
    # The next pass evaluates the goal again, for each active enrollment.
    assert advance_journeys(session, [definition], NOW).condition_errors == 2


def test_an_entry_wait_ending_now_is_left_to_the_advance(session: Session) -> None:
    definition = journey(
        JOINED,
        {"id": "wait", "type": "wait", "until": {"weekday": "monday", "hour": 9}, "next": "hi"},
        send("hi", "done"),
        {"id": "done", "type": "exit"},
    )
    add_member(session, "ada@example.org", NOW)

    summary, writes = _writes(
        session, lambda: advance_journeys(session, [definition], NOW, no_content)
    )

    assert summary == JourneySummary(enrolled=1, messages_queued=1, advanced=1, completed=1)
    assert writes == ["INSERT", "UPDATE"]


def test_a_condition_holds_as_condition_true_once_per_distinct_value() -> None:
    contexts = {
        member_id: {"lifecycle": stage, "member": {"id": member_id}}
        for member_id, stage in [(1, "active"), (2, "dormant"), (3, "active"), (4, None)]
    }
    facts = ConditionFacts.of(contexts, {})
    errors: list[int] = []
    for expression in ["lifecycle != 'dormant'", "lifecycle > 3", "trigger.n == member.id"]:
        condition = Condition(
            expression, journey_key="j", where="audience", on_error=lambda: errors.append(1)
        )
        for member_id in contexts:
            trigger = {"n": 3}
            expected = condition_true(
                expression, facts.names(member_id, trigger), journey_key="j", where="audience"
            )
            assert condition.holds(facts, member_id, trigger) is expected
    assert len(errors) == 4  # "lifecycle > 3" fails for each member (a text, or none)


def test_a_condition_reading_member_fields_shares_one_evaluation_per_value_of_those_fields(
    monkeypatch,
) -> None:
    import nurture.journeys.facts as facts_module

    contexts = {
        member_id: {"member": {"id": member_id, "email": f"m{member_id}@x.org", "days": days}}
        for member_id, days in [(1, 20), (2, 3), (3, 20), (4, 20), (5, None)]
    }
    for member in contexts.values():
        member["member"]["days_since_joined"] = member["member"].pop("days")
    facts = ConditionFacts.of(contexts, {})
    evaluated: list[str] = []
    real = facts_module.condition_holds

    def counted(expression: str, names: dict, **checks: object) -> bool:
        evaluated.append(expression)
        return real(expression, names, **checks)

    for expression, evaluations in [
        ("member.days_since_joined >= 14", 3),  # 20, 3, none: one each
        ("member.email.endswith('1@x.org')", 5),  # an address each
        ("member['days_since_joined'] >= 14", 3),
        ("(member | length) > 0", 5),  # the whole of member: each member is its own value
    ]:
        expected = {
            member_id: condition_true(
                expression, facts.names(member_id, None), journey_key="j", where="audience"
            )
            for member_id in contexts
        }
        evaluated.clear()
        monkeypatch.setattr(facts_module, "condition_holds", counted)
        condition = Condition(expression, journey_key="j", where="audience")
        found = {member_id: condition.holds(facts, member_id, None) for member_id in contexts}
        monkeypatch.undo()
        assert found == expected
        assert len(evaluated) == evaluations, expression


def test_a_step_left_due_by_the_pass_is_not_advanced_again_in_it(session: Session) -> None:
    """A wait ending now (11:00), met twice, leaves its enrollment due: the next chunks skip it."""
    definition = journey(
        JOINED,
        {"id": "first", "type": "wait", "duration": "1h", "next": "loop"},
        {"id": "loop", "type": "wait", "until": {"hour": 11}, "next": "hello"},
        send("hello", "loop"),
        id="looping",
    )
    for n in range(3):
        add_member(session, f"m{n}@example.org", NOW - dt.timedelta(days=1))
    advance_journeys(session, [definition], NOW, no_content, chunk_size=1)
    later = NOW + dt.timedelta(hours=2)
    summary = advance_journeys(session, [definition], later, no_content, chunk_size=1)
    assert summary.advanced == 3 and summary.messages_queued == 3
    for enrollment in enrollments(session):
        assert (enrollment.current_step, enrollment.next_action_at) == ("hello", later)


def test_a_condition_shares_an_evaluation_only_between_values_of_one_type(monkeypatch) -> None:
    import nurture.journeys.facts as facts_module

    stages = [1, True, 1, 1.0, "1", None, None, 1.0]  # equal in Python, not in their text
    contexts = {member_id: {"lifecycle": stage} for member_id, stage in enumerate(stages)}
    facts = ConditionFacts.of(contexts, {})
    evaluated: list[object] = []
    real = facts_module.condition_holds

    def counted(expression: str, names: dict, **checks: object) -> bool:
        evaluated.append(names["lifecycle"])
        return real(expression, names, **checks)

    expression = "lifecycle == 1"
    expected = {
        member_id: condition_true(
            expression, facts.names(member_id, None), journey_key="j", where="audience"
        )
        for member_id in contexts
    }
    monkeypatch.setattr(facts_module, "condition_holds", counted)
    condition = Condition(expression, journey_key="j", where="audience")
    found = {member_id: condition.holds(facts, member_id, None) for member_id in contexts}

    assert found == expected
    assert evaluated == [1, True, 1.0, "1", None]  # one evaluation per value and type


def test_a_pass_on_postgresql_compiles_no_query_and_leaves_the_setting_as_it_was(
    session: Session,
) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("JIT compilation is PostgreSQL's")
    add_member(session, "new@x.test", NOW - dt.timedelta(days=1))
    session.execute(text("SET LOCAL jit = on"))
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "members" in statement:
            seen.append(conn.exec_driver_sql("SELECT current_setting('jit')").scalar_one())

    bind = session.get_bind()
    event.listen(bind, "before_cursor_execute", record)
    try:
        summary = advance_journeys(session, [_waiting_first()], NOW, no_content)
    finally:
        event.remove(bind, "before_cursor_execute", record)

    assert summary.enrolled == 1
    assert seen and set(seen) == {"off"}
    assert session.scalar(text("SELECT current_setting('jit')")) == "on"
