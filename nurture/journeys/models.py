"""Journey definitions: the typed shape of the YAML files marketers write.

A journey is a trigger (who enters) and a flat list of steps linked by ids; the first step is the
entry. Each step kind and each trigger kind is a model chosen by its ``type`` field, so a new kind
is one more model in the matching union. Field titles and descriptions double as the documentation
and the exported JSON Schema (``nurture.journeys.schema``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import zoneinfo
from typing import Annotated, Any, Literal

from cronsim import CronSim, CronSimError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "ACTIVITY_TYPES",
    "NEW_WITHIN_DAYS",
    "STEP_KINDS",
    "TRIGGER_KINDS",
    "WEEKDAYS",
    "ActivityTrigger",
    "AnniversaryTrigger",
    "BranchCase",
    "BranchStep",
    "ContentGapTrigger",
    "ContentSlot",
    "ExitStep",
    "Goal",
    "InactivityTrigger",
    "JourneyDefinition",
    "MemberJoinedTrigger",
    "MilestoneTrigger",
    "QuestionnaireAnsweredTrigger",
    "ScheduleTrigger",
    "SegmentEnteredTrigger",
    "SegmentLeftTrigger",
    "SendStep",
    "SplitStep",
    "SplitVariant",
    "Step",
    "StepModel",
    "Trigger",
    "TriggerModel",
    "WaitStep",
    "WaitUntil",
    "parse_duration",
    "parse_share",
]

IDENTIFIER_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
"""Journey and step ids: lower case letters, digits, ``_`` and ``-``."""

TEMPLATE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*$"
"""Template names: a path under the templates folder, without extension and without ``..``."""

LANGUAGE_PATTERN = r"^[a-z]{2}(-[A-Za-z]{2,4})?$"

_DURATION_RE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
_DURATION_UNITS = ("weeks", "days", "hours", "minutes")


def parse_duration(text: str) -> dt.timedelta:
    """Turn a duration such as ``3d``, ``12h``, ``1w`` or ``1d12h`` into a ``timedelta``.

    Args:
        text: Weeks (``w``), days (``d``), hours (``h``) and minutes (``m``), in that order.

    Returns:
        The duration, always longer than zero.

    Raises:
        ValueError: The text is not such a duration, or is zero.
    """
    match = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration like '3d', '12h', '1w' or '1d12h', found {text!r}")
    delta = dt.timedelta(
        **{
            unit: int(value)
            for unit, value in zip(_DURATION_UNITS, match.groups(), strict=True)
            if value
        }
    )
    if delta <= dt.timedelta(0):
        raise ValueError(f"expected a duration longer than zero, found {text!r}")
    return delta


_SHARE_RE = re.compile(r"^(\d{1,2}(?:\.\d{1,2})?)\s*%$")


def parse_share(text: str) -> float:
    """Turn a share such as ``10%`` or ``2.5%`` into a fraction (``0.1``, ``0.025``).

    Args:
        text: A percentage above 0 and at most 50, with a ``%`` sign.

    Returns:
        The fraction, in (0, 0.5].

    Raises:
        ValueError: The text is not such a percentage.
    """
    match = _SHARE_RE.match(text.strip()) if isinstance(text, str) else None
    value = float(match.group(1)) if match else 0.0
    if not match or not 0 < value <= 50:
        raise ValueError(f"expected a share like '10%' (above 0%, at most 50%), found {text!r}")
    return value / 100


def _check_share(text: str) -> str:
    try:
        parse_share(text)
    except ValueError as error:
        raise PydanticCustomError("share", str(error)) from None
    return text.strip()


def _check_duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as error:
        raise PydanticCustomError("duration", str(error)) from None
    return text


Identifier = Annotated[str, Field(min_length=1, max_length=100, pattern=IDENTIFIER_PATTERN)]
Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(
        title="Duration",
        description="Weeks, days, hours, minutes in that order: '3d', '12h', '1w', '1d12h'.",
        examples=["3d", "12h", "1w"],
    ),
]
SubjectText = Annotated[str, Field(min_length=1, max_length=400)]
LanguageCode = Annotated[str, Field(pattern=LANGUAGE_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- triggers -------------------------------------------------------------------------------

NEW_WITHIN_DAYS = 14
"""How recent a join or an answer must be, by default, for a trigger to act on it."""

ACTIVITY_TYPES = ("post", "comment", "event_attended", "content_view", "email_open", "email_click")
"""Activity event types a trigger or a goal can name (the activity import's types)."""

ActivityType = Literal[
    "post", "comment", "event_attended", "content_view", "email_open", "email_click"
]
SEGMENT_KEY_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
SegmentKey = Annotated[
    str,
    Field(
        max_length=100,
        pattern=SEGMENT_KEY_PATTERN,
        title="Segment key",
        description="A cluster segment (seg-3) or a rule segment of segments.yaml.",
    ),
]
DATE_FIELD_PATTERN = r"^(birthday|joined_at|attributes\.[A-Za-z0-9_]+)$"


def _check_time_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "time_zone",
            "unknown time zone '{name}'; expected an IANA name such as Europe/Paris",
            {"name": name},
        ) from None
    return name


def _check_cron(expression: str) -> str:
    try:
        CronSim(expression, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    except CronSimError as error:
        raise PydanticCustomError(
            "cron",
            "not a cron expression ({reason}); expected five fields such as '0 9 1 * *'",
            {"reason": str(error)},
        ) from None
    return expression


TimeZoneName = Annotated[
    str,
    AfterValidator(_check_time_zone),
    Field(title="Time zone", description="An IANA time zone name.", examples=["Europe/Paris"]),
]


class MemberJoinedTrigger(_Model):
    """Enrol members who joined the community."""

    type: Literal["member_joined"] = Field(title="Trigger type")
    within_days: int | None = Field(
        default=NEW_WITHIN_DAYS,
        ge=1,
        title="Joined within days",
        description=(
            "Only members who joined in the last N days (default 14), so that a first run never "
            "welcomes long-standing members; null: every member who joined and has no "
            "enrollment in this journey yet (a backfill, which `nurture run` refuses unless "
            "told)."
        ),
    )


class QuestionnaireAnsweredTrigger(_Model):
    """Enrol members who answered the questionnaire (at least one answer)."""

    type: Literal["questionnaire_answered"] = Field(title="Trigger type")
    within_days: int | None = Field(
        default=NEW_WITHIN_DAYS,
        ge=1,
        title="Answered within days",
        description="Only members who answered in the last N days (default 14); null: all.",
    )


class SegmentEnteredTrigger(_Model):
    """Enrol members when they enter a segment (once the segment's hold time has passed)."""

    type: Literal["segment_entered"] = Field(title="Trigger type")
    segment: SegmentKey
    hold: Duration | None = Field(
        default=None,
        title="Hold",
        description=(
            "Only once the member has been in the segment this long (on top of the move dwell "
            "time segmentation already applies)."
        ),
    )
    within_days: int = Field(
        default=7,
        ge=1,
        title="Entered within days",
        description="Entries older than N days are not acted on (so a new journey is not sent "
        "to everyone who entered long ago).",
    )


class SegmentLeftTrigger(_Model):
    """Enrol members when they leave a segment."""

    type: Literal["segment_left"] = Field(title="Trigger type")
    segment: SegmentKey
    within_days: int = Field(
        default=7,
        ge=1,
        title="Left within days",
        description="Departures older than N days are ignored.",
    )


class AnniversaryTrigger(_Model):
    """Enrol members on the anniversary of a date, in their own time zone (once a year)."""

    type: Literal["anniversary"] = Field(title="Trigger type")
    date: str = Field(
        pattern=DATE_FIELD_PATTERN,
        title="Date",
        description=(
            "birthday, joined_at (membership anniversary, from the first year on) or "
            "attributes.<name> (an ISO date imported with the members)."
        ),
    )
    hour: int = Field(
        default=9,
        ge=0,
        le=23,
        title="Local hour",
        description="The journey starts at this hour of the member's day (their time zone): "
        "members are enrolled up to a day ahead and wait for it, so a late run never makes the "
        "email late; 29 February falls on 28 February in other years.",
    )


class ActivityTrigger(_Model):
    """Enrol members when they do something for the Nth time (first post, tenth contribution)."""

    type: Literal["activity"] = Field(title="Trigger type")
    events: list[ActivityType] = Field(
        min_length=1,
        title="Events",
        description="Activity types counted together, e.g. [post, comment] for contributions.",
    )
    count: int = Field(
        default=1,
        ge=1,
        title="Count",
        description="Fire on the Nth event of those types: 1 for the first post, 10 for the tenth.",
    )
    where: dict[str, str | int | float | bool] | None = Field(
        default=None,
        title="Where",
        description="Only events whose properties have these values, e.g. {kind: initiative}.",
    )
    within_days: int = Field(
        default=7,
        ge=1,
        title="Within days",
        description="The Nth event must be at most N days old (old history is not thanked).",
    )


class InactivityTrigger(_Model):
    """Enrol members who have been silent for N days (once per silence)."""

    type: Literal["inactivity"] = Field(title="Trigger type")
    days: int = Field(ge=1, title="Days", description="Days without any of the events.")
    events: list[ActivityType] | None = Field(
        default=None,
        min_length=1,
        title="Events",
        description="Activity types that break the silence; absent: all but email opens.",
    )


class MilestoneTrigger(_Model):
    """Enrol every member when the community reaches a size: one celebration per threshold, ever."""

    type: Literal["community_milestone"] = Field(title="Trigger type")
    thresholds: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1,
        title="Thresholds",
        description="Member counts to celebrate, e.g. [100, 1000, 5000]. When several are "
        "crossed at once only the highest is celebrated.",
    )
    within_days: int = Field(
        default=7,
        ge=1,
        title="Crossed within days",
        description="Only a threshold crossed in the last N days is celebrated (when the Nth "
        "member joined): a first run never celebrates one crossed long ago.",
    )


class ScheduleTrigger(_Model):
    """Enrol members at times given by a cron expression (monthly digest, monthly invitation)."""

    type: Literal["schedule"] = Field(title="Trigger type")
    cron: Annotated[str, AfterValidator(_check_cron)] = Field(
        title="Cron",
        description="Minute hour day-of-month month day-of-week, e.g. '0 9 1 * *' (9:00 on the "
        "first of each month).",
        examples=["0 9 1 * *", "0 8 * * MON"],
    )
    time_zone: TimeZoneName = "UTC"
    audience: Literal["all", "joined_since_previous"] = Field(
        default="all",
        title="Audience",
        description="all members, or only those who joined since the previous run of the "
        "schedule (the members who joined that month).",
    )
    catch_up: Duration = Field(
        default="1d",
        title="Catch up",
        description="A run missed for longer than this (nurture was stopped) is skipped.",
    )


class ContentGapTrigger(_Model):
    """Enrol members close to a topic the library barely covers, to invite them to write on it."""

    type: Literal["content_gap"] = Field(title="Trigger type")
    max_items: int = Field(
        default=1,
        ge=0,
        title="Max items",
        description="A topic (a library tag) with at most this many published items is a gap.",
    )
    min_engagements: int = Field(
        default=2,
        ge=1,
        title="Min engagements",
        description="The member engaged (viewed, attended, clicked, posted) at least this many "
        "times with items of the topic...",
    )
    within_days: int = Field(
        default=90, ge=1, title="Within days", description="...in the last N days."
    )
    ignore_tags: list[str] = Field(
        default_factory=list,
        title="Ignore tags",
        description="Tags that are not topics (places, formats).",
    )


TriggerModel = (
    MemberJoinedTrigger
    | QuestionnaireAnsweredTrigger
    | SegmentEnteredTrigger
    | SegmentLeftTrigger
    | AnniversaryTrigger
    | ActivityTrigger
    | InactivityTrigger
    | MilestoneTrigger
    | ScheduleTrigger
    | ContentGapTrigger
)

Trigger = Annotated[
    TriggerModel,
    Field(discriminator="type", title="Trigger", description="Which members enter the journey."),
]

TRIGGER_KINDS: dict[str, type[TriggerModel]] = {
    model.model_fields["type"].annotation.__args__[0]: model for model in TriggerModel.__args__
}
"""Trigger model by ``type``."""


# --- steps ----------------------------------------------------------------------------------


def _check_condition(expression: str) -> str:
    from nurture.journeys.conditions import check_condition  # the sandbox loads lazily

    problems = check_condition(expression)
    if problems:
        raise PydanticCustomError("condition", "; ".join(problems))
    return expression.strip()


Condition = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2000,
        title="Condition",
        description=(
            "A sandboxed jinja2 expression over member, answers, lifecycle, activity, segment, "
            "segments, language, trigger, opened('step') and clicked('step'), e.g. "
            "\"'run_events' in answers.goals and language == 'fr'\"."
        ),
        examples=["not answers", "lifecycle == 'dormant'", "opened('send_welcome')"],
    ),
    AfterValidator(_check_condition),
]


class ContentSlot(_Model):
    """Content items picked for the member by the matcher and given to the template."""

    count: int = Field(
        default=3, ge=0, le=20, title="Count", description="How many items (0: none)."
    )
    kinds: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        title="Kinds",
        description="Only items of these kinds (article, event, webinar...); absent: any kind.",
    )
    tags: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        title="Tags",
        description="Only items with at least one of these tags; absent: any tags.",
    )
    order: Literal["recommended", "upcoming"] = Field(
        default="recommended",
        title="Order",
        description=(
            "recommended: the member's recommendations, best first; upcoming: events that "
            "have not started yet, soonest first. Either way, only items in the email's "
            "language."
        ),
    )


def _subject_variant(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "translations"
    return None


Subject = Annotated[
    Annotated[SubjectText, Tag("text")]
    | Annotated[dict[LanguageCode, SubjectText], Tag("translations")],
    Discriminator(
        _subject_variant,
        custom_error_type="subject",
        custom_error_message="expected a subject text or a mapping of language code to text",
    ),
]

StepId = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=IDENTIFIER_PATTERN, title="Step id"),
]


class SendStep(_Model):
    """Queue one email to the member, with content picked for them."""

    id: StepId = Field(description="Unique within the journey.")
    type: Literal["send"] = Field(title="Step type")
    template: str = Field(
        max_length=300,
        pattern=TEMPLATE_PATTERN,
        title="Template",
        description=(
            "Template name: templates/<name>.html.j2 (and <name>.txt.j2) in the workspace."
        ),
    )
    subject: Subject = Field(
        title="Subject",
        description=(
            "Subject line, a jinja2 template rendered at delivery ({{ member.first_name }}, "
            "{{ community_name }}); one text, or one per language ({en: ..., fr: ...}). A member "
            "gets their language, else English, else the first one given."
        ),
    )
    content: ContentSlot = Field(
        default_factory=ContentSlot,
        title="Content",
        description="Content items picked for the member, given to the template as items, "
        "after the named slots (never one they were already sent or a slot took).",
    )
    slots: dict[Identifier, ContentSlot] = Field(
        default_factory=dict,
        title="Named slots",
        description="More content, given to the template as slots.<name> and filled first, "
        "in this order; a slot with nothing suitable is an empty list. E.g. "
        "welcome_event: {kinds: [event], tags: [welcome event], order: upcoming, count: 1}.",
    )
    over_budget: Literal["wait", "skip"] | None = Field(
        default=None,
        title="Over budget",
        description="When the member's message budget is spent: wait for room or skip this "
        "email; absent: the journey's over_budget.",
    )
    at: Literal["best_hour"] | None = Field(
        default=None,
        title="At",
        description="best_hour: wait for the member's best hour of their day (learnt from when "
        "they open and click, shrunk towards their segment's and the community's when they "
        "have few) before sending; the quiet hours and the budget still apply. Absent: at once.",
    )
    next: StepId = Field(description="Id of the step that follows.")

    def links(self) -> list[tuple[tuple[str | int, ...], str]]:
        """The (field path, step id) links to the steps that may follow."""
        return [(("next",), self.next)]

    def subject_for(self, language: str | None) -> str:
        """The subject source (a jinja2 template) for a member's language.

        Args:
            language: The member's language code (``fr``, ``fr-CA``...), if known.

        Returns:
            The variant for the language, else its base language, else English, else the first.
        """
        if isinstance(self.subject, str):
            return self.subject
        candidates = []
        if language:
            candidates += [language, language.split("-")[0]]
        candidates.append("en")
        for candidate in candidates:
            if candidate in self.subject:
                return self.subject[candidate]
        return next(iter(self.subject.values()))


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class WaitUntil(_Model):
    """A moment in the member's own week: the next such weekday and hour in their time zone."""

    weekday: (
        Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] | None
    ) = Field(
        default=None, title="Weekday", description="Absent: the next day (or today) at that hour."
    )
    hour: int = Field(ge=0, le=23, title="Hour", description="Local hour, 0-23.")
    minute: int = Field(default=0, ge=0, le=59, title="Minute")


class WaitStep(_Model):
    """Pause the member: for a duration, or until a weekday and hour in their time zone."""

    id: StepId = Field(description="Unique within the journey.")
    type: Literal["wait"] = Field(title="Step type")
    duration: Duration | None = None
    until: WaitUntil | None = Field(
        default=None,
        title="Until",
        description="Wait until the next such moment in the member's time zone (DST-aware); "
        "with a duration too, until the first such moment after the duration.",
    )
    next: StepId = Field(description="Id of the step that follows.")

    @model_validator(mode="after")
    def _something_to_wait_for(self) -> WaitStep:
        if self.duration is None and self.until is None:
            raise PydanticCustomError("wait", "a wait step needs a duration, an until, or both")
        return self

    def links(self) -> list[tuple[tuple[str | int, ...], str]]:
        """The (field path, step id) links to the steps that may follow."""
        return [(("next",), self.next)]

    @property
    def delta(self) -> dt.timedelta:
        """The wait's duration as a ``timedelta`` (zero when it only waits ``until``)."""
        return parse_duration(self.duration) if self.duration else dt.timedelta(0)


class BranchCase(_Model):
    """One way out of a branch: taken when its condition holds."""

    when: Condition
    next: StepId = Field(description="Step taken when the condition holds.")


class BranchStep(_Model):
    """Go one way or another: the first case whose condition holds, else ``otherwise``."""

    id: StepId = Field(description="Unique within the journey.")
    type: Literal["branch"] = Field(title="Step type")
    cases: list[BranchCase] = Field(
        min_length=1, title="Cases", description="Checked in order; the first that holds wins."
    )
    otherwise: StepId = Field(description="Step taken when no case holds.")

    def links(self) -> list[tuple[tuple[str | int, ...], str]]:
        """The (field path, step id) links to the steps that may follow."""
        return [
            *((("cases", index, "next"), case.next) for index, case in enumerate(self.cases)),
            (("otherwise",), self.otherwise),
        ]


class SplitVariant(_Model):
    """One arm of a split: its name, its weight and the path of steps it starts."""

    name: Identifier = Field(
        title="Variant name",
        description="Recorded on the enrollment (its arm) and shown by `nurture journeys "
        "results`; 'control' is kept for the holdout.",
    )
    weight: int = Field(
        default=1,
        ge=1,
        le=1000,
        title="Weight",
        description="Relative share of the members: weights 1 and 1 split half and half, "
        "70 and 30 seventy-thirty.",
    )
    next: StepId = Field(description="First step of this variant's path.")


class SplitStep(_Model):
    """Send each member down one variant's path (an A/B/n test), at random but stable."""

    id: StepId = Field(description="Unique within the journey.")
    type: Literal["split"] = Field(title="Step type")
    variants: list[SplitVariant] = Field(
        min_length=2,
        max_length=10,
        title="Variants",
        description="Two or more paths, each taken by a share of the members set by its weight. "
        "A member's variant is drawn from a keyed hash of the member and the journey, so "
        "reruns agree; it is recorded on the enrollment.",
    )

    @model_validator(mode="after")
    def _names_distinct(self) -> SplitStep:
        names = [variant.name for variant in self.variants]
        if "control" in names:
            raise PydanticCustomError(
                "split", "the variant name 'control' is kept for the holdout; choose another"
            )
        if len(set(names)) != len(names):
            raise PydanticCustomError(
                "split", "variant names must differ, found {names}", {"names": ", ".join(names)}
            )
        return self

    def links(self) -> list[tuple[tuple[str | int, ...], str]]:
        """The (field path, step id) links to the steps that may follow."""
        return [
            (("variants", index, "next"), variant.next)
            for index, variant in enumerate(self.variants)
        ]


class ExitStep(_Model):
    """End the journey: the enrollment is completed."""

    id: StepId = Field(description="Unique within the journey.")
    type: Literal["exit"] = Field(title="Step type")

    def links(self) -> list[tuple[tuple[str | int, ...], str]]:
        """No step follows an exit."""
        return []


StepModel = SendStep | WaitStep | BranchStep | SplitStep | ExitStep

Step = Annotated[
    StepModel,
    Field(discriminator="type", title="Step", description="One step, chosen by its type."),
]

STEP_KINDS: dict[str, type[StepModel]] = {
    "send": SendStep,
    "wait": WaitStep,
    "branch": BranchStep,
    "split": SplitStep,
    "exit": ExitStep,
}
"""Step model by ``type``, used by the graph checks on raw YAML."""


# --- journey rules --------------------------------------------------------------------------


class Goal(_Model):
    """What the journey is for: once it happens the member leaves the journey (exited by goal)."""

    events: list[ActivityType] | None = Field(
        default=None,
        min_length=1,
        title="Events",
        description="The member did one of these after entering, e.g. [post].",
    )
    condition: Condition | None = Field(
        default=None, description="Or this condition holds, e.g. 'answers' (they answered)."
    )
    within: Duration | None = Field(
        default=None,
        title="Within",
        description="The window `nurture journeys results` counts a conversion in: the goal's "
        "events within this long after enrolment; absent: 30 days.",
    )

    @model_validator(mode="after")
    def _something_to_reach(self) -> Goal:
        if self.events is None and self.condition is None:
            raise PydanticCustomError("goal", "a goal needs events, a condition, or both")
        return self


class JourneyDefinition(_Model):
    """A journey: who enters (trigger) and what happens to them (steps, first is the entry)."""

    model_config = ConfigDict(
        title="Journey",
        json_schema_extra={"description": "A nurture journey definition (YAML)."},
    )

    id: Identifier = Field(
        title="Journey id",
        description="Stable key of the journey; a changed definition keeps it and gets a version.",
    )
    name: str = Field(min_length=1, max_length=200, title="Name", description="Readable name.")
    description: str = Field(
        default="", title="Description", description="What the journey is for, for marketers."
    )
    category: Literal["care", "promotion"] = Field(
        title="Category",
        description="care (welcome, thanks...) goes before promotion when a budget must choose.",
    )
    transactional: bool = Field(
        default=False,
        title="Transactional",
        description=(
            "Sent whatever the member's marketing consent (account messages only); default false."
        ),
    )
    priority: int = Field(
        default=100,
        ge=0,
        le=1000,
        title="Priority",
        description="Lower goes first among journeys of the same category.",
    )
    trigger: Trigger
    audience: Condition | None = Field(
        default=None,
        title="Audience",
        description="Only members for whom this condition holds when the trigger fires.",
    )
    goal: Goal | None = Field(
        default=None,
        title="Goal",
        description="Members who reach it leave the journey at once (exited by goal).",
    )
    reentry: Literal["once", "each_occurrence"] = Field(
        default="each_occurrence",
        title="Re-entry",
        description=(
            "once: a member goes through the journey once, ever; each_occurrence: again each "
            "time the trigger fires anew (each birthday, each schedule run, each new silence), "
            "never while still in it."
        ),
    )
    cooldown: Duration | None = Field(
        default=None,
        title="Cooldown",
        description="With each_occurrence: at least this long between the end of one pass and "
        "the next.",
    )
    over_budget: Literal["wait", "skip"] = Field(
        default="wait",
        title="Over budget",
        description="When the member's message budget is spent: wait for room, or skip the email.",
    )
    holdout: Annotated[str, AfterValidator(_check_share)] | None = Field(
        default=None,
        title="Holdout",
        description="A share of the members the journey would enrol, e.g. '10%', enrolled as "
        "the control group and sent nothing, so `nurture journeys results` can tell what the "
        "journey changes. Who is held out is drawn from a keyed hash of the member and the "
        "journey: stable across runs.",
        examples=["10%"],
    )
    steps: list[Step] = Field(
        min_length=1,
        title="Steps",
        description="Flat list of steps linked by their next ids; the first step is the entry.",
    )

    _source_path: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _one_split(self) -> JourneyDefinition:
        splits = [step.id for step in self.steps if isinstance(step, SplitStep)]
        if len(splits) > 1:
            raise PydanticCustomError(
                "split",
                "a journey holds at most one split step (its arms are compared), found {ids}",
                {"ids": ", ".join(splits)},
            )
        return self

    @property
    def holdout_share(self) -> float:
        """The share of members held out as control (0 when the journey has no holdout)."""
        return parse_share(self.holdout) if self.holdout else 0.0

    @property
    def split_step(self) -> SplitStep | None:
        """The journey's split step, if it has one."""
        return next((step for step in self.steps if isinstance(step, SplitStep)), None)

    @property
    def arms(self) -> list[str]:
        """The arms results compare: 'control' (with a holdout), then each variant or 'journey'."""
        split = self.split_step
        arms = ["control"] if self.holdout else []
        return arms + ([v.name for v in split.variants] if split else ["journey"])

    @property
    def source_path(self) -> str:
        """The file the definition was loaded from (empty when built in code)."""
        return self._source_path

    @property
    def definition_hash(self) -> str:
        """SHA-256 of the canonical JSON of the definition: equal definitions, equal hashes."""
        dumped = self.model_dump(mode="json")
        # Fields added later are left out while unset, so existing journeys keep their hash.
        if dumped.get("holdout") is None:
            dumped.pop("holdout", None)
        if isinstance(dumped.get("goal"), dict) and dumped["goal"].get("within") is None:
            dumped["goal"].pop("within", None)
        for step in dumped["steps"]:
            if step.get("type") == "send" and step.get("at") is None:
                step.pop("at", None)
        canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def entry_step(self) -> StepModel:
        """The first step, where every enrollment starts."""
        return self.steps[0]

    def step(self, step_id: str) -> StepModel:
        """The step with id ``step_id``.

        Args:
            step_id: A step id of this journey.

        Returns:
            The step.

        Raises:
            KeyError: No step has that id.
        """
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"journey {self.id!r} has no step {step_id!r}")

    def with_source(self, source_path: str) -> JourneyDefinition:
        """This definition, remembering the file it came from.

        Args:
            source_path: The file the definition was loaded from.

        Returns:
            ``self``, for chaining.
        """
        self._source_path = str(source_path)
        return self
