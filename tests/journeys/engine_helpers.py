"""Small builders for engine tests: members, events, journeys written as dicts."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.journeys import JourneyDefinition
from nurture.storage.models import ActivityEvent, Enrollment, Member, Message

_event_numbers = itertools.count(1)


def add_member(session: Session, email: str, joined_at: dt.datetime, **fields: Any) -> Member:
    """A member with consent, flushed so it has an id."""
    member = Member(
        email=email, first_name=email.split("@")[0].title(), joined_at=joined_at, **fields
    )
    session.add(member)
    session.flush()
    return member


def add_event(
    session: Session, member: Member, kind: str, at: dt.datetime, **fields: Any
) -> ActivityEvent:
    """An activity event of a member."""
    event = ActivityEvent(
        member_id=member.id,
        type=kind,
        occurred_at=at,
        idempotency_key=f"test-{next(_event_numbers)}",
        **fields,
    )
    session.add(event)
    session.flush()
    return event


def journey(trigger: dict[str, Any], *steps: dict[str, Any], **rules: Any) -> JourneyDefinition:
    """A journey from its trigger and steps; without steps: one send, then exit."""
    if not steps:
        steps = (send("hello", "done"), {"id": "done", "type": "exit"})
    data = {
        "id": rules.pop("id", "journey"),
        "name": "A journey",
        "category": rules.pop("category", "care"),
        "trigger": trigger,
        "steps": list(steps),
        **rules,
    }
    return JourneyDefinition.model_validate(data)


def send(step_id: str, next_step: str, **fields: Any) -> dict[str, Any]:
    """A send step without content."""
    return {
        "id": step_id,
        "type": "send",
        "template": "welcome",
        "subject": "Hello",
        "content": {"count": 0},
        "next": next_step,
        **fields,
    }


def no_content(*args: Any) -> list[dict[str, Any]]:
    """A content picker that picks nothing."""
    return []


def messages(session: Session, journey_key: str | None = None) -> list[Message]:
    """Messages, in id order, of one journey or all."""
    query = select(Message).order_by(Message.id)
    if journey_key is not None:
        query = query.where(Message.journey_key == journey_key)
    return list(session.scalars(query))


def enrollments(session: Session, journey_key: str | None = None) -> list[Enrollment]:
    """Enrollments, in id order, of one journey or all."""
    query = select(Enrollment).order_by(Enrollment.id)
    if journey_key is not None:
        query = query.where(Enrollment.journey_key == journey_key)
    return list(session.scalars(query))
