"""Journey conditions: the sandboxed expressions of branches, goals and audiences.

A condition is the same kind of expression as a rule segment (``nurture.segmentation.rules``):
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

from jinja2 import UndefinedError

from nurture.segmentation.rules import RULE_NAMES, check_rule, compile_rule

__all__ = ["CONDITION_NAMES", "check_condition", "condition_holds"]

CONDITION_NAMES = (*RULE_NAMES, "segments", "language", "trigger", "opened", "clicked")
"""The names a journey condition can read."""


def check_condition(expression: str, question_keys: Sequence[str] | None = None) -> list[str]:
    """What is wrong with a condition: it does not parse, or reads a name that does not exist.

    Args:
        expression: The condition.
        question_keys: The questionnaire's question keys, to check ``answers.<key>``.

    Returns:
        One message per problem; empty when the condition is fine.
    """
    problems = check_rule(expression.strip(), question_keys, names=CONDITION_NAMES)
    return [problem.replace("the rule", "the condition") for problem in problems]


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
    try:
        return bool(compile_rule(expression.strip())(**names))
    except UndefinedError:
        return False


def _never(step_id: str) -> bool:
    return False
