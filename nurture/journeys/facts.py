"""What a journey's conditions (audience, branches, goal) read about members.

``ConditionFacts`` loads, for a chunk of members, everything a condition may name (the
member's profile and answers as the segment rules see them, their segments, their language)
in a few bulk queries; ``names`` adds what the trigger recorded. ``email_engagement`` reads
which of an enrollment's emails were opened or clicked (``opened()`` / ``clicked()`` in branch
conditions). ``condition_true`` evaluates one condition and takes a condition that fails to
evaluate as false, logging it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.journeys.conditions import condition_holds
from nurture.segmentation.assignments import effective_segment_keys
from nurture.segmentation.rules import member_rule_contexts
from nurture.storage.models import Message, ProviderEvent

__all__ = ["ConditionFacts", "condition_true", "email_engagement"]

logger = logging.getLogger(__name__)


class ConditionFacts:
    """What conditions read of a chunk of members, loaded in a few bulk queries.

    Args:
        session: The database session.
        member_ids: The chunk's members.
        now: The current time (ages and recency are counted at it).
    """

    def __init__(self, session: Session, member_ids: Sequence[int], now: dt.datetime) -> None:
        self.contexts = member_rule_contexts(session, member_ids, now)
        self.segments = effective_segment_keys(session, member_ids)

    @classmethod
    def of(
        cls, contexts: dict[int, dict[str, Any]], segments: dict[int, list[str]]
    ) -> ConditionFacts:
        """Facts already loaded: each member's rule context and segment keys."""
        facts = cls.__new__(cls)
        facts.contexts, facts.segments = contexts, segments
        return facts

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
    rows = session.execute(
        select(Message.enrollment_id, Message.step_id, ProviderEvent.type)
        .join(ProviderEvent, ProviderEvent.message_id == Message.id)
        .where(
            Message.enrollment_id.in_(enrollment_ids),
            ProviderEvent.type.in_(["open", "click"]),
        )
    ).tuples()
    for enrollment_id, step_id, kind in rows:
        found[(enrollment_id, step_id)].add(kind)
    return found


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
        logger.warning(
            "journey %s, %s: condition %r failed for member %s (%s: %s); taken as false",
            journey_key,
            where,
            expression,
            member,
            type(error).__name__,
            error,
        )
        return False
