"""The engine's ranking signals in a sandbox, loaded once to rank again with other weights.

After the nightly stages ran on a sandbox (:func:`nurture.evaluation.rank_with_nurture`), the
ranking signals of its members (answers, history, segment, co-engagement, the learned model,
popularity, freshness) are loaded once per pair of half-lives (and popularity decayed or not);
any other weights then rank the same members in milliseconds
(:meth:`nurture.recommend.RankingSignals.rank`). The tuning and the ablation use it: nothing is
embedded again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
from sqlalchemy import select

from nurture.recommend import RankingSignals, RankingWeights, load_ranking_signals
from nurture.runtime import Runtime
from nurture.storage import Member

__all__ = ["SandboxSignals"]


class SandboxSignals:
    """Rank a sandbox's members with any weights, from signals loaded once per half-life.

    Args:
        sandbox: The runtime of a sandbox after the nightly stages.
        now: The ranking time.
    """

    def __init__(self, sandbox: Runtime, now: dt.datetime) -> None:
        self.sandbox = sandbox
        self.now = now
        with sandbox.session() as session:
            self.member_ids: list[int] = list(
                session.scalars(select(Member.id).order_by(Member.id))
            )
        self._row = {member_id: row for row, member_id in enumerate(self.member_ids)}
        self._loaded: dict[tuple[float, float, bool], RankingSignals] = {}

    def signals(self, weights: RankingWeights) -> RankingSignals:
        """Every member's signals under the half-lives and popularity decay of ``weights``."""
        key = (
            weights.interest_half_life_days,
            weights.freshness_half_life_days,
            weights.decay_popularity,
        )
        if key not in self._loaded:
            sandbox = self.sandbox
            questionnaire = sandbox.workspace.questionnaire
            choices = [
                question.key
                for question in questionnaire.questions
                if question.kind == "single_choice"
            ]
            with sandbox.session() as session:
                self._loaded[key] = load_ranking_signals(
                    session,
                    sandbox.embedder,
                    self.member_ids,
                    self.now,
                    weights,
                    kinds=sandbox.settings.recommendation_kinds,
                    choice_questions=choices,
                )
        return self._loaded[key]

    def has_history(self, member_ids: Sequence[int]) -> np.ndarray:
        """``(len(member_ids),)`` whether each member consumed something before ``now``."""
        any_signals = next(iter(self._loaded.values()), None) or self.signals(RankingWeights())
        rows = np.array([self._row[member_id] for member_id in member_ids], dtype=np.int64)
        return any_signals.has_history[rows]

    def rank(
        self, member_ids: Sequence[int], weights: RankingWeights, k: int
    ) -> dict[int, list[str]]:
        """Each member's ``k`` best content keys under ``weights``, best first.

        Args:
            member_ids: The members to rank (sandbox ids).
            weights: The ranking weights.
            k: Items per member.

        Returns:
            ``{member id: content keys}``.
        """
        if not member_ids:
            return {}
        signals = self.signals(weights)
        rows = np.array([self._row[member_id] for member_id in member_ids], dtype=np.int64)
        indices, _ = signals.rank(weights, k, rows)
        keys = signals.item_keys
        return {
            member_id: [keys[int(column)] for column in ranked if column >= 0]
            for member_id, ranked in zip(member_ids, indices, strict=True)
        }

    def rank_groups(
        self,
        member_ids: Sequence[int],
        with_history: RankingWeights,
        without_history: RankingWeights,
        k: int,
    ) -> dict[int, list[str]]:
        """Rank members with a history with ``with_history``, the others with ``without_history``.

        Args:
            member_ids: The members to rank (sandbox ids).
            with_history: Weights of members who consumed something.
            without_history: Weights of members who did not.
            k: Items per member.

        Returns:
            ``{member id: content keys}``.
        """
        history = self.has_history(member_ids)
        ids = list(member_ids)
        lists: Mapping[int, list[str]] = {
            **self.rank([i for i, has in zip(ids, history, strict=True) if has], with_history, k),
            **self.rank(
                [i for i, has in zip(ids, history, strict=True) if not has], without_history, k
            ),
        }
        return dict(lists)
