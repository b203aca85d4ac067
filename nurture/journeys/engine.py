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
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Protocol

from sqlalchemy import Table, exists, func, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.delivery.suppression import (
    CONSENT_GRANTED,
    consent_refusal,
    find_suppressed_hashes,
    suppression_hash,
)
from nurture.errors import JourneyValidationError, Problem
from nurture.journeys.conditions import condition_holds
from nurture.journeys.models import (
    WEEKDAYS,
    BranchStep,
    ContentSlot,
    ExitStep,
    JourneyDefinition,
    SendStep,
    WaitStep,
    parse_duration,
)
from nurture.journeys.policy import SendingRules
from nurture.journeys.triggers import Candidate, local_zone, trigger_candidates
from nurture.segmentation.assignments import effective_memberships
from nurture.segmentation.rules import member_rule_contexts
from nurture.storage import insert_ignoring_conflicts
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    ContentItem,
    Enrollment,
    EnrollmentState,
    Journey,
    Member,
    Message,
    MessageStatus,
    ProviderEvent,
    Segment,
)

__all__ = [
    "CONSENT_GRANTED",
    "DEFAULT_CHUNK_SIZE",
    "HeldEmail",
    "JourneySummary",
    "PickContent",
    "advance_journeys",
    "recommended_content",
    "register_journeys",
    "upcoming_content",
    "upcoming_events",
    "wait_until",
]

logger = logging.getLogger(__name__)

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
        goal_reached: Enrollments that exited because the member reached the journey's goal.
        budget_deferred: Emails held back because the member's budget was spent (they wait).
        budget_skipped: Emails skipped for the same reason (their journey says skip).
        quiet_deferred: Emails held back until the end of the member's quiet hours.
        condition_errors: Conditions that failed to evaluate (taken as false; logged).
    """

    enrolled: int = 0
    messages_queued: int = 0
    advanced: int = 0
    completed: int = 0
    exited: int = 0
    goal_reached: int = 0
    budget_deferred: int = 0
    budget_skipped: int = 0
    quiet_deferred: int = 0
    condition_errors: int = 0


@dataclasses.dataclass(frozen=True)
class HeldEmail:
    """An email the sending rules held back, reported to ``advance_journeys``' ``on_hold``.

    Attributes:
        journey: The journey key.
        step: The send step id.
        member_id: The member.
        reason: ``quiet_hours`` or ``budget`` (both wait), or ``budget_skip`` (skipped).
    """

    journey: str
    step: str
    member_id: int
    reason: str


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
        insert_ignoring_conflicts(session, _table(Journey), [values])
        row = session.scalars(by_hash).one_or_none()
        if row is not None:
            logger.info("journey %s: registered version %s", definition.id, row.version)
            return row
    raise RuntimeError(
        f"journey {definition.id!r}: could not register a new version after {attempts} attempts"
    )


# --- enrolment ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Counts:
    enrolled: int = 0
    messages_queued: int = 0
    advanced: int = 0
    completed: int = 0
    exited: int = 0
    goal_reached: int = 0
    budget_deferred: int = 0
    budget_skipped: int = 0
    quiet_deferred: int = 0
    condition_errors: int = 0


def _enrol_members(
    session: Session,
    definition: JourneyDefinition,
    journey: Journey,
    now: dt.datetime,
    context: _RunContext,
    counts: _Counts,
) -> None:
    """Enrol the trigger's candidates that consent, suppression, re-entry and audience allow.

    Members whose address is in the suppression list are left out, transactional journeys
    included: an erased address that an import brings back is never enrolled again.
    """
    candidates = [
        candidate
        for candidate in trigger_candidates(definition.trigger, session, now, definition.id)
        if context.member_ids is None or candidate.member_id in context.member_ids
    ]
    if not candidates:
        return
    history = _enrollment_history(
        session, definition.id, [candidate.member_id for candidate in candidates]
    )
    cooldown = parse_duration(definition.cooldown) if definition.cooldown else None
    allowed: list[Candidate] = []
    for candidate in candidates:
        past = history.get(candidate.member_id)
        if past is not None:
            if past.active or definition.reentry == "once":
                continue
            if candidate.occurrence in past.occurrences:
                continue
            if cooldown and past.last_finished and past.last_finished + cooldown > now:
                continue
        allowed.append(candidate)
    entry = definition.entry_step.id
    enrolled = 0
    for chunk in chunked(allowed, context.chunk_size):
        members = _member_rows(session, [candidate.member_id for candidate in chunk])
        chunk = [
            candidate
            for candidate in chunk
            if candidate.member_id in members
            and (definition.transactional or _may_get(members[candidate.member_id], definition))
        ]
        keep = set(
            _without_suppressed(
                session,
                [(c.member_id, members[c.member_id].email) for c in chunk],
                context.suppression_salt,
            )
        )
        chunk = [candidate for candidate in chunk if candidate.member_id in keep]
        if definition.audience and chunk:
            facts = context.facts(session, [candidate.member_id for candidate in chunk], now)
            chunk = [
                candidate
                for candidate in chunk
                if _holds(
                    definition.audience,
                    facts.names(candidate.member_id, candidate.context),
                    counts,
                    definition.id,
                    "audience",
                )
            ]
        rows = [
            {
                "journey_id": journey.id,
                "journey_key": definition.id,
                "member_id": candidate.member_id,
                "occurrence": candidate.occurrence,
                "state": EnrollmentState.ACTIVE,
                "current_step": entry,
                "next_action_at": now,
                "enrolled_at": now,
                "context": candidate.context,
            }
            for candidate in chunk
        ]
        enrolled += insert_ignoring_conflicts(session, _table(Enrollment), rows)
    if enrolled:
        logger.info("journey %s: enrolled %d members", definition.id, enrolled)
    counts.enrolled += enrolled


@dataclasses.dataclass
class _History:
    active: bool = False
    occurrences: set[int] = dataclasses.field(default_factory=set)
    last_finished: dt.datetime | None = None


def _may_get(member: Member, definition: JourneyDefinition) -> bool:
    """Whether a member's consent and preferences allow a marketing journey's emails."""
    return consent_refusal(member, definition.category) is None


def _enrollment_history(
    session: Session, journey_key: str, member_ids: Sequence[int]
) -> dict[int, _History]:
    """The past and current enrollments of some members in a journey (a query per chunk)."""
    history: dict[int, _History] = defaultdict(_History)
    for batch in chunked(sorted(set(member_ids)), DEFAULT_CHUNK_SIZE):
        rows = session.execute(
            select(
                Enrollment.member_id,
                Enrollment.occurrence,
                Enrollment.state,
                Enrollment.finished_at,
            ).where(Enrollment.journey_key == journey_key, Enrollment.member_id.in_(batch))
        ).tuples()
        for member_id, occurrence, state, finished_at in rows:
            past = history[member_id]
            past.occurrences.add(occurrence)
            past.active = past.active or state == EnrollmentState.ACTIVE
            if finished_at is not None and (
                past.last_finished is None or finished_at > past.last_finished
            ):
                past.last_finished = finished_at
    return history


def _member_rows(session: Session, member_ids: Sequence[int]) -> dict[int, Member]:
    return {
        member.id: member
        for member in session.scalars(select(Member).where(Member.id.in_(sorted(set(member_ids)))))
    }


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


# --- what conditions read -------------------------------------------------------------------


class _Facts:
    """What conditions read of a chunk of members, loaded in a few bulk queries."""

    def __init__(self, session: Session, member_ids: Sequence[int], now: dt.datetime) -> None:
        self.contexts = member_rule_contexts(session, member_ids, now)
        memberships = effective_memberships(session, member_ids)
        segment_ids = sorted({sid for ids in memberships.values() for sid in ids})
        keys = (
            dict(
                session.execute(select(Segment.id, Segment.key).where(Segment.id.in_(segment_ids)))
                .tuples()
                .all()
            )
            if segment_ids
            else {}
        )
        self.segments = {
            member_id: sorted(keys[sid] for sid in ids if sid in keys)
            for member_id, ids in memberships.items()
        }

    def names(self, member_id: int, trigger: dict[str, Any] | None) -> dict[str, Any]:
        """The names a condition reads for one member."""
        context = dict(self.contexts.get(member_id, {}))
        member = context.get("member") or {}
        context["segments"] = self.segments.get(member_id, [])
        context["language"] = member.get("language")
        context["trigger"] = trigger or {}
        return context


@dataclasses.dataclass
class _RunContext:
    """What one ``advance_journeys`` call shares across journeys and chunks."""

    pick: PickContent
    rules: SendingRules | None
    chunk_size: int
    suppression_salt: str | None
    member_ids: frozenset[int] | None
    transactional_keys: frozenset[str]
    on_hold: Callable[[HeldEmail], None] | None = None
    budget_log: dict[int, list[dt.datetime]] = dataclasses.field(default_factory=dict)
    item_tags: dict[str, set[str]] | None = None
    events: list[ContentItem] | None = None

    def facts(self, session: Session, member_ids: Sequence[int], now: dt.datetime) -> _Facts:
        """Condition facts of a chunk of members."""
        return _Facts(session, member_ids, now)


def _holds(
    expression: str,
    names: dict[str, Any],
    counts: _Counts,
    journey_key: str,
    where: str,
    *,
    opened: Any = None,
    clicked: Any = None,
) -> bool:
    try:
        return condition_holds(expression, names, opened=opened, clicked=clicked)
    except Exception as error:  # a marketer's condition may fail in any way
        counts.condition_errors += 1
        member = (names.get("member") or {}).get("id")
        logger.warning(
            "journey %s, %s: condition %r failed for member %s (%s: %s); taken as false",
            journey_key,
            where,
            expression,
            member,
            type(error).__name__,
            error,
        )
        return False


# --- goals ----------------------------------------------------------------------------------


def _apply_goal(
    session: Session,
    definition: JourneyDefinition,
    now: dt.datetime,
    context: _RunContext,
    counts: _Counts,
) -> None:
    """Exit (reason ``goal``) the active enrollments whose member reached the journey's goal."""
    goal = definition.goal
    if goal is None:
        return
    query = select(Enrollment).where(
        Enrollment.journey_key == definition.id, Enrollment.state == EnrollmentState.ACTIVE
    )
    if context.member_ids is not None:
        query = query.where(Enrollment.member_id.in_(sorted(context.member_ids)))
    if goal.events:
        reached = exists(
            select(ActivityEvent.id).where(
                ActivityEvent.member_id == Enrollment.member_id,
                ActivityEvent.type.in_(goal.events),
                ActivityEvent.occurred_at >= Enrollment.enrolled_at,
                ActivityEvent.occurred_at <= now,
            )
        )
        for enrollment in session.scalars(query.where(reached)):
            _finish(enrollment, EnrollmentState.EXITED, now, reason="goal")
            counts.goal_reached += 1
    if goal.condition:
        active = list(session.scalars(query.order_by(Enrollment.id)))
        for chunk in chunked(active, context.chunk_size):
            facts = context.facts(session, [e.member_id for e in chunk], now)
            for enrollment in chunk:
                names = facts.names(enrollment.member_id, enrollment.context)
                if _holds(goal.condition, names, counts, definition.id, "goal"):
                    _finish(enrollment, EnrollmentState.EXITED, now, reason="goal")
                    counts.goal_reached += 1
    session.flush()


# --- advancing ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Batch:
    """What one chunk of due enrollments needs, loaded in a few bulk queries."""

    members: dict[int, Member]
    written: set[tuple[int, str]]
    sent_keys: dict[int, set[str]]
    answered: set[int]
    engagement: dict[tuple[int, str], set[str]]
    facts: _Facts | None = None
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def advance_journeys(
    session: Session,
    definitions: Sequence[JourneyDefinition],
    now: dt.datetime,
    pick_content: PickContent | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    suppression_salt: str | None = None,
    rules: SendingRules | None = None,
    member_ids: Collection[int] | None = None,
    on_hold: Callable[[HeldEmail], None] | None = None,
) -> JourneySummary:
    """Enrol the members each trigger matches, then move every due enrollment along.

    Journeys run care first, then by priority. Members enter per the trigger and the re-entry
    policy, only with consent granted unless the journey is transactional, never when their
    address is in the suppression list (given ``suppression_salt``), and only when the
    journey's audience holds. Enrollments whose member reached the journey's goal exit. A due
    enrollment (active, ``next_action_at <= now``) runs the steps of the version it started on
    until a wait, an exit, or an email the sending rules hold back (budget, quiet hours). Each
    send step queues one ``Message`` (never two for one enrollment step, whatever re-runs or
    concurrent workers do). Enrollments of journeys absent from ``definitions`` are left as
    they are.

    Args:
        session: The database session; the caller commits.
        definitions: The journey definitions in force (``load_journeys``).
        now: The current time, timezone-aware; the only clock the engine reads.
        pick_content: Picks each message's content items; default: ``recommended_content``.
        chunk_size: Enrollments loaded and advanced per batch.
        suppression_salt: Salt of the suppression list (``Settings.suppression_salt``); None
            skips the check at enrolment (delivery still checks each message).
        rules: The message budget and quiet hours shared by all journeys; None: neither.
        member_ids: Only these members (a simulation of a few members); None: everyone.
        on_hold: Told of each email the sending rules hold back or skip (a simulation's report).

    Returns:
        Counts of what was done.

    Raises:
        ValueError: ``now`` is naive.
        JourneyValidationError: Two definitions share one id.
    """
    if now.tzinfo is None:
        raise ValueError(f"expected a timezone-aware now, found naive {now!r}")
    ordered = sorted(definitions, key=lambda d: (d.category != "care", d.priority, d.id))
    journeys = register_journeys(session, ordered, now=now)
    context = _RunContext(
        pick=pick_content or recommended_content,
        rules=rules,
        chunk_size=chunk_size,
        suppression_salt=suppression_salt,
        member_ids=frozenset(member_ids) if member_ids is not None else None,
        transactional_keys=frozenset(d.id for d in definitions if d.transactional),
        on_hold=on_hold,
    )
    counts = _Counts()
    for definition in ordered:
        _enrol_members(session, definition, journeys[definition.id], now, context, counts)
    session.flush()

    versions: dict[int, JourneyDefinition] = {}
    for definition in ordered:
        _apply_goal(session, definition, now, context, counts)
        due = (
            select(Enrollment.id)
            .where(
                Enrollment.state == EnrollmentState.ACTIVE,
                Enrollment.next_action_at <= now,
                Enrollment.journey_key == definition.id,
            )
            .order_by(Enrollment.next_action_at, Enrollment.id)
        )
        if context.member_ids is not None:
            due = due.where(Enrollment.member_id.in_(sorted(context.member_ids)))
        for chunk in chunked(list(session.scalars(due)), chunk_size):
            _advance_chunk(session, chunk, now, context, versions, counts)

    summary = JourneySummary(**dataclasses.asdict(counts))
    logger.info("journeys advanced at %s: %s", now.isoformat(), summary)
    return summary


def _advance_chunk(
    session: Session,
    enrollment_ids: Sequence[int],
    now: dt.datetime,
    context: _RunContext,
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
    _load_budget_log(session, member_ids, now, context)
    batch = _Batch(
        members=_member_rows(session, member_ids),
        written={
            (enrollment_id, step_id)
            for enrollment_id, step_id in session.execute(
                select(Message.enrollment_id, Message.step_id).where(
                    Message.enrollment_id.in_(enrollment_ids)
                )
            )
        },
        sent_keys=_sent_item_keys(session, member_ids),
        answered=set(
            session.scalars(
                select(Answer.member_id).where(Answer.member_id.in_(member_ids)).distinct()
            )
        ),
        engagement=_email_engagement(session, enrollment_ids),
    )
    for enrollment in sorted(enrollments, key=lambda e: (e.next_action_at or now, e.id)):
        _advance_enrollment(
            session, enrollment, versions[enrollment.journey_id], batch, now, context, counts
        )
    session.flush()
    counts.messages_queued += insert_ignoring_conflicts(session, _table(Message), batch.messages)


def _advance_enrollment(
    session: Session,
    enrollment: Enrollment,
    definition: JourneyDefinition,
    batch: _Batch,
    now: dt.datetime,
    context: _RunContext,
    counts: _Counts,
) -> None:
    """Run one due enrollment's steps until a wait, an exit or a held email."""
    counts.advanced += 1
    member = batch.members[enrollment.member_id]
    if not definition.transactional and not _may_get(member, definition):
        _finish(enrollment, EnrollmentState.EXITED, now, reason="consent")
        counts.exited += 1
        return
    step_id = enrollment.current_step or definition.entry_step.id
    waits_passed: set[str] = set()
    # A valid definition has a wait in every loop, so a pass visits each step at most twice.
    for _ in range(2 * len(definition.steps) + 1):
        try:
            step = definition.step(step_id)
        except KeyError:
            logger.warning(
                "enrollment %s: journey %s has no step %r; exiting it",
                enrollment.id,
                definition.id,
                step_id,
            )
            _finish(enrollment, EnrollmentState.EXITED, now, reason="missing_step")
            counts.exited += 1
            return
        match step:
            case SendStep():
                held = _held_back(enrollment, definition, step, member, now, context, counts)
                if held == "wait":
                    return
                enrollment.waiting_on = None
                if held is None:
                    _queue_message(
                        session, enrollment, definition, step, member, batch, now, context
                    )
                step_id = step.next
            case WaitStep():
                enrollment.current_step = step.next
                enrollment.next_action_at = wait_until(step, now, member.time_zone)
                enrollment.waiting_on = None
                if enrollment.next_action_at > now or step.id in waits_passed:
                    return
                # A wait that ends right now (an "until" moment that is now) does not cost a
                # pass; each wait is passed at most once per pass, so a loop still stops.
                waits_passed.add(step.id)
                step_id = step.next
            case BranchStep():
                step_id = _choose_case(
                    session, enrollment, definition, step, batch, now, context, counts
                )
            case ExitStep():
                enrollment.current_step = step.id
                _finish(enrollment, EnrollmentState.COMPLETED, now)
                counts.completed += 1
                return
    raise RuntimeError(f"journey {definition.id!r}: loop without a wait step at {step_id!r}")


def _held_back(
    enrollment: Enrollment,
    definition: JourneyDefinition,
    step: SendStep,
    member: Member,
    now: dt.datetime,
    context: _RunContext,
    counts: _Counts,
) -> str | None:
    """Whether the sending rules hold the email back: ``wait``, ``skip`` or None (send it)."""
    rules = context.rules
    if rules is None or definition.transactional:
        return None
    if rules.quiet_hours is not None:
        local = now.astimezone(local_zone(member.time_zone))
        if rules.quiet_hours.is_quiet(local):
            enrollment.current_step = step.id
            enrollment.next_action_at = rules.quiet_hours.end_after(local)
            enrollment.waiting_on = "quiet_hours"
            counts.quiet_deferred += 1
            _report_hold(context, definition, step, member, "quiet_hours")
            return "wait"
    if rules.budget is not None:
        window = rules.budget.window_delta
        recent = [
            moment for moment in context.budget_log.get(member.id, []) if moment > now - window
        ]
        if len(recent) >= rules.budget.messages:
            if (step.over_budget or definition.over_budget) == "skip":
                counts.budget_skipped += 1
                _report_hold(context, definition, step, member, "budget_skip")
                logger.info(
                    "enrollment %s: %s/%s skipped, member %s is over budget",
                    enrollment.id,
                    definition.id,
                    step.id,
                    member.id,
                )
                return "skip"
            enrollment.current_step = step.id
            # Room comes back when the oldest email of the window leaves it.
            enrollment.next_action_at = sorted(recent)[len(recent) - rules.budget.messages] + window
            enrollment.waiting_on = "budget"
            counts.budget_deferred += 1
            _report_hold(context, definition, step, member, "budget")
            return "wait"
    return None


def _report_hold(
    context: _RunContext, definition: JourneyDefinition, step: SendStep, member: Member, reason: str
) -> None:
    if context.on_hold is not None:
        context.on_hold(HeldEmail(definition.id, step.id, member.id, reason))


def wait_until(step: WaitStep, now: dt.datetime, time_zone: str | None) -> dt.datetime:
    """When a wait step ends for a member: after its duration, then at its ``until`` moment.

    ``until`` is the next matching weekday and local hour in the member's time zone, at or
    after the end of the duration; a local time skipped by a daylight-saving change moves
    forward by the change, and a repeated one is taken the first time.

    Args:
        step: The wait step.
        now: The current time (aware).
        time_zone: The member's IANA time zone; UTC when unknown.

    Returns:
        The end of the wait, in UTC.
    """
    start = now + step.delta
    if step.until is None:
        return start
    zone = local_zone(time_zone)
    local = start.astimezone(zone)
    for days in range(8):
        day = local.date() + dt.timedelta(days=days)
        if step.until.weekday is not None and WEEKDAYS[day.weekday()] != step.until.weekday:
            continue
        wall = dt.datetime.combine(day, dt.time(step.until.hour, step.until.minute))
        moment = wall.replace(tzinfo=zone).astimezone(dt.UTC)
        if moment >= start:
            return moment
    raise AssertionError("a weekday comes back within eight days")


def _choose_case(
    session: Session,
    enrollment: Enrollment,
    definition: JourneyDefinition,
    step: BranchStep,
    batch: _Batch,
    now: dt.datetime,
    context: _RunContext,
    counts: _Counts,
) -> str:
    """The step a branch leads to: the first case that holds, else ``otherwise``."""
    if batch.facts is None:
        batch.facts = context.facts(session, sorted(batch.members), now)
    names = batch.facts.names(enrollment.member_id, enrollment.context)
    names["member"] = {**(names.get("member") or {})}

    def opened(step_id: str) -> bool:
        return bool(batch.engagement.get((enrollment.id, step_id), set()) & {"open", "click"})

    def clicked(step_id: str) -> bool:
        return "click" in batch.engagement.get((enrollment.id, step_id), set())

    for index, case in enumerate(step.cases):
        where = f"step {step.id} case {index + 1}"
        if _holds(case.when, names, counts, definition.id, where, opened=opened, clicked=clicked):
            return case.next
    return step.otherwise


def _email_engagement(
    session: Session, enrollment_ids: Sequence[int]
) -> dict[tuple[int, str], set[str]]:
    """``{(enrollment id, step id): {"open", "click"}}`` from the provider's events."""
    found: dict[tuple[int, str], set[str]] = defaultdict(set)
    rows = session.execute(
        select(Message.enrollment_id, Message.step_id, ProviderEvent.type)
        .join(ProviderEvent, ProviderEvent.message_id == Message.id)
        .where(
            Message.enrollment_id.in_(enrollment_ids),
            ProviderEvent.type.in_(["open", "click"]),
        )
    ).tuples()
    for enrollment_id, step_id, kind in rows:
        found[(enrollment_id, step_id)].add(kind)
    return found


def _load_budget_log(
    session: Session, member_ids: Sequence[int], now: dt.datetime, context: _RunContext
) -> None:
    """Read when each member's recent budgeted emails were queued (once per member per call)."""
    if context.rules is None or context.rules.budget is None:
        return
    missing = [member_id for member_id in member_ids if member_id not in context.budget_log]
    if not missing:
        return
    since = now - context.rules.budget.window_delta
    for member_id in missing:
        context.budget_log[member_id] = []
    query = select(Message.member_id, Message.created_at).where(
        Message.member_id.in_(missing), Message.created_at > since
    )
    if context.transactional_keys:
        query = query.where(Message.journey_key.not_in(sorted(context.transactional_keys)))
    for member_id, created_at in session.execute(query).tuples():
        context.budget_log[member_id].append(created_at)


def _queue_message(
    session: Session,
    enrollment: Enrollment,
    definition: JourneyDefinition,
    step: SendStep,
    member: Member,
    batch: _Batch,
    now: dt.datetime,
    context: _RunContext,
) -> None:
    """Add the step's message to the batch, unless that enrollment step has one already."""
    if (enrollment.id, step.id) in batch.written:
        return
    batch.written.add((enrollment.id, step.id))
    sent = batch.sent_keys[member.id]
    items = _fill_slot(session, member, step.content, sent, now, context)
    slots = {
        name: _fill_slot(session, member, slot, sent, now, context)
        for name, slot in step.slots.items()
    }
    if not definition.transactional:
        context.budget_log.setdefault(member.id, []).append(now)
    batch.messages.append(
        {
            "enrollment_id": enrollment.id,
            "step_id": step.id,
            "member_id": member.id,
            "journey_key": definition.id,
            "template": step.template,
            "subject": step.subject_for(member.language),
            "context": {
                "items": items,
                "slots": slots,
                "trigger": dict(enrollment.context or {}),
                "questionnaire_answered": member.id in batch.answered,
            },
            "status": MessageStatus.QUEUED,
            "scheduled_at": now,
            "created_at": now,
            "attempts": 0,
        }
    )


def _fill_slot(
    session: Session,
    member: Member,
    slot: ContentSlot,
    sent: set[str],
    now: dt.datetime,
    context: _RunContext,
) -> list[dict[str, Any]]:
    """The items of one content slot, none already sent to the member; marks them sent."""
    if not slot.count:
        return []
    exclude = frozenset(sent)
    if slot.order == "upcoming":
        if context.events is None:
            context.events = upcoming_events(session, now)
        items = upcoming_content(
            session, member.language, slot, exclude, now, events=context.events
        )
    else:
        wanted = slot.count * 10 if slot.tags else slot.count
        picked = context.pick(session, member.id, wanted, slot.kinds, exclude)
        items = [item for item in _jsonable(picked) if item.get("key") not in exclude]
        if slot.tags:
            tags = _item_tags(session, context)
            wanted_tags = {tag.lower() for tag in slot.tags}
            items = [i for i in items if tags.get(str(i.get("key")), set()) & wanted_tags]
    items = items[: slot.count]
    sent.update(str(item["key"]) for item in items if item.get("key") is not None)
    return items


def _item_tags(session: Session, context: _RunContext) -> dict[str, set[str]]:
    if context.item_tags is None:
        context.item_tags = {
            key: {str(tag).lower() for tag in tags or []}
            for key, tags in session.execute(select(ContentItem.key, ContentItem.tags)).tuples()
        }
    return context.item_tags


def upcoming_events(session: Session, now: dt.datetime) -> list[ContentItem]:
    """The live content items with an event start after ``now``, soonest first."""
    query = select(ContentItem).where(
        ContentItem.event_start.is_not(None),
        ContentItem.event_start > now,
        ContentItem.live_at(now),
    )
    with session.no_autoflush:
        return list(session.scalars(query.order_by(ContentItem.event_start, ContentItem.key)))


def upcoming_content(
    session: Session,
    language: str | None,
    slot: ContentSlot,
    exclude_keys: frozenset[str],
    now: dt.datetime,
    *,
    events: Sequence[ContentItem] | None = None,
) -> list[dict[str, Any]]:
    """Events not started yet for a slot (kinds, tags), soonest first, the member's language first.

    Args:
        session: The database session.
        language: The member's language; items in it come first, then the others.
        slot: The slot (its ``count``, ``kinds`` and ``tags`` apply).
        exclude_keys: Keys never to pick.
        now: The current time.
        events: The upcoming events (``upcoming_events``), when the caller already read them.

    Returns:
        Up to ``slot.count`` items as dicts (key, title, url, kind, summary, language,
        event_start, reason).
    """
    wanted_tags = {tag.lower() for tag in slot.tags or []}
    base = (language or "en").split("-")[0]
    found = [
        item
        for item in (events if events is not None else upcoming_events(session, now))
        if item.key not in exclude_keys
        and (not slot.kinds or item.kind in slot.kinds)
        and (not wanted_tags or {str(tag).lower() for tag in item.tags or []} & wanted_tags)
    ]
    found.sort(key=lambda item: (item.language != base, item.event_start, item.key))
    return [
        {
            "key": item.key,
            "title": item.title,
            "url": item.url,
            "kind": item.kind,
            "summary": item.summary,
            "language": item.language,
            "event_start": _json_default(item.event_start),
            "reason": "",
        }
        for item in found[: slot.count]
    ]


def _finish(
    enrollment: Enrollment, state: EnrollmentState, now: dt.datetime, reason: str | None = None
) -> None:
    enrollment.state = state
    enrollment.next_action_at = None
    enrollment.finished_at = now
    enrollment.exit_reason = reason
    enrollment.waiting_on = None


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
        if not isinstance(context, dict):
            continue
        slots = context.get("slots") if isinstance(context.get("slots"), dict) else {}
        for items in [context.get("items"), *slots.values()]:
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
