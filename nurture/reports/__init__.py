"""Reports for marketers: segment cards and the segment report (HTML, self-contained)."""

from nurture.reports.cards import (
    DistinctiveFeature,
    SegmentCard,
    SegmentDrift,
    mask_email,
    member_display_name,
    segment_cards,
)
from nurture.reports.html import render_segment_report, segment_colours
from nurture.reports.segment_map import DEFAULT_MAP_SAMPLE, MapPoint, segment_map

__all__ = [
    "DEFAULT_MAP_SAMPLE",
    "DistinctiveFeature",
    "MapPoint",
    "SegmentCard",
    "SegmentDrift",
    "mask_email",
    "member_display_name",
    "render_segment_report",
    "segment_cards",
    "segment_colours",
    "segment_map",
]
