"""Offline evaluation: nurture's ranking against strong baselines on held-out interactions.

The data comes from the workspace's own database, split in time, or from a folder of files in
a documented format (``docs/evaluation.md``). The engine is nurture's own nightly stages run on
the training data only (:mod:`nurture.evaluation.ranker`); the baselines rank the same
candidates; the metrics are pure functions (:mod:`nurture.evaluation.metrics`).
"""

from nurture.evaluation.baselines import (
    engagement_matrix,
    item_knn_similarity,
    item_popularity,
    recommend_group_popular,
    recommend_item_knn,
    recommend_learned,
    recommend_popular,
    recommend_random,
    top_k,
)
from nurture.evaluation.breakdowns import (
    GROUPINGS,
    HISTORY_BUCKETS,
    breakdown_metrics,
    history_bucket,
    member_groups,
    training_items,
)
from nurture.evaluation.data import (
    EvaluationData,
    EvaluationDataError,
    Interactions,
    Mode,
    temporal_cutoff,
)
from nurture.evaluation.folder import FolderDataset, load_dataset_folder, stage_folder
from nurture.evaluation.metrics import (
    catalogue_coverage,
    hit_rate_at_k,
    ndcg_at_k,
    ndcg_curve,
    precision_at_k,
    precision_curve,
    recall_at_k,
    recommended_gains,
)
from nurture.evaluation.ranker import EngineRanking, nurture_sandbox, rank_with_nurture
from nurture.evaluation.report import (
    BASELINES,
    CURVE_METRICS,
    ENGINE,
    METRICS,
    PER_MEMBER_METRICS,
    RECOMMENDERS,
    EvaluationReport,
    RecommenderRun,
    lists_from_keys,
    rank_and_score,
    score_recommenders,
    timings_of,
)
from nurture.evaluation.runs import DEFAULT_TEST_SHARE, evaluate_folder, evaluate_workspace
from nurture.evaluation.workspace import (
    WorkspaceInteraction,
    load_interactions,
    split_in_time,
    stage_workspace,
)

__all__ = [
    "BASELINES",
    "CURVE_METRICS",
    "DEFAULT_TEST_SHARE",
    "ENGINE",
    "GROUPINGS",
    "HISTORY_BUCKETS",
    "METRICS",
    "PER_MEMBER_METRICS",
    "RECOMMENDERS",
    "EngineRanking",
    "EvaluationData",
    "EvaluationDataError",
    "EvaluationReport",
    "FolderDataset",
    "Interactions",
    "Mode",
    "RecommenderRun",
    "WorkspaceInteraction",
    "breakdown_metrics",
    "catalogue_coverage",
    "engagement_matrix",
    "evaluate_folder",
    "evaluate_workspace",
    "history_bucket",
    "hit_rate_at_k",
    "item_knn_similarity",
    "item_popularity",
    "lists_from_keys",
    "load_dataset_folder",
    "load_interactions",
    "member_groups",
    "ndcg_at_k",
    "ndcg_curve",
    "nurture_sandbox",
    "precision_at_k",
    "precision_curve",
    "rank_and_score",
    "rank_with_nurture",
    "recall_at_k",
    "recommend_group_popular",
    "recommend_item_knn",
    "recommend_learned",
    "recommend_popular",
    "recommend_random",
    "recommended_gains",
    "score_recommenders",
    "split_in_time",
    "stage_folder",
    "stage_workspace",
    "temporal_cutoff",
    "timings_of",
    "top_k",
    "training_items",
]
