"""Rule segments: segments marketers declare in ``segments.yaml``, evaluated in a sandbox.

A rule is an expression of the condition language (:mod:`nurture.expressions`): it reads one
member (``member``, ``answers``, ``lifecycle``, ``activity``, ``segment``), can change nothing,
and is never Python ``eval``. For example ``answers.role == 'founder' and member.language ==
'fr'``. A rule that reads something a member lacks (an unanswered question) does not hold for
that member.
"""

from __future__ import annotations

import datetime as dt
import re
from array import array
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import String, Text, cast, delete, func, insert, or_, select, type_coerce
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.errors import SegmentRuleValidationError
from nurture.expressions import (
    EXPRESSION_NAMES,
    TimeReads,
    check_expression,
    expression_holds,
    time_reads,
)
from nurture.languages import DEFAULT_LANGUAGES
from nurture.marketer_files.localized import LANGUAGES_CONTEXT, LocalizedText
from nurture.marketer_files.located_yaml import DEFAULT_YAML_LIMITS, FieldIssues, YamlLimits
from nurture.marketer_files.model_files import ModelFile, load_model_file
from nurture.profiling.layout import EVENT_TYPES
from nurture.profiling.lifecycle import ActivitySummary
from nurture.profiling.profiles import load_activity_summaries
from nurture.segmentation.assignments import (
    AssignmentChanges,
    effective_segments,
    update_rule_assignments,
)
from nurture.storage import (
    among,
    driver_rows,
    integer_rows,
    plain_connection,
    refresh_statistics,
)
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    LifecycleStage,
    Member,
    MemberProfile,
    Segment,
    SegmentAssignment,
    SegmentationRun,
    SegmentDeparture,
    SegmentKind,
    SegmentMembership,
    table_of,
)
from nurture.storage.stored_json import JsonTexts, stored_values

__all__ = [
    "PlannedRuleSegment",
    "RuleOutcome",
    "RuleSegmentationSummary",
    "RuleSegmentsPlan",
    "SegmentRule",
    "SegmentRules",
    "StoredSegment",
    "evaluate_rule",
    "evaluate_rule_segments",
    "load_segment_rules",
    "member_rule_contexts",
    "plan_rule_segments",
    "read_segment_rules",
]

_KEY_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
_CLUSTER_KEY = re.compile(r"^seg-\d+$")


class SegmentRule(BaseModel):
    """One segment a marketer declares by rule."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        pattern=_KEY_PATTERN,
        max_length=100,
        description=(
            "Stable identifier of the segment (lower case, digits, hyphens), used by journeys; "
            "seg-<number> is kept for clusters."
        ),
    )
    label: LocalizedText = Field(description="The segment's name, as marketers read it.")
    description: LocalizedText | None = Field(
        default=None, description="What the segment is for, in a sentence."
    )
    rule: str = Field(
        min_length=1,
        description=(
            "A sandboxed jinja2 expression over member, answers, lifecycle, activity and "
            "segment, e.g. \"answers.role == 'founder' and member.language == 'fr'\"."
        ),
    )

    @field_validator("key")
    @classmethod
    def _not_a_cluster_key(cls, key: str) -> str:
        if _CLUSTER_KEY.match(key):
            raise ValueError(f"keys like {key!r} are kept for clusters; choose another key")
        return key

    @field_validator("rule")
    @classmethod
    def _rule_compiles(cls, rule: str, info: ValidationInfo) -> str:
        context = info.context if isinstance(info.context, Mapping) else {}
        problems = check_expression(rule.strip(), context.get("question_keys"), kind="rule")
        if problems:
            raise ValueError("; ".join(problems))
        return rule.strip()


class SegmentRules(BaseModel):
    """The rule segments of a workspace (``segments.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    segments: list[SegmentRule] = Field(
        default_factory=list, description="The rule segments, in the order to show them."
    )

    @model_validator(mode="after")
    def _unique_keys(self) -> SegmentRules:
        first: dict[str, int] = {}
        issues: list[tuple[tuple[str | int, ...], str]] = []
        for index, segment in enumerate(self.segments):
            if segment.key in first:
                issues.append(
                    (
                        ("segments", index, "key"),
                        f"duplicate segment key {segment.key!r}: segment "
                        f"{first[segment.key] + 1} already uses it",
                    )
                )
            first.setdefault(segment.key, index)
        if issues:
            raise FieldIssues(issues)
        return self


def read_segment_rules(
    path: Path | str,
    *,
    question_keys: Sequence[str] | None = None,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
) -> ModelFile[SegmentRules]:
    """Read and check the rule segments file, collecting its problems rather than raising.

    Args:
        path: The YAML file (``segments.yaml`` in a workspace); absent, it declares nothing.
        question_keys: The questionnaire's question keys, so that a rule reading an unknown
            ``answers.<key>`` is refused; ``None`` skips that check.
        languages: The workspace's languages: every label is given in each of them.
        limits: The bounds on size, nesting and aliases.

    Returns:
        The rule segments (``None`` on any problem) and every problem, each with its line and
        field.
    """
    context = {
        "question_keys": list(question_keys) if question_keys is not None else None,
        LANGUAGES_CONTEXT: tuple(languages),
    }
    return load_model_file(
        path,
        SegmentRules,
        expected="a mapping with 'segments'",
        what="the rule segments",
        optional=True,
        context=context,
        limits=limits,
    )


def load_segment_rules(
    path: Path | str,
    *,
    question_keys: Sequence[str] | None = None,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
) -> list[SegmentRule]:
    """Read and check the rule segments file; an absent file declares no rule segment.

    Args:
        path: The YAML file (``segments.yaml`` in a workspace).
        question_keys: The questionnaire's question keys, so that a rule reading an unknown
            ``answers.<key>`` is refused; ``None`` skips that check.
        languages: The workspace's languages: every label is given in each of them.

    Returns:
        The rule segments, in file order.

    Raises:
        SegmentRuleValidationError: The file is not valid YAML, does not describe rule segments,
            or a rule does not compile or reads unknown names; ``problems`` lists every problem
            with its line and field.
    """
    loaded = read_segment_rules(path, question_keys=question_keys, languages=languages)
    if loaded.value is None:
        raise SegmentRuleValidationError(loaded.problems)
    return loaded.value.segments


# --- evaluation ----------------------------------------------------------------------------


@dataclass
class RuleOutcome:
    """Who a rule holds for, and what went wrong evaluating it.

    Attributes:
        members: Ids of the members the rule holds for (an array of 64-bit integers: eight
            bytes a member in a large community, not a Python integer each).
        errors: Members for whom evaluating the rule failed (other than reading something the
            member lacks, which simply does not hold).
        first_error: The first such error, to show.
    """

    members: array[int] = field(default_factory=lambda: array("q"))
    errors: int = 0
    first_error: str | None = None


def evaluate_rule(rule: SegmentRule, contexts: Mapping[int, Mapping[str, Any]]) -> RuleOutcome:
    """Evaluate one rule for each member's context.

    Args:
        rule: The rule segment.
        contexts: ``{member id: {name: value}}`` with the names of
            :data:`nurture.expressions.EXPRESSION_NAMES`.

    Returns:
        The members the rule holds for, in the order of ``contexts``, and the errors.
    """
    outcome = RuleOutcome()
    for member_id, context in contexts.items():
        try:
            holds = expression_holds(rule.rule, context)
        except Exception as exc:  # a marketer's rule may fail in any way
            holds = False
            outcome.errors += 1
            if outcome.first_error is None:
                outcome.first_error = f"member {member_id}: {type(exc).__name__}: {exc}"
        if holds:
            outcome.members.append(member_id)
    return outcome


def _activity(summary: ActivitySummary, now: dt.datetime) -> dict[str, Any]:
    activity: dict[str, Any] = {
        event_type: {
            "d7": summary.count(event_type, 7),
            "d30": summary.count(event_type, 30),
            "d90": summary.count(event_type, 90),
            "total": summary.totals.get(event_type, 0),
        }
        for event_type in EVENT_TYPES
    }
    last = summary.last_activity_at
    activity["days_since_last"] = (
        None if last is None else round((now - last).total_seconds() / 86400.0, 2)
    )
    return activity


_MEMBER_COLUMNS = (
    Member.id,
    Member.email,
    Member.first_name,
    Member.last_name,
    Member.language,
    Member.time_zone,
    Member.birthday,
    Member.consent_status,
    Member.joined_at,
    Member.attributes,
)
"""What rules read of a member's row (``member``)."""


class _MemberId(NamedTuple):
    """A member's row when rules read nothing of it but that it exists."""

    id: int


def _lifecycle_stages(session: Session, member_ids: Sequence[int]) -> dict[int, LifecycleStage]:
    """The lifecycle stage of each of ``member_ids`` profiled, by member id.

    The stages are read as stored text, as the driver gives them, and each distinct text is
    made a stage once, as the column's type reads it (a result row and a conversion per
    member cost more than the read).
    """
    dialect = session.get_bind().dialect
    column = table_of(MemberProfile).c.lifecycle_stage
    made = stored_values(column, dialect)
    rows = driver_rows(
        session,
        select(MemberProfile.member_id, type_coerce(column, String)).where(
            among(session, MemberProfile.member_id, member_ids)
        ),
    )
    stages: dict[int, LifecycleStage] = {member_id: made[text] for member_id, text in rows}
    return stages


def member_rule_contexts(
    session: Session,
    member_ids: Sequence[int],
    now: dt.datetime,
    *,
    names: Collection[str] | None = None,
) -> dict[int, dict[str, Any]]:
    """What rules read of each member (see the module docstring), in a few bulk queries.

    Args:
        session: Database session.
        member_ids: The members (keep it to a chunk: they go in one array parameter).
        now: Time of the evaluation (activity windows end here).
        names: Only these names are read (``expression_reads`` of the rules to evaluate);
            None: all of :data:`~nurture.expressions.EXPRESSION_NAMES`.

    Returns:
        ``{member id: {name: value}}`` for each existing member, in id order (the names read
        only).
    """
    wanted = set(EXPRESSION_NAMES if names is None else names)
    ids = sorted(set(member_ids))
    connection = plain_connection(session)
    members: Sequence[Any]
    if "member" in wanted:
        members = connection.execute(
            select(*_MEMBER_COLUMNS).where(among(session, Member.id, ids)).order_by(Member.id)
        ).all()
    else:  # the ids alone, as the driver gives them (a row object each costs more)
        members = [
            _MemberId(member_id)
            for (member_id,) in driver_rows(
                session, select(Member.id).where(among(session, Member.id, ids)).order_by(Member.id)
            )
        ]
    answers: dict[int, dict[str, Any]] = {}
    if "answers" in wanted:
        decoded = JsonTexts()
        for member_id, key, text in connection.execute(
            select(Answer.member_id, Answer.question_key, cast(Answer.value, Text)).where(
                among(session, Answer.member_id, ids)
            )
        ):
            answers.setdefault(member_id, {})[key] = decoded(text)
    stages: dict[int, Any] = {}
    if "lifecycle" in wanted:
        stages = _lifecycle_stages(session, ids)
    activity = load_activity_summaries(session, ids, now) if "activity" in wanted else {}
    segment_of: dict[int, str] = {}
    if "segment" in wanted:
        cluster_of = effective_segments(session, ids)
        keys = dict(
            session.execute(
                select(Segment.id, Segment.key).where(Segment.id.in_(set(cluster_of.values())))
            )
            .tuples()
            .all()
        )
        segment_of = {
            member_id: keys[segment_id]
            for member_id, segment_id in cluster_of.items()
            if segment_id in keys
        }
    contexts: dict[int, dict[str, Any]] = {}
    for row in members:
        context: dict[str, Any] = {}
        if "member" in wanted:
            context["member"] = {
                "id": row.id,
                "email": row.email,
                "first_name": row.first_name,
                "last_name": row.last_name,
                "language": row.language,
                "time_zone": row.time_zone,
                "birthday": row.birthday.isoformat() if row.birthday else None,
                "consent_status": row.consent_status,
                "days_since_joined": int((now - row.joined_at).total_seconds() // 86400),
                "attributes": dict(row.attributes or {}),
            }
        if "answers" in wanted:
            context["answers"] = answers.get(row.id, {})
        if "lifecycle" in wanted:
            context["lifecycle"] = stages.get(row.id)
        if "activity" in wanted:
            context["activity"] = _activity(activity.get(row.id, ActivitySummary()), now)
        if "segment" in wanted:
            context["segment"] = segment_of.get(row.id)
        contexts[row.id] = context
    return contexts


@dataclass(frozen=True)
class RuleSegmentationSummary:
    """What an evaluation of the rule segments did.

    Attributes:
        run_id: The segmentation run the memberships belong to.
        sizes: ``{segment key: members}``.
        labels: ``{segment key: English label}``.
        new: Keys of rule segments created.
        removed: Keys of rule segments no longer in the file (now inactive).
        entered: Members who entered a rule segment.
        left: Members who left one.
        errors: ``{segment key: what failed}`` for rules that failed for some members.
    """

    run_id: int | None
    sizes: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    entered: int = 0
    left: int = 0
    errors: dict[str, str] = field(default_factory=dict)


_CHUNK = 1000


@dataclass(frozen=True)
class StoredSegment:
    """A segment already stored, as plain data: what rule evaluation needs of it."""

    id: int
    key: str
    kind: SegmentKind


@dataclass(frozen=True)
class PlannedRuleSegment:
    """A rule segment as an evaluation leaves it.

    Attributes:
        key: The rule's key.
        stored_id: The id of the stored segment with this key; ``None`` for a new one.
        label: Its label (the rule's English label).
        description: Its description.
        members: The members the rule holds for (as :class:`RuleOutcome`'s).
        card: Its card; the run id is added when written.
    """

    key: str
    stored_id: int | None
    label: str
    description: str
    members: Sequence[int]
    card: dict[str, Any]


@dataclass(frozen=True)
class RuleSegmentsPlan:
    """What an evaluation of the rule segments decided, before anything is written.

    Attributes:
        segments: One per rule, in the rules' order.
        removed: The active rule segments no rule defines any more, to deactivate.
        errors: ``{segment key: what failed}`` for rules that failed for some members.
    """

    segments: list[PlannedRuleSegment]
    removed: list[StoredSegment] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def plan_rule_segments(
    definitions: Sequence[SegmentRule],
    outcomes: Mapping[str, RuleOutcome],
    *,
    stored: Sequence[StoredSegment],
    n_members: int,
) -> RuleSegmentsPlan:
    """Decide the rule segments on plain data: their labels, members, cards, and which go.

    Args:
        definitions: The rule segments (:func:`load_segment_rules`).
        outcomes: ``{rule key: who it holds for}`` over every member (:func:`evaluate_rule`).
        stored: The stored segments with a rule's key, and the active rule segments.
        n_members: Members in the community (for each segment's share).

    Returns:
        The plan.

    Raises:
        ValueError: A rule's key is already the key of a cluster segment.
    """
    keys = {rule.key for rule in definitions}
    by_key = {segment.key: segment for segment in stored if segment.key in keys}
    clash = sorted(key for key, segment in by_key.items() if segment.kind != SegmentKind.RULE)
    if clash:
        raise ValueError(f"rule segment keys already used by cluster segments: {clash}")
    segments = []
    for rule in definitions:
        members = outcomes[rule.key].members
        stored_segment = by_key.get(rule.key)
        segments.append(
            PlannedRuleSegment(
                key=rule.key,
                stored_id=stored_segment.id if stored_segment is not None else None,
                label=rule.label.get("en")[:300],
                description=(
                    rule.description.get("en")
                    if rule.description
                    else f"Members for whom {rule.rule} holds."
                ),
                members=members,
                card={
                    "size": len(members),
                    "share": round(len(members) / n_members, 3) if n_members else 0.0,
                    "rule": rule.rule,
                    "labels": rule.label.model_dump(),
                    "descriptions": rule.description.model_dump() if rule.description else None,
                    "errors": outcomes[rule.key].errors,
                },
            )
        )
    return RuleSegmentsPlan(
        segments=segments,
        removed=[
            segment
            for segment in stored
            if segment.kind == SegmentKind.RULE and segment.key not in keys
        ],
        errors={
            key: f"{outcome.errors} member(s), first: {outcome.first_error}"
            for key, outcome in outcomes.items()
            if outcome.errors
        },
    )


def _load_stored_segments(session: Session, keys: Collection[str]) -> list[StoredSegment]:
    """The segments with these keys, then the other active rule segments, in id order."""
    rows = session.execute(
        select(Segment.id, Segment.key, Segment.kind)
        .where(
            or_(
                Segment.key.in_(list(keys)),
                (Segment.kind == SegmentKind.RULE) & Segment.active.is_(True),
            )
        )
        .order_by(Segment.id)
    )
    return [StoredSegment(row.id, row.key, row.kind) for row in rows]


def _evaluate_for_every_member(
    session: Session, definitions: Sequence[SegmentRule], now: dt.datetime
) -> dict[str, RuleOutcome]:
    """Who each rule holds for, reading the members a chunk at a time."""
    outcomes = {rule.key: RuleOutcome() for rule in definitions}
    if not definitions:
        return outcomes
    last = None
    while True:
        query = select(Member.id).order_by(Member.id).limit(_CHUNK)
        chunk = list(session.scalars(query if last is None else query.where(Member.id > last)))
        if not chunk:
            break
        last = chunk[-1]
        contexts = member_rule_contexts(session, chunk, now)
        for rule in definitions:
            outcome = evaluate_rule(rule, contexts)
            total = outcomes[rule.key]
            total.members.extend(outcome.members)
            total.errors += outcome.errors
            total.first_error = total.first_error or outcome.first_error
    return outcomes


# --- evaluating again only the members whose outcome may have changed ----------------------


@dataclass(frozen=True)
class _Stamp:
    """The state of the data an evaluation of a rule read: stored in its segment's card.

    Attributes:
        now: The evaluation's time.
        wall: The wall clock before it read anything (edited members and answers are newer).
        member_id: The largest member id then.
        answer_id: The largest answer id then.
        activity_id: The largest activity event id then.
    """

    now: dt.datetime
    wall: dt.datetime
    member_id: int
    answer_id: int
    activity_id: int

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "wall": self.wall.isoformat(),
            "member_id": self.member_id,
            "answer_id": self.answer_id,
            "activity_id": self.activity_id,
        }

    @classmethod
    def from_json(cls, values: Any) -> _Stamp | None:
        """The stamp stored by :meth:`to_json`; None when absent or unreadable."""
        try:
            return cls(
                now=dt.datetime.fromisoformat(values["now"]),
                wall=dt.datetime.fromisoformat(values["wall"]),
                member_id=int(values["member_id"]),
                answer_id=int(values["answer_id"]),
                activity_id=int(values["activity_id"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


_RESTATISTICS_SHARE = 0.1
"""Share of the members entering or leaving rule segments above which, after an evaluation of
the changed members only, the segment tables' statistics are counted again (as PostgreSQL's
autovacuum would: its default analyze scale factor)."""


def _take_stamp(session: Session, now: dt.datetime) -> _Stamp:
    wall = dt.datetime.now(dt.UTC)
    return _Stamp(
        now=now,
        wall=wall,
        member_id=int(session.scalar(select(func.max(Member.id))) or 0),
        answer_id=int(session.scalar(select(func.max(Answer.id))) or 0),
        activity_id=int(session.scalar(select(func.max(ActivityEvent.id))) or 0),
    )


def _changed_members(session: Session, stamp: _Stamp) -> set[int]:
    """Members whose data a rule reads changed since ``stamp`` (a superset: never fewer).

    New members, edited member records, new or edited answers, new activity, profiles (their
    lifecycle stage) built since, and effective cluster segments entered or left since.
    """
    # One condition per query, without DISTINCT, each answered by an index where one serves:
    # SQLite would otherwise read a whole member_id index to list each member once.
    queries = [
        select(Member.id).where(or_(Member.id > stamp.member_id, Member.updated_at > stamp.wall)),
        select(Answer.member_id).where(Answer.id > stamp.answer_id),
        select(Answer.member_id).where(Answer.answered_at > stamp.wall),
        select(ActivityEvent.member_id).where(ActivityEvent.id > stamp.activity_id),
        select(MemberProfile.member_id).where(MemberProfile.computed_at > stamp.now),
        select(SegmentAssignment.member_id)
        .join(Segment, Segment.id == SegmentAssignment.segment_id)
        .where(
            Segment.kind == SegmentKind.CLUSTER,
            or_(SegmentAssignment.updated_at > stamp.now, SegmentAssignment.since > stamp.now),
        ),
        select(SegmentDeparture.member_id)
        .join(Segment, Segment.id == SegmentDeparture.segment_id)
        .where(Segment.kind == SegmentKind.CLUSTER, SegmentDeparture.left_at > stamp.now),
    ]
    changed: set[int] = set()
    for query in queries:
        changed.update(session.scalars(query))
    return changed


def _touched_by_time(
    session: Session, reads: TimeReads, since: dt.datetime, now: dt.datetime
) -> set[int]:
    """Members whose windows or totals read by a rule moved between ``since`` and ``now``.

    A window of ``d`` days changes when an event of its type leaves it (dated in
    ``(since - d, now - d]``) or comes within ``now`` (dated in ``(since, now]``); a total when
    an event comes within ``now``.
    """
    spans: list[tuple[frozenset[str], dt.datetime, dt.datetime]] = []
    by_days: dict[int, set[str]] = {}
    for event_type, days in reads.windows:
        by_days.setdefault(days, set()).add(event_type)
    for days, window_types in sorted(by_days.items()):
        span = dt.timedelta(days=days)
        spans.append((frozenset(window_types), since - span, now - span))
    entering = {event_type for event_type, _ in reads.windows} | set(reads.totals)
    if entering:
        spans.append((frozenset(entering), since, now))
    touched: set[int] = set()
    for types, start, end in spans:
        touched.update(
            session.scalars(
                select(ActivityEvent.member_id)
                .where(
                    ActivityEvent.type.in_(sorted(types)),
                    ActivityEvent.occurred_at > start,
                    ActivityEvent.occurred_at <= end,
                )
                .distinct()
            )
        )
    return touched


def _evaluate_changed(
    session: Session,
    definitions: Sequence[SegmentRule],
    stored: Sequence[StoredSegment],
    now: dt.datetime,
    run_id: int | None,
) -> tuple[dict[str, RuleOutcome], list[SegmentRule]]:
    """Who each rule holds for, evaluating again only whom its inputs changed for.

    A rule is evaluated again only for some members when its segment was last evaluated into
    the same run (``run_id``), with the same rule text, without errors, at an earlier time, and
    the rule reads no clock (:func:`nurture.expressions.time_reads`): then its previous members
    stay, except those whose data changed since (:func:`_changed_members`) or whose activity
    windows moved (:func:`_touched_by_time`), who are evaluated again.

    Returns:
        The outcomes of those rules (all their members), and the rules to evaluate for everyone.
    """
    by_key = {segment.key: segment for segment in stored}
    outcomes: dict[str, RuleOutcome] = {}
    everyone: list[SegmentRule] = []
    redo: dict[str, tuple[SegmentRule, set[int]]] = {}
    changed_since: dict[_Stamp, set[int]] = {}
    for rule in definitions:
        segment = by_key.get(rule.key)
        card: dict[str, Any] = {}
        if segment is not None and segment.kind == SegmentKind.RULE:
            card = session.scalar(select(Segment.card).where(Segment.id == segment.id)) or {}
        stamp = _Stamp.from_json(card.get("evaluated"))
        reads = time_reads(rule.rule)
        if (
            segment is None
            or stamp is None
            or run_id is None
            or card.get("run_id") != run_id
            or card.get("rule") != rule.rule
            or card.get("errors")
            or not stamp.now < now
            or reads.clock
        ):
            everyone.append(rule)
            continue
        if stamp not in changed_since:
            changed_since[stamp] = _changed_members(session, stamp)
        members = changed_since[stamp] | _touched_by_time(session, reads, stamp.now, now)
        redo[rule.key] = (rule, members)
        kept = _stored_memberships(session, run_id, [segment.id]).get(segment.id)
        if kept is None:
            kept = np.zeros(0, dtype=np.int64)
        again = np.fromiter(members, dtype=np.int64, count=len(members))
        outcomes[rule.key] = RuleOutcome(members=array("q", kept[~np.isin(kept, again)].tobytes()))
    members_to_read = sorted(set().union(*(members for _, members in redo.values())))
    for chunk in chunked(members_to_read, _CHUNK):
        contexts = member_rule_contexts(session, chunk, now)
        for rule, members in redo.values():
            outcome = evaluate_rule(
                rule, {m: context for m, context in contexts.items() if m in members}
            )
            total = outcomes[rule.key]
            total.members.extend(outcome.members)
            total.errors += outcome.errors
            total.first_error = total.first_error or outcome.first_error
    for outcome in outcomes.values():
        outcome.members = array("q", np.sort(np.asarray(outcome.members, dtype=np.int64)).tobytes())
    return outcomes, everyone


def _stored_memberships(
    session: Session, run_id: int | None, segment_ids: Sequence[int]
) -> dict[int, np.ndarray]:
    """``{segment id: member ids}`` of the run's memberships of these segments, in one read."""
    if run_id is None or not segment_ids:
        return {}
    pairs = integer_rows(
        session,
        select(SegmentMembership.segment_id, SegmentMembership.member_id).where(
            SegmentMembership.run_id == run_id,
            SegmentMembership.segment_id.in_(list(segment_ids)),
        ),
        2,
    )
    return {
        int(segment_id): pairs[pairs[:, 0] == segment_id, 1]
        for segment_id in np.unique(pairs[:, 0])
    }


def _write_rule_segments(
    session: Session,
    plan: RuleSegmentsPlan,
    now: dt.datetime,
    run_id: int | None,
    stamp: _Stamp | None = None,
) -> tuple[int | None, AssignmentChanges]:
    """Store a plan: segments, this run's memberships, effective assignments.

    Without a run to attach to, the rules get a run of their own.
    """
    if run_id is None and plan.segments:
        run = SegmentationRun(
            algorithm="rules",
            n_segments=0,
            params={"rules": len(plan.segments)},
            created_at=now,
        )
        session.add(run)
        session.flush()
        run_id = run.id
    segments: list[Segment] = []
    for planned in plan.segments:
        if planned.stored_id is None:
            segment = Segment(
                key=planned.key,
                kind=SegmentKind.RULE,
                label="",
                first_run_id=run_id,
                created_at=now,
            )
            session.add(segment)
        else:
            segment = session.get_one(Segment, planned.stored_id)
        segment.label = planned.label
        segment.label_edited = False
        segment.description = planned.description
        segment.active = True
        segment.last_run_id = run_id
        segments.append(segment)
    session.flush()
    left = 0
    for removed in plan.removed:
        segment = session.get_one(Segment, removed.id)
        segment.active = False
        segment.size = 0
        left += update_rule_assignments(session, segment.id, (), now).left
    stored = _stored_memberships(session, run_id, [segment.id for segment in segments])
    entered = 0
    for segment, planned in zip(segments, plan.segments, strict=True):
        # Only the memberships that changed are written: a member still in keeps their row.
        kept = stored.get(segment.id, np.zeros(0, dtype=np.int64))
        wanted = np.unique(np.asarray(planned.members, dtype=np.int64))
        gone = kept[~np.isin(kept, wanted)].tolist()
        for batch in chunked(gone, _CHUNK):
            session.execute(
                delete(SegmentMembership).where(
                    SegmentMembership.run_id == run_id,
                    SegmentMembership.segment_id == segment.id,
                    SegmentMembership.member_id.in_(batch),
                )
            )
        for batch in chunked(wanted[~np.isin(wanted, kept)].tolist(), _CHUNK):
            session.execute(
                insert(SegmentMembership),
                [
                    {
                        "run_id": run_id,
                        "member_id": member_id,
                        "segment_id": segment.id,
                        "created_at": now,
                    }
                    for member_id in batch
                ],
            )
        changes = update_rule_assignments(session, segment.id, planned.members, now)
        entered += changes.entered
        left += changes.left
        segment.size = len(planned.members)
        segment.card = {**planned.card, "run_id": run_id}
        if stamp is not None:
            segment.card["evaluated"] = stamp.to_json()
    session.flush()
    return run_id, AssignmentChanges(entered=entered, left=left)


def evaluate_rule_segments(
    session: Session,
    definitions: Sequence[SegmentRule],
    now: dt.datetime,
    *,
    run_id: int | None = None,
    only_changed: bool = False,
) -> RuleSegmentationSummary:
    """Evaluate every rule segment for every member; store segments, memberships, assignments.

    Each rule becomes (or updates) a ``Segment`` of kind ``rule`` with the same key; its members
    are stored as ``SegmentMembership`` rows of the run, beside the clusters, and as effective
    assignments (a member enters or leaves at once). Rule segments no longer defined become
    inactive and lose their members. Evaluating again for the same run replaces its rule
    memberships, writing only the rows that changed (a member still in keeps their row, and
    the time they entered). Reads and evaluates, decides (:func:`plan_rule_segments`), then
    writes. The caller commits.

    Args:
        session: Database session.
        definitions: The rule segments (:func:`load_segment_rules`).
        now: Time of the evaluation (timezone-aware).
        run_id: The segmentation run to attach the memberships to; default: the latest run, or a
            new run of its own when there is none.
        only_changed: Evaluate a rule again only for the members whose outcome may have
            changed since its last evaluation into the same run (their data changed, or one of
            the activity windows it reads moved), keeping its other members; a rule that reads
            the clock (``member.days_since_joined``, ``activity.days_since_last``), a new or
            edited rule, or one that failed for some member is still evaluated for everyone.
            The result is the same as evaluating everyone.

    Returns:
        What was done.

    Raises:
        ValueError: A rule's key is already the key of a cluster segment.
    """
    if run_id is None:
        run_id = session.scalar(select(SegmentationRun.id).order_by(SegmentationRun.id.desc()))
    stored = _load_stored_segments(session, [rule.key for rule in definitions])
    stamp = _take_stamp(session, now)
    if only_changed:
        outcomes, everyone = _evaluate_changed(session, definitions, stored, now, run_id)
    else:
        outcomes, everyone = {}, list(definitions)
    outcomes.update(_evaluate_for_every_member(session, everyone, now))
    n_members = session.scalar(select(func.count()).select_from(Member)) or 0
    plan = plan_rule_segments(definitions, outcomes, stored=stored, n_members=n_members)
    run_id, changes = _write_rule_segments(session, plan, now, run_id, stamp)
    # The tables' statistics are counted again after a whole evaluation, or one that changed
    # many rows; a few members entering or leaving (an incremental nightly) leave them true
    # enough, and counting again would read a sample of the whole tables for nothing.
    if not only_changed or changes.entered + changes.left > n_members * _RESTATISTICS_SHARE:
        refresh_statistics(session, (SegmentMembership, SegmentAssignment))
    return RuleSegmentationSummary(
        run_id=run_id,
        sizes={segment.key: len(segment.members) for segment in plan.segments},
        labels={segment.key: segment.label for segment in plan.segments},
        new=[segment.key for segment in plan.segments if segment.stored_id is None],
        removed=sorted(segment.key for segment in plan.removed),
        entered=changes.entered,
        left=changes.left,
        errors=plan.errors,
    )
