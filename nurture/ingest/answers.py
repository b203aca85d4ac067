"""Import questionnaire answers: one answer per member and question, upserted.

Fields: ``member`` (external id or e-mail), ``question`` (a questionnaire key), ``value``,
``answered_at`` (optional ISO 8601 date-time with offset). In JSON Lines the value is JSON (a
list for a multiple choice, a number for a scale); in CSV it is text, multiple choices separated
by ``|``. Each value is checked by the questionnaire.

An answer older than the one stored is ignored (counted unchanged): the newest answer wins.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.errors import ImportRecordError
from nurture.ingest.batches import (
    DEFAULT_BATCH_SIZE,
    Applied,
    ImportSummary,
    Outcome,
    Row,
    run_import,
)
from nurture.ingest.fields import parse_datetime, parse_text
from nurture.ingest.members import resolve_member_refs
from nurture.ingest.readers import file_format
from nurture.storage.models import Answer, utcnow

__all__ = ["ANSWER_COLUMNS", "ANSWER_REQUIRED_COLUMNS", "AnswerValidator", "import_answers"]

ANSWER_COLUMNS = ("member", "question", "value", "answered_at")
"""Every field of an answer record, in the order of the documentation; no other is allowed."""
ANSWER_REQUIRED_COLUMNS = frozenset({"member", "question", "value"})
_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


class AnswerValidator(Protocol):
    """Anything that checks an answer: ``nurture.workspace.Questionnaire`` is one."""

    def question(self, key: str) -> Any:
        """The question with ``key``.

        Raises:
            KeyError: No question has this key; the message lists the keys there are.
        """
        ...

    def validate_answer(self, key: str, value: Any) -> Any:
        """Check ``value`` for question ``key``.

        Returns:
            The value to store, or ``None`` to store ``value`` as given.

        Raises:
            ImportRecordError: The question is unknown or the value does not fit it.
        """
        ...


@dataclass(frozen=True)
class AnswerRecord:
    """A valid answer record."""

    member: str
    question: str
    value: Any
    answered_at: dt.datetime | None


def import_answers(
    session: Session,
    path: Path | str,
    questionnaire: AnswerValidator,
    rejects_path: Path | str | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportSummary:
    """Import questionnaire answers from a CSV or JSON Lines file.

    Args:
        session: Where answers are stored; committed after each batch.
        path: A ``.csv``, ``.jsonl`` or ``.ndjson`` file.
        questionnaire: Checks each answer (``validate_answer(key, value)``).
        rejects_path: Where to write refused records (CSV: line, field, reason, raw), or
            ``None`` to only count them.
        batch_size: Records per commit.

    Returns:
        What the import did. Answers of unknown members are refused.

    Raises:
        ImportFileError: The file cannot be read (unknown suffix, not UTF-8, empty CSV
            file, bad CSV header); nothing is stored. Refused records do not raise: they go
            to the rejects file.
    """
    from_csv = file_format(Path(path)) == "csv"

    def parse(record: Mapping[str, Any]) -> AnswerRecord:
        return parse_answer(record, questionnaire, from_csv=from_csv)

    return run_import(
        session,
        path,
        rejects_path,
        parse=parse,
        apply=_apply_answers,
        known_columns=frozenset(ANSWER_COLUMNS),
        required_columns=ANSWER_REQUIRED_COLUMNS,
        batch_size=batch_size,
    )


def parse_answer(
    record: Mapping[str, Any], questionnaire: AnswerValidator, *, from_csv: bool
) -> AnswerRecord:
    """Validate one answer record against the questionnaire.

    Args:
        record: The record as read from the file.
        questionnaire: Knows the questions and checks each answer.
        from_csv: Whether the record comes from a CSV file, where every value is text.

    Returns:
        The valid record, its value in the questionnaire's canonical form.

    Raises:
        ImportRecordError: A field is invalid, the question unknown (field ``question``) or the
            value refused by the questionnaire (field ``value``).
    """
    member = parse_text(record, "member", required=True, max_length=320)
    question = parse_text(record, "question", required=True, max_length=100)
    assert member is not None and question is not None
    try:
        questionnaire.question(question)
    except KeyError as exc:
        reason = str(exc.args[0]) if exc.args else f"unknown question {question!r}"
        raise ImportRecordError(reason, field="question") from None
    value = record.get("value")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ImportRecordError("is required but missing or empty", field="value")
    answered_at = parse_datetime(record, "answered_at")
    candidates = _csv_candidates(value) if from_csv else [value]
    first_error: ImportRecordError | None = None
    for candidate in candidates:
        try:
            checked = questionnaire.validate_answer(question, candidate)
        except (ImportRecordError, ValueError, TypeError) as exc:
            if first_error is None:
                first_error = _answer_error(exc)
            continue
        return AnswerRecord(
            member, question, candidate if checked is None else checked, answered_at
        )
    assert first_error is not None
    raise first_error


def _csv_candidates(text: str) -> list[Any]:
    """The readings of a CSV cell, most specific first: a list, a number, the text, one choice."""
    text = text.strip()
    candidates: list[Any] = []
    if "|" in text:
        candidates.append([part.strip() for part in text.split("|") if part.strip()])
    if _INTEGER.match(text):
        candidates.append(int(text))
    elif _NUMBER.match(text):
        candidates.append(float(text))
    candidates.append(text)
    if "|" not in text:
        candidates.append([text])
    return candidates


def _answer_error(exc: Exception) -> ImportRecordError:
    """The questionnaire's refusal, as a fault of the ``value`` field (it names the question)."""
    reason = exc.reason if isinstance(exc, ImportRecordError) else str(exc)
    return ImportRecordError(reason, field="value")


def _apply_answers(session: Session, rows: Sequence[Row[AnswerRecord]]) -> list[Applied]:
    member_ids = resolve_member_refs(session, {row.value.member for row in rows})
    questions = {row.value.question for row in rows}
    stored = {
        (answer.member_id, answer.question_key): answer
        for answer in session.scalars(
            select(Answer).where(
                Answer.member_id.in_(set(member_ids.values())),
                Answer.question_key.in_(questions),
            )
        )
    }
    outcomes: list[Applied] = []
    for row in rows:
        record = row.value
        member_id = member_ids.get(record.member)
        if member_id is None:
            outcomes.append(
                ImportRecordError(
                    f"no member has external id or e-mail {record.member!r}", field="member"
                )
            )
            continue
        answer = stored.get((member_id, record.question))
        if answer is None:
            answer = Answer(
                member_id=member_id,
                question_key=record.question,
                value=record.value,
                answered_at=record.answered_at or utcnow(),
            )
            session.add(answer)
            stored[(member_id, record.question)] = answer
            outcomes.append(Outcome.STORED)
        elif _is_stale_or_same(answer, record):
            outcomes.append(Outcome.UNCHANGED)
        else:
            answer.value = record.value
            answer.answered_at = record.answered_at or utcnow()
            outcomes.append(Outcome.UPDATED)
    return outcomes


def _is_stale_or_same(answer: Answer, record: AnswerRecord) -> bool:
    """Whether the stored answer is newer than ``record``, or already is ``record``."""
    if record.answered_at is not None and record.answered_at < answer.answered_at:
        return True
    return answer.value == record.value and record.answered_at in (None, answer.answered_at)
