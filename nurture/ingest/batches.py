"""The import loop shared by every kind of record: stream, validate, store in batches, reject.

Records are read a batch at a time; the valid ones of a batch are applied with a few queries and
committed together, so memory stays bounded by the batch size and a failure keeps every batch
committed before it. The next batch is read and validated in a worker thread while the current
one is stored, one batch ahead and no further: storing mostly waits on the database. When the
database refuses a batch (a unique or data constraint), the batch is rolled back and applied
again record by record, so only the guilty records are refused. Other database errors (a lost
connection) are raised. Python's cyclic garbage collector is paused while records stream: they
hold no cycles, and walking them cost a quarter of an import's time.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import itertools
import logging
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from nurture import progress
from nurture.errors import ImportRecordError, Problem
from nurture.ingest.readers import FileLayout, SourceRecord, detect_layout, read_records
from nurture.ingest.rejects import RejectsWriter

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "BatchResult",
    "ImportSummary",
    "Outcome",
    "Row",
    "each_record",
    "run_import",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5000
MAX_PROBLEMS = 20
"""How many refused records an ``ImportSummary`` keeps as examples."""

T = TypeVar("T")


class Outcome(enum.Enum):
    """What storing a valid record did."""

    STORED = "stored"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass
class ImportSummary:
    """What an import did.

    Attributes:
        read: Records read (blank lines and the CSV header are not records).
        stored: Records stored as new rows.
        updated: Records that changed an existing row.
        unchanged: Records already stored as they are (a re-import).
        refused: Records refused; each is in the rejects file.
        rejects_path: The rejects file, when one was asked for.
        problems: The first refused records (at most 20), for display.
        layout: How the file was read (encoding, CSV delimiter).
    """

    read: int = 0
    stored: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    rejects_path: Path | None = None
    problems: list[Problem] = field(default_factory=list)
    layout: FileLayout | None = None


class Row(NamedTuple, Generic[T]):
    """A valid record: its line, raw text and parsed value."""

    line: int
    raw: str
    value: T


@dataclass
class BatchResult:
    """What storing a batch of valid rows did.

    Attributes:
        stored: Rows stored as new rows.
        updated: Rows that changed a stored row.
        unchanged: Rows already stored as they are.
        refused: The rows refused, as (index in the batch, why).
    """

    stored: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: list[tuple[int, ImportRecordError]] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        """Count one row's outcome."""
        if outcome is Outcome.STORED:
            self.stored += 1
        elif outcome is Outcome.UPDATED:
            self.updated += 1
        else:
            self.unchanged += 1

    def refuse(self, index: int, error: ImportRecordError) -> None:
        """Refuse the row at ``index`` of the batch."""
        self.refused.append((index, error))


ParseRecords = Callable[[list[Mapping[str, Any]]], list["T | ImportRecordError"]]
"""Validates records (no database access): for each, its value or why it is refused."""
ApplyBatch = Callable[[Session, Sequence[Row[T]]], BatchResult]


def each_record(parse: Callable[[Mapping[str, Any]], T]) -> ParseRecords[T]:
    """A parser of many records from ``parse``, which validates one (raising if refused)."""

    def parse_records(records: list[Mapping[str, Any]]) -> list[T | ImportRecordError]:
        parsed: list[T | ImportRecordError] = []
        for record in records:
            try:
                parsed.append(parse(record))
            except ImportRecordError as exc:
                parsed.append(exc.with_traceback(None))  # no cycle through this frame
        return parsed

    return parse_records


def run_import(
    session: Session,
    path: Path | str,
    rejects_path: Path | str | None,
    *,
    parse: ParseRecords[T],
    apply: ApplyBatch[T],
    known_columns: frozenset[str] | None,
    required_columns: frozenset[str],
    header_names: frozenset[str] = frozenset(),
    batch_size: int = DEFAULT_BATCH_SIZE,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> ImportSummary:
    """Import every record of ``path``, committing a batch at a time.

    Args:
        session: Where records are stored; committed after each batch.
        path: The CSV or JSON Lines file.
        rejects_path: Where to write refused records (CSV), or ``None``.
        parse: Validates a batch of records (no database access): each one's value, or why it
            is refused (:func:`each_record` makes one from a parser of one record).
        apply: Stores a batch of valid rows and says what it did and which rows it refused.
        known_columns: The only columns allowed, or ``None`` to allow any.
        required_columns: Columns a CSV header must have.
        header_names: Every column name of this kind of file (finds the CSV delimiter).
        batch_size: Records per commit.
        encoding: The file's encoding; detected when ``None``.
        delimiter: The CSV delimiter; detected when ``None``.

    Returns:
        The counts, and the rejects file.

    Raises:
        ImportFileError: The file cannot be read (unknown suffix, an encoding it does not
            decode in, empty CSV file, bad CSV header); nothing is stored and no rejects file
            is written.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, found {batch_size}")
    path = Path(path)
    rejects_file = Path(rejects_path) if rejects_path is not None else None
    layout = detect_layout(
        path,
        header_names=header_names | (known_columns or frozenset()) | required_columns,
        encoding=encoding,
        delimiter=delimiter,
    )
    summary = ImportSummary(rejects_path=rejects_file, layout=layout)
    records = read_records(
        path, known_columns=known_columns, required_columns=required_columns, layout=layout
    )

    def next_batch() -> _ReadBatch[T]:
        return _read_batch(records, parse, batch_size)

    # The first batch is read before the rejects file is opened: a file that cannot be read at
    # all (encoding, header) raises before anything is written. Each next batch is then read
    # and validated in a worker thread while the current one is stored: the store mostly
    # waits on the database (which runs on another core, or machine), the reading does not.
    with _collector_paused():
        current = next_batch()
        with (
            RejectsWriter(rejects_file) as rejects,
            ThreadPoolExecutor(1, "import-reader") as ahead,
        ):
            while True:
                following = ahead.submit(next_batch) if current.full else None
                summary.read += current.read
                _store_batch(session, path, apply, current.rows, current.refused, rejects, summary)
                progress.advance(current.read)
                if following is None:
                    break
                current = following.result()
    logger.info(
        "imported %s (%s): %d read, %d stored, %d updated, %d unchanged, %d refused",
        path,
        layout.describe(),
        summary.read,
        summary.stored,
        summary.updated,
        summary.unchanged,
        summary.refused,
    )
    return summary


_new_row = tuple.__new__  # builds a Row from a tuple without a Python-level call
_data_of = operator.attrgetter("data")
_line_of = operator.attrgetter("line")
_raw_of = operator.attrgetter("raw")


class _ReadBatch(NamedTuple, Generic[T]):
    """A batch of records read and validated, not yet stored."""

    read: int
    """Records read (valid or not)."""
    full: bool
    """Whether the batch holds as many records as asked: records may follow it."""
    rows: list[Row[T]]
    refused: list[tuple[ImportRecordError, str]]


def _read_batch(
    records: Iterator[SourceRecord], parse: ParseRecords[T], batch_size: int
) -> _ReadBatch[T]:
    """The next ``batch_size`` records of ``records``, validated by ``parse``."""
    chunk = list(itertools.islice(records, batch_size))
    refused: list[tuple[ImportRecordError, str]] = []
    pending = chunk
    if None in map(_data_of, chunk):  # records that could not be read
        pending = []
        for record in chunk:
            if record.data is None:
                assert record.error is not None
                refused.append((_at_line(record.error, record.line), record.raw))
            else:
                pending.append(record)
    rows = _parse(parse, pending, refused)
    return _ReadBatch(len(chunk), len(chunk) == batch_size, rows, refused)


def _parse(
    parse: ParseRecords[T],
    records: list[SourceRecord],
    refused: list[tuple[ImportRecordError, str]],
) -> list[Row[T]]:
    """The valid rows of ``records``; the refused ones are added to ``refused``."""
    if not records:
        return []
    parsed = parse(list(map(_data_of, records)))
    if ImportRecordError not in set(map(type, parsed)):  # the common case: built at C speed
        rows = zip(map(_line_of, records), map(_raw_of, records), parsed, strict=True)
        return list(map(_new_row, itertools.repeat(Row), rows))
    batch: list[Row[T]] = []
    for record, value in zip(records, parsed, strict=True):
        if type(value) is ImportRecordError:
            refused.append((_at_line(value, record.line), record.raw))
        else:
            batch.append(_new_row(Row, (record.line, record.raw, value)))
    return batch


def _store_batch(
    session: Session,
    path: Path,
    apply: ApplyBatch[T],
    batch: list[Row[T]],
    refused: list[tuple[ImportRecordError, str]],
    rejects: RejectsWriter,
    summary: ImportSummary,
) -> None:
    result = _apply_and_commit(session, apply, batch)
    summary.stored += result.stored
    summary.updated += result.updated
    summary.unchanged += result.unchanged
    for index, error in result.refused:
        row = batch[index]
        refused.append((_at_line(error, row.line), row.raw))
    refused.sort(key=lambda item: item[0].line or 0)
    for error, raw in refused:
        rejects.write(error, raw)
        summary.refused += 1
        if len(summary.problems) < MAX_PROBLEMS:
            summary.problems.append(
                Problem(path=path, message=error.reason, line=error.line, field=error.field)
            )
    rejects.flush()


def _apply_and_commit(
    session: Session, apply: ApplyBatch[T], batch: Sequence[Row[T]]
) -> BatchResult:
    """Apply ``batch`` and commit it; if the database refuses it, apply it record by record.

    Anything else raised (a lost connection, ``KeyboardInterrupt``) rolls the batch back before
    it propagates: a batch is committed whole or not at all, and the session stays usable.
    """
    if not batch:
        return BatchResult()
    try:
        with _rolled_back_on_error(session):
            result = apply(session, batch)
            session.commit()
        return result
    except _REFUSALS as exc:
        logger.warning(
            "database refused a batch of %d records from line %d (%s); retrying one by one",
            len(batch),
            batch[0].line,
            _first_line(exc),
        )
    total = BatchResult()
    for index, row in enumerate(batch):
        try:
            with _rolled_back_on_error(session):
                one = apply(session, [row])
                session.commit()
        except _REFUSALS as exc:
            total.refuse(
                index, ImportRecordError(f"the database refused the record: {_first_line(exc)}")
            )
            continue
        total.stored += one.stored
        total.updated += one.updated
        total.unchanged += one.unchanged
        total.refused.extend((index, error) for _, error in one.refused)
    return total


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while records stream through.

    An import allocates millions of small objects (records, rows, dicts) that reference
    counting frees; the collector would walk them over and over (a quarter of an import's
    time) and find no cycle. Memory stays bounded by the batch either way.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# What the database (or its driver) raises for one bad record: a constraint, a value it cannot
# store (a driver cannot encode a lone surrogate). A lost connection is none of these.
_REFUSALS = (IntegrityError, DataError, UnicodeEncodeError)


@contextlib.contextmanager
def _rolled_back_on_error(session: Session) -> Iterator[None]:
    try:
        yield
    except BaseException:
        try:
            session.rollback()
        except Exception:  # the connection is gone: the server drops the transaction anyway
            logger.exception("rolling back an import batch failed")
        raise


def _at_line(error: ImportRecordError, line: int) -> ImportRecordError:
    if error.line == line:
        return error
    return ImportRecordError(error.reason, line=line, field=error.field)


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
