"""``match_coverage``: members with recommendations, live items recommended, the last run."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from sqlalchemy.orm import Session

from nurture.operations import match_coverage
from nurture.storage.models import MatchRun, Recommendation
from tests.operations.conftest import NOW, Rows


def test_an_empty_database_covers_nothing(session: Session) -> None:
    coverage = match_coverage(session, NOW)

    assert coverage.members == coverage.live_items == coverage.recommendations == 0
    assert coverage.member_coverage == coverage.item_coverage == coverage.mean_per_member == 0.0
    assert coverage.last_match_run_at is None
    assert coverage.last_match_run_id is None


def test_coverage_of_members_and_live_items(session: Session, rows: Rows) -> None:
    members = [rows.member() for _ in range(4)]
    article = rows.item("article")
    event = rows.item("event", kind="event", event_start=NOW + dt.timedelta(days=3))
    rows.item("unused")  # live, never recommended
    expired = rows.item("expired", expires_at=NOW - dt.timedelta(days=1))
    rows.item("past-event", kind="event", event_start=NOW - dt.timedelta(hours=1))
    rows.item("future", published_at=NOW + dt.timedelta(days=2))
    old = MatchRun(model="hashing-64", created_at=NOW - dt.timedelta(days=2))
    new = MatchRun(model="hashing-64", created_at=NOW - dt.timedelta(hours=3))
    session.add_all([old, new])
    session.flush()
    recommended = {
        members[0]: [article, event, expired],
        members[1]: [article],
    }
    for member, items in recommended.items():
        for rank, item in enumerate(items, start=1):
            session.add(
                Recommendation(
                    member_id=member.id,
                    content_item_id=item.id,
                    run_id=new.id,
                    rank=rank,
                    score=1.0 / rank,
                    reason="because",
                )
            )
    session.commit()

    coverage = match_coverage(session, NOW)

    assert (coverage.members, coverage.members_with_recommendations) == (4, 2)
    assert coverage.member_coverage == 0.5
    assert (coverage.live_items, coverage.items_recommended) == (3, 2)  # article, event, unused
    assert coverage.item_coverage == round(2 / 3, 3)
    assert coverage.recommendations == 4
    assert coverage.mean_per_member == 2.0
    assert coverage.last_match_run_id == new.id
    assert dt.datetime.fromisoformat(coverage.last_match_run_at or "") == new.created_at
    assert coverage.last_match_run_model == "hashing-64"
    assert json.loads(json.dumps(dataclasses.asdict(coverage)))["members"] == 4
