"""The baselines nurture's ranking is compared with, on the same candidates.

Random, popularity, popularity within the member's answer groups, item-kNN and the learned
collaborative model alone (EASE). All are pure functions over a chunk of members: they rank
only the items a member may be recommended (``candidates``), exactly like the engine, so that
a difference in the metrics comes from the ranking and not from which items were allowed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nurture.evaluation.data import Interactions
from nurture.recommend import EASE

__all__ = [
    "engagement_matrix",
    "item_knn_similarity",
    "item_popularity",
    "recommend_group_popular",
    "recommend_item_knn",
    "recommend_learned",
    "recommend_popular",
    "recommend_random",
    "top_k",
]


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
    if depth * 4 >= n:
        order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    else:  # a large catalogue: sort only what can reach the first ``depth`` places
        order = np.empty((m, depth), dtype=np.int64)
        negated = -np.asarray(scores, dtype=np.float64)
        negated[np.isnan(negated)] = np.inf  # last, as the sort puts them
        bound = np.partition(negated, depth - 1, axis=1)[:, depth - 1]
        for row in range(m):
            reach = np.flatnonzero(negated[row] <= bound[row])  # ascending: ties by index
            order[row] = reach[np.argsort(negated[row, reach], kind="stable")[:depth]]
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


def engagement_matrix(train: Interactions, n_members: int, n_items: int) -> sp.csr_matrix:
    """The binary ``(n_members, n_items)`` training matrix: 1 where a member engaged."""
    matrix = sp.csr_matrix(
        (np.ones(len(train), dtype=np.float32), (train.member, train.item)),
        shape=(n_members, n_items),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _with_popularity_ties(scores: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Scores with popularity as the tie-breaker (a member without signal gets popularity)."""
    top = float(popularity.max(initial=0.0))
    tie = popularity / (top * 1e3) if top > 0 else np.zeros_like(popularity)
    spread = np.abs(scores).max(axis=1, keepdims=True)
    return scores + np.where(spread > 0, spread, 1.0) * tie[None, :]


def item_knn_similarity(engagement: sp.csr_matrix, neighbours: int = 50) -> sp.csr_matrix:
    """Item-item cosine similarity of the engagement matrix's columns, ``neighbours`` kept per item.

    Args:
        engagement: Binary ``(members, n)`` training matrix.
        neighbours: Most similar items kept per item (the usual item-kNN).

    Returns:
        ``(n, n)`` float32 CSR similarity, zero diagonal.
    """
    counts = (engagement.T @ engagement).tocsr().astype(np.float32)
    counts.setdiag(0.0)
    counts.eliminate_zeros()
    norms = np.sqrt(np.asarray(engagement.sum(axis=0), dtype=np.float32).ravel())
    coo = counts.tocoo()
    values = coo.data / (norms[coo.row] * norms[coo.col])
    similarity = sp.csr_matrix((values, (coo.row, coo.col)), shape=counts.shape)
    if similarity.nnz == 0:
        return similarity
    kept_rows, kept_cols, kept_values = [], [], []
    for item in range(similarity.shape[0]):
        start, end = similarity.indptr[item], similarity.indptr[item + 1]
        if end - start > neighbours:
            best = np.argpartition(-similarity.data[start:end], neighbours - 1)[:neighbours]
        else:
            best = np.arange(end - start)
        kept_rows.append(np.full(len(best), item))
        kept_cols.append(similarity.indices[start:end][best])
        kept_values.append(similarity.data[start:end][best])
    return sp.csr_matrix(
        (np.concatenate(kept_values), (np.concatenate(kept_rows), np.concatenate(kept_cols))),
        shape=similarity.shape,
    )


def recommend_item_knn(
    engagement_rows: sp.csr_matrix,
    similarity: sp.csr_matrix,
    popularity: np.ndarray,
    candidates: np.ndarray,
    k: int,
) -> np.ndarray:
    """Item-kNN: each candidate scored by its summed similarity to the member's items.

    Ties (and members without training items) are broken by popularity.

    Args:
        engagement_rows: Binary ``(m, n)`` training rows of the members.
        similarity: ``(n, n)`` item-item similarity (:func:`item_knn_similarity`).
        popularity: ``(n,)`` popularity of each item.
        candidates: ``(m, n)`` bool, true where the item may be recommended.
        k: Items per member.

    Returns:
        ``(m, k)`` item indices, ``-1`` once a member runs out of candidates.
    """
    scores = np.asarray((engagement_rows @ similarity).toarray(), dtype=np.float64)
    scores = _with_popularity_ties(scores, np.asarray(popularity, dtype=np.float64))
    return top_k(np.where(candidates, scores, -np.inf), k)


def recommend_learned(
    model: EASE,
    engagement_rows: sp.csr_matrix,
    popularity: np.ndarray,
    candidates: np.ndarray,
    k: int,
) -> np.ndarray:
    """The learned collaborative model alone (EASE), popularity breaking ties.

    Args:
        model: A fitted :class:`~nurture.recommend.EASE`.
        engagement_rows: Binary ``(m, n)`` training rows of the members.
        popularity: ``(n,)`` popularity of each item.
        candidates: ``(m, n)`` bool, true where the item may be recommended.
        k: Items per member.

    Returns:
        ``(m, k)`` item indices, ``-1`` once a member runs out of candidates.
    """
    scores = model.transform(engagement_rows).astype(np.float64)
    scores = _with_popularity_ties(scores, np.asarray(popularity, dtype=np.float64))
    return top_k(np.where(candidates, scores, -np.inf), k)


def recommend_group_popular(
    group_popularity: np.ndarray, candidates: np.ndarray, k: int
) -> np.ndarray:
    """Recommend each member the most popular candidates within their answer groups.

    Args:
        group_popularity: ``(m, n)`` each member's smoothed popularity of each item
            (:func:`nurture.recommend.GroupPopularity`).
        candidates: ``(m, n)`` bool, true where the item may be recommended.
        k: Items per member.

    Returns:
        ``(m, k)`` item indices, ``-1`` once a member runs out of candidates.
    """
    return top_k(np.where(candidates, group_popularity, -np.inf), k)
