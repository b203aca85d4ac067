"""Dates and times in emails: in the reader's time zone and language, the zone always named.

Formatting is Babel's (CLDR data), so every language of a workspace gets its own month names,
word order and clock. Two house choices sit on top:

- French times read ``18 h 30`` (the French typographic convention) rather than CLDR's
  ``18:30``;
- a time is never shown without its zone: ``18 h 30, heure de Paris`` / ``6:30 PM Paris
  time``. The phrase comes from the UI strings (``time_in_zone``: ``"{time}, heure de
  {city}"``, ``"{time} {city} time"``; ``time_in_utc``: ``"{time} UTC"``), the city's name from
  Babel in the reader's language.

An online event is shown in the member's own zone; an in-person one (it has a ``venue``) in the
venue's zone (``time_zone``), named, whoever reads it. Values come from stored message contexts,
so they may be ISO 8601 text, dates or datetimes; a datetime without an offset is taken as UTC.
Text that is not a date is shown as it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time, get_datetime_format, get_timezone_location

__all__ = [
    "TIME_PATTERNS",
    "event_time",
    "long_date",
    "month_name",
    "parse_moment",
    "zone_of",
]

TIME_PATTERNS: dict[str, str] = {"fr": "H 'h' mm"}
"""Clock patterns (CLDR syntax) replacing Babel's short time in some languages."""

_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/GMT", "GMT", "Z"})

ZoneLabel = Callable[[str, str | None], str]
"""Joins a time and the city naming its zone, None for UTC (``"18 h 30", "Paris"`` ->
``"18 h 30, heure de Paris"``)."""


def parse_moment(value: Any) -> dt.datetime | dt.date | None:
    """A date or an aware datetime from what a message context holds; None when it is none.

    Args:
        value: ISO 8601 text (``2026-12-16``, ``2026-12-16T18:00:00+01:00``), a date or a
            datetime; a datetime without an offset is taken as UTC.

    Returns:
        The date or datetime; None for anything that is not one.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            if len(text) > 10:
                value = dt.datetime.fromisoformat(text)
            else:
                value = dt.date.fromisoformat(text)
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return value
    return None


def zone_of(name: Any) -> ZoneInfo:
    """The IANA zone ``name``; UTC when it is empty or unknown."""
    try:
        return ZoneInfo(str(name)) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _locale(language: str) -> Locale:
    try:
        return Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse("en")


def _local(value: dt.datetime | dt.date, zone: ZoneInfo) -> dt.datetime | dt.date:
    return value.astimezone(zone) if isinstance(value, dt.datetime) else value


def long_date(value: Any, language: str, time_zone: str | None = None) -> str:
    """A date in words in ``language`` (``16 décembre 2026``, ``December 16, 2026``).

    Args:
        value: A date, a datetime or ISO 8601 text (see :func:`parse_moment`).
        language: The reader's language (``en``, ``fr``...).
        time_zone: The zone a datetime is shown in (its date may differ from UTC's).

    Returns:
        The date; text that is not a date as it is; an empty text for none.
    """
    moment = parse_moment(value)
    if moment is None:
        return "" if value is None else str(value)
    day = _local(moment, zone_of(time_zone))
    return format_date(day, "long", locale=_locale(language))


def month_name(value: Any, language: str, time_zone: str | None = None) -> str:
    """The month of a date in ``language`` (``décembre``, ``December``); empty when none."""
    moment = parse_moment(value)
    if moment is None:
        return ""
    day = _local(moment, zone_of(time_zone))
    return format_date(day, "LLLL", locale=_locale(language))


def _zone_city(zone: ZoneInfo, locale: Locale) -> str | None:
    if zone.key in _UTC_NAMES:
        return None
    return str(get_timezone_location(zone, locale=locale, return_city=True))


def event_time(
    event: Any,
    language: str,
    member_time_zone: str | None,
    zone_label: ZoneLabel,
) -> str:
    """When an event takes place, for one reader: date, time and the zone, named.

    Args:
        event: A pick (a mapping with ``event_start`` and, when known, ``time_zone`` and
            ``venue``) or the start itself.
        language: The reader's language.
        member_time_zone: The reader's IANA zone, for online events.
        zone_label: Joins the time and the city of its zone (None for UTC): the
            ``time_in_zone`` / ``time_in_utc`` UI strings.

    Returns:
        ``mercredi 13 janvier 2027 à 18 h 30, heure de Paris`` for an in-person event in
        Paris; the date alone for a start without a time; empty when there is no start.
    """
    fields = event if isinstance(event, Mapping) else {"event_start": event}
    start = parse_moment(fields.get("event_start"))
    if start is None:
        raw = fields.get("event_start")
        return "" if raw is None else str(raw)
    locale = _locale(language)
    if not isinstance(start, dt.datetime):
        return format_date(start, "full", locale=locale)
    in_person = bool(fields.get("venue")) and bool(fields.get("time_zone"))
    zone = zone_of(fields.get("time_zone") if in_person else member_time_zone)
    local = start.astimezone(zone)
    day = format_date(local, "full", locale=locale)
    pattern = TIME_PATTERNS.get(locale.language)
    clock = format_time(local, pattern or "short", locale=locale)
    named = zone_label(clock, _zone_city(zone, locale))
    # CLDR's pattern joining a date and a time: "{1} 'à' {0}", "{1} 'at' {0}"...
    joined = str(get_datetime_format("long", locale=locale)).replace("'", "")
    return joined.replace("{1}", day).replace("{0}", named)
