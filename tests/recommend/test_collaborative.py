"""EASE, the learned collaborative model, in the ranking; popularity within answer groups."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

from nurture.recommend import (
    EASE,
    Evidence,
    EvidenceKind,
    GroupPopularity,
    RankingWeights,
    collaborative_reason,
    prior_strength,
    rank_content,
    scale_collaborative,
)
from nurture.recommend.matching import _learned_support


def test_ease_matches_its_closed_form() -> None:
    engagement = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=np.float64)
    model = EASE(l2=2.0).fit(sp.csr_matrix(engagement))
    inverse = np.linalg.inv(engagement.T @ engagement + 2.0 * np.eye(3))
    expected = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(expected, 0.0)
    assert model.items_.tolist() == [0, 1, 2]
    assert np.allclose(model.weights_, expected, atol=1e-6)
    assert np.allclose(model.transform(engagement[:1]), engagement[:1] @ expected, atol=1e-6)


def test_ease_models_only_the_most_engaged_with_items() -> None:
    engagement = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 0, 1], [1, 1, 0, 0]]))
    model = EASE(max_items=2).fit(engagement)
    assert model.items_.tolist() == [0, 1]
    scores = model.transform(engagement)
    assert scores.shape == (3, 4)
    assert (scores[:, [2, 3]] == 0).all()


def test_ease_checks_its_input_and_state() -> None:
    with pytest.raises(NotFittedError):
        EASE().transform(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="l2 must be positive"):
        EASE(l2=0).fit(np.ones((2, 2)))
    model = EASE().fit(np.ones((2, 3)))
    with pytest.raises(ValueError, match="expected 3 item columns"):
        model.transform(np.ones((1, 2)))


def test_the_prior_is_strong_when_groups_differ_only_by_noise() -> None:
    community = np.array([0.5, 0.5])
    same = np.array([[50.0, 50.0], [50.0, 50.0]])
    apart = np.array([[90.0, 10.0], [10.0, 90.0]])
    assert prior_strength(same, community) == 1e6
    assert prior_strength(apart, community) < 5


def test_group_popularity_falls_back_to_the_community_without_answers() -> None:
    model = GroupPopularity().fit(
        np.array([[0], [1]]), np.array([0, 1, 1]), np.array([0, 1, 1]), np.ones(3), 2
    )
    assert model.transform(np.array([[-1]]))[0].tolist() == pytest.approx([1 / 3, 2 / 3])
    with pytest.raises(NotFittedError):
        GroupPopularity().transform(np.zeros((1, 1)))


def test_the_learned_signal_is_scaled_per_member() -> None:
    scaled = scale_collaborative(np.array([[2.0, -1.0, 1.0], [0.0, -3.0, 0.0]]))
    assert scaled.tolist() == [[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]]


def _rank(collaborative: np.ndarray | None, weights: RankingWeights) -> np.ndarray:
    m, n, d = 2, 3, 4
    items = np.eye(n, d, dtype=np.float32)
    indices, _ = rank_content(
        member_interest=np.zeros((m, d), dtype=np.float32),
        segment_interest=np.zeros((m, d), dtype=np.float32),
        excluded=np.zeros((m, n), dtype=bool),
        item_vectors=items,
        item_ok=np.ones((m, n), dtype=bool),
        freshness=np.zeros(n),
        weights=weights,
        k=1,
        popularity=np.array([5.0, 1.0, 1.0]),
        collaborative=collaborative,
    )
    return indices[:, 0]


def test_the_learned_model_ranks_when_it_has_a_score_and_popularity_otherwise() -> None:
    weights = RankingWeights(mmr_lambda=1.0)
    learned = np.array([[0.0, 0.1, 0.9], [0.0, -0.2, 0.0]], dtype=np.float32)
    # member 0: the learned model's favourite; member 1 has no positive score: popularity
    assert _rank(learned, weights).tolist() == [2, 0]
    assert _rank(None, weights).tolist() == [0, 0]
    assert _rank(learned, RankingWeights(mmr_lambda=1.0, collaborative=0.0)).tolist() == [0, 0]


def test_the_reason_of_a_learned_recommendation() -> None:
    assert collaborative_reason("en") == "Liked by members whose activity is like yours"
    assert collaborative_reason("fr").startswith("Apprécié des membres")


def test_a_second_learned_pick_reads_differently_and_names_what_supports_it() -> None:
    read = Evidence(EvidenceKind.READ, "Measure community ROI")
    attended = Evidence(EvidenceKind.ATTENDED, "Paris meetup")
    reasons = {
        collaborative_reason("en"),
        collaborative_reason("en", again=True),
        collaborative_reason("en", read),
        collaborative_reason("en", attended),
    }
    assert len(reasons) == 4
    assert collaborative_reason("en", read) == (
        "Liked by members who, like you, read “Measure community ROI”"
    )
    assert collaborative_reason("fr", attended) == (
        "Apprécié des membres qui, comme vous, ont participé à « Paris meetup »"
    )
    assert collaborative_reason("fr", again=True) != collaborative_reason("fr")


def test_the_supporting_item_is_the_recent_one_weighing_most_not_yet_named() -> None:
    # items 0-3 modelled as rows 0-3, item 4 not modelled; weights[source, target]
    weights = np.zeros((4, 4), dtype=np.float32)
    weights[0, 3], weights[1, 3], weights[2, 3] = 0.2, 0.5, -0.4
    modelled = np.array([0, 1, 2, 3, -1])
    recent = [(0, "content_view"), (1, "event_attended"), (2, "content_view"), (4, "x")]
    assert _learned_support(weights, modelled, recent, 3, set()) == (1, "event_attended")
    assert _learned_support(weights, modelled, recent, 3, {1}) == (0, "content_view")
    assert _learned_support(weights, modelled, recent, 3, {0, 1}) is None  # only negative left
    assert _learned_support(weights, modelled, recent, 4, set()) is None  # not modelled
