"""What an evaluation runs on: members, items, training and held-out interactions, candidates.

Whatever the source (the workspace's own database split in time, or a folder of files), an
evaluation sees one :class:`EvaluationData`: members and items as row and column indices, the
training and test interactions as parallel arrays, and what every recommender may recommend to
whom. Dense ``(members, items)`` matrices are only ever built for a chunk of members.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from nurture.errors import EvaluationDataError

__all__ = [
    "EvaluationData",
    "EvaluationDataError",
    "Interactions",
    "Mode",
    "temporal_cutoff",
]

Mode = Literal["warm", "cold-start"]
"""Which members an evaluation scores: those with training interactions, or those without."""


@dataclass(frozen=True)
class Interactions:
    """Member–item interactions as parallel arrays, one entry per interaction.

    Attributes:
        member: ``(N,)`` member row of each interaction.
        item: ``(N,)`` item column of each interaction.
        weight: ``(N,)`` positive weight of each interaction.
    """

    member: np.ndarray
    item: np.ndarray
    weight: np.ndarray

    @classmethod
    def of(
        cls,
        member: Sequence[int] | np.ndarray,
        item: Sequence[int] | np.ndarray,
        weight: Sequence[float] | np.ndarray | None = None,
    ) -> Interactions:
        """Interactions from sequences (every weight 1 when none are given).

        Raises:
            ValueError: If the lengths differ.
        """
        members = np.asarray(member, dtype=np.int64).reshape(-1)
        items = np.asarray(item, dtype=np.int64).reshape(-1)
        weights = (
            np.ones(len(members), dtype=np.float64)
            if weight is None
            else np.asarray(weight, dtype=np.float64).reshape(-1)
        )
        if not len(members) == len(items) == len(weights):
            raise ValueError(
                f"expected as many members, items and weights, found {len(members)}, "
                f"{len(items)} and {len(weights)}"
            )
        return cls(members, items, weights)

    def __len__(self) -> int:
        return len(self.member)

    def select(self, keep: np.ndarray) -> Interactions:
        """The interactions where the bool mask ``keep`` is true."""
        return Interactions(self.member[keep], self.item[keep], self.weight[keep])

    def dense(self, rows: np.ndarray, n_items: int) -> np.ndarray:
        """Summed weights of the members ``rows`` as a dense ``(len(rows), n_items)`` matrix."""
        position = np.full(int(max(self.member.max(initial=-1), rows.max(initial=-1))) + 1, -1)
        position[rows] = np.arange(len(rows))
        where = position[self.member] if len(self) else np.zeros(0, dtype=np.int64)
        keep = where >= 0
        out = np.zeros((len(rows), n_items), dtype=np.float64)
        np.add.at(out, (where[keep], self.item[keep]), self.weight[keep])
        return out

    def members_with_any(self, n_members: int) -> np.ndarray:
        """``(n_members,)`` bool: which members have at least one interaction."""
        return np.bincount(self.member, minlength=n_members) > 0


@dataclass(frozen=True)
class EvaluationData:
    """Everything an evaluation needs, whatever the source.

    Test interactions with an item the member already had in training are left out (no
    recommender may recommend such an item), so a member's relevant items are the new ones.

    Attributes:
        member_keys: Identifier of each member row (database id or the dataset's id).
        item_keys: Identifier of each item column (content key or the dataset's id).
        train: What the recommenders learn from.
        test: What they are scored against (held out).
        item_ok: ``(n,)`` bool: items that may be recommended at all at ranking time.
        member_language: ``(m,)`` language of each member, or none to ignore languages.
        item_language: ``(n,)`` language of each item, or none to ignore languages.
        now: The time the recommenders rank at (the cut-off of a temporal split).
        member_groups: ``(m, q)`` each member's answer code to each single-choice question
            (``-1`` unanswered), or none: what the answer-group baseline uses.
        split: How train and test were made, for the report.
        counts: Counts for the report (interactions dropped and why...).
    """

    member_keys: list[str]
    item_keys: list[str]
    train: Interactions
    test: Interactions
    item_ok: np.ndarray
    member_language: np.ndarray | None
    item_language: np.ndarray | None
    now: dt.datetime
    member_groups: np.ndarray | None = None
    split: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        member_keys: list[str],
        item_keys: list[str],
        train: Interactions,
        test: Interactions,
        now: dt.datetime,
        item_ok: np.ndarray | None = None,
        member_language: Sequence[str] | None = None,
        item_language: Sequence[str] | None = None,
        member_groups: np.ndarray | None = None,
        split: dict[str, Any] | None = None,
        counts: dict[str, int] | None = None,
    ) -> EvaluationData:
        """Assemble the data, leaving out test pairs already seen in training.

        Languages count only when both members and items have one.

        Returns:
            The evaluation data.
        """
        n = len(item_keys)
        seen = np.isin(test.member * n + test.item, train.member * n + train.item)
        use_languages = member_language is not None and item_language is not None
        return cls(
            member_keys=member_keys,
            item_keys=item_keys,
            train=train,
            test=test.select(~seen),
            item_ok=np.ones(n, dtype=bool) if item_ok is None else np.asarray(item_ok, bool),
            member_language=np.asarray(member_language, dtype=object) if use_languages else None,
            item_language=np.asarray(item_language, dtype=object) if use_languages else None,
            now=now,
            member_groups=(
                None
                if member_groups is None
                else np.asarray(member_groups, dtype=np.int64).reshape(len(member_keys), -1)
            ),
            split=dict(split or {}),
            counts={**(counts or {}), "test_interactions_already_in_train": int(seen.sum())},
        )

    @property
    def n_members(self) -> int:
        """Number of members (rows)."""
        return len(self.member_keys)

    @property
    def n_items(self) -> int:
        """Number of items (columns): the catalogue."""
        return len(self.item_keys)

    def members_to_evaluate(self, mode: Mode) -> np.ndarray:
        """The member rows scored in ``mode``: held-out interactions, and training ones or not.

        Args:
            mode: ``warm`` (members with training interactions) or ``cold-start`` (without).

        Returns:
            Member rows, in increasing order.
        """
        tested = self.test.members_with_any(self.n_members)
        trained = self.train.members_with_any(self.n_members)
        chosen = tested & (trained if mode == "warm" else ~trained)
        return np.flatnonzero(chosen)

    def candidates(self, rows: np.ndarray) -> np.ndarray:
        """What every recommender may recommend to the members ``rows``.

        An item is a candidate when it may be recommended at all (``item_ok``), is in the
        member's language (when languages count) and is not among the member's training items.

        Args:
            rows: Member rows.

        Returns:
            ``(len(rows), n_items)`` bool.
        """
        allowed = np.repeat(self.item_ok[None, :], len(rows), axis=0)
        if self.member_language is not None and self.item_language is not None:
            allowed &= self.member_language[rows][:, None] == self.item_language[None, :]
        return allowed & (self.train.dense(rows, self.n_items) == 0)

    def relevance(self, rows: np.ndarray) -> np.ndarray:
        """Held-out relevance of every item for the members ``rows``: their summed test weights.

        Returns:
            ``(len(rows), n_items)`` float, ``0`` where the member did not interact.
        """
        return self.test.dense(rows, self.n_items)


def temporal_cutoff(times: Sequence[dt.datetime], test_share: float = 0.2) -> dt.datetime:
    """The time that leaves the last ``test_share`` of interactions as test.

    Interactions at or after the cut-off are test; those before are training. Interactions at the
    same instant stay on the same side, so the test share can be a little larger.

    Args:
        times: When each interaction happened (timezone-aware).
        test_share: Share of the interactions to hold out, strictly between 0 and 1.

    Returns:
        The cut-off.

    Raises:
        ValueError: If ``times`` is empty or ``test_share`` is not strictly between 0 and 1.
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be strictly between 0 and 1, found {test_share}")
    if not times:
        raise ValueError("no interactions to split")
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, math.floor(len(ordered) * (1 - test_share)))]
