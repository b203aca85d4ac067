"""Who enters a journey: the trigger's candidates that re-entry, consent and audience allow.

``enrol_members`` takes a trigger's candidates (``trigger_candidates``) and keeps those the
journey's re-entry policy and cooldown let in, whose consent and preferences allow the
journey's category (unless it is transactional), whose address is not in the suppression list
and for whom the journey's audience holds; it writes their enrollments, at the entry step, due
at once (or, for a member enrolled ahead of their day, at its hour). A member the journey's
``holdout`` draws (``in_holdout``) is enrolled as control: exited at once (reason ``holdout``),
arm ``control``, sent nothing. Exactly-once is held by
the database: one enrollment per (journey, member, occurrence), written with
``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.delivery.suppression import ConsentHolder, consent_refusal
from nurture.journeys.conditions import condition_reads
from nurture.journeys.experiments import CONTROL_ARM, in_holdout
from nurture.journeys.facts import Condition
from nurture.journeys.models import JourneyDefinition, parse_duration
from nurture.journeys.reads import MemberReads
from nurture.journeys.triggers import Candidate, TriggerContext, trigger_candidates
from nurture.storage import among, insert_ignoring_conflicts
from nurture.storage.models import (
    Enrollment,
    EnrollmentState,
    ExitReason,
    Journey,
    Member,
    table_of,
)

__all__ = ["consent_allows", "enrol_members", "enrollment_rows", "member_rows"]

logger = logging.getLogger(__name__)

_HISTORY_CHUNK = 5000
"""Members whose past enrollments are read per query (one array parameter: a round trip per
500 cost more than the rows)."""


def enrol_members(
    session: Session,
    definition: JourneyDefinition,
    journey: Journey,
    now: dt.datetime,
    *,
    chunk_size: int,
    suppression_salt: str | None = None,
    member_ids: Collection[int] | None = None,
    on_condition_error: Callable[[], None] | None = None,
    reads: MemberReads | None = None,
) -> int:
    """Enrol the trigger's candidates that re-entry, consent, suppression and audience allow.

    Members whose address is in the suppression list are left out, transactional journeys
    included: an erased address that an import brings back is never enrolled again.

    Args:
        session: The database session; the caller commits.
        definition: The journey.
        journey: Its current version row (new enrollments start on it).
        now: The current time: the trigger's moment and the enrollments' start.
        chunk_size: Candidates checked and written per batch.
        suppression_salt: Salt of the suppression list; None skips that check.
        member_ids: Only these members; None: everyone.
        on_condition_error: Called when the audience fails to evaluate for a member (taken as
            false).
        reads: What the pass already read about members (``advance_journeys`` shares one
            across its journeys); None: read afresh.

    Returns:
        How many enrollments were written.
    """
    enrolled = 0
    for rows in enrollment_rows(
        session,
        definition,
        journey,
        now,
        chunk_size=chunk_size,
        suppression_salt=suppression_salt,
        member_ids=member_ids,
        on_condition_error=on_condition_error,
        reads=reads,
    ):
        enrolled += insert_ignoring_conflicts(session, _enrollment_table(), rows)
    if enrolled:
        logger.info("journey %s: enrolled %d members", definition.id, enrolled)
    return enrolled


def enrollment_rows(
    session: Session,
    definition: JourneyDefinition,
    journey: Journey,
    now: dt.datetime,
    *,
    chunk_size: int,
    suppression_salt: str | None = None,
    member_ids: Collection[int] | None = None,
    on_condition_error: Callable[[], None] | None = None,
    reads: MemberReads | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The enrollments ``enrol_members`` writes, a chunk at a time, as rows not written yet.

    Each chunk is checked against what the database holds when it is asked for: write a
    chunk before asking for the next (``enrol_members`` does). The arguments are those of
    ``enrol_members``.

    Yields:
        The rows of a chunk of new enrollments (column values of ``enrollments``).
    """
    reads = reads or MemberReads(now)
    candidates = [
        candidate
        for candidate in trigger_candidates(definition.trigger, session, now, definition.id)
        if member_ids is None or candidate.member_id in member_ids
    ]
    if not candidates:
        return
    entry = definition.entry_step.id
    audience = (
        Condition(
            definition.audience,
            journey_key=definition.id,
            where="audience",
            on_error=on_condition_error,
        )
        if definition.audience
        else None
    )
    salt = suppression_salt or ""
    for chunk in chunked(_reentry_allows(session, definition, candidates, now), chunk_size):
        stored = _StoredContexts()  # a chunk's: what it holds goes with the chunk
        kept = _consenting(session, definition, chunk, suppression_salt, reads)
        if audience is not None and kept:
            kept = _in_audience(session, audience, kept, reads, stored)
        if kept:
            yield [
                _enrollment_row(
                    definition, journey, candidate, stored.of(candidate), entry, now, salt
                )
                for candidate in kept
            ]


def _enrollment_row(
    definition: JourneyDefinition,
    journey: Journey,
    candidate: Candidate,
    context: dict[str, Any],
    entry: str,
    now: dt.datetime,
    salt: str,
) -> dict[str, Any]:
    """A new enrollment at the entry step, or, for a member held out, a finished control one."""
    row: dict[str, Any] = {
        "journey_id": journey.id,
        "journey_key": definition.id,
        "member_id": candidate.member_id,
        "occurrence": candidate.occurrence,
        "state": EnrollmentState.ACTIVE,
        "current_step": entry,
        "next_action_at": candidate.start_at or now,
        "enrolled_at": now,
        "context": context,
        "arm": None,
        "finished_at": None,
        "exit_reason": None,
    }
    if in_holdout(definition, candidate.member_id, salt):
        row |= {
            "state": EnrollmentState.EXITED,
            "current_step": None,
            "next_action_at": None,
            "arm": CONTROL_ARM,
            "finished_at": now,
            "exit_reason": ExitReason.HOLDOUT,
        }
    return row


def consent_allows(member: ConsentHolder, definition: JourneyDefinition) -> bool:
    """Whether a member's consent and preferences allow a marketing journey's emails.

    Args:
        member: The member.
        definition: The journey (its category is what the preferences name).

    Returns:
        True when the member may get its emails (transactional journeys are not asked).
    """
    return consent_refusal(member, definition.category) is None


def member_rows(session: Session, member_ids: Collection[int]) -> dict[int, Member]:
    """The members of ``member_ids``, by id (one query)."""
    return {
        member.id: member
        for member in session.scalars(select(Member).where(Member.id.in_(sorted(set(member_ids)))))
    }


@dataclasses.dataclass
class _History:
    active: bool = False
    occurrences: set[int] = dataclasses.field(default_factory=set)
    last_finished: dt.datetime | None = None


def _reentry_allows(
    session: Session,
    definition: JourneyDefinition,
    candidates: Sequence[Candidate],
    now: dt.datetime,
) -> list[Candidate]:
    """The candidates the journey's re-entry policy and cooldown let in again (or first)."""
    history = _enrollment_history(session, definition.id, [c.member_id for c in candidates])
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
    return allowed


def _consenting(
    session: Session,
    definition: JourneyDefinition,
    chunk: Sequence[Candidate],
    suppression_salt: str | None,
    reads: MemberReads,
) -> list[Candidate]:
    """The candidates whose consent (unless transactional) and address allow the journey."""
    members = reads.members(session, [candidate.member_id for candidate in chunk])
    kept = [
        candidate
        for candidate in chunk
        if candidate.member_id in members
        and (definition.transactional or consent_allows(members[candidate.member_id], definition))
    ]
    if suppression_salt is None or not kept:
        return kept
    suppressed = reads.suppressed(session, [members[c.member_id] for c in kept], suppression_salt)
    if suppressed:
        logger.info("%d suppressed addresses left out of enrolment", len(suppressed))
    return [candidate for candidate in kept if candidate.member_id not in suppressed]


def _in_audience(
    session: Session,
    audience: Condition,
    candidates: Sequence[Candidate],
    reads: MemberReads,
    stored: _StoredContexts,
) -> list[Candidate]:
    """The candidates for whom the journey's audience condition holds."""
    member_ids = [candidate.member_id for candidate in candidates]
    facts = reads.facts(session, member_ids, condition_reads(audience.expression))
    return [
        candidate
        for candidate in candidates
        if audience.holds(facts, candidate.member_id, stored.of(candidate))
    ]


class _StoredContexts:
    """The stored form of candidates' trigger contexts, made once per context object.

    A trigger gives many candidates one context object (a schedule's run); each context is
    kept with its stored form, so that its ``id`` is never another's.
    """

    def __init__(self) -> None:
        self._stored: dict[int, tuple[TriggerContext, dict[str, Any]]] = {}

    def of(self, candidate: Candidate) -> dict[str, Any]:
        """``candidate.context.to_stored()``, one dict for the candidates of one context."""
        context = candidate.context
        found = self._stored.get(id(context))
        if found is None:
            found = self._stored[id(context)] = (context, context.to_stored())
        return found[1]


def _enrollment_history(
    session: Session, journey_key: str, member_ids: Sequence[int]
) -> dict[int, _History]:
    """The past and current enrollments of some members in a journey (a query per chunk)."""
    history: dict[int, _History] = defaultdict(_History)
    for batch in chunked(sorted(set(member_ids)), _HISTORY_CHUNK):
        rows = session.execute(
            select(
                Enrollment.member_id,
                Enrollment.occurrence,
                Enrollment.state,
                Enrollment.finished_at,
            ).where(
                Enrollment.journey_key == journey_key, among(session, Enrollment.member_id, batch)
            )
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


def _enrollment_table() -> Table:
    return table_of(Enrollment)
