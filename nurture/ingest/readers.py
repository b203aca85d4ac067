"""Stream the records of a CSV or JSON Lines file, one at a time, with their line and raw text.

The format follows the file's suffix: ``.csv``, or ``.jsonl`` / ``.ndjson``. Files must be UTF-8
(a byte order mark is accepted); a file in another encoding is refused as a whole, before any of
its records is stored, with the file and line of the first bad byte.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from nurture.errors import ImportRecordError

__all__ = ["SUFFIXES", "SourceRecord", "check_utf8", "load_json", "read_records"]

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
"""File suffix -> format."""

_BOM = "\ufeff"

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

    Raises:
        ImportRecordError: The suffix is not one nurture reads.
    """
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise ImportRecordError(
            f"{path}: cannot tell the format from suffix {path.suffix!r}; "
            f"expected one of {', '.join(SUFFIXES)}"
        ) from None


def check_utf8(path: Path) -> None:
    """Check that ``path`` is UTF-8 text, reading it line by line.

    Raises:
        ImportRecordError: A byte is not UTF-8; the message names file, line and column.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImportRecordError(
                    f"{path} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {number}, "
                    f"column {exc.start + 1}; save the file as UTF-8 and import it again",
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
        ImportRecordError: The file is not UTF-8, or the CSV header is missing or unusable.
    """
    kind = file_format(path)
    check_utf8(path)
    if kind == "csv":
        yield from _read_csv(path, known_columns, required_columns)
    else:
        yield from _read_jsonl(path, known_columns)


class _LineTap:
    """Iterate over a file's lines and keep those the CSV reader took for the current record."""

    def __init__(self, handle: TextIO) -> None:
        self._handle = handle
        self.taken: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._handle)
        self.taken.append(line)
        return line

    def pop_raw(self) -> str:
        raw = "".join(self.taken).rstrip("\r\n")
        self.taken.clear()
        return raw


def _read_csv(
    path: Path, known_columns: frozenset[str] | None, required_columns: frozenset[str]
) -> Iterator[SourceRecord]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        tap = _LineTap(handle)
        reader = csv.reader(tap)
        header: list[str] | None = None
        last_line = 0
        while True:
            start = last_line + 1
            try:
                row = next(reader)
                error = None
            except StopIteration:
                return
            except csv.Error as exc:
                row, error = None, exc
            last_line = reader.line_num
            raw = tap.pop_raw()
            if header is None:
                if error is not None:
                    raise ImportRecordError(f"{path}: unreadable CSV header: {error}", line=start)
                if not row or not any(cell.strip() for cell in row):
                    continue
                header = _check_header(path, start, row, known_columns, required_columns)
                continue
            if error is not None:
                yield SourceRecord(start, raw, None, ImportRecordError(f"invalid CSV: {error}"))
                continue
            assert row is not None
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                reason = f"expected {len(header)} columns as in the header, found {len(row)}"
                yield SourceRecord(start, raw, None, ImportRecordError(reason))
                continue
            yield SourceRecord(start, raw, dict(zip(header, row, strict=True)))


def _check_header(
    path: Path,
    line: int,
    row: list[str],
    known_columns: frozenset[str] | None,
    required_columns: frozenset[str],
) -> list[str]:
    header = [cell.strip().lower() for cell in row]
    problems = []
    if any(not name for name in header):
        problems.append("a column has no name")
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        problems.append(f"duplicate columns {', '.join(duplicates)}")
    missing = sorted(required_columns - set(header))
    if missing:
        problems.append(f"missing columns {', '.join(missing)}")
    if known_columns is not None:
        unknown = sorted(set(header) - known_columns - {""})
        if unknown:
            expected = ", ".join(sorted(known_columns))
            problems.append(f"unknown columns {', '.join(unknown)} (expected {expected})")
    if problems:
        raise ImportRecordError(f"{path}: bad CSV header: {'; '.join(problems)}", line=line)
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
