"""The figures of an evaluation per group of members: by language and by length of history.

A mean over every scored member can hide a recommender that serves one group and fails
another. The groups are the members' language (when the data gives languages) and the number of
distinct items in their training history, in buckets (``0``, ``1-5``, ``6+``): in the warm mode
no member has ``0``, in the cold-start mode every member has. Only groups with members are
reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nurture.evaluation.data import EvaluationData
from nurture.evaluation.report import RecommenderRun

__all__ = [
    "GROUPINGS",
    "HISTORY_BUCKETS",
    "breakdown_metrics",
    "history_bucket",
    "member_groups",
    "training_items",
]

GROUPINGS = ("language", "history")
"""How members are grouped, in report order."""
HISTORY_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0),
    ("1-5", 1, 5),
    ("6+", 6, None),
)
"""``(label, fewest, most)`` distinct training items of each history bucket (``None``: no most)."""


def training_items(data: EvaluationData, rows: np.ndarray) -> np.ndarray:
    """How many distinct items each of the members ``rows`` has in training.

    Returns:
        ``(len(rows),)`` counts.
    """
    n = max(data.n_items, 1)
    pairs = np.unique(data.train.member * n + data.train.item)
    per_member = np.bincount(pairs // n, minlength=data.n_members)
    return per_member[rows]


def history_bucket(counts: np.ndarray) -> np.ndarray:
    """The label of the history bucket (:data:`HISTORY_BUCKETS`) of each count of items.

    Args:
        counts: ``(m,)`` distinct training items of each member (non-negative).

    Returns:
        ``(m,)`` labels (``"0"``, ``"1-5"`` or ``"6+"``).
    """
    counts = np.asarray(counts)
    labels = np.empty(len(counts), dtype=object)
    for label, fewest, most in HISTORY_BUCKETS:
        inside = counts >= fewest
        if most is not None:
            inside &= counts <= most
        labels[inside] = label
    return labels


def member_groups(data: EvaluationData, rows: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """The groups the members ``rows`` fall in, as masks over ``rows``, for each grouping.

    Languages are grouped only when the data gives them (most members first, then by name);
    history buckets come in the order of :data:`HISTORY_BUCKETS`. Empty groups are left out.

    Args:
        data: The evaluation data.
        rows: The scored member rows.

    Returns:
        ``{grouping: {group: (len(rows),) bool}}`` for the groupings of :data:`GROUPINGS` that
        apply.
    """
    groups: dict[str, dict[str, np.ndarray]] = {}
    if data.member_language is not None:
        languages = data.member_language[rows].astype(str)
        names, sizes = np.unique(languages, return_counts=True)
        order = sorted(range(len(names)), key=lambda index: (-sizes[index], names[index]))
        groups["language"] = {str(names[index]): languages == names[index] for index in order}
    buckets = history_bucket(training_items(data, rows))
    groups["history"] = {
        label: buckets == label for label, _, _ in HISTORY_BUCKETS if (buckets == label).any()
    }
    return groups


def breakdown_metrics(
    runs: Mapping[str, RecommenderRun],
    groups: Mapping[str, Mapping[str, np.ndarray]],
    n_items: int,
    k: int,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Each recommender's metrics within each group of members.

    Args:
        runs: ``{recommender: its run}`` on the scored members
            (:func:`~nurture.evaluation.report.rank_and_score`).
        groups: ``{grouping: {group: mask over the scored members}}`` (:func:`member_groups`).
        n_items: Size of the catalogue (coverage's denominator).
        k: The cut-off.

    Returns:
        ``{grouping: {group: {"members": count, "metrics": {recommender: {metric: mean}}}}}``.
    """
    return {
        grouping: {
            group: {
                "members": int(mask.sum()),
                "metrics": {name: run.summary(mask, n_items, k) for name, run in runs.items()},
            }
            for group, mask in by_group.items()
        }
        for grouping, by_group in groups.items()
    }
