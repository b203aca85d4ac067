"""Match coverage: how much of the community and of the content library recommendations reach."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, distinct, func, or_, select
from sqlalchemy.orm import Session

from nurture.storage.models import ContentItem, MatchRun, Member, Recommendation, utcnow

__all__ = ["CoverageSummary", "live_item_condition", "match_coverage"]


@dataclass(frozen=True)
class CoverageSummary:
    """The reach of the recommendations the database holds (each member's latest ones).

    Attributes:
        members: Every member.
        members_with_recommendations: Members with at least one recommendation.
        member_coverage: ``members_with_recommendations / members`` (0 without members).
        live_items: Content items that can be recommended now: published, not expired, and,
            for events, not started.
        items_recommended: Live items recommended to at least one member.
        item_coverage: ``items_recommended / live_items`` (0 without live items).
        recommendations: Every recommendation held.
        mean_per_member: Mean recommendations per member who has any.
        last_match_run_at: When the latest match run started (ISO 8601), None before any.
        last_match_run_id: Its id.
        last_match_run_model: The embedding model it used.
    """

    members: int
    members_with_recommendations: int
    member_coverage: float
    live_items: int
    items_recommended: int
    item_coverage: float
    recommendations: int
    mean_per_member: float
    last_match_run_at: str | None
    last_match_run_id: int | None
    last_match_run_model: str | None


def live_item_condition(now: dt.datetime) -> ColumnElement[bool]:
    """The SQL condition of a content item that can be recommended at ``now``."""
    return and_(
        ContentItem.live_at(now),
        or_(ContentItem.event_start.is_(None), ContentItem.event_start >= now),
    )


def match_coverage(session: Session, now: dt.datetime | None = None) -> CoverageSummary:
    """Measure how many members have recommendations and how much of the library they cover.

    Args:
        session: The database session; nothing is written.
        now: The time items are live at (default: now).

    Returns:
        The coverage summary.
    """
    now = now or utcnow()
    members = session.scalar(select(func.count()).select_from(Member)) or 0
    recommendations, recommended_members = session.execute(
        select(func.count(), func.count(distinct(Recommendation.member_id)))
    ).one()
    live = live_item_condition(now)
    live_items = session.scalar(select(func.count()).select_from(ContentItem).where(live)) or 0
    # Live items among the recommended ones (a semi-join: half the time of counting the
    # distinct items of every recommendation joined to its item, on both databases).
    items_recommended = (
        session.scalar(
            select(func.count())
            .select_from(ContentItem)
            .where(live, ContentItem.id.in_(select(Recommendation.content_item_id)))
        )
        or 0
    )
    last_run = session.execute(
        select(MatchRun.id, MatchRun.created_at, MatchRun.model)
        .order_by(MatchRun.created_at.desc(), MatchRun.id.desc())
        .limit(1)
    ).first()
    return CoverageSummary(
        members=members,
        members_with_recommendations=recommended_members,
        member_coverage=round(recommended_members / members, 3) if members else 0.0,
        live_items=live_items,
        items_recommended=items_recommended,
        item_coverage=round(items_recommended / live_items, 3) if live_items else 0.0,
        recommendations=recommendations,
        mean_per_member=(
            round(recommendations / recommended_members, 2) if recommended_members else 0.0
        ),
        last_match_run_at=last_run.created_at.isoformat() if last_run else None,
        last_match_run_id=last_run.id if last_run else None,
        last_match_run_model=last_run.model if last_run else None,
    )
