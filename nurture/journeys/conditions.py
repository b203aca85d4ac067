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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nurture.expressions import EXPRESSION_NAMES, check_expression, expression_holds

__all__ = ["CONDITION_NAMES", "check_condition", "condition_holds"]

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
