"""Content matching: content embeddings, a vectorised per-member ranking, readable reasons."""

from nurture.recommend.changes import (
    Watermark,
    complete_watermark,
    last_watermark,
    members_to_match,
    members_to_profile,
    take_watermark,
)
from nurture.recommend.collaborative import EASE
from nurture.recommend.content_vectors import (
    content_text,
    embed_content_items,
    load_content_vectors,
)
from nurture.recommend.export import (
    EXPORT_COLUMNS,
    EXPORT_FORMATS,
    ExportedRecommendation,
    ExportFormat,
    iter_recommendations,
    write_recommendations,
)
from nurture.recommend.groups import GroupPopularity, prior_strength
from nurture.recommend.matching import (
    CONSUMING_EVENT_TYPES,
    MatchSummary,
    RankingSignals,
    RecommendedItem,
    item_available,
    item_freshness,
    load_ranking_signals,
    recommend_for_members,
    recommendations_for,
    recommendations_of,
    start_match_run,
)
from nurture.recommend.ranking import (
    RankingWeights,
    co_engagement_scores,
    learn_co_engagement,
    rank_content,
    scale_collaborative,
    select_diverse,
)
from nurture.recommend.ranking_file import (
    RankingFile,
    load_ranking_file,
    ranking_weight_sets,
    write_ranking_file,
)
from nurture.recommend.reasons import (
    Evidence,
    EvidenceKind,
    collaborative_reason,
    goal_label,
    reason_text,
)

__all__ = [
    "CONSUMING_EVENT_TYPES",
    "EASE",
    "EXPORT_COLUMNS",
    "EXPORT_FORMATS",
    "Evidence",
    "EvidenceKind",
    "ExportFormat",
    "ExportedRecommendation",
    "GroupPopularity",
    "MatchSummary",
    "RankingFile",
    "RankingSignals",
    "RankingWeights",
    "RecommendedItem",
    "Watermark",
    "co_engagement_scores",
    "collaborative_reason",
    "complete_watermark",
    "content_text",
    "embed_content_items",
    "goal_label",
    "item_available",
    "item_freshness",
    "iter_recommendations",
    "last_watermark",
    "learn_co_engagement",
    "load_content_vectors",
    "load_ranking_file",
    "load_ranking_signals",
    "members_to_match",
    "members_to_profile",
    "prior_strength",
    "rank_content",
    "ranking_weight_sets",
    "reason_text",
    "recommend_for_members",
    "recommendations_for",
    "recommendations_of",
    "scale_collaborative",
    "select_diverse",
    "start_match_run",
    "take_watermark",
    "write_ranking_file",
    "write_recommendations",
]
