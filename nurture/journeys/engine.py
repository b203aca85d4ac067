"""The journey engine: enrol members, advance them, queue their messages.

Everything here is deterministic given ``now``: no wall clock is read. The caller owns the
session and commits. Exactly-once is held by the database: one ``Enrollment`` per
(journey key, member, occurrence) and one ``Message`` per (enrollment, step); on SQLite and
PostgreSQL rows are written straight in bulk, a write that a conflict undoes whole, then with
``INSERT ... ON CONFLICT DO NOTHING`` (``inserted_rows``), elsewhere inside a savepoint, so a
re-run or a concurrent worker never writes a second one.

An enrollment's ``current_step`` is the step it runs when ``next_action_at`` comes: a wait step
moves it to the step after the wait and sets the time; an exit step completes it.

A pass reads in bulk and writes in bulk: members once per pass, up to a bound
(:mod:`~nurture.journeys.reads`), new members checked and enrolled ten chunks at a time, due
enrollments a chunk at a time as plain rows
(:mod:`~nurture.journeys.due`), found a page at a time, and the recommendations the emails of a
chunk pick from in one query (``RecommendedContent``), not one per email. What it holds is
bounded by its chunks, not by the community's size. A new
enrollment is written in the state the pass would leave it in when that owes nothing to the
order of the pass (its goal already reached, an entry wait that ends later): written once,
not written, read back and written again.

The engine leans on its neighbours: journey versions (:mod:`~nurture.journeys.versions`),
who a trigger enrols and who may enter (:mod:`~nurture.journeys.triggers`,
:mod:`~nurture.journeys.enrolment`), what conditions read (:mod:`~nurture.journeys.facts`), the
sending rules (:mod:`~nurture.journeys.holds`) and what an email holds
(:mod:`~nurture.journeys.content`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, Literal

from sqlalchemy import Select, Table, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from nurture import progress
from nurture.delivery.history import sent_item_keys
from nurture.errors import BackfillRefusedError
from nurture.ingest.bulk import inserted_rows
from nurture.journeys.backfill import measure_backfill
from nurture.journeys.best_hour import BestHours, HourPriors, next_local_hour
from nurture.journeys.conditions import condition_reads
from nurture.journeys.content import ContentPicker, PickContent, RecommendedContent
from nurture.journeys.due import DueEnrollment, load_enrollments, write_progress
from nurture.journeys.enrolment import consent_allows, enrollment_rows
from nurture.journeys.experiments import choose_variant
from nurture.journeys.facts import Condition, ConditionFacts, email_engagement
from nurture.journeys.holds import BudgetLog, HeldEmail, hold_for
from nurture.journeys.models import (
    WEEKDAYS,
    BranchStep,
    ExitStep,
    JourneyDefinition,
    SendStep,
    SplitStep,
    WaitStep,
)
from nurture.journeys.policy import BackfillLimit, SendingRules
from nurture.journeys.reads import HELD_MEMBERS, MemberReads, MemberRow
from nurture.journeys.triggers import local_zone
from nurture.journeys.versions import load_versions, register_journeys
from nurture.sentences import describe_journeys
from nurture.storage import among, insert_ignoring_conflicts, inserted_ignoring_conflicts
from nurture.storage.models import (
    ActivityEvent,
    Enrollment,
    EnrollmentState,
    ExitReason,
    Journey,
    Message,
    MessageStatus,
    WaitReason,
    table_of,
)

__all__ = ["DEFAULT_CHUNK_SIZE", "JourneySummary", "advance_journeys", "wait_until"]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 500
"""Enrollments (and new members) handled per batch of queries."""

_ENROL_CHUNKS = 10
"""Chunks of new members checked and written at once: a journey's enrolment costs a few
queries per batch (consent, audience, goal, the bulk insert), each a round trip that costs as
much as reading or writing a few hundred rows; ten chunks (5 000 members) still bound what a
batch holds."""


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


@dataclasses.dataclass
class _Counts:
    """``JourneySummary``'s counts while a pass runs."""

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


@dataclasses.dataclass
class _Pass:
    """What one ``advance_journeys`` call shares across journeys and chunks."""

    now: dt.datetime
    content: ContentPicker
    rules: SendingRules | None
    budget: BudgetLog
    chunk_size: int
    member_ids: frozenset[int] | None
    reads: MemberReads
    on_hold: Callable[[HeldEmail], None] | None = None
    salt: str = ""
    best_hours: HourPriors | None = None
    counts: _Counts = dataclasses.field(default_factory=_Counts)
    conditions: dict[tuple[str, str, str], Condition] = dataclasses.field(default_factory=dict)
    newest_before: int = 0
    waits: dict[tuple[int, str | None], tuple[WaitStep, dt.datetime]] = dataclasses.field(
        default_factory=dict
    )

    def wait_end(self, step: WaitStep, time_zone: str | None) -> dt.datetime:
        """``wait_until(step, now, time_zone)``, computed once per step and time zone."""
        key = (id(step), time_zone)
        found = self.waits.get(key)
        if found is None:
            found = self.waits[key] = (step, wait_until(step, self.now, time_zone))
        return found[1]

    def facts(
        self, session: Session, member_ids: Sequence[int], *conditions: str
    ) -> ConditionFacts:
        """What ``conditions`` read of a chunk of members (each member's read once per pass)."""
        return self.reads.facts(session, member_ids, condition_reads(*conditions))

    def condition(self, expression: str, journey_key: str, where: str) -> Condition:
        """A condition of a journey (one per pass); a failure counts as a condition error."""
        key = (journey_key, where, expression)
        found = self.conditions.get(key)
        if found is None:
            found = self.conditions[key] = Condition(
                expression,
                journey_key=journey_key,
                where=where,
                on_error=self.count_condition_error,
            )
        return found

    def count_condition_error(self) -> None:
        """Count a condition that failed to evaluate."""
        self.counts.condition_errors += 1


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
    backfill: BackfillLimit | None = None,
    member_capacity: int = HELD_MEMBERS,
) -> JourneySummary:
    """Enrol the members each trigger matches, then move every due enrollment along.

    Journeys run care first, then by priority. Members enter per the trigger and the re-entry
    policy, only with consent granted unless the journey is transactional, never when their
    address is in the suppression list (given ``suppression_salt``), and only when the
    journey's audience holds; the journey's holdout share is enrolled as control and sent
    nothing, and a split step sends each member down the variant drawn for them (recorded as the
    enrollment's arm). Enrollments whose member reached the journey's goal exit. A due
    enrollment (active, ``next_action_at <= now``) runs the steps of the version it started on
    until a wait, an exit, or an email the sending rules hold back (budget, quiet hours). Each
    send step queues one ``Message`` (never two for one enrollment step, whatever re-runs or
    concurrent workers do), its content filled by ``ContentPicker``. Enrollments of journeys
    absent from ``definitions`` are left as they are.

    Args:
        session: The database session; the caller commits.
        definitions: The journey definitions in force (``load_journeys``).
        now: The current time, timezone-aware; the only clock the engine reads.
        pick_content: Picks each message's recommended items; default: ``recommended_content``
            at ``now`` (``RecommendedContent``: a chunk's recommendations read at once).
        chunk_size: Enrollments loaded and advanced per batch.
        suppression_salt: Salt of the suppression list (``Settings.suppression_salt``); None
            skips the check at enrolment (delivery still checks each message). It also keys
            the holdout and split draws (the empty key when None).
        rules: The message budget and quiet hours shared by all journeys; None: neither.
        member_ids: Only these members (a simulation of a few members); None: everyone.
        on_hold: Told of each email the sending rules hold back or skip (a simulation's report).
        backfill: Refuse the pass when its enrolments go over this limit (the backfill guard);
            None: no guard.
        member_capacity: Members whose rows and facts the pass keeps at most (each kind of
            read); a larger community is read again, a chunk at a time, by later journeys.

    Returns:
        Counts of what was done.

    Raises:
        ValueError: ``now`` is naive.
        JourneyValidationError: Two definitions share one id.
        BackfillRefusedError: The pass would start emailing more of the community at once
            than ``backfill`` allows; raised before any email is queued, the caller rolls
            back its enrolments.
    """
    if now.tzinfo is None:
        raise ValueError(f"expected a timezone-aware now, found naive {now!r}")
    with _older_objects_set_aside(), _without_jit(session):
        ordered = sorted(definitions, key=lambda d: (d.category != "care", d.priority, d.id))
        journeys = register_journeys(session, ordered, now=now)
        run = _Pass(
            now=now,
            content=ContentPicker(pick_content or RecommendedContent(now), now),
            rules=rules,
            budget=BudgetLog(rules, [d.id for d in definitions if d.transactional]),
            chunk_size=chunk_size,
            member_ids=frozenset(member_ids) if member_ids is not None else None,
            reads=MemberReads(now, capacity=member_capacity, whole_community=member_ids is None),
            on_hold=on_hold,
            salt=suppression_salt or "",
        )
        run.newest_before = session.scalar(select(func.max(Enrollment.id))) or 0
        for definition in ordered:
            _enrol(session, definition, journeys[definition.id], run, suppression_salt)
        session.flush()
        if backfill is not None and run.counts.enrolled:
            found = measure_backfill(session, ordered, now, backfill, member_ids=member_ids)
            if found.exceeded:
                raise BackfillRefusedError(found.refusal())

        # The version rows in force hold these very definitions (same hash): only the older
        # versions that due enrollments started on are read and validated (``load_versions``).
        versions = {journeys[definition.id].id: definition for definition in ordered}
        for definition in ordered:
            _apply_goal(session, definition, run)
            _advance_due(session, definition, run, versions)

    summary = JourneySummary(**dataclasses.asdict(run.counts))
    logger.info("%s (at %s)", describe_journeys(summary), now.isoformat())
    return summary


@contextlib.contextmanager
def _older_objects_set_aside() -> Iterator[None]:
    """Keep the garbage collector's full collections, while a pass runs, to what it made.

    A pass makes tens of thousands of small objects that live until its end (rows,
    candidates, facts); as they pile up, CPython's full collection walks every object of the
    process (the libraries', a loaded model's), which can take a third of a pass.
    ``gc.freeze`` sets the objects that existed before the pass aside until it ends; what the
    pass makes is collected as usual.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _without_jit(session: Session) -> Iterator[None]:
    """On PostgreSQL, no JIT compilation of the pass's queries (restored after, if it ends).

    A pass's queries are short, but over a large community some are estimated dear (the
    inactivity trigger's, the reads of a chunk's members): PostgreSQL then compiles them
    before running them, which costs more than running them (half a second of the inactivity
    trigger's 0.6 s at 100 000 members). The setting is the transaction's (``SET LOCAL``), back
    to what it was once the pass is done.
    """
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    previous = session.scalar(select(func.current_setting("jit")))
    session.execute(select(func.set_config("jit", "off", True)))
    yield
    # Not on an error: the transaction is then rolled back, and the setting with it.
    session.execute(select(func.set_config("jit", previous, True)))


def _enrol(
    session: Session,
    definition: JourneyDefinition,
    journey: Journey,
    run: _Pass,
    suppression_salt: str | None,
) -> None:
    """Enrol the members the journey's trigger yields (as ``enrol_members``) and count them.

    What the pass would do first with a new enrollment is decided before it is written
    (``_settle``), so that it is written once in that state, not written, read back and
    written again.
    """
    enrolled = 0
    for rows in enrollment_rows(
        session,
        definition,
        journey,
        run.now,
        chunk_size=run.chunk_size * _ENROL_CHUNKS,
        suppression_salt=suppression_salt,
        member_ids=run.member_ids,
        on_condition_error=run.count_condition_error,
        reads=run.reads,
    ):
        settled = _settle(session, definition, rows, run)
        written = _insert_enrollments(session, rows)
        enrolled += len(written)
        moved = 0
        for member_id, occurrence in written:
            outcome = settled.get((member_id, occurrence))
            if outcome == "goal":
                run.counts.goal_reached += 1
            elif outcome == "advanced":
                moved += 1
        run.counts.advanced += moved
        progress.advance(moved)
    if enrolled:
        logger.info("journey %s: enrolled %d members", definition.id, enrolled)
    run.counts.enrolled += enrolled


_Settled = Literal["goal", "advanced", "kept"]
"""What ``_settle`` did with a new enrollment: exited it (goal), moved it past its first wait,
or only found that its goal is not reached."""


def _settle(
    session: Session, definition: JourneyDefinition, rows: Sequence[dict[str, Any]], run: _Pass
) -> dict[tuple[int, int], _Settled]:
    """Do to new enrollments, before they are written, what the pass would do to them after.

    The pass would exit an active one whose member reached the goal (``_apply_goal``: an
    event at the pass's time, or the goal's condition, which read nothing the pass changes),
    then advance it if due (``_advance_enrollment``: its member's consent was checked at
    enrolment). Only an entry step that is a wait ending after ``now`` is run here: it reads
    the member's time zone and nothing the order of the pass changes (the budget, what was
    queued); any other step is left to the advance, in its order.

    Args:
        session: The database session.
        definition: The journey (the version new enrollments start on).
        rows: New enrollment rows, changed in place.
        run: The pass.

    Returns:
        What was done, by ``(member id, occurrence)``, for the active rows (not the held out).
    """
    active = [row for row in rows if row["state"] == EnrollmentState.ACTIVE]
    settled: dict[tuple[int, int], _Settled] = {}
    if not active:
        return settled
    goal = definition.goal
    if goal is not None:
        reached = _goal_reached_now(session, definition, active, run)
        for row in active:
            key = (row["member_id"], row["occurrence"])
            if row["member_id"] in reached:
                row |= {
                    "state": EnrollmentState.EXITED,
                    "next_action_at": None,
                    "finished_at": run.now,
                    "exit_reason": ExitReason.GOAL,
                    "waiting_on": None,
                }
                settled[key] = "goal"
            else:
                settled[key] = "kept"
        active = [row for row in active if row["state"] == EnrollmentState.ACTIVE]
    entry = definition.entry_step
    if not isinstance(entry, WaitStep) or not active:
        return settled
    members = run.reads.members(session, [row["member_id"] for row in active])
    for row in active:
        member = members.get(row["member_id"])
        if member is None or row["next_action_at"] > run.now:
            continue  # enrolled ahead of its moment: not due yet
        until = run.wait_end(entry, member.time_zone)
        if until <= run.now:
            continue  # a wait that ends now: the advance runs on past it
        row |= {"current_step": entry.next, "next_action_at": until, "waiting_on": None}
        settled[(row["member_id"], row["occurrence"])] = "advanced"
    return settled


def _goal_reached_now(
    session: Session, definition: JourneyDefinition, rows: Sequence[dict[str, Any]], run: _Pass
) -> set[int]:
    """The members of new enrollments (enrolled now) whose member reached the journey's goal."""
    goal = definition.goal
    if goal is None:
        return set()
    reached: set[int] = set()
    member_ids = sorted({row["member_id"] for row in rows})
    if goal.events:
        # An event since the enrollment began (now) and up to now. Its type is checked here:
        # asked of the database, it can make it scan every event of those types.
        events = session.execute(
            select(ActivityEvent.member_id, ActivityEvent.type).where(
                among(session, ActivityEvent.member_id, member_ids),
                ActivityEvent.occurred_at >= run.now,
                ActivityEvent.occurred_at <= run.now,
            )
        ).tuples()
        reached.update(member_id for member_id, kind in events if kind in goal.events)
    if goal.condition:
        condition = run.condition(goal.condition, definition.id, "goal")
        facts = run.facts(session, member_ids, goal.condition)
        for row in rows:
            if row["member_id"] in reached:
                continue
            if condition.holds(facts, row["member_id"], row["context"]):
                reached.add(row["member_id"])
    return reached


# --- goals ----------------------------------------------------------------------------------


def _apply_goal(session: Session, definition: JourneyDefinition, run: _Pass) -> None:
    """Exit (reason ``goal``) the active enrollments whose member reached the journey's goal."""
    goal = definition.goal
    if goal is None:
        return
    query = select(Enrollment.id).where(
        Enrollment.journey_key == definition.id, Enrollment.state == EnrollmentState.ACTIVE
    )
    if run.member_ids is not None:
        query = query.where(Enrollment.member_id.in_(sorted(run.member_ids)))
    # New enrollments (those after the newest before the pass) had their goal decided as they
    # were written (``_settle``): an event at the pass's time, or the goal's condition.
    older = query.where(Enrollment.id <= run.newest_before)
    if goal.events:
        reached = exists(
            select(ActivityEvent.id).where(
                ActivityEvent.member_id == Enrollment.member_id,
                ActivityEvent.type.in_(goal.events),
                ActivityEvent.occurred_at >= Enrollment.enrolled_at,
                ActivityEvent.occurred_at <= run.now,
            )
        )
        for ids in _pages(session, older.where(reached), run.chunk_size):
            exited = load_enrollments(session, ids)
            for enrollment in exited:
                enrollment.finish(EnrollmentState.EXITED, run.now, reason=ExitReason.GOAL)
            run.counts.goal_reached += len(exited)
            write_progress(session, exited)
    if goal.condition:
        for ids in _pages(session, older, run.chunk_size):
            chunk = load_enrollments(session, ids)
            facts = run.facts(session, [e.member_id for e in chunk], goal.condition)
            for enrollment in chunk:
                condition = run.condition(goal.condition, definition.id, "goal")
                if condition.holds(facts, enrollment.member_id, enrollment.context):
                    enrollment.finish(EnrollmentState.EXITED, run.now, reason=ExitReason.GOAL)
                    run.counts.goal_reached += 1
            write_progress(session, chunk)


def _pages(session: Session, query: Select[tuple[int]], size: int) -> Iterator[list[int]]:
    """The enrollment ids ``query`` selects, in id order, a page of ``size`` at a time.

    Each page is asked for once the one before was handled: ``query`` must not select again
    an enrollment that handling a page changed (it only leaves, or stays at its id).
    """
    last = 0
    while True:
        ids = list(
            session.scalars(query.where(Enrollment.id > last).order_by(Enrollment.id).limit(size))
        )
        if ids:
            yield ids
        if len(ids) < size:
            return
        last = ids[-1]


# --- advancing ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Batch:
    """What one chunk of due enrollments needs, loaded in a few bulk queries."""

    members: dict[int, MemberRow]
    written: set[tuple[int, str]]
    engagement: dict[tuple[int, str], set[str]]
    facts: dict[tuple[str, ...], ConditionFacts] = dataclasses.field(default_factory=dict)
    emails: list[_Email] = dataclasses.field(default_factory=list)
    best_hours: BestHours | None = None


@dataclasses.dataclass(frozen=True)
class _Email:
    """An email a chunk queues; its content is filled once the chunk has moved on."""

    enrollment: DueEnrollment
    definition: JourneyDefinition
    step: SendStep
    member: MemberRow


def _advance_due(
    session: Session,
    definition: JourneyDefinition,
    run: _Pass,
    versions: dict[int, JourneyDefinition],
) -> None:
    """Advance a journey's due enrollments, the longest waiting first, a chunk at a time.

    Each is advanced once, as it was when the pass came to the journey. Each chunk is read once
    the one before was advanced (keyset on ``next_action_at, id``): what is not advanced yet is
    as it was. An enrollment advanced to a moment still due (a wait ending now, passed twice)
    is not read again: the ids of those are kept, few as they are.
    """
    query = _due_enrollments(definition, run)
    done: set[int] = set()
    after: tuple[dt.datetime | None, int] | None = None
    while True:
        page = query
        if after is not None:
            at, last = after
            page = query.where(
                or_(
                    Enrollment.next_action_at > at,
                    and_(Enrollment.next_action_at == at, Enrollment.id > last),
                )
            )
        rows = session.execute(page.limit(run.chunk_size)).tuples().all()
        chunk = [enrollment_id for enrollment_id, _ in rows if enrollment_id not in done]
        if chunk:
            done.update(_advance_chunk(session, chunk, run, versions))
            progress.advance(len(chunk))
        if len(rows) < run.chunk_size:
            return
        last_id, last_at = rows[-1]
        after = (last_at, last_id)


def _due_enrollments(
    definition: JourneyDefinition, run: _Pass
) -> Select[tuple[int, dt.datetime | None]]:
    """A journey's enrollments due at ``run.now`` (id, moment), the longest waiting first."""
    due = (
        select(Enrollment.id, Enrollment.next_action_at)
        .where(
            Enrollment.state == EnrollmentState.ACTIVE,
            Enrollment.next_action_at <= run.now,
            Enrollment.journey_key == definition.id,
        )
        .order_by(Enrollment.next_action_at, Enrollment.id)
    )
    if run.member_ids is not None:
        due = due.where(Enrollment.member_id.in_(sorted(run.member_ids)))
    return due


def _advance_chunk(
    session: Session,
    enrollment_ids: Sequence[int],
    run: _Pass,
    versions: dict[int, JourneyDefinition],
) -> list[int]:
    """Advance a chunk of due enrollments; returns those of them still due at ``run.now``."""
    enrollments = load_enrollments(session, enrollment_ids)
    member_ids = sorted({enrollment.member_id for enrollment in enrollments})
    load_versions(session, {enrollment.journey_id for enrollment in enrollments}, versions)
    run.budget.load(session, member_ids, run.now)
    written = session.execute(
        select(Message.enrollment_id, Message.step_id).where(
            among(session, Message.enrollment_id, enrollment_ids)
        )
    ).tuples()
    batch = _Batch(
        members=run.reads.members(session, member_ids),
        written=set(written),
        engagement=email_engagement(session, enrollment_ids),
    )
    for enrollment in sorted(enrollments, key=lambda e: (e.next_action_at or run.now, e.id)):
        _advance_enrollment(session, enrollment, versions[enrollment.journey_id], batch, run)
    write_progress(session, enrollments)
    messages = _fill_emails(session, batch.emails, run)
    run.counts.messages_queued += _insert_messages(session, messages)
    return [
        enrollment.id
        for enrollment in enrollments
        if enrollment.state == EnrollmentState.ACTIVE
        and enrollment.next_action_at is not None
        and enrollment.next_action_at <= run.now
    ]


def _advance_enrollment(
    session: Session,
    enrollment: DueEnrollment,
    definition: JourneyDefinition,
    batch: _Batch,
    run: _Pass,
) -> None:
    """Run one due enrollment's steps until a wait, an exit or a held email."""
    run.counts.advanced += 1
    member = batch.members[enrollment.member_id]
    if not definition.transactional and not consent_allows(member, definition):
        enrollment.finish(EnrollmentState.EXITED, run.now, reason=ExitReason.CONSENT)
        run.counts.exited += 1
        return
    step_id: str | None = enrollment.current_step or definition.entry_step.id
    waits_passed: set[str] = set()
    # A valid definition has a wait in every loop, so a pass visits each step at most twice.
    for _ in range(2 * len(definition.steps) + 1):
        if step_id is None:
            return
        try:
            step = definition.step(step_id)
        except KeyError:
            logger.warning(
                "enrollment %s: journey %s has no step %r; exiting it",
                enrollment.id,
                definition.id,
                step_id,
            )
            enrollment.finish(EnrollmentState.EXITED, run.now, reason=ExitReason.MISSING_STEP)
            run.counts.exited += 1
            return
        step_id = _run_step(session, enrollment, definition, step, member, batch, run, waits_passed)
    if step_id is not None:
        raise RuntimeError(f"journey {definition.id!r}: loop without a wait step at {step_id!r}")


def _run_step(
    session: Session,
    enrollment: DueEnrollment,
    definition: JourneyDefinition,
    step: Any,
    member: MemberRow,
    batch: _Batch,
    run: _Pass,
    waits_passed: set[str],
) -> str | None:
    """Run one step of an enrollment; returns the step to run next, None to stop this pass."""
    match step:
        case SendStep():
            if step.at == "best_hour" and _wait_for_best_hour(
                session, enrollment, step, member, batch, run
            ):
                return None
            held = _held_back(enrollment, definition, step, member, run)
            if held == "wait":
                return None
            enrollment.waiting_on = None
            if held is None:
                _queue_message(enrollment, definition, step, member, batch, run)
            return step.next
        case WaitStep():
            enrollment.current_step = step.next
            enrollment.next_action_at = run.wait_end(step, member.time_zone)
            enrollment.waiting_on = None
            if enrollment.next_action_at > run.now or step.id in waits_passed:
                return None
            # A wait that ends right now (an "until" moment that is now) does not cost a
            # pass; each wait is passed at most once per pass, so a loop still stops.
            waits_passed.add(step.id)
            return step.next
        case BranchStep():
            return _choose_case(session, enrollment, definition, step, batch, run)
        case SplitStep():
            variant = choose_variant(definition, step, member.id, run.salt)
            enrollment.arm = variant.name
            return variant.next
        case ExitStep():
            enrollment.current_step = step.id
            enrollment.finish(EnrollmentState.COMPLETED, run.now)
            run.counts.completed += 1
            return None
    raise TypeError(f"journey {definition.id!r}: unknown step type {type(step).__name__}")


def _wait_for_best_hour(
    session: Session,
    enrollment: DueEnrollment,
    step: SendStep,
    member: MemberRow,
    batch: _Batch,
    run: _Pass,
) -> bool:
    """Hold the enrollment until the member's best hour, unless it is that hour (or was)."""
    if enrollment.waiting_on is not None and enrollment.current_step == step.id:
        # It waited for its best hour (the run may come a little late), or the quiet hours or
        # the budget held it after that hour: the best hour is not waited for twice.
        if enrollment.waiting_on == WaitReason.BEST_HOUR:
            enrollment.waiting_on = None
        return False
    hour = member.best_hour
    if hour is None:  # not computed by a nightly run yet
        if run.best_hours is None:  # the community's priors, read once per pass
            run.best_hours = HourPriors.load(session, run.now)
        if batch.best_hours is None:  # the batch's members never computed, read at once
            lacking = [m.id for m in batch.members.values() if m.best_hour is None]
            batch.best_hours = BestHours.load(session, run.now, lacking, priors=run.best_hours)
        hour = batch.best_hours.best_hour(member.id)
    if run.now.astimezone(local_zone(member.time_zone)).hour == hour:
        return False
    enrollment.current_step = step.id
    enrollment.next_action_at = next_local_hour(run.now, hour, member.time_zone)
    enrollment.waiting_on = WaitReason.BEST_HOUR
    return True


def _held_back(
    enrollment: DueEnrollment,
    definition: JourneyDefinition,
    step: SendStep,
    member: MemberRow,
    run: _Pass,
) -> Literal["wait", "skip"] | None:
    """Whether the sending rules hold the email back: ``wait``, ``skip`` or None (send it)."""
    if run.rules is None or definition.transactional:
        return None
    hold = hold_for(
        run.rules,
        over_budget=step.over_budget or definition.over_budget,
        time_zone=member.time_zone,
        recent=run.budget.queued(member.id),
        now=run.now,
    )
    if hold is None:
        return None
    if run.on_hold is not None:
        run.on_hold(HeldEmail(definition.id, step.id, member.id, hold.reason))
    if hold.until is None:
        run.counts.budget_skipped += 1
        logger.info(
            "enrollment %s: %s/%s skipped, member %s is over budget",
            enrollment.id,
            definition.id,
            step.id,
            member.id,
        )
        return "skip"
    enrollment.current_step = step.id
    enrollment.next_action_at = hold.until
    enrollment.waiting_on = WaitReason(hold.reason)
    if hold.reason == "quiet_hours":
        run.counts.quiet_deferred += 1
    else:
        run.counts.budget_deferred += 1
    return "wait"


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
    enrollment: DueEnrollment,
    definition: JourneyDefinition,
    step: BranchStep,
    batch: _Batch,
    run: _Pass,
) -> str:
    """The step a branch leads to: the first case that holds, else ``otherwise``."""
    conditions = tuple(case.when for case in step.cases)
    facts = batch.facts.get(conditions)
    if facts is None:
        facts = batch.facts[conditions] = run.facts(session, sorted(batch.members), *conditions)

    def opened(step_id: str) -> bool:
        return bool(batch.engagement.get((enrollment.id, step_id), set()) & {"open", "click"})

    def clicked(step_id: str) -> bool:
        return "click" in batch.engagement.get((enrollment.id, step_id), set())

    for index, case in enumerate(step.cases):
        where = f"step {step.id} case {index + 1}"
        condition = run.condition(case.when, definition.id, where)
        trigger = enrollment.context
        if condition.holds(facts, enrollment.member_id, trigger, opened=opened, clicked=clicked):
            return case.next
    return step.otherwise


def _queue_message(
    enrollment: DueEnrollment,
    definition: JourneyDefinition,
    step: SendStep,
    member: MemberRow,
    batch: _Batch,
    run: _Pass,
) -> None:
    """Add the step's email to the batch, unless that enrollment step has one already."""
    if (enrollment.id, step.id) in batch.written:
        return
    batch.written.add((enrollment.id, step.id))
    if not definition.transactional:
        run.budget.record(member.id, run.now)
    batch.emails.append(_Email(enrollment, definition, step, member))


def _fill_emails(session: Session, emails: Sequence[_Email], run: _Pass) -> list[dict[str, Any]]:
    """The ``Message`` rows of a chunk's emails, their content filled in the order queued.

    What the templates read of the members, and the items each was already sent, are read for
    the members of these emails only.
    """
    if not emails:
        return []
    member_ids = sorted({email.member.id for email in emails})
    sent_keys = defaultdict(set, sent_item_keys(session, member_ids))
    run.content.load(session, member_ids)
    answered = run.reads.answered(session, member_ids)
    profiles = run.reads.profiles(session, member_ids)
    messages = []
    for email in emails:
        member, step = email.member, email.step
        context = run.content.message_context(
            session,
            member_id=member.id,
            language=member.language,
            content=step.content,
            slots=step.slots,
            sent=sent_keys[member.id],
            trigger=email.enrollment.context,
            questionnaire_answered=member.id in answered,
            profile=profiles.get(member.id),
        )
        messages.append(
            {
                "enrollment_id": email.enrollment.id,
                "step_id": step.id,
                "member_id": member.id,
                "journey_key": email.definition.id,
                "template": step.template,
                "subject": step.subject_for(member.language),
                "context": context.to_stored(),
                "status": MessageStatus.QUEUED,
                "scheduled_at": run.now,
                "created_at": run.now,
                "attempts": 0,
            }
        )
    return messages


_ENROLLMENT_COLUMNS = (
    "journey_id",
    "journey_key",
    "member_id",
    "occurrence",
    "state",
    "current_step",
    "next_action_at",
    "enrolled_at",
    "context",
    "arm",
    "finished_at",
    "exit_reason",
    "waiting_on",
)
"""The columns of a new enrollment's row (``enrollment_rows``, then ``_settle``)."""


def _insert_enrollments(session: Session, rows: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """Write new enrollments, skipping those already written; (member, occurrence) of each.

    On SQLite and PostgreSQL the rows go in bulk (``inserted_rows``: straight into the table
    when none is there yet, else staged, then one ``INSERT ... ON CONFLICT DO NOTHING
    RETURNING``); elsewhere one by one in savepoints.
    """
    returned = ("member_id", "occurrence")
    table = _enrollment_table()
    if session.get_bind().dialect.name not in ("sqlite", "postgresql"):
        return inserted_ignoring_conflicts(session, table, rows, returned)
    values = [tuple(map(row.get, _ENROLLMENT_COLUMNS)) for row in rows]
    return inserted_rows(session, table, _ENROLLMENT_COLUMNS, values, returned)


_MESSAGE_COLUMNS = (
    "enrollment_id",
    "step_id",
    "member_id",
    "journey_key",
    "template",
    "subject",
    "context",
    "status",
    "scheduled_at",
    "created_at",
    "attempts",
)
"""The columns of a new message's row (``_fill_emails``)."""


def _insert_messages(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Write new messages, skipping those already written; how many were written.

    On SQLite and PostgreSQL the rows go in bulk (``inserted_rows``, as enrollments do);
    elsewhere one statement, or one by one in savepoints on a conflict.
    """
    table = _message_table()
    if not rows or session.get_bind().dialect.name not in ("sqlite", "postgresql"):
        return insert_ignoring_conflicts(session, table, rows)
    values = [tuple(map(row.__getitem__, _MESSAGE_COLUMNS)) for row in rows]
    return len(inserted_rows(session, table, _MESSAGE_COLUMNS, values, ("enrollment_id",)))


def _enrollment_table() -> Table:
    return table_of(Enrollment)


def _message_table() -> Table:
    return table_of(Message)
