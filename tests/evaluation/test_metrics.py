"""Metrics on small examples computed by hand."""

import math
from collections.abc import Callable

import numpy as np
import pytest

from nurture.evaluation import (
    catalogue_coverage,
    hit_rate_at_k,
    ndcg_at_k,
    ndcg_curve,
    precision_at_k,
    precision_curve,
    recall_at_k,
    recommended_gains,
)

# Two members, five items (0..4).
# Member 0 finds items 1 and 3 relevant; their list is [1, 0, 3] -> hits at ranks 1 and 3.
# Member 1 finds item 4 relevant; their list is [2, -1, -1] (one item only) -> no hit.
RECOMMENDED = np.array([[1, 0, 3], [2, -1, -1]])
RELEVANCE = np.array(
    [
        [0, 1, 0, 1, 0],
        [0, 0, 0, 0, 1],
    ],
    dtype=float,
)


def test_precision_counts_empty_slots_as_misses() -> None:
    assert precision_at_k(RECOMMENDED, RELEVANCE, 3) == pytest.approx([2 / 3, 0.0])
    assert precision_at_k(RECOMMENDED, RELEVANCE, 1) == pytest.approx([1.0, 0.0])
    # k beyond the lists: two hits out of five slots
    assert precision_at_k(RECOMMENDED, RELEVANCE, 5) == pytest.approx([2 / 5, 0.0])


def test_recall_is_the_share_of_relevant_items_found() -> None:
    assert recall_at_k(RECOMMENDED, RELEVANCE, 3) == pytest.approx([1.0, 0.0])
    assert recall_at_k(RECOMMENDED, RELEVANCE, 2) == pytest.approx([0.5, 0.0])


def test_recall_and_ndcg_are_undefined_without_relevant_items() -> None:
    nothing = np.zeros((1, 5))
    assert math.isnan(recall_at_k(np.array([[0, 1]]), nothing, 2)[0])
    assert math.isnan(ndcg_at_k(np.array([[0, 1]]), nothing, 2)[0])


def test_hit_rate_is_one_when_any_relevant_item_is_listed() -> None:
    assert hit_rate_at_k(RECOMMENDED, RELEVANCE, 3).tolist() == [1.0, 0.0]
    assert hit_rate_at_k(np.array([[0, 2, 1]]), RELEVANCE[:1], 2).tolist() == [0.0]


def test_ndcg_of_binary_relevance() -> None:
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal: two hits at ranks 1, 2 = 1 + 1/log2(3)
    expected = 1.5 / (1 + 1 / math.log2(3))
    assert ndcg_at_k(RECOMMENDED, RELEVANCE, 3) == pytest.approx([expected, 0.0])


def test_ndcg_of_graded_relevance_uses_the_gains() -> None:
    relevance = np.array([[3.0, 0.0, 1.0, 2.0]])
    ranked = np.array([[2, 0, 1]])
    # DCG = 1/1 + 3/log2(3) + 0; ideal = 3/1 + 2/log2(3) + 1/2
    dcg = 1 + 3 / math.log2(3)
    ideal = 3 + 2 / math.log2(3) + 1 / 2
    assert ndcg_at_k(ranked, relevance, 3) == pytest.approx([dcg / ideal])


def test_a_perfect_list_scores_one() -> None:
    relevance = np.array([[0.0, 2.0, 1.0]])
    assert ndcg_at_k(np.array([[1, 2, 0]]), relevance, 3) == pytest.approx([1.0])
    assert ndcg_at_k(np.array([[2, 1, 0]]), relevance, 3)[0] < 1.0


def test_only_the_first_k_positions_count() -> None:
    ranked = np.array([[0, 1, 3]])  # item 3, relevant, comes third
    # k = 2: one hit at rank 2 against an ideal of two hits at ranks 1 and 2
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, RELEVANCE[:1], 2) == pytest.approx([expected])
    assert recall_at_k(ranked, RELEVANCE[:1], 2) == pytest.approx([0.5])


def test_recommended_gains_pads_short_lists() -> None:
    gains = recommended_gains(np.array([[3, -1]]), RELEVANCE[:1], 4)
    assert gains.tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_catalogue_coverage_counts_distinct_items_in_the_first_k() -> None:
    ranked = np.array([[0, 1, 4], [1, 2, -1]])
    assert catalogue_coverage(ranked, 10, 2) == pytest.approx(3 / 10)  # items 0, 1, 2
    assert catalogue_coverage(ranked, 10, 3) == pytest.approx(4 / 10)
    assert catalogue_coverage(ranked, 0, 3) == 0.0


@pytest.mark.parametrize("function", [precision_at_k, recall_at_k, hit_rate_at_k, ndcg_at_k])
def test_metrics_refuse_bad_arguments(function: Callable[..., np.ndarray]) -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        function(RECOMMENDED, RELEVANCE, 0)
    with pytest.raises(ValueError, match="one row per member"):
        function(RECOMMENDED, RELEVANCE[:1], 3)


def test_the_curves_hold_each_metric_at_every_cut_off() -> None:
    precision = precision_curve(RECOMMENDED, RELEVANCE, 4)
    ndcg = ndcg_curve(RECOMMENDED, RELEVANCE, 4)

    # member 0: hits at ranks 1 and 3 -> 1/1, 1/2, 2/3, 2/4; member 1: never
    assert precision == pytest.approx(np.array([[1.0, 0.5, 2 / 3, 0.5], [0.0, 0.0, 0.0, 0.0]]))
    # member 0 at k = 2: one hit at rank 1 against hits at ranks 1 and 2
    assert ndcg[0, 1] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    for k in range(1, 5):
        assert precision[:, k - 1] == pytest.approx(precision_at_k(RECOMMENDED, RELEVANCE, k))
        assert ndcg[:, k - 1] == pytest.approx(ndcg_at_k(RECOMMENDED, RELEVANCE, k))


def test_the_ndcg_curve_of_a_member_without_relevant_items_is_undefined() -> None:
    curve = ndcg_curve(np.array([[0, 1]]), np.zeros((1, 2)), 3)
    assert curve.shape == (1, 3) and np.isnan(curve).all()
