"""The journey engine: register definitions, enrol members, advance them, queue messages.

Everything here is deterministic given ``now``: no wall clock is read. The caller owns the
session and commits. Exactly-once is held by the database: one ``Enrollment`` per
(journey key, member, occurrence) and one ``Message`` per (enrollment, step); rows are written
with ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite, PostgreSQL) or inside a savepoint elsewhere,
so a re-run or a concurrent worker never writes a second one.

An enrollment's ``current_step`` is the step it runs when ``next_action_at`` comes: a wait step
moves it to the step after the wait and sets the time; an exit step completes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Table, and_, exists, func, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.delivery.suppression import find_suppressed_hashes, suppression_hash
from nurture.errors import JourneyValidationError, Problem
from nurture.journeys.models import (
    ExitStep,
    JourneyDefinition,
    MemberJoinedTrigger,
    QuestionnaireAnsweredTrigger,
    SendStep,
    WaitStep,
)
from nurture.storage.models import (
    Answer,
    Enrollment,
    EnrollmentState,
    Journey,
    Member,
    Message,
    MessageStatus,
)

__all__ = [
    "CONSENT_GRANTED",
    "DEFAULT_CHUNK_SIZE",
    "JourneySummary",
    "PickContent",
    "advance_journeys",
    "enrollment_condition",
    "recommended_content",
    "register_journeys",
]

logger = logging.getLogger(__name__)

CONSENT_GRANTED = "granted"
"""The ``Member.consent_status`` that allows non-transactional journeys."""

DEFAULT_CHUNK_SIZE = 500
"""Enrollments (and new members) handled per batch of queries."""


class PickContent(Protocol):
    """Picks content items for one member's message.

    Called as ``pick_content(session, member_id, count, kinds, exclude_keys)``; returns at most
    ``count`` JSON-ready dicts (``key``, ``title``, ``url``, ``kind``, ``summary``, ``reason``...),
    of the given kinds when ``kinds`` is not None, never one whose ``key`` is in ``exclude_keys``.
    """

    def __call__(
        self,
        session: Session,
        member_id: int,
        count: int,
        kinds: list[str] | None,
        exclude_keys: frozenset[str],
    ) -> list[dict[str, Any]]:
        """Content items for the member, best first."""
        ...


@dataclasses.dataclass(frozen=True)
class JourneySummary:
    """What one ``advance_journeys`` call did.

    Attributes:
        enrolled: New enrollments.
        messages_queued: New ``Message`` rows (status queued).
        advanced: Due enrollments that moved on (each counted once per call).
        completed: Enrollments that reached an exit step.
        exited: Enrollments stopped early (consent withdrawn, step missing from the definition).
    """

    enrolled: int = 0
    messages_queued: int = 0
    advanced: int = 0
    completed: int = 0
    exited: int = 0


# --- registration ---------------------------------------------------------------------------


def register_journeys(
    session: Session,
    definitions: Sequence[JourneyDefinition],
    *,
    now: dt.datetime | None = None,
) -> dict[str, Journey]:
    """Make sure each definition has its ``Journey`` version row.

    A definition seen before (same key and ``definition_hash``) keeps its row; a changed one gets
    a new row with version + 1. Reverting to an earlier definition makes that earlier row current
    again.

    Args:
        session: The database session; the caller commits.
        definitions: The journey definitions in force.
        now: Creation time of new rows; default: the database default (the current time).

    Returns:
        The current version row of each journey, by journey id.

    Raises:
        JourneyValidationError: Two definitions share one id.
    """
    _check_unique_ids(definitions)
    keys = [definition.id for definition in definitions]
    rows_by_key: dict[str, list[Journey]] = defaultdict(list)
    if keys:
        for row in session.scalars(select(Journey).where(Journey.key.in_(keys))):
            rows_by_key[row.key].append(row)

    current: dict[str, Journey] = {}
    for definition in definitions:
        rows = rows_by_key[definition.id]
        match = next((r for r in rows if r.definition_hash == definition.definition_hash), None)
        current[definition.id] = match or _insert_journey_version(session, definition, rows, now)
    return current


def _check_unique_ids(definitions: Sequence[JourneyDefinition]) -> None:
    seen: dict[str, JourneyDefinition] = {}
    problems = []
    for definition in definitions:
        if definition.id in seen:
            problems.append(
                Problem(
                    definition.source_path or "<definitions>",
                    f"journey id {definition.id!r} is also used by "
                    f"{seen[definition.id].source_path or 'another definition'}; "
                    "expected a unique id",
                    field="id",
                )
            )
        seen.setdefault(definition.id, definition)
    if problems:
        raise JourneyValidationError(problems)


def _insert_journey_version(
    session: Session,
    definition: JourneyDefinition,
    known_rows: list[Journey],
    now: dt.datetime | None,
    attempts: int = 3,
) -> Journey:
    """Insert the next version of a journey; a concurrent registration is read back instead."""
    by_hash = select(Journey).where(
        Journey.key == definition.id, Journey.definition_hash == definition.definition_hash
    )
    for _ in range(attempts):
        latest = session.scalar(
            select(func.max(Journey.version)).where(Journey.key == definition.id)
        )
        version = max([latest or 0, *(row.version for row in known_rows)]) + 1
        values: dict[str, Any] = {
            "key": definition.id,
            "version": version,
            "definition_hash": definition.definition_hash,
            "definition": definition.model_dump(mode="json"),
            "source_path": definition.source_path,
        }
        if now is not None:
            values["created_at"] = now
        _insert_ignoring_conflicts(session, _table(Journey), [values])
        row = session.scalars(by_hash).one_or_none()
        if row is not None:
            logger.info("journey %s: registered version %s", definition.id, row.version)
            return row
    raise RuntimeError(
        f"journey {definition.id!r}: could not register a new version after {attempts} attempts"
    )


# --- enrolment ------------------------------------------------------------------------------


@functools.singledispatch
def enrollment_condition(trigger: Any, now: dt.datetime) -> ColumnElement[bool]:
    """The SQL condition on ``Member`` that a trigger enrols (one dispatch per trigger type).

    Args:
        trigger: A trigger model of a journey definition.
        now: The current time; nothing after it counts.

    Returns:
        A boolean SQL expression on ``Member`` columns.

    Raises:
        TypeError: The trigger type has no condition registered.
    """
    raise TypeError(f"no enrollment condition for trigger {type(trigger).__name__}")


@enrollment_condition.register
def _member_joined(trigger: MemberJoinedTrigger, now: dt.datetime) -> ColumnElement[bool]:
    condition = Member.joined_at <= now
    if trigger.within_days is not None:
        since = now - dt.timedelta(days=trigger.within_days)
        condition = and_(condition, Member.joined_at >= since)
    return condition


@enrollment_condition.register
def _questionnaire_answered(
    trigger: QuestionnaireAnsweredTrigger, now: dt.datetime
) -> ColumnElement[bool]:
    answered = select(Answer.id).where(Answer.member_id == Member.id, Answer.answered_at <= now)
    if trigger.within_days is not None:
        answered = answered.where(
            Answer.answered_at >= now - dt.timedelta(days=trigger.within_days)
        )
    return exists(answered)


def _enrol_members(
    session: Session,
    definition: JourneyDefinition,
    journey: Journey,
    now: dt.datetime,
    chunk_size: int,
    suppression_salt: str | None,
) -> int:
    """Enrol every member the trigger matches who has no enrollment in this journey yet.

    Members whose address is in the suppression list are left out, transactional journeys
    included: an erased address that an import brings back is never enrolled again.
    """
    already = exists(
        select(Enrollment.id).where(
            Enrollment.journey_key == definition.id, Enrollment.member_id == Member.id
        )
    )
    query = select(Member.id, Member.email).where(
        enrollment_condition(definition.trigger, now), ~already
    )
    if not definition.transactional:
        query = query.where(Member.consent_status == CONSENT_GRANTED)
    candidates = session.execute(query.order_by(Member.id)).all()
    member_ids = _without_suppressed(session, candidates, suppression_salt)
    entry = definition.entry_step.id
    enrolled = 0
    for chunk in chunked(member_ids, chunk_size):
        rows = [
            {
                "journey_id": journey.id,
                "journey_key": definition.id,
                "member_id": member_id,
                "occurrence": 1,
                "state": EnrollmentState.ACTIVE,
                "current_step": entry,
                "next_action_at": now,
                "enrolled_at": now,
            }
            for member_id in chunk
        ]
        enrolled += _insert_ignoring_conflicts(session, _table(Enrollment), rows)
    if enrolled:
        logger.info("journey %s: enrolled %d members", definition.id, enrolled)
    return enrolled


def _without_suppressed(
    session: Session, candidates: Sequence[Any], suppression_salt: str | None
) -> list[int]:
    """Ids of the ``(id, email)`` candidates whose address is not in the suppression list."""
    if suppression_salt is None or not candidates:
        return [member_id for member_id, _ in candidates]
    salt = suppression_salt
    hashes = {member_id: suppression_hash(email, salt) for member_id, email in candidates}
    suppressed = find_suppressed_hashes(session, hashes.values())
    if suppressed:
        logger.info("%d suppressed addresses left out of enrolment", len(suppressed))
    return [member_id for member_id, _ in candidates if hashes[member_id] not in suppressed]


# --- advancing ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Counts:
    messages_queued: int = 0
    advanced: int = 0
    completed: int = 0
    exited: int = 0


@dataclasses.dataclass
class _Batch:
    """What one chunk of due enrollments needs, loaded in a few bulk queries."""

    members: dict[int, Member]
    written: set[tuple[int, str]]
    sent_keys: dict[int, set[str]]
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def advance_journeys(
    session: Session,
    definitions: Sequence[JourneyDefinition],
    now: dt.datetime,
    pick_content: PickContent | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    suppression_salt: str | None = None,
) -> JourneySummary:
    """Enrol the members each trigger matches, then move every due enrollment along.

    Members enter a journey once (no enrollment in that journey key yet), only with consent
    granted unless the journey is transactional, and never when their address is in the
    suppression list (given ``suppression_salt``). A due enrollment (active, ``next_action_at <=
    now``) runs the steps of the version it started on, until a wait (due again at ``now`` +
    duration) or an exit (completed). Each send step queues one ``Message`` (never two for one
    enrollment step, whatever re-runs or concurrent workers do). Enrollments of journeys absent
    from ``definitions`` are left as they are.

    Args:
        session: The database session; the caller commits.
        definitions: The journey definitions in force (``load_journeys``).
        now: The current time, timezone-aware; the only clock the engine reads.
        pick_content: Picks each message's content items; default: ``recommended_content``.
        chunk_size: Enrollments loaded and advanced per batch.
        suppression_salt: Salt of the suppression list (``Settings.suppression_salt``); None
            skips the check at enrolment (delivery still checks each message).

    Returns:
        Counts of what was done.

    Raises:
        ValueError: ``now`` is naive.
        JourneyValidationError: Two definitions share one id.
    """
    if now.tzinfo is None:
        raise ValueError(f"expected a timezone-aware now, found naive {now!r}")
    pick = pick_content or recommended_content
    ordered = sorted(definitions, key=lambda d: (d.category != "care", d.priority, d.id))
    journeys = register_journeys(session, ordered, now=now)

    enrolled = sum(
        _enrol_members(
            session, definition, journeys[definition.id], now, chunk_size, suppression_salt
        )
        for definition in ordered
    )
    session.flush()

    due_ids = list(
        session.scalars(
            select(Enrollment.id)
            .where(
                Enrollment.state == EnrollmentState.ACTIVE,
                Enrollment.next_action_at <= now,
                Enrollment.journey_key.in_([definition.id for definition in ordered]),
            )
            .order_by(Enrollment.id)
        )
    )
    counts = _Counts()
    versions: dict[int, JourneyDefinition] = {}
    for chunk in chunked(due_ids, chunk_size):
        _advance_chunk(session, chunk, now, pick, versions, counts)

    summary = JourneySummary(enrolled=enrolled, **dataclasses.asdict(counts))
    logger.info("journeys advanced at %s: %s", now.isoformat(), summary)
    return summary


def _advance_chunk(
    session: Session,
    enrollment_ids: Sequence[int],
    now: dt.datetime,
    pick: PickContent,
    versions: dict[int, JourneyDefinition],
    counts: _Counts,
) -> None:
    enrollments = list(
        session.scalars(
            select(Enrollment).where(Enrollment.id.in_(enrollment_ids)).order_by(Enrollment.id)
        )
    )
    member_ids = sorted({enrollment.member_id for enrollment in enrollments})
    _load_versions(session, {enrollment.journey_id for enrollment in enrollments}, versions)
    batch = _Batch(
        members={m.id: m for m in session.scalars(select(Member).where(Member.id.in_(member_ids)))},
        written={
            (enrollment_id, step_id)
            for enrollment_id, step_id in session.execute(
                select(Message.enrollment_id, Message.step_id).where(
                    Message.enrollment_id.in_(enrollment_ids)
                )
            )
        },
        sent_keys=_sent_item_keys(session, member_ids),
    )
    for enrollment in enrollments:
        _advance_enrollment(
            session, enrollment, versions[enrollment.journey_id], batch, now, pick, counts
        )
    session.flush()
    counts.messages_queued += _insert_ignoring_conflicts(session, _table(Message), batch.messages)


def _advance_enrollment(
    session: Session,
    enrollment: Enrollment,
    definition: JourneyDefinition,
    batch: _Batch,
    now: dt.datetime,
    pick: PickContent,
    counts: _Counts,
) -> None:
    """Run one due enrollment's steps until a wait or an exit."""
    counts.advanced += 1
    member = batch.members[enrollment.member_id]
    if not definition.transactional and member.consent_status != CONSENT_GRANTED:
        _finish(enrollment, EnrollmentState.EXITED, now)
        counts.exited += 1
        return
    step_id = enrollment.current_step or definition.entry_step.id
    # A valid definition has a wait in every loop, so a pass visits each step at most once.
    for _ in range(len(definition.steps) + 1):
        try:
            step = definition.step(step_id)
        except KeyError:
            logger.warning(
                "enrollment %s: journey %s has no step %r; exiting it",
                enrollment.id,
                definition.id,
                step_id,
            )
            _finish(enrollment, EnrollmentState.EXITED, now)
            counts.exited += 1
            return
        match step:
            case SendStep():
                _queue_message(session, enrollment, definition, step, member, batch, now, pick)
                step_id = step.next
            case WaitStep():
                enrollment.current_step = step.next
                enrollment.next_action_at = now + step.delta
                return
            case ExitStep():
                enrollment.current_step = step.id
                _finish(enrollment, EnrollmentState.COMPLETED, now)
                counts.completed += 1
                return
    raise RuntimeError(f"journey {definition.id!r}: loop without a wait step at {step_id!r}")


def _queue_message(
    session: Session,
    enrollment: Enrollment,
    definition: JourneyDefinition,
    step: SendStep,
    member: Member,
    batch: _Batch,
    now: dt.datetime,
    pick: PickContent,
) -> None:
    """Add the step's message to the batch, unless that enrollment step has one already."""
    if (enrollment.id, step.id) in batch.written:
        return
    batch.written.add((enrollment.id, step.id))
    sent = batch.sent_keys[member.id]
    items: list[dict[str, Any]] = []
    if step.content.count:
        exclude = frozenset(sent)
        picked = pick(session, member.id, step.content.count, step.content.kinds, exclude)
        items = [item for item in _jsonable(picked) if item.get("key") not in exclude]
        items = items[: step.content.count]
        sent.update(str(item["key"]) for item in items if item.get("key") is not None)
    batch.messages.append(
        {
            "enrollment_id": enrollment.id,
            "step_id": step.id,
            "member_id": member.id,
            "journey_key": definition.id,
            "template": step.template,
            "subject": step.subject_for(member.language),
            "context": {"items": items},
            "status": MessageStatus.QUEUED,
            "scheduled_at": now,
            "created_at": now,
            "attempts": 0,
        }
    )


def _finish(enrollment: Enrollment, state: EnrollmentState, now: dt.datetime) -> None:
    enrollment.state = state
    enrollment.next_action_at = None
    enrollment.finished_at = now


def _load_versions(
    session: Session, journey_ids: Iterable[int], versions: dict[int, JourneyDefinition]
) -> None:
    """Read the definition of each journey version not read yet (one query)."""
    missing = sorted(set(journey_ids) - versions.keys())
    if not missing:
        return
    for row in session.scalars(select(Journey).where(Journey.id.in_(missing))):
        definition = JourneyDefinition.model_validate(row.definition)
        versions[row.id] = definition.with_source(row.source_path)


def _sent_item_keys(session: Session, member_ids: Sequence[int]) -> dict[int, set[str]]:
    """Content item keys already in each member's messages (of any journey)."""
    sent: dict[int, set[str]] = defaultdict(set)
    if not member_ids:
        return sent
    rows = session.execute(
        select(Message.member_id, Message.context).where(Message.member_id.in_(member_ids))
    )
    for member_id, context in rows:
        items = context.get("items") if isinstance(context, dict) else None
        for item in items or []:
            if isinstance(item, dict) and item.get("key") is not None:
                sent[member_id].add(str(item["key"]))
    return sent


def _jsonable(items: Iterable[Any]) -> list[dict[str, Any]]:
    """Items as plain JSON dicts (dataclasses converted, dates as ISO strings)."""
    plain = [
        dataclasses.asdict(item)
        if dataclasses.is_dataclass(item) and not isinstance(item, type)
        else dict(item)
        for item in items
    ]
    return json.loads(json.dumps(plain, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# --- the real content picker ----------------------------------------------------------------


def recommended_content(
    session: Session,
    member_id: int,
    count: int,
    kinds: list[str] | None,
    exclude_keys: frozenset[str],
) -> list[dict[str, Any]]:
    """Pick content from the member's recommendations (``nurture.recommend``), best first.

    Args:
        session: The database session.
        member_id: The member.
        count: How many items at most.
        kinds: Only items of these kinds, when given.
        exclude_keys: Keys of items never to pick (already sent).

    Returns:
        Up to ``count`` items as dicts (key, title, url, kind, summary, language, reason, score).
    """
    from nurture.recommend import recommendations_for  # optional at import time

    limit = count + len(exclude_keys) + (count * 5 if kinds else 0)
    picked = []
    for item in _jsonable(recommendations_for(session, member_id, limit)):
        if item.get("key") in exclude_keys or (kinds and item.get("kind") not in kinds):
            continue
        picked.append(item)
        if len(picked) == count:
            break
    return picked


# --- database helpers -----------------------------------------------------------------------


def _table(model: type[Any]) -> Table:
    return model.__table__


def _insert_ignoring_conflicts(session: Session, table: Table, rows: list[dict[str, Any]]) -> int:
    """Insert rows, skipping any that break a unique constraint; returns how many were written.

    SQLite and PostgreSQL use ``ON CONFLICT DO NOTHING``; other databases insert in a savepoint
    and, on a conflict, row by row.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        dialect_insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
        statement = dialect_insert(table).on_conflict_do_nothing().returning(table.c.id)
        written = 0
        for chunk in chunked(rows, DEFAULT_CHUNK_SIZE):
            written += len(session.execute(statement, chunk).all())
        return written
    try:
        with session.begin_nested():
            session.execute(insert(table), rows)
        return len(rows)
    except IntegrityError:
        written = 0
        for row in rows:
            try:
                with session.begin_nested():
                    session.execute(insert(table), [row])
                written += 1
            except IntegrityError:
                logger.info("%s: row already written by another run, skipped", table.name)
        return written
