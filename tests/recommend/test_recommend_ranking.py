import numpy as np
import pytest
import scipy.sparse as sp

from nurture.recommend import (
    RankingWeights,
    co_engagement_scores,
    learn_co_engagement,
    rank_content,
    select_diverse,
)
from nurture.recommend.ranking import decay, normalise_popularity


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)).astype(np.float32)


def _rank(member, segment, items, *, excluded=None, ok=None, freshness=None, k=3, **kwargs):
    m, n = member.shape[0], items.shape[0]
    return rank_content(
        member_interest=member,
        segment_interest=segment,
        excluded=np.zeros((m, n), bool) if excluded is None else excluded,
        item_vectors=items,
        item_ok=np.ones((m, n), bool) if ok is None else ok,
        freshness=np.zeros(n) if freshness is None else freshness,
        weights=kwargs.pop("weights", RankingWeights()),
        k=k,
        **kwargs,
    )


ITEMS = np.eye(4, dtype=np.float32)


def test_member_interest_ranks_matching_item_first():
    member = ITEMS[[2, 0]]
    segment = np.zeros_like(member)
    indices, scores = _rank(member, segment, ITEMS, k=2)
    assert indices[:, 0].tolist() == [2, 0]
    assert (scores[:, 0] > scores[:, 1]).all()


def test_excluded_and_ineligible_items_are_never_ranked():
    member = ITEMS[[0]]
    excluded = np.array([[True, False, False, False]])
    ok = np.array([[True, False, True, True]])
    indices, _ = _rank(member, np.zeros_like(member), ITEMS, excluded=excluded, ok=ok, k=4)
    assert set(indices[0]) == {2, 3, -1}
    assert indices[0, -1] == -1


def test_runs_out_of_items_with_minus_one_and_nan():
    member = ITEMS[[0]]
    indices, scores = _rank(member, np.zeros_like(member), ITEMS[:2], k=4)
    assert indices[0].tolist()[2:] == [-1, -1]
    assert np.isnan(scores[0, 2:]).all()


def test_mmr_keeps_near_duplicates_apart():
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(1, 16)))[0]
    twin = _unit(base + 0.05 * rng.normal(size=16))
    other = _unit(rng.normal(size=16))
    items = np.stack([base, twin, other, _unit(rng.normal(size=16))])
    assert float(base @ twin) > 0.9
    member = base[None, :]
    indices, _ = _rank(member, np.zeros_like(member), items, k=4)
    picked = [i for i in indices[0] if i >= 0]
    assert picked[0] == 0
    assert 1 not in picked
    assert len(picked) == 3


def test_member_without_interest_falls_back_to_segment():
    member = np.zeros((1, 4), np.float32)
    segment = ITEMS[[3]]
    indices, _ = _rank(member, segment, ITEMS, k=1)
    assert indices[0, 0] == 3


def test_member_without_any_interest_gets_popular_and_fresh_items():
    zeros = np.zeros((2, 4), np.float32)
    popularity = np.array([0, 50, 3, 0])
    indices, scores = _rank(zeros, zeros, ITEMS, popularity=popularity, k=4)
    assert indices[:, 0].tolist() == [1, 1]
    assert np.isfinite(scores).all()
    fresh_only, _ = _rank(zeros, zeros, ITEMS, freshness=np.array([0, 0, 0, 1.0]), k=1)
    assert fresh_only[:, 0].tolist() == [3, 3]


def test_nan_interest_counts_as_missing():
    member = np.full((1, 4), np.nan, np.float32)
    indices, scores = _rank(member, ITEMS[[1]], ITEMS, k=1)
    assert indices[0, 0] == 1
    assert np.isfinite(scores[0, 0])


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="expected excluded"):
        rank_content(
            ITEMS[[0]],
            ITEMS[[0]],
            np.zeros((1, 3), bool),
            ITEMS,
            np.ones((1, 4), bool),
            np.zeros(4),
            RankingWeights(),
            2,
        )


def test_weights_are_validated():
    with pytest.raises(ValueError):
        RankingWeights(mmr_lambda=1.5)
    with pytest.raises(ValueError):
        RankingWeights(typo=1.0)


def test_a_chunk_of_1000_members_by_300_items_keeps_every_rule():
    """A realistic chunk: every pick allowed, none excluded, none twice (speed: make bench)."""
    rng = np.random.default_rng(1)
    m, n, d = 1000, 300, 384
    items = _unit(rng.normal(size=(n, d)))
    member = _unit(rng.normal(size=(m, d)))
    member[::7] = 0.0
    segment = _unit(rng.normal(size=(m, d)))
    excluded = rng.random((m, n)) < 0.05
    ok = rng.random((m, n)) < 0.8
    indices, scores = _rank(
        member,
        segment,
        items,
        excluded=excluded,
        ok=ok,
        freshness=rng.random(n),
        popularity=rng.integers(0, 100, n),
        k=10,
    )
    assert indices.shape == scores.shape == (m, 10)
    assert (indices >= 0).all()
    rows = np.arange(m)[:, None]
    assert ok[rows, indices].all()
    assert not excluded[rows, indices].any()
    assert all(len(set(row)) == 10 for row in indices.tolist())


def test_history_alone_ranks_items_near_what_the_member_consumed():
    zeros = np.zeros((1, 4), np.float32)
    history = sp.csr_matrix(np.array([[0.0, 0.0, 1.0, 0.0]], np.float32))
    items = _unit(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0.1, 1, 0]], float))
    excluded = np.array([[False, False, True, False]])
    indices, _ = _rank(zeros, zeros, items, excluded=excluded, history=history, k=1)
    assert indices[0, 0] == 3


def test_old_history_weighs_less_than_recent():
    member = np.zeros((1, 4), np.float32)
    recent, old = decay(np.array([1.0, 400.0]), half_life_days=30)
    history = sp.csr_matrix(np.array([[recent, old, 0, 0]], np.float32))
    items = _unit(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0.2, 0], [0, 1, 0.2, 0]], float))
    excluded = np.array([[True, True, False, False]])
    indices, _ = _rank(member, member, items, excluded=excluded, history=history, k=2)
    assert indices[0].tolist() == [2, 3]


def test_decay_halves_every_half_life():
    assert decay(np.array([0.0, 30.0, 60.0, -5.0]), 30.0).tolist() == [1.0, 0.5, 0.25, 1.0]


def test_co_engagement_is_learned_from_who_engaged_with_what():
    # members 0-9 engaged with items 0 and 1; member 10 with items 0 and 2; 11-13 with 3 only
    members = np.array([*range(10), *range(10), 10, 10, 11, 12, 13])
    items = np.array([0] * 10 + [1] * 10 + [0, 2, 3, 3, 3])
    learned = learn_co_engagement(members, items, 5, shrinkage=1.0).toarray()
    assert np.allclose(learned, learned.T)
    assert np.diag(learned).tolist() == [0.0] * 5
    assert learned.min() >= 0 and learned.max() <= 1
    assert learned[0, 1] > learned[0, 2] > 0  # ten members share 0 and 1, one shares 0 and 2
    assert learned[3].sum() == 0 and learned[4].sum() == 0  # no shared members, no neighbour
    pruned = learn_co_engagement(members, items, 5, neighbours=1).toarray()
    assert (pruned > 0).sum(axis=1).tolist() == [1, 1, 1, 0, 0]


def test_co_engagement_ranks_what_members_like_you_also_engaged_with():
    zeros = np.zeros((1, 4), np.float32)
    items = _unit(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float))
    co = learn_co_engagement(np.array([0, 0, 1, 1]), np.array([0, 3, 0, 3]), 4)
    history = sp.csr_matrix(np.array([[1.0, 0, 0, 0]], np.float32))
    excluded = np.array([[True, False, False, False]])
    indices, _ = _rank(
        zeros, zeros, items, excluded=excluded, history=history, co_engagement=co, k=1
    )
    assert indices[0, 0] == 3
    scores = co_engagement_scores(history, co)
    assert scores.tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_segment_popularity_rows_rank_each_members_segment_favourites():
    zeros = np.zeros((3, 4), np.float32)
    popularity = np.array([[0, 9, 0, 0], [0, 0, 9, 0], [5, 0, 0, 0]], float)  # 2 segments, all
    indices, _ = _rank(
        zeros, zeros, ITEMS, popularity=popularity, popularity_rows=np.array([1, 0, 2]), k=1
    )
    assert indices[:, 0].tolist() == [2, 1, 0]
    assert normalise_popularity(np.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_missing_signals_hand_their_weight_to_the_others():
    """A member with answers only scores as if answers held the whole personal share."""
    member = ITEMS[[0]]
    zeros = np.zeros_like(member)
    weights = RankingWeights(popularity=0, cold_start_popularity=0, freshness=0, format=0)
    _, scores = _rank(member, zeros, ITEMS, k=1, weights=weights)
    share = (
        weights.member
        + weights.history
        + weights.co_engagement
        + weights.collaborative
        + weights.segment
    )
    assert scores[0, 0] == pytest.approx(share)


def test_preferred_formats_get_a_bonus():
    member = _unit(np.array([[1, 1, 0, 0]], float))
    prefers = np.array([[False, True, False, False]])
    indices, _ = _rank(member, np.zeros_like(member), ITEMS, format_match=prefers, k=1)
    assert indices[0, 0] == 1


def test_candidates_do_not_change_the_top_when_no_item_is_a_duplicate():
    rng = np.random.default_rng(3)
    items = _unit(rng.normal(size=(200, 32)))
    scores = rng.normal(size=(50, 200))
    everything, _ = select_diverse(scores, items, 5, 1.0, 1.0)
    pooled, _ = select_diverse(scores, items, 5, 1.0, 1.0, candidates=5)
    assert (everything == pooled).all()
    assert (everything == np.argsort(-scores, axis=1)[:, :5]).all()


def test_new_inputs_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="history"):
        _rank(ITEMS[[0]], ITEMS[[0]], ITEMS, history=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="popularity_rows"):
        _rank(ITEMS[[0]], ITEMS[[0]], ITEMS, popularity=np.ones((2, 4)), popularity_rows=[0, 1])
    with pytest.raises(ValueError, match=r"popularity_rows must lie in \[0, 2\)"):
        _rank(ITEMS[[0]], ITEMS[[0]], ITEMS, popularity=np.ones((2, 4)), popularity_rows=[2])
    with pytest.raises(ValueError, match=r"popularity of shape \(r, 4\)"):
        _rank(ITEMS[[0]], ITEMS[[0]], ITEMS, popularity=np.ones(4), popularity_rows=[0])


def test_a_chunk_with_every_signal_on_5000_items_keeps_every_rule():
    rng = np.random.default_rng(2)
    m, n, d = 500, 5000, 384
    items = _unit(rng.normal(size=(n, d)))
    engaged = rng.integers(0, n, (m, 10))
    history = sp.csr_matrix(
        (np.ones(engaged.size, np.float32), (np.repeat(np.arange(m), 10), engaged.ravel())),
        shape=(m, n),
    )
    co = learn_co_engagement(np.repeat(np.arange(m), 10), engaged.ravel(), n)
    excluded = history.toarray() > 0
    indices, scores = _rank(
        _unit(rng.normal(size=(m, d))),
        _unit(rng.normal(size=(m, d))),
        items,
        excluded=excluded,
        ok=rng.random((m, n)) < 0.5,
        freshness=rng.random(n),
        popularity=rng.integers(0, 100, (11, n)),
        popularity_rows=rng.integers(0, 11, m),
        history=history,
        co_engagement=co,
        format_match=rng.random((m, n)) < 0.3,
        k=10,
    )
    assert (indices >= 0).all() and np.isfinite(scores).all()
    assert not excluded[np.arange(m)[:, None], indices].any()


def test_candidate_pool_is_each_rows_best_with_ties_to_the_lowest_index():
    """The pool MMR re-ranks: the ``width`` best of each row, ties broken by index."""
    from nurture.recommend.ranking import INELIGIBLE, _best_of

    rng = np.random.default_rng(3)
    m, n, width = 40, 60, 7
    scores = rng.integers(0, 5, size=(m, n)).astype(np.float32)  # many ties
    scores[rng.random((m, n)) < 0.7] = INELIGIBLE  # most of a row ineligible, tied too
    scores[5, :] = INELIGIBLE  # a row with nothing eligible
    scores[6, :3] = np.nan  # nan counts as -inf
    scores[7, :] = -np.inf

    pool, pool_scores = _best_of(scores, width)

    ranked = np.where(np.isnan(scores), -np.inf, scores)
    for row in range(m):
        order = sorted(range(n), key=lambda column: (-ranked[row, column], column))
        assert pool[row].tolist() == sorted(order[:width])
    assert np.array_equal(pool_scores, np.take_along_axis(scores, pool, axis=1), equal_nan=True)


def test_pool_ties_keep_the_lowest_index_items():
    items = _unit(np.eye(6, dtype=np.float32) + 0.01)
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.5, -np.inf]], dtype=np.float32)

    indices, _ = select_diverse(scores, items, 3, 1.0, 1.1, candidates=3)

    assert indices.tolist() == [[1, 0, 2]]
