"""The journey engine: enrolment, sends, waits, completion, versions, consent, idempotency."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.delivery import suppress_address
from nurture.errors import JourneyValidationError
from nurture.journeys import (
    JourneyDefinition,
    JourneySummary,
    advance_journeys,
    load_journey,
    register_journeys,
)
from nurture.journeys.experiments import in_holdout
from nurture.storage.models import (
    Answer,
    Enrollment,
    EnrollmentState,
    Journey,
    Member,
    Message,
    MessageStatus,
)

WELCOME = Path(__file__).parents[2] / "content" / "journeys" / "welcome.yaml"
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
CATALOGUE = [f"item-{n}" for n in range(20)]


class FakePicker:
    """Picks catalogue items in order, skipping excluded keys; records each call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self,
        session: Session,
        member_id: int,
        count: int,
        kinds: list[str] | None,
        exclude_keys: frozenset[str],
    ) -> list[dict[str, Any]]:
        self.calls.append(
            {"member_id": member_id, "count": count, "kinds": kinds, "exclude": exclude_keys}
        )
        keys = [key for key in CATALOGUE if key not in exclude_keys][:count]
        return [{"key": key, "title": key.title(), "url": f"https://x.test/{key}"} for key in keys]


@pytest.fixture
def welcome() -> JourneyDefinition:
    return load_journey(WELCOME)


def _add_member(session: Session, email: str, **fields: Any) -> Member:
    member = Member(
        email=email,
        first_name=email.split("@")[0].title(),
        joined_at=fields.pop("joined_at", NOW - dt.timedelta(days=1)),
        **fields,
    )
    session.add(member)
    session.flush()
    return member


def _messages(session: Session) -> list[Message]:
    return list(session.scalars(select(Message).order_by(Message.id)))


def test_new_member_is_enrolled_and_gets_the_welcome(session: Session, welcome) -> None:
    ada = _add_member(session, "ada@example.org", language="fr")
    picker = FakePicker()

    summary = advance_journeys(session, [welcome], NOW, picker)
    session.commit()

    assert summary == JourneySummary(enrolled=1, messages_queued=1, advanced=1)
    (enrollment,) = session.scalars(select(Enrollment)).all()
    assert enrollment.member_id == ada.id
    assert enrollment.state is EnrollmentState.ACTIVE
    assert enrollment.current_step == "send_followup"
    assert enrollment.next_action_at == NOW + dt.timedelta(days=3)
    (message,) = _messages(session)
    assert message.step_id == "send_welcome"
    assert message.template == "welcome"
    assert message.status is MessageStatus.QUEUED
    assert message.scheduled_at == NOW
    assert message.subject == "Bienvenue dans {{ community_name }}, {{ member.first_name }} !"
    assert [item["key"] for item in message.context["items"]] == CATALOGUE[:3]
    assert picker.calls == [
        {"member_id": ada.id, "count": 3, "kinds": None, "exclude": frozenset()}
    ]


def test_rerun_at_the_same_time_writes_nothing(session: Session, welcome) -> None:
    _add_member(session, "ada@example.org")
    advance_journeys(session, [welcome], NOW, FakePicker())
    session.commit()

    summary = advance_journeys(session, [welcome], NOW, FakePicker())
    session.commit()

    assert summary == JourneySummary()
    assert len(_messages(session)) == 1
    assert session.scalar(select(func.count()).select_from(Enrollment)) == 1


def test_followup_after_three_days_then_completed(session: Session, welcome) -> None:
    _add_member(session, "ada@example.org")
    picker = FakePicker()
    advance_journeys(session, [welcome], NOW, picker)

    early = advance_journeys(session, [welcome], NOW + dt.timedelta(days=2, hours=23), picker)
    assert early == JourneySummary()

    later = NOW + dt.timedelta(days=3)
    summary = advance_journeys(session, [welcome], later, picker)
    session.commit()

    assert summary == JourneySummary(messages_queued=1, advanced=1, completed=1)
    _, followup = _messages(session)
    assert followup.step_id == "send_followup"
    assert followup.template == "welcome_followup"
    assert followup.subject == "Three things picked for you"
    assert followup.scheduled_at == later
    # nothing sent before is picked again
    assert picker.calls[-1]["exclude"] == frozenset(CATALOGUE[:3])
    assert [item["key"] for item in followup.context["items"]] == CATALOGUE[3:6]
    (enrollment,) = session.scalars(select(Enrollment)).all()
    assert enrollment.state is EnrollmentState.COMPLETED
    assert enrollment.current_step == "done"
    assert enrollment.finished_at == later
    assert enrollment.next_action_at is None

    assert advance_journeys(session, [welcome], later + dt.timedelta(days=30), picker) == (
        JourneySummary()
    )
    assert len(_messages(session)) == 2


def test_changed_definition_is_version_two_and_enrolled_members_finish_version_one(
    session: Session, welcome
) -> None:
    _add_member(session, "ada@example.org")
    advance_journeys(session, [welcome], NOW, FakePicker())
    session.commit()

    steps = list(welcome.steps)
    steps[2] = steps[2].model_copy(update={"template": "welcome_followup_v2"})
    changed = welcome.model_copy(update={"steps": steps}).with_source(welcome.source_path)
    assert changed.definition_hash != welcome.definition_hash

    _add_member(session, "grace@example.org", joined_at=NOW + dt.timedelta(days=1))
    later = NOW + dt.timedelta(days=3)
    summary = advance_journeys(session, [changed], later, FakePicker())
    session.commit()

    versions = session.scalars(select(Journey).order_by(Journey.version)).all()
    assert [(row.key, row.version) for row in versions] == [("welcome", 1), ("welcome", 2)]
    assert versions[1].definition_hash == changed.definition_hash
    assert summary.enrolled == 1
    version_of = {
        email: version
        for email, version in session.execute(
            select(Member.email, Journey.version)
            .join(Enrollment, Enrollment.member_id == Member.id)
            .join(Journey, Journey.id == Enrollment.journey_id)
        )
    }
    assert version_of == {"ada@example.org": 1, "grace@example.org": 2}
    followups = [m for m in _messages(session) if m.step_id == "send_followup"]
    assert [m.template for m in followups] == ["welcome_followup"]  # ada stays on version 1

    # registering the same definitions again changes nothing
    current = register_journeys(session, [changed])
    assert current["welcome"].version == 2
    assert session.scalar(select(func.count()).select_from(Journey)) == 2


def test_members_without_consent_are_skipped(session: Session, welcome) -> None:
    _add_member(session, "ada@example.org")
    _add_member(session, "bob@example.org", consent_status="denied")
    _add_member(session, "cy@example.org", consent_status="unknown")

    summary = advance_journeys(session, [welcome], NOW, FakePicker())

    assert summary.enrolled == 1
    assert [m.member_id for m in _messages(session)] == [
        session.scalar(select(Member.id).where(Member.email == "ada@example.org"))
    ]


def test_transactional_journeys_ignore_consent(session: Session, welcome) -> None:
    _add_member(session, "bob@example.org", consent_status="denied")
    transactional = welcome.model_copy(update={"transactional": True})
    summary = advance_journeys(session, [transactional], NOW, FakePicker())
    assert summary.enrolled == 1
    assert summary.messages_queued == 1


def test_suppressed_addresses_are_never_enrolled(session: Session, welcome) -> None:
    _add_member(session, "ada@example.org")
    _add_member(session, "una@example.org", consent_status="unknown")
    _add_member(session, "Gone@Example.org")
    _add_member(session, "gone.too@example.org", consent_status="unknown")
    suppress_address(session, "gone@example.org", "salt", "erased")
    suppress_address(session, "gone.too@example.org", "salt", "unsubscribed")
    notice = welcome.model_copy(update={"id": "notice", "transactional": True})

    advance_journeys(session, [welcome, notice], NOW, FakePicker(), suppression_salt="salt")

    enrolled = session.execute(
        select(Enrollment.journey_key, Member.email).join(Member, Member.id == Enrollment.member_id)
    ).all()
    assert sorted(enrolled) == [
        ("notice", "ada@example.org"),
        ("notice", "una@example.org"),
        ("welcome", "ada@example.org"),
    ]


def test_without_a_salt_enrolment_does_not_read_the_suppression_list(
    session: Session, welcome
) -> None:
    _add_member(session, "gone@example.org")
    suppress_address(session, "gone@example.org", "salt", "erased")
    assert advance_journeys(session, [welcome], NOW, FakePicker()).enrolled == 1


def test_withdrawn_consent_exits_the_enrollment(session: Session, welcome) -> None:
    ada = _add_member(session, "ada@example.org")
    advance_journeys(session, [welcome], NOW, FakePicker())
    ada.consent_status = "denied"
    summary = advance_journeys(session, [welcome], NOW + dt.timedelta(days=3), FakePicker())
    assert summary == JourneySummary(advanced=1, exited=1)
    (enrollment,) = session.scalars(select(Enrollment)).all()
    assert enrollment.state is EnrollmentState.EXITED
    assert len(_messages(session)) == 1


def test_members_who_join_later_are_enrolled_later(session: Session, welcome) -> None:
    _add_member(session, "future@example.org", joined_at=NOW + dt.timedelta(hours=1))
    assert advance_journeys(session, [welcome], NOW, FakePicker()).enrolled == 0
    assert (
        advance_journeys(session, [welcome], NOW + dt.timedelta(hours=1), FakePicker()).enrolled
        == 1
    )


def test_within_days_only_enrols_recent_members(session: Session, welcome) -> None:
    recent = welcome.model_copy(
        update={"trigger": welcome.trigger.model_copy(update={"within_days": 7})}
    )
    _add_member(session, "old@example.org", joined_at=NOW - dt.timedelta(days=30))
    new = _add_member(session, "new@example.org", joined_at=NOW - dt.timedelta(days=2))
    advance_journeys(session, [recent], NOW, FakePicker())
    assert [e.member_id for e in session.scalars(select(Enrollment))] == [new.id]


def test_questionnaire_answered_trigger(session: Session) -> None:
    definition = load_journey(Path(__file__).parent / "valid" / "questionnaire_followup.yaml")
    answered = _add_member(session, "ada@example.org", language="fr-CA")
    _add_member(session, "silent@example.org")
    session.add(
        Answer(member_id=answered.id, question_key="role", value="founder", answered_at=NOW)
    )
    session.flush()
    picker = FakePicker()

    summary = advance_journeys(session, [definition], NOW, picker)

    assert summary.enrolled == 1
    (message,) = _messages(session)
    assert message.member_id == answered.id
    assert message.subject == "Merci bien, {{ member.first_name }}"
    assert message.context == {
        "items": [],
        "slots": {},
        "trigger": {},
        "questionnaire_answered": True,
        "profile": {
            "answers": {"role": "founder"},
            "attributes": {},
            "lifecycle": None,
            "segments": [],
        },
    }
    assert picker.calls == []  # count 0: no content asked for

    later = NOW + dt.timedelta(weeks=1, days=2, hours=12)
    advance_journeys(session, [definition], later, picker)
    assert picker.calls[-1]["kinds"] == ["event", "webinar"]
    assert len(_messages(session)[-1].context["items"]) == 5


def test_many_members_in_small_chunks(session: Session, welcome) -> None:
    for n in range(23):
        _add_member(session, f"m{n}@example.org")
    summary = advance_journeys(session, [welcome], NOW, FakePicker(), chunk_size=5)
    held = sum(in_holdout(welcome, member_id, "") for member_id in range(1, 24))  # holdout: 10%
    got = 23 - held
    assert summary == JourneySummary(enrolled=23, messages_queued=got, advanced=got)
    again = advance_journeys(session, [welcome], NOW, FakePicker(), chunk_size=5)
    assert again == JourneySummary()


def test_existing_message_is_never_written_twice(session: Session, welcome) -> None:
    """A message written by another worker (same enrollment step) is kept, not duplicated."""
    _add_member(session, "ada@example.org")
    advance_journeys(session, [welcome], NOW, FakePicker())
    (enrollment,) = session.scalars(select(Enrollment)).all()
    # simulate a worker that crashed after writing the message but before moving the enrollment
    enrollment.current_step = "send_welcome"
    enrollment.next_action_at = NOW
    summary = advance_journeys(session, [welcome], NOW, FakePicker())
    assert summary.messages_queued == 0
    assert len(_messages(session)) == 1
    assert enrollment.current_step == "send_followup"


def test_duplicate_journey_ids_are_refused(session: Session, welcome) -> None:
    with pytest.raises(JourneyValidationError, match="journey id 'welcome' is also used"):
        register_journeys(session, [welcome, welcome])


def test_naive_now_is_refused(session: Session, welcome) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        advance_journeys(session, [welcome], NOW.replace(tzinfo=None), FakePicker())
