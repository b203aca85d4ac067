"""Stable segment identity: match this run's clusters to the previous run's segments."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["match_by_overlap", "match_by_shared", "match_segments"]


def match_segments(
    previous: np.ndarray, current: np.ndarray, *, max_distance: float | None = None
) -> dict[int, int]:
    """Pair current centroids with previous ones, minimising the total distance.

    A one-to-one assignment (Hungarian algorithm) on the Euclidean distance between centroids of
    the same feature space; pairs further apart than ``max_distance`` are not matched.

    Args:
        previous: ``(m, d)`` centroids of the previous run's segments.
        current: ``(k, d)`` centroids of this run's clusters.
        max_distance: Largest distance of a match; ``None`` accepts any.

    Returns:
        ``{current index: previous index}`` for matched clusters.
    """
    previous = np.asarray(previous, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if not len(previous) or not len(current) or previous.shape[1] != current.shape[1]:
        return {}
    cost = np.linalg.norm(current[:, None, :] - previous[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    return {
        int(row): int(col)
        for row, col in zip(rows, cols, strict=True)
        if max_distance is None or cost[row, col] <= max_distance
    }


def match_by_overlap(
    previous: Sequence[Collection[int]],
    current: Sequence[Collection[int]],
    *,
    min_jaccard: float = 0.3,
) -> dict[int, int]:
    """Pair current clusters with previous segments, maximising their shared members.

    Used when centroids cannot be compared (the feature layout changed: a new question, another
    embedding model). A one-to-one assignment (Hungarian algorithm) on the Jaccard index of the
    member sets; pairs sharing less than ``min_jaccard`` are not matched.

    Args:
        previous: Member ids of each previous segment.
        current: Member ids of each current cluster.
        min_jaccard: Smallest Jaccard index of a match.

    Returns:
        ``{current index: previous index}`` for matched clusters.
    """
    if not previous or not current:
        return {}
    before = [set(members) for members in previous]
    now = [set(members) for members in current]
    shared = np.array([[len(members & other) for other in before] for members in now])
    return match_by_shared(
        shared, [len(members) for members in now], [len(other) for other in before], min_jaccard
    )


def match_by_shared(
    shared: np.ndarray,
    current_sizes: Sequence[int],
    previous_sizes: Sequence[int],
    min_jaccard: float = 0.3,
) -> dict[int, int]:
    """:func:`match_by_overlap` from counts: members each cluster shares with each segment.

    Args:
        shared: ``(k, m)`` members current cluster ``i`` shares with previous segment ``j``.
        current_sizes: Members of each current cluster.
        previous_sizes: Members of each previous segment.
        min_jaccard: Smallest Jaccard index of a match.

    Returns:
        ``{current index: previous index}`` for matched clusters.
    """
    if not len(current_sizes) or not len(previous_sizes):
        return {}
    shared = np.asarray(shared, dtype=np.int64)
    union = (
        np.asarray(current_sizes, dtype=np.int64)[:, None]
        + np.asarray(previous_sizes, dtype=np.int64)[None, :]
        - shared
    )
    similarity = np.divide(
        shared, union, out=np.zeros(shared.shape, dtype=np.float64), where=union > 0
    )
    rows, cols = linear_sum_assignment(-similarity)
    return {
        int(row): int(col)
        for row, col in zip(rows, cols, strict=True)
        if similarity[row, col] >= min_jaccard
    }
