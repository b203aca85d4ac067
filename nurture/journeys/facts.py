"""What a journey's conditions (audience, branches, goal) read about members.

``ConditionFacts`` loads, for a chunk of members, what conditions may name (the member's
profile and answers as the segment rules see them, their segments, their language) in a few
bulk queries, or only what conditions reading some names need (``fact_parts``); ``names`` adds
what the trigger recorded. ``email_engagement`` reads which of an enrollment's emails were
opened or clicked (``opened()`` / ``clicked()`` in branch conditions). ``condition_true``
evaluates one condition and takes a condition that fails to evaluate as false, logging it;
``Condition`` does the same for member after member, evaluating it once per distinct value of
what it reads.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.expressions import member_fields_read
from nurture.journeys.conditions import (
    CONDITION_NAMES,
    ENGAGEMENT_CHECKS,
    condition_holds,
    condition_reads,
)
from nurture.segmentation.assignments import effective_segment_keys
from nurture.segmentation.rules import member_rule_contexts
from nurture.storage import among, plain_rows
from nurture.storage.models import Message, ProviderEvent

__all__ = ["Condition", "ConditionFacts", "condition_true", "email_engagement", "fact_parts"]

logger = logging.getLogger(__name__)

_STORED_NAMES = frozenset({"member", "answers", "lifecycle", "activity", "segment", "segments"})
"""The names of a condition read from the members' rows and what is stored about them."""

_MEMO_SIZE = 4096
"""Distinct values of what it reads for which a ``Condition`` remembers its truth."""


def fact_parts(names: Collection[str]) -> frozenset[str]:
    """What is read of members for conditions reading ``names`` (``condition_reads``).

    Args:
        names: Names conditions read (``member``, ``language``, ``trigger``...).

    Returns:
        The stored names among them, ``member`` for ``language``; ``trigger``, ``opened()``
        and ``clicked()`` are not read from members.
    """
    parts = set(names) & _STORED_NAMES
    if "language" in names:
        parts.add("member")
    return frozenset(parts)


class ConditionFacts:
    """What conditions read of a chunk of members, loaded in a few bulk queries.

    Args:
        session: The database session.
        member_ids: The chunk's members.
        now: The current time (ages and recency are counted at it).
        names: Only what conditions reading these names need (``condition_reads``); None:
            everything a condition may read.
    """

    def __init__(
        self,
        session: Session,
        member_ids: Sequence[int],
        now: dt.datetime,
        names: Collection[str] | None = None,
    ) -> None:
        parts = None if names is None else fact_parts(names)
        self.contexts = (
            member_rule_contexts(session, member_ids, now, names=parts)
            if parts is None or parts - {"segments"}
            else {}
        )
        self.segments = (
            effective_segment_keys(session, member_ids)
            if parts is None or "segments" in parts
            else {}
        )

    @classmethod
    def of(
        cls, contexts: dict[int, dict[str, Any]], segments: dict[int, list[str]]
    ) -> ConditionFacts:
        """Facts already loaded: each member's rule context and segment keys."""
        facts = cls.__new__(cls)
        facts.contexts, facts.segments = contexts, segments
        return facts

    def value(self, member_id: int, name: str, trigger: Mapping[str, Any] | None) -> Any:
        """``names(member_id, trigger)[name]`` (an equal value), without making the others."""
        if name == "trigger":
            return trigger or {}
        if name == "segments":
            return self.segments.get(member_id, [])
        context = self.contexts.get(member_id, {})
        if name == "language":
            return (context.get("member") or {}).get("language")
        return context.get(name)

    def names(self, member_id: int, trigger: Mapping[str, Any] | None) -> dict[str, Any]:
        """The names a condition reads for one member, ``trigger`` being what it recorded."""
        context = dict(self.contexts.get(member_id, {}))
        member = context.get("member") or {}
        context["segments"] = self.segments.get(member_id, [])
        context["language"] = member.get("language")
        context["trigger"] = dict(trigger or {})
        return context


def email_engagement(
    session: Session, enrollment_ids: Sequence[int]
) -> dict[tuple[int, str], set[str]]:
    """What the provider reported of the emails of some enrollments: opens and clicks.

    Args:
        session: The database session.
        enrollment_ids: The enrollments.

    Returns:
        ``{(enrollment id, step id): {"open", "click"}}`` for the emails with either.
    """
    found: dict[tuple[int, str], set[str]] = defaultdict(set)
    rows = plain_rows(
        session,
        select(Message.enrollment_id, Message.step_id, ProviderEvent.type)
        .join(ProviderEvent, ProviderEvent.message_id == Message.id)
        .where(
            among(session, Message.enrollment_id, enrollment_ids),
            ProviderEvent.type.in_(["open", "click"]),
        ),
    ).tuples()
    for enrollment_id, step_id, kind in rows:
        found[(enrollment_id, step_id)].add(kind)
    return found


class Condition:
    """One condition of a journey, evaluated for member after member.

    A condition reads nothing but its names (``condition_reads``) and the same values give the
    same truth, so members whose values of those names are equal share one evaluation (for up
    to 4 096 distinct values; of ``member``, the values of the fields it reads by name, when it
    reads no other way: ``member_fields_read``); a condition reading ``opened()`` or
    ``clicked()`` is evaluated for each enrollment. As with ``condition_true``, one that fails
    to evaluate is false, and counted (``on_error``) and logged for each member.

    Args:
        expression: The condition (checked when its journey was loaded).
        journey_key: The journey, for the log.
        where: Where in the journey (``audience``, ``goal``, ``step s case 1``), for the log.
        on_error: Called each time the condition fails to evaluate for a member.
    """

    def __init__(
        self,
        expression: str,
        *,
        journey_key: str,
        where: str,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.expression = expression
        self.journey_key = journey_key
        self.where = where
        self.on_error = on_error
        reads = condition_reads(expression)
        self._keys = tuple(sorted(reads & set(CONDITION_NAMES)))
        # Of ``member``, only the fields read go in the memo's key (members joined the same
        # day share one evaluation of ``member.days_since_joined >= 14``).
        fields = member_fields_read(expression.strip()) if "member" in self._keys else None
        self._member_fields = tuple(sorted(fields)) if fields is not None else None
        self._memo: dict[Hashable, bool | Exception] | None = (
            None if reads & set(ENGAGEMENT_CHECKS) else {}
        )

    def holds(
        self,
        facts: ConditionFacts,
        member_id: int,
        trigger: Mapping[str, Any] | None,
        *,
        opened: Callable[[str], bool] | None = None,
        clicked: Callable[[str], bool] | None = None,
    ) -> bool:
        """Whether the condition holds for one member; False when it fails (logged).

        Args:
            facts: What conditions read of the member (``ConditionFacts``).
            member_id: The member.
            trigger: What the trigger recorded for the member (``names``).
            opened: ``opened(step_id)`` for branch conditions.
            clicked: ``clicked(step_id)`` for branch conditions.

        Returns:
            The condition's truth; False when it failed.
        """
        if self._memo is None:
            outcome = self._evaluate(facts.names(member_id, trigger), opened, clicked)
        else:
            key = _memo_key(
                [self._key_part(facts, member_id, name, trigger) for name in self._keys]
            )
            found = self._memo.get(key)
            if found is None:
                found = self._evaluate(facts.names(member_id, trigger), opened, clicked)
                if len(self._memo) < _MEMO_SIZE:
                    self._memo[key] = found
            outcome = found
        if isinstance(outcome, Exception):
            if self.on_error is not None:
                self.on_error()
            _log_failure(self.journey_key, self.where, self.expression, member_id, outcome)
            return False
        return outcome

    def _key_part(
        self,
        facts: ConditionFacts,
        member_id: int,
        name: str,
        trigger: Mapping[str, Any] | None,
    ) -> Any:
        """What the memo's key holds of one name: its value, or the fields read of ``member``."""
        value = facts.value(member_id, name, trigger)
        if name != "member" or self._member_fields is None or not isinstance(value, dict):
            return value
        return ("fields", [value.get(field) for field in self._member_fields])

    def _evaluate(
        self,
        names: Mapping[str, Any],
        opened: Callable[[str], bool] | None,
        clicked: Callable[[str], bool] | None,
    ) -> bool | Exception:
        try:
            return condition_holds(self.expression, names, opened=opened, clicked=clicked)
        except Exception as error:  # a marketer's condition may fail in any way
            return error


_PLAIN_KEY_TYPES = frozenset({str, int, bool, type(None)})
"""Types whose values are equal only when their ``repr`` is (each value's type goes in too)."""


def _memo_key(parts: list[Any]) -> Hashable:
    """The memo's key of a condition's values: equal for values of equal ``repr``, no others.

    Values of plain types and enum members (equal only to themselves) key as they are, with
    their types (``1``, ``True`` and ``1.0`` are equal, their ``repr`` not); any other value,
    by its ``repr`` (a text, never equal to a tuple).
    """
    key = []
    for part in parts:
        kind = type(part)
        if kind not in _PLAIN_KEY_TYPES and not isinstance(part, enum.Enum):
            return repr(parts)
        key.append(kind)
        key.append(part)
    return tuple(key)


def _log_failure(
    journey_key: str, where: str, expression: str, member_id: Any, error: Exception
) -> None:
    logger.warning(
        "journey %s, %s: condition %r failed for member %s (%s: %s); taken as false",
        journey_key,
        where,
        expression,
        member_id,
        type(error).__name__,
        error,
    )


def condition_true(
    expression: str,
    names: dict[str, Any],
    *,
    journey_key: str,
    where: str,
    on_error: Callable[[], None] | None = None,
    opened: Callable[[str], bool] | None = None,
    clicked: Callable[[str], bool] | None = None,
) -> bool:
    """Whether a journey's condition holds; one that fails to evaluate is false (and logged).

    Args:
        expression: The condition.
        names: What it reads (``ConditionFacts.names``).
        journey_key: The journey, for the log.
        where: Where in the journey (``audience``, ``goal``, ``step s case 1``), for the log.
        on_error: Called when the condition fails to evaluate.
        opened: ``opened(step_id)`` for branch conditions.
        clicked: ``clicked(step_id)`` for branch conditions.

    Returns:
        The condition's truth; False when it failed.
    """
    try:
        return condition_holds(expression, names, opened=opened, clicked=clicked)
    except Exception as error:  # a marketer's condition may fail in any way
        if on_error is not None:
            on_error()
        member = (names.get("member") or {}).get("id")
        _log_failure(journey_key, where, expression, member, error)
        return False
