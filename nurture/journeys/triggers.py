"""Who each trigger enrols, and with what context: one function per trigger type.

A trigger yields candidates: a member, an occurrence number and the context the trigger
recorded, a typed ``TriggerContext`` (one class per trigger kind, defined beside the function
that produces it, with the sample that template validation and ``nurture preview`` use; see
``TRIGGER_CONTEXTS`` and ``trigger_sample``).

The occurrence tells passes of one journey apart: a birthday is one occurrence per local year,
a schedule one per run, a silence one per last activity, a milestone one per threshold; simple
triggers (joined, answered) have a single occurrence, 1. The engine keeps one enrollment per
(journey, member, occurrence), applies the re-entry policy, consent, suppression and the
audience, and never enrols a member already in the journey.

Every function reads ``now`` and nothing else of the clock; nothing after ``now`` counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import zlib
import zoneinfo
from collections import Counter, defaultdict
from typing import Annotated, Any, ClassVar, NamedTuple, Self

from cronsim import CronSim
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from sqlalchemy import ColumnElement, Text, and_, cast, exists, func, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.journeys.conditions import FieldNames
from nurture.journeys.models import (
    ACTIVITY_TYPES,
    ActivityTrigger,
    AnniversaryTrigger,
    ContentGapTrigger,
    InactivityTrigger,
    MemberJoinedTrigger,
    MilestoneTrigger,
    QuestionnaireAnsweredTrigger,
    ScheduleTrigger,
    SegmentEnteredTrigger,
    SegmentLeftTrigger,
    parse_duration,
)
from nurture.segmentation.assignments import segment_entries
from nurture.storage import among, plain_rows
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    CommunityMilestone,
    ContentItem,
    Enrollment,
    Member,
    Segment,
    SegmentDeparture,
)
from nurture.storage.stored_json import JsonTexts

__all__ = [
    "ANNIVERSARY_LEAD",
    "ENGAGEMENT_TYPES",
    "TRIGGER_CONTEXTS",
    "ActivityContext",
    "AnniversaryContext",
    "Candidate",
    "ContentGapContext",
    "InactivityContext",
    "MemberJoinedContext",
    "MilestoneContext",
    "QuestionnaireAnsweredContext",
    "RecordedActivity",
    "ScheduleContext",
    "SegmentEnteredContext",
    "SegmentLeftContext",
    "TriggerContext",
    "anniversary_days",
    "anniversary_moment",
    "local_zone",
    "topic_coverage",
    "trigger_candidates",
    "trigger_sample",
]

ENGAGEMENT_TYPES = ("post", "comment", "event_attended", "content_view", "email_click")
"""Activity that shows interest in a content item (and breaks a silence by default)."""

_BATCH = 1000
_MILESTONE_GRACE = dt.timedelta(days=1)
"""How long after a milestone is reached members who could not be enrolled yet still are."""


IsoDateTime = Annotated[dt.datetime, PlainSerializer(dt.datetime.isoformat, when_used="json")]
"""A moment, stored as ISO 8601 text exactly as ``datetime.isoformat`` writes it."""


class TriggerContext(BaseModel):
    """What a trigger records when it enrols a member: ``trigger`` in conditions and templates.

    One subclass per trigger kind (``kind``); its stored form (``to_stored``) is the
    enrollment's ``context`` and every message's ``trigger``. ``sample`` gives realistic values,
    for template validation and for previews of a member the journey never enrolled.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str]

    @classmethod
    def sample(cls) -> Self:
        """A realistic context of this kind (the class's values for template checks)."""
        return cls()

    def to_stored(self) -> dict[str, Any]:
        """The context as stored and shown to templates: JSON values, moments in ISO 8601."""
        return self.model_dump(mode="json")

    @classmethod
    def field_names(cls) -> FieldNames:
        """The fields a condition can read on ``trigger`` (a record's fields nested)."""
        return _field_names(cls)


def _field_names(model: type[BaseModel]) -> dict[str, FieldNames | None]:
    names: dict[str, FieldNames | None] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        names[name] = _field_names(annotation) if nested else None  # type: ignore[arg-type]
    return names


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A member a trigger enrols.

    Attributes:
        member_id: The member.
        occurrence: Which pass of the journey this is (1 for single-pass triggers).
        context: What the trigger recorded, given to conditions and templates as ``trigger``.
        start_at: When the enrollment's first step runs, for a member enrolled ahead of their
            day (a birthday at 9:00 their time tomorrow); None: at once.
    """

    member_id: int
    occurrence: int = 1
    context: TriggerContext = dataclasses.field(kw_only=True)
    start_at: dt.datetime | None = dataclasses.field(default=None, kw_only=True)


@functools.lru_cache(maxsize=512)
def local_zone(name: str | None) -> dt.tzinfo:
    """The time zone of a member (UTC when unknown or invalid)."""
    try:
        return zoneinfo.ZoneInfo(name) if name else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _minutes(moment: dt.datetime) -> int:
    """A time as whole minutes since the epoch: an occurrence number that fits 32 bits."""
    return int(moment.timestamp() // 60)


def _not_enrolled(journey_key: str, occurrence: int = 1) -> ColumnElement[bool]:
    return ~exists(
        select(Enrollment.id).where(
            Enrollment.journey_key == journey_key,
            Enrollment.member_id == Member.id,
            Enrollment.occurrence == occurrence,
        )
    )


@functools.singledispatch
def trigger_candidates(
    trigger: Any, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    """The members a trigger enrols at ``now`` (one dispatch per trigger type).

    Args:
        trigger: A trigger model of a journey definition.
        session: The database session (a milestone trigger records the milestones it sees).
        now: The current time; nothing after it counts.
        journey_key: The journey's id: triggers may leave out members already enrolled.

    Returns:
        The candidates, by member id.

    Raises:
        TypeError: The trigger type has no function registered.
    """
    raise TypeError(f"no candidates for trigger {type(trigger).__name__}")


class MemberJoinedContext(TriggerContext):
    """``member_joined`` records nothing: the member is the news."""

    kind: ClassVar[str] = "member_joined"


@trigger_candidates.register
def _member_joined(
    trigger: MemberJoinedTrigger, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    query = select(Member.id).where(Member.joined_at <= now, _not_enrolled(journey_key))
    if trigger.within_days is not None:
        query = query.where(Member.joined_at >= now - dt.timedelta(days=trigger.within_days))
    context = MemberJoinedContext()
    return [
        Candidate(member_id, context=context)
        for (member_id,) in plain_rows(session, query.order_by(Member.id)).all()
    ]


class QuestionnaireAnsweredContext(TriggerContext):
    """``questionnaire_answered`` records nothing: templates read the answers themselves."""

    kind: ClassVar[str] = "questionnaire_answered"


@trigger_candidates.register
def _questionnaire_answered(
    trigger: QuestionnaireAnsweredTrigger, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    answered = select(Answer.id).where(Answer.member_id == Member.id, Answer.answered_at <= now)
    if trigger.within_days is not None:
        answered = answered.where(
            Answer.answered_at >= now - dt.timedelta(days=trigger.within_days)
        )
    query = select(Member.id).where(exists(answered), _not_enrolled(journey_key))
    context = QuestionnaireAnsweredContext()
    return [
        Candidate(member_id, context=context)
        for (member_id,) in plain_rows(session, query.order_by(Member.id)).all()
    ]


class SegmentEnteredContext(TriggerContext):
    """What ``segment_entered`` records: the segment and when the member entered it."""

    kind: ClassVar[str] = "segment_entered"

    segment: str = Field(description="The segment's key.")
    segment_label: str = Field(description="Its label (the key when it has none).")
    at: IsoDateTime = Field(description="When the member entered it.")

    @classmethod
    def sample(cls) -> Self:
        """Event organisers, entered on 28 October 2026."""
        return cls(
            segment="organisers",
            segment_label="Event organisers",
            at=dt.datetime(2026, 10, 28, 9, 0, tzinfo=dt.UTC),
        )


class SegmentLeftContext(SegmentEnteredContext):
    """What ``segment_left`` records: the segment and when the member left it (``at``)."""

    kind: ClassVar[str] = "segment_left"


def _segment_labels(session: Session, key: str) -> str:
    return session.scalar(select(Segment.label).where(Segment.key == key)) or key


@trigger_candidates.register
def _segment_entered(
    trigger: SegmentEnteredTrigger, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    hold = parse_duration(trigger.hold) if trigger.hold else dt.timedelta(0)
    since = now - hold - dt.timedelta(days=trigger.within_days)
    entries = segment_entries(
        session, since=since, until=now - hold, segment_keys=[trigger.segment]
    )
    if not entries:
        return []
    label = _segment_labels(session, trigger.segment)
    return [
        Candidate(
            entry.member_id,
            _minutes(entry.entered_at),
            context=SegmentEnteredContext(
                segment=trigger.segment, segment_label=label, at=entry.entered_at
            ),
        )
        for entry in sorted(entries, key=lambda entry: entry.member_id)
        if entry.entered_at + hold <= now
    ]


@trigger_candidates.register
def _segment_left(
    trigger: SegmentLeftTrigger, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    rows = session.execute(
        select(SegmentDeparture.member_id, SegmentDeparture.left_at)
        .join(Segment, Segment.id == SegmentDeparture.segment_id)
        .where(
            Segment.key == trigger.segment,
            SegmentDeparture.left_at <= now,
            SegmentDeparture.left_at >= now - dt.timedelta(days=trigger.within_days),
        )
        .order_by(SegmentDeparture.member_id, SegmentDeparture.left_at)
    ).all()
    if not rows:
        return []
    label = _segment_labels(session, trigger.segment)
    return [
        Candidate(
            member_id,
            _minutes(left_at),
            context=SegmentLeftContext(segment=trigger.segment, segment_label=label, at=left_at),
        )
        for member_id, left_at in rows
    ]


class AnniversaryContext(TriggerContext):
    """What ``anniversary`` records: which date, how many years, and the day it falls on."""

    kind: ClassVar[str] = "anniversary"

    date: str = Field(description="The trigger's date: birthday, joined_at or attributes.<name>.")
    years: int = Field(description="Years since that date (never shown: no ages in emails).")
    on: dt.date = Field(description="The anniversary's day in the member's time zone.")

    @classmethod
    def sample(cls) -> Self:
        """A birthday on 1 November 2026."""
        return cls(date="birthday", years=3, on=dt.date(2026, 11, 1))


def _anniversary_in(year: int, date: dt.date) -> dt.date:
    """The anniversary of ``date`` in ``year``; 29 February is the 28th in other years."""
    try:
        return date.replace(year=year)
    except ValueError:
        return date.replace(year=year, day=28)


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


ANNIVERSARY_LEAD = dt.timedelta(days=1)
"""How long before its local hour an anniversary enrols its member (who then waits for it)."""


def anniversary_moment(on: dt.date, hour: int, zone: dt.tzinfo) -> dt.datetime:
    """The local ``hour`` of the day ``on`` in a time zone, in UTC (a DST gap moves it on)."""
    return dt.datetime.combine(on, dt.time(hour)).replace(tzinfo=zone).astimezone(dt.UTC)


@trigger_candidates.register
def _anniversary(
    trigger: AnniversaryTrigger, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    # Members are enrolled ahead (ANNIVERSARY_LEAD) and wait for the hour of their day, so a
    # run late in the day, or in the member's quiet hours, never makes the email a day late.
    if trigger.date == "birthday":
        column: Any = Member.birthday
        query = select(Member.id, Member.time_zone, column).where(Member.birthday.is_not(None))
    elif trigger.date == "joined_at":
        column = Member.joined_at
        query = select(Member.id, Member.time_zone, column)
    else:
        column = Member.attributes
        query = select(Member.id, Member.time_zone, column)
    attribute = trigger.date.removeprefix("attributes.")
    candidates = []
    days: dict[dt.tzinfo, frozenset[tuple[int, int]]] = {}
    for member_id, time_zone, value in plain_rows(session, query.order_by(Member.id)).all():
        if column is Member.attributes:
            value = value.get(attribute) if isinstance(value, dict) else None
        zone = local_zone(time_zone)
        if column is Member.joined_at and isinstance(value, dt.datetime):
            if value > now:
                continue
            # The membership anniversary is on the member's own calendar.
            value = value.astimezone(zone)
        date = _as_date(value)
        if date is None:
            continue
        near = days.get(zone)
        if near is None:
            near = days[zone] = anniversary_days(zone, now)
        if (date.month, date.day) not in near:
            continue  # no anniversary today or tomorrow: _next_anniversary finds none
        found = _next_anniversary(date, trigger.hour, zone, now)
        if found is None:
            continue
        on, moment = found
        years = on.year - date.year
        if years < 1 and trigger.date != "birthday":
            continue
        context = AnniversaryContext(date=trigger.date, years=years, on=on)
        start_at = moment if moment > now else None
        candidates.append(Candidate(member_id, on.year, context=context, start_at=start_at))
    return candidates


def anniversary_days(zone: dt.tzinfo, now: dt.datetime) -> frozenset[tuple[int, int]]:
    """The (month, day) of the dates whose anniversary is today or tomorrow in ``zone``.

    Those of today and tomorrow, and 29 February when either is a 28 February of a year
    without one (``_anniversary_in``): a date not among them has no anniversary that
    ``_next_anniversary`` finds, so its member is left out without computing it.
    """
    today = now.astimezone(zone).date()
    near = {(day.month, day.day) for day in (today, today + dt.timedelta(days=1))}
    if (2, 28) in near:
        near.add((2, 29))
    return frozenset(near)


def _next_anniversary(
    date: dt.date, hour: int, zone: dt.tzinfo, now: dt.datetime
) -> tuple[dt.date, dt.datetime] | None:
    """The anniversary of ``date`` that is today (local) or within the lead, with its moment.

    Today's counts from its hour until the end of the day; a later one only within
    ``ANNIVERSARY_LEAD`` of its hour.
    """
    today = now.astimezone(zone).date()
    for day in (today, today + dt.timedelta(days=1)):
        on = _anniversary_in(day.year, date)
        if on != day:
            continue
        moment = anniversary_moment(on, hour, zone)
        if on == today or moment - now <= ANNIVERSARY_LEAD:
            return on, moment
    return None


class RecordedActivity(BaseModel):
    """The activity event that fired an ``activity`` trigger (the Nth of its types)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="The event type (post, comment, event_attended...).")
    occurred_at: IsoDateTime | None = Field(description="When it happened.")
    content_key: str | None = Field(description="The content item it was about, if any.")
    properties: dict[str, Any] = Field(description="What the import gave (title, excerpt...).")
    count: int = Field(description="Its rank among the member's events of those types.")


class ActivityContext(TriggerContext):
    """What ``activity`` records: the event, as ``trigger.event``."""

    kind: ClassVar[str] = "activity"

    event: RecordedActivity

    @classmethod
    def sample(cls) -> Self:
        """A first post with a title (markup included, to check escaping) and an excerpt."""
        return cls(
            event=RecordedActivity(
                type="post",
                occurred_at=dt.datetime(2026, 10, 31, 16, 20, tzinfo=dt.UTC),
                content_key=None,
                properties={
                    "title": "Our first meetup: 40 people & <b>a lot</b> of pizza",
                    "excerpt": "We did not expect so many of you. Here is what we learnt.",
                },
                count=1,
            )
        )


@trigger_candidates.register
def _activity(
    trigger: ActivityTrigger, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    since = now - dt.timedelta(days=trigger.within_days)
    recent = sorted(
        session.scalars(
            select(ActivityEvent.member_id)
            .where(
                ActivityEvent.type.in_(trigger.events),
                ActivityEvent.occurred_at <= now,
                ActivityEvent.occurred_at >= since,
            )
            .distinct()
        )
    )
    candidates = []
    decoded = JsonTexts()
    for batch in chunked(recent, _BATCH):
        counted: dict[int, int] = defaultdict(int)
        nth: dict[int, _Event] = {}
        # Only the events of those types are read (a fifth of the members' events), the type
        # compared as ``type || ''``: a plain ``type IN (...)`` can make the database read
        # every event of those types in the community for each batch (SQLite's planner, with
        # no statistics, takes the index on type and time), a cost that grows with the
        # community's square; an expression of the type is in no index, so the members'
        # events are found by the index on (member, time) and those of other types skipped.
        # Plain rows, the properties as stored text: decoded only for the events that count
        # (each distinct text once), not for each of the members' events.
        events = plain_rows(
            session,
            select(
                ActivityEvent.member_id,
                ActivityEvent.type,
                ActivityEvent.occurred_at,
                ActivityEvent.content_key,
                cast(ActivityEvent.properties, Text),
            )
            .where(
                among(session, ActivityEvent.member_id, batch),
                ActivityEvent.occurred_at <= now,
                ActivityEvent.type.concat("").in_(trigger.events),
            )
            .order_by(ActivityEvent.member_id, ActivityEvent.occurred_at, ActivityEvent.id),
        )
        for event in map(_Event._make, events.all()):
            if trigger.where and not _properties_match(decoded(event.properties), trigger.where):
                continue
            counted[event.member_id] += 1
            if counted[event.member_id] == trigger.count:
                nth[event.member_id] = event
        for member_id, event in sorted(nth.items()):
            if event.occurred_at < since:
                continue
            recorded = RecordedActivity(
                type=event.type,
                occurred_at=event.occurred_at,
                content_key=event.content_key,
                properties=dict(decoded(event.properties) or {}),
                count=trigger.count,
            )
            context = ActivityContext(event=recorded)
            candidates.append(Candidate(member_id, trigger.count, context=context))
    return candidates


class _Event(NamedTuple):
    """What the ``activity`` trigger reads of an event."""

    member_id: int
    type: str
    occurred_at: dt.datetime
    content_key: str | None
    properties: str | None
    """As stored: JSON text."""


def _properties_match(properties: Any, wanted: dict[str, Any]) -> bool:
    if not isinstance(properties, dict):
        return False
    return all(properties.get(key) == value for key, value in wanted.items())


class InactivityContext(TriggerContext):
    """What ``inactivity`` records: the silence's length and the last activity."""

    kind: ClassVar[str] = "inactivity"

    days: int = Field(description="The trigger's number of silent days.")
    last_active_at: IsoDateTime | None = Field(description="The last activity; None: never.")

    @classmethod
    def sample(cls) -> Self:
        """Sixty silent days by a member who never did anything."""
        return cls(days=60, last_active_at=None)


@trigger_candidates.register
def _inactivity(
    trigger: InactivityTrigger, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    types: list[str] = (
        list(trigger.events) if trigger.events else [t for t in ACTIVITY_TYPES if t != "email_open"]
    )
    cutoff = now - dt.timedelta(days=trigger.days)
    # Each member's last activity, found in the index on (member, time): not a grouping of
    # every event of the community. It is looked for only for the members silent since the
    # cutoff: those active since are left out first (one range of the index each, or the
    # recent events of those types at once), most members of a living community.
    last_active = (
        select(func.max(ActivityEvent.occurred_at))
        .where(
            ActivityEvent.member_id == Member.id,
            ActivityEvent.type.in_(types),
            ActivityEvent.occurred_at <= now,
        )
        .scalar_subquery()
    )
    active_since = exists(
        select(ActivityEvent.id).where(
            ActivityEvent.member_id == Member.id,
            ActivityEvent.type.in_(types),
            ActivityEvent.occurred_at > cutoff,
            ActivityEvent.occurred_at <= now,
        )
    )
    candidates = []
    members = plain_rows(
        session,
        select(Member.id, Member.joined_at, last_active)
        .where(Member.joined_at <= cutoff, ~active_since)
        .order_by(Member.id),
    ).all()
    for member_id, joined_at, found in members:
        last: dt.datetime | str | None = found
        if isinstance(last, str):  # SQLite's max() of a datetime column
            last = dt.datetime.fromisoformat(last)
            last = last if last.tzinfo else last.replace(tzinfo=dt.UTC)
        reference = last if last is not None else joined_at
        if reference > cutoff:
            continue
        context = InactivityContext(days=trigger.days, last_active_at=last)
        occurrence = int(reference.timestamp() // 86400)
        candidates.append(Candidate(member_id, occurrence, context=context))
    return candidates


class MilestoneContext(TriggerContext):
    """What ``community_milestone`` records: the threshold and the count when it was reached."""

    kind: ClassVar[str] = "community_milestone"

    threshold: int = Field(description="The community size celebrated (1000).")
    member_count: int = Field(description="The member count when it was reached.")

    @classmethod
    def sample(cls) -> Self:
        """A thousand members, reached at 1,004."""
        return cls(threshold=1000, member_count=1004)


@trigger_candidates.register
def _milestone(
    trigger: MilestoneTrigger, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    count = session.scalar(select(func.count(Member.id)).where(Member.joined_at <= now)) or 0
    recorded = {row.threshold: row for row in session.scalars(select(CommunityMilestone))}
    reached = sorted(threshold for threshold in set(trigger.thresholds) if threshold <= count)
    new = [threshold for threshold in reached if threshold not in recorded]
    recent = now - dt.timedelta(days=trigger.within_days)
    for threshold in new:
        crossed = _crossed_at(session, threshold, now)
        row = CommunityMilestone(
            threshold=threshold,
            reached_at=now,
            member_count=count,
            # Only the highest, and only news: a threshold crossed long ago (a first run on
            # an old community) is recorded, never celebrated.
            celebrated=threshold == new[-1] and crossed is not None and crossed >= recent,
        )
        session.add(row)
        recorded[threshold] = row
    if new:
        session.flush()
    candidates = []
    for threshold in reached:
        row = recorded[threshold]
        if not row.celebrated or not (row.reached_at <= now < row.reached_at + _MILESTONE_GRACE):
            continue
        context = MilestoneContext(threshold=threshold, member_count=row.member_count)
        members = session.scalars(
            select(Member.id)
            .where(Member.joined_at <= row.reached_at, _not_enrolled(journey_key, threshold))
            .order_by(Member.id)
        )
        candidates += [Candidate(member_id, threshold, context=context) for member_id in members]
    return candidates


def _crossed_at(session: Session, threshold: int, now: dt.datetime) -> dt.datetime | None:
    """When the community reached ``threshold`` members: the join of its Nth member."""
    moment = session.scalar(
        select(Member.joined_at)
        .where(Member.joined_at <= now)
        .order_by(Member.joined_at, Member.id)
        .offset(threshold - 1)
        .limit(1)
    )
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


class ScheduleContext(TriggerContext):
    """What ``schedule`` records: this run and the one before (the period it covers)."""

    kind: ClassVar[str] = "schedule"

    run_at: IsoDateTime = Field(description="The scheduled run (names the month of a digest).")
    period_start: IsoDateTime = Field(description="The previous scheduled run.")

    @classmethod
    def sample(cls) -> Self:
        """The run of 1 November 2026, after the one of 1 October."""
        return cls(
            run_at=dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC),
            period_start=dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC),
        )


@trigger_candidates.register
def _schedule(
    trigger: ScheduleTrigger, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    zone = local_zone(trigger.time_zone)
    runs = CronSim(trigger.cron, (now + dt.timedelta(seconds=1)).astimezone(zone), reverse=True)
    run_at = next(runs).astimezone(dt.UTC)
    if now - run_at > parse_duration(trigger.catch_up):
        return []
    previous = next(runs).astimezone(dt.UTC)
    occurrence = _minutes(run_at)
    query = select(Member.id).where(
        Member.joined_at <= run_at, _not_enrolled(journey_key, occurrence)
    )
    if trigger.audience == "joined_since_previous":
        query = query.where(Member.joined_at > previous)
    context = ScheduleContext(run_at=run_at, period_start=previous)
    return [
        Candidate(member_id, occurrence, context=context)
        for (member_id,) in plain_rows(session, query.order_by(Member.id)).all()
    ]


def topic_coverage(session: Session, now: dt.datetime) -> dict[str, set[str]]:
    """Each topic (a library tag, lower case) and the keys of the live items carrying it."""
    items = session.execute(
        select(ContentItem.key, ContentItem.tags).where(ContentItem.live_at(now))
    ).tuples()
    coverage: dict[str, set[str]] = defaultdict(set)
    for key, tags in items:
        for tag in tags or []:
            coverage[str(tag).strip().lower()].add(key)
    return coverage


class ContentGapContext(TriggerContext):
    """What ``content_gap`` records: the topic, how little covers it, how often the member came."""

    kind: ClassVar[str] = "content_gap"

    topic: str = Field(description="The topic: a library tag, lower case.")
    item_count: int = Field(description="How many live items carry it (0, 1, a few).")
    engagements: int = Field(description="The member's engagements with it in the window.")

    @classmethod
    def sample(cls) -> Self:
        """Moderation, covered by one item, that drew the member seven times."""
        return cls(topic="moderation", item_count=1, engagements=7)


@trigger_candidates.register
def _content_gap(
    trigger: ContentGapTrigger, session: Session, now: dt.datetime, journey_key: str
) -> list[Candidate]:
    ignored = {tag.strip().lower() for tag in trigger.ignore_tags}
    coverage = topic_coverage(session, now)
    gaps = {
        tag: keys
        for tag, keys in coverage.items()
        if tag not in ignored and len(keys) <= trigger.max_items
    }
    topics_of: dict[str, list[str]] = defaultdict(list)
    for tag, keys in gaps.items():
        for key in keys:
            topics_of[key].append(tag)
    if not topics_of:
        return []
    engaged: dict[int, Counter[str]] = defaultdict(Counter)
    # The type is checked here: asked of the database, it can make it scan every event of
    # those types rather than the few on the gaps' items.
    rows = session.execute(
        select(ActivityEvent.member_id, ActivityEvent.content_key, ActivityEvent.type).where(
            and_(
                ActivityEvent.content_key.in_(sorted(topics_of)),
                ActivityEvent.occurred_at <= now,
                ActivityEvent.occurred_at >= now - dt.timedelta(days=trigger.within_days),
            )
        )
    ).tuples()
    for member_id, content_key, kind in rows:
        if kind not in ENGAGEMENT_TYPES:
            continue
        for tag in topics_of[content_key] if content_key is not None else ():
            engaged[member_id][tag] += 1
    candidates = []
    for member_id in sorted(engaged):
        close = [
            (count, tag)
            for tag, count in engaged[member_id].items()
            if count >= trigger.min_engagements
        ]
        if not close:
            continue
        count, topic = min(close, key=lambda pair: (-pair[0], pair[1]))
        context = ContentGapContext(topic=topic, item_count=len(gaps[topic]), engagements=count)
        occurrence = zlib.crc32(topic.encode()) & 0x7FFFFFFF
        candidates.append(Candidate(member_id, occurrence, context=context))
    return candidates


TRIGGER_CONTEXTS: dict[str, type[TriggerContext]] = {
    context.kind: context
    for context in (
        MemberJoinedContext,
        QuestionnaireAnsweredContext,
        SegmentEnteredContext,
        SegmentLeftContext,
        AnniversaryContext,
        ActivityContext,
        InactivityContext,
        MilestoneContext,
        ScheduleContext,
        ContentGapContext,
    )
}
"""The context class of each trigger kind (the keys of ``models.TRIGGER_KINDS``)."""


def trigger_sample(kind: str) -> TriggerContext:
    """A realistic context of a trigger kind, as template validation and previews use it.

    Args:
        kind: A trigger kind (``activity``, ``community_milestone``...).

    Returns:
        The kind's sample context (``to_stored()`` gives what templates see as ``trigger``).

    Raises:
        KeyError: No trigger has that kind.
    """
    try:
        context = TRIGGER_CONTEXTS[kind]
    except KeyError:
        raise KeyError(
            f"no trigger kind {kind!r}; expected one of: {', '.join(TRIGGER_CONTEXTS)}"
        ) from None
    return context.sample()
