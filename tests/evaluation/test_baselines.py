"""The baselines (popularity, answer groups, item-kNN, the learned model, random) and top-k."""

import numpy as np
import pytest

from nurture.evaluation import (
    Interactions,
    engagement_matrix,
    item_knn_similarity,
    item_popularity,
    recommend_group_popular,
    recommend_item_knn,
    recommend_learned,
    recommend_popular,
    recommend_random,
    top_k,
)
from nurture.recommend import EASE, GroupPopularity


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


def _interactions(pairs: list[tuple[int, int]]) -> Interactions:
    return Interactions.of([m for m, _ in pairs], [i for _, i in pairs])


# Two tastes: members 0-2 engage with items 0 and 1 together, members 3-4 with 2 and 3.
TASTES = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (3, 2), (3, 3), (4, 2), (4, 3), (4, 4), (2, 4)]


def test_item_knn_recommends_what_is_engaged_with_alongside_the_members_items() -> None:
    engagement = engagement_matrix(_interactions(TASTES), 6, 5)
    similarity = item_knn_similarity(engagement)
    # items 0 and 1 share members 0 and 1: cosine 2 / sqrt(3 * 2)
    assert similarity[0, 1] == pytest.approx(2 / np.sqrt(6))
    assert similarity[0, 0] == 0
    assert similarity[0, 2] == 0
    popularity = item_popularity(np.array([i for _, i in TASTES]), np.ones(len(TASTES)), 5)
    rows = engagement[[2, 5]]  # member 2 has items 0 and 4; member 5 has nothing
    candidates = np.ones((2, 5), dtype=bool)
    candidates[0, [0, 4]] = False
    ranked = recommend_item_knn(rows, similarity, popularity, candidates, 2)
    assert ranked[0, 0] == 1  # co-engaged with item 0 by two members
    assert ranked[1].tolist() == [0, 1]  # no history: popularity (item 0 first, then ties)


def test_item_knn_keeps_each_items_nearest_neighbours() -> None:
    engagement = engagement_matrix(_interactions(TASTES), 6, 5)
    kept = item_knn_similarity(engagement, neighbours=1)
    assert (np.diff(kept.indptr) <= 1).all()


def test_the_learned_model_alone_completes_each_taste() -> None:
    engagement = engagement_matrix(_interactions(TASTES), 6, 5)
    model = EASE(l2=1.0).fit(engagement)
    popularity = np.asarray(engagement.sum(axis=0)).ravel()
    candidates = np.ones((2, 5), dtype=bool)
    rows = engagement_matrix(_interactions([(0, 0), (1, 3)]), 2, 5)
    candidates[0, 0] = candidates[1, 3] = False
    ranked = recommend_learned(model, rows, popularity, candidates, 1)
    assert ranked.tolist() == [[1], [2]]


def test_group_popularity_ranks_what_the_members_group_engages_with() -> None:
    # members 0-1 answered "a" (code 0) and took item 2; members 2-4 answered "b" and took item 0
    groups = np.array([[0], [0], [1], [1], [1], [0], [-1]])
    train = _interactions([(0, 2), (1, 2), (2, 0), (3, 0), (4, 0), (2, 1), (3, 1)])
    model = GroupPopularity(strength=1.0).fit(groups, train.member, train.item, train.weight, 3)
    scores = model.transform(groups[[5, 6]])
    candidates = np.ones((2, 3), dtype=bool)
    assert recommend_group_popular(scores, candidates, 3).tolist() == [[2, 0, 1], [0, 1, 2]]
    # group "a": (2 + 1 * 2/7) / (2 + 1) for item 2
    assert scores[0, 2] == pytest.approx((2 + 2 / 7) / 3)
    assert scores[1].tolist() == pytest.approx([3 / 7, 2 / 7, 2 / 7])
