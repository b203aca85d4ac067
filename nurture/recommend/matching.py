"""Recommendations for a chunk of members: bulk loads, one ranking, reasons, one write.

For a chunk of member ids, a handful of queries load what the ranker needs (languages,
interests, current segments, consumed content, items already sent, answers); the ranker runs once
over the whole chunk; the chunk's ``Recommendation`` rows are then replaced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session

from nurture.embedding import Embedder, embed_texts_cached
from nurture.recommend.content import load_content_vectors
from nurture.recommend.ranking import RankingWeights, rank_content
from nurture.recommend.reasons import (
    Evidence,
    EvidenceKind,
    closest_evidence,
    goal_label,
    popular_reason,
    reason_text,
)
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    ContentItem,
    MatchRun,
    Member,
    MemberProfile,
    Message,
    MessageStatus,
    Recommendation,
    Segment,
    SegmentationRun,
    SegmentMembership,
)

__all__ = [
    "CONSUMING_EVENT_TYPES",
    "MatchSummary",
    "RecommendedItem",
    "item_available",
    "item_freshness",
    "recommend_for_members",
    "recommendations_for",
    "start_match_run",
]

CONSUMING_EVENT_TYPES = ("content_view", "event_attended", "email_click")
"""Activity types whose ``content_key`` means the member consumed that item."""

HISTORY_LIMIT = 20
"""Most recent consumed items that count as a member's history (interest and reasons)."""

_EXPECTATIONS_QUESTION = "expectations"
_GOALS_QUESTION = "goals"
# A message in any of these states has reached, or is about to reach, the member: the items it
# carries are not recommended again. Failed and suppressed messages never reached them.
_DELIVERED_STATUSES = (
    MessageStatus.QUEUED,
    MessageStatus.SENDING,
    MessageStatus.SENT,
    MessageStatus.UNKNOWN,
)


@dataclass(frozen=True)
class MatchSummary:
    """What one call of ``recommend_for_members`` did.

    Attributes:
        run_id: The match run the recommendations belong to.
        members: Members processed (ids that name no member are skipped).
        recommendations: Recommendation rows written.
        members_without_items: Members left with no eligible item at all.
    """

    run_id: int
    members: int
    recommendations: int
    members_without_items: int


@dataclass(frozen=True)
class RecommendedItem:
    """A recommended content item as the journey engine and email templates see it.

    Attributes:
        key: The content item's key.
        title: Its title.
        url: Where it lives.
        kind: article, event, webinar, masterclass or discussion.
        summary: Its short summary.
        language: ``en`` or ``fr``.
        reason: Why it is recommended, in the member's language.
        score: The ranking score (higher is better).
        event_start: When the event starts, for events.
    """

    key: str
    title: str
    url: str
    kind: str
    summary: str
    language: str
    reason: str
    score: float
    event_start: dt.datetime | None = None


def start_match_run(
    session: Session,
    embedder: Embedder,
    weights: RankingWeights | None = None,
    k: int = 10,
) -> int:
    """Record a new match run (model and parameters) and return its id.

    Args:
        session: The database session (the caller commits).
        embedder: The embedding model the run ranks with.
        weights: The ranking weights the run uses.
        k: Recommendations per member.

    Returns:
        The id of the new ``MatchRun`` row.
    """
    weights = weights or RankingWeights()
    run = MatchRun(model=embedder.name, params={"k": k, "weights": weights.model_dump()})
    session.add(run)
    session.flush()
    return run.id


def _language(code: str | None) -> str:
    return (code or "en")[:2].lower()


def item_available(items: Sequence[ContentItem], now: dt.datetime) -> np.ndarray:
    """Which items can be recommended at ``now``, whoever the member.

    An item is available when it is published, not expired, and (for events) not started yet.

    Args:
        items: The content items.
        now: The current time (timezone-aware).

    Returns:
        An ``(len(items),)`` bool array.
    """
    return np.array(
        [
            (item.published_at is None or item.published_at <= now)
            and (item.expires_at is None or item.expires_at > now)
            and (item.event_start is None or item.event_start >= now)
            for item in items
        ],
        dtype=bool,
    )


def item_freshness(
    items: Sequence[ContentItem], now: dt.datetime, half_life_days: float
) -> np.ndarray:
    """Freshness of each item in ``[0, 1]``: recently published, or an event coming up soon.

    Freshness halves every ``half_life_days`` since publication; for an event still to come it
    is at least what the time left until the event gives. An undated item counts as half fresh.

    Args:
        items: The content items.
        now: The current time (timezone-aware).
        half_life_days: Days after which freshness halves.

    Returns:
        An ``(len(items),)`` float array.
    """

    def days(delta: dt.timedelta) -> float:
        return max(delta.total_seconds(), 0.0) / 86_400.0

    fresh = np.full(len(items), 0.5, dtype=np.float64)
    for index, item in enumerate(items):
        values = []
        if item.published_at is not None:
            values.append(0.5 ** (days(now - item.published_at) / half_life_days))
        if item.event_start is not None and item.event_start >= now:
            values.append(0.5 ** (days(item.event_start - now) / half_life_days))
        if values:
            fresh[index] = max(values)
    return fresh


def _message_item_keys(context: Any) -> Iterable[str]:
    """The content keys a message context lists under ``items`` (keys or dicts with a key)."""
    if not isinstance(context, dict):
        return ()
    listed = context.get("items") or ()
    if isinstance(listed, dict):
        listed = list(listed.values())
    keys = []
    for entry in listed if isinstance(listed, list | tuple) else ():
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("key"), str):
            keys.append(entry["key"])
    return keys


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


@dataclass
class _Chunk:
    """Everything loaded for a chunk of members, rows in the order of ``member_ids``."""

    member_ids: list[int]
    languages: list[str]
    interest: np.ndarray
    segment_interest: np.ndarray
    segment_labels: list[str | None]
    history: list[list[tuple[int, str]]]
    excluded: np.ndarray
    answers: list[str | None]
    goals: list[list[str]]


def _load_chunk(
    session: Session,
    member_ids: Sequence[int],
    items: Sequence[ContentItem],
    dim: int,
) -> _Chunk:
    members = session.execute(
        select(Member.id, Member.language).where(Member.id.in_(member_ids)).order_by(Member.id)
    ).all()
    ids = [row.id for row in members]
    row_of = {member_id: row for row, member_id in enumerate(ids)}
    m, n = len(ids), len(items)
    column_of = {item.key: column for column, item in enumerate(items)}

    interest = np.zeros((m, dim), dtype=np.float32)
    for member_id, vector in session.execute(
        select(MemberProfile.member_id, MemberProfile.interest).where(
            MemberProfile.member_id.in_(ids), MemberProfile.interest.is_not(None)
        )
    ):
        if vector is not None and vector.shape == (dim,):
            interest[row_of[member_id]] = vector

    segment_interest = np.zeros((m, dim), dtype=np.float32)
    segment_labels: list[str | None] = [None] * m
    latest_run = session.scalar(select(func.max(SegmentationRun.id)))
    if latest_run is not None:
        memberships = session.execute(
            select(
                SegmentMembership.member_id,
                SegmentMembership.segment_id,
                SegmentMembership.distance,
                Segment.kind,
                Segment.label,
                Segment.interest,
            )
            .join(Segment, Segment.id == SegmentMembership.segment_id)
            .where(SegmentMembership.run_id == latest_run, SegmentMembership.member_id.in_(ids))
        ).all()
        # A member may sit in a cluster and in rule-based segments: the cluster wins, then the
        # segment with an interest vector, then the closest, then the oldest segment (rows come
        # in no defined order, and PostgreSQL's differs from SQLite's).
        memberships.sort(
            key=lambda row: (
                row.kind != "cluster",
                row.interest is None,
                row.distance if row.distance is not None else np.inf,
                row.segment_id,
            ),
            reverse=True,
        )
        for row in memberships:  # the best membership of each member is written last
            index = row_of[row.member_id]
            segment_labels[index] = row.label
            if row.interest is not None and row.interest.shape == (dim,):
                segment_interest[index] = row.interest
            else:
                segment_interest[index] = 0.0

    excluded = np.zeros((m, n), dtype=bool)
    history: list[list[tuple[int, str]]] = [[] for _ in range(m)]
    consumed = session.execute(
        select(ActivityEvent.member_id, ActivityEvent.content_key, ActivityEvent.type)
        .where(
            ActivityEvent.member_id.in_(ids),
            ActivityEvent.type.in_(CONSUMING_EVENT_TYPES),
            ActivityEvent.content_key.is_not(None),
        )
        .order_by(ActivityEvent.occurred_at.desc(), ActivityEvent.id.desc())
    )
    for member_id, content_key, event_type in consumed:
        column = column_of.get(content_key)
        if column is None:
            continue
        row = row_of[member_id]
        if not excluded[row, column] and len(history[row]) < HISTORY_LIMIT:
            history[row].append((column, event_type))
        excluded[row, column] = True

    for member_id, context in session.execute(
        select(Message.member_id, Message.context).where(
            Message.member_id.in_(ids), Message.status.in_(_DELIVERED_STATUSES)
        )
    ):
        for key in _message_item_keys(context):
            column = column_of.get(key)
            if column is not None:
                excluded[row_of[member_id], column] = True

    answers: list[str | None] = [None] * m
    goals: list[list[str]] = [[] for _ in range(m)]
    for member_id, question_key, value in session.execute(
        select(Answer.member_id, Answer.question_key, Answer.value).where(
            Answer.member_id.in_(ids),
            Answer.question_key.in_((_EXPECTATIONS_QUESTION, _GOALS_QUESTION)),
        )
    ):
        row = row_of[member_id]
        if question_key == _EXPECTATIONS_QUESTION and isinstance(value, str) and value.strip():
            answers[row] = value.strip()
        elif question_key == _GOALS_QUESTION:
            chosen = value if isinstance(value, list) else [value]
            goals[row] = [goal for goal in chosen if isinstance(goal, str) and goal]

    return _Chunk(
        member_ids=ids,
        languages=[_language(row.language) for row in members],
        interest=interest,
        segment_interest=segment_interest,
        segment_labels=segment_labels,
        history=history,
        excluded=excluded,
        answers=answers,
        goals=goals,
    )


def _popularity(session: Session, items: Sequence[ContentItem]) -> np.ndarray:
    counts = dict(
        session.execute(
            select(ActivityEvent.content_key, func.count())
            .where(
                ActivityEvent.type.in_(CONSUMING_EVENT_TYPES),
                ActivityEvent.content_key.is_not(None),
            )
            .group_by(ActivityEvent.content_key)
        ).all()
    )
    return np.array([counts.get(item.key, 0) for item in items], dtype=np.float64)


def _member_vectors(chunk: _Chunk, item_vectors: np.ndarray, history_weight: float) -> np.ndarray:
    """Stated interest plus the mean of recently consumed items, as unit vectors."""
    m, n = chunk.excluded.shape
    recent = np.zeros((m, n), dtype=np.float32)
    for row, consumed in enumerate(chunk.history):
        recent[row, [column for column, _ in consumed]] = 1.0
    history = _unit_rows(recent @ item_vectors) if n else np.zeros_like(chunk.interest)
    return _unit_rows(_unit_rows(chunk.interest) + history_weight * history)


def _evidence(
    session: Session,
    embedder: Embedder,
    chunk: _Chunk,
    items: Sequence[ContentItem],
    item_vectors: np.ndarray,
) -> tuple[list[list[Evidence]], np.ndarray, np.ndarray]:
    """Each member's evidence, padded: ``(evidence lists, (m, e, d) vectors, (m, e) mask)``."""
    texts = sorted(
        {answer for answer in chunk.answers if answer}
        | {goal.replace("_", " ") for goals in chunk.goals for goal in goals}
    )
    text_vectors = embed_texts_cached(session, embedder, texts)
    vector_of = dict(zip(texts, text_vectors, strict=True))

    evidence: list[list[Evidence]] = []
    vectors: list[list[np.ndarray]] = []
    for row, language in enumerate(chunk.languages):
        found: list[Evidence] = []
        found_vectors: list[np.ndarray] = []
        if chunk.answers[row]:
            found.append(Evidence(EvidenceKind.ANSWER, chunk.answers[row] or ""))
            found_vectors.append(vector_of[chunk.answers[row] or ""])
        for goal in chunk.goals[row]:
            found.append(Evidence(EvidenceKind.GOAL, goal_label(goal, language)))
            found_vectors.append(vector_of[goal.replace("_", " ")])
        for column, event_type in chunk.history[row]:
            kind = EvidenceKind.ATTENDED if event_type == "event_attended" else EvidenceKind.READ
            found.append(Evidence(kind, items[column].title))
            found_vectors.append(item_vectors[column])
        evidence.append(found)
        vectors.append(found_vectors)

    m, dim = len(chunk.member_ids), embedder.dim
    width = max((len(found) for found in evidence), default=0)
    padded = np.zeros((m, width, dim), dtype=np.float32)
    mask = np.zeros((m, width), dtype=bool)
    for row, found_vectors in enumerate(vectors):
        if found_vectors:
            padded[row, : len(found_vectors)] = np.stack(found_vectors)
            mask[row, : len(found_vectors)] = True
    return evidence, padded, mask


def recommend_for_members(
    session: Session,
    embedder: Embedder,
    member_ids: Sequence[int],
    now: dt.datetime,
    k: int = 10,
    weights: RankingWeights | None = None,
    *,
    run_id: int | None = None,
) -> MatchSummary:
    """Rank content for a chunk of members and replace their recommendations, with reasons.

    Eligible items are in the member's language, published, not expired, not past events, and
    neither consumed (viewed, attended, clicked) nor carried by a message sent to the member.
    The chunk's previous recommendations are deleted; the caller commits.

    Args:
        session: The database session.
        embedder: The embedding model (the one profiles and segments were built with).
        member_ids: The members of the chunk.
        now: The current time (timezone-aware).
        k: Recommendations per member.
        weights: Ranking weights; the defaults when none.
        run_id: The match run to file the rows under; a new one is started when none.

    Returns:
        A summary: members processed, rows written, members left without any eligible item.
    """
    weights = weights or RankingWeights()
    if run_id is None:
        run_id = start_match_run(session, embedder, weights, k)
    items, item_vectors = load_content_vectors(session, embedder)
    chunk = _load_chunk(session, list(member_ids), items, embedder.dim)
    m = len(chunk.member_ids)
    session.execute(delete(Recommendation).where(Recommendation.member_id.in_(chunk.member_ids)))
    if m == 0:
        return MatchSummary(run_id=run_id, members=0, recommendations=0, members_without_items=0)

    item_languages = np.array([_language(item.language) for item in items], dtype=object)
    member_languages = np.array(chunk.languages, dtype=object)
    same_language = member_languages[:, None] == item_languages[None, :]
    item_ok = same_language & item_available(items, now)[None, :]
    indices, scores = rank_content(
        member_interest=_member_vectors(chunk, item_vectors, weights.history),
        segment_interest=_unit_rows(chunk.segment_interest),
        excluded=chunk.excluded,
        item_vectors=item_vectors,
        item_ok=item_ok,
        freshness=item_freshness(items, now, weights.freshness_half_life_days),
        weights=weights,
        k=k,
        popularity=_popularity(session, items),
    )

    evidence, evidence_vectors, evidence_mask = _evidence(
        session, embedder, chunk, items, item_vectors
    )
    recommended_vectors = (
        item_vectors[np.clip(indices, 0, None)]
        if len(items)
        else np.zeros((m, k, embedder.dim), dtype=np.float32)
    )
    best, similarity = closest_evidence(evidence_vectors, evidence_mask, recommended_vectors)

    rows: list[dict[str, Any]] = []
    for row, member_id in enumerate(chunk.member_ids):
        language = chunk.languages[row]
        for position in range(k):
            column = int(indices[row, position])
            if column < 0:
                break
            if similarity[row, position] >= weights.reason_min_similarity:
                reason = reason_text(evidence[row][int(best[row, position])], language)
            else:
                reason = popular_reason(chunk.segment_labels[row], language)
            rows.append(
                {
                    "member_id": member_id,
                    "content_item_id": items[column].id,
                    "run_id": run_id,
                    "rank": position + 1,
                    "score": float(scores[row, position]),
                    "reason": reason,
                }
            )
    if rows:
        session.execute(insert(Recommendation), rows)
    return MatchSummary(
        run_id=run_id,
        members=m,
        recommendations=len(rows),
        members_without_items=int((indices[:, 0] < 0).sum()) if k else m,
    )


def recommendations_for(
    session: Session,
    member_id: int,
    limit: int | None = None,
    *,
    now: dt.datetime | None = None,
) -> list[RecommendedItem]:
    """A member's current recommendations, best first.

    Args:
        session: The database session.
        member_id: The member.
        limit: At most this many items; all when none.
        now: When given, items that expired or events that started since the ranking are
            left out.

    Returns:
        The recommended items with their reasons.
    """
    query = (
        select(Recommendation, ContentItem)
        .join(ContentItem, ContentItem.id == Recommendation.content_item_id)
        .where(Recommendation.member_id == member_id)
        .order_by(Recommendation.rank)
    )
    if now is not None:
        query = query.where(
            or_(ContentItem.expires_at.is_(None), ContentItem.expires_at > now),
            or_(ContentItem.event_start.is_(None), ContentItem.event_start >= now),
        )
    if limit is not None:
        query = query.limit(limit)
    return [
        RecommendedItem(
            key=item.key,
            title=item.title,
            url=item.url,
            kind=item.kind,
            summary=item.summary,
            language=item.language,
            reason=recommendation.reason,
            score=recommendation.score,
            event_start=item.event_start,
        )
        for recommendation, item in session.execute(query).tuples()
    ]
