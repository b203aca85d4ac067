"""How sure a difference between two recommenders is: paired bootstrap intervals over members.

A report's means come from a sample of members; on a small test split (a few dozen newcomers)
one or two hits move a mean by more than the gap between two recommenders. Each comparison
here resamples the scored members with replacement, keeps each member's pair of figures
together (both recommenders ranked the same member and candidates), and reads the interval of
the mean difference off the resampled means (the percentile bootstrap).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "COMPARED_METRICS",
    "CONFIDENCE",
    "RESAMPLES",
    "PairedDifference",
    "compare_with_baselines",
    "paired_bootstrap",
]

CONFIDENCE = 0.95
"""Coverage of the reported intervals."""
RESAMPLES = 2000
"""Bootstrap resamples per comparison."""
COMPARED_METRICS = ("precision", "ndcg")
"""The per-member metrics each comparison covers."""

_CELLS = 4_000_000  # resampled member indices held at once

Verdict = Literal["above", "below", "within noise"]


@dataclass(frozen=True)
class PairedDifference:
    """The mean difference ``a - b`` over the same members, with its bootstrap interval.

    Attributes:
        difference: Mean of ``a`` minus mean of ``b``.
        low: Lower end of the interval.
        high: Upper end of the interval.
        members: Members with a figure from both.
    """

    difference: float
    low: float
    high: float
    members: int

    @property
    def verdict(self) -> Verdict:
        """``above`` or ``below`` when the interval excludes zero, else ``within noise``."""
        if self.low > 0:
            return "above"
        if self.high < 0:
            return "below"
        return "within noise"

    def to_dict(self) -> dict[str, float | int | str]:
        """JSON-ready values, rounded to 6 decimals."""
        return {
            "difference": round(self.difference, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
            "members": self.members,
            "verdict": self.verdict,
        }


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    *,
    seed: int,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
) -> PairedDifference | None:
    """The mean of ``a - b`` member by member, with a percentile bootstrap interval.

    Args:
        a: ``(m,)`` one recommender's figure for each member (``nan`` where undefined).
        b: ``(m,)`` the other's, for the same members in the same order.
        seed: Seed of the resampling (the same seed gives the same interval).
        confidence: Coverage of the interval, between 0 and 1.
        resamples: How many resamples of the members.

    Returns:
        The difference, or ``None`` when no member has a figure from both.

    Raises:
        ValueError: The arrays differ in shape, or ``confidence`` or ``resamples`` is out of
            range.
    """
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two (m,) arrays of one shape, found {a.shape} and {b.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, found {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, found {resamples}")
    both = np.isfinite(a) & np.isfinite(b)
    differences = (a[both] - b[both]).astype(np.float64)
    members = len(differences)
    if members == 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    per_block = max(1, _CELLS // members)
    for start in range(0, resamples, per_block):
        stop = min(resamples, start + per_block)
        drawn = rng.integers(0, members, size=(stop - start, members))
        means[start:stop] = differences[drawn].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return PairedDifference(
        difference=float(differences.mean()), low=float(low), high=float(high), members=members
    )


def compare_with_baselines(
    per_member: Mapping[str, Mapping[str, np.ndarray]],
    *,
    engine: str,
    k: int,
    seed: int,
) -> dict[str, dict[str, PairedDifference]]:
    """The engine against each other recommender, on :data:`COMPARED_METRICS`.

    Args:
        per_member: ``{recommender: {metric: (m,) figures}}``, every recommender on the same
            members in the same order.
        engine: The recommender compared with the others.
        k: The cut-off (names the metrics ``<metric>@<k>``).
        seed: Seed of the resampling; every comparison uses it, so each is repeatable.

    Returns:
        ``{baseline: {"<metric>@<k>": difference}}``, the engine minus the baseline; a metric
        no member has a figure for is left out.
    """
    ours = per_member[engine]
    out: dict[str, dict[str, PairedDifference]] = {}
    for name, figures in per_member.items():
        if name == engine:
            continue
        compared: dict[str, PairedDifference] = {}
        for metric in COMPARED_METRICS:
            difference = paired_bootstrap(ours[metric], figures[metric], seed=seed)
            if difference is not None:
                compared[f"{metric}@{k}"] = difference
        out[name] = compared
    return out
