"""Import questionnaire answers: one answer per member and question, upserted.

Fields: ``member`` (external id or e-mail), ``question`` (a questionnaire key), ``value``,
``answered_at`` (optional ISO 8601 date-time with offset). In JSON Lines the value is JSON (a
list for a multiple choice, a number for a scale); in CSV it is text, multiple choices separated
by ``|``. Each value is checked by the questionnaire.

An answer older than the one stored is ignored (counted unchanged): the newest answer wins.
A free-text answer may span lines; like every text it must be valid text
(:func:`nurture.ingest.fields.clean_text`). The answers of a batch are written with one upsert
(``COPY`` on PostgreSQL, :mod:`nurture.ingest.bulk`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.errors import ImportRecordError
from nurture.ingest.batches import (
    DEFAULT_BATCH_SIZE,
    BatchResult,
    ImportSummary,
    Row,
    run_import,
)
from nurture.ingest.bulk import select_where_in, write_columns, write_rows
from nurture.ingest.fields import (
    check_json_value,
    clean_text,
    field_columns,
    past_datetime_column,
    text_column,
)
from nurture.ingest.members import remembered_member_refs, resolve_member_refs
from nurture.ingest.readers import file_format
from nurture.storage.models import Answer, table_of, utcnow

__all__ = [
    "ANSWER_COLUMNS",
    "ANSWER_REQUIRED_COLUMNS",
    "AnswerValidator",
    "import_answers",
    "parse_answer",
    "parse_answers",
]

ANSWER_COLUMNS = ("member", "question", "value", "answered_at")
"""Every field of an answer record, in the order of the documentation; no other is allowed."""
ANSWER_REQUIRED_COLUMNS = frozenset({"member", "question", "value"})
_INTEGER = re.compile(r"^[+-]?\d{1,18}$")
_NUMBER = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_STORED_COLUMNS = ("member_id", "question_key", "value", "answered_at")
_MEMBERS_PER_QUERY = 5000  # bound parameters of one query: well within SQLite's limit


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


class _AnswerRecord(NamedTuple):
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
    encoding: str | None = None,
    delimiter: str | None = None,
) -> ImportSummary:
    """Import questionnaire answers from a CSV or JSON Lines file.

    Args:
        session: Where answers are stored; committed after each batch.
        path: A ``.csv``, ``.jsonl`` or ``.ndjson`` file.
        questionnaire: Checks each answer (``validate_answer(key, value)``).
        rejects_path: Where to write refused records (CSV: line, field, reason, raw), or
            ``None`` to only count them.
        batch_size: Records per commit.
        encoding: The file's encoding (a Python codec name); detected when ``None``.
        delimiter: The CSV delimiter; detected when ``None``.

    Returns:
        What the import did. Answers of unknown members are refused.

    Raises:
        ImportFileError: The file cannot be read (unknown suffix, an encoding it does not
            decode in, empty CSV file, bad CSV header); nothing is stored. Refused records do
            not raise: they go to the rejects file.
    """
    from_csv = file_format(Path(path)) == "csv"
    now = utcnow()

    remembered: dict[Any, _Checked] = {}

    def parse(records: list[Mapping[str, Any]]) -> list[_AnswerRecord | ImportRecordError]:
        return _parse_answers(records, questionnaire, from_csv, now, remembered)

    with remembered_member_refs():
        return run_import(
            session,
            path,
            rejects_path,
            parse=parse,
            apply=_apply_answers,
            known_columns=frozenset(ANSWER_COLUMNS),
            required_columns=ANSWER_REQUIRED_COLUMNS,
            batch_size=batch_size,
            encoding=encoding,
            delimiter=delimiter,
        )


def parse_answer(
    record: Mapping[str, Any],
    questionnaire: AnswerValidator,
    *,
    from_csv: bool,
    now: dt.datetime | None = None,
) -> _AnswerRecord:
    """Validate one answer record against the questionnaire.

    Args:
        record: The record as read from the file.
        questionnaire: Knows the questions and checks each answer.
        from_csv: Whether the record comes from a CSV file, where every value is text.
        now: The import's clock: a later ``answered_at`` (beyond a day) is refused.

    Returns:
        The valid record, its value in the questionnaire's canonical form.

    Raises:
        ImportRecordError: A field is invalid, the question unknown (field ``question``) or the
            value refused by the questionnaire (field ``value``).
    """
    [parsed] = parse_answers([record], questionnaire, from_csv=from_csv, now=now)
    if isinstance(parsed, ImportRecordError):
        raise parsed
    return parsed


def parse_answers(
    records: Sequence[Mapping[str, Any]],
    questionnaire: AnswerValidator,
    *,
    from_csv: bool,
    now: dt.datetime | None = None,
) -> list[_AnswerRecord | ImportRecordError]:
    """Validate answer records against the questionnaire (as :func:`parse_answer` each).

    Returns:
        Each record's value, or the error refusing it: its first invalid field (member,
        question, value, answered_at), the questionnaire's refusal of the value last.
    """
    return _parse_answers(records, questionnaire, from_csv, now or utcnow(), {})


def _parse_answers(
    records: Sequence[Mapping[str, Any]],
    questionnaire: AnswerValidator,
    from_csv: bool,
    now: dt.datetime,
    remembered: dict[Any, _Checked],
) -> list[_AnswerRecord | ImportRecordError]:
    """:func:`parse_answers`, remembering checked answers in ``remembered`` (batch to batch)."""
    member_values, question_values, values, time_values = field_columns(records, ANSWER_COLUMNS)
    members = text_column(member_values, "member", required=True, max_length=320)
    questions = text_column(question_values, "question", required=True, max_length=100)
    times = past_datetime_column(time_values, "answered_at", now)
    known = {
        question: _unknown_question(questionnaire, question)
        for question in dict.fromkeys(questions.values)  # in order: each asked once
        if type(question) is not ImportRecordError
    }
    valid = {question for question, error in known.items() if error is None}
    outcomes, all_accepted = _check_values(
        questions.values, values, valid, questionnaire, from_csv, remembered
    )
    refused = members.refused or questions.refused or times.refused
    if all_accepted and len(valid) == len(known) and not refused:
        # The common case, every record valid: built at C speed.
        canonical = map(_value_of, outcomes)
        rows = zip(members.values, questions.values, canonical, times.values, strict=True)
        return list(map(_new_answer, itertools.repeat(_AnswerRecord), rows))
    parsed: list[_AnswerRecord | ImportRecordError] = []
    for member, question, outcome, answered_at in zip(
        members.values, questions.values, outcomes, times.values, strict=True
    ):
        if type(member) is ImportRecordError:
            parsed.append(member)
            continue
        if type(question) is ImportRecordError:
            parsed.append(question)
            continue
        if outcome is None:  # an unknown question
            error = known[question]
            assert error is not None
            parsed.append(error)
            continue
        canonical, value_error, refusal = outcome
        if value_error is not None:
            parsed.append(value_error)
        elif type(answered_at) is ImportRecordError:
            parsed.append(answered_at)
        elif refusal is not None:
            parsed.append(refusal)
        else:
            parsed.append(_new_answer(_AnswerRecord, (member, question, canonical, answered_at)))
    return parsed


def _check_values(
    questions: Sequence[Any],
    values: Sequence[Any],
    valid: set[str],
    questionnaire: AnswerValidator,
    from_csv: bool,
    remembered: dict[Any, _Checked],
) -> tuple[list[_Checked | None], bool]:
    """What checking each value for its question finds (``None`` for an invalid question).

    The same answer is checked once: most answers are one of a few options. ``remembered``
    holds the outcomes of answers checked before (by their :func:`_memo_key`), and is added to.

    Returns:
        Each record's outcome, and whether every outcome accepts its value.
    """
    keys = _memo_keys(questions, values)
    if keys is not None:  # every value hashable: each distinct answer looked up once
        distinct = dict(zip(keys, values, strict=True))
        checked = {}
        for key, value in distinct.items():
            outcome = remembered.get(key)
            if outcome is None and key[0] in valid:
                outcome = _check_value(value, key[0], questionnaire, from_csv)
                _remember(remembered, key, value, outcome)
            checked[key] = outcome
        accepted = all(
            outcome is None or (outcome.invalid is None and outcome.refused is None)
            for outcome in checked.values()
        )
        return list(map(checked.__getitem__, keys)), accepted
    outcomes: list[_Checked | None] = []
    accepted = True
    for question, value in zip(questions, values, strict=True):
        if question not in valid:
            outcomes.append(None)
            continue
        key = _memo_key(question, value)
        outcome = remembered.get(key) if key is not None else None
        if outcome is None:
            outcome = _check_value(value, question, questionnaire, from_csv)
            if key is not None:
                _remember(remembered, key, value, outcome)
        if outcome.invalid is not None or outcome.refused is not None:
            accepted = False
        outcomes.append(outcome)
    return outcomes, accepted


def _remember(remembered: dict[Any, _Checked], key: Any, value: Any, outcome: _Checked) -> None:
    """Remember ``outcome`` for ``key``, unless ``value`` is long (free text, seldom repeated)."""
    if (type(value) is str or type(value) is list) and len(value) > _MEMO_LENGTH:
        return
    if len(remembered) >= _MAX_REMEMBERED:
        remembered.clear()
    remembered[key] = outcome


def _memo_keys(questions: Sequence[Any], values: Sequence[Any]) -> list[Any] | None:
    """:func:`_memo_key` of each answer, built at C speed; ``None`` when one has no key."""
    kinds = set(map(type, values))
    if not kinds <= _KEYED_TYPES:
        return None
    frozen: Sequence[Any] = values
    if list in kinds:
        lists = [value for value in values if type(value) is list]
        if not set(map(type, itertools.chain.from_iterable(lists))) <= _TEXT_TYPE:
            return None  # 1, 1.0 and True are equal in Python but not the same answer
        frozen = [tuple(value) if type(value) is list else value for value in values]
    return list(zip(questions, map(type, values), frozen, strict=True))


_MAX_REMEMBERED = 100_000
"""The most distinct answers an import remembers having checked."""
_MEMO_LENGTH = 200
"""The longest text (or list) remembered once checked (longer ones are seldom repeated)."""
_KEYED_TYPES = frozenset({str, int, float, bool, type(None), list})
"""The types of answers whose key :func:`_memo_keys` builds."""
_TEXT_TYPE = frozenset({str})
_MEMO_TYPES = frozenset({str, int, float, bool})
_new_answer = tuple.__new__  # builds an _AnswerRecord without a Python-level call
_value_of: Callable[[Any], Any] = operator.itemgetter(0)


class _Checked(NamedTuple):
    """What checking an answer's value found: its canonical value, or why it is refused."""

    value: Any
    invalid: ImportRecordError | None
    """The value is missing or not valid text or JSON (reported before ``answered_at``)."""
    refused: ImportRecordError | None
    """The questionnaire refuses the value (reported after ``answered_at``)."""


def _memo_key(question: str, value: Any) -> Any:
    """A key for the outcome of checking ``value`` for ``question``; ``None`` to not remember.

    The value's type is part of the key: ``1``, ``1.0`` and ``True`` are equal in Python but
    not the same answer.
    """
    kind = type(value)
    if kind in _MEMO_TYPES:
        return (question, kind, value)
    if kind is list and len(value) <= 50 and all(type(item) is str for item in value):
        return (question, list, tuple(value))
    return None


def _check_value(
    value: Any, question: str, questionnaire: AnswerValidator, from_csv: bool
) -> _Checked:
    try:
        value = _clean_value(value)
    except ImportRecordError as exc:
        return _Checked(None, exc.with_traceback(None), None)
    candidates = _csv_candidates(value) if from_csv else [value]
    first_error: ImportRecordError | None = None
    for candidate in candidates:
        try:
            checked = questionnaire.validate_answer(question, candidate)
        except (ImportRecordError, ValueError, TypeError) as exc:
            if first_error is None:
                first_error = _answer_error(exc)
            continue
        return _Checked(candidate if checked is None else checked, None, None)
    assert first_error is not None
    return _Checked(None, None, first_error)


def _unknown_question(questionnaire: AnswerValidator, question: str) -> ImportRecordError | None:
    try:
        questionnaire.question(question)
    except KeyError as exc:
        reason = str(exc.args[0]) if exc.args else f"unknown question {question!r}"
        return ImportRecordError(reason, field="question")
    return None


def _clean_value(value: Any) -> Any:
    """The value as text nurture stores, or a JSON value it can store; refused otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ImportRecordError("is required but missing or empty", field="value")
    try:
        if isinstance(value, str):
            return clean_text(value, multiline=True)
        check_json_value(value)
    except ValueError as exc:
        raise ImportRecordError(str(exc), field="value") from None
    return value


def _csv_candidates(text: str) -> list[Any]:
    """The readings of a CSV cell, most specific first: a list, a number, the text, one choice."""
    text = text.strip()
    candidates: list[Any] = []
    if "|" in text:
        candidates.append([part.strip() for part in text.split("|") if part.strip()])
    if _INTEGER.match(text):
        candidates.append(int(text))
    elif _NUMBER.match(text) and math.isfinite(number := float(text)):
        candidates.append(number)
    candidates.append(text)
    if "|" not in text:
        candidates.append([text])
    return candidates


def _answer_error(exc: Exception) -> ImportRecordError:
    """The questionnaire's refusal, as a fault of the ``value`` field (it names the question)."""
    reason = exc.reason if isinstance(exc, ImportRecordError) else str(exc)
    return ImportRecordError(reason, field="value")


def _apply_answers(session: Session, rows: Sequence[Row[_AnswerRecord]]) -> BatchResult:
    result = BatchResult()
    records = [row.value for row in rows]
    member_ids = resolve_member_refs(session, {record.member for record in records})
    stored = _stored_answers(
        session, set(member_ids.values()), {record.question for record in records}
    )
    now = utcnow()
    written = _write_new_answers(session, records, member_ids, stored, now)
    if written is not None:
        result.stored += written
        return result
    writes: dict[tuple[int, str], tuple[int, str, Any, dt.datetime]] = {}
    new = updated = 0
    for index, record in enumerate(records):
        member, question, value, answered_at = record
        member_id = member_ids.get(member)
        if member_id is None:
            result.refuse(
                index,
                ImportRecordError(
                    f"no member has external id or e-mail {member!r}", field="member"
                ),
            )
            continue
        key = (member_id, question)
        current = stored.get(key)
        if current is None:
            new += 1
        elif _is_stale_or_same(*current, record):
            continue
        else:
            updated += 1
        answer = (member_id, question, value, answered_at or now)
        stored[key] = (value, answer[3])
        writes[key] = answer
    result.stored += new
    result.updated += updated
    result.unchanged += len(records) - len(result.refused) - new - updated
    write_rows(
        session,
        table_of(Answer),
        _STORED_COLUMNS,
        list(writes.values()),
        conflict=("member_id", "question_key"),
        update=("value", "answered_at"),
    )
    return result


def _write_new_answers(
    session: Session,
    records: Sequence[_AnswerRecord],
    member_ids: Mapping[str, int],
    stored: Mapping[tuple[int, str], Any],
    now: dt.datetime,
) -> int | None:
    """Write ``records`` as new answers, when each is: ``None`` when one is not.

    The common case of a first import, column by column: every member found, none of these
    answers stored, no two records of the batch for one member and question.
    """
    members, questions, values, times = zip(*records, strict=True)
    try:
        member_column = list(map(member_ids.__getitem__, members))
    except KeyError:  # an unknown member: refused by the general path
        return None
    keys = set(zip(member_column, questions, strict=True))
    if len(keys) < len(records) or not keys.isdisjoint(stored):
        return None  # an answer stored, or given twice: the newest wins
    if None in times:
        times = tuple(now if answered_at is None else answered_at for answered_at in times)
    write_columns(
        session,
        table_of(Answer),
        _STORED_COLUMNS,
        (member_column, questions, values, times),
        conflict=("member_id", "question_key"),
        update=("value", "answered_at"),
    )
    return len(records)


def _stored_answers(
    session: Session, member_ids: set[int], questions: set[str]
) -> dict[tuple[int, str], tuple[Any, dt.datetime]]:
    """The stored value and time of the answers of ``member_ids`` to ``questions``."""
    columns = ("member_id", "question_key", "value", "answered_at")
    # SQLite gives JSON back as its text; PostgreSQL's driver reads it.
    as_text = session.connection().dialect.name != "postgresql"
    stored: dict[tuple[int, str], tuple[Any, dt.datetime]] = {}
    for chunk in chunked(sorted(member_ids), _MEMBERS_PER_QUERY):
        found = select_where_in(session, table_of(Answer), columns, "member_id", chunk)
        for member_id, question, value, answered_at in found:
            if question in questions:
                stored[(member_id, question)] = (
                    _json_value(value) if as_text else value,
                    _stored_time(answered_at),
                )
    return stored


def _json_value(value: Any) -> Any:
    """A stored answer's value, from its JSON text."""
    if type(value) is not str:  # a number: SQLite's JSON column has numeric affinity
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:  # written by another JSON writer: read as SQLAlchemy would
        return json.loads(value)


def _stored_time(value: dt.datetime | str) -> dt.datetime:
    """A stored time, aware in UTC (SQLite gives back the text SQLAlchemy wrote, in UTC)."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _is_stale_or_same(value: Any, answered_at: dt.datetime, record: _AnswerRecord) -> bool:
    """Whether the stored answer is newer than ``record``, or already is ``record``."""
    if record.answered_at is not None and record.answered_at < answered_at:
        return True
    return value == record.value and record.answered_at in (None, answered_at)
