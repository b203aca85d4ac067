"""Score the engine and the baselines on the same members and candidates; the report they give."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nurture.evaluation.baselines import (
    engagement_matrix,
    item_knn_similarity,
    item_popularity,
    recommend_group_popular,
    recommend_item_knn,
    recommend_learned,
    recommend_popular,
    recommend_random,
)
from nurture.evaluation.data import EvaluationData, Mode
from nurture.evaluation.metrics import (
    catalogue_coverage,
    hit_rate_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from nurture.recommend import EASE, GroupPopularity

__all__ = [
    "BASELINES",
    "ENGINE",
    "METRICS",
    "RECOMMENDERS",
    "EvaluationReport",
    "lists_from_keys",
    "score_recommenders",
]

ENGINE = "nurture"
"""Name of nurture's own ranking in reports."""
RECOMMENDERS = (ENGINE, "popularity", "group_popularity", "item_knn", "ease", "random")
"""Every recommender of a report, in the order of its columns."""
BASELINES = {
    "popularity": "items by total training weight over every member",
    "group_popularity": "popularity within the member's single-choice answer groups, shrunk "
    "towards the community's (nurture.recommend.GroupPopularity)",
    "item_knn": "item-kNN: summed cosine similarity (50 neighbours) to the member's items",
    "ease": "the learned collaborative model alone (nurture.recommend.EASE)",
    "random": "uniformly random, numpy.random.default_rng(seed)",
}
"""What each baseline is, for the report."""
METRICS = ("precision", "recall", "ndcg", "hit_rate", "coverage")
"""Every metric of a report, in the order of its rows (each reported ``@k``)."""

_CHUNK = 1024  # members per dense (members, items) block, at most
_CELLS = 8_000_000  # cells per dense (members, items) block

_PER_MEMBER = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "hit_rate": hit_rate_at_k,
}


@dataclass(frozen=True)
class EvaluationReport:
    """The figures of one evaluation: each metric at ``k`` for each recommender.

    Attributes:
        dataset: Where the data came from.
        split: How training and test interactions were made.
        mode: ``warm`` (members with training interactions) or ``cold-start`` (without).
        k: The cut-off.
        seed: Seed of the random baseline.
        counts: Members, items, interactions, and what was left out.
        metrics: ``{recommender: {"<metric>@<k>": value}}``, means over the evaluated members
            (coverage over the catalogue); ``None`` when no member could be evaluated.
        created_at: When the evaluation ran.
        engine: What the engine ran with (embedding model, number of segments...).
        ablation: ``{variant: {"<metric>@<k>": value}}``: the engine with each signal alone
            and each removed (:mod:`nurture.evaluation.ablation`); empty unless asked for.
    """

    dataset: dict[str, Any]
    split: dict[str, Any]
    mode: Mode
    k: int
    seed: int
    counts: dict[str, int]
    metrics: dict[str, dict[str, float | None]]
    created_at: dt.datetime
    engine: dict[str, Any] = field(default_factory=dict)
    ablation: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def metric_names(self) -> list[str]:
        """The metrics' names as reported (``precision@10``...), in row order."""
        return [f"{metric}@{self.k}" for metric in METRICS]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (metrics rounded to 6 decimals)."""
        metrics = {
            name: {
                metric: None if value is None else round(value, 6)
                for metric, value in values.items()
            }
            for name, values in self.metrics.items()
        }
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "split": self.split,
            "mode": self.mode,
            "k": self.k,
            "seed": self.seed,
            "counts": self.counts,
            "metrics": metrics,
            "engine": self.engine,
            "created_at": self.created_at.isoformat(),
        }
        if self.ablation:
            out["ablation"] = {
                name: {
                    metric: None if value is None else round(value, 6)
                    for metric, value in values.items()
                }
                for name, values in self.ablation.items()
            }
        return out


def lists_from_keys(
    data: EvaluationData, rows: np.ndarray, lists: Mapping[str, list[str]], k: int
) -> np.ndarray:
    """Turn ranked item keys per member key into the ``(len(rows), k)`` index form.

    Args:
        data: The evaluation data (its member and item keys).
        rows: Member rows, in the order wanted.
        lists: ``{member key: item keys, best first}``; a member missing gets nothing.
        k: Items kept per member.

    Returns:
        ``(len(rows), k)`` item indices, ``-1`` padded; unknown item keys are skipped.
    """
    column = {key: index for index, key in enumerate(data.item_keys)}
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for position, row in enumerate(rows):
        ranked = [column[key] for key in lists.get(data.member_keys[row], ()) if key in column]
        out[position, : min(k, len(ranked))] = ranked[:k]
    return out


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def score_recommenders(
    data: EvaluationData, rows: np.ndarray, engine_lists: np.ndarray, k: int, seed: int
) -> dict[str, dict[str, float | None]]:
    """Score the engine's lists and the baselines' on the members ``rows``.

    The baselines (:data:`BASELINES`) rank the same candidates as the engine
    (:meth:`EvaluationData.candidates`) and learn from the same training interactions; the
    learned ones are fitted once. Work is done in chunks of members.

    Args:
        data: The evaluation data.
        rows: The member rows to score.
        engine_lists: ``(len(rows), >= k)`` the engine's item indices, ``-1`` padded.
        k: Cut-off.
        seed: Seed of the random baseline.

    Returns:
        ``{recommender: {"<metric>@<k>": mean value}}`` in the order of :data:`RECOMMENDERS`.
    """
    rng = np.random.default_rng(seed)
    popularity = item_popularity(data.train.item, data.train.weight, data.n_items)
    engagement = engagement_matrix(data.train, data.n_members, data.n_items)
    similarity = item_knn_similarity(engagement)
    learned = EASE().fit(engagement)
    groups = (
        data.member_groups
        if data.member_groups is not None
        else np.full((data.n_members, 0), -1, dtype=np.int64)
    )
    by_group = GroupPopularity().fit(
        groups, data.train.member, data.train.item, data.train.weight, data.n_items
    )
    chunk_size = max(1, min(_CHUNK, _CELLS // max(data.n_items, 1)))
    per_member: dict[str, dict[str, list[np.ndarray]]] = {
        name: {metric: [] for metric in _PER_MEMBER} for name in RECOMMENDERS
    }
    recommended: dict[str, list[np.ndarray]] = {name: [] for name in RECOMMENDERS}
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        candidates = data.candidates(chunk)
        relevance = data.relevance(chunk)
        history = engagement[chunk]
        lists = {
            ENGINE: engine_lists[start : start + chunk_size, :k],
            "popularity": recommend_popular(popularity, candidates, k),
            "group_popularity": recommend_group_popular(
                by_group.transform(groups[chunk]), candidates, k
            ),
            "item_knn": recommend_item_knn(history, similarity, popularity, candidates, k),
            "ease": recommend_learned(learned, history, popularity, candidates, k),
            "random": recommend_random(candidates, k, rng),
        }
        for name, ranked in lists.items():
            recommended[name].append(ranked)
            for metric, function in _PER_MEMBER.items():
                per_member[name][metric].append(function(ranked, relevance, k))
    scores: dict[str, dict[str, float | None]] = {}
    for name in RECOMMENDERS:
        values: dict[str, float | None] = {
            f"{metric}@{k}": _mean(np.concatenate(parts)) if parts else None
            for metric, parts in per_member[name].items()
        }
        values[f"coverage@{k}"] = (
            catalogue_coverage(np.concatenate(recommended[name]), data.n_items, k)
            if recommended[name]
            else None
        )
        scores[name] = values
    return scores
