"""Journey statistics without a database: Wilson and Newcombe intervals, Fisher, sample size."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from nurture.journeys.stats import (
    Rate,
    compare_rates,
    enough_data,
    sample_size_per_arm,
    wilson_interval,
)


@pytest.mark.parametrize(("converted", "total"), [(0, 10), (3, 10), (81, 263), (50, 50)])
def test_wilson_interval_matches_scipy(converted: int, total: int) -> None:
    expected = stats.binomtest(converted, total).proportion_ci(method="wilson")
    low, high = wilson_interval(converted, total)
    assert low == pytest.approx(expected.low, abs=1e-9)
    assert high == pytest.approx(expected.high, abs=1e-9)


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="converted <= total"):
        wilson_interval(5, 3)


def test_a_clear_difference_is_significant() -> None:
    arm, control = Rate.of(300, 1000), Rate.of(200, 1000)
    found = compare_rates(arm, control)
    assert found.difference == pytest.approx(0.1)
    assert 0 < found.low < 0.1 < found.high < 0.2
    assert found.p_value < 1e-5
    assert found.enough_data and found.significant
    # on large samples Newcombe's interval is close to the normal one
    se = math.sqrt(0.3 * 0.7 / 1000 + 0.2 * 0.8 / 1000)
    assert found.low == pytest.approx(0.1 - 1.96 * se, abs=0.005)
    # and Fisher's p-value close to the chi-square test's
    chi = stats.chi2_contingency([[300, 700], [200, 800]], correction=True).pvalue
    assert found.p_value == pytest.approx(chi, rel=0.5)


def test_no_difference_is_not_significant() -> None:
    found = compare_rates(Rate.of(100, 1000), Rate.of(100, 1000))
    assert found.difference == 0
    assert found.low < 0 < found.high
    assert found.p_value == pytest.approx(1.0)
    assert not found.significant


def test_small_samples_are_not_enough() -> None:
    assert not enough_data(Rate.of(3, 10), Rate.of(1, 10))
    assert not enough_data(Rate.of(1, 500), Rate.of(0, 500))  # too few conversions
    assert enough_data(Rate.of(30, 100), Rate.of(20, 100))
    found = compare_rates(Rate.of(3, 10), Rate.of(1, 10))
    assert not found.enough_data and not found.significant
    assert -1 <= found.low < 0 < found.high <= 1


def test_sample_size_per_arm() -> None:
    # 10% -> 15% at alpha 5%, power 80%: the textbook 686 per arm
    assert sample_size_per_arm(0.10, 0.05) == 686
    assert sample_size_per_arm(0.10, 0.10) < sample_size_per_arm(0.10, 0.05)
    assert sample_size_per_arm(0.10, 0.05, power=0.9) > 686
    assert sample_size_per_arm(0.98, 0.05) > 0  # counted downwards near 1
    for bad in ((0.0, 0.05), (0.5, 0.0), (1.0, 0.1)):
        with pytest.raises(ValueError):
            sample_size_per_arm(*bad)
