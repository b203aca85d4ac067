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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.errors import ImportRecordError
from nurture.ingest.batches import (
    DEFAULT_BATCH_SIZE,
    BatchResult,
    ImportSummary,
    Outcome,
    Row,
    run_import,
)
from nurture.ingest.bulk import select_where_in, write_rows
from nurture.ingest.fields import (
    Column,
    check_json_value,
    clean_text,
    combine_columns,
    field_values,
    parse_choice,
    parse_date,
    parse_each,
    parse_email,
    parse_time_zone,
    past_datetime_column,
    text_column,
)
from nurture.languages import DEFAULT_LANGUAGES
from nurture.storage import among
from nurture.storage.models import ConsentStatus, Member, table_of, utcnow

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
_MEMBER_FIELDS = frozenset(MEMBER_COLUMNS)
MEMBER_REQUIRED_COLUMNS = frozenset({"email"})
_REFS_PER_QUERY = 5000  # bound parameters of one query: well within SQLite's limit of 32 766
_MAX_REMEMBERED = 200_000
_REMEMBERED: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar(
    "nurture_member_refs", default=None
)


class _MemberRecord(NamedTuple):
    """A valid member record; ``None`` means "not given"."""

    external_id: str | None
    email: str
    first_name: str | None
    last_name: str | None
    language: str | None
    time_zone: str | None
    birthday: dt.date | None
    joined_at: dt.datetime | None
    consent_status: str | None
    consent_source: str | None
    attributes: dict[str, Any]


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

    def parse(records: list[Mapping[str, Any]]) -> list[_MemberRecord | ImportRecordError]:
        return _parse_members(records, now, languages=languages)

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


def _parse_members(
    records: Sequence[Mapping[str, Any]],
    now: dt.datetime | None = None,
    *,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
) -> list[_MemberRecord | ImportRecordError]:
    """Validate member records, a field at a time over the records.

    Args:
        records: The records as read from the file.
        now: The import's clock: a later ``joined_at`` (beyond a day) is refused.
        languages: The workspace's languages, the only values ``language`` may take.

    Returns:
        Each record's value, or the error naming its first invalid field (in the order of
        ``MEMBER_COLUMNS``, the attributes last).
    """
    today = dt.date.today()
    choices = tuple(languages)

    def birthday(value: Any) -> dt.date | None:
        parsed = parse_date({"birthday": value}, "birthday")
        if parsed is not None and not dt.date(1900, 1, 1) <= parsed <= today:
            raise ImportRecordError(
                f"expected a birthday between 1900-01-01 and today, found {parsed}",
                field="birthday",
            )
        return parsed

    columns = [
        text_column(field_values(records, "external_id"), "external_id"),
        parse_each(field_values(records, "email"), lambda value: parse_email({"email": value})),
        text_column(field_values(records, "first_name"), "first_name"),
        text_column(field_values(records, "last_name"), "last_name"),
        _each_distinct(
            field_values(records, "language"),
            lambda value: parse_choice({"language": value}, "language", choices),
        ),
        _each_distinct(
            field_values(records, "time_zone"), lambda value: parse_time_zone({"time_zone": value})
        ),
        parse_each(field_values(records, "birthday"), birthday),
        past_datetime_column(field_values(records, "joined_at"), "joined_at", now or utcnow()),
        _each_distinct(
            field_values(records, "consent_status"),
            lambda value: parse_choice(
                {"consent_status": value}, "consent_status", CONSENT_STATUSES
            ),
        ),
        text_column(field_values(records, "consent_source"), "consent_source"),
        _attributes_column(records),
    ]
    return combine_columns(columns, _MemberRecord)


def _each_distinct(values: list[Any], parse: Callable[[Any], Any]) -> Column:
    """As :func:`_each_value`, each distinct value parsed once (a field of few values)."""
    distinct: dict[Any, Any] = {}
    parsed: list[Any] = []
    refused = False
    for value in values:
        key = (type(value), value)  # 1, 1.0 and True are equal, and refused differently
        try:
            outcome = distinct[key]
        except KeyError:
            outcome = parse_each([value], parse).values[0]
            distinct[key] = outcome
        except TypeError:  # an unhashable value (a JSON list): parsed alone
            outcome = parse_each([value], parse).values[0]
        if type(outcome) is ImportRecordError:
            refused = True
        parsed.append(outcome)
    return Column(parsed, refused)


def _attributes_column(records: Sequence[Mapping[str, Any]]) -> Column:
    """The attributes of each record: its fields other than ``MEMBER_COLUMNS``, checked."""
    good_keys: set[str] = set()
    parsed: list[Any] = []
    refused = False
    for record in records:
        try:
            parsed.append(_attributes(record, good_keys))
        except ImportRecordError as exc:
            parsed.append(exc.with_traceback(None))
            refused = True
    return Column(parsed, refused)


def _attributes(record: Mapping[str, Any], good_keys: set[str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for key, value in record.items():
        if value is None or key in _MEMBER_FIELDS:
            continue
        if key not in good_keys:
            try:
                clean_text(key)
            except ValueError as exc:
                raise ImportRecordError(f"the attribute's name {exc}", field=repr(key)) from None
            good_keys.add(key)
        if type(value) is str:
            value = value.strip()
            if not value:
                continue
            if not (value.isascii() and value.isprintable()):
                try:
                    value = clean_text(value, multiline=True)
                except ValueError as exc:
                    raise ImportRecordError(str(exc), field=key) from None
                if not value:
                    continue
        else:
            try:
                check_json_value(value)
            except ValueError as exc:
                raise ImportRecordError(str(exc), field=key) from None
        attributes[key] = value
    return attributes


def _apply_members(
    session: Session,
    rows: Sequence[Row[_MemberRecord]],
    *,
    default_language: str,
    now: dt.datetime | None = None,
) -> BatchResult:
    """Upsert ``rows``; a new member without ``joined_at`` joined at ``now`` (default: now).

    The members the batch names are read with a query or two, compared in Python, and written
    with one ``executemany`` ``UPDATE`` for those changed and one bulk insert for the new ones
    (:func:`nurture.ingest.bulk.write_rows`). A member named twice in the batch is written once,
    as its last record leaves it.
    """
    records = [row.value for row in rows]
    by_external_id, by_email = _stored_members(session, records)
    result = BatchResult()
    joined = now or utcnow()
    new: list[dict[str, Any]] = []
    changed: dict[int, dict[str, Any]] = {}
    for index, record in enumerate(records):
        member = by_external_id.get(record.external_id) if record.external_id else None
        holder = by_email.get(record.email)
        if member is None and holder is not None:
            if record.external_id and holder["external_id"] not in (None, record.external_id):
                result.refuse(index, _email_taken(record.email, holder))
                continue
            member = holder
        elif member is not None and holder is not None and holder is not member:
            result.refuse(index, _email_taken(record.email, holder))
            continue
        if member is None:
            member = _new_member(record, default_language, joined)
            new.append(member)
            result.count(Outcome.STORED)
        else:
            old_email = member["email"].lower()
            if _update_member(member, record):
                result.count(Outcome.UPDATED)
                if member["id"] is not None:
                    changed[member["id"]] = member
            else:
                result.count(Outcome.UNCHANGED)
            if old_email != member["email"]:
                by_email.pop(old_email, None)
        by_email[member["email"]] = member
        if member["external_id"]:
            by_external_id[member["external_id"]] = member
    stamp = utcnow()
    if changed:  # updates first, as the ORM flushes them: a new member may take a freed e-mail
        table = table_of(Member)
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in _UPDATED_COLUMNS}),
            [
                {"b_id": member_id, "b_updated_at": stamp}
                | {f"b_{name}": member[name] for name in _WRITTEN_COLUMNS}
                for member_id, member in changed.items()
            ],
        )
    if new:
        write_rows(
            session,
            table_of(Member),
            _INSERTED_COLUMNS,
            [(*(member[name] for name in _WRITTEN_COLUMNS), [], stamp, stamp) for member in new],
            conflict=(),
        )
    return result


_WRITTEN_COLUMNS = (*MEMBER_COLUMNS, "attributes")
"""The columns an import sets: the member fields and the attributes."""
_UPDATED_COLUMNS = (*_WRITTEN_COLUMNS, "updated_at")
_INSERTED_COLUMNS = (
    *_WRITTEN_COLUMNS,
    "unsubscribed_categories",
    "created_at",
    "updated_at",
)


def _stored_members(
    session: Session, records: Sequence[_MemberRecord]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The stored members ``records`` name, by external id and by (lower-cased) e-mail."""
    table = table_of(Member)
    selected = (table.c.id, *(table.c[name] for name in _WRITTEN_COLUMNS))
    names = ("id", *_WRITTEN_COLUMNS)
    found: dict[int, dict[str, Any]] = {}
    external_ids = sorted({record.external_id for record in records if record.external_id})
    emails = sorted({record.email for record in records})
    for column, keys in ((table.c.external_id, external_ids), (table.c.email, emails)):
        for chunk in chunked(keys, _REFS_PER_QUERY):
            for values in session.execute(select(*selected).where(among(session, column, chunk))):
                if values[0] not in found:
                    found[values[0]] = dict(zip(names, values, strict=True))
    by_external_id = {m["external_id"]: m for m in found.values() if m["external_id"]}
    by_email = {member["email"].lower(): member for member in found.values()}
    return by_external_id, by_email


def _email_taken(email: str, holder: Mapping[str, Any]) -> ImportRecordError:
    external_id = holder["external_id"]
    owner = f"external id {external_id!r}" if external_id else "no external id"
    return ImportRecordError(
        f"e-mail {email} already belongs to another member ({owner})", field="email"
    )


def _new_member(record: _MemberRecord, default_language: str, now: dt.datetime) -> dict[str, Any]:
    """A new member's stored fields (no ``id`` yet), the defaults where the record has none."""
    return {
        "id": None,
        "external_id": record.external_id,
        "email": record.email,
        "first_name": record.first_name or "",
        "last_name": record.last_name or "",
        "language": record.language or default_language,
        "time_zone": record.time_zone or "UTC",
        "birthday": record.birthday,
        "joined_at": record.joined_at or now,
        "consent_status": record.consent_status or ConsentStatus.UNKNOWN.value,
        "consent_source": record.consent_source,
        "attributes": dict(record.attributes),
    }


def _update_member(member: dict[str, Any], record: _MemberRecord) -> bool:
    """Set the fields ``record`` gives on ``member``; whether any changed."""
    changed = False
    for name in MEMBER_COLUMNS:
        value = getattr(record, name)
        if value is not None and member[name] != value:
            member[name] = value
            changed = True
    if record.attributes:
        merged = {**(member["attributes"] or {}), **record.attributes}
        if merged != member["attributes"]:
            member["attributes"] = merged
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
    members = table_of(Member)
    for chunk in chunked(sorted(missing), _REFS_PER_QUERY):
        found.update(select_where_in(session, members, ("external_id", "id"), "external_id", chunk))
    by_email = {ref.lower(): ref for ref in missing if ref not in found and "@" in ref}
    for chunk in chunked(sorted(by_email), _REFS_PER_QUERY):
        for email, member_id in select_where_in(session, members, ("email", "id"), "email", chunk):
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
