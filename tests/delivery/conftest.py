"""Fixtures for the delivery tests: a renderer on the shipped templates, rows to deliver."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from nurture.delivery import TemplateRenderer
from nurture.storage.models import Enrollment, Journey, Member, Message

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "content" / "templates"
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
SECRET = "test-secret"

ITEMS: list[dict[str, Any]] = [
    {
        "key": "b2b-masterclass",
        "title": "Grow a B2B community",
        "url": "https://example.org/b2b",
        "kind": "masterclass",
        "summary": "Three levers that work.",
        "reason": "you said you want to grow a B2B community",
    },
    {
        "key": "welcome-webinar",
        "title": "Onboarding newcomers",
        "url": "https://example.org/onboarding",
        "kind": "webinar",
        "summary": "",
        "reason": "you run an employee community",
    },
    {
        "key": "meetup",
        "title": "Paris meetup",
        "url": "https://example.org/meetup",
        "kind": "event",
        "summary": "Drinks and talks.",
        "reason": "you like events",
    },
    {
        "key": "extra",
        "title": "A fourth item",
        "url": "https://example.org/extra",
        "kind": "article",
        "summary": "",
        "reason": "extra",
    },
]


def make_renderer(templates_dir: Path = TEMPLATES_DIR) -> TemplateRenderer:
    return TemplateRenderer(
        templates_dir,
        community_name="Builders & Co",
        public_base_url="https://nurture.example.org/",
        unsubscribe_secret=SECRET,
    )


@pytest.fixture
def renderer() -> TemplateRenderer:
    return make_renderer()


@pytest.fixture
def add_message(session: Session) -> Callable[..., Message]:
    """Insert a member (or reuse one), a journey, an enrollment and a queued message."""
    journey = Journey(
        key="welcome", version=1, definition_hash="h", definition={}, source_path="welcome.yaml"
    )
    session.add(journey)
    session.flush()
    counter = {"n": 0}

    def add(
        *,
        member: Member | None = None,
        email: str | None = None,
        language: str = "en",
        first_name: str = "Ada",
        consent_status: str = "granted",
        template: str = "welcome",
        subject: str = "Welcome to {{ community_name }}, {{ member.first_name }}!",
        step_id: str | None = None,
        scheduled_at: dt.datetime = NOW,
        context: dict[str, Any] | None = None,
    ) -> Message:
        counter["n"] += 1
        if member is None:
            member = Member(
                email=email or f"member{counter['n']}@example.org",
                first_name=first_name,
                last_name="Lovelace",
                language=language,
                joined_at=NOW,
                consent_status=consent_status,
            )
            session.add(member)
            session.flush()
        enrollment = Enrollment(
            journey_id=journey.id,
            journey_key="welcome",
            member_id=member.id,
            occurrence=counter["n"],
        )
        session.add(enrollment)
        session.flush()
        message = Message(
            enrollment_id=enrollment.id,
            step_id=step_id or "hello",
            member_id=member.id,
            journey_key="welcome",
            template=template,
            subject=subject,
            context={"items": ITEMS} if context is None else context,
            scheduled_at=scheduled_at,
        )
        session.add(message)
        session.commit()
        return message

    return add
