"""Store records given in memory (the HTTP API's), with the rules of file imports, all or none.

A request of the API carries a batch of records, as a JSON Lines file would: each is checked by
the same functions as an imported record (:func:`check_json_record`, the parsers of members,
answers and activity) and stored by the same batch writers. Unlike an import, a batch is taken
whole or not at all: when any record is refused, nothing is stored and every refusal is named
(its index in the batch, its field, why). The caller owns the transaction: it commits when
:attr:`RecordsResult.problems` is empty and rolls back otherwise.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from nurture.errors import ImportRecordError
from nurture.ingest.activity import ACTIVITY_COLUMNS, _apply_activity, parse_activities
from nurture.ingest.answers import ANSWER_COLUMNS, AnswerValidator, _apply_answers, parse_answers
from nurture.ingest.batches import ApplyBatch, BatchResult, Row
from nurture.ingest.members import _apply_members, _parse_members, remembered_member_refs
from nurture.ingest.readers import check_json_record
from nurture.languages import DEFAULT_LANGUAGES

__all__ = [
    "RecordProblem",
    "RecordsResult",
    "store_activity_records",
    "store_answer_records",
    "store_member_records",
]

T = TypeVar("T")


@dataclass(frozen=True)
class RecordProblem:
    """Why one record of a batch is refused.

    Attributes:
        index: The record's 0-based position in the batch.
        field: The field at fault, when known.
        reason: Why.
    """

    index: int
    field: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The problem as JSON: ``index``, ``field``, ``reason``."""
        return {"index": self.index, "field": self.field, "reason": self.reason}


@dataclass
class RecordsResult:
    """What storing a batch did, or why it was refused.

    Attributes:
        stored: Records stored as new rows.
        updated: Records that changed a stored row.
        unchanged: Records already stored as they are.
        problems: Every refused record, by index; when there is one, the caller rolls back.
    """

    stored: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[RecordProblem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The counts as JSON."""
        return {"stored": self.stored, "updated": self.updated, "unchanged": self.unchanged}


def store_member_records(
    session: Session,
    records: Sequence[Any],
    *,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    now: dt.datetime,
) -> RecordsResult:
    """Check and store members (create or update, by external id, else e-mail), as an import.

    Args:
        session: The session; the caller commits, or rolls back when there are problems.
        records: The records, as parsed JSON (objects of the member fields and attributes).
        languages: The workspace's languages, the default first.
        now: The clock: a ``joined_at`` later than it (beyond a day) is refused; a new member
            without one joined at ``now``.

    Returns:
        The counts, or every problem (then nothing was written).
    """

    def parse(items: list[Mapping[str, Any]]) -> list[Any]:
        return list(_parse_members(items, now, languages=languages))

    apply = functools.partial(_apply_members, default_language=languages[0], now=now)
    return _store(session, records, None, parse, apply)


def store_activity_records(
    session: Session, records: Sequence[Any], *, now: dt.datetime
) -> RecordsResult:
    """Check and store activity events, as an import (an event already stored is unchanged).

    Args:
        session: The session; the caller commits, or rolls back when there are problems.
        records: The records, as parsed JSON (objects of ``ACTIVITY_COLUMNS``).
        now: The clock: an event later than it (beyond a day) is refused.

    Returns:
        The counts, or every problem (then nothing was written).
    """
    return _store(
        session,
        records,
        frozenset(ACTIVITY_COLUMNS),
        lambda items: list(parse_activities(items, now)),
        _apply_activity,
    )


def store_answer_records(
    session: Session,
    records: Sequence[Any],
    questionnaire: AnswerValidator,
    *,
    now: dt.datetime,
) -> RecordsResult:
    """Check and store questionnaire answers, as an import of JSON Lines.

    Args:
        session: The session; the caller commits, or rolls back when there are problems.
        records: The records, as parsed JSON (objects of ``ANSWER_COLUMNS``).
        questionnaire: Checks each answer.
        now: The clock: an answer later than it (beyond a day) is refused.

    Returns:
        The counts, or every problem (then nothing was written).
    """
    return _store(
        session,
        records,
        frozenset(ANSWER_COLUMNS),
        lambda items: list(parse_answers(items, questionnaire, from_csv=False, now=now)),
        _apply_answers,
    )


def _store(
    session: Session,
    records: Sequence[Any],
    known_columns: frozenset[str] | None,
    parse: Callable[[list[Mapping[str, Any]]], list[Any]],
    apply: ApplyBatch[Any],
) -> RecordsResult:
    """Check every record, then store them all, or none when any is refused."""
    result = RecordsResult()
    candidates: list[tuple[int, Mapping[str, Any]]] = []
    for index, record in enumerate(records):
        refused = check_json_record(record, known_columns)
        if refused is None:
            candidates.append((index, record))
        else:
            result.problems.append(_problem(index, refused))
    parsed = parse([record for _, record in candidates])
    rows: list[Row[Any]] = []
    for (index, _), value in zip(candidates, parsed, strict=True):
        if isinstance(value, ImportRecordError):
            result.problems.append(_problem(index, value))
        else:
            rows.append(Row(index, "", value))
    if result.problems or not rows:
        result.problems.sort(key=lambda problem: problem.index)
        return result
    with remembered_member_refs():
        applied: BatchResult = apply(session, rows)
    session.flush()
    result.problems = sorted(
        (_problem(rows[position].line, error) for position, error in applied.refused),
        key=lambda problem: problem.index,
    )
    result.stored, result.updated, result.unchanged = (
        applied.stored,
        applied.updated,
        applied.unchanged,
    )
    return result


def _problem(index: int, error: ImportRecordError) -> RecordProblem:
    return RecordProblem(index, error.field, error.reason)
