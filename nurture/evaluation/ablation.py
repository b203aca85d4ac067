"""What each ranking signal contributes: nurture with each signal alone, and with each removed.

The variants change only the weights: the signals are loaded once from the sandbox the
evaluation ran the nightly stages on (:class:`~nurture.evaluation.engine_signals.SandboxSignals`)
and each variant ranks the same members (members with a history with their weights, newcomers
with theirs), scored like the engine on the same members and candidates.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nurture.evaluation.data import EvaluationData
from nurture.evaluation.metrics import ndcg_at_k, precision_at_k, recall_at_k
from nurture.evaluation.report import lists_from_keys
from nurture.recommend import RankingWeights

__all__ = ["ABLATED_SIGNALS", "ablation_variants", "score_lists"]

ABLATED_SIGNALS: dict[str, tuple[str, ...]] = {
    "member": ("member",),
    "history": ("history",),
    "co_engagement": ("co_engagement",),
    "collaborative": ("collaborative",),
    "segment": ("segment",),
    "popularity": ("popularity", "cold_start_popularity"),
    "freshness": ("freshness",),
    "format": ("format",),
}
"""Each signal of the ablation and the weights that carry it."""


def ablation_variants(weights: RankingWeights) -> dict[str, RankingWeights]:
    """The weights of each variant: ``only <signal>`` and ``without <signal>``.

    ``only`` keeps the signal's weights as they are and sets every other signal's to 0;
    ``without`` sets the signal's to 0. Diversity and half-lives are kept.

    Args:
        weights: The weights in force.

    Returns:
        ``{variant name: weights}``, the ``only`` variants first.
    """
    every = [name for names in ABLATED_SIGNALS.values() for name in names]
    variants: dict[str, RankingWeights] = {}
    for signal, names in ABLATED_SIGNALS.items():
        variants[f"only {signal}"] = weights.model_copy(
            update={name: 0.0 for name in every if name not in names}
        )
    for signal, names in ABLATED_SIGNALS.items():
        variants[f"without {signal}"] = weights.model_copy(update=dict.fromkeys(names, 0.0))
    return variants


def score_lists(
    data: EvaluationData, rows: np.ndarray, lists: Mapping[str, list[str]], k: int
) -> dict[str, float | None]:
    """Precision, recall and nDCG at ``k`` of ranked item keys, over the members ``rows``.

    Args:
        data: The evaluation data.
        rows: The member rows scored.
        lists: ``{member key: item keys, best first}``.
        k: Cut-off.

    Returns:
        ``{"precision@k": ..., "recall@k": ..., "ndcg@k": ...}``, ``None`` without members.
    """
    ranked = lists_from_keys(data, rows, lists, k)
    relevance = data.relevance(rows)
    out: dict[str, float | None] = {}
    for name, function in (
        ("precision", precision_at_k),
        ("recall", recall_at_k),
        ("ndcg", ndcg_at_k),
    ):
        values = function(ranked, relevance, k) if len(rows) else np.array([])
        finite = values[np.isfinite(values)]
        out[f"{name}@{k}"] = float(finite.mean()) if finite.size else None
    return out
