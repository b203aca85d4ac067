"""Rule segments: segments marketers declare in ``segments.yaml``, evaluated in a sandbox.

A rule is a jinja2 expression, compiled by an immutable sandboxed environment: it reads a member
and can change nothing, call nothing unsafe, and is never Python ``eval``. It sees, read-only:

``member``
    ``id``, ``email``, ``first_name``, ``last_name``, ``language``, ``time_zone``,
    ``birthday`` (ISO date or none), ``consent_status``, ``days_since_joined`` and
    ``attributes`` (the extra columns of the members import, such as ``country``).
``answers``
    the member's answers by question key: an option key (single choice), a list of option keys
    (multiple choice), a number (scale), a text (free text, date).
``lifecycle``
    the member's lifecycle stage (``new``, ``onboarding``, ``active``, ``contributor``,
    ``ambassador``, ``at_risk``, ``dormant``), or none before profiling.
``activity``
    for each event type (``post``, ``comment``, ``event_attended``, ``content_view``,
    ``email_open``, ``email_click``): ``d7``, ``d30``, ``d90`` (counts over the last 7, 30 and 90
    days) and ``total``; and ``days_since_last`` (none when never active).
``segment``
    the key of the member's effective cluster segment (``seg-3``), or none.

For example ``answers.role == 'founder' and member.language == 'fr'`` or
``'run_events' in answers.goals and activity.event_attended.d90 >= 2``. A rule that reads
something a member lacks (an unanswered question) does not hold for that member.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.errors import SegmentRuleValidationError
from nurture.languages import DEFAULT_LANGUAGES
from nurture.profiling.layout import EVENT_TYPES
from nurture.profiling.lifecycle import ActivitySummary
from nurture.profiling.profiles import load_activity_summaries
from nurture.segmentation.assignments import effective_segments, update_rule_assignments
from nurture.segmentation.kinds import RULE_KIND
from nurture.storage.models import (
    Answer,
    Member,
    MemberProfile,
    Segment,
    SegmentationRun,
    SegmentMembership,
)
from nurture.workspace.config import LANGUAGES_CONTEXT
from nurture.workspace.located_yaml import DEFAULT_YAML_LIMITS, FieldIssues, YamlLimits
from nurture.workspace.model_files import ModelFile, load_model_file
from nurture.workspace.questionnaire import LocalizedText

__all__ = [
    "ACTIVITY_FIELDS",
    "MEMBER_FIELDS",
    "RULE_NAMES",
    "RuleOutcome",
    "RuleSegmentationSummary",
    "SegmentRule",
    "SegmentRules",
    "check_rule",
    "compile_rule",
    "evaluate_rule",
    "evaluate_rule_segments",
    "load_segment_rules",
    "member_rule_contexts",
    "read_segment_rules",
]

RULE_NAMES = ("member", "answers", "lifecycle", "activity", "segment")
"""The names a rule can read."""

MEMBER_FIELDS = (
    "id",
    "email",
    "first_name",
    "last_name",
    "language",
    "time_zone",
    "birthday",
    "consent_status",
    "days_since_joined",
    "attributes",
)
"""What a rule can read of ``member``."""

ACTIVITY_FIELDS = ("d7", "d30", "d90", "total")
"""What a rule can read of each event type under ``activity``."""

_KEY_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
_CLUSTER_KEY = re.compile(r"^seg-\d+$")


class _RuleEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox rules run in.

    It also refuses ``**`` and repeating a text or a list with ``*``, so that no rule can make a
    huge number or string.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("'**' is not allowed in a segment rule")
        if isinstance(left, str | list | tuple) or isinstance(right, str | list | tuple):
            raise SecurityError("repeating a text or a list with '*' is not allowed")
        return super().call_binop(context, operator, left, right)


_ENVIRONMENT = _RuleEnvironment()


def _parse(rule: str) -> nodes.Expr:
    """The rule's expression tree; raises ``TemplateSyntaxError`` as ``compile_expression``."""
    parser = Parser(_ENVIRONMENT, rule, state="variable")
    expression = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError(
            "unexpected text after the expression", parser.stream.current.lineno, None, None
        )
    return expression


@functools.lru_cache(maxsize=256)
def compile_rule(rule: str) -> Callable[..., Any]:
    """The compiled rule: call it with the context names as keyword arguments.

    Args:
        rule: A rule expression.

    Returns:
        A function of ``member``, ``answers``, ``lifecycle``, ``activity``, ``segment``.

    Raises:
        jinja2.TemplateSyntaxError: The rule does not compile.
    """
    return _ENVIRONMENT.compile_expression(rule, undefined_to_none=False)


def _nodes(expression: nodes.Expr, kinds: tuple[type[nodes.Node], ...]) -> list[Any]:
    """The nodes of those kinds in the expression, the expression itself included."""
    found = list(expression.find_all(kinds))
    return [expression, *found] if isinstance(expression, kinds) else found


def _attribute_reads(expression: nodes.Expr, name: str) -> list[str]:
    """Constant attributes read directly on ``name`` (``answers.role``, ``answers['role']``)."""
    reads: list[str] = []
    for node in _nodes(expression, (nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == name):
            continue
        if isinstance(node, nodes.Getattr):
            reads.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            reads.append(node.arg.value)
    return reads


def _activity_reads(expression: nodes.Expr) -> list[tuple[str, str | None]]:
    """``(event type, field)`` pairs read under ``activity`` (field ``None`` when not read)."""
    reads: list[tuple[str, str | None]] = []
    for node in _nodes(expression, (nodes.Getattr,)):
        inner = node.node
        if (
            isinstance(inner, nodes.Getattr)
            and isinstance(inner.node, nodes.Name)
            and inner.node.name == "activity"
        ):
            reads.append((inner.attr, node.attr))
    return reads


def _unknown(name: str, what: str, known: Sequence[str]) -> str:
    message = f"unknown {what} {name!r}"
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + f" (expected one of: {', '.join(known)})"


def check_rule(
    rule: str,
    question_keys: Sequence[str] | None = None,
    *,
    names: Sequence[str] = RULE_NAMES,
) -> list[str]:
    """What is wrong with a rule: it does not compile, or it reads a name that does not exist.

    Args:
        rule: A rule expression.
        question_keys: The questionnaire's question keys, to check ``answers.<key>``; ``None``
            skips that check.
        names: The names the expression may read (journey conditions read a few more).

    Returns:
        One message per problem; empty when the rule is fine.
    """
    try:
        expression = _parse(rule)
        compile_rule(rule)
    except TemplateSyntaxError as exc:
        where = f" (line {exc.lineno} of the rule)" if rule.count("\n") else ""
        reason = str(exc.message).replace("end of template", "end of the rule")
        return [f"the rule does not compile{where}: {reason}"]
    problems: list[str] = []
    read = sorted({node.name for node in _nodes(expression, (nodes.Name,)) if node.ctx == "load"})
    problems.extend(_unknown(name, "name", names) for name in read if name not in names)
    problems.extend(
        _unknown(attr, "member field", MEMBER_FIELDS)
        for attr in _attribute_reads(expression, "member")
        if attr not in MEMBER_FIELDS
    )
    activity_names = (*EVENT_TYPES, "days_since_last")
    for attr in _attribute_reads(expression, "activity"):
        if attr not in activity_names:
            problems.append(_unknown(attr, "activity", activity_names))
    for event_type, attr in _activity_reads(expression):
        if event_type in EVENT_TYPES and attr not in ACTIVITY_FIELDS:
            problems.append(_unknown(str(attr), f"activity.{event_type} field", ACTIVITY_FIELDS))
    if question_keys is not None:
        problems.extend(
            _unknown(attr, "question", question_keys)
            for attr in _attribute_reads(expression, "answers")
            if attr not in question_keys
        )
    return problems


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
        problems = check_rule(rule.strip(), context.get("question_keys"))
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
        members: Ids of the members the rule holds for.
        errors: Members for whom evaluating the rule failed (other than reading something the
            member lacks, which simply does not hold).
        first_error: The first such error, to show.
    """

    members: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None


def evaluate_rule(rule: SegmentRule, contexts: Mapping[int, Mapping[str, Any]]) -> RuleOutcome:
    """Evaluate one rule for each member's context.

    Args:
        rule: The rule segment.
        contexts: ``{member id: {name: value}}`` with the names of :data:`RULE_NAMES`.

    Returns:
        The members the rule holds for, in the order of ``contexts``, and the errors.
    """
    expression = compile_rule(rule.rule)
    outcome = RuleOutcome()
    for member_id, context in contexts.items():
        try:
            holds = bool(expression(**context))
        except UndefinedError:
            holds = False
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


def member_rule_contexts(
    session: Session, member_ids: Sequence[int], now: dt.datetime
) -> dict[int, dict[str, Any]]:
    """What rules read of each member (see the module docstring), in a few bulk queries.

    Args:
        session: Database session.
        member_ids: The members (keep it to a chunk: they go in ``IN`` lists).
        now: Time of the evaluation (activity windows end here).

    Returns:
        ``{member id: {name: value}}`` for each existing member, in id order.
    """
    ids = sorted(set(member_ids))
    members = session.execute(
        select(
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
        .where(Member.id.in_(ids))
        .order_by(Member.id)
    ).all()
    answers: dict[int, dict[str, Any]] = {}
    for member_id, key, value in session.execute(
        select(Answer.member_id, Answer.question_key, Answer.value).where(Answer.member_id.in_(ids))
    ).tuples():
        answers.setdefault(member_id, {})[key] = value
    stages = dict(
        session.execute(
            select(MemberProfile.member_id, MemberProfile.lifecycle_stage).where(
                MemberProfile.member_id.in_(ids)
            )
        )
        .tuples()
        .all()
    )
    activity = load_activity_summaries(session, ids, now)
    cluster_of = effective_segments(session, ids)
    keys = dict(
        session.execute(
            select(Segment.id, Segment.key).where(Segment.id.in_(set(cluster_of.values())))
        )
        .tuples()
        .all()
    )
    contexts: dict[int, dict[str, Any]] = {}
    for row in members:
        member = {
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
        segment_id = cluster_of.get(row.id)
        contexts[row.id] = {
            "member": member,
            "answers": answers.get(row.id, {}),
            "lifecycle": stages.get(row.id),
            "activity": _activity(activity.get(row.id, ActivitySummary()), now),
            "segment": keys.get(segment_id) if segment_id is not None else None,
        }
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


def evaluate_rule_segments(
    session: Session,
    definitions: Sequence[SegmentRule],
    now: dt.datetime,
    *,
    run_id: int | None = None,
) -> RuleSegmentationSummary:
    """Evaluate every rule segment for every member; store segments, memberships, assignments.

    Each rule becomes (or updates) a ``Segment`` of kind ``rule`` with the same key; its members
    are stored as ``SegmentMembership`` rows of the run, beside the clusters, and as effective
    assignments (a member enters or leaves at once). Rule segments no longer defined become
    inactive and lose their members. Evaluating again for the same run replaces its rule
    memberships. The caller commits.

    Args:
        session: Database session.
        definitions: The rule segments (:func:`load_segment_rules`).
        now: Time of the evaluation (timezone-aware).
        run_id: The segmentation run to attach the memberships to; default: the latest run, or a
            new run of its own when there is none.

    Returns:
        What was done.

    Raises:
        ValueError: A rule's key is already the key of a cluster segment.
    """
    if run_id is None:
        run_id = session.scalar(select(SegmentationRun.id).order_by(SegmentationRun.id.desc()))
    if run_id is None and definitions:
        run = SegmentationRun(
            algorithm="rules",
            n_segments=0,
            params={"rules": len(definitions)},
            created_at=now,
        )
        session.add(run)
        session.flush()
        run_id = run.id
    existing = {
        segment.key: segment
        for segment in session.scalars(
            select(Segment).where(Segment.key.in_([rule.key for rule in definitions]))
        )
    }
    clash = sorted(key for key, segment in existing.items() if segment.kind != RULE_KIND)
    if clash:
        raise ValueError(f"rule segment keys already used by cluster segments: {clash}")
    segments: dict[str, Segment] = {}
    new: list[str] = []
    for rule in definitions:
        segment = existing.get(rule.key)
        if segment is None:
            segment = Segment(
                key=rule.key, kind=RULE_KIND, label="", first_run_id=run_id, created_at=now
            )
            session.add(segment)
            new.append(rule.key)
        segment.label = rule.label.get("en")[:300]
        segment.label_edited = False
        segment.description = (
            rule.description.get("en")
            if rule.description
            else f"Members for whom {rule.rule} holds."
        )
        segment.active = True
        segment.last_run_id = run_id
        segments[rule.key] = segment
    session.flush()

    removed: list[str] = []
    left = 0
    for segment in session.scalars(
        select(Segment).where(Segment.kind == RULE_KIND, Segment.active.is_(True))
    ):
        if segment.key not in segments:
            segment.active = False
            segment.size = 0
            removed.append(segment.key)
            left += update_rule_assignments(session, segment.id, (), now).left

    outcomes = {rule.key: RuleOutcome() for rule in definitions}
    if definitions:
        ids = list(session.scalars(select(Member.id).order_by(Member.id)))
        for chunk in chunked(ids, _CHUNK):
            contexts = member_rule_contexts(session, chunk, now)
            for rule in definitions:
                outcome = evaluate_rule(rule, contexts)
                total = outcomes[rule.key]
                total.members.extend(outcome.members)
                total.errors += outcome.errors
                total.first_error = total.first_error or outcome.first_error
    n_members = session.scalar(select(func.count()).select_from(Member)) or 0

    if run_id is not None:
        rule_ids = [segment.id for segment in segments.values()]
        if rule_ids:
            session.execute(
                delete(SegmentMembership).where(
                    SegmentMembership.run_id == run_id,
                    SegmentMembership.segment_id.in_(rule_ids),
                )
            )
    entered = 0
    for rule in definitions:
        segment = segments[rule.key]
        members = outcomes[rule.key].members
        rows = [
            {"run_id": run_id, "member_id": member_id, "segment_id": segment.id, "created_at": now}
            for member_id in members
        ]
        for batch in chunked(rows, _CHUNK):
            session.execute(insert(SegmentMembership), batch)
        changes = update_rule_assignments(session, segment.id, members, now)
        entered += changes.entered
        left += changes.left
        segment.size = len(members)
        segment.card = {
            "size": len(members),
            "share": round(len(members) / n_members, 3) if n_members else 0.0,
            "rule": rule.rule,
            "labels": rule.label.model_dump(),
            "descriptions": rule.description.model_dump() if rule.description else None,
            "errors": outcomes[rule.key].errors,
            "run_id": run_id,
        }
    session.flush()
    errors = {
        key: f"{outcome.errors} member(s), first: {outcome.first_error}"
        for key, outcome in outcomes.items()
        if outcome.errors
    }
    return RuleSegmentationSummary(
        run_id=run_id,
        sizes={key: segments[key].size for key in segments},
        labels={key: segments[key].label for key in segments},
        new=new,
        removed=sorted(removed),
        entered=entered,
        left=left,
        errors=errors,
    )
