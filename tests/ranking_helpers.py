"""Ranking weights shared by the recommend and evaluation tests."""

from __future__ import annotations

from typing import Any

POPULARITY_ALONE: dict[str, Any] = {
    "member": 0.0,
    "history": 0.0,
    "co_engagement": 0.0,
    "collaborative": 0.0,
    "segment": 0.0,
    "freshness": 0.0,
    "format": 0.0,
    "mmr_lambda": 1.0,
    "community_popularity": 1.0,
}
"""``RankingWeights`` fields that rank by the community's popularity alone, by score alone."""
