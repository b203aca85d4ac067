"""Stream the records of a CSV or JSON Lines file, one at a time, with their line and raw text.

The format follows the file's suffix: ``.csv``, or ``.jsonl`` / ``.ndjson``.

**Encoding.** A file with a byte order mark is read in its encoding (UTF-8 or UTF-16). Otherwise
a file that is UTF-8 throughout is UTF-8; a CSV file that is not, as spreadsheets save CSV in
French and other Western European settings, is read as Windows-1252 (Latin-1 when a byte has no
Windows-1252 character). A file mixing UTF-8 lines with lines in another encoding is refused as a
whole, before any record is stored, with the line of the first byte that does not fit: decoding
it either way would garble some of its names. JSON Lines files are UTF-8, as JSON is. An
encoding given by the caller is used as it is (the file must decode in it).

**CSV.** A CSV file starts with a header naming its columns. Its delimiter is ``,``, ``;``, a tab
or ``|``: the one that splits the header into the most column names nurture knows (``;`` is what
a spreadsheet writes where the comma is the decimal separator), or the one the caller gives. A
CSV record that cannot be read, or has not as many fields as the header, is refused alone. When
such a record spans several lines (a quoted field opened and not closed where it should be: a
stray double quote), only its first line is refused and the lines after it are read again as
records, so one stray quote costs one record rather than every record up to the next quote.

**JSON Lines.** One object per line, read by :func:`nurture.ingest.fields.load_json`: an object
naming a key twice, a number JSON cannot hold (``NaN``, ``1e999``), an integer beyond 64 bits or
nesting too deep refuse the record, not the file. Lines are read a chunk at a time by
:func:`nurture.ingest.fields.load_json_texts` (orjson), which gives the same records; a chunk it
is in doubt about is read line by line.
"""

from __future__ import annotations

import codecs
import collections
import csv
import itertools
import operator
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from nurture.errors import ImportFileError, ImportRecordError
from nurture.ingest.fields import (
    DuplicateKeyError,
    clean_text,
    duplicate_key_reason,
    load_json,
    load_json_texts,
)

__all__ = [
    "DELIMITERS",
    "MAX_RECORD_LINES",
    "SUFFIXES",
    "FileLayout",
    "ImportFileError",
    "SourceRecord",
    "check_json_record",
    "detect_layout",
    "file_format",
    "read_records",
]

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
"""File suffix -> format."""

MAX_RECORD_LINES = 100
"""The most lines one CSV record may span (quoted fields with line breaks); longer is refused."""

DELIMITERS = (",", ";", "\t", "|")
"""The CSV delimiters nurture recognises, in order of preference when a header fits several."""

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
_ENCODING_NAMES = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "utf-16": "UTF-16",
    "cp1252": "Windows-1252",
    "latin-1": "Latin-1",
    "iso8859-1": "Latin-1",
}
_BLOCK = 1 << 20
_new_record = tuple.__new__  # builds a SourceRecord from a tuple without a Python-level call

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class SourceRecord(NamedTuple):
    """One record of an import file.

    Attributes:
        line: 1-based line where the record starts.
        raw: The record's text as in the file (without the final line break).
        data: The fields by name; ``None`` when the record cannot be read at all.
        error: Why the record cannot be read, when ``data`` is ``None``.
    """

    line: int
    raw: str
    data: dict[str, Any] | None
    error: ImportRecordError | None = None


@dataclass(frozen=True)
class FileLayout:
    """How an import file is read.

    Attributes:
        format: ``csv`` or ``jsonl``.
        encoding: The Python codec its text is decoded with (``utf-8``, ``cp1252``...).
        delimiter: The CSV delimiter; ``None`` for JSON Lines.
    """

    format: str
    encoding: str
    delimiter: str | None = None

    def describe(self) -> str:
        """``Windows-1252 text, semicolon-separated``: what the layout is, for a person."""
        encoding = _ENCODING_NAMES.get(self.encoding, self.encoding)
        if self.delimiter is None:
            return f"{encoding} text"
        delimiter = _DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))
        return f"{encoding} text, {delimiter}-separated"


def file_format(path: Path) -> str:
    """``"csv"`` or ``"jsonl"``, from the file's suffix.

    Args:
        path: The import file.

    Returns:
        The format's name.

    Raises:
        ImportFileError: The suffix is not one nurture reads.
    """
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise ImportFileError(
            path,
            f"cannot tell the format from the suffix {path.suffix!r}; "
            f"expected one of {', '.join(SUFFIXES)}",
        ) from None


def detect_layout(
    path: Path,
    *,
    header_names: frozenset[str] = frozenset(),
    encoding: str | None = None,
    delimiter: str | None = None,
) -> FileLayout:
    """Find how to read ``path``: its format, its encoding and, for CSV, its delimiter.

    Args:
        path: The import file.
        header_names: Column names nurture knows for this kind of file; the CSV delimiter is
            the one that splits the header into the most of them.
        encoding: The file's encoding, when the caller knows it (any Python codec name);
            detected otherwise.
        delimiter: The CSV delimiter, when the caller knows it (``tab`` for a tab); detected
            otherwise.

    Returns:
        The layout.

    Raises:
        ImportFileError: Unknown suffix, unknown encoding or bad delimiter given, a file that
            does not decode (naming line and column), or mixes encodings.
    """
    kind = file_format(path)
    chosen = _detect_encoding(path, kind, encoding)
    if kind != "csv":
        if delimiter is not None:
            raise ImportFileError(path, "a delimiter applies to CSV files, not to JSON Lines")
        return FileLayout(kind, chosen)
    if delimiter is not None:
        return FileLayout(kind, chosen, _check_delimiter(path, delimiter))
    return FileLayout(kind, chosen, _detect_delimiter(path, chosen, header_names))


def read_records(
    path: Path,
    *,
    known_columns: frozenset[str] | None,
    required_columns: frozenset[str],
    layout: FileLayout | None = None,
) -> Iterator[SourceRecord]:
    """Stream the records of ``path`` (CSV or JSON Lines), skipping blank lines.

    Args:
        path: The file; its suffix chooses the format.
        known_columns: The only columns allowed, or ``None`` to allow any.
        required_columns: Columns a CSV header must have (JSON Lines records are checked
            field by field by the caller).
        layout: How to read the file; detected (:func:`detect_layout`) when not given.

    Returns:
        An iterator of each record, readable or not; the file is read as it is consumed.

    Raises:
        ImportFileError: When consumed: the file does not decode, or is a CSV file without a
            usable header (empty, a required column missing, an unknown or duplicate column).
    """
    # Records come in chunks, unpacked at C speed: no Python frame is resumed per record.
    return itertools.chain.from_iterable(
        _record_chunks(path, known_columns, required_columns, layout)
    )


def _record_chunks(
    path: Path,
    known_columns: frozenset[str] | None,
    required_columns: frozenset[str],
    layout: FileLayout | None,
) -> Iterator[list[SourceRecord]]:
    """The records of ``path`` (:func:`read_records`), a list of them at a time."""
    if layout is None:
        layout = detect_layout(path, header_names=(known_columns or frozenset()) | required_columns)
    with path.open(encoding=layout.encoding, newline="") as handle:
        if layout.format == "csv":
            assert layout.delimiter is not None
            records = _read_csv(path, handle, layout.delimiter, known_columns, required_columns)
            while chunk := list(itertools.islice(records, _CSV_CHUNK)):
                yield chunk
        else:
            yield from _read_jsonl(handle, known_columns)


# --- encodings ------------------------------------------------------------------------------


def _detect_encoding(path: Path, kind: str, encoding: str | None) -> str:
    with path.open("rb") as handle:
        head = handle.read(4)
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise ImportFileError(
                path, f"unknown encoding {encoding!r}; try utf-8, cp1252 or latin-1"
            ) from None
        if name == "utf-8" and head.startswith(codecs.BOM_UTF8):
            name = "utf-8-sig"
        if not (name.startswith("utf-8") and _is_utf8(path)):
            _check_decodes(path, name)
        return name
    if head.startswith(_UTF16_BOMS):
        _check_decodes(path, "utf-16")
        return "utf-16"
    if _is_utf8(path):
        return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    line, column, byte, utf8_line = _first_non_utf8(path)
    found = f"byte 0x{byte:02x} at column {column}"
    if kind != "csv":
        raise ImportFileError(
            path,
            f"not UTF-8 text: {found}; JSON Lines files are UTF-8: save it as UTF-8 and import "
            "it again",
            line=line,
        )
    if utf8_line is not None:
        raise ImportFileError(
            path,
            f"not UTF-8 text: {found}, while line {utf8_line} is UTF-8: the file mixes "
            "encodings, and reading it either way would garble some of its text; save it as "
            "UTF-8 and import it again",
            line=line,
        )
    try:
        _check_decodes(path, "cp1252")
    except ImportFileError:
        return "latin-1"  # bytes Windows-1252 leaves undefined: C1 controls, refused per record
    return "cp1252"


def _is_utf8(path: Path) -> bool:
    """Whether the whole file decodes as UTF-8 (read in large blocks: fast)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _first_non_utf8(path: Path) -> tuple[int, int, int, int | None]:
    """The first byte that is not UTF-8 (line, column, value), and the first UTF-8 line.

    A line holding UTF-8 beyond ASCII, next to one that is not UTF-8, shows a file mixing
    encodings.
    """
    bad: tuple[int, int, int] | None = None
    utf8_line = None
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.isascii():
                continue
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if bad is None:
                    bad = (number, exc.start + 1, raw[exc.start])
            else:
                utf8_line = utf8_line or number
            if bad is not None and utf8_line is not None:
                break
    assert bad is not None
    return (*bad, utf8_line)


def _check_decodes(path: Path, encoding: str) -> None:
    """Raise, naming the line, if ``path`` does not decode in ``encoding``."""
    if "\n".encode(encoding) == b"\n" and "a,;".encode(encoding) == b"a,;":
        # An ASCII-compatible encoding: check line by line, to name line and column.
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if raw.isascii():
                    continue
                try:
                    raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise ImportFileError(
                        path,
                        f"not {_ENCODING_NAMES.get(encoding, encoding)} text: byte "
                        f"0x{raw[exc.start]:02x} at column {exc.start + 1}",
                        line=number,
                    ) from None
        return
    number = 0
    try:
        with path.open(encoding=encoding, newline="") as handle:
            for number, _ in enumerate(handle, start=1):  # noqa: B007 - the count is the point
                pass
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            path,
            f"not {_ENCODING_NAMES.get(encoding, encoding)} text ({exc.reason}) at or after "
            f"this line",
            line=number + 1,
        ) from None


# --- CSV ------------------------------------------------------------------------------------


def _check_delimiter(path: Path, delimiter: str) -> str:
    given = {"tab": "\t", "\\t": "\t"}.get(delimiter.lower(), delimiter)
    if len(given) != 1 or given in '"\r\n' or given.isalnum():
        raise ImportFileError(
            path,
            f"cannot use {delimiter!r} as the CSV delimiter; expected one character such as "
            "',', ';', '|' or 'tab'",
        )
    return given


def _detect_delimiter(path: Path, encoding: str, names: frozenset[str]) -> str:
    """The delimiter that splits the header into the most known names (a comma on a tie)."""
    with path.open(encoding=encoding, newline="") as handle:
        header = next((line for line in handle if line.strip()), "")
    best, best_score = ",", 0
    for candidate in DELIMITERS:
        try:
            cells = next(csv.reader([header], delimiter=candidate), [])
        except csv.Error:
            continue
        score = sum(1 for cell in cells if cell.strip().lower() in names)
        if score > best_score:
            best, best_score = candidate, score
    return best


class _RecordTooLongError(Exception):
    """A CSV record took more than ``MAX_RECORD_LINES`` lines."""


class _LineTap:
    """Feed a file's lines to a CSV reader, keep those of the current record, take some back."""

    def __init__(self, handle: TextIO) -> None:
        self._handle = handle
        self._again: collections.deque[str] = collections.deque()
        self.taken: list[str] = []
        self.at_end = False  # the last record may end there, inside a quoted field never closed

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        if len(self.taken) >= MAX_RECORD_LINES:
            raise _RecordTooLongError
        if self._again:
            line = self._again.popleft()
        else:
            try:
                line = next(self._handle)
            except StopIteration:
                self.at_end = True
                raise
        self.taken.append(line)
        return line

    def next_line(self) -> str | None:
        """The next line, outside any record (``None`` at the end of the file)."""
        if self._again:
            return self._again.popleft()
        return next(self._handle, None)

    def take(self) -> list[str]:
        """The lines of the record just read; the next record starts afresh."""
        lines, self.taken = self.taken, []
        return lines

    def read_again(self, lines: Iterable[str]) -> None:
        """Give ``lines`` back, to be read before the rest of the file."""
        self._again.extendleft(reversed(list(lines)))


def _read_csv(
    path: Path,
    handle: TextIO,
    delimiter: str,
    known_columns: frozenset[str] | None,
    required_columns: frozenset[str],
) -> Iterator[SourceRecord]:
    tap = _LineTap(handle)
    reader = csv.reader(tap, delimiter=delimiter)
    header: list[str] | None = None
    width = 0
    line = 1  # where the next record starts
    while True:
        text = tap.next_line()
        if text is None:
            break
        if '"' not in text:
            # A line without quotes is a whole record, split as the CSV reader would split it.
            raw = text.rstrip("\r\n")
            row = raw.split(delimiter)
            if header is not None and len(row) == width and (row[0].strip() or not _is_blank(row)):
                line += 1
                yield _new_record(
                    SourceRecord, (line - 1, raw, dict(zip(header, row, strict=True)), None)
                )
                continue
            lines: list[str] = [text]
            error: str | None = None
        else:
            tap.read_again([text])
            row = None
            error = None
            try:
                row = next(reader)
            except csv.Error as exc:
                error = f"invalid CSV: {exc}"
            except _RecordTooLongError:
                error = (
                    f"a quoted field opened on this line is still open {MAX_RECORD_LINES} lines "
                    "later"
                )
            lines = tap.take()
        start = line
        if header is None:
            line += len(lines)
            if error is not None:
                raise ImportFileError(path, f"unreadable CSV header: {error}", line=start)
            if not _is_blank(row):
                assert row is not None
                header = _check_header(path, start, row, delimiter, known_columns, required_columns)
                width = len(header)
            continue
        if error is None:
            assert row is not None
            if _is_blank(row):
                line += len(lines)
                continue
            if len(lines) > 1 and tap.at_end and _raw(lines).count('"') % 2:
                error = "a quoted field opened on this line is never closed"
            elif len(row) == width:
                line += len(lines)
                yield SourceRecord(start, _raw(lines), dict(zip(header, row, strict=True)))
                continue
            else:
                error = f"expected {width} columns as in the header, found {len(row)}"
                if len(lines) > 1:
                    error += f" in a record running over {len(lines)} lines"
        assert error is not None
        if len(lines) > 1:
            error += (
                f" (a stray double quote?); the {len(lines) - 1} lines after this one are "
                "read again as records"
            )
            tap.read_again(lines[1:])
            lines = lines[:1]
        line += len(lines)
        yield SourceRecord(start, _raw(lines), None, ImportRecordError(error))
    if header is None:
        raise ImportFileError(
            path,
            "the file is empty; a CSV file starts with a header line naming its columns "
            f"(at least {', '.join(sorted(required_columns))})",
        )


def _is_blank(row: list[str] | None) -> bool:
    """Whether a CSV row is a blank line or a row of empty fields (``,,,`` from a spreadsheet)."""
    return not row or not "".join(row).strip()


def _raw(lines: list[str]) -> str:
    return "".join(lines).rstrip("\r\n")


def _check_header(
    path: Path,
    line: int,
    row: list[str],
    delimiter: str,
    known_columns: frozenset[str] | None,
    required_columns: frozenset[str],
) -> list[str]:
    header = [cell.strip().lower() for cell in row]
    problems = []
    missing = sorted(required_columns - set(header))
    if missing:
        columns = "column" if len(missing) == 1 else "columns"
        verb = "is" if len(missing) == 1 else "are"
        problems.append(f"the required {columns} {', '.join(missing)} {verb} missing")
    if any(not name for name in header):
        problems.append(f"column {header.index('') + 1} has no name")
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        problems.append(f"duplicate columns {', '.join(duplicates)}")
    if known_columns is not None:
        unknown = sorted(set(header) - known_columns - {""})
        if unknown:
            expected = ", ".join(sorted(known_columns))
            problems.append(f"unknown columns {', '.join(unknown)} (expected {expected})")
    for number, name in enumerate(header, start=1):
        try:
            clean_text(name)
        except ValueError as exc:
            problems.append(f"the name of column {number} {exc}")
            header[number - 1] = repr(name)
    if problems:
        found = ", ".join(name or "(no name)" for name in header)
        if missing and len(header) == 1:
            others = [_DELIMITER_NAMES[d] for d in DELIMITERS if d != delimiter and d in row[0]]
            if others:
                found += f"; is the file {others[0]}-separated? say so with --delimiter"
        raise ImportFileError(
            path, f"bad CSV header: {'; '.join(problems)} (found: {found})", line=line
        )
    return header


# --- JSON Lines -----------------------------------------------------------------------------


def _read_jsonl(
    handle: TextIO, known_columns: frozenset[str] | None
) -> Iterator[list[SourceRecord]]:
    allowed = known_columns if known_columns is not None else _ANY_KEYS
    first = 1
    while chunk := list(itertools.islice(handle, _JSONL_CHUNK)):
        raws = list(map(_without_line_end, chunk))
        numbers: Iterable[int] = range(first, first + len(raws))
        first += len(raws)
        if "" in raws or any(map(str.isspace, raws)):
            kept = [(n, raw) for n, raw in zip(numbers, raws, strict=True) if raw.strip()]
            numbers, raws = [n for n, _ in kept], [raw for _, raw in kept]
        records = _plain_json_records(raws, allowed)
        if records is not None:
            yield list(
                map(
                    _new_record,
                    itertools.repeat(SourceRecord),
                    zip(numbers, raws, records, itertools.repeat(None)),
                )
            )
            continue
        read: list[SourceRecord] = []
        for number, raw in zip(numbers, raws, strict=True):  # one line in doubt: each alone
            alone = _plain_json_records([raw], allowed)
            if alone is not None:
                read.append(_new_record(SourceRecord, (number, raw, alone[0], None)))
            else:
                read.append(_jsonl_record(number, raw, known_columns))
        yield read


def _jsonl_record(number: int, raw: str, known_columns: frozenset[str] | None) -> SourceRecord:
    """The record of one JSON line, read by :func:`load_json`."""
    try:
        data = load_json(raw)
    except DuplicateKeyError as exc:
        reason = duplicate_key_reason(exc)
        return SourceRecord(number, raw, None, ImportRecordError(reason, field=_safe(exc.key)))
    except ValueError as exc:
        return SourceRecord(number, raw, None, ImportRecordError(f"invalid JSON: {exc}"))
    refused = check_json_record(data, known_columns)
    if refused is not None:
        return SourceRecord(number, raw, None, refused)
    return _new_record(SourceRecord, (number, raw, data, None))


class _AnyKeys:
    """Every set of keys is allowed (no ``known_columns``)."""

    def issuperset(self, keys: Any) -> bool:
        return True


_ANY_KEYS: Any = _AnyKeys()
_JSONL_CHUNK = 1000
"""Lines of a JSON Lines file read, and checked, together."""
_without_line_end = operator.methodcaller("rstrip", "\r\n")
_CSV_CHUNK = 1000
"""Records of a CSV file read together."""
_OBJECT_TYPES = frozenset({dict})


def _plain_json_records(raws: list[str], allowed: Any) -> list[dict[str, Any]] | None:
    """The records of JSON lines, read fast when all are plain; ``None`` to read each with care.

    Plain lines are those :func:`load_json_texts` reads, each an object of known keys.
    Otherwise ``None``: each line is read by :func:`load_json`, which says what is wrong.
    """
    records = load_json_texts(raws)
    if records is None or not _OBJECT_TYPES.issuperset(map(type, records)):
        return None
    if not all(map(allowed.issuperset, records)):
        return None
    return records


def check_json_record(data: Any, known_columns: frozenset[str] | None) -> ImportRecordError | None:
    """Why a JSON value is not a record (a JSON object of known fields), or ``None``.

    Args:
        data: A parsed JSON value: a line of a JSON Lines file, an item of an API request.
        known_columns: The only fields allowed, or ``None`` to allow any.
    """
    if type(data) is not dict:
        return ImportRecordError(f"expected a JSON object, found a JSON {_json_type(data)}")
    if known_columns is not None and not data.keys() <= known_columns:
        unknown = sorted(set(data) - known_columns)
        reason = (
            f"unknown fields {', '.join(map(_safe, unknown))} "
            f"(expected {', '.join(sorted(known_columns))})"
        )
        return ImportRecordError(reason, field=_safe(unknown[0]))
    return None


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type."""
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _safe(name: str) -> str:
    """A key as written in a reason: itself, or its ``repr`` when it holds odd characters."""
    return name if name.isprintable() else repr(name)
