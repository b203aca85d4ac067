"""Parsers for the fields of import records: each returns a clean value or raises.

Every parser takes the field name so that its ``ImportRecordError`` names the field; the caller
adds the line number. A missing value is ``None`` (an empty CSV cell is missing too).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

from nurture.errors import ImportRecordError
from nurture.ingest.readers import load_json

__all__ = [
    "parse_choice",
    "parse_date",
    "parse_datetime",
    "parse_email",
    "parse_json_object",
    "parse_text",
    "parse_time_zone",
]

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def parse_text(
    record: Mapping[str, Any], field: str, *, required: bool = False, max_length: int = 200
) -> str | None:
    """The stripped text of ``field``, or ``None`` when it is missing or empty.

    Args:
        record: The record, as read from the file.
        field: The field to read.
        required: Refuse the record when the field is missing.
        max_length: The longest text the database column holds.

    Returns:
        The text, or ``None``.

    Raises:
        ImportRecordError: The field is required and missing, not text, too long, or holds a
            NUL character (which PostgreSQL cannot store in text).
    """
    value = record.get(field)
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value.strip()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)  # a JSON number where text is expected: an external id such as 17
    else:
        raise ImportRecordError(f"expected text, found a JSON {type(value).__name__}", field=field)
    if "\x00" in text:
        raise ImportRecordError("contains a NUL character (\\x00)", field=field)
    if not text:
        if required:
            raise ImportRecordError("is required but missing or empty", field=field)
        return None
    if len(text) > max_length:
        raise ImportRecordError(
            f"is {len(text)} characters long; at most {max_length} are allowed", field=field
        )
    return text


def parse_email(record: Mapping[str, Any], field: str = "email") -> str:
    """The e-mail address of ``field``, lower-cased.

    Raises:
        ImportRecordError: The address is missing or is not a valid address.
    """
    text = parse_text(record, field, required=True, max_length=320)
    assert text is not None
    if len(text) > 254 or not _EMAIL.match(text):
        raise ImportRecordError(f"expected an e-mail address, found {text!r}", field=field)
    return text.lower()


def parse_choice(
    record: Mapping[str, Any], field: str, choices: tuple[str, ...], default: str | None = None
) -> str | None:
    """One of ``choices`` (compared case-insensitively), or ``default`` when missing.

    Raises:
        ImportRecordError: The value is not one of ``choices``.
    """
    text = parse_text(record, field)
    if text is None:
        return default
    if text.lower() not in choices:
        raise ImportRecordError(
            f"expected one of {', '.join(choices)}, found {text!r}", field=field
        )
    return text.lower()


def parse_time_zone(record: Mapping[str, Any], field: str = "time_zone") -> str | None:
    """An IANA time zone name (``Europe/Paris``), or ``None`` when missing.

    Raises:
        ImportRecordError: The name is not a time zone of the IANA database.
    """
    text = parse_text(record, field, max_length=64)
    if text is None:
        return None
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImportRecordError(
            f"expected an IANA time zone such as Europe/Paris, found {text!r}", field=field
        ) from None
    return text


def parse_date(record: Mapping[str, Any], field: str) -> dt.date | None:
    """A calendar date written ``YYYY-MM-DD``, or ``None`` when missing.

    Raises:
        ImportRecordError: The value is not a valid date in that form.
    """
    text = parse_text(record, field, max_length=10)
    if text is None:
        return None
    try:
        if not _DATE.match(text):
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ImportRecordError(
            f"expected a date written YYYY-MM-DD, found {text!r}", field=field
        ) from None


def parse_datetime(record: Mapping[str, Any], field: str) -> dt.datetime | None:
    """An ISO 8601 date-time with a UTC offset, or a date (midnight UTC); ``None`` if missing.

    Raises:
        ImportRecordError: The value is not such a date-time, has no UTC offset, or has no
            UTC equivalent (year 1 or 9999 at the edge).
    """
    text = parse_text(record, field, max_length=40)
    if text is None:
        return None
    if _DATE.match(text):
        date = parse_date(record, field)
        assert date is not None
        return dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC)
    try:
        if not _DATETIME.match(text):
            raise ValueError(text)
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ImportRecordError(
            f"expected an ISO 8601 date-time such as 2026-03-01T09:30:00+01:00, found {text!r}",
            field=field,
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ImportRecordError(
            f"date-time {text!r} has no UTC offset; add one such as +00:00 or Z", field=field
        )
    try:
        value.astimezone(dt.UTC)  # stored in UTC: 0001-01-01T00:30+01:00 has no UTC time
    except OverflowError:
        raise ImportRecordError(
            f"date-time {text!r} is out of range once taken to UTC", field=field
        ) from None
    return value


def parse_json_object(record: Mapping[str, Any], field: str) -> dict[str, Any]:
    """A JSON object: given as such (JSON Lines) or as JSON text (CSV); ``{}`` when missing.

    Raises:
        ImportRecordError: The value is not valid JSON or not an object.
    """
    value = record.get(field)
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = load_json(value)
        except ValueError as exc:
            raise ImportRecordError(f"invalid JSON: {exc}", field=field) from None
    if not isinstance(value, dict):
        raise ImportRecordError(
            f"expected a JSON object, found a JSON {type(value).__name__}", field=field
        )
    return value
