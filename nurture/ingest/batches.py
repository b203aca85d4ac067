"""The import loop shared by every kind of record: stream, validate, store in batches, reject.

Records are read one at a time; valid ones are gathered into batches that are applied with a few
queries and committed together, so memory stays bounded by the batch size and a failure keeps
every batch committed before it. When the database refuses a batch (a unique or data constraint),
the batch is rolled back and applied again record by record, so only the guilty records are
refused. Other database errors (a lost connection) are raised.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from nurture.errors import ImportRecordError, Problem
from nurture.ingest.readers import read_records
from nurture.ingest.rejects import RejectsWriter

__all__ = ["DEFAULT_BATCH_SIZE", "ImportSummary", "Outcome", "Row", "run_import"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000
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
    """

    read: int = 0
    stored: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    rejects_path: Path | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Row(Generic[T]):
    """A valid record: its line, raw text and parsed value."""

    line: int
    raw: str
    value: T


Applied = Outcome | ImportRecordError
ParseRecord = Callable[[Mapping[str, Any]], T]
ApplyBatch = Callable[[Session, Sequence[Row[T]]], list[Applied]]


def run_import(
    session: Session,
    path: Path | str,
    rejects_path: Path | str | None,
    *,
    parse: ParseRecord[T],
    apply: ApplyBatch[T],
    known_columns: frozenset[str] | None,
    required_columns: frozenset[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportSummary:
    """Import every record of ``path``, committing a batch at a time.

    Args:
        session: Where records are stored; committed after each batch.
        path: The CSV or JSON Lines file.
        rejects_path: Where to write refused records (CSV), or ``None``.
        parse: Validates one record's fields (no database access) and returns its value.
        apply: Stores a batch of valid rows and says, for each, what it did or why it is refused.
        known_columns: The only columns allowed, or ``None`` to allow any.
        required_columns: Columns a CSV header must have.
        batch_size: Records per commit.

    Returns:
        The counts, and the rejects file.

    Raises:
        ImportFileError: The file cannot be read (unknown suffix, not UTF-8, empty CSV file,
            bad CSV header); nothing is stored and no rejects file is written.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, found {batch_size}")
    path = Path(path)
    rejects_file = Path(rejects_path) if rejects_path is not None else None
    summary = ImportSummary(rejects_path=rejects_file)
    batch: list[Row[T]] = []
    refused: list[tuple[ImportRecordError, str]] = []
    records = read_records(path, known_columns=known_columns, required_columns=required_columns)
    # The first record is read before the rejects file is opened: a file that cannot be read at
    # all (encoding, header) raises before anything is written.
    first = next(records, None)
    with RejectsWriter(rejects_file) as rejects:
        for record in itertools.chain([first] if first is not None else [], records):
            summary.read += 1
            try:
                if record.data is None:
                    assert record.error is not None
                    raise record.error
                value = parse(record.data)
            except ImportRecordError as exc:
                refused.append((_at_line(exc, record.line), record.raw))
            else:
                batch.append(Row(record.line, record.raw, value))
            if len(batch) + len(refused) >= batch_size:
                _store_batch(session, path, apply, batch, refused, rejects, summary)
                batch, refused = [], []
        _store_batch(session, path, apply, batch, refused, rejects, summary)
    logger.info(
        "imported %s: %d read, %d stored, %d updated, %d unchanged, %d refused",
        path,
        summary.read,
        summary.stored,
        summary.updated,
        summary.unchanged,
        summary.refused,
    )
    return summary


def _store_batch(
    session: Session,
    path: Path,
    apply: ApplyBatch[T],
    batch: list[Row[T]],
    refused: list[tuple[ImportRecordError, str]],
    rejects: RejectsWriter,
    summary: ImportSummary,
) -> None:
    outcomes = _apply_and_commit(session, apply, batch)
    for row, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, ImportRecordError):
            refused.append((_at_line(outcome, row.line), row.raw))
        elif outcome is Outcome.STORED:
            summary.stored += 1
        elif outcome is Outcome.UPDATED:
            summary.updated += 1
        else:
            summary.unchanged += 1
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
) -> list[Applied]:
    """Apply ``batch`` and commit it; if the database refuses it, apply it record by record.

    Anything else raised (a lost connection, ``KeyboardInterrupt``) rolls the batch back before
    it propagates: a batch is committed whole or not at all, and the session stays usable.
    """
    if not batch:
        return []
    try:
        with _rolled_back_on_error(session):
            outcomes = apply(session, batch)
            session.commit()
        return outcomes
    except (IntegrityError, DataError) as exc:
        logger.warning(
            "database refused a batch of %d records from line %d (%s); retrying one by one",
            len(batch),
            batch[0].line,
            _first_line(exc),
        )
    outcomes = []
    for row in batch:
        try:
            with _rolled_back_on_error(session):
                [outcome] = apply(session, [row])
                session.commit()
        except (IntegrityError, DataError) as exc:
            outcome = ImportRecordError(f"the database refused the record: {_first_line(exc)}")
        outcomes.append(outcome)
    return outcomes


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


def _first_line(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
