"""The kinds of segments (``Segment.kind``)."""

from typing import Final

__all__ = ["CLUSTER_KIND", "RULE_KIND"]

CLUSTER_KIND: Final = "cluster"
"""Segments found by clustering; their keys are ``seg-<number>``."""

RULE_KIND: Final = "rule"
"""Segments a marketer declares by rule in ``segments.yaml``."""
