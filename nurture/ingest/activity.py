"""Import activity events; each is stored once, however often it is imported.

Fields: ``member`` (external id or e-mail), ``type`` (see ``ACTIVITY_TYPES``), ``occurred_at``
(ISO 8601 date-time with offset), ``content_key`` (optional), ``properties`` (a JSON object; in
CSV, JSON text), ``idempotency_key`` (optional). Without an idempotency key, one is derived from
the member, type, time (in UTC), properties and content key, so the same event imported twice,
even from files that name the member differently, is stored once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from nurture.errors import ImportRecordError
from nurture.ingest.batches import (
    DEFAULT_BATCH_SIZE,
    Applied,
    ImportSummary,
    Outcome,
    Row,
    run_import,
)
from nurture.ingest.fields import parse_choice, parse_datetime, parse_json_object, parse_text
from nurture.ingest.members import resolve_member_refs
from nurture.storage.models import ActivityEvent

__all__ = [
    "ACTIVITY_COLUMNS",
    "ACTIVITY_REQUIRED_COLUMNS",
    "ACTIVITY_TYPES",
    "derive_idempotency_key",
    "import_activity",
]

ACTIVITY_TYPES = ("post", "comment", "event_attended", "content_view", "email_open", "email_click")
ACTIVITY_COLUMNS = ("member", "type", "occurred_at", "content_key", "properties", "idempotency_key")
"""Every field of an activity record, in the order of the documentation; no other is allowed."""
ACTIVITY_REQUIRED_COLUMNS = frozenset({"member", "type", "occurred_at"})


@dataclass(frozen=True)
class ActivityRecord:
    """A valid activity record."""

    member: str
    type: str
    occurred_at: dt.datetime
    content_key: str | None
    properties: dict[str, Any]
    idempotency_key: str | None


def import_activity(
    session: Session,
    path: Path | str,
    rejects_path: Path | str | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportSummary:
    """Import activity events from a CSV or JSON Lines file.

    Args:
        session: Where events are stored; committed after each batch.
        path: A ``.csv``, ``.jsonl`` or ``.ndjson`` file.
        rejects_path: Where to write refused records (CSV: line, field, reason, raw), or
            ``None`` to only count them.
        batch_size: Records per commit.

    Returns:
        What the import did; an event already stored counts as unchanged.

    Raises:
        ImportFileError: The file cannot be read (unknown suffix, not UTF-8, empty CSV
            file, bad CSV header); nothing is stored. Refused records do not raise: they go
            to the rejects file.
    """
    return run_import(
        session,
        path,
        rejects_path,
        parse=parse_activity,
        apply=_apply_activity,
        known_columns=frozenset(ACTIVITY_COLUMNS),
        required_columns=ACTIVITY_REQUIRED_COLUMNS,
        batch_size=batch_size,
    )


def parse_activity(record: Mapping[str, Any]) -> ActivityRecord:
    """Validate one activity record.

    Raises:
        ImportRecordError: A field is invalid; the error names it.
    """
    member = parse_text(record, "member", required=True, max_length=320)
    kind = parse_choice(record, "type", ACTIVITY_TYPES)
    if kind is None:
        raise ImportRecordError("is required but missing or empty", field="type")
    occurred_at = parse_datetime(record, "occurred_at")
    if occurred_at is None:
        raise ImportRecordError("is required but missing or empty", field="occurred_at")
    assert member is not None
    return ActivityRecord(
        member=member,
        type=kind,
        occurred_at=occurred_at,
        content_key=parse_text(record, "content_key"),
        properties=parse_json_object(record, "properties"),
        idempotency_key=parse_text(record, "idempotency_key", max_length=128),
    )


def derive_idempotency_key(
    member_id: int,
    kind: str,
    occurred_at: dt.datetime,
    properties: Mapping[str, Any],
    content_key: str | None,
) -> str:
    """The key of an event that has none: a SHA-256 of what defines it.

    Args:
        member_id: The member's database id (the same however the file named the member).
        kind: The event type.
        occurred_at: When it happened (timezone-aware; taken in UTC).
        properties: Its properties (canonical JSON: sorted keys).
        content_key: The content item involved, if any.

    Returns:
        64 hexadecimal characters.
    """
    canonical = json.dumps(
        [member_id, kind, occurred_at.astimezone(dt.UTC).isoformat(), properties, content_key],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _apply_activity(session: Session, rows: Sequence[Row[ActivityRecord]]) -> list[Applied]:
    member_ids = resolve_member_refs(session, {row.value.member for row in rows})
    keyed: list[tuple[ActivityRecord, int | None, str | None]] = []
    for row in rows:
        record = row.value
        member_id = member_ids.get(record.member)
        key = record.idempotency_key
        if member_id is not None and key is None:
            key = derive_idempotency_key(
                member_id, record.type, record.occurred_at, record.properties, record.content_key
            )
        keyed.append((record, member_id, key))
    keys = {key for _, _, key in keyed if key is not None}
    seen = set(
        session.scalars(
            select(ActivityEvent.idempotency_key).where(ActivityEvent.idempotency_key.in_(keys))
        )
    )
    outcomes: list[Applied] = []
    new_events: list[dict[str, Any]] = []
    for record, member_id, key in keyed:
        if member_id is None or key is None:
            outcomes.append(
                ImportRecordError(
                    f"no member has external id or e-mail {record.member!r}", field="member"
                )
            )
            continue
        if key in seen:
            outcomes.append(Outcome.UNCHANGED)
            continue
        seen.add(key)
        new_events.append(
            {
                "member_id": member_id,
                "type": record.type,
                "occurred_at": record.occurred_at,
                "content_key": record.content_key,
                "properties": record.properties,
                "idempotency_key": key,
            }
        )
        outcomes.append(Outcome.STORED)
    if new_events:
        # One INSERT for the batch, without loading ORM objects: events are only ever added.
        session.execute(insert(ActivityEvent), new_events)
    return outcomes
