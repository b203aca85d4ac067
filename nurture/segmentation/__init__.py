"""Segmentation: clustering of member profiles into labelled segments with stable identities."""

from nurture.segmentation.identity import match_segments
from nurture.segmentation.labels import (
    SegmentDescription,
    distinctive_answers,
    label_segments,
    top_terms,
)
from nurture.segmentation.model import DEFAULT_BLOCK_WEIGHTS, SegmentModel
from nurture.segmentation.segments import (
    CLUSTER_KIND,
    SegmentationSummary,
    current_segments,
    segment_members,
)

__all__ = [
    "CLUSTER_KIND",
    "DEFAULT_BLOCK_WEIGHTS",
    "SegmentDescription",
    "SegmentModel",
    "SegmentationSummary",
    "current_segments",
    "distinctive_answers",
    "label_segments",
    "match_segments",
    "segment_members",
    "top_terms",
]
