"""Score the engine and the baselines on the same members and candidates; the report they give."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

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
    ndcg_curve,
    precision_at_k,
    precision_curve,
    recall_at_k,
)
from nurture.evaluation.significance import PairedDifference
from nurture.recommend import EASE, GroupPopularity

__all__ = [
    "BASELINES",
    "CURVE_METRICS",
    "ENGINE",
    "METRICS",
    "PER_MEMBER_METRICS",
    "RECOMMENDERS",
    "EvaluationReport",
    "RecommenderRun",
    "lists_from_keys",
    "rank_and_score",
    "score_recommenders",
    "timings_of",
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
PER_MEMBER_METRICS = ("precision", "recall", "ndcg", "hit_rate")
"""The metrics defined member by member (coverage is of the whole catalogue)."""
CURVE_METRICS = ("precision", "ndcg")
"""The metrics reported at every cut-off from 1 to k."""

_CHUNK = 1024  # members per dense (members, items) block, at most
_CELLS = 8_000_000  # cells per dense (members, items) block

_PER_MEMBER = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "hit_rate": hit_rate_at_k,
}
_CURVES = {"precision": precision_curve, "ndcg": ndcg_curve}


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
        breakdowns: The metrics within groups of members:
            ``{grouping: {group: {"members": count, "metrics": {recommender: {metric: mean}}}}}``
            (:mod:`nurture.evaluation.breakdowns`).
        curves: ``{metric: {recommender: [mean at 1, ..., mean at k]}}`` for
            :data:`CURVE_METRICS`.
        timings: ``{recommender: {"seconds": ..., "fit_seconds": ..., "rank_seconds": ...}}``:
            how long each took (the engine: its whole nightly run, ``seconds`` only).
        ablation: ``{variant: {"<metric>@<k>": value}}``: the engine with each signal alone
            and each removed (:mod:`nurture.evaluation.ablation`); empty unless asked for.
        comparisons: ``{baseline: {"<metric>@<k>": difference}}``: the engine's mean minus
            the baseline's on the same members, with a paired bootstrap interval
            (:mod:`nurture.evaluation.significance`).
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
    breakdowns: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    curves: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    ablation: dict[str, dict[str, float | None]] = field(default_factory=dict)
    comparisons: dict[str, dict[str, PairedDifference]] = field(default_factory=dict)

    def metric_names(self) -> list[str]:
        """The metrics' names as reported (``precision@10``...), in row order."""
        return [f"{metric}@{self.k}" for metric in METRICS]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (metrics rounded to 6 decimals, seconds to 3)."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "split": self.split,
            "mode": self.mode,
            "k": self.k,
            "seed": self.seed,
            "counts": self.counts,
            "metrics": _rounded(self.metrics),
            "breakdowns": {
                grouping: {
                    group: {"members": figures["members"], "metrics": _rounded(figures["metrics"])}
                    for group, figures in groups.items()
                }
                for grouping, groups in self.breakdowns.items()
            },
            "curves": {
                metric: {
                    name: [None if value is None else round(value, 6) for value in values]
                    for name, values in by_recommender.items()
                }
                for metric, by_recommender in self.curves.items()
            },
            "timings": {
                name: {part: round(seconds, 3) for part, seconds in parts.items()}
                for name, parts in self.timings.items()
            },
            "engine": self.engine,
            "created_at": self.created_at.isoformat(),
        }
        if self.ablation:
            out["ablation"] = _rounded(self.ablation)
        if self.comparisons:
            out["comparisons"] = {
                name: {metric: difference.to_dict() for metric, difference in metrics.items()}
                for name, metrics in self.comparisons.items()
            }
        return out


def _rounded(
    metrics: Mapping[str, Mapping[str, float | None]],
) -> dict[str, dict[str, float | None]]:
    return {
        name: {
            metric: None if value is None else round(value, 6) for metric, value in values.items()
        }
        for name, values in metrics.items()
    }


def timings_of(runs: Mapping[str, RecommenderRun]) -> dict[str, dict[str, float]]:
    """How long each recommender took, for :attr:`EvaluationReport.timings`.

    Args:
        runs: ``{recommender: its run}`` (:func:`rank_and_score`).

    Returns:
        ``{recommender: {"seconds": total, "fit_seconds": ..., "rank_seconds": ...}}``; the
        engine has ``seconds`` only, and nothing when it was not timed.
    """
    timings: dict[str, dict[str, float]] = {}
    for name, run in runs.items():
        if "total" in run.seconds:
            timings[name] = {"seconds": run.seconds["total"]}
        elif run.seconds:
            timings[name] = {
                "seconds": run.seconds["fit"] + run.seconds["rank"],
                "fit_seconds": run.seconds["fit"],
                "rank_seconds": run.seconds["rank"],
            }
    return timings


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


def _mean_columns(values: np.ndarray) -> list[float | None]:
    return [_mean(values[:, column]) for column in range(values.shape[1])]


@dataclass(frozen=True)
class RecommenderRun:
    """One recommender's lists and figures on the scored members, member by member.

    Attributes:
        lists: ``(m, k)`` item indices recommended to each scored member, ``-1`` padded.
        per_member: ``{metric: (m,) values at k}`` for :data:`PER_MEMBER_METRICS` (``nan``
            where a metric is undefined for a member).
        curves: ``{metric: (m, k) values at 1..k}`` for :data:`CURVE_METRICS`.
        seconds: ``{"fit": ..., "rank": ...}``: time spent learning from the training data and
            ranking the members (a caller-measured ``{"total": ...}`` for the engine).
    """

    lists: np.ndarray
    per_member: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]
    seconds: dict[str, float]

    def summary(self, members: np.ndarray | None, n_items: int, k: int) -> dict[str, float | None]:
        """Each metric at ``k`` averaged over some of the members (coverage over the catalogue).

        Args:
            members: ``(m,)`` bool, the members to average over; none for all.
            n_items: Size of the catalogue (the denominator of coverage).
            k: The cut-off.

        Returns:
            ``{"<metric>@<k>": mean}`` in the order of :data:`METRICS`; ``None`` when no member
            is selected.
        """
        chosen = np.ones(len(self.lists), dtype=bool) if members is None else members
        values: dict[str, float | None] = {
            f"{metric}@{k}": _mean(self.per_member[metric][chosen]) if chosen.any() else None
            for metric in PER_MEMBER_METRICS
        }
        values[f"coverage@{k}"] = (
            catalogue_coverage(self.lists[chosen], n_items, k) if chosen.any() else None
        )
        return values

    def curve(self, metric: str) -> list[float | None]:
        """A metric at every cut-off 1..k, averaged over every scored member."""
        return _mean_columns(self.curves[metric])


# What each baseline learns from the training data: the parts its fit time adds up.
_FITTED = {
    "popularity": ("popularity",),
    "group_popularity": ("group_popularity",),
    "item_knn": ("popularity", "engagement", "similarity"),
    "ease": ("popularity", "engagement", "ease"),
    "random": (),
}


def _per_member(
    lists: list[np.ndarray], relevance: list[np.ndarray], k: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each member's metrics at ``k`` and curves at 1..k, chunk by chunk."""
    pairs = list(zip(lists, relevance, strict=True))
    per_member = {
        metric: np.concatenate([_PER_MEMBER[metric](r, g, k) for r, g in pairs] or [np.zeros(0)])
        for metric in PER_MEMBER_METRICS
    }
    curves = {
        metric: np.concatenate([_CURVES[metric](r, g, k) for r, g in pairs] or [np.zeros((0, k))])
        for metric in CURVE_METRICS
    }
    return per_member, curves


def rank_and_score(
    data: EvaluationData,
    rows: np.ndarray,
    engine_lists: np.ndarray,
    k: int,
    seed: int,
    engine_seconds: float | None = None,
) -> dict[str, RecommenderRun]:
    """Rank the members ``rows`` with every baseline and score them and the engine, per member.

    The baselines (:data:`BASELINES`) rank the same candidates as the engine
    (:meth:`EvaluationData.candidates`) and learn from the same training interactions; the
    learned ones are fitted once, and each one's fitting and ranking are timed (building the
    candidates and the held-out relevance, shared by all, is not). Work is done in chunks of
    members.

    Args:
        data: The evaluation data.
        rows: The member rows to score.
        engine_lists: ``(len(rows), >= k)`` the engine's item indices, ``-1`` padded.
        k: Cut-off.
        seed: Seed of the random baseline.
        engine_seconds: How long the engine took to rank, measured by the caller.

    Returns:
        ``{recommender: its run}`` in the order of :data:`RECOMMENDERS`.
    """
    fitted: dict[str, float] = {}
    clock = time.perf_counter()
    popularity = item_popularity(data.train.item, data.train.weight, data.n_items)
    fitted["popularity"], clock = _lap(clock)
    engagement = engagement_matrix(data.train, data.n_members, data.n_items)
    fitted["engagement"], clock = _lap(clock)
    similarity = item_knn_similarity(engagement)
    fitted["similarity"], clock = _lap(clock)
    learned = EASE().fit(engagement)
    fitted["ease"], clock = _lap(clock)
    groups = (
        data.member_groups
        if data.member_groups is not None
        else np.full((data.n_members, 0), -1, dtype=np.int64)
    )
    by_group = GroupPopularity().fit(
        groups, data.train.member, data.train.item, data.train.weight, data.n_items
    )
    fitted["group_popularity"], clock = _lap(clock)
    rng = np.random.default_rng(seed)
    chunk_size = max(1, min(_CHUNK, _CELLS // max(data.n_items, 1)))
    recommended: dict[str, list[np.ndarray]] = {name: [] for name in RECOMMENDERS}
    ranking = dict.fromkeys(RECOMMENDERS, 0.0)
    relevances: list[np.ndarray] = []
    rankers: dict[str, Callable[[np.ndarray, np.ndarray, sp.csr_matrix], np.ndarray]] = {
        "popularity": lambda chunk, candidates, history: recommend_popular(
            popularity, candidates, k
        ),
        "group_popularity": lambda chunk, candidates, history: recommend_group_popular(
            by_group.transform(groups[chunk]), candidates, k
        ),
        "item_knn": lambda chunk, candidates, history: recommend_item_knn(
            history, similarity, popularity, candidates, k
        ),
        "ease": lambda chunk, candidates, history: recommend_learned(
            learned, history, popularity, candidates, k
        ),
        "random": lambda chunk, candidates, history: recommend_random(candidates, k, rng),
    }
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        candidates = data.candidates(chunk)
        relevances.append(data.relevance(chunk))
        recommended[ENGINE].append(engine_lists[start : start + chunk_size, :k])
        clock = time.perf_counter()
        history = engagement[chunk]
        slicing, clock = _lap(clock)
        ranking["item_knn"] += slicing
        ranking["ease"] += slicing
        for name, rank in rankers.items():
            recommended[name].append(rank(chunk, candidates, history))
            spent, clock = _lap(clock)
            ranking[name] += spent
    runs: dict[str, RecommenderRun] = {}
    for name in RECOMMENDERS:
        lists = recommended[name]
        per_member, curves = _per_member(lists, relevances, k)
        if name == ENGINE:
            seconds = {} if engine_seconds is None else {"total": engine_seconds}
        else:
            seconds = {
                "fit": sum((fitted[part] for part in _FITTED[name]), 0.0),
                "rank": ranking[name],
            }
        runs[name] = RecommenderRun(
            lists=np.concatenate(lists) if lists else np.full((0, k), -1, dtype=np.int64),
            per_member=per_member,
            curves=curves,
            seconds=seconds,
        )
    return runs


def _lap(since: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now - since, now


def score_recommenders(
    data: EvaluationData, rows: np.ndarray, engine_lists: np.ndarray, k: int, seed: int
) -> dict[str, dict[str, float | None]]:
    """Score the engine's lists and the baselines' on the members ``rows``.

    The baselines (:data:`BASELINES`) rank the same candidates as the engine (see
    :func:`rank_and_score`).

    Args:
        data: The evaluation data.
        rows: The member rows to score.
        engine_lists: ``(len(rows), >= k)`` the engine's item indices, ``-1`` padded.
        k: Cut-off.
        seed: Seed of the random baseline.

    Returns:
        ``{recommender: {"<metric>@<k>": mean value}}`` in the order of :data:`RECOMMENDERS`.
    """
    runs = rank_and_score(data, rows, engine_lists, k, seed)
    return {name: run.summary(None, data.n_items, k) for name, run in runs.items()}
