"""Import members: upsert by external id, else by e-mail address (lower-cased).

Columns: ``external_id``, ``email`` (required), ``first_name``, ``last_name``, ``language``
(one of the workspace's languages: ``en`` | ``fr`` unless ``workspace.yaml`` declares others),
``time_zone`` (IANA), ``birthday`` (``YYYY-MM-DD``), ``joined_at`` (ISO 8601
date-time with offset, or a date), ``consent_status`` (``granted`` | ``denied`` | ``unknown``),
``consent_source``; any other column goes to the member's ``attributes``.

A missing or empty field leaves an existing member's value as it is; a new member gets the
defaults (the workspace's default language, ``en`` unless declared; time zone ``UTC``, consent
``unknown``, joined now).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
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
from nurture.ingest.fields import (
    parse_choice,
    parse_date,
    parse_datetime,
    parse_email,
    parse_text,
    parse_time_zone,
)
from nurture.languages import DEFAULT_LANGUAGES
from nurture.storage.models import ConsentStatus, Member, utcnow

__all__ = [
    "CONSENT_STATUSES",
    "MEMBER_COLUMNS",
    "MEMBER_REQUIRED_COLUMNS",
    "import_members",
    "resolve_member_refs",
]

CONSENT_STATUSES = tuple(ConsentStatus)
MEMBER_COLUMNS = (
    "external_id",
    "email",
    "first_name",
    "last_name",
    "language",
    "time_zone",
    "birthday",
    "joined_at",
    "consent_status",
    "consent_source",
)
"""The member fields nurture knows, in the order of the documentation; others are attributes."""
MEMBER_REQUIRED_COLUMNS = frozenset({"email"})


@dataclass(frozen=True)
class MemberRecord:
    """A valid member record; ``None`` means "not given"."""

    email: str
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    language: str | None = None
    time_zone: str | None = None
    birthday: dt.date | None = None
    joined_at: dt.datetime | None = None
    consent_status: str | None = None
    consent_source: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def import_members(
    session: Session,
    path: Path | str,
    rejects_path: Path | str | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
) -> ImportSummary:
    """Import members from a CSV or JSON Lines file, upserting by external id, else e-mail.

    Args:
        session: Where members are stored; committed after each batch.
        path: A ``.csv``, ``.jsonl`` or ``.ndjson`` file.
        rejects_path: Where to write refused records (CSV: line, field, reason, raw), or
            ``None`` to only count them.
        batch_size: Records per commit.
        languages: The workspace's languages, the default first: a member's ``language`` must
            be one of them; a new member without one gets the default.

    Returns:
        What the import did.

    Raises:
        ImportFileError: The file cannot be read (unknown suffix, not UTF-8, empty CSV
            file, bad CSV header); nothing is stored. Refused records do not raise: they go
            to the rejects file.
    """
    return run_import(
        session,
        path,
        rejects_path,
        parse=functools.partial(parse_member, languages=tuple(languages)),
        apply=functools.partial(_apply_members, default_language=languages[0]),
        known_columns=None,
        required_columns=MEMBER_REQUIRED_COLUMNS,
        batch_size=batch_size,
    )


def parse_member(
    record: Mapping[str, Any], *, languages: Sequence[str] = DEFAULT_LANGUAGES
) -> MemberRecord:
    """Validate one member record; fields are checked in the order of ``MEMBER_COLUMNS``.

    Args:
        record: The record as read from the file.
        languages: The workspace's languages, the only values ``language`` may take.

    Returns:
        The valid record.

    Raises:
        ImportRecordError: A field is invalid; the error names the first such field.
    """
    external_id = parse_text(record, "external_id")
    email = parse_email(record)
    first_name = parse_text(record, "first_name")
    last_name = parse_text(record, "last_name")
    language = parse_choice(record, "language", tuple(languages))
    time_zone = parse_time_zone(record)
    birthday = parse_date(record, "birthday")
    if birthday is not None and not dt.date(1900, 1, 1) <= birthday <= dt.date.today():
        raise ImportRecordError(
            f"expected a birthday between 1900-01-01 and today, found {birthday}",
            field="birthday",
        )
    joined_at = parse_datetime(record, "joined_at")
    consent_status = parse_choice(record, "consent_status", CONSENT_STATUSES)
    consent_source = parse_text(record, "consent_source")
    attributes: dict[str, Any] = {}
    for key, value in record.items():
        if key in MEMBER_COLUMNS or value is None:
            continue
        if isinstance(value, str):
            value = value.strip()
            if not value:
                continue
        attributes[key] = value
    return MemberRecord(
        email=email,
        external_id=external_id,
        first_name=first_name,
        last_name=last_name,
        language=language,
        time_zone=time_zone,
        birthday=birthday,
        joined_at=joined_at,
        consent_status=consent_status,
        consent_source=consent_source,
        attributes=attributes,
    )


def _apply_members(
    session: Session, rows: Sequence[Row[MemberRecord]], *, default_language: str
) -> list[Applied]:
    external_ids = {row.value.external_id for row in rows if row.value.external_id}
    emails = {row.value.email for row in rows}
    found = session.scalars(
        select(Member).where(or_(Member.external_id.in_(external_ids), Member.email.in_(emails)))
    ).all()
    by_external_id = {member.external_id: member for member in found if member.external_id}
    by_email = {member.email.lower(): member for member in found}
    outcomes: list[Applied] = []
    for row in rows:
        record = row.value
        member = by_external_id.get(record.external_id) if record.external_id else None
        holder = by_email.get(record.email)
        if member is None and holder is not None:
            if record.external_id and holder.external_id not in (None, record.external_id):
                outcomes.append(_email_taken(record.email, holder))
                continue
            member = holder
        elif member is not None and holder is not None and holder is not member:
            outcomes.append(_email_taken(record.email, holder))
            continue
        if member is None:
            member = _new_member(record, default_language)
            session.add(member)
            outcomes.append(Outcome.STORED)
        else:
            old_email = member.email.lower()
            changed = _update_member(member, record)
            outcomes.append(Outcome.UPDATED if changed else Outcome.UNCHANGED)
            if old_email != member.email:
                by_email.pop(old_email, None)
        by_email[member.email] = member
        if member.external_id:
            by_external_id[member.external_id] = member
    return outcomes


def _email_taken(email: str, holder: Member) -> ImportRecordError:
    owner = f"external id {holder.external_id!r}" if holder.external_id else "no external id"
    return ImportRecordError(
        f"e-mail {email} already belongs to another member ({owner})", field="email"
    )


def _new_member(record: MemberRecord, default_language: str) -> Member:
    return Member(
        external_id=record.external_id,
        email=record.email,
        first_name=record.first_name or "",
        last_name=record.last_name or "",
        language=record.language or default_language,
        time_zone=record.time_zone or "UTC",
        birthday=record.birthday,
        joined_at=record.joined_at or utcnow(),
        consent_status=record.consent_status or ConsentStatus.UNKNOWN,
        consent_source=record.consent_source,
        attributes=dict(record.attributes),
    )


def _update_member(member: Member, record: MemberRecord) -> bool:
    changed = False
    for name in MEMBER_COLUMNS:
        value = getattr(record, name)
        if value is not None and getattr(member, name) != value:
            setattr(member, name, value)
            changed = True
    if record.attributes:
        merged = {**(member.attributes or {}), **record.attributes}
        if merged != member.attributes:
            member.attributes = merged
            changed = True
    return changed


def resolve_member_refs(session: Session, refs: Iterable[str]) -> dict[str, int]:
    """Find members by external id or e-mail address, with one query.

    Args:
        session: The database session.
        refs: External ids or e-mail addresses (an external id wins when both match).

    Returns:
        Member id by reference, for the references that name a member.
    """
    refs = set(refs)
    emails = {ref.lower() for ref in refs}
    found = session.execute(
        select(Member.id, Member.external_id, Member.email).where(
            or_(Member.external_id.in_(refs), Member.email.in_(emails))
        )
    ).all()
    by_external_id = {external_id: id_ for id_, external_id, _ in found if external_id}
    by_email = {email.lower(): id_ for id_, _, email in found}
    resolved = {}
    for ref in refs:
        member_id = by_external_id.get(ref, by_email.get(ref.lower()))
        if member_id is not None:
            resolved[ref] = member_id
    return resolved
