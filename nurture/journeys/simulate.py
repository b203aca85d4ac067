"""Dry runs of the journeys: who would get which email when over the coming days.

``simulate_journeys`` runs the journey engine (``advance_journeys``) tick after tick over a
period, on the real database, inside a savepoint that is rolled back at the end, error or not:
nothing is sent and nothing is kept. What the engine queued during the run is read before the
rollback: every email with its member, journey, step and time, the daily volumes, the most
budgeted emails any member got in one rolling window, and the emails the sending rules held back.

Every journey runs in a simulation, as it would for real: they share each member's budget. The
engine runs at each tick at which a journey has an enrollment due, at the moments a trigger can
fire (a member joins, answers or does something, the local hour of an anniversary, a schedule
run), and checks every trigger at least every ``trigger_every``: a trigger without a clock of
its own (a silence, a content gap, a segment move) or a journey whose audience or cooldown
changes with time enrols its members at most ``trigger_every`` later than an engine running at
every tick would. Ticks at which none of that happens are skipped; they would change nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from cronsim import CronSim
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture import progress
from nurture.chunks import chunked
from nurture.journeys.backfill import Backfill, measure_backfill
from nurture.journeys.content import PickContent
from nurture.journeys.engine import DEFAULT_CHUNK_SIZE, JourneySummary, advance_journeys
from nurture.journeys.holds import HeldEmail
from nurture.journeys.models import (
    ActivityTrigger,
    AnniversaryTrigger,
    JourneyDefinition,
    MemberJoinedTrigger,
    MilestoneTrigger,
    QuestionnaireAnsweredTrigger,
    ScheduleTrigger,
)
from nurture.journeys.policy import Budget, SendingRules
from nurture.journeys.triggers import local_zone
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    Enrollment,
    EnrollmentState,
    Member,
    Message,
)

__all__ = [
    "DEFAULT_TICK",
    "DEFAULT_TRIGGER_EVERY",
    "HeldDay",
    "HeldEmails",
    "SimulatedSend",
    "SimulationReport",
    "sample_members",
    "simulate_journeys",
]

DEFAULT_TICK = dt.timedelta(hours=1)
"""How often the simulated engine may run: the time resolution of a simulation."""

DEFAULT_TRIGGER_EVERY = dt.timedelta(hours=6)
"""How often at least each trigger is checked in a simulation (see the module docstring)."""


@dataclasses.dataclass(frozen=True)
class SimulatedSend:
    """One email the engine would queue.

    Attributes:
        at: When it would be queued (UTC).
        member_id: The member.
        email: The member's address.
        time_zone: The member's time zone (IANA name).
        journey_key: The journey's id.
        step_id: The send step's id.
    """

    at: dt.datetime
    member_id: int
    email: str
    time_zone: str
    journey_key: str
    step_id: str

    @property
    def local_at(self) -> dt.datetime:
        """When it would be queued, in the member's time zone."""
        return self.at.astimezone(local_zone(self.time_zone))

    def to_dict(self) -> dict[str, Any]:
        """The send as JSON-ready values (times in ISO 8601)."""
        return {
            "at": self.at.isoformat(),
            "local_at": self.local_at.isoformat(),
            "member_id": self.member_id,
            "email": self.email,
            "time_zone": self.time_zone,
            "journey": self.journey_key,
            "step": self.step_id,
        }


@dataclasses.dataclass(frozen=True)
class HeldEmails:
    """The emails of one journey the sending rules held back during a simulation.

    Attributes:
        journey_key: The journey's id.
        budget_deferred: Emails that waited for room in the member's budget (each wait counted).
        budget_skipped: Emails skipped because the member's budget was spent.
        quiet_deferred: Emails that waited for the end of the member's quiet hours.
        members: The members concerned, by id.
    """

    journey_key: str
    budget_deferred: int = 0
    budget_skipped: int = 0
    quiet_deferred: int = 0
    members: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The counts and member ids as JSON-ready values."""
        return {
            "journey": self.journey_key,
            "budget_deferred": self.budget_deferred,
            "budget_skipped": self.budget_skipped,
            "quiet_deferred": self.quiet_deferred,
            "members": list(self.members),
        }


@dataclasses.dataclass(frozen=True)
class HeldDay:
    """The emails of one journey the sending rules held back on one UTC day of a simulation.

    Attributes:
        day: The day.
        journey_key: The journey's id.
        budget_deferred: Waits for room in the member's budget that began that day.
        budget_skipped: Emails skipped that day because the member's budget was spent.
        quiet_deferred: Waits for the end of the member's quiet hours that began that day.
    """

    day: dt.date
    journey_key: str
    budget_deferred: int = 0
    budget_skipped: int = 0
    quiet_deferred: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready values (the day in ISO 8601)."""
        return {
            "day": self.day.isoformat(),
            "journey": self.journey_key,
            "budget_deferred": self.budget_deferred,
            "budget_skipped": self.budget_skipped,
            "quiet_deferred": self.quiet_deferred,
        }


@dataclasses.dataclass(frozen=True)
class SimulationReport:
    """What the journeys would do over a period; nothing of it was sent or kept.

    Attributes:
        start: The start of the period (UTC).
        end: Its end (excluded).
        tick: The time resolution: the engine ran at multiples of it after ``start``.
        trigger_every: The longest time between two checks of one trigger.
        member_ids: The members simulated; None: every member.
        journeys: The ids of the journeys that ran, in the engine's order (care first).
        sends: Every email the engine queued, by time, then member, journey and step.
        entered: Per journey, how many enrollments began in the period (a member who enters
            and is then held, skipped or led past every email by a branch counts too).
        held: Per journey, the emails the sending rules held back (journeys with none left out).
        held_daily: The same by UTC day: days and journeys with none left out, by day, then
            in the engine's journey order.
        totals: What the engine did over the whole period (the sum of every pass).
        budget: The message budget in force; None when there is none.
        window_peaks: Per member who got an email, the most budgeted emails they get in one
            rolling budget window ending at a simulated email (emails queued before the period
            count); empty without a budget.
        passes: How many times the engine ran.
        backfill: The largest run over the backfill limit (``sending.yaml``): members the
            journeys would start emailing at once, which ``nurture run`` refuses unless
            ``--allow-backfill``; None when no run goes over it.
        arms: Per journey with a holdout or a split, the enrollments begun in the period by
            arm: ``control`` (held out, sent nothing) and each split variant drawn.
    """

    start: dt.datetime
    end: dt.datetime
    tick: dt.timedelta
    trigger_every: dt.timedelta
    member_ids: tuple[int, ...] | None
    journeys: tuple[str, ...]
    sends: tuple[SimulatedSend, ...]
    entered: dict[str, int]
    held: tuple[HeldEmails, ...]
    totals: JourneySummary
    budget: Budget | None
    window_peaks: dict[int, int]
    passes: int
    held_daily: tuple[HeldDay, ...] = ()
    backfill: Backfill | None = None
    arms: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    @property
    def max_in_window(self) -> int:
        """The most budgeted emails any member gets in one rolling window (0 without budget)."""
        return max(self.window_peaks.values(), default=0)

    @property
    def over_budget(self) -> tuple[int, ...]:
        """The members who get more emails in one window than the budget allows, by id."""
        if self.budget is None:
            return ()
        limit = self.budget.messages
        return tuple(sorted(m for m, peak in self.window_peaks.items() if peak > limit))

    def sends_of(self, journey_key: str | None = None) -> list[SimulatedSend]:
        """The emails of one journey (all of them when ``journey_key`` is None)."""
        return [s for s in self.sends if journey_key is None or s.journey_key == journey_key]

    def timeline(self, member_id: int) -> list[SimulatedSend]:
        """The emails one member would get, in time order."""
        return [send for send in self.sends if send.member_id == member_id]

    def members_reached(self, journey_key: str) -> set[int]:
        """The members who would get at least one email of a journey."""
        return {send.member_id for send in self.sends if send.journey_key == journey_key}

    def daily_volumes(self) -> dict[dt.date, dict[str, int]]:
        """Emails per UTC day and journey, for every day of the period (empty days included)."""
        volumes: dict[dt.date, dict[str, int]] = {}
        day = self.start.date()
        while day <= (self.end - dt.timedelta(microseconds=1)).date():
            volumes[day] = {}
            day += dt.timedelta(days=1)
        for send in self.sends:
            counts = volumes.setdefault(send.at.date(), {})
            counts[send.journey_key] = counts.get(send.journey_key, 0) + 1
        return volumes

    def to_dict(self, journey_key: str | None = None) -> dict[str, Any]:
        """The report as JSON-ready values.

        Args:
            journey_key: List only this journey's emails under ``sends``; the volumes, held
                emails, totals and budget still cover every journey.

        Returns:
            A dict: ``start``, ``end``, ``tick_seconds``, ``trigger_every_seconds``,
            ``members`` (ids, or null for everyone), ``journeys``, ``passes``, ``totals``,
            ``budget`` (messages, window, max_in_window, over_budget), ``entered`` (per
            journey), ``arms`` (per journey, per arm), ``daily`` (per ISO day, per journey),
            ``held``, ``held_daily``, ``backfill`` (the largest run over the backfill limit, or
            null) and ``sends``.
        """
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "tick_seconds": int(self.tick.total_seconds()),
            "trigger_every_seconds": int(self.trigger_every.total_seconds()),
            "members": list(self.member_ids) if self.member_ids is not None else None,
            "journeys": list(self.journeys),
            "passes": self.passes,
            "totals": dataclasses.asdict(self.totals),
            "budget": {
                "messages": self.budget.messages if self.budget else None,
                "window": self.budget.window if self.budget else None,
                "max_in_window": self.max_in_window,
                "over_budget": list(self.over_budget),
            },
            "entered": dict(self.entered),
            "arms": {key: dict(arms) for key, arms in self.arms.items()},
            "daily": {day.isoformat(): counts for day, counts in self.daily_volumes().items()},
            "held": [held.to_dict() for held in self.held],
            "held_daily": [held.to_dict() for held in self.held_daily],
            "backfill": self.backfill.to_dict() if self.backfill is not None else None,
            "sends": [send.to_dict() for send in self.sends_of(journey_key)],
        }


def sample_members(session: Session, count: int, *, seed: int) -> list[int]:
    """Pick members at random, the same ones for the same seed and members.

    Args:
        session: The database session.
        count: How many members; all of them when there are fewer.
        seed: Seed of the choice (``Settings.random_seed``).

    Returns:
        The members' ids, in id order.

    Raises:
        ValueError: ``count`` is below 1.
    """
    if count < 1:
        raise ValueError(f"expected a sample of at least 1 member, found {count}")
    ids = list(session.scalars(select(Member.id).order_by(Member.id)))
    return sorted(random.Random(seed).sample(ids, min(count, len(ids))))


def simulate_journeys(
    session: Session,
    definitions: Sequence[JourneyDefinition],
    *,
    start: dt.datetime,
    days: float,
    tick: dt.timedelta = DEFAULT_TICK,
    rules: SendingRules | None,
    member_ids: Collection[int] | None = None,
    pick_content: PickContent | None = None,
    suppression_salt: str | None = None,
    trigger_every: dt.timedelta = DEFAULT_TRIGGER_EVERY,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SimulationReport:
    """Run the journeys over ``days`` from ``start`` without sending or keeping anything.

    The engine runs on the session's database inside a savepoint that is rolled back at the
    end, also when the run fails: every table is left as it was (database sequences aside).
    Meanwhile the run holds a write transaction, as a real run does.

    Args:
        session: The database session; the simulation leaves nothing in it, the caller may
            commit or roll back as it pleases.
        definitions: The journey definitions in force (``load_journeys``); all of them run.
        start: The start of the period (timezone-aware); the engine first runs at it.
        days: The length of the period, in days.
        tick: The time resolution: the engine runs at ``start`` plus multiples of it.
        rules: The message budget and quiet hours (``load_sending_rules``); None: neither.
        member_ids: Only these members (a sample, or one member); None: everyone.
        pick_content: Picks each email's content; default: the members' recommendations.
        suppression_salt: Salt of the suppression list, so suppressed addresses stay out.
        trigger_every: The longest time between two checks of one trigger; at most ``tick``
            makes every tick check every trigger (slower, no shortcut).
        chunk_size: Enrollments the engine handles per batch.

    Returns:
        What the engine would do: every email, the volumes, the budget peaks, the held emails.

    Raises:
        ValueError: ``start`` is naive, or ``days``, ``tick`` or ``trigger_every`` is not
            positive.
    """
    if start.tzinfo is None:
        raise ValueError(f"expected a timezone-aware start, found naive {start!r}")
    if days <= 0 or tick <= dt.timedelta(0) or trigger_every <= dt.timedelta(0):
        raise ValueError(
            f"expected positive days, tick and trigger_every, found {days}, {tick}, {trigger_every}"
        )
    start = start.astimezone(dt.UTC)
    run = _Run(
        session,
        definitions,
        start=start,
        end=start + dt.timedelta(days=days),
        tick=tick,
        trigger_every=trigger_every,
        rules=rules,
        member_ids=frozenset(member_ids) if member_ids is not None else None,
        engine_options={
            "pick_content": pick_content,
            "suppression_salt": suppression_salt,
            "chunk_size": chunk_size,
        },
    )
    savepoint = session.begin_nested()
    try:
        run.execute()
        return run.report(run.skips)
    finally:
        savepoint.rollback()


# --- the run --------------------------------------------------------------------------------


class _Run:
    """One simulation: the engine passes and what is collected from them before the rollback."""

    def __init__(
        self,
        session: Session,
        definitions: Sequence[JourneyDefinition],
        *,
        start: dt.datetime,
        end: dt.datetime,
        tick: dt.timedelta,
        trigger_every: dt.timedelta,
        rules: SendingRules | None,
        member_ids: frozenset[int] | None,
        engine_options: dict[str, Any],
    ) -> None:
        self.session = session
        self.skips: list[tuple[str, int]] = []
        self.definitions = sorted(
            definitions, key=lambda d: (d.category != "care", d.priority, d.id)
        )
        self.keys = [definition.id for definition in self.definitions]
        self.start, self.end, self.tick = start, end, tick
        self.trigger_every = trigger_every
        self.rules = rules
        self.member_ids = member_ids
        self.engine_options = engine_options
        self.transactional = {d.id for d in self.definitions if d.transactional}
        self.totals = Counter[str]()
        self.passes = 0
        self.sent: list[tuple[dt.datetime, int, str, str]] = []
        self.deferred: Counter[tuple[str, str]] = Counter()
        self.held_by_day: Counter[tuple[dt.date, str, str]] = Counter()
        self.now = start
        self.held_members: dict[str, set[int]] = defaultdict(set)
        self.waits: dict[int, tuple[str, dt.datetime | None]] = {}
        self.last_message_id = 0
        self.last_enrollment_id = 0
        self.backfill: Backfill | None = None

    def execute(self) -> None:
        """Run the engine at every tick where it can do something, and collect what it does."""
        self.last_message_id = self.session.scalar(select(func.max(Message.id))) or 0
        self.last_enrollment_id = self.session.scalar(select(func.max(Enrollment.id))) or 0
        moments = {
            definition.id: _trigger_moments(
                self.session, definition, self.start, self.end, self.member_ids
            )
            for definition in self.definitions
        }
        checked: dict[str, dt.datetime | None] = dict.fromkeys(self.keys)
        self._remember_waits()
        now = self.start
        while now < self.end:
            due = self._due_journeys(now)
            chosen = [
                definition
                for definition in self.definitions
                if definition.id in due
                or definition.id in self.transactional
                or _check_due(
                    checked[definition.id], now, moments[definition.id], self.trigger_every
                )
            ]
            if chosen:
                with progress.unwatched():  # the engine's own counts are not the hours
                    self._pass(chosen, now)
                for definition in chosen:
                    checked[definition.id] = now
            later = self._next_tick(now, checked, moments)
            hour = dt.timedelta(hours=1)
            progress.advance(
                (min(later, self.end) - self.start) // hour - (now - self.start) // hour
            )
            now = later

    def _pass(self, chosen: list[JourneyDefinition], now: dt.datetime) -> None:
        self.now = now
        summary = advance_journeys(
            self.session,
            chosen,
            now,
            rules=self.rules,
            member_ids=self.member_ids,
            on_hold=self._held,
            **self.engine_options,
        )
        self.passes += 1
        self.totals.update(dataclasses.asdict(summary))
        limit = self.rules.backfill if self.rules is not None else None
        if limit is not None and summary.enrolled:
            found = measure_backfill(
                self.session, self.definitions, now, limit, member_ids=self.member_ids
            )
            if found.exceeded and (self.backfill is None or found.members > self.backfill.members):
                self.backfill = found
        if summary.messages_queued:
            self._collect_messages(now)
        if summary.budget_deferred or summary.quiet_deferred:
            self._collect_waits(now)

    def _due_journeys(self, now: dt.datetime) -> set[str]:
        query = select(Enrollment.journey_key).where(
            Enrollment.state == EnrollmentState.ACTIVE,
            Enrollment.next_action_at <= now,
            Enrollment.journey_key.in_(self.keys),
        )
        if self.member_ids is not None:
            query = query.where(Enrollment.member_id.in_(sorted(self.member_ids)))
        return set(self.session.scalars(query.distinct()))

    def _next_due(self) -> dt.datetime | None:
        query = select(func.min(Enrollment.next_action_at)).where(
            Enrollment.state == EnrollmentState.ACTIVE,
            Enrollment.journey_key.in_(self.keys),
        )
        if self.member_ids is not None:
            query = query.where(Enrollment.member_id.in_(sorted(self.member_ids)))
        found = self.session.scalar(query)
        return _aware(found) if found is not None else None

    def _next_tick(
        self,
        now: dt.datetime,
        checked: dict[str, dt.datetime | None],
        moments: dict[str, list[dt.datetime]],
    ) -> dt.datetime:
        """The first tick after ``now`` at which the engine can do something."""
        wanted = [now + self.tick]
        nearest = self._next_due()
        if nearest is not None:
            wanted.append(nearest)
        for key in self.keys:
            last = checked[key]
            if last is not None:
                wanted.append(last + self.trigger_every)
            times = moments[key]
            index = bisect_left(times, now + dt.timedelta(microseconds=1))
            if index < len(times):
                wanted.append(times[index])
        moment = max(min(wanted[1:], default=self.end), wanted[0])
        return self._on_grid(moment)

    def _on_grid(self, moment: dt.datetime) -> dt.datetime:
        """The first tick at or after ``moment``."""
        steps = -((self.start - moment) // self.tick)  # ceiling division
        return self.start + steps * self.tick

    def _collect_messages(self, now: dt.datetime) -> None:
        rows = self.session.execute(
            select(Message.id, Message.member_id, Message.journey_key, Message.step_id)
            .where(Message.id > self.last_message_id, Message.created_at == now)
            .order_by(Message.id)
        ).tuples()
        for message_id, member_id, journey_key, step_id in rows:
            self.sent.append((now, member_id, journey_key, step_id))
            self.last_message_id = max(self.last_message_id, message_id)

    def _waiting(self) -> list[tuple[int, str, int, str, dt.datetime | None]]:
        query = select(
            Enrollment.id,
            Enrollment.journey_key,
            Enrollment.member_id,
            Enrollment.waiting_on,
            Enrollment.next_action_at,
        ).where(
            Enrollment.state == EnrollmentState.ACTIVE,
            Enrollment.waiting_on.is_not(None),
            Enrollment.journey_key.in_(self.keys),
        )
        if self.member_ids is not None:
            query = query.where(Enrollment.member_id.in_(sorted(self.member_ids)))
        return [
            (enrollment_id, journey_key, member_id, str(reason), at)
            for enrollment_id, journey_key, member_id, reason, at in self.session.execute(query)
        ]

    def _remember_waits(self) -> None:
        self.waits = {row[0]: (row[3], row[4]) for row in self._waiting()}

    def _collect_waits(self, now: dt.datetime) -> None:
        """Count the enrollments that started (or renewed) a wait for the sending rules."""
        for enrollment_id, journey_key, member_id, waiting_on, until in self._waiting():
            if self.waits.get(enrollment_id) == (waiting_on, until):
                continue
            self.waits[enrollment_id] = (waiting_on, until)
            self.deferred[(journey_key, waiting_on)] += 1
            self.held_by_day[(now.date(), journey_key, waiting_on)] += 1
            self.held_members[journey_key].add(member_id)

    def _held(self, held: HeldEmail) -> None:
        """Keep the (journey, member) of each email the budget skips: it leaves no row."""
        if held.reason == "budget_skip":
            self.skips.append((held.journey, held.member_id))
            self.held_by_day[(self.now.date(), held.journey, held.reason)] += 1

    def report(self, skips: list[tuple[str, int]]) -> SimulationReport:
        """The report, read from the database before the rollback."""
        skipped: Counter[str] = Counter()
        for journey_key, member_id in skips:
            skipped[journey_key] += 1
            self.held_members[journey_key].add(member_id)
        held = tuple(
            HeldEmails(
                journey_key=key,
                budget_deferred=self.deferred[(key, "budget")],
                budget_skipped=skipped[key],
                quiet_deferred=self.deferred[(key, "quiet_hours")],
                members=tuple(sorted(self.held_members[key])),
            )
            for key in self.keys
            if self.held_members.get(key)
        )
        members = self._members({member_id for _, member_id, _, _ in self.sent})
        sends = tuple(
            sorted(
                (
                    SimulatedSend(at, member_id, *members[member_id], journey_key, step_id)
                    for at, member_id, journey_key, step_id in self.sent
                ),
                key=lambda s: (s.at, s.member_id, self.keys.index(s.journey_key), s.step_id),
            )
        )
        budget = self.rules.budget if self.rules is not None else None
        return SimulationReport(
            start=self.start,
            end=self.end,
            tick=self.tick,
            trigger_every=self.trigger_every,
            member_ids=tuple(sorted(self.member_ids)) if self.member_ids is not None else None,
            journeys=tuple(self.keys),
            sends=sends,
            entered=self._entered(),
            held=held,
            totals=JourneySummary(**{f.name: self.totals[f.name] for f in _SUMMARY_FIELDS}),
            budget=budget,
            window_peaks=self._window_peaks(budget) if budget is not None else {},
            passes=self.passes,
            held_daily=self._held_daily(),
            backfill=self.backfill,
            arms=self._arms(),
        )

    def _held_daily(self) -> tuple[HeldDay, ...]:
        days = sorted({day for day, _, _ in self.held_by_day})
        return tuple(
            HeldDay(
                day=day,
                journey_key=key,
                budget_deferred=self.held_by_day[(day, key, "budget")],
                budget_skipped=self.held_by_day[(day, key, "budget_skip")],
                quiet_deferred=self.held_by_day[(day, key, "quiet_hours")],
            )
            for day in days
            for key in self.keys
            if any(self.held_by_day[(day, key, reason)] for reason in _HOLD_REASONS)
        )

    def _entered(self) -> dict[str, int]:
        """Enrollments begun during the run, per journey (in the engine's order)."""
        counts = dict(
            self.session.execute(
                select(Enrollment.journey_key, func.count())
                .where(
                    Enrollment.id > self.last_enrollment_id,
                    Enrollment.enrolled_at >= self.start,
                    Enrollment.enrolled_at < self.end,
                )
                .group_by(Enrollment.journey_key)
            )
            .tuples()
            .all()
        )
        return {key: counts[key] for key in self.keys if counts.get(key)}

    def _arms(self) -> dict[str, dict[str, int]]:
        """Enrollments begun during the run with an arm, per journey and arm."""
        rows = self.session.execute(
            select(Enrollment.journey_key, Enrollment.arm, func.count())
            .where(
                Enrollment.id > self.last_enrollment_id,
                Enrollment.enrolled_at >= self.start,
                Enrollment.enrolled_at < self.end,
                Enrollment.arm.is_not(None),
            )
            .group_by(Enrollment.journey_key, Enrollment.arm)
        ).tuples()
        arms: dict[str, dict[str, int]] = {}
        for key, arm, count in rows:
            arms.setdefault(key, {})[str(arm)] = count
        return {key: dict(sorted(arms[key].items())) for key in self.keys if key in arms}

    def _members(self, member_ids: set[int]) -> dict[int, tuple[str, str]]:
        found: dict[int, tuple[str, str]] = {}
        for chunk in chunked(sorted(member_ids), DEFAULT_CHUNK_SIZE):
            rows = self.session.execute(
                select(Member.id, Member.email, Member.time_zone).where(Member.id.in_(chunk))
            ).tuples()
            found.update({member_id: (email, zone or "UTC") for member_id, email, zone in rows})
        return found

    def _window_peaks(self, budget: Budget) -> dict[int, int]:
        """Per member, the most budgeted emails in one window ending at a simulated email."""
        window = budget.window_delta
        simulated: dict[int, list[dt.datetime]] = defaultdict(list)
        for at, member_id, journey_key, _ in self.sent:
            if journey_key not in self.transactional:
                simulated[member_id].append(at)
        peaks: dict[int, int] = {}
        for chunk in chunked(sorted(simulated), DEFAULT_CHUNK_SIZE):
            query = select(Message.member_id, Message.created_at).where(
                Message.member_id.in_(chunk),
                Message.created_at > self.start - window,
                Message.created_at < self.end,
            )
            if self.transactional:
                query = query.where(Message.journey_key.not_in(sorted(self.transactional)))
            moments: dict[int, list[dt.datetime]] = defaultdict(list)
            for member_id, created_at in self.session.execute(query).tuples():
                moments[member_id].append(_aware(created_at))
            for member_id in chunk:
                times = sorted(moments[member_id])
                peaks[member_id] = max(
                    bisect_left(times, end + dt.timedelta(microseconds=1))
                    - bisect_left(times, end - window + dt.timedelta(microseconds=1))
                    for end in simulated[member_id]
                )
        return peaks


_SUMMARY_FIELDS = dataclasses.fields(JourneySummary)
_HOLD_REASONS = ("budget", "budget_skip", "quiet_hours")


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _check_due(
    last: dt.datetime | None,
    now: dt.datetime,
    moments: list[dt.datetime],
    trigger_every: dt.timedelta,
) -> bool:
    """Whether a journey's trigger must be checked at ``now``: never yet, long ago, or fired."""
    if last is None or now - last >= trigger_every:
        return True
    index = bisect_left(moments, last + dt.timedelta(microseconds=1))
    return index < len(moments) and moments[index] <= now


# --- when triggers can fire -----------------------------------------------------------------


def _trigger_moments(
    session: Session,
    definition: JourneyDefinition,
    start: dt.datetime,
    end: dt.datetime,
    members: frozenset[int] | None,
) -> list[dt.datetime]:
    """The moments in the period from which a trigger may enrol someone new, in time order.

    Only triggers with a clock of their own have moments; the others are checked every
    ``trigger_every``.
    """
    trigger = definition.trigger
    found: list[dt.datetime] = []
    if isinstance(trigger, MemberJoinedTrigger | MilestoneTrigger):
        query = select(Member.joined_at).where(Member.joined_at > start, Member.joined_at < end)
        if members is not None and isinstance(trigger, MemberJoinedTrigger):
            query = query.where(Member.id.in_(sorted(members)))
        found = list(session.scalars(query))
    elif isinstance(trigger, QuestionnaireAnsweredTrigger):
        query = select(Answer.answered_at).where(
            Answer.answered_at > start, Answer.answered_at < end
        )
        if members is not None:
            query = query.where(Answer.member_id.in_(sorted(members)))
        found = list(session.scalars(query))
    elif isinstance(trigger, ActivityTrigger):
        query = select(ActivityEvent.occurred_at).where(
            ActivityEvent.type.in_(trigger.events),
            ActivityEvent.occurred_at > start,
            ActivityEvent.occurred_at < end,
        )
        if members is not None:
            query = query.where(ActivityEvent.member_id.in_(sorted(members)))
        found = list(session.scalars(query))
    elif isinstance(trigger, AnniversaryTrigger):
        found = _local_hours(session, trigger.hour, start, end, members)
    elif isinstance(trigger, ScheduleTrigger):
        found = _schedule_runs(trigger, start, end)
    return sorted({_aware(moment) for moment in found})


def _local_hours(
    session: Session,
    hour: int,
    start: dt.datetime,
    end: dt.datetime,
    members: frozenset[int] | None,
) -> list[dt.datetime]:
    """Each day's ``hour`` o'clock in every time zone of the members, within the period."""
    query = select(Member.time_zone).distinct()
    if members is not None:
        query = query.where(Member.id.in_(sorted(members)))
    found = []
    for name in session.scalars(query):
        zone = local_zone(name)
        day = start.astimezone(zone).date() - dt.timedelta(days=1)
        while True:
            moment = dt.datetime.combine(day, dt.time(hour), tzinfo=zone).astimezone(dt.UTC)
            if moment >= end:
                break
            if moment > start:
                found.append(moment)
            day += dt.timedelta(days=1)
    return found


def _schedule_runs(trigger: ScheduleTrigger, start: dt.datetime, end: dt.datetime) -> list[Any]:
    runs = []
    for moment in CronSim(trigger.cron, start.astimezone(local_zone(trigger.time_zone))):
        moment = moment.astimezone(dt.UTC)
        if moment >= end:
            break
        runs.append(moment)
    return runs
