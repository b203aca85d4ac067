"""The segment table: one short row per active segment, drawn from its card."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from nurture.profiling.layout import QuestionnaireLike
from nurture.reports.cards import SegmentCard, segment_cards
from nurture.storage.models import utcnow

__all__ = ["SegmentRow", "segment_table"]

TRAITS_SHOWN = 3
"""Distinctive answers a row lists."""
TERMS_SHOWN = 5
"""Distinctive words a row lists."""


@dataclass(frozen=True)
class SegmentRow:
    """One active segment in a few words.

    Attributes:
        key: Stable key (``seg-3``).
        label: Readable label.
        kind: ``cluster`` or ``rule``.
        size: Members in the segment.
        share: ``size`` over the members it was drawn from (0..1).
        top_traits: Its most distinctive answers, e.g. ``role = Founder: 62% vs 20% (×3.1)``.
        top_terms: The most distinctive words of its members' free texts.
        main_stage: The lifecycle stage most of its members are at (None when unknown).
        size_change: Members gained (or lost, negative) since the previous run; None on the
            first run.
    """

    key: str
    label: str
    kind: str
    size: int
    share: float
    top_traits: tuple[str, ...]
    top_terms: tuple[str, ...]
    main_stage: str | None
    size_change: int | None

    @classmethod
    def from_card(cls, card: SegmentCard) -> SegmentRow:
        """The row of a segment card."""
        stages = {stage: count for stage, count in card.lifecycle.items() if stage != "unknown"}
        return cls(
            key=card.key,
            label=card.label,
            kind=card.kind,
            size=card.size,
            share=card.share,
            top_traits=tuple(feature.describe() for feature in card.distinctive[:TRAITS_SHOWN]),
            top_terms=tuple(card.top_terms[:TERMS_SHOWN]),
            main_stage=max(stages, key=lambda stage: stages[stage]) if stages else None,
            size_change=card.drift.size_change,
        )


def segment_table(
    session: Session,
    now: dt.datetime | None = None,
    *,
    questionnaire: QuestionnaireLike | None = None,
) -> list[SegmentRow]:
    """Summarise every active segment's card in one row.

    Args:
        session: The database session; nothing is written.
        now: The time the cards are read at (default: now).
        questionnaire: The workspace questionnaire, to describe segments segmentation did not
            (rule segments); without it their traits and words stay empty.

    Returns:
        Cluster segments first, then the other kinds; within a kind, largest first.
    """
    cards = segment_cards(session, now or utcnow(), questionnaire=questionnaire)
    return [SegmentRow.from_card(card) for card in cards]
