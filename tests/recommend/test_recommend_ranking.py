import time

import numpy as np
import pytest

from nurture.recommend import RankingWeights, rank_content


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


def test_chunk_of_1000_members_by_300_items_is_fast():
    rng = np.random.default_rng(1)
    m, n, d = 1000, 300, 384
    items = _unit(rng.normal(size=(n, d)))
    member = _unit(rng.normal(size=(m, d)))
    member[::7] = 0.0
    segment = _unit(rng.normal(size=(m, d)))
    excluded = rng.random((m, n)) < 0.05
    ok = rng.random((m, n)) < 0.8
    started = time.perf_counter()
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
    elapsed = time.perf_counter() - started
    assert indices.shape == scores.shape == (m, 10)
    assert (indices >= 0).all()
    rows = np.arange(m)[:, None]
    assert ok[rows, indices].all()
    assert not excluded[rows, indices].any()
    assert all(len(set(row)) == 10 for row in indices.tolist())
    assert elapsed < 2.0, f"ranking took {elapsed:.2f}s"
