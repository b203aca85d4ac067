"""Holdouts and splits: who is held out as control, and which variant of a split a member takes.

Both are drawn from a keyed hash (HMAC-SHA256 under the workspace's secret salt) of the journey,
the member and what is drawn, so a draw is random across members yet the same on every run, on
every machine holding the same salt, and no one without the salt can predict it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from nurture.journeys.models import JourneyDefinition, SplitStep, SplitVariant

__all__ = ["CONTROL_ARM", "JOURNEY_ARM", "choose_variant", "draw_fraction", "in_holdout"]

CONTROL_ARM = "control"
"""The arm recorded on the enrollments of members held out (sent nothing)."""

JOURNEY_ARM = "journey"
"""The arm of the members who got the journey, when it has no split step."""

_SCALE = float(1 << 64)


def draw_fraction(salt: str, *parts: str) -> float:
    """A number in [0, 1) drawn from a keyed hash of ``parts``: uniform, and stable for them.

    Args:
        salt: The secret key (``Settings.suppression_salt``); the empty string still works.
        parts: What the draw is for: journey id, member id, and what is drawn.

    Returns:
        The fraction.
    """
    message = "\x1f".join(parts).encode("utf-8")
    digest = hmac.new(salt.encode("utf-8"), message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def in_holdout(definition: JourneyDefinition, member_id: int, salt: str) -> bool:
    """Whether a member falls in the journey's holdout (enrolled as control, sent nothing).

    Args:
        definition: The journey; without a holdout nobody is held out.
        member_id: The member.
        salt: The secret key of the draws.

    Returns:
        True for the stable share ``definition.holdout`` of the members.
    """
    share = definition.holdout_share
    return share > 0 and draw_fraction(salt, definition.id, str(member_id), "holdout") < share


def choose_variant(
    definition: JourneyDefinition, step: SplitStep, member_id: int, salt: str
) -> SplitVariant:
    """The variant of a split step a member takes, by the variants' weights.

    Args:
        definition: The journey.
        step: Its split step.
        member_id: The member.
        salt: The secret key of the draws.

    Returns:
        The member's variant, the same on every call.
    """
    point = draw_fraction(salt, definition.id, str(member_id), "split", step.id)
    return _pick(step.variants, point)


def _pick(variants: Sequence[SplitVariant], point: float) -> SplitVariant:
    total = sum(variant.weight for variant in variants)
    edge = 0.0
    for variant in variants:
        edge += variant.weight / total
        if point < edge:
            return variant
    return variants[-1]
