"""Ranking metrics at a cut-off ``k``, as pure vectorised functions over a chunk of members.

Every function takes the recommended lists as an ``(m, L)`` array of item indices, best first,
padded with ``-1`` when a recommender has fewer than ``L`` items for a member, and the held-out
relevance as an ``(m, n)`` array: the gain of each item for each member, ``0`` for an item the
member did not interact with. Only the first ``k`` positions count. Per-member functions return
an ``(m,)`` array, so that a caller can average over any group of members.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "catalogue_coverage",
    "hit_rate_at_k",
    "ndcg_at_k",
    "ndcg_curve",
    "precision_at_k",
    "precision_curve",
    "recall_at_k",
    "recommended_gains",
]


def _check(recommended: np.ndarray, relevance: np.ndarray, k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, found {k}")
    if recommended.ndim != 2 or relevance.ndim != 2:
        raise ValueError(
            f"expected 2-D recommended (m, L) and relevance (m, n), found shapes "
            f"{recommended.shape} and {relevance.shape}"
        )
    if recommended.shape[0] != relevance.shape[0]:
        raise ValueError(
            f"recommended has {recommended.shape[0]} rows and relevance {relevance.shape[0]}: "
            "expected one row per member in both"
        )


def recommended_gains(recommended: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """The gain of each of the first ``k`` recommended items (``0`` for padding and misses).

    Args:
        recommended: ``(m, L)`` item indices, best first, ``-1`` for no item.
        relevance: ``(m, n)`` gains, ``0`` where an item is not relevant.
        k: Cut-off.

    Returns:
        An ``(m, k)`` float array (lists shorter than ``k`` are padded with ``0``).

    Raises:
        ValueError: If ``k`` is below 1 or the shapes do not agree.
    """
    _check(recommended, relevance, k)
    m = recommended.shape[0]
    top = np.full((m, k), -1, dtype=np.int64)
    width = min(k, recommended.shape[1])
    top[:, :width] = recommended[:, :width]
    present = top >= 0
    rows = np.arange(m)[:, None]
    gains = np.asarray(relevance, dtype=np.float64)[rows, np.where(present, top, 0)]
    return np.where(present, gains, 0.0)


def _hits(recommended: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    return (recommended_gains(recommended, relevance, k) > 0).sum(axis=1).astype(np.float64)


def precision_at_k(recommended: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """Share of the first ``k`` slots that hold a relevant item (an empty slot is a miss).

    Args:
        recommended: ``(m, L)`` item indices, best first, ``-1`` for no item.
        relevance: ``(m, n)`` gains, ``0`` where an item is not relevant.
        k: Cut-off.

    Returns:
        ``(m,)`` values in ``[0, 1]``.
    """
    return _hits(recommended, relevance, k) / k


def recall_at_k(recommended: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """Share of a member's relevant items found in the first ``k`` recommendations.

    Args:
        recommended: ``(m, L)`` item indices, best first, ``-1`` for no item.
        relevance: ``(m, n)`` gains, ``0`` where an item is not relevant.
        k: Cut-off.

    Returns:
        ``(m,)`` values in ``[0, 1]``; ``nan`` for a member without any relevant item.
    """
    relevant = (np.asarray(relevance) > 0).sum(axis=1).astype(np.float64)
    hits = _hits(recommended, relevance, k)
    return np.divide(hits, relevant, out=np.full_like(hits, np.nan), where=relevant > 0)


def hit_rate_at_k(recommended: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """Whether at least one of the first ``k`` recommendations is relevant (1.0 or 0.0).

    Args:
        recommended: ``(m, L)`` item indices, best first, ``-1`` for no item.
        relevance: ``(m, n)`` gains, ``0`` where an item is not relevant.
        k: Cut-off.

    Returns:
        ``(m,)`` values, each ``0.0`` or ``1.0``.
    """
    return (_hits(recommended, relevance, k) > 0).astype(np.float64)


def _largest_gains(values: np.ndarray, depth: int) -> np.ndarray:
    """``(m, depth)`` each row's ``depth`` largest gains, in decreasing order (0 past its last).

    Gains are non-negative and mostly 0: only the positive ones are sorted, not whole rows.
    """
    rows, columns = np.nonzero(values > 0)
    gains = values[rows, columns]
    order = np.lexsort((-gains, rows))  # by row, largest first
    rows, gains = rows[order], gains[order]
    starts = np.searchsorted(rows, np.arange(values.shape[0]))
    rank = np.arange(len(rows)) - starts[rows]
    out = np.zeros((values.shape[0], depth), dtype=np.float64)
    kept = rank < depth
    out[rows[kept], rank[kept]] = gains[kept]
    return out


def ndcg_at_k(recommended: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """Normalised discounted cumulative gain of the first ``k`` recommendations.

    ``DCG = sum(gain_i / log2(i + 1))`` over positions ``i = 1..k`` with linear gains (the
    relevance values themselves, so binary relevance gives the usual binary nDCG); it is divided
    by the DCG of the ideal list, the member's ``k`` largest gains in decreasing order.

    Args:
        recommended: ``(m, L)`` item indices, best first, ``-1`` for no item.
        relevance: ``(m, n)`` non-negative gains, ``0`` where an item is not relevant.
        k: Cut-off.

    Returns:
        ``(m,)`` values in ``[0, 1]``; ``nan`` for a member without any relevant item.
    """
    gains = recommended_gains(recommended, relevance, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = gains @ discounts
    values = np.asarray(relevance, dtype=np.float64)
    depth = min(k, values.shape[1])
    if depth == 0:
        return np.full(values.shape[0], np.nan)
    ideal = _largest_gains(values, depth) @ discounts[:depth]
    return np.divide(dcg, ideal, out=np.full_like(dcg, np.nan), where=ideal > 0)


def precision_curve(recommended: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """Precision at each cut-off from 1 to ``k`` (column ``j``: :func:`precision_at_k` at j + 1).

    Args:
        recommended: ``(m, L)`` item indices, best first, ``-1`` for no item.
        relevance: ``(m, n)`` gains, ``0`` where an item is not relevant.
        k: The largest cut-off.

    Returns:
        ``(m, k)`` values in ``[0, 1]``.
    """
    hits = np.cumsum(recommended_gains(recommended, relevance, k) > 0, axis=1)
    return hits / np.arange(1, k + 1, dtype=np.float64)[None, :]


def ndcg_curve(recommended: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """The nDCG at each cut-off from 1 to ``k`` (column ``j``: :func:`ndcg_at_k` at j + 1).

    Args:
        recommended: ``(m, L)`` item indices, best first, ``-1`` for no item.
        relevance: ``(m, n)`` non-negative gains, ``0`` where an item is not relevant.
        k: The largest cut-off.

    Returns:
        ``(m, k)`` values in ``[0, 1]``; ``nan`` for a member without any relevant item.
    """
    gains = recommended_gains(recommended, relevance, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = np.cumsum(gains * discounts[None, :], axis=1)
    values = np.asarray(relevance, dtype=np.float64)
    depth = min(k, values.shape[1])
    ideal_gains = np.zeros((values.shape[0], k))
    if depth:
        ideal_gains[:, :depth] = _largest_gains(values, depth)
    ideal = np.cumsum(ideal_gains * discounts[None, :], axis=1)
    return np.divide(dcg, ideal, out=np.full_like(dcg, np.nan), where=ideal > 0)


def catalogue_coverage(recommended: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one member's first ``k`` items.

    Args:
        recommended: ``(m, L)`` item indices, best first, ``-1`` for no item.
        n_items: Size of the catalogue (the denominator).
        k: Cut-off.

    Returns:
        A value in ``[0, 1]`` (``0`` for an empty catalogue).

    Raises:
        ValueError: If ``k`` is below 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, found {k}")
    if n_items <= 0:
        return 0.0
    top = np.asarray(recommended)[:, :k]
    return float(np.unique(top[top >= 0]).size / n_items)
