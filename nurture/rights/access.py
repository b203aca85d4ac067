"""Export everything nurture holds about a member as one JSON document (right of access).

The document has a fixed key order and only JSON types: times are ISO 8601 strings in UTC,
vectors are lists of numbers rounded to 6 decimals. ``about`` says in one sentence what each
section holds, so that the file reads on its own.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from nurture.delivery.suppression import find_suppression, normalise_address
from nurture.errors import MemberNotFoundError
from nurture.rights.member_data import (
    find_members,
    member_key,
    member_keyed_tables,
    provider_events_of,
)
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    ContentItem,
    Enrollment,
    Journey,
    Member,
    MemberProfile,
    Message,
    ProviderEvent,
    Recommendation,
    Segment,
    SegmentMembership,
    Suppression,
    utcnow,
)

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_SECTIONS",
    "SECTION_OF_TABLE",
    "export_member",
    "format_export",
    "not_found_message",
]

EXPORT_FORMAT = "nurture.member-export.v1"
"""The ``format`` of the document; a change of its shape gets a new one."""

EXPORT_SECTIONS: dict[str, str] = {
    "members": "The member record: identity, language, time zone, birthday, consent, attributes.",
    "answers": "Answers to the onboarding questionnaire, by question key.",
    "activity": "Activity events: posts, comments, events attended, content viewed, emails "
    "opened and clicked.",
    "profiles": "The computed profile: lifecycle stage; 'features' is the vector segmentation "
    "uses (its layout is named by feature_layout_hash); 'interest' is the unit vector of "
    "interests, from the embeddings of free-text answers and chosen goals.",
    "segment_memberships": "The segments the member was placed in, one row per segmentation run.",
    "recommendations": "Content items recommended to the member, best first, with the reason.",
    "enrollments": "The journeys the member entered and where they stand in each.",
    "messages": "Emails queued or sent: journey step, template, subject as written by the "
    "marketer, the content items they carried, status and times.",
    "provider_events": "Events the mail provider reported about these messages or this address.",
    "suppression": "Whether the address is on the list of addresses never to be mailed, and why.",
}
"""Each section of the document (besides the header) and what it holds."""

SECTION_OF_TABLE: dict[str, str] = {
    "members": "members",
    "answers": "answers",
    "activity_events": "activity",
    "member_profiles": "profiles",
    "segment_memberships": "segment_memberships",
    "recommendations": "recommendations",
    "enrollments": "enrollments",
    "messages": "messages",
    "provider_events": "provider_events",
    "suppressions": "suppression",
}
"""The export section of each table that holds rows about a member (``MEMBER_TABLES``)."""

_DECIMALS = 6


def export_member(
    session: Session, email: str, *, salt: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Everything nurture holds about the member with address ``email``, JSON-ready.

    Args:
        session: The database session (only read).
        email: The member's address, in any case.
        salt: Salt of the suppression list (``Settings.suppression_salt``).
        now: The export time written in the document; default: the clock.

    Returns:
        A dict with, in this order: ``format``, ``exported_at``, ``email``, ``about`` (what each
        section holds), then one key per section of ``EXPORT_SECTIONS``, ``suppression`` last;
        before it, one section per table of ``member_keyed_tables`` (named after the table,
        every column). Sections are lists (``suppression`` is a dict); their rows carry
        ``member_id``.

    Raises:
        MemberNotFoundError: No member has that address (the message says whether the address
            is on the suppression list, as it is after an erasure).
    """
    address = normalise_address(email)
    members = find_members(session, address)
    suppression = find_suppression(session, address, salt) if address else None
    if not members:
        raise MemberNotFoundError(not_found_message(address, suppression))
    ids = [member.id for member in members]
    sections: dict[str, Any] = {
        "members": [_member(member) for member in members],
        "answers": _answers(session, ids),
        "activity": _activity(session, ids),
        "profiles": _profiles(session, ids),
        "segment_memberships": _segment_memberships(session, ids),
        "recommendations": _recommendations(session, ids),
        "enrollments": _enrollments(session, ids),
        "messages": _messages(session, ids),
        "provider_events": [_provider_event(e) for e in provider_events_of(session, ids, address)],
        "suppression": _suppression(suppression),
    }
    about = {name: text for name, text in EXPORT_SECTIONS.items() if name != "suppression"}
    for table in member_keyed_tables():
        about[table.name] = f"Rows of the table {table.name} about the member, every column."
        sections[table.name] = _table_rows(session, table, ids)
    about["suppression"] = EXPORT_SECTIONS["suppression"]
    return {
        "format": EXPORT_FORMAT,
        "exported_at": _iso(now or utcnow()),
        "email": address,
        "about": about,
        **{name: sections[name] for name in about},
    }


# An indented JSON array of numbers only. Its newlines cannot be in a JSON string (they would be
# escaped there), so only arrays are matched, never text inside a string.
_NUMBER_ARRAY = re.compile(r"\[\n\s*(-?[0-9][0-9.eE+-]*(?:,\n\s*-?[0-9][0-9.eE+-]*)*)\n\s*\]")


def format_export(document: Mapping[str, Any]) -> str:
    """The export as indented JSON text, each vector on one line, ending with a newline.

    Args:
        document: What ``export_member`` returned.

    Returns:
        UTF-8-ready text (non-ASCII characters kept as they are).
    """
    text = json.dumps(document, indent=2, ensure_ascii=False)
    return _NUMBER_ARRAY.sub(_one_line, text) + "\n"


def _one_line(match: re.Match[str]) -> str:
    return "[" + ", ".join(number.strip() for number in match.group(1).split(",")) + "]"


def not_found_message(address: str, suppression: Suppression | None) -> str:
    """The message of ``MemberNotFoundError`` for ``address``: says what is left of it, if any."""
    if suppression is None:
        return f"no member with e-mail {address!r}; check the spelling"
    return (
        f"no member with e-mail {address!r}; nurture holds only a salted hash of it on the "
        f"suppression list (reason: {suppression.reason}, since {_iso(suppression.created_at)})"
    )


# --- sections -------------------------------------------------------------------------------


def _member(member: Member) -> dict[str, Any]:
    return {
        "id": member.id,
        "external_id": member.external_id,
        "email": member.email,
        "first_name": member.first_name,
        "last_name": member.last_name,
        "language": member.language,
        "time_zone": member.time_zone,
        "birthday": _iso(member.birthday),
        "joined_at": _iso(member.joined_at),
        "consent_status": _plain(member.consent_status),
        "consent_source": member.consent_source,
        "unsubscribed_categories": _plain(member.unsubscribed_categories),
        "paused_until": _iso(member.paused_until),
        "attributes": _plain(member.attributes),
        "created_at": _iso(member.created_at),
        "updated_at": _iso(member.updated_at),
    }


def _answers(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Answer)
        .where(Answer.member_id.in_(ids))
        .order_by(Answer.member_id, Answer.question_key)
    )
    return [
        {
            "member_id": row.member_id,
            "question": row.question_key,
            "value": _plain(row.value),
            "answered_at": _iso(row.answered_at),
        }
        for row in rows
    ]


def _activity(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(ActivityEvent)
        .where(ActivityEvent.member_id.in_(ids))
        .order_by(ActivityEvent.occurred_at, ActivityEvent.id)
    )
    return [
        {
            "member_id": row.member_id,
            "type": row.type,
            "occurred_at": _iso(row.occurred_at),
            "content_key": row.content_key,
            "properties": _plain(row.properties),
            "idempotency_key": row.idempotency_key,
        }
        for row in rows
    ]


def _profiles(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(MemberProfile)
        .where(MemberProfile.member_id.in_(ids))
        .order_by(MemberProfile.member_id)
    )
    return [
        {
            "member_id": row.member_id,
            "lifecycle_stage": _plain(row.lifecycle_stage),
            "feature_layout_hash": row.feature_names_hash,
            "computed_at": _iso(row.computed_at),
            "n_features": int(row.features.size),
            "features": _vector(row.features),
            "interest": _vector(row.interest),
        }
        for row in rows
    ]


def _segment_memberships(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = session.execute(
        select(SegmentMembership, Segment)
        .join(Segment, Segment.id == SegmentMembership.segment_id)
        .where(SegmentMembership.member_id.in_(ids))
        .order_by(SegmentMembership.run_id, SegmentMembership.id)
    )
    return [
        {
            "member_id": membership.member_id,
            "segmentation_run": membership.run_id,
            "segment_key": segment.key,
            "segment_label": segment.label,
            "segment_kind": _plain(segment.kind),
            "distance": _round(membership.distance),
            "assigned_at": _iso(membership.created_at),
        }
        for membership, segment in rows
    ]


def _recommendations(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Recommendation, ContentItem)
        .join(ContentItem, ContentItem.id == Recommendation.content_item_id)
        .where(Recommendation.member_id.in_(ids))
        .order_by(Recommendation.member_id, Recommendation.rank)
    )
    return [
        {
            "member_id": recommendation.member_id,
            "rank": recommendation.rank,
            "content_key": item.key,
            "title": item.title,
            "url": item.url,
            "kind": item.kind,
            "score": _round(recommendation.score),
            "reason": recommendation.reason,
            "match_run": recommendation.run_id,
            "created_at": _iso(recommendation.created_at),
        }
        for recommendation, item in rows
    ]


def _enrollments(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Enrollment, Journey.version)
        .join(Journey, Journey.id == Enrollment.journey_id)
        .where(Enrollment.member_id.in_(ids))
        .order_by(Enrollment.enrolled_at, Enrollment.id)
    )
    return [
        {
            "id": enrollment.id,
            "member_id": enrollment.member_id,
            "journey": enrollment.journey_key,
            "journey_version": version,
            "occurrence": enrollment.occurrence,
            "state": _plain(enrollment.state),
            "current_step": enrollment.current_step,
            "enrolled_at": _iso(enrollment.enrolled_at),
            "next_action_at": _iso(enrollment.next_action_at),
            "finished_at": _iso(enrollment.finished_at),
        }
        for enrollment, version in rows
    ]


def _messages(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Message).where(Message.member_id.in_(ids)).order_by(Message.scheduled_at, Message.id)
    )
    return [
        {
            "id": row.id,
            "member_id": row.member_id,
            "enrollment_id": row.enrollment_id,
            "journey": row.journey_key,
            "step": row.step_id,
            "template": row.template,
            "subject": row.subject,
            "context": _plain(row.context),
            "status": _plain(row.status),
            "scheduled_at": _iso(row.scheduled_at),
            "created_at": _iso(row.created_at),
            "sent_at": _iso(row.sent_at),
            "attempts": row.attempts,
            "backend": row.backend,
            "provider_message_id": row.provider_message_id,
            "error": row.error,
        }
        for row in rows
    ]


def _provider_event(event: ProviderEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "provider": event.provider,
        "event_id": event.event_id,
        "message_id": event.message_id,
        "type": event.type,
        "occurred_at": _iso(event.occurred_at),
        "payload": _plain(event.payload),
        "received_at": _iso(event.received_at),
    }


def _table_rows(session: Session, table: Table, ids: Sequence[int]) -> list[dict[str, Any]]:
    """Every column of the rows of ``table`` about the members ``ids``, in key order."""
    key = member_key(table)
    assert key is not None  # member_keyed_tables only gives tables with one
    order = [*table.primary_key.columns] or [key]
    rows = session.execute(select(table).where(key.in_(ids)).order_by(*order)).mappings()
    return [{name: _plain(value) for name, value in row.items()} for row in rows]


def _suppression(row: Suppression | None) -> dict[str, Any]:
    if row is None:
        return {"suppressed": False, "reason": None, "source": None, "since": None}
    return {
        "suppressed": True,
        "reason": _plain(row.reason),
        "source": row.source,
        "since": _iso(row.created_at),
    }


# --- JSON values ----------------------------------------------------------------------------


def _iso(value: dt.date | None) -> str | None:
    """ISO 8601; datetimes in UTC (``2026-11-02T09:00:00+00:00``)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.isoformat()


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), _DECIMALS)


def _vector(value: np.ndarray | None) -> list[float] | None:
    if value is None:
        return None
    return [round(float(x), _DECIMALS) for x in np.asarray(value, dtype=np.float64).ravel()]


def _plain(value: Any) -> Any:
    """``value`` with only JSON types: enums as their value, dates as ISO 8601, tuples as lists."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dt.date):
        return _iso(value)
    if isinstance(value, np.ndarray):
        return _vector(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
