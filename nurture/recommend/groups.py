"""Popularity within answer groups: what members who gave the same answers engage with.

Choice answers (role, country, age band...) say nothing about an item's topic, so embedding
them as interests ranks no better than chance; as groups they carry a strong prior: members who
answered "moderator" engage with moderation content. Each group's item shares are noisy when the
group is small, so they are shrunk towards the whole community's (empirical Bayes: the prior is
estimated from the data, and so is its strength, by the method of moments)::

    share(item | group) = (count(group, item) + a * share(item)) / (count(group) + a)

A member's score is the mean of their groups' shares over the questions they answered, the
community's share when they answered none.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["GroupPopularity", "prior_strength"]

_MIN_STRENGTH = 1.0
_MAX_STRENGTH = 1e6


def prior_strength(counts: np.ndarray, community: np.ndarray) -> float:
    """Strength ``a`` of the community prior for one question, by the method of moments.

    Under a Dirichlet prior of mean ``p`` (the community's shares) and strength ``a``, the
    groups' true shares vary around ``p`` with variance ``p(1 - p) / (a + 1)``; the observed
    shares add the sampling noise ``p(1 - p) / n_g``. Solving for ``a``.

    Args:
        counts: ``(groups, n)`` engagement counts of each group with each item.
        community: ``(n,)`` the community's shares (summing to 1).

    Returns:
        ``a``, in ``[1, 1e6]`` (large: the groups do not differ beyond noise).
    """
    totals = counts.sum(axis=1)
    used = totals > 0
    if used.sum() < 2:
        return _MAX_STRENGTH
    counts, totals = counts[used], totals[used]
    shares = counts / totals[:, None]
    weight = totals / totals.sum()
    spread = float((weight[:, None] * (shares - community[None, :]) ** 2).sum())
    scale = float((community * (1 - community)).sum())
    if scale <= 0:
        return _MAX_STRENGTH
    between = spread / scale - float((weight / totals).sum())
    if between <= 1 / (_MAX_STRENGTH + 1):
        return _MAX_STRENGTH
    return float(np.clip(1 / between - 1, _MIN_STRENGTH, _MAX_STRENGTH))


class GroupPopularity(BaseEstimator):  # type: ignore[misc]
    """Item popularity within the member's answer groups, shrunk towards the community.

    Args:
        strength: Pseudo-engagements of the community prior in each group; none estimates it
            per question (:func:`prior_strength`).
    """

    def __init__(self, strength: float | None = None) -> None:
        self.strength = strength

    def fit(
        self,
        groups: np.ndarray,
        member: np.ndarray,
        item: np.ndarray,
        weight: np.ndarray,
        n_items: int,
    ) -> GroupPopularity:
        """Learn each group's smoothed item shares from training engagements.

        Args:
            groups: ``(members, q)`` each member's answer (a code ``>= 0``) to each choice
                question, ``-1`` when unanswered.
            member: ``(e,)`` member row of each engagement.
            item: ``(e,)`` item column of each engagement.
            weight: ``(e,)`` positive weight of each engagement.
            n_items: Number of items.

        Returns:
            The fitted model (``community_``: ``(n,)`` shares, ``shares_``: one
            ``(codes, n)`` table per question, ``strengths_``).
        """
        groups = np.asarray(groups, dtype=np.int64).reshape(len(groups), -1)
        member = np.asarray(member, dtype=np.int64)
        item = np.asarray(item, dtype=np.int64)
        weight = np.asarray(weight, dtype=np.float64)
        totals = np.bincount(item, weights=weight, minlength=n_items).astype(np.float64)
        community = (
            totals / totals.sum() if totals.sum() > 0 else np.full(n_items, 1.0 / max(n_items, 1))
        )
        shares: list[np.ndarray] = []
        strengths: list[float] = []
        for question in range(groups.shape[1]):
            code = groups[member, question] if len(member) else np.zeros(0, dtype=np.int64)
            known = code >= 0
            n_codes = int(groups[:, question].max(initial=-1)) + 1
            counts = np.bincount(
                code[known] * n_items + item[known],
                weights=weight[known],
                minlength=n_codes * n_items,
            ).reshape(n_codes, n_items)
            strength = (
                self.strength if self.strength is not None else prior_strength(counts, community)
            )
            table = (counts + strength * community[None, :]) / (
                counts.sum(axis=1, keepdims=True) + strength
            )
            shares.append(table.astype(np.float32))
            strengths.append(float(strength))
        self.community_ = community.astype(np.float32)
        self.shares_ = shares
        self.strengths_ = strengths
        return self

    def transform(self, groups: np.ndarray) -> np.ndarray:
        """Each member's smoothed popularity of each item.

        Args:
            groups: ``(m, q)`` the members' answer codes, ``-1`` when unanswered.

        Returns:
            ``(m, n)`` float32: the mean share over the member's answered questions (the
            community's share for a member who answered none).
        """
        check_is_fitted(self, "community_")
        groups = np.asarray(groups, dtype=np.int64).reshape(len(groups), -1)
        m, n = len(groups), len(self.community_)
        total = np.zeros((m, n), dtype=np.float32)
        answered = np.zeros(m, dtype=np.float32)
        for question, table in enumerate(self.shares_):
            code = groups[:, question]
            known = (code >= 0) & (code < len(table))
            total[known] += table[code[known]]
            answered += known
        total[answered == 0] = self.community_
        return total / np.maximum(answered, 1)[:, None]
