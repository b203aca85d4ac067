"""The statistics of journey results: conversion rates compared between two arms.

Pure functions over counts, no database. A rate carries its Wilson score interval; a difference
of two rates carries Newcombe's hybrid score interval (built from the two Wilson intervals, it
keeps its coverage where the plain normal interval fails: small samples, rates near 0 or 1)
and the two-sided p-value of Fisher's exact test (exact whatever the sample size). Whether the
sample is large enough to read anything into a difference is a rule of thumb stated in
:func:`enough_data`; :func:`sample_size_per_arm` says how many members each arm needs to see a
given effect.
"""

from __future__ import annotations

import dataclasses
import math

from scipy import stats

__all__ = [
    "MIN_EXPECTED",
    "MIN_PER_ARM",
    "Comparison",
    "Rate",
    "compare_rates",
    "enough_data",
    "sample_size_per_arm",
    "wilson_interval",
]

MIN_PER_ARM = 30
"""Fewer members than this in an arm: not enough data to conclude."""

MIN_EXPECTED = 5
"""Fewer expected conversions (or non-conversions) than this in an arm: not enough data."""


@dataclasses.dataclass(frozen=True)
class Rate:
    """A share of members who converted, with its 95% interval.

    Attributes:
        converted: Members who converted.
        total: Members counted.
        rate: ``converted / total`` (0 when nobody is counted).
        low: Lower end of the Wilson 95% interval.
        high: Upper end.
    """

    converted: int
    total: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, converted: int, total: int, confidence: float = 0.95) -> Rate:
        """The rate of ``converted`` among ``total``, with its Wilson interval."""
        low, high = wilson_interval(converted, total, confidence)
        return cls(converted, total, converted / total if total else 0.0, low, high)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """An arm's rate against a reference arm's (the control, or the first variant).

    Attributes:
        difference: ``arm rate - reference rate``, in rate points (0.05 is 5 points).
        low: Lower end of the 95% interval of the difference (Newcombe).
        high: Upper end.
        p_value: Two-sided p-value of Fisher's exact test (no difference as the null).
        enough_data: Whether the samples are large enough to conclude (``enough_data``).
    """

    difference: float
    low: float
    high: float
    p_value: float
    enough_data: bool

    @property
    def significant(self) -> bool:
        """Whether the difference is clear at 5% (and the samples large enough)."""
        return self.enough_data and self.p_value < 0.05


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(converted: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion.

    Args:
        converted: Successes.
        total: Trials; 0 gives the whole range (0, 1).
        confidence: The interval's level.

    Returns:
        (low, high), within [0, 1].

    Raises:
        ValueError: The counts are negative or ``converted`` exceeds ``total``.
    """
    if not 0 <= converted <= total:
        raise ValueError(f"expected 0 <= converted <= total, found {converted} of {total}")
    if total == 0:
        return 0.0, 1.0
    z = _z(confidence)
    share = converted / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def enough_data(arm: Rate, reference: Rate) -> bool:
    """Whether two arms are large enough to read anything into their difference.

    Each arm needs at least ``MIN_PER_ARM`` members and, at the pooled rate, at least
    ``MIN_EXPECTED`` expected conversions and as many non-conversions.

    Args:
        arm: One arm's rate.
        reference: The other's.

    Returns:
        True when both arms are large enough.
    """
    if min(arm.total, reference.total) < MIN_PER_ARM:
        return False
    pooled = (arm.converted + reference.converted) / (arm.total + reference.total)
    smallest = min(arm.total, reference.total)
    return smallest * min(pooled, 1 - pooled) >= MIN_EXPECTED


def compare_rates(arm: Rate, reference: Rate, confidence: float = 0.95) -> Comparison:
    """Compare an arm's conversion rate with a reference arm's.

    Args:
        arm: The arm compared (a variant, or the journey).
        reference: The reference (the control group, or the first variant).
        confidence: The level of the difference's interval.

    Returns:
        The difference, its Newcombe hybrid score interval, Fisher's exact p-value and
        whether the samples are large enough to conclude.
    """
    difference = arm.rate - reference.rate
    low_a, high_a = wilson_interval(arm.converted, arm.total, confidence)
    low_r, high_r = wilson_interval(reference.converted, reference.total, confidence)
    low = difference - math.sqrt((arm.rate - low_a) ** 2 + (high_r - reference.rate) ** 2)
    high = difference + math.sqrt((high_a - arm.rate) ** 2 + (reference.rate - low_r) ** 2)
    table = [
        [arm.converted, arm.total - arm.converted],
        [reference.converted, reference.total - reference.converted],
    ]
    if arm.total and reference.total:
        p_value = float(stats.fisher_exact(table, alternative="two-sided").pvalue)
    else:
        p_value = 1.0
    return Comparison(
        difference=difference,
        low=max(-1.0, low),
        high=min(1.0, high),
        p_value=min(1.0, p_value),
        enough_data=enough_data(arm, reference),
    )


def sample_size_per_arm(
    baseline: float, effect: float, *, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Members each arm needs to detect a change of ``effect`` from ``baseline`` (two-sided).

    The classic normal-approximation formula for two proportions.

    Args:
        baseline: The reference arm's conversion rate, in (0, 1).
        effect: The smallest change worth seeing, in rate points (0.05 for 5 points); its sign
            is ignored.
        alpha: The test's level.
        power: The chance of seeing an effect of that size.

    Returns:
        Members per arm (rounded up).

    Raises:
        ValueError: The baseline is not in (0, 1), the effect is 0 or takes the rate outside
            (0, 1), or alpha or power are not in (0, 1).
    """
    if not 0 < baseline < 1:
        raise ValueError(f"expected a baseline rate between 0 and 1, found {baseline}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"expected alpha and power between 0 and 1, found {alpha}, {power}")
    target = baseline + abs(effect) if baseline + abs(effect) < 1 else baseline - abs(effect)
    if effect == 0 or not 0 < target < 1:
        raise ValueError(f"expected an effect that keeps the rate in (0, 1), found {effect}")
    z_alpha = float(stats.norm.ppf(1 - alpha / 2))
    z_power = float(stats.norm.ppf(power))
    mean = (baseline + target) / 2
    numerator = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(
        baseline * (1 - baseline) + target * (1 - target)
    )
    return math.ceil((numerator / (target - baseline)) ** 2)
