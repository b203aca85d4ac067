"""Profiling: each member's raw features, interest vector and lifecycle stage."""

from nurture.profiling.features import activity_features, answer_features
from nurture.profiling.layout import (
    ACTIVITY_WINDOWS,
    BLOCKS,
    EVENT_TYPES,
    MIX_WINDOW,
    FeatureLayout,
    QuestionnaireLike,
    english_label,
)
from nurture.profiling.lifecycle import ActivitySummary, lifecycle_stage
from nurture.profiling.profiles import (
    MemberFacts,
    PlannedProfile,
    ProfileSummary,
    build_profiles,
    interest_question_keys,
    lifecycle_stages,
    load_activity_summaries,
    plan_profiles,
)

__all__ = [
    "ACTIVITY_WINDOWS",
    "BLOCKS",
    "EVENT_TYPES",
    "MIX_WINDOW",
    "ActivitySummary",
    "FeatureLayout",
    "MemberFacts",
    "PlannedProfile",
    "ProfileSummary",
    "QuestionnaireLike",
    "activity_features",
    "answer_features",
    "build_profiles",
    "english_label",
    "interest_question_keys",
    "lifecycle_stage",
    "lifecycle_stages",
    "load_activity_summaries",
    "plan_profiles",
]
