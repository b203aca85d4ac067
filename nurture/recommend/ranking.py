"""A pure, vectorised ranker: relevance blended with freshness, then diversified by MMR.

Everything works on a chunk of members at once with matrix products; only the ``k`` positions
of the diversification are a Python loop.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RankingWeights", "rank_content", "select_diverse"]


class RankingWeights(BaseModel):
    """How the ranker blends its signals; stored with each match run.

    A member's relevance for an item is ``member * cos(member, item) + segment *
    cos(segment, item)``; when one of the two interests is missing, the other takes the whole
    ``member + segment`` share; when both are missing, normalised popularity does.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    member: float = Field(default=0.6, ge=0, description="Weight of the member's own interest.")
    segment: float = Field(default=0.25, ge=0, description="Weight of the segment's interest.")
    freshness: float = Field(default=0.15, ge=0, description="Weight of the item's freshness.")
    mmr_lambda: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Maximal marginal relevance: 1 ranks by score alone, lower favours variety.",
    )
    duplicate_similarity: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Items at least this similar (cosine) to one already listed are left out.",
    )
    history: float = Field(
        default=0.5,
        ge=0,
        description="Weight of the content a member consumed, added to their stated interest.",
    )
    freshness_half_life_days: float = Field(
        default=60.0, gt=0, description="Days after which an item's freshness halves."
    )
    reason_min_similarity: float = Field(
        default=0.3,
        ge=-1,
        le=1,
        description="Below this cosine, a member's evidence is too weak to explain an item.",
    )


def _present(vectors: np.ndarray) -> np.ndarray:
    """Rows that hold a vector (an all-zero or non-finite row means "no vector")."""
    finite = np.isfinite(vectors).all(axis=1)
    return finite & (np.abs(np.nan_to_num(vectors)).sum(axis=1) > 0)


def select_diverse(
    scores: np.ndarray,
    item_vectors: np.ndarray,
    k: int,
    mmr_lambda: float,
    duplicate_similarity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``k`` items per row by maximal marginal relevance, never two near-duplicates.

    At each position, every row takes the eligible item maximising
    ``mmr_lambda * score - (1 - mmr_lambda) * max cos(item, items already taken)``; items whose
    cosine to a taken item reaches ``duplicate_similarity`` are no longer eligible.

    Args:
        scores: ``(m, n)`` relevance scores, ``-inf`` where an item is not eligible.
        item_vectors: ``(n, d)`` unit-length item embeddings.
        k: Items to pick per row.
        mmr_lambda: Trade-off between relevance (1) and variety (0).
        duplicate_similarity: Cosine from which two items count as near-duplicates.

    Returns:
        ``(indices, picked_scores)``, both ``(m, k)``: item indices (``-1`` once a row runs out
        of eligible items) and their relevance scores (``nan`` there).
    """
    m, n = scores.shape
    indices = np.full((m, k), -1, dtype=np.int64)
    picked = np.full((m, k), np.nan, dtype=np.float64)
    if m == 0 or n == 0 or k == 0:
        return indices, picked
    available = np.isfinite(scores)
    max_similarity = np.zeros((m, n), dtype=np.float32)
    rows = np.arange(m)
    for position in range(k):
        mmr = mmr_lambda * scores - (1.0 - mmr_lambda) * max_similarity
        mmr = np.where(available, mmr, -np.inf)
        best = np.argmax(mmr, axis=1)
        has_pick = available[rows, best]
        if not has_pick.any():
            break
        indices[has_pick, position] = best[has_pick]
        picked[has_pick, position] = scores[rows[has_pick], best[has_pick]]
        available[rows[has_pick], best[has_pick]] = False
        similarity = item_vectors[best[has_pick]] @ item_vectors.T
        max_similarity[has_pick] = np.maximum(max_similarity[has_pick], similarity)
        available[has_pick] &= similarity < duplicate_similarity
    return indices, picked


def rank_content(
    member_interest: np.ndarray,
    segment_interest: np.ndarray,
    excluded: np.ndarray,
    item_vectors: np.ndarray,
    item_ok: np.ndarray,
    freshness: np.ndarray,
    weights: RankingWeights,
    k: int,
    popularity: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank content items for a chunk of members, with diversity.

    Args:
        member_interest: ``(m, d)`` unit vectors of the members' interests; an all-zero (or
            ``nan``) row means the member has none and falls back to their segment's.
        segment_interest: ``(m, d)`` interest of each member's current segment; an all-zero row
            means none, and the member falls back to popularity.
        excluded: ``(m, n)`` bool, true where the member already received or consumed the item.
        item_vectors: ``(n, d)`` unit-length item embeddings.
        item_ok: ``(m, n)`` bool eligibility (language, not expired, not a past event...).
        freshness: ``(n,)`` freshness of each item, in ``[0, 1]``.
        weights: How the signals blend and how much variety MMR enforces.
        k: Items per member.
        popularity: ``(n,)`` non-negative popularity (e.g. count of consuming events), used for
            members with no interest at all; none means every item is as popular.

    Returns:
        ``(indices, scores)``, both ``(m, k)``: item indices, best first (``-1`` when a member
        has fewer than ``k`` eligible items), and their scores (``nan`` there).

    Raises:
        ValueError: If the shapes do not agree.
    """
    m, d = member_interest.shape
    n = item_vectors.shape[0]
    if segment_interest.shape != (m, d) or item_vectors.shape[1:] != (d,):
        raise ValueError(
            f"interest shapes {member_interest.shape} and {segment_interest.shape} do not match "
            f"item vectors {item_vectors.shape}: expected (m, d), (m, d) and (n, d)"
        )
    if excluded.shape != (m, n) or item_ok.shape != (m, n) or freshness.shape != (n,):
        raise ValueError(
            f"expected excluded and item_ok of shape {(m, n)} and freshness of shape {(n,)}, "
            f"found {excluded.shape}, {item_ok.shape} and {freshness.shape}"
        )
    if k < 0:
        raise ValueError(f"k must be at least 0, found {k}")
    items = np.asarray(item_vectors, dtype=np.float32)
    has_member = _present(member_interest)
    has_segment = _present(segment_interest)
    member_similarity = np.nan_to_num(member_interest).astype(np.float32) @ items.T
    segment_similarity = np.nan_to_num(segment_interest).astype(np.float32) @ items.T

    share = weights.member + weights.segment
    member_weight = np.where(has_member, weights.member, 0.0)
    segment_weight = np.where(has_segment, weights.segment, 0.0)
    total = member_weight + segment_weight
    scale = np.divide(share, total, out=np.zeros_like(total), where=total > 0)
    relevance = (scale * member_weight)[:, None] * member_similarity + (scale * segment_weight)[
        :, None
    ] * segment_similarity

    if popularity is None:
        popular = np.ones(n, dtype=np.float64)
    else:
        counts = np.log1p(np.clip(np.asarray(popularity, dtype=np.float64), 0, None))
        top = counts.max(initial=0.0)
        popular = counts / top if top > 0 else np.ones(n, dtype=np.float64)
    cold = total == 0
    relevance = np.where(cold[:, None], share * popular[None, :], relevance)

    scores = relevance + weights.freshness * np.asarray(freshness, dtype=np.float64)[None, :]
    scores = np.where(item_ok & ~excluded, scores, -np.inf)
    return select_diverse(scores, items, k, weights.mmr_lambda, weights.duplicate_similarity)
