r"""Parsers for the fields of import records: each returns a clean value or raises.

Every parser takes the field name so that its ``ImportRecordError`` names the field; the caller
adds the line number. A missing value is ``None`` (an empty CSV cell is missing too).

The rule for text is here, once, for every text entering nurture (imports today, the HTTP API
later): :func:`clean_text` for one value, :func:`check_json_value` for the strings, keys and
numbers of a JSON value. Text must be valid Unicode (no lone surrogate, which a JSON escape such
as ``\ud800`` alone can produce and no database or encoder accepts) without control characters:
one-line text (names, e-mail addresses, ids, keys) holds no line break, tab, NUL or other control
character; multi-line text (free-text answers, text inside JSON values) may hold line breaks
(``CR LF`` and ``CR`` become ``LF``) and tabs, never NUL or another control character.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import operator
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import orjson

from nurture.errors import ImportRecordError

__all__ = [
    "EARLIEST_DATE",
    "FUTURE_TOLERANCE",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INTEGER",
    "Column",
    "DuplicateKeyError",
    "check_json_value",
    "choice_column",
    "clean_text",
    "combine_columns",
    "duplicate_key_reason",
    "field_columns",
    "field_values",
    "json_object_column",
    "load_json",
    "load_json_texts",
    "parse_choice",
    "parse_date",
    "parse_datetime",
    "parse_each",
    "parse_email",
    "parse_json_object",
    "parse_past_datetime",
    "parse_text",
    "parse_time_zone",
    "past_datetime_column",
    "text_column",
]

T = TypeVar("T")

MAX_JSON_DEPTH = 32
"""The deepest nesting of objects and lists a JSON value of a record may have."""
MAX_JSON_INTEGER = 2**63 - 1
"""The largest integer (in absolute value) a JSON value may hold: a signed 64-bit integer."""
EARLIEST_DATE = dt.date(1900, 1, 1)
"""No date or date-time of an import is earlier: a year such as 0025 is a typo, not history."""
FUTURE_TOLERANCE = dt.timedelta(days=1)
"""How far past the import's clock a time that has already happened (an event, an answer, a
join) may be: clocks and time zones differ, a day covers both."""

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})"
)
_FROM_ISO = dt.datetime.fromisoformat
_TO_UTC = operator.methodcaller("astimezone", dt.UTC)
# C0 and C1 control characters, DEL, line and paragraph separators, and surrogates (which a
# Python string holds only when they are lone: a valid pair is one code point).
_NOT_IN_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The same, but line breaks (LF, CR, U+2028, U+2029) and tabs are text.
_NOT_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_LINE_BREAKS = frozenset("\n\r\u2028\u2029")
_PLAIN_OBJECT_TYPES = frozenset({dict})
_OBJECTS_OR_TEXT = frozenset({dict, str})
_orjson_loads = orjson.loads
_orjson_dumps = orjson.dumps
_OrjsonError = orjson.JSONDecodeError
_DIGIT_RUNS = bytes.maketrans(b"0123456789", b"0000000000")
_LONG_NUMBER = b"0" * 19  # 19 digits: an integer that may not fit in 64 bits
_FLAT_TYPES = frozenset({str, int, float, bool, type(None)})
_TEXT_ONLY = {str}
_new_tuple: Any = tuple.__new__
_EARLIEST = dt.datetime.combine(EARLIEST_DATE, dt.time(), tzinfo=dt.UTC)


def clean_text(text: str, *, multiline: bool = False) -> str:
    """``text`` if it is valid text for nurture to store, its line breaks made ``LF``.

    This is the one rule for text entering nurture (see the module's docstring); the imports
    apply it to every text field, the HTTP API applies it to what it receives.

    Args:
        text: The text.
        multiline: Whether the text may span lines (a free-text answer); one-line text (a name,
            an e-mail address, an id) may hold no line break or tab.

    Returns:
        The text; in multi-line text, ``CR LF`` and ``CR`` replaced by ``LF``.

    Raises:
        ValueError: The text holds a lone surrogate (not valid Unicode), a NUL or another
            control character, or, in one-line text, a line break or tab; the message names
            the character and its position (1-based).
    """
    if text.isascii() and text.isprintable():
        return text
    found = (_NOT_IN_TEXT if multiline else _NOT_IN_A_LINE).search(text)
    if found is not None:
        raise ValueError(_describe(found.group(), found.start() + 1))
    if multiline and "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _describe(character: str, position: int) -> str:
    code = f"U+{ord(character):04X}"
    if "\ud800" <= character <= "\udfff":
        return f"holds a lone surrogate ({code}) at character {position}: not valid Unicode text"
    if character == "\x00":
        return f"holds a NUL character ({code}) at character {position}"
    if character in _LINE_BREAKS:
        return f"holds a line break ({code}) at character {position}; this field is one line"
    if character == "\t":
        return f"holds a tab ({code}) at character {position}; this field is one line"
    return f"holds a control character ({code}) at character {position}"


def check_json_value(value: Any) -> None:
    """Check that a JSON value (object, list, text, number...) is one nurture can store and use.

    Its texts follow :func:`clean_text` (multi-line), its keys are one-line text, its numbers
    are finite and its integers within 64 bits, and it is nested at most ``MAX_JSON_DEPTH``
    levels deep.

    Args:
        value: A value as ``json.loads`` returns it.

    Raises:
        ValueError: The first fault, naming where it is (``at ['tags'][2]: holds a NUL...``).
    """
    if type(value) is dict and all(
        type(key) is str
        and key.isascii()
        and key.isprintable()
        and (
            (type(item) is str and item.isascii() and item.isprintable())
            or (type(item) is int and -MAX_JSON_INTEGER <= item <= MAX_JSON_INTEGER)
            or type(item) is bool
            or item is None
        )
        for key, item in value.items()
    ):
        return  # the common case, a flat object of plain text and numbers: nothing to walk
    _check_json(value, "", 0)


def _check_json(value: Any, where: str, depth: int) -> None:
    if isinstance(value, str):
        if not (value.isascii() and value.isprintable()):
            try:
                clean_text(value, multiline=True)
            except ValueError as exc:
                raise ValueError(_at(where, str(exc))) from None
        return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if abs(value) > MAX_JSON_INTEGER:
            raise ValueError(_at(where, f"the integer {value} does not fit in 64 bits"))
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(_at(where, f"the number {value} is not finite"))
        return
    if depth >= MAX_JSON_DEPTH:
        raise ValueError(_at(where, f"nested more than {MAX_JSON_DEPTH} levels deep"))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(_at(where, f"key {key!r} is not text"))
            try:
                clean_text(key)
            except ValueError as exc:
                raise ValueError(_at(where, f"key {key!r} {exc}")) from None
            _check_json(item, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]", depth + 1)
    else:
        raise ValueError(_at(where, f"a {type(value).__name__} is not a JSON value"))


def _at(where: str, reason: str) -> str:
    return f"at {where}: {reason}" if where else reason


def parse_text(
    record: Mapping[str, Any],
    field: str,
    *,
    required: bool = False,
    max_length: int = 200,
    multiline: bool = False,
) -> str | None:
    """The stripped text of ``field``, or ``None`` when it is missing or empty.

    Args:
        record: The record, as read from the file.
        field: The field to read.
        required: Refuse the record when the field is missing.
        max_length: The longest text the database column holds.
        multiline: Whether the text may span lines (see :func:`clean_text`).

    Returns:
        The text, or ``None``.

    Raises:
        ImportRecordError: The field is required and missing, not text, too long, or not valid
            text (:func:`clean_text`: a lone surrogate, a NUL or control character, a line
            break in one-line text).
    """
    return _text(record.get(field), field, required, max_length, multiline)


def _text(value: Any, field: str, required: bool, max_length: int, multiline: bool) -> str | None:
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value.strip()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)  # a JSON number where text is expected: an external id such as 17
    else:
        raise ImportRecordError(f"expected text, found a JSON {type(value).__name__}", field=field)
    if not text:
        if required:
            raise ImportRecordError("is required but missing or empty", field=field)
        return None
    if not (text.isascii() and text.isprintable()):
        try:
            text = clean_text(text, multiline=multiline)
        except ValueError as exc:
            raise ImportRecordError(str(exc), field=field) from None
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
    return _choice(record.get(field), field, choices, default)


def _choice(
    value: Any, field: str, choices: tuple[str, ...], default: str | None, required: bool = False
) -> str | None:
    text = _text(value, field, required, 200, False)
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
    return _date(record.get(field), field)


def _date(value: Any, field: str) -> dt.date | None:
    text = _text(value, field, False, 10, False)
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

    Returns:
        The date-time, in UTC.

    Raises:
        ImportRecordError: The value is not such a date-time, has no UTC offset, or has no
            UTC equivalent (year 1 or 9999 at the edge).
    """
    return _datetime(record.get(field), field)


def _datetime(value: Any, field: str, required: bool = False) -> dt.datetime | None:
    text = _text(value, field, required, 40, False)
    if text is None:
        return None
    try:
        if not _DATETIME.match(text):
            if _DATE.match(text):
                date = _date(text, field)
                assert date is not None
                return dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC)
            raise ValueError(text)
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ImportRecordError(
            f"expected an ISO 8601 date-time such as 2026-03-01T09:30:00+01:00, found {text!r}",
            field=field,
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ImportRecordError(
            f"date-time {text!r} has no UTC offset; add one such as +00:00 or Z", field=field
        )
    try:
        return parsed.astimezone(dt.UTC)  # stored in UTC: 0001-01-01T00:30+01:00 has no UTC time
    except OverflowError:
        raise ImportRecordError(
            f"date-time {text!r} is out of range once taken to UTC", field=field
        ) from None


def parse_past_datetime(
    record: Mapping[str, Any], field: str, now: dt.datetime
) -> dt.datetime | None:
    """A date-time (as :func:`parse_datetime`) of something that has happened, by ``now``.

    Args:
        record: The record, as read from the file.
        field: The field to read.
        now: The import's clock (timezone-aware).

    Returns:
        The date-time in UTC, or ``None`` when missing.

    Raises:
        ImportRecordError: The value is not a date-time, is before ``EARLIEST_DATE`` or more
            than ``FUTURE_TOLERANCE`` after ``now``.
    """
    return _past_datetime(record.get(field), field, now)


def _past_datetime(
    value: Any, field: str, now: dt.datetime, required: bool = False
) -> dt.datetime | None:
    moment = _datetime(value, field, required)
    if moment is None:
        return None
    if moment < _EARLIEST:
        raise ImportRecordError(
            f"{moment.isoformat()} is before {EARLIEST_DATE.isoformat()}: not a real date",
            field=field,
        )
    if moment > now + FUTURE_TOLERANCE:
        raise ImportRecordError(
            f"{moment.isoformat()} is in the future (the import runs at "
            f"{now.astimezone(dt.UTC).isoformat(timespec='seconds')}); "
            "only what has happened is imported",
            field=field,
        )
    return moment


def parse_json_object(record: Mapping[str, Any], field: str) -> dict[str, Any]:
    """A JSON object: given as such (JSON Lines) or as JSON text (CSV); ``{}`` when missing.

    Raises:
        ImportRecordError: The value is not valid JSON, not an object, or holds what
            :func:`check_json_value` refuses (invalid text, a huge integer, deep nesting).
    """
    return _json_object(record.get(field), field)


def _json_object(value: Any, field: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = load_json(value)
        except DuplicateKeyError as exc:
            raise ImportRecordError(duplicate_key_reason(exc), field=field) from None
        except ValueError as exc:
            raise ImportRecordError(f"invalid JSON: {exc}", field=field) from None
    if not isinstance(value, dict):
        raise ImportRecordError(
            f"expected a JSON object, found a JSON {type(value).__name__}", field=field
        )
    if value:
        try:
            check_json_value(value)
        except ValueError as exc:
            raise ImportRecordError(str(exc), field=field) from None
    return value


# --- columns --------------------------------------------------------------------------------
# The same parsers, over one field of many records at once. A column whose values are all
# plain (short ASCII text without surrounding spaces, ISO date-times with an offset, exact
# choices) is checked with a few passes at C speed and gives exactly what the parser would
# give each value; any other column is parsed value by value, by the parser itself.


class Column(NamedTuple):
    """One field of many records, parsed.

    Attributes:
        values: Each record's value, or the ``ImportRecordError`` refusing it.
        refused: Whether any value is refused.
    """

    values: list[Any]
    refused: bool


def field_values(records: Sequence[Mapping[str, Any]], field: str) -> list[Any]:
    """The value of ``field`` in each record (``None`` where missing): a column to parse."""
    return list(map(operator.methodcaller("get", field), records))


def field_columns(records: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> list[list[Any]]:
    """:func:`field_values` of each of ``fields``, in order: the columns to parse.

    When every record has every field (a file that writes each, even as ``null``), the records
    are read in one pass; otherwise field by field.
    """
    if len(fields) > 1 and records:
        try:
            return list(map(list, zip(*map(operator.itemgetter(*fields), records), strict=True)))
        except KeyError:  # a field missing from some record: None there
            pass
    return [field_values(records, field) for field in fields]


def text_column(
    values: list[Any], field: str, *, required: bool = False, max_length: int = 200
) -> Column:
    """One-line text values, as :func:`parse_text` reads each (``None`` when missing)."""
    present = values if required else [value for value in values if value is not None]
    if not present or _plain_texts(present, max_length):
        return Column(values, False)
    return parse_each(values, lambda value: _text(value, field, required, max_length, False))


def choice_column(
    values: list[Any], field: str, choices: tuple[str, ...], *, required: bool = False
) -> Column:
    """Values of ``choices``, as :func:`parse_choice` reads each; required or ``None``."""
    try:
        if set(values) <= set(choices):
            return Column(values, False)
    except TypeError:  # an unhashable value (a list): parsed one by one, and refused
        pass
    return parse_each(values, lambda value: _choice(value, field, choices, None, required))


def past_datetime_column(
    values: list[Any], field: str, now: dt.datetime, *, required: bool = False
) -> Column:
    """Date-times of things that happened, as :func:`parse_past_datetime` reads each."""
    present = values if required else [value for value in values if value is not None]
    if not present:
        return Column(values, False)
    try:
        distinct = set(present)  # times repeat (a member's answers): each is parsed once
        texts = list(distinct) if len(distinct) * 2 < len(present) else present
        if all(map(_ISO_DATETIME.fullmatch, texts)):
            moments = list(map(_TO_UTC, map(_FROM_ISO, texts)))
            if texts is not present:
                moments = list(map(dict(zip(texts, moments, strict=True)).__getitem__, present))
            if min(moments) >= _EARLIEST and max(moments) <= now + FUTURE_TOLERANCE:
                if len(moments) == len(values):
                    return Column(moments, False)
                found = iter(moments)
                return Column([None if value is None else next(found) for value in values], False)
    except (TypeError, ValueError, OverflowError):  # parsed one by one, to say which and why
        pass
    return parse_each(values, lambda value: _past_datetime(value, field, now, required))


def json_object_column(values: list[Any], field: str) -> Column:
    """JSON objects, as :func:`parse_json_object` reads each (``{}`` when missing)."""
    objects = [{} if value is None or value == "" else value for value in values]
    kinds = set(map(type, objects))
    if str in kinds and kinds <= _OBJECTS_OR_TEXT:  # JSON text, from a CSV file
        texts = [value for value in objects if type(value) is str]
        parsed = load_json_texts(texts)
        if parsed is not None:
            read = iter(parsed)
            objects = [next(read) if type(value) is str else value for value in objects]
    if _PLAIN_OBJECT_TYPES.issuperset(map(type, objects)) and _plain_objects(objects):
        return Column(objects, False)
    return parse_each(
        objects,
        lambda value: (
            value if type(value) is dict and _plain_objects([value]) else _json_object(value, field)
        ),
    )


def _plain_objects(objects: list[dict[str, Any]]) -> bool:
    """Whether :func:`check_json_value` accepts every object: flat, of valid text and numbers."""
    items = list(itertools.chain.from_iterable(map(dict.values, objects)))
    kinds = set(map(type, items))
    if not kinds <= _FLAT_TYPES:
        return False  # nested objects or lists: checked one by one
    if kinds != _TEXT_ONLY:
        if int in kinds:
            numbers = [item for item in items if type(item) is int]
            if max(numbers) > MAX_JSON_INTEGER or min(numbers) < -MAX_JSON_INTEGER:
                return False
        if float in kinds and not all(math.isfinite(item) for item in items if type(item) is float):
            return False
        items = [item for item in items if type(item) is str]
    texts = "".join(items)
    keys = "".join(itertools.chain.from_iterable(objects))
    return ((texts.isascii() and texts.isprintable()) or _NOT_IN_TEXT.search(texts) is None) and (
        (keys.isascii() and keys.isprintable()) or _NOT_IN_A_LINE.search(keys) is None
    )


def combine_columns(
    columns: Sequence[Column], make: Callable[..., T]
) -> list[T | ImportRecordError]:
    """Each record made from its values of ``columns``, or refused by its first refused value.

    Args:
        columns: The record's fields, in the order their errors are reported.
        make: Builds a record from one value of each column.

    Returns:
        A record or an ``ImportRecordError`` for each record.
    """
    if not any(column.refused for column in columns):
        rows = zip(*(column.values for column in columns), strict=True)
        builder: Any = make
        if isinstance(builder, type) and issubclass(builder, tuple):  # a NamedTuple: built in C
            return list(map(_new_tuple, itertools.repeat(builder), rows))
        return list(itertools.starmap(make, rows))
    made: list[T | ImportRecordError] = []
    for values in zip(*(column.values for column in columns), strict=True):
        error = next((value for value in values if type(value) is ImportRecordError), None)
        made.append(make(*values) if error is None else error)
    return made


def _plain_texts(texts: list[Any], max_length: int) -> bool:
    """Whether every value is text that :func:`parse_text` keeps as it is."""
    try:
        joined = "".join(texts)  # one pass at C speed checks them all
    except TypeError:  # a value that is not text
        return False
    # Printable ASCII holds no whitespace but the space: without one, nothing to strip.
    return (
        joined.isascii()
        and joined.isprintable()
        and all(texts)
        and max(map(len, texts)) <= max_length
        and (" " not in joined or list(map(str.strip, texts)) == texts)
    )


def parse_each(values: list[Any], parse: Callable[[Any], Any]) -> Column:
    """``parse`` of each value, or the error refusing it, as one column."""
    parsed: list[Any] = []
    refused = False
    for value in values:
        try:
            parsed.append(parse(value))
        except ImportRecordError as exc:
            parsed.append(exc.with_traceback(None))  # no cycle through this frame
            refused = True
    return Column(parsed, refused)


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice (``{"email": "a@x.org", "email": "b@x.org"}``).

    Attributes:
        key: The key named twice.
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def duplicate_key_reason(error: DuplicateKeyError) -> str:
    """The reason a record naming a key twice is refused, for the rejects file."""
    return f"the key {error.key!r} appears twice in one object; name each field once"


def load_json(text: str) -> Any:
    """Parse JSON text, refusing what JSON does not allow or a database cannot store.

    ``NaN`` and ``Infinity`` are not JSON, and a number too large for a float (``1e999``) would
    become infinity, which PostgreSQL's ``json`` type refuses: all are refused here, so that
    every database stores the same records. So are integers beyond 64 bits, an object naming a
    key twice (which value is meant?), and nesting so deep that reading it would overflow.

    Args:
        text: JSON text.

    Returns:
        The parsed value.

    Raises:
        ValueError: The text is not valid JSON, or holds such a number, key or nesting.
    """
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep") from None


def load_json_texts(texts: list[str]) -> list[Any] | None:
    """Parse many JSON texts fast, as :func:`load_json` would each; ``None`` if in doubt.

    orjson reads JSON as :func:`load_json` does, except that it keeps the last value of a key
    named twice and reads integers beyond 64 bits (as integers up to 2**64, then as floats):
    the texts are read by orjson when none names a key twice and none holds a number that
    large (nor, to be safe, a float beyond 1e16 or a run of 19 digits, even in a string).
    ``None`` when any text is not valid JSON or is in doubt: the caller reads each text with
    :func:`load_json`, which says what is wrong.

    Args:
        texts: JSON texts.

    Returns:
        The parsed values, or ``None``.
    """
    try:
        values = list(map(_orjson_loads, texts))
    except _OrjsonError:
        return None
    written = _orjson_dumps(values)
    if b"e+" in written or _LONG_NUMBER in written.translate(_DIGIT_RUNS):
        return None
    # No key named twice. Outside its strings, JSON text holds a colon after each key and
    # nowhere else, and orjson writes the values back compact, the colons of their strings as
    # they are: as many colons in the texts as written back means as many keys in the texts as
    # in the values, unless a colon is hidden as an escape (\\u003a; then, to be safe, None).
    text = "".join(texts)
    if "\\u003" in text or text.count(":") != written.count(b":"):
        return None
    return values


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is too large")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 20 or abs(value := int(text)) > MAX_JSON_INTEGER:
        shown = text if len(text) <= 30 else f"{text[:12]}…{text[-6:]} ({len(text)} digits)"
        raise ValueError(f"integer {shown} does not fit in 64 bits")
    return value


_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
    parse_int=_bounded_int,
    object_pairs_hook=_unique_keys,
)
