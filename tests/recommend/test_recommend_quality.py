"""Reasons on the demo community with the real embedding model: each names real evidence."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.orchestration import run_cycle
from nurture.recommend import CONSUMING_EVENT_TYPES, Evidence, EvidenceKind, reason_text
from nurture.recommend.reasons import (
    co_engagement_reason,
    collaborative_reason,
    goal_label,
    popular_reason,
)
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import (
    ActivityEvent,
    Answer,
    ContentItem,
    Member,
    Recommendation,
)
from tests.pipeline_helpers import CONTENT, NOW, seed_demo

pytestmark = [pytest.mark.e2e, pytest.mark.model]

N_MEMBERS = 300


@pytest.fixture
def matched(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(workspace=CONTENT, data_dir=tmp_path / "data", database_url=database_url)
    with Runtime(settings) as runtime:
        seed_demo(runtime, N_MEMBERS)
        report = run_cycle(runtime, NOW, lists=("nightly",))
        assert report.recommendations > 0
        yield runtime


def _allowed_reasons(session, member: Member) -> set[str]:
    """Every reason the member's own answers, goals and consumed items could give."""
    language = member.language
    allowed = {popular_reason(True, language), popular_reason(False, language)}
    for question, value in session.execute(
        select(Answer.question_key, Answer.value).where(Answer.member_id == member.id)
    ):
        if question == "expectations":
            allowed.add(reason_text(Evidence(EvidenceKind.ANSWER, value), language))
        elif question == "goals":
            for goal in value:
                label = goal_label(goal, language)
                allowed.add(reason_text(Evidence(EvidenceKind.GOAL, label), language))
    for title, event_type in session.execute(
        select(ContentItem.title, ActivityEvent.type)
        .join(ActivityEvent, ActivityEvent.content_key == ContentItem.key)
        .where(
            ActivityEvent.member_id == member.id,
            ActivityEvent.type.in_(CONSUMING_EVENT_TYPES),
            ActivityEvent.occurred_at <= NOW,
        )
    ):
        kind = EvidenceKind.ATTENDED if event_type == "event_attended" else EvidenceKind.READ
        allowed.add(reason_text(Evidence(kind, title), language))
        allowed.add(co_engagement_reason(Evidence(kind, title), language))
        allowed.add(collaborative_reason(language))  # learned from what they consumed
        allowed.add(collaborative_reason(language, again=True))
        allowed.add(collaborative_reason(language, Evidence(kind, title)))
    return allowed


def test_every_reason_names_the_members_own_answers_or_items(matched: Runtime) -> None:
    kinds: collections.Counter[str] = collections.Counter()
    first_is_personal = []
    with matched.session() as session:
        members = {member.id: member for member in session.scalars(select(Member))}
        lists = collections.defaultdict(list)
        for member_id, reason in session.execute(
            select(Recommendation.member_id, Recommendation.reason).order_by(
                Recommendation.member_id, Recommendation.rank
            )
        ):
            lists[member_id].append(reason)
        for member_id, reasons in lists.items():
            member = members[member_id]
            allowed = _allowed_reasons(session, member)
            unfounded = [reason for reason in reasons if reason not in allowed]
            assert not unfounded, (member.email, unfounded)
            popular = {
                popular_reason(True, member.language),
                popular_reason(False, member.language),
            }
            kinds.update("popular" if reason in popular else "personal" for reason in reasons)
            if len(allowed) > 2:  # the member told us something or consumed something
                first_is_personal.append(reasons[0] not in popular)
    assert len(lists) >= 0.95 * N_MEMBERS
    assert kinds["personal"] > kinds["popular"], kinds
    # A member who told us or did something mostly sees why their first item is for them.
    share = sum(first_is_personal) / len(first_is_personal)
    assert share >= 0.8, f"{share:.0%} of first items have a personal reason"
