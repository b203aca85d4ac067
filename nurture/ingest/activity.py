"""Import activity events; each is stored once, however often it is imported.

Fields: ``member`` (external id or e-mail), ``type`` (see ``ACTIVITY_TYPES``), ``occurred_at``
(ISO 8601 date-time with offset), ``content_key`` (optional), ``properties`` (a JSON object; in
CSV, JSON text), ``idempotency_key`` (optional). Without an idempotency key, one is derived from
the member, type, time (in UTC), properties and content key, so the same event imported twice,
even from files that name the member differently, is stored once.

An event must have happened: it is refused when dated in the future, and, when its content key
names an item of the content library (as synced to the database), when it attends an event
before the event began or views or clicks an item before it was published.

Events are written a batch at a time with one ``INSERT ... ON CONFLICT DO NOTHING`` on the
idempotency key (``COPY`` on PostgreSQL, :mod:`nurture.ingest.bulk`): an event already stored is
skipped by the database itself, so a re-import or two imports at once store each event once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.errors import ImportRecordError
from nurture.ingest.batches import (
    DEFAULT_BATCH_SIZE,
    BatchResult,
    ImportSummary,
    Row,
    run_import,
)
from nurture.ingest.bulk import write_columns
from nurture.ingest.fields import (
    choice_column,
    combine_columns,
    field_columns,
    json_object_column,
    past_datetime_column,
    text_column,
)
from nurture.ingest.members import remembered_member_refs, resolve_member_refs
from nurture.storage.models import ActivityEvent, ContentItem, table_of, utcnow

__all__ = [
    "ACTIVITY_COLUMNS",
    "ACTIVITY_REQUIRED_COLUMNS",
    "ACTIVITY_TYPES",
    "EARLY_ARRIVAL",
    "PUBLICATION_DAY_START",
    "derive_idempotency_key",
    "import_activity",
    "parse_activities",
    "parse_activity",
]

ACTIVITY_TYPES = ("post", "comment", "event_attended", "content_view", "email_open", "email_click")
ACTIVITY_COLUMNS = ("member", "type", "occurred_at", "content_key", "properties", "idempotency_key")
"""Every field of an activity record, in the order of the documentation; no other is allowed."""
ACTIVITY_REQUIRED_COLUMNS = frozenset({"member", "type", "occurred_at"})
EARLY_ARRIVAL = dt.timedelta(hours=1)
"""How long before an event starts an attendance may be recorded (doors open, badges scanned)."""
PUBLICATION_DAY_START = dt.timedelta(hours=14)
"""How long before midnight UTC a publication day may begin: a date names no time zone, and the
first day to begin is UTC+14's."""

_READ_TYPES = frozenset({"content_view", "email_click"})
_STORED_COLUMNS = (
    "member_id",
    "type",
    "occurred_at",
    "content_key",
    "properties",
    "idempotency_key",
)


class _ActivityRecord(NamedTuple):
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
    encoding: str | None = None,
    delimiter: str | None = None,
) -> ImportSummary:
    """Import activity events from a CSV or JSON Lines file.

    Args:
        session: Where events are stored; committed after each batch.
        path: A ``.csv``, ``.jsonl`` or ``.ndjson`` file.
        rejects_path: Where to write refused records (CSV: line, field, reason, raw), or
            ``None`` to only count them.
        batch_size: Records per commit.
        encoding: The file's encoding (a Python codec name); detected when ``None``.
        delimiter: The CSV delimiter; detected when ``None``.

    Returns:
        What the import did; an event already stored counts as unchanged.

    Raises:
        ImportFileError: The file cannot be read (unknown suffix, an encoding it does not
            decode in, empty CSV file, bad CSV header); nothing is stored. Refused records do
            not raise: they go to the rejects file.
    """
    now = utcnow()

    def parse(records: list[Mapping[str, Any]]) -> list[_ActivityRecord | ImportRecordError]:
        return parse_activities(records, now)

    with remembered_member_refs():
        return run_import(
            session,
            path,
            rejects_path,
            parse=parse,
            apply=_apply_activity,
            known_columns=frozenset(ACTIVITY_COLUMNS),
            required_columns=ACTIVITY_REQUIRED_COLUMNS,
            batch_size=batch_size,
            encoding=encoding,
            delimiter=delimiter,
        )


def parse_activity(record: Mapping[str, Any], now: dt.datetime | None = None) -> _ActivityRecord:
    """Validate one activity record.

    Args:
        record: The record as read from the file.
        now: The import's clock: a later ``occurred_at`` (beyond a day) is refused.

    Raises:
        ImportRecordError: A field is invalid; the error names it.
    """
    [parsed] = parse_activities([record], now)
    if isinstance(parsed, ImportRecordError):
        raise parsed
    return parsed


def parse_activities(
    records: Sequence[Mapping[str, Any]], now: dt.datetime | None = None
) -> list[_ActivityRecord | ImportRecordError]:
    """Validate activity records, field by field over all of them (see ``fields.Column``).

    Args:
        records: The records as read from the file.
        now: The import's clock: a later ``occurred_at`` (beyond a day) is refused.

    Returns:
        Each record's value, or the error refusing it: its first invalid field, in the order
        of ``ACTIVITY_COLUMNS``.
    """
    now = now or utcnow()
    members, kinds, times, content_keys, properties, keys = field_columns(records, ACTIVITY_COLUMNS)
    return combine_columns(
        (
            text_column(members, "member", required=True, max_length=320),
            choice_column(kinds, "type", ACTIVITY_TYPES, required=True),
            past_datetime_column(times, "occurred_at", now, required=True),
            text_column(content_keys, "content_key"),
            json_object_column(properties, "properties"),
            text_column(keys, "idempotency_key", max_length=128),
        ),
        _ActivityRecord,
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


def _apply_activity(session: Session, rows: Sequence[Row[_ActivityRecord]]) -> BatchResult:
    result = BatchResult()
    records = list(map(_value_of, rows))
    members, kinds, times, content_keys, properties, keys = zip(*records, strict=True)
    member_ids = resolve_member_refs(session, set(members))
    content = _content_times(session, set(content_keys))
    earliest = _earliest_times(content)
    ids = list(map(member_ids.get, members))
    refused: set[int] = set()
    if earliest:
        limits = list(map(earliest.get, zip(content_keys, kinds, strict=True)))
        if limits.count(None) != len(limits):
            for index, limit in enumerate(limits):
                if limit is not None and times[index] < limit:
                    record = records[index]
                    result.refuse(index, _before_content(record, *content[record.content_key]))
                    refused.add(index)
    if None in ids:
        for index, member_id in enumerate(ids):
            if member_id is None and index not in refused:
                result.refuse(
                    index,
                    ImportRecordError(
                        f"no member has external id or e-mail {members[index]!r}", field="member"
                    ),
                )
                refused.add(index)
    if None in keys:
        keys = tuple(
            derive_idempotency_key(member_id, kind, occurred_at, props, content_key)
            if key is None and member_id is not None
            else key
            for member_id, kind, occurred_at, content_key, props, key in zip(
                ids, kinds, times, content_keys, properties, keys, strict=True
            )
        )
    columns: list[Sequence[Any]] = [ids, kinds, times, content_keys, properties, keys]
    kept = len(keys) - len(refused)
    if refused or len(set(keys)) != len(keys):
        # Refused records are left out, and an event named twice in the batch is kept once.
        seen: set[str] = set()
        chosen = []
        for index, key in enumerate(keys):
            if index not in refused and key not in seen:
                seen.add(key)
                chosen.append(index)
        result.unchanged += kept - len(chosen)
        kept = len(chosen)
        columns = [list(map(column.__getitem__, chosen)) for column in columns]
    # Events are only ever added: the database skips those already stored, by their key.
    written = write_columns(
        session, table_of(ActivityEvent), _STORED_COLUMNS, columns, conflict=("idempotency_key",)
    )
    result.stored += written
    result.unchanged += kept - written
    return result


_value_of = operator.attrgetter("value")


def _content_times(
    session: Session, keys: set[str | None]
) -> dict[str, tuple[dt.datetime | None, dt.datetime | None]]:
    """Publication and start of the library's items named by ``keys``, by key."""
    keys.discard(None)
    if not keys:
        return {}
    found = session.execute(
        select(ContentItem.key, ContentItem.published_at, ContentItem.event_start).where(
            ContentItem.key.in_(keys)
        )
    )
    return {key: (published_at, event_start) for key, published_at, event_start in found}


def _earliest_times(
    content: dict[str, tuple[dt.datetime | None, dt.datetime | None]],
) -> dict[tuple[str, str], dt.datetime]:
    """The earliest time an event of each type may have involved each item, by (key, type)."""
    earliest: dict[tuple[str, str], dt.datetime] = {}
    for key, (published_at, event_start) in content.items():
        if event_start is not None:
            earliest[(key, "event_attended")] = event_start - EARLY_ARRIVAL
        if published_at is not None:
            for kind in _READ_TYPES:
                earliest[(key, kind)] = published_at - PUBLICATION_DAY_START
    return earliest


def _before_content(
    record: _ActivityRecord, published_at: dt.datetime | None, event_start: dt.datetime | None
) -> ImportRecordError:
    """Why ``record`` cannot have happened, given its item's dates."""
    when = record.occurred_at.isoformat()
    if record.type == "event_attended" and event_start is not None:
        return ImportRecordError(
            f"attends {record.content_key!r} at {when}, before the event began "
            f"({event_start.astimezone(dt.UTC).isoformat()})",
            field="occurred_at",
        )
    verb = "views" if record.type == "content_view" else "clicks"
    published = published_at.date().isoformat() if published_at is not None else "?"
    return ImportRecordError(
        f"{verb} {record.content_key!r} at {when}, before it was published ({published})",
        field="occurred_at",
    )
