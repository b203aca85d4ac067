"""Journey conditions: the sandboxed expressions of branches, goals and audiences.

A condition is an expression of the condition language (``nurture.expressions``), as rules are:
compiled by jinja2's immutable sandbox, never Python ``eval``. Besides what rules read
(``member``, ``answers``, ``lifecycle``, ``activity``, ``segment``) it reads:

``segments``
    the keys of every segment the member is effectively in (clusters and rule segments).
``language``
    the member's language code (``fr``, ``en``...).
``trigger``
    what the trigger recorded when the member entered (``trigger.event``, ``trigger.topic``,
    ``trigger.threshold``...), empty for simple triggers.
``opened('step')``, ``clicked('step')``
    whether the member opened / clicked the email of an earlier send step of this enrollment.

A condition that reads something the member lacks (an unanswered question) does not hold.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from nurture.expressions import (
    EXPRESSION_NAMES,
    check_expression,
    expression_holds,
    expression_reads,
)
from nurture.storage.models import LifecycleStage

__all__ = [
    "CONDITION_NAMES",
    "ENGAGEMENT_CHECKS",
    "FieldNames",
    "check_condition",
    "check_condition_names",
    "condition_holds",
    "condition_reads",
]

CONDITION_NAMES = (*EXPRESSION_NAMES, "segments", "language", "trigger", "opened", "clicked")
"""The names a journey condition can read."""


def check_condition(expression: str, question_keys: Sequence[str] | None = None) -> list[str]:
    """What is wrong with a condition: it does not parse, or reads a name that does not exist.

    Args:
        expression: The condition.
        question_keys: The questionnaire's question keys, to check ``answers.<key>``.

    Returns:
        One message per problem; empty when the condition is fine.
    """
    return check_expression(
        expression.strip(), question_keys, names=CONDITION_NAMES, kind="condition"
    )


ENGAGEMENT_CHECKS = ("opened", "clicked")
"""The functions of a branch condition that read the emails of the enrollment's send steps."""

FieldNames = Mapping[str, "FieldNames | None"]
"""The fields a value has, each with its own fields (None: any, such as free properties)."""

_PARSING = ImmutableSandboxedEnvironment()  # only parses conditions; the sandbox all the same


def check_condition_names(
    expression: str,
    *,
    send_steps: Sequence[str] | None,
    trigger_kind: str | None = None,
    trigger_fields: FieldNames | None = None,
) -> list[str]:
    """What a condition names that cannot exist: a step, a trigger field, a lifecycle stage.

    ``opened('x')`` and ``clicked('x')`` must name a send step of the journey, in quotes, and
    only a branch can read them (a goal or an audience is checked before any email of the
    enrollment); ``trigger.<field>`` must be a field the journey's trigger records; a
    lifecycle compared with a text must be a lifecycle stage. A name built at run time is not
    seen.

    Args:
        expression: A condition that compiles (``check_condition``).
        send_steps: The journey's send step ids; None where the condition cannot read emails
            (audience, goal).
        trigger_kind: The journey's trigger kind, as messages name it.
        trigger_fields: The fields its context records (``TriggerContext.field_names``); None
            skips that check.

    Returns:
        One message per problem; empty when every name exists.
    """
    try:
        tree = Parser(_PARSING, expression.strip(), state="variable").parse_expression()
    except TemplateSyntaxError:
        return []  # check_condition says why
    problems = _engagement_problems(tree, send_steps)
    if trigger_fields is not None:
        problems += _trigger_problems(tree, trigger_kind or "this", trigger_fields)
    problems += _lifecycle_problems(tree)
    return problems


def _with_root(tree: nodes.Expr, kind: type[nodes.Node]) -> list[Any]:
    found = list(tree.find_all(kind))
    return [tree, *found] if isinstance(tree, kind) else found


def _unknown(name: str, what: str, known: Sequence[str], expected: str | None = None) -> str:
    message = f"unknown {what} {name!r}"
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    if expected is None:
        expected = f"one of: {', '.join(known)}" if known else "none"
    return f"{message} (expected {expected})"


def _engagement_problems(tree: nodes.Expr, send_steps: Sequence[str] | None) -> list[str]:
    problems = []
    for call in _with_root(tree, nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name in ENGAGEMENT_CHECKS):
            continue
        name = call.node.name
        if send_steps is None:
            problems.append(
                f"{name}() reads the emails of this enrollment: only a branch step can use it "
                "(an audience or a goal is checked before any email, so it is never true)"
            )
            continue
        argument = call.args[0] if len(call.args) == 1 and not call.kwargs else None
        if not (isinstance(argument, nodes.Const) and isinstance(argument.value, str)):
            problems.append(
                f"{name}() takes one send step id in quotes, e.g. {name}('{_example(send_steps)}')"
            )
        elif argument.value not in send_steps:
            message = f"{name}({argument.value!r}) names no send step of this journey"
            close = difflib.get_close_matches(argument.value, list(send_steps), n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            expected = f"one of: {', '.join(send_steps)}" if send_steps else "none: it has none"
            problems.append(f"{message} (expected {expected}): the case could never hold")
    return problems


def _example(send_steps: Sequence[str]) -> str:
    return send_steps[0] if send_steps else "send_welcome"


def _trigger_problems(tree: nodes.Expr, kind: str, fields: FieldNames) -> list[str]:
    """Fields read on ``trigger`` (``trigger.topic``, ``trigger.event.count``) that it lacks.

    A chain is seen once per prefix (``trigger.event`` inside ``trigger.event.type``): the
    same message is kept once.
    """
    problems = []
    for node in _with_root(tree, nodes.Getattr):
        chain = _attribute_chain(node)
        if chain is None or chain[0] != "trigger" or len(chain) < 2:
            continue
        known: FieldNames | None = fields
        path = "trigger"
        for attribute in chain[1:]:
            if known is None:
                break
            if attribute not in known:
                expected = (
                    f"a field the {kind} trigger records: {', '.join(known)}"
                    if known
                    else f"none: the {kind} trigger records nothing"
                )
                problems.append(_unknown(attribute, f"{path} field", list(known), expected))
                break
            known = known[attribute]
            path += f".{attribute}"
    return sorted(set(problems), key=problems.index)


def _attribute_chain(node: nodes.Expr) -> list[str] | None:
    """``trigger.event.type`` as ``['trigger', 'event', 'type']``; None for other shapes."""
    chain: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            chain.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            chain.append(node.arg.value)
        else:
            return None
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return [node.name, *reversed(chain)]


def _lifecycle_problems(tree: nodes.Expr) -> list[str]:
    """Texts compared with ``lifecycle`` that are no lifecycle stage."""
    stages = [stage.value for stage in LifecycleStage]
    problems = []
    for compare in _with_root(tree, nodes.Compare):
        left = compare.expr
        for operand in compare.ops:
            right = operand.expr
            texts: list[Any] = []
            if operand.op in ("eq", "ne"):
                if _is_name(left, "lifecycle"):
                    texts = [right]
                elif _is_name(right, "lifecycle"):
                    texts = [left]
            elif (
                operand.op in ("in", "notin")
                and _is_name(left, "lifecycle")
                and isinstance(right, nodes.List | nodes.Tuple)
            ):
                texts = list(right.items)
            problems += [
                _unknown(text.value, "lifecycle stage", stages)
                for text in texts
                if isinstance(text, nodes.Const)
                and isinstance(text.value, str)
                and text.value not in stages
            ]
            left = right
    return problems


def _is_name(node: nodes.Expr, name: str) -> bool:
    return isinstance(node, nodes.Name) and node.name == name


def condition_reads(*expressions: str) -> frozenset[str]:
    """The names some conditions read: what a member's facts must hold to evaluate them.

    Args:
        expressions: Conditions that compile (:func:`check_condition`).

    Returns:
        The names, together.
    """
    return frozenset().union(*(expression_reads(expression.strip()) for expression in expressions))


def condition_holds(
    expression: str,
    context: Mapping[str, Any],
    *,
    opened: Callable[[str], bool] | None = None,
    clicked: Callable[[str], bool] | None = None,
) -> bool:
    """Whether a condition holds for one member.

    Args:
        expression: A condition (checked by :func:`check_condition` when loaded).
        context: The member's names (``member``, ``answers``... see the module docstring).
        opened: Whether the member opened the email of a step of this enrollment.
        clicked: Whether the member clicked in the email of a step of this enrollment.

    Returns:
        True when it holds; False when it does not or reads something the member lacks.

    Raises:
        Exception: Whatever else evaluating the expression raised (a comparison of a text and a
            number...): the caller decides what a failing condition means.
    """
    names = {name: context.get(name) for name in CONDITION_NAMES}
    names["opened"] = opened or _never
    names["clicked"] = clicked or _never
    return expression_holds(expression.strip(), names)


def _never(step_id: str) -> bool:
    return False
