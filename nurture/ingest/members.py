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

import contextlib
import contextvars
import datetime as dt
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.errors import ImportRecordError
from nurture.ingest.batches import (
    DEFAULT_BATCH_SIZE,
    BatchResult,
    ImportSummary,
    Outcome,
    Row,
    each_record,
    run_import,
)
from nurture.ingest.fields import (
    check_json_value,
    clean_text,
    parse_choice,
    parse_date,
    parse_email,
    parse_past_datetime,
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
    "remembered_member_refs",
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
_REFS_PER_QUERY = 5000  # bound parameters of one query: well within SQLite's limit of 32 766
_MAX_REMEMBERED = 200_000
_REMEMBERED: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar(
    "nurture_member_refs", default=None
)


@dataclass(frozen=True)
class _MemberRecord:
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
    encoding: str | None = None,
    delimiter: str | None = None,
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
        encoding: The file's encoding (a Python codec name); detected when ``None``.
        delimiter: The CSV delimiter; detected when ``None``.

    Returns:
        What the import did.

    Raises:
        ImportFileError: The file cannot be read (unknown suffix, an encoding it does not
            decode in, empty CSV file, bad CSV header); nothing is stored. Refused records do
            not raise: they go to the rejects file.
    """
    now = utcnow()

    @each_record
    def parse(record: Mapping[str, Any]) -> _MemberRecord:
        return _parse_member(record, now, languages=languages)

    return run_import(
        session,
        path,
        rejects_path,
        parse=parse,
        apply=functools.partial(_apply_members, default_language=languages[0], now=now),
        known_columns=None,
        required_columns=MEMBER_REQUIRED_COLUMNS,
        header_names=frozenset(MEMBER_COLUMNS),
        batch_size=batch_size,
        encoding=encoding,
        delimiter=delimiter,
    )


def _parse_member(
    record: Mapping[str, Any],
    now: dt.datetime | None = None,
    *,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
) -> _MemberRecord:
    """Validate one member record; fields are checked in the order of ``MEMBER_COLUMNS``.

    Args:
        record: The record as read from the file.
        now: The import's clock: a later ``joined_at`` (beyond a day) is refused.
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
    joined_at = parse_past_datetime(record, "joined_at", now or utcnow())
    consent_status = parse_choice(record, "consent_status", CONSENT_STATUSES)
    consent_source = parse_text(record, "consent_source")
    attributes: dict[str, Any] = {}
    for key, value in record.items():
        if key in MEMBER_COLUMNS or value is None:
            continue
        try:
            clean_text(key)
        except ValueError as exc:
            raise ImportRecordError(f"the attribute's name {exc}", field=repr(key)) from None
        try:
            if isinstance(value, str):
                value = clean_text(value.strip(), multiline=True)
                if not value:
                    continue
            else:
                check_json_value(value)
        except ValueError as exc:
            raise ImportRecordError(str(exc), field=key) from None
        attributes[key] = value
    return _MemberRecord(
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
    session: Session,
    rows: Sequence[Row[_MemberRecord]],
    *,
    default_language: str,
    now: dt.datetime | None = None,
) -> BatchResult:
    """Upsert ``rows``; a new member without ``joined_at`` joined at ``now`` (default: now)."""
    external_ids = {row.value.external_id for row in rows if row.value.external_id}
    emails = {row.value.email for row in rows}
    found = session.scalars(
        select(Member).where(or_(Member.external_id.in_(external_ids), Member.email.in_(emails)))
    ).all()
    by_external_id = {member.external_id: member for member in found if member.external_id}
    by_email = {member.email.lower(): member for member in found}
    result = BatchResult()
    for index, row in enumerate(rows):
        record = row.value
        member = by_external_id.get(record.external_id) if record.external_id else None
        holder = by_email.get(record.email)
        if member is None and holder is not None:
            if record.external_id and holder.external_id not in (None, record.external_id):
                result.refuse(index, _email_taken(record.email, holder))
                continue
            member = holder
        elif member is not None and holder is not None and holder is not member:
            result.refuse(index, _email_taken(record.email, holder))
            continue
        if member is None:
            member = _new_member(record, default_language, now or utcnow())
            session.add(member)
            result.count(Outcome.STORED)
        else:
            old_email = member.email.lower()
            changed = _update_member(member, record)
            result.count(Outcome.UPDATED if changed else Outcome.UNCHANGED)
            if old_email != member.email:
                by_email.pop(old_email, None)
        by_email[member.email] = member
        if member.external_id:
            by_external_id[member.external_id] = member
    return result


def _email_taken(email: str, holder: Member) -> ImportRecordError:
    owner = f"external id {holder.external_id!r}" if holder.external_id else "no external id"
    return ImportRecordError(
        f"e-mail {email} already belongs to another member ({owner})", field="email"
    )


def _new_member(record: _MemberRecord, default_language: str, now: dt.datetime) -> Member:
    return Member(
        external_id=record.external_id,
        email=record.email,
        first_name=record.first_name or "",
        last_name=record.last_name or "",
        language=record.language or default_language,
        time_zone=record.time_zone or "UTC",
        birthday=record.birthday,
        joined_at=record.joined_at or now,
        consent_status=record.consent_status or ConsentStatus.UNKNOWN,
        consent_source=record.consent_source,
        attributes=dict(record.attributes),
    )


def _update_member(member: Member, record: _MemberRecord) -> bool:
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
    """Find members by external id or e-mail address, with a query or two.

    Within :func:`remembered_member_refs`, references found once are not looked up again.

    Args:
        session: The database session.
        refs: External ids or e-mail addresses (an external id wins when both match).

    Returns:
        Member id by reference, for the references that name a member.
    """
    remembered = _REMEMBERED.get()
    resolved: dict[str, int] = {}
    missing: list[str] = []
    for ref in set(refs):
        member_id = remembered.get(ref) if remembered is not None else None
        if member_id is None:
            missing.append(ref)
        else:
            resolved[ref] = member_id
    found: dict[str, int] = {}
    for chunk in chunked(sorted(missing), _REFS_PER_QUERY):
        rows = session.execute(
            select(Member.external_id, Member.id).where(Member.external_id.in_(chunk))
        ).tuples()
        found.update((str(external_id), member_id) for external_id, member_id in rows)
    by_email = {ref.lower(): ref for ref in missing if ref not in found and "@" in ref}
    for chunk in chunked(sorted(by_email), _REFS_PER_QUERY):
        for email, member_id in session.execute(
            select(Member.email, Member.id).where(Member.email.in_(chunk))
        ):
            found[by_email[email.lower()]] = member_id
    if remembered is not None:
        if len(remembered) + len(found) > _MAX_REMEMBERED:
            remembered.clear()
        remembered.update(found)
    resolved.update(found)
    return resolved


@contextlib.contextmanager
def remembered_member_refs() -> Iterator[None]:
    """Within the block, :func:`resolve_member_refs` remembers the references it resolved.

    An import of answers or activity names the same members batch after batch; remembering
    them saves a lookup per record. Only references found are remembered (a member imported
    meanwhile is found at its next mention), and at most ``_MAX_REMEMBERED`` of them.
    """
    token = _REMEMBERED.set({})
    try:
        yield
    finally:
        _REMEMBERED.reset(token)
