"""EASE, the learned collaborative model, and popularity within answer groups."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

from nurture.recommend import EASE, GroupPopularity, prior_strength


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
