"""``migrate_enrollments``: members in progress move to the current version, step by step id."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.journeys import JourneyDefinition, advance_journeys, load_journey
from nurture.journeys.migrate import migrate_enrollments
from nurture.storage.models import Enrollment, EnrollmentState, Journey, Member, Message

WELCOME = Path(__file__).parents[2] / "content" / "journeys" / "welcome.yaml"
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def _pick(
    session: Session, member_id: int, count: int, kinds: Any, exclude_keys: frozenset[str]
) -> list[dict[str, Any]]:
    keys = [f"item-{n}" for n in range(20) if f"item-{n}" not in exclude_keys]
    return [{"key": key} for key in keys[:count]]


def _changed(definition: JourneyDefinition, **fields: Any) -> JourneyDefinition:
    return JourneyDefinition.model_validate({**definition.model_dump(mode="json"), **fields})


def _renamed_followup(definition: JourneyDefinition) -> JourneyDefinition:
    data = definition.model_dump(mode="json")
    for step in data["steps"]:
        if step["id"] == "send_followup":
            step["id"] = "send_more"
        if step.get("next") == "send_followup":
            step["next"] = "send_more"
    return JourneyDefinition.model_validate(data)


@pytest.fixture
def welcome() -> JourneyDefinition:
    return load_journey(WELCOME)


@pytest.fixture
def enrolled(session: Session, welcome: JourneyDefinition) -> list[int]:
    """Three members in progress in welcome v1 (waiting for the follow-up), one finished."""
    ids = []
    for n in range(4):
        member = Member(email=f"m{n}@example.org", joined_at=NOW - dt.timedelta(days=1))
        session.add(member)
        session.flush()
        ids.append(member.id)
    advance_journeys(session, [welcome], NOW, _pick)
    finished = session.scalars(select(Enrollment).where(Enrollment.member_id == ids[3])).one()
    finished.state = EnrollmentState.COMPLETED
    finished.current_step = "done"
    session.commit()
    return ids


def _versions(session: Session) -> dict[int, int]:
    """Each enrollment's member and version."""
    rows = session.execute(
        select(Enrollment.member_id, Journey.version).join(
            Journey, Journey.id == Enrollment.journey_id
        )
    ).tuples()
    return dict(rows.all())


def test_members_in_progress_move_and_carry_on_in_the_new_version(
    session: Session, welcome: JourneyDefinition, enrolled: list[int]
) -> None:
    newer = _changed(
        welcome,
        steps=[
            {**step, "subject": "Three more things for you"}
            if step["id"] == "send_followup"
            else step
            for step in welcome.model_dump(mode="json")["steps"]
        ],
    )

    report = migrate_enrollments(session, newer, now=NOW)
    session.commit()

    assert (report.to_version, report.dry_run) == (2, False)
    assert report.to_journey_id is not None
    assert [move.member_id for move in report.moved] == enrolled[:3]
    assert {(move.from_version, move.step) for move in report.moved} == {(1, "send_followup")}
    assert report.left == () and report.from_versions == [1]
    assert _versions(session) == {**dict.fromkeys(enrolled[:3], 2), enrolled[3]: 1}

    summary = advance_journeys(session, [newer], NOW + dt.timedelta(days=3), _pick)
    session.commit()
    assert summary.messages_queued == 3
    followups = session.scalars(select(Message).where(Message.step_id == "send_followup")).all()
    assert {message.subject for message in followups} == {"Three more things for you"}
    assert session.scalar(select(func.count()).select_from(Message)) == 4 + 3  # no resend


def test_a_dry_run_changes_nothing(
    session: Session, welcome: JourneyDefinition, enrolled: list[int]
) -> None:
    newer = _changed(welcome, name="Welcome!")

    report = migrate_enrollments(session, newer, dry_run=True)
    session.commit()

    assert report.dry_run and report.to_version == 2 and report.to_journey_id is None
    assert len(report.moved) == 3
    assert session.scalar(select(func.count()).select_from(Journey)) == 1
    assert set(_versions(session).values()) == {1}


def test_members_at_a_step_the_new_version_lacks_are_left_alone(
    session: Session, welcome: JourneyDefinition, enrolled: list[int]
) -> None:
    renamed = _renamed_followup(welcome)

    report = migrate_enrollments(session, renamed)
    session.commit()

    assert report.moved == ()
    assert [(m.member_id, m.from_version, m.step) for m in report.left] == [
        (member_id, 1, "send_followup") for member_id in enrolled[:3]
    ]
    assert set(_versions(session).values()) == {1}


def test_members_of_a_newer_version_move_back_when_the_file_is_reverted(
    session: Session, welcome: JourneyDefinition, enrolled: list[int]
) -> None:
    newer = _changed(welcome, name="Welcome!")
    migrate_enrollments(session, newer)
    session.commit()

    report = migrate_enrollments(session, welcome)
    session.commit()

    assert report.to_version == 1
    assert {move.from_version for move in report.moved} == {2}
    assert _versions(session) == dict.fromkeys(enrolled, 1)


def test_nothing_to_move_when_everyone_is_on_the_current_version(
    session: Session, welcome: JourneyDefinition, enrolled: list[int]
) -> None:
    report = migrate_enrollments(session, welcome)

    assert report.moved == () and report.left == () and report.to_version == 1
    assert report.to_dict() == {
        "journey": "welcome",
        "to_version": 1,
        "dry_run": False,
        "moved": [],
        "left": [],
    }
