"""Fixtures for the data-rights tests: one member with a row in every member table, a scanner."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from nurture.delivery import suppress_address
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    Base,
    ContentItem,
    EmbeddingCacheEntry,
    Enrollment,
    EnrollmentState,
    Journey,
    MatchRun,
    Member,
    MemberProfile,
    Message,
    MessageStatus,
    ProviderEvent,
    Recommendation,
    Segment,
    SegmentationRun,
    SegmentMembership,
)
from tests.pipeline_helpers import welcome_only_workspace

SALT = "rights-test-salt"
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)

EMAIL = "zephyrine.q@example.org"
FIRST_NAME = "Zephyrine"
LAST_NAME = "Quillfeather"
FREE_TEXT = "Zephyrine Quillfeather here: Zephyrine wants Quillfeather meetups, says Zephyrine"


@dataclasses.dataclass(frozen=True)
class Seeded:
    """Ids of what ``seeded`` wrote."""

    member_id: int
    other_id: int
    segment_id: int
    message_id: int


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        workspace=welcome_only_workspace(tmp_path / "workspace"),
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
        chunk_size=16,
        suppression_salt=SALT,
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    with Runtime(settings) as runtime:
        yield runtime


def _member(email: str, first_name: str, last_name: str, **fields: Any) -> Member:
    return Member(
        email=email,
        first_name=first_name,
        last_name=last_name,
        joined_at=NOW - dt.timedelta(days=30),
        consent_status="granted",
        consent_source="signup_form",
        **fields,
    )


def _rows_of(session: Session, member: Member, *, segment: Segment, journey: Journey) -> int:
    """Answers, activity, profile, membership, recommendation, enrollment and message of
    ``member``; returns the message id."""
    session.add_all(
        [
            Answer(member_id=member.id, question_key="role", value="founder", answered_at=NOW),
            Answer(
                member_id=member.id, question_key="goals", value=["run_events"], answered_at=NOW
            ),
            Answer(
                member_id=member.id,
                question_key="expectations",
                value=f"{member.first_name} here: I want my meetups to grow",
                answered_at=NOW,
            ),
            ActivityEvent(
                member_id=member.id,
                type="post",
                occurred_at=NOW - dt.timedelta(days=2),
                properties={"title": f"Hello from {member.first_name} {member.last_name}"},
                idempotency_key=f"post-{member.id}",
            ),
            MemberProfile(
                member_id=member.id,
                features=np.array([0.5, 1.0, 0.0], dtype=np.float32),
                interest=np.array([0.6, 0.8], dtype=np.float32),
                lifecycle_stage="active",
                feature_names_hash="f" * 64,
                computed_at=NOW,
            ),
            SegmentMembership(
                run_id=segment.first_run_id, member_id=member.id, segment_id=segment.id
            ),
        ]
    )
    item = session.scalar(select(ContentItem)) or ContentItem(
        key="meetup-checklist",
        title="The meetup checklist",
        url="https://example.org/meetups",
        kind="article",
        language="en",
        text_hash="t" * 64,
        source_path="library/meetup-checklist.md",
    )
    session.add(item)
    run = session.scalar(select(MatchRun)) or MatchRun(model="hashing-64")
    session.add(run)
    session.flush()
    session.add(
        Recommendation(
            member_id=member.id,
            content_item_id=item.id,
            run_id=run.id,
            rank=1,
            score=0.75,
            reason=f"Popular with members like you ({segment.label})",
        )
    )
    enrollment = Enrollment(
        journey_id=journey.id,
        journey_key=journey.key,
        member_id=member.id,
        state=EnrollmentState.ACTIVE,
        current_step="send_followup",
        next_action_at=NOW + dt.timedelta(days=3),
        enrolled_at=NOW,
    )
    session.add(enrollment)
    session.flush()
    message = Message(
        enrollment_id=enrollment.id,
        step_id="send_welcome",
        member_id=member.id,
        journey_key=journey.key,
        template="welcome",
        subject="Welcome, {{ member.first_name }}!",
        context={
            "items": [
                {
                    "key": item.key,
                    "title": item.title,
                    "reason": f"Popular with members like you ({segment.label})",
                }
            ]
        },
        status=MessageStatus.FAILED,
        scheduled_at=NOW,
        error=f"message to {member.email!r}: refused",
    )
    session.add(message)
    session.flush()
    return message.id


def seed_member_data(session: Session) -> Seeded:
    """The member (EMAIL) and another one, each with rows in every member table."""
    member = _member(
        EMAIL,
        FIRST_NAME,
        LAST_NAME,
        external_id="crm-42",
        birthday=dt.date(1990, 5, 17),
        attributes={"country": "FR", "nickname": FIRST_NAME},
    )
    other = _member("ada@example.org", "Ada", "Lovelace", external_id="crm-7")
    run = SegmentationRun(algorithm="kmeans", n_segments=2)
    session.add_all([member, other, run])
    session.flush()
    segment = Segment(
        key="seg-1",
        label=f"Founder · '{FIRST_NAME.lower()}, meetups, grow'",
        description=f"2 members (100%). They write about: {FIRST_NAME.lower()}, meetups.",
        card={
            "size": 2,
            "examples": [member.id, other.id],
            "top_terms": [FIRST_NAME.lower(), "meetups", "grow"],
        },
        first_run_id=run.id,
        last_run_id=run.id,
    )
    journey = Journey(
        key="welcome",
        version=1,
        definition_hash="h" * 64,
        definition={"id": "welcome", "transactional": False},
        source_path="journeys/welcome.yaml",
    )
    session.add_all([segment, journey])
    session.flush()
    message_id = _rows_of(session, member, segment=segment, journey=journey)
    other_message_id = _rows_of(session, other, segment=segment, journey=journey)
    session.add_all(
        [
            ProviderEvent(
                provider="sendgrid",
                event_id="ev-delivered",
                message_id=message_id,
                type="delivered",
                occurred_at=NOW,
                payload={"sg_message_id": "abc"},
            ),
            ProviderEvent(
                provider="sendgrid",
                event_id="ev-bounce",
                message_id=None,
                type="bounce",
                occurred_at=NOW,
                payload={
                    "email": EMAIL.upper(),
                    "reason": f"{FIRST_NAME} {LAST_NAME}: no such user",
                },
            ),
            ProviderEvent(
                provider="sendgrid",
                event_id="ev-other",
                message_id=other_message_id,
                type="open",
                occurred_at=NOW,
                payload={"email": "ada@example.org"},
            ),
            EmbeddingCacheEntry(
                model="hashing-64",
                text_hash=_text_hash(f"{FIRST_NAME} here: I want my meetups to grow"),
                dim=2,
                vector=np.array([1.0, 0.0], dtype=np.float32),
            ),
        ]
    )
    suppress_address(session, "someone-else@example.org", SALT, "unsubscribed", "one-click")
    session.commit()
    return Seeded(member.id, other.id, segment.id, message_id)


def _text_hash(text: str) -> str:
    from nurture.embedding.cache import text_hash

    return text_hash(text)


@pytest.fixture
def seeded(session: Session) -> Seeded:
    return seed_member_data(session)


def find_mentions(engine: Engine, needles: list[str]) -> list[tuple[str, str, str]]:
    """Every (table, column, value) in the database whose text holds one of ``needles``.

    Every column of every table is read; strings, and JSON values as their JSON text, are
    searched in lower case.
    """
    lowered = [needle.lower() for needle in needles]
    found = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)).mappings():
                for column, value in row.items():
                    if isinstance(value, str):
                        text = value
                    elif isinstance(value, dict | list):
                        text = json.dumps(value, ensure_ascii=False)
                    else:
                        continue
                    if any(needle in text.lower() for needle in lowered):
                        found.append((table.name, column, text))
    return found
