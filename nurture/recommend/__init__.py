"""Content matching: content embeddings, a vectorised per-member ranking, readable reasons."""

from nurture.recommend.content import content_text, embed_content_items, load_content_vectors
from nurture.recommend.matching import (
    CONSUMING_EVENT_TYPES,
    MatchSummary,
    RecommendedItem,
    item_available,
    item_freshness,
    recommend_for_members,
    recommendations_for,
    start_match_run,
)
from nurture.recommend.ranking import RankingWeights, rank_content, select_diverse
from nurture.recommend.reasons import Evidence, EvidenceKind, goal_label, reason_text

__all__ = [
    "CONSUMING_EVENT_TYPES",
    "Evidence",
    "EvidenceKind",
    "MatchSummary",
    "RankingWeights",
    "RecommendedItem",
    "content_text",
    "embed_content_items",
    "goal_label",
    "item_available",
    "item_freshness",
    "load_content_vectors",
    "rank_content",
    "reason_text",
    "recommend_for_members",
    "recommendations_for",
    "select_diverse",
    "start_match_run",
]
