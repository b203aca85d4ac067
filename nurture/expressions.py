"""The condition language: sandboxed expressions over one member, for rules and journeys.

Rule segments (``segments.yaml``) and journey conditions (branches, goals, audiences) are written
in it. An expression is a jinja2 expression compiled by an immutable sandboxed environment: it
reads a member and can change nothing, call nothing unsafe, and is never Python ``eval``. It
sees, read-only:

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

Journey conditions read a few names more (``nurture.journeys.conditions``). For example
``answers.role == 'founder' and member.language == 'fr'`` or
``'run_events' in answers.goals and activity.event_attended.d90 >= 2``. An expression that reads
something a member lacks (an unanswered question) does not hold for that member.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from nurture.profiling.layout import EVENT_TYPES

__all__ = [
    "ACTIVITY_FIELDS",
    "EXPRESSION_NAMES",
    "MEMBER_FIELDS",
    "TimeReads",
    "check_expression",
    "compile_expression",
    "expression_holds",
    "expression_reads",
    "member_fields_read",
    "time_reads",
]

EXPRESSION_NAMES = ("member", "answers", "lifecycle", "activity", "segment")
"""The names every expression can read (see the module docstring)."""

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
"""What an expression can read of ``member``."""

ACTIVITY_FIELDS = ("d7", "d30", "d90", "total")
"""What an expression can read of each event type under ``activity``."""


class _SandboxEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox expressions run in.

    It also refuses ``**`` and repeating a text or a list with ``*``, so that no expression can
    make a huge number or string.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("'**' is not allowed in a segment rule")
        if isinstance(left, str | list | tuple) or isinstance(right, str | list | tuple):
            raise SecurityError("repeating a text or a list with '*' is not allowed")
        return super().call_binop(context, operator, left, right)


_ENVIRONMENT = _SandboxEnvironment()


def _parse(expression: str) -> nodes.Expr:
    """The expression's tree; raises ``TemplateSyntaxError`` as ``compile_expression``."""
    parser = Parser(_ENVIRONMENT, expression, state="variable")
    tree = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError(
            "unexpected text after the expression", parser.stream.current.lineno, None, None
        )
    return tree


@functools.lru_cache(maxsize=256)
def compile_expression(expression: str) -> Callable[..., Any]:
    """The compiled expression: call it with the names it reads as keyword arguments.

    Args:
        expression: An expression of the condition language.

    Returns:
        A function of ``member``, ``answers``, ``lifecycle``, ``activity``, ``segment`` (and
        whatever other names the caller offers).

    Raises:
        jinja2.TemplateSyntaxError: The expression does not compile.
    """
    return _ENVIRONMENT.compile_expression(expression, undefined_to_none=False)


def expression_holds(expression: str, names: Mapping[str, Any]) -> bool:
    """Whether an expression holds for one member's names.

    Args:
        expression: An expression (checked by :func:`check_expression` when loaded).
        names: What the expression reads (``member``, ``answers``...).

    Returns:
        True when it holds; False when it does not or reads something the member lacks.

    Raises:
        Exception: Whatever else evaluating the expression raised (a comparison of a text and a
            number...): the caller decides what a failing expression means.
    """
    try:
        return bool(compile_expression(expression)(**names))
    except UndefinedError:
        return False


@functools.lru_cache(maxsize=256)
def expression_reads(expression: str) -> frozenset[str]:
    """The names an expression reads (``member``, ``answers``...): nothing else can reach it.

    Args:
        expression: An expression that compiles (:func:`check_expression`).

    Returns:
        The names, as the expression spells them.

    Raises:
        jinja2.TemplateSyntaxError: The expression does not compile.
    """
    tree = _parse(expression)
    return frozenset(node.name for node in _nodes(tree, (nodes.Name,)) if node.ctx == "load")


def _nodes(tree: nodes.Expr, kinds: tuple[type[nodes.Node], ...]) -> list[Any]:
    """The nodes of those kinds in the tree, its root included."""
    found = list(tree.find_all(kinds))
    return [tree, *found] if isinstance(tree, kinds) else found


def _attribute_reads(tree: nodes.Expr, name: str) -> list[str]:
    """Constant attributes read directly on ``name`` (``answers.role``, ``answers['role']``)."""
    reads: list[str] = []
    for node in _nodes(tree, (nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == name):
            continue
        if isinstance(node, nodes.Getattr):
            reads.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            reads.append(node.arg.value)
    return reads


@functools.lru_cache(maxsize=256)
def member_fields_read(expression: str) -> frozenset[str] | None:
    """The fields of ``member`` an expression reads, when it reads it only by known field names.

    Args:
        expression: An expression that compiles (:func:`check_expression`).

    Returns:
        The fields (``member.days_since_joined`` reads ``days_since_joined``); None when it
        reads ``member`` some other way (the whole of it, a computed key, an unknown field):
        then what it reads of ``member`` is not known field by field.
    """
    tree = _parse(expression)
    uses = sum(node.name == "member" and node.ctx == "load" for node in _nodes(tree, (nodes.Name,)))
    fields = _attribute_reads(tree, "member")
    if len(fields) < uses or not set(fields) <= set(MEMBER_FIELDS):
        return None
    return frozenset(fields)


def _activity_reads(tree: nodes.Expr) -> list[tuple[str, str | None]]:
    """``(event type, field)`` pairs read under ``activity`` (field ``None`` when not read)."""
    reads: list[tuple[str, str | None]] = []
    for node in _nodes(tree, (nodes.Getattr,)):
        inner = node.node
        if (
            isinstance(inner, nodes.Getattr)
            and isinstance(inner.node, nodes.Name)
            and inner.node.name == "activity"
        ):
            reads.append((inner.attr, node.attr))
    return reads


@dataclass(frozen=True)
class TimeReads:
    """What an expression reads whose value changes as time passes, without any new data.

    Attributes:
        windows: ``(event type, days)`` of each activity window read (``activity.post.d30``
            is ``("post", 30)``): the count changes when one of the member's events leaves it.
        totals: Event types whose ``total`` is read: it changes when an event dated in the
            future comes within ``now``.
        clock: Whether it reads a value the clock changes for every member (``member.
            days_since_joined``, ``activity.days_since_last``), or reads ``member`` or
            ``activity`` in a way not analysed here (a computed key): such an expression must
            be evaluated again for everyone at every new time.
    """

    windows: frozenset[tuple[str, int]] = frozenset()
    totals: frozenset[str] = frozenset()
    clock: bool = False


_CLOCK_MEMBER_FIELDS = frozenset({"days_since_joined"})


def time_reads(expression: str) -> TimeReads:
    """What an expression reads that time alone changes (see :class:`TimeReads`).

    Args:
        expression: An expression of the condition language (it compiles).

    Returns:
        The windows and totals it reads, and whether it reads the clock.
    """
    tree = _parse(expression)
    names = [node for node in _nodes(tree, (nodes.Name,)) if node.ctx == "load"]
    member_uses = sum(node.name == "member" for node in names)
    activity_uses = sum(node.name == "activity" for node in names)
    member_reads = _attribute_reads(tree, "member")
    clock = len(member_reads) < member_uses or bool(_CLOCK_MEMBER_FIELDS & set(member_reads))
    windows: set[tuple[str, int]] = set()
    totals: set[str] = set()
    understood = 0
    for event_type, field in _activity_reads(tree):
        if event_type not in EVENT_TYPES or field not in ACTIVITY_FIELDS:
            continue
        understood += 1
        if field == "total":
            totals.add(event_type)
        else:
            windows.add((event_type, int(str(field).removeprefix("d"))))
    # activity.days_since_last, activity['post'], a bare activity...: read as the clock.
    clock = clock or understood < activity_uses
    return TimeReads(frozenset(windows), frozenset(totals), clock)


def _unknown(name: str, what: str, known: Sequence[str]) -> str:
    message = f"unknown {what} {name!r}"
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + f" (expected one of: {', '.join(known)})"


def check_expression(
    expression: str,
    question_keys: Sequence[str] | None = None,
    *,
    names: Sequence[str] = EXPRESSION_NAMES,
    kind: str = "expression",
) -> list[str]:
    """What is wrong with an expression: it does not compile, or reads a name that does not exist.

    Args:
        expression: An expression of the condition language.
        question_keys: The questionnaire's question keys, to check ``answers.<key>``; ``None``
            skips that check.
        names: The names the expression may read (journey conditions read a few more).
        kind: What the expression is to the marketer (``rule``, ``condition``), as messages say.

    Returns:
        One message per problem; empty when the expression is fine.
    """
    try:
        tree = _parse(expression)
        compile_expression(expression)
    except TemplateSyntaxError as exc:
        where = f" (line {exc.lineno} of the {kind})" if expression.count("\n") else ""
        reason = str(exc.message).replace("end of template", f"end of the {kind}")
        return [f"the {kind} does not compile{where}: {reason}"]
    problems: list[str] = []
    read = sorted({node.name for node in _nodes(tree, (nodes.Name,)) if node.ctx == "load"})
    problems.extend(_unknown(name, "name", names) for name in read if name not in names)
    problems.extend(
        _unknown(attr, "member field", MEMBER_FIELDS)
        for attr in _attribute_reads(tree, "member")
        if attr not in MEMBER_FIELDS
    )
    activity_names = (*EVENT_TYPES, "days_since_last")
    for attr in _attribute_reads(tree, "activity"):
        if attr not in activity_names:
            problems.append(_unknown(attr, "activity", activity_names))
    for event_type, field in _activity_reads(tree):
        if event_type in EVENT_TYPES and field not in ACTIVITY_FIELDS:
            problems.append(_unknown(str(field), f"activity.{event_type} field", ACTIVITY_FIELDS))
    if question_keys is not None:
        problems.extend(
            _unknown(attr, "question", question_keys)
            for attr in _attribute_reads(tree, "answers")
            if attr not in question_keys
        )
    return problems
