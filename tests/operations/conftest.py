"""A small database built row by row, for the operations tests."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from sqlalchemy.orm import Session

from nurture.storage.models import (
    ContentItem,
    Enrollment,
    EnrollmentState,
    Journey,
    Member,
    Message,
    MessageStatus,
    ProviderEvent,
    Suppression,
)

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


class Rows:
    """Adds rows to the test database with sensible defaults; each method flushes."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._numbers = itertools.count(1)

    def _add(self, row: Any) -> Any:
        self.session.add(row)
        self.session.flush()
        return row

    def member(self, **fields: Any) -> Member:
        n = next(self._numbers)
        values = {"email": f"member{n}@example.org", "joined_at": NOW - dt.timedelta(days=30)}
        return self._add(Member(**{**values, **fields}))

    def journey(self, key: str, steps: list[str], version: int = 1) -> Journey:
        """A journey version whose definition has a send step per id of ``steps`` (in order)."""
        definition = {
            "id": key,
            "name": key.title(),
            "steps": [
                *({"id": step, "type": "send", "template": f"{key}_{step}"} for step in steps),
                {"id": "done", "type": "exit"},
            ],
        }
        return self._add(
            Journey(
                key=key,
                version=version,
                definition_hash=f"{key}-{version}",
                definition=definition,
                source_path=f"journeys/{key}.yaml",
                created_at=NOW - dt.timedelta(days=10 - version),
            )
        )

    def enrollment(
        self, journey: Journey, member: Member | None = None, **fields: Any
    ) -> Enrollment:
        member = member or self.member()
        values = {"state": EnrollmentState.ACTIVE, "enrolled_at": NOW - dt.timedelta(days=5)}
        return self._add(
            Enrollment(
                journey_id=journey.id,
                journey_key=journey.key,
                member_id=member.id,
                **{**values, **fields},
            )
        )

    def message(
        self,
        enrollment: Enrollment,
        step: str,
        status: MessageStatus = MessageStatus.SENT,
        **fields: Any,
    ) -> Message:
        values: dict[str, Any] = {
            "scheduled_at": NOW - dt.timedelta(days=1),
            "created_at": NOW - dt.timedelta(days=1),
        }
        if status == MessageStatus.SENT:
            values["sent_at"] = NOW - dt.timedelta(hours=23)
        return self._add(
            Message(
                enrollment_id=enrollment.id,
                step_id=step,
                member_id=enrollment.member_id,
                journey_key=enrollment.journey_key,
                template=f"{enrollment.journey_key}_{step}",
                subject="Hello",
                status=status,
                **{**values, **fields},
            )
        )

    def event(self, message: Message, kind: str, **fields: Any) -> ProviderEvent:
        n = next(self._numbers)
        values = {"provider": "sendgrid", "event_id": f"evt-{n}", "occurred_at": NOW}
        return self._add(ProviderEvent(message_id=message.id, type=kind, **{**values, **fields}))

    def suppression(self, reason: str, created_at: dt.datetime = NOW) -> Suppression:
        n = next(self._numbers)
        return self._add(Suppression(email_hash=f"hash-{n}", reason=reason, created_at=created_at))

    def item(self, key: str, **fields: Any) -> ContentItem:
        values = {
            "title": key.title(),
            "url": f"https://example.org/{key}",
            "kind": "article",
            "language": "en",
            "text_hash": key,
            "source_path": f"library/{key}.md",
        }
        return self._add(ContentItem(key=key, **{**values, **fields}))


@pytest.fixture
def rows(session: Session) -> Rows:
    """Row builders on the test's database session."""
    return Rows(session)
