"""Segmentation: labelled clusters with stable identities, rule segments, effective membership."""

from nurture.segmentation.assignments import (
    AssignmentChanges,
    SegmentEntry,
    effective_memberships,
    effective_segments,
    segment_entries,
)
from nurture.segmentation.identity import match_by_overlap, match_segments
from nurture.segmentation.incremental import assign_changed_members
from nurture.segmentation.labels import (
    SegmentDescription,
    distinctive_answers,
    distinctive_terms,
    label_segments,
    top_terms,
)
from nurture.segmentation.model import DEFAULT_BLOCK_WEIGHTS, SegmentModel, resolve_block_weights
from nurture.segmentation.rules import (
    RuleSegmentationSummary,
    RuleSegmentsPlan,
    SegmentRule,
    SegmentRules,
    evaluate_rule_segments,
    load_segment_rules,
    plan_rule_segments,
    read_segment_rules,
)
from nurture.segmentation.segments import (
    DEFAULT_MOVE_AFTER,
    PlannedSegment,
    PreviousSegment,
    SegmentationInputs,
    SegmentationPlan,
    SegmentationSummary,
    current_segments,
    load_segmentation_inputs,
    plan_segmentation,
    rename_segment,
    segment_members,
)

__all__ = [
    "DEFAULT_BLOCK_WEIGHTS",
    "DEFAULT_MOVE_AFTER",
    "AssignmentChanges",
    "PlannedSegment",
    "PreviousSegment",
    "RuleSegmentationSummary",
    "RuleSegmentsPlan",
    "SegmentDescription",
    "SegmentEntry",
    "SegmentModel",
    "SegmentRule",
    "SegmentRules",
    "SegmentationInputs",
    "SegmentationPlan",
    "SegmentationSummary",
    "assign_changed_members",
    "current_segments",
    "distinctive_answers",
    "distinctive_terms",
    "effective_memberships",
    "effective_segments",
    "evaluate_rule_segments",
    "label_segments",
    "load_segment_rules",
    "load_segmentation_inputs",
    "match_by_overlap",
    "match_segments",
    "plan_rule_segments",
    "plan_segmentation",
    "read_segment_rules",
    "rename_segment",
    "resolve_block_weights",
    "segment_entries",
    "segment_members",
    "top_terms",
]
