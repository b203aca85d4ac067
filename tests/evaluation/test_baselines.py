"""Popularity and random baselines, and the top-k they share."""

import numpy as np
import pytest

from nurture.evaluation import item_popularity, recommend_popular, recommend_random, top_k


def test_top_k_orders_by_score_and_breaks_ties_by_index() -> None:
    scores = np.array([[0.2, 0.9, 0.2, -np.inf], [-np.inf, -np.inf, 1.0, -np.inf]])
    assert top_k(scores, 3).tolist() == [[1, 0, 2], [2, -1, -1]]
    assert top_k(scores, 6).shape == (2, 6)
    assert top_k(scores, 0).shape == (2, 0)
    with pytest.raises(ValueError, match="k must be at least 0"):
        top_k(scores, -1)


def test_item_popularity_sums_weights_per_item() -> None:
    popularity = item_popularity(np.array([2, 0, 2]), np.array([1.0, 2.0, 0.5]), 4)
    assert popularity.tolist() == [2.0, 0.0, 1.5, 0.0]


def test_popularity_ranks_only_candidates() -> None:
    popularity = np.array([5.0, 9.0, 1.0, 7.0])
    candidates = np.array([[True, False, True, True], [False, False, True, False]])
    assert recommend_popular(popularity, candidates, 2).tolist() == [[3, 0], [2, -1]]


def test_random_is_repeatable_with_a_seed_and_stays_within_candidates() -> None:
    candidates = np.random.default_rng(0).random((50, 30)) < 0.4
    first = recommend_random(candidates, 10, np.random.default_rng(7))
    again = recommend_random(candidates, 10, np.random.default_rng(7))
    other = recommend_random(candidates, 10, np.random.default_rng(8))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    for row, ranked in enumerate(first):
        listed = ranked[ranked >= 0]
        assert len(set(listed)) == len(listed) == min(10, candidates[row].sum())
        assert candidates[row, listed].all()
