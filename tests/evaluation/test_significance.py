"""Paired bootstrap intervals: known answers on tiny samples."""

from __future__ import annotations

import numpy as np
import pytest

from nurture.evaluation import PairedDifference, compare_with_baselines, paired_bootstrap


def test_identical_recommenders_differ_by_exactly_zero() -> None:
    figures = np.array([0.1, 0.0, 0.3, 0.2])

    difference = paired_bootstrap(figures, figures.copy(), seed=1)

    assert difference == PairedDifference(difference=0.0, low=0.0, high=0.0, members=4)
    assert difference.verdict == "within noise"


def test_a_constant_gain_has_a_zero_width_interval_above() -> None:
    baseline = np.array([0.0, 0.1, 0.2, 0.4, 0.0])

    difference = paired_bootstrap(baseline + 0.1, baseline, seed=3)

    assert difference is not None
    assert difference.difference == pytest.approx(0.1)
    assert (difference.low, difference.high) == (pytest.approx(0.1), pytest.approx(0.1))
    assert difference.verdict == "above"


def test_pairs_are_kept_together() -> None:
    # Unpaired, these samples overlap completely; paired, a is above b for every member.
    b = np.linspace(0.0, 1.0, 40)
    a = b + 0.01

    difference = paired_bootstrap(a, b, seed=0)

    assert difference is not None
    assert difference.low > 0
    assert difference.verdict == "above"


def test_one_lucky_member_in_a_small_sample_is_within_noise() -> None:
    a = np.zeros(30)
    a[0] = 1.0
    b = np.zeros(30)

    difference = paired_bootstrap(a, b, seed=7)

    assert difference is not None
    assert difference.difference == pytest.approx(1 / 30)
    assert difference.low == 0.0
    assert difference.verdict == "within noise"


def test_a_clear_loss_over_many_members_is_below() -> None:
    rng = np.random.default_rng(5)
    b = rng.random(500)
    a = b - 0.05 + rng.normal(0, 0.05, 500)

    difference = paired_bootstrap(a, b, seed=11)

    assert difference is not None
    assert difference.high < 0
    assert difference.low < difference.difference < difference.high
    assert difference.verdict == "below"


def test_the_same_seed_gives_the_same_interval() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(50), rng.random(50)

    assert paired_bootstrap(a, b, seed=4) == paired_bootstrap(a, b, seed=4)


def test_members_without_a_figure_from_both_are_left_out() -> None:
    a = np.array([0.5, np.nan, 0.2])
    b = np.array([0.1, 0.3, np.nan])

    difference = paired_bootstrap(a, b, seed=0)

    assert difference is not None
    assert difference.members == 1
    assert difference.difference == pytest.approx(0.4)
    assert paired_bootstrap(np.array([np.nan]), np.array([0.1]), seed=0) is None


@pytest.mark.parametrize(
    ("a", "b", "confidence", "resamples", "message"),
    [
        (np.zeros(3), np.zeros(4), 0.95, 10, "one shape"),
        (np.zeros(3), np.zeros(3), 1.0, 10, "confidence"),
        (np.zeros(3), np.zeros(3), 0.95, 0, "resamples"),
    ],
)
def test_bad_arguments_are_refused(
    a: np.ndarray, b: np.ndarray, confidence: float, resamples: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b, seed=0, confidence=confidence, resamples=resamples)


def test_the_engine_is_compared_with_every_other_recommender() -> None:
    ones, zeros = np.ones(6), np.zeros(6)
    per_member = {
        "nurture": {"precision": ones, "ndcg": ones, "recall": ones},
        "popularity": {"precision": zeros, "ndcg": ones, "recall": zeros},
        "random": {"precision": ones, "ndcg": np.full(6, np.nan), "recall": zeros},
    }

    compared = compare_with_baselines(per_member, engine="nurture", k=10, seed=0)

    assert list(compared) == ["popularity", "random"]
    assert compared["popularity"]["precision@10"].verdict == "above"
    assert compared["popularity"]["ndcg@10"].verdict == "within noise"
    assert list(compared["random"]) == ["precision@10"]
