"""The rejects file: one CSV row per refused record, with its line, field, reason and raw text.

The file is one a marketer opens in a spreadsheet, and its cells come from the refused file: a
cell that a spreadsheet would run as a formula (``=HYPERLINK(...)`` as a name) is written with a
leading ``'`` (:func:`nurture.csv_safety.escape_formula`, shared with the recommendations
export), and text that is not valid Unicode (a lone surrogate read from a JSON escape) is written
as a backslash escape rather than stopping the import.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import TracebackType
from typing import TextIO

from nurture.csv_safety import escape_formula
from nurture.errors import ImportRecordError

__all__ = ["REJECTS_COLUMNS", "RejectsWriter"]

REJECTS_COLUMNS = ("line", "field", "reason", "raw")


class RejectsWriter:
    """Write refused records to a CSV file; with no path, only count them.

    The file is (re)written with its header as soon as the writer opens, so a rejects file never
    shows records refused by an earlier run.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0
        self._handle: TextIO | None = None
        self._writer: csv.DictWriter[str] | None = None

    def __enter__(self) -> RejectsWriter:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open(
                "w", encoding="utf-8", errors="backslashreplace", newline=""
            )
            self._writer = csv.DictWriter(self._handle, fieldnames=REJECTS_COLUMNS)
            self._writer.writeheader()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write(self, error: ImportRecordError, raw: str) -> None:
        """Record one refused record.

        Args:
            error: Why it was refused, with its line and field.
            raw: The record as it was in the file.
        """
        self.count += 1
        if self._writer is not None:
            self._writer.writerow(
                {
                    "line": error.line,
                    "field": escape_formula(error.field or ""),
                    "reason": escape_formula(error.reason),
                    "raw": escape_formula(raw),
                }
            )

    def flush(self) -> None:
        """Push written rows to disk (after each batch, so a crash keeps them)."""
        if self._handle is not None:
            self._handle.flush()
