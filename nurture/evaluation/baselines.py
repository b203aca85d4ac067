"""The baselines nurture's ranking is compared with: popularity and random, on the same candidates.

Both are pure functions over a chunk of members: they rank only the items a member may be
recommended (``candidates``), exactly like the engine, so that a difference in the metrics comes
from the ranking and not from which items were allowed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["item_popularity", "recommend_popular", "recommend_random", "top_k"]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The indices of each row's ``k`` highest finite scores, best first.

    Ties keep the lower index first, so results do not depend on the sort algorithm.

    Args:
        scores: ``(m, n)`` scores, ``-inf`` where an item may not be recommended.
        k: Items per row.

    Returns:
        ``(m, k)`` item indices, ``-1`` once a row runs out of finite scores.

    Raises:
        ValueError: If ``k`` is negative.
    """
    if k < 0:
        raise ValueError(f"k must be at least 0, found {k}")
    m, n = scores.shape
    out = np.full((m, k), -1, dtype=np.int64)
    depth = min(k, n)
    if depth == 0 or m == 0:
        return out
    order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    picked = np.take_along_axis(scores, order, axis=1)
    out[:, :depth] = np.where(np.isfinite(picked), order, -1)
    return out


def item_popularity(items: np.ndarray, weights: np.ndarray, n_items: int) -> np.ndarray:
    """Total interaction weight of each item.

    Args:
        items: ``(N,)`` item index of each interaction.
        weights: ``(N,)`` weight of each interaction.
        n_items: Size of the catalogue.

    Returns:
        An ``(n_items,)`` float array.
    """
    return np.bincount(items, weights=weights, minlength=n_items).astype(np.float64)


def recommend_popular(popularity: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Recommend each member the most popular of their candidate items.

    Args:
        popularity: ``(n,)`` popularity of each item (interactions in the training data).
        candidates: ``(m, n)`` bool, true where the item may be recommended to the member.
        k: Items per member.

    Returns:
        ``(m, k)`` item indices, most popular first, ``-1`` once a member runs out of candidates.
    """
    scores = np.where(candidates, np.asarray(popularity, dtype=np.float64)[None, :], -np.inf)
    return top_k(scores, k)


def recommend_random(candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Recommend each member ``k`` of their candidate items drawn uniformly, without repeats.

    Args:
        candidates: ``(m, n)`` bool, true where the item may be recommended to the member.
        k: Items per member.
        rng: The random generator (seeded by the caller, so a run can be repeated).

    Returns:
        ``(m, k)`` item indices, ``-1`` once a member runs out of candidates.
    """
    scores = np.where(candidates, rng.random(candidates.shape), -np.inf)
    return top_k(scores, k)
