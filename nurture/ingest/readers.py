"""Stream the records of a CSV or JSON Lines file, one at a time, with their line and raw text.

The format follows the file's suffix: ``.csv``, or ``.jsonl`` / ``.ndjson``. Files must be UTF-8
(a byte order mark is accepted); a file in another encoding is refused as a whole, before any of
its records is stored, with the file and line of the first bad byte: every non-ASCII record of
such a file would be refused or garbled, so nothing of it is imported until it is converted.

A CSV file starts with a header naming its columns; a CSV record that cannot be read, or has not
as many fields as the header, is refused alone. When such a record spans several lines (a quoted
field opened and not closed where it should be: a stray double quote), only its first line is
refused and the lines after it are read again as records, so one stray quote costs one record
rather than every record up to the next quote.
"""

from __future__ import annotations

import codecs
import collections
import csv
import json
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from nurture.errors import ImportFileError, ImportRecordError

__all__ = [
    "MAX_RECORD_LINES",
    "SUFFIXES",
    "ImportFileError",
    "SourceRecord",
    "check_utf8",
    "file_format",
    "load_json",
    "read_records",
]

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
"""File suffix -> format."""

MAX_RECORD_LINES = 100
"""The most lines one CSV record may span (quoted fields with line breaks); longer is refused."""

_BOM = "\ufeff"
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class SourceRecord:
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


def check_utf8(path: Path) -> None:
    """Check that ``path`` is UTF-8 text, reading it line by line.

    Args:
        path: The import file.

    Raises:
        ImportFileError: A byte is not UTF-8; the message names file, line and column.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(_UTF16_BOMS):
                raise ImportFileError(
                    path,
                    "the file is UTF-16 text, not UTF-8; save it as UTF-8 and import it again",
                    line=1,
                )
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImportFileError(
                    path,
                    f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} "
                    "(the file may be Latin-1 or Windows-1252); save it as UTF-8 and import "
                    "it again",
                    line=number,
                ) from None


def read_records(
    path: Path, *, known_columns: frozenset[str] | None, required_columns: frozenset[str]
) -> Iterator[SourceRecord]:
    """Stream the records of ``path`` (CSV or JSON Lines), skipping blank lines.

    Args:
        path: The file; its suffix chooses the format.
        known_columns: The only columns allowed, or ``None`` to allow any.
        required_columns: Columns a CSV header must have (JSON Lines records are checked
            field by field by the caller).

    Yields:
        Each record, readable or not.

    Raises:
        ImportFileError: The file is not UTF-8, or is a CSV file without a usable header
            (empty, a required column missing, an unknown or duplicate column).
    """
    kind = file_format(path)
    check_utf8(path)
    if kind == "csv":
        yield from _read_csv(path, known_columns, required_columns)
    else:
        yield from _read_jsonl(path, known_columns)


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

    def take(self) -> list[str]:
        """The lines of the record just read; the next record starts afresh."""
        lines, self.taken = self.taken, []
        return lines

    def read_again(self, lines: Iterable[str]) -> None:
        """Give ``lines`` back, to be read before the rest of the file."""
        self._again.extendleft(reversed(list(lines)))


def _read_csv(
    path: Path, known_columns: frozenset[str] | None, required_columns: frozenset[str]
) -> Iterator[SourceRecord]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        tap = _LineTap(handle)
        reader = csv.reader(tap)
        header: list[str] | None = None
        line = 1  # where the next record starts
        while True:
            row: list[str] | None = None
            error: str | None = None
            try:
                row = next(reader)
            except StopIteration:
                break
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
                    header = _check_header(path, start, row, known_columns, required_columns)
                continue
            if error is None:
                assert row is not None
                if _is_blank(row):
                    line += len(lines)
                    continue
                if len(lines) > 1 and tap.at_end and _raw(lines).count('"') % 2:
                    error = "a quoted field opened on this line is never closed"
                elif len(row) == len(header):
                    line += len(lines)
                    yield SourceRecord(start, _raw(lines), dict(zip(header, row, strict=True)))
                    continue
                else:
                    error = f"expected {len(header)} columns as in the header, found {len(row)}"
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
    if problems:
        found = ", ".join(name or "(no name)" for name in header)
        raise ImportFileError(
            path, f"bad CSV header: {'; '.join(problems)} (found: {found})", line=line
        )
    return header


def _read_jsonl(path: Path, known_columns: frozenset[str] | None) -> Iterator[SourceRecord]:
    with path.open(encoding="utf-8", newline="") as handle:
        for number, text in enumerate(handle, start=1):
            if number == 1 and text.startswith(_BOM):
                text = text[1:]
            raw = text.rstrip("\r\n")
            if not raw.strip():
                continue
            try:
                data = load_json(raw)
            except ValueError as exc:
                yield SourceRecord(number, raw, None, ImportRecordError(f"invalid JSON: {exc}"))
                continue
            if not isinstance(data, dict):
                reason = f"expected a JSON object, found a JSON {type(data).__name__}"
                yield SourceRecord(number, raw, None, ImportRecordError(reason))
                continue
            if known_columns is not None:
                unknown = sorted(set(data) - known_columns)
                if unknown:
                    reason = (
                        f"unknown fields {', '.join(unknown)} "
                        f"(expected {', '.join(sorted(known_columns))})"
                    )
                    yield SourceRecord(
                        number, raw, None, ImportRecordError(reason, field=unknown[0])
                    )
                    continue
            yield SourceRecord(number, raw, data)


def load_json(text: str) -> Any:
    """Parse JSON text, refusing what JSON does not allow or a database cannot store.

    ``NaN`` and ``Infinity`` are not JSON, and a number too large for a float (``1e999``) would
    become infinity, which PostgreSQL's ``json`` type refuses: all are refused here, so that
    every database stores the same records.

    Args:
        text: JSON text.

    Returns:
        The parsed value.

    Raises:
        ValueError: The text is not valid JSON, or holds such a number.
    """
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is too large")
    return value
