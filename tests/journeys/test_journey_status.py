"""``journey_status``: members per version and step, finished, exited, waiting; emails by status."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from nurture.journeys import JourneyDefinition, load_journey, register_journeys
from nurture.journeys.journey_status import journey_status
from nurture.storage.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    Member,
    Message,
    MessageStatus,
)

JOURNEYS = Path(__file__).parents[2] / "content" / "journeys"
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def _changed(definition: JourneyDefinition, **fields: Any) -> JourneyDefinition:
    return JourneyDefinition.model_validate({**definition.model_dump(mode="json"), **fields})


@pytest.fixture
def welcome() -> JourneyDefinition:
    return load_journey(JOURNEYS / "welcome.yaml")


def _enrol(
    session: Session, journey: Journey, n: int, messages: tuple[MessageStatus, ...] = (), **fields
) -> Enrollment:
    member = Member(email=f"m{n}@example.org", joined_at=NOW - dt.timedelta(days=10))
    session.add(member)
    session.flush()
    enrollment = Enrollment(
        journey_id=journey.id,
        journey_key=journey.key,
        member_id=member.id,
        enrolled_at=NOW,
        **fields,
    )
    session.add(enrollment)
    session.flush()
    for index, status in enumerate(messages):
        session.add(
            Message(
                enrollment_id=enrollment.id,
                step_id=f"send_{index}",
                member_id=member.id,
                journey_key=journey.key,
                template="welcome",
                subject="Hello",
                status=status,
                scheduled_at=NOW,
                created_at=NOW,
            )
        )
    session.flush()
    return enrollment


@pytest.fixture
def two_versions(session: Session, welcome: JourneyDefinition) -> JourneyDefinition:
    """welcome v1 with members in every state, v2 (the returned definition) with one."""
    v1 = register_journeys(session, [welcome], now=NOW)["welcome"]
    newer = _changed(welcome, name="Welcome, second take")
    v2 = register_journeys(session, [newer], now=NOW + dt.timedelta(days=1))["welcome"]
    active = EnrollmentState.ACTIVE
    sent, queued = MessageStatus.SENT, MessageStatus.QUEUED
    _enrol(session, v1, 1, (sent,), state=active, current_step="send_followup")
    _enrol(session, v1, 2, (sent,), state=active, current_step="send_followup", waiting_on="budget")
    _enrol(session, v1, 3, (sent, queued), state=EnrollmentState.COMPLETED, current_step="done")
    _enrol(session, v1, 4, state=EnrollmentState.EXITED, exit_reason="goal")
    _enrol(session, v1, 5, state=EnrollmentState.EXITED, exit_reason="consent")
    _enrol(session, v1, 6, state=EnrollmentState.EXITED, exit_reason="consent")
    _enrol(
        session,
        v2,
        7,
        (MessageStatus.FAILED,),
        state=active,
        current_step="send_welcome",
        waiting_on="quiet_hours",
    )
    session.commit()
    return newer


def test_counts_per_version_as_stored(session: Session, two_versions) -> None:
    (status,) = journey_status(session)

    assert status.journey_key == "welcome"
    assert status.name == "Welcome, second take"  # the newest version's
    assert status.in_workspace is None and status.current_version is None
    old, new = status.versions
    assert (old.version, new.version) == (1, 2)
    assert old.current is None
    assert old.at_step == {"send_followup": 2}
    assert old.active == 2 and old.enrolled == 6
    assert (old.waiting_on_budget, old.waiting_on_quiet_hours) == (1, 0)
    assert (old.completed, old.exited_goal, old.exited_other) == (1, 1, {"consent": 2})
    assert old.messages == {"queued": 1, "sent": 3}
    assert new.at_step == {"send_welcome": 1}
    assert (new.waiting_on_budget, new.waiting_on_quiet_hours) == (0, 1)
    assert (new.completed, new.exited_goal, new.exited_other) == (0, 0, {})
    assert new.messages == {"failed": 1}
    assert status.messages == {"failed": 1, "queued": 1, "sent": 3}
    assert old.registered_at == NOW


def test_the_workspace_file_marks_the_current_version(
    session: Session, two_versions: JourneyDefinition
) -> None:
    birthday = load_journey(JOURNEYS / "birthday.yaml")

    statuses = {s.journey_key: s for s in journey_status(session, [two_versions, birthday])}

    welcome = statuses["welcome"]
    assert welcome.in_workspace is True
    assert [v.current for v in welcome.versions] == [False, True]
    assert welcome.current_version == 2
    assert welcome.active_elsewhere == 2
    never = statuses["birthday"]
    assert never.versions == () and never.in_workspace is True
    assert never.name == "Birthday wishes" and never.current_version is None


def test_a_changed_file_that_never_ran_has_no_current_version(
    session: Session, two_versions: JourneyDefinition
) -> None:
    third = _changed(two_versions, description="changed again")

    (status,) = journey_status(session, [third])

    assert status.current_version is None
    assert [v.current for v in status.versions] == [False, False]
    assert status.active_elsewhere == 3


def test_a_journey_gone_from_the_workspace_is_still_shown(
    session: Session, two_versions: JourneyDefinition
) -> None:
    birthday = load_journey(JOURNEYS / "birthday.yaml")

    statuses = {s.journey_key: s for s in journey_status(session, [birthday])}

    assert statuses["welcome"].in_workspace is False
    assert statuses["welcome"].active_elsewhere == 3


def test_no_journey_no_status(session: Session) -> None:
    assert journey_status(session) == []


def test_the_status_is_json_ready(session: Session, two_versions: JourneyDefinition) -> None:
    (status,) = journey_status(session, [two_versions])

    data = json.loads(json.dumps(status.to_dict()))

    assert data["journey"] == "welcome" and data["current_version"] == 2
    assert data["versions"][0]["at_step"] == {"send_followup": 2}
    assert data["versions"][0]["exited_other"] == {"consent": 2}
    assert data["versions"][1]["current"] is True
    assert data["messages"] == {"failed": 1, "queued": 1, "sent": 3}
