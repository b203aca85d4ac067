"""The vectorised ranker and learners against straightforward reference computations.

Each reference follows the documented formula member by member, item by item, in float64, with
plain Python loops for maximal marginal relevance; the fast paths must pick the same items with
the same scores (up to float32 noise) on small random inputs with every signal on.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from nurture.recommend import (
    EASE,
    RankingWeights,
    learn_co_engagement,
    rank_content,
    select_diverse,
)
from nurture.recommend.ranking import INELIGIBLE, PERSONAL_SIGNALS, _row_blocks


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.nan_to_num(np.asarray(vector, dtype=np.float64))
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else np.zeros_like(vector)


def _reference_mmr(
    scores: np.ndarray,
    items: np.ndarray,
    k: int,
    mmr_lambda: float,
    duplicate_similarity: float,
    candidates: int | None,
) -> tuple[list[list[int]], list[list[float]]]:
    """Greedy maximal marginal relevance over each row's best ``candidates``, one row at a time."""
    items = np.asarray(items, dtype=np.float64)
    picks, picked_scores = [], []
    for row in scores:
        order = sorted(range(len(row)), key=lambda item: (-row[item], item))
        pool = order if candidates is None else order[: max(candidates, k)]
        eligible = [item for item in pool if np.isfinite(row[item]) and row[item] > INELIGIBLE]
        taken: list[int] = []
        while len(taken) < k and eligible:
            # an item opposite to everything taken earns no bonus: the closest counts from 0
            closest = {
                item: max([0.0] + [float(items[item] @ items[t]) for t in taken])
                for item in eligible
            }
            value = {
                item: mmr_lambda * row[item] - (1 - mmr_lambda) * closest[item] for item in eligible
            }
            best = max(eligible, key=lambda item: (value[item], -item))
            taken.append(best)
            eligible = [
                item
                for item in eligible
                if item != best and float(items[item] @ items[best]) < duplicate_similarity
            ]
        picks.append(taken + [-1] * (k - len(taken)))
        picked_scores.append([float(row[item]) for item in taken])
    return picks, picked_scores


def _reference_scores(
    member,
    segment,
    excluded,
    items,
    ok,
    freshness,
    weights,
    popularity,
    rows,
    history,
    co,
    format_match,
    learned,
) -> np.ndarray:
    """RankingWeights' formula, member by member."""
    m, n = excluded.shape
    items = items.astype(np.float64)
    mean_item = items.mean(axis=0)
    table = np.log1p(np.asarray(popularity, dtype=np.float64))
    table = table / table.max(axis=1, keepdims=True)
    scores = np.zeros((m, n))
    for u in range(m):
        weights_of = history[u].toarray().ravel().astype(np.float64)
        consumed = weights_of @ items - weights_of.sum() * mean_item
        interests = {
            "member": _unit(member[u]),
            "history": _unit(consumed),
            "segment": _unit(segment[u]),
        }
        co_row = weights_of @ co.toarray()
        co_row = co_row / co_row.max() if co_row.max() > 0 else co_row
        learned_row = np.clip(learned[u].astype(np.float64), 0, None)
        learned_row = learned_row / learned_row.max() if learned_row.max() > 0 else learned_row
        present = {name: bool(np.abs(vector).sum() > 0) for name, vector in interests.items()}
        present["co_engagement"] = bool(co_row.max() > 0)
        present["collaborative"] = bool(learned_row.max() > 0)
        base = {name: getattr(weights, name) for name in PERSONAL_SIGNALS}
        held = sum(base[name] for name in PERSONAL_SIGNALS if present[name])
        share = sum(base.values())
        weight = {
            name: (base[name] * share / held if present[name] and held > 0 else 0.0)
            for name in PERSONAL_SIGNALS
        }
        popularity_weight = (
            weights.popularity if present["history"] else (weights.cold_start_popularity)
        )
        if held == 0:
            popularity_weight += share
        # An item nobody co-engaged with: its interest similarity takes the weight of
        # co-engagement and of the learned model (which cannot score it either).
        interest_share = sum(weight[name] for name in interests)
        gained = weight["co_engagement"] + weight["collaborative"]
        for item in range(n):
            if excluded[u, item] or not ok[u, item]:
                scores[u, item] = -np.inf
                continue
            unscored = weights.unscored_items_by_content and co[:, item].nnz == 0
            factor = (
                (interest_share + gained) / interest_share if unscored and interest_share else 1
            )
            scores[u, item] = (
                factor * sum(weight[name] * interests[name] @ items[item] for name in interests)
                + weight["co_engagement"] * co_row[item]
                + weight["collaborative"] * learned_row[item]
                + popularity_weight * table[rows[u], item]
                + weights.freshness * freshness[item]
                + weights.format * format_match[u, item]
            )
    return scores


def _community(seed: int, m: int = 40, n: int = 60, d: int = 16):
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n, d))
    items[1::10] = items[::10] + 0.1 * rng.normal(size=(n // 10, d))  # near-duplicates
    items = (items / np.linalg.norm(items, axis=1, keepdims=True)).astype(np.float32)
    member = rng.normal(size=(m, d)).astype(np.float32)
    member[::5] = 0.0  # no answers
    member[3] = np.nan
    segment = rng.normal(size=(m, d)).astype(np.float32)
    segment[::7] = 0.0  # no segment
    engaged = rng.random((m, n)) < 0.08
    engaged[::6] = False  # no history: newcomers, some with nothing at all
    history = sp.csr_matrix(np.where(engaged, rng.random((m, n)) + 0.1, 0.0).astype(np.float32))
    members, columns = np.nonzero(rng.random((200, n)) < 0.1)
    members, columns = members[columns < n - 5], columns[columns < n - 5]  # 5 items nobody took
    co = learn_co_engagement(members, columns, n, neighbours=8)
    model = EASE(l2=5.0, max_items=40).fit(
        sp.csr_matrix((np.ones(len(members)), (members, columns)), shape=(200, n))
    )
    return {
        "member": member,
        "segment": segment,
        "excluded": engaged | (rng.random((m, n)) < 0.05),
        "items": items,
        "ok": rng.random((m, n)) < 0.8,
        "freshness": rng.random(n),
        "popularity": rng.integers(0, 50, (4, n)).astype(float),
        "rows": rng.integers(0, 4, m),
        "history": history,
        "co": co,
        "format_match": np.asfortranarray(rng.random((m, n)) < 0.3),  # built by column
        "model": model,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("modelled_only", [False, True])
@pytest.mark.parametrize("by_content", [True, False])
def test_rank_content_equals_the_formula_then_greedy_mmr(
    seed: int, modelled_only: bool, by_content: bool
) -> None:
    data = _community(seed)
    weights = RankingWeights(
        mmr_lambda=0.6,
        mmr_candidates=12,
        duplicate_similarity=0.8,
        unscored_items_by_content=by_content,
    )
    model = data["model"]
    learned = model.transform(data["history"], modelled_only=modelled_only)
    k = 6
    indices, scores = rank_content(
        data["member"],
        data["segment"],
        data["excluded"],
        data["items"],
        data["ok"],
        data["freshness"],
        weights,
        k,
        data["popularity"],
        history=data["history"],
        co_engagement=data["co"],
        format_match=data["format_match"],
        popularity_rows=data["rows"],
        collaborative=learned,
        collaborative_items=model.items_ if modelled_only else None,
    )
    reference = _reference_scores(
        data["member"],
        data["segment"],
        data["excluded"],
        data["items"],
        data["ok"],
        data["freshness"],
        weights,
        data["popularity"],
        data["rows"],
        data["history"],
        data["co"],
        data["format_match"],
        model.transform(data["history"]),
    )
    picks, picked = _reference_mmr(
        reference,
        data["items"],
        k,
        weights.mmr_lambda,
        weights.duplicate_similarity,
        weights.mmr_candidates,
    )
    assert indices.tolist() == picks
    for row, expected in enumerate(picked):
        assert scores[row, : len(expected)] == pytest.approx(expected, abs=1e-5)
        assert np.isnan(scores[row, len(expected) :]).all()
    # MMR took items beyond each member's k best-scored: the on-demand cosines were used.
    best_k = np.argsort(-np.where(np.isfinite(reference), reference, -1e9), axis=1)[:, :k]
    assert any(set(row) - set(top) - {-1} for row, top in zip(picks, best_k.tolist(), strict=True))


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("candidates", [None, 5, 15])
def test_select_diverse_equals_greedy_mmr(candidates: int | None, k: int) -> None:
    rng = np.random.default_rng(7)
    items = rng.normal(size=(50, 8))
    items[25:] = items[:25] + 0.2 * rng.normal(size=(25, 8))
    items = (items / np.linalg.norm(items, axis=1, keepdims=True)).astype(np.float32)
    scores = rng.random((30, 50)).astype(np.float32)
    scores[rng.random((30, 50)) < 0.3] = -np.inf
    indices, picked = select_diverse(scores, items, k, 0.5, 0.85, candidates=candidates)
    picks, expected = _reference_mmr(scores, items, k, 0.5, 0.85, candidates)
    assert indices.tolist() == picks
    for row, values in enumerate(expected):
        assert picked[row, : len(values)] == pytest.approx(values)


def test_learned_co_engagement_equals_its_definition() -> None:
    rng = np.random.default_rng(4)
    members, columns = np.nonzero(rng.random((80, 30)) < 0.15)
    members = np.concatenate([members, members[:10]])  # repeated engagements count once
    columns = np.concatenate([columns, columns[:10]])
    learned = learn_co_engagement(members * 3 + 7, columns, 30, neighbours=5, block=7).toarray()
    engaged = np.zeros((80, 30))
    engaged[members, columns] = 1.0
    together = engaged.T @ engaged
    per_item = engaged.sum(axis=0)
    expected = np.zeros((30, 30))
    for i in range(30):
        for j in range(30):
            if i != j and together[i, j] > 0:
                cosine = together[i, j] / np.sqrt(per_item[i] * per_item[j])
                expected[i, j] = cosine * together[i, j] / (together[i, j] + 5.0)
        fifth = np.sort(expected[i])[-5]
        expected[i, expected[i] < fifth] = 0.0
    assert learned == pytest.approx(expected, abs=1e-6)


def test_ease_equals_its_closed_form_on_the_most_engaged_items() -> None:
    rng = np.random.default_rng(5)
    engagement = (rng.random((120, 40)) < 0.2).astype(float)
    model = EASE(l2=3.0, max_items=25).fit(sp.csr_matrix(engagement))
    counts = engagement.sum(axis=0)
    order = sorted(range(40), key=lambda column: (-counts[column], column))[:25]
    assert model.items_.tolist() == sorted(order)
    kept = engagement[:, model.items_]
    inverse = np.linalg.inv(kept.T @ kept + 3.0 * np.eye(25))
    expected = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(expected, 0.0)
    assert model.weights_ == pytest.approx(expected, abs=1e-5)
    scores = model.transform(engagement[:10])
    assert scores[:, model.items_] == pytest.approx(kept[:10] @ expected, abs=1e-5)
    assert model.transform(engagement[:10], modelled_only=True) == pytest.approx(
        scores[:, model.items_]
    )
    others = np.setdiff1d(np.arange(40), model.items_)
    assert (scores[:, others] == 0).all()


@pytest.mark.parametrize("threads", [2, 3, 7])
@pytest.mark.parametrize("modelled_only", [False, True])
@pytest.mark.parametrize("candidates", [None, 12])
def test_rank_content_gives_the_same_picks_and_scores_on_any_number_of_threads(
    threads: int, modelled_only: bool, candidates: int | None
) -> None:
    data = _community(threads, m=100, n=60)
    weights = RankingWeights(
        mmr_lambda=0.6, mmr_candidates=candidates or 60, duplicate_similarity=0.8
    )
    model = data["model"]

    def rank(count: int, popularity: np.ndarray, rows: np.ndarray | None):
        return rank_content(
            data["member"],
            data["segment"],
            data["excluded"],
            data["items"],
            data["ok"],
            data["freshness"],
            weights,
            6,
            popularity,
            history=data["history"],
            co_engagement=data["co"],
            format_match=data["format_match"],
            popularity_rows=rows,
            collaborative=model.transform(data["history"], modelled_only=modelled_only),
            collaborative_items=model.items_ if modelled_only else None,
            threads=count,
        )

    per_member = np.random.default_rng(threads).integers(0, 50, (100, 60)).astype(float)
    for popularity, rows in [(data["popularity"], data["rows"]), (per_member, None)]:
        indices, scores = rank(1, popularity, rows)
        threaded_indices, threaded_scores = rank(threads, popularity, rows)
        assert (indices >= 0).sum() > 300  # most members got items
        np.testing.assert_array_equal(threaded_indices, indices)
        np.testing.assert_array_equal(threaded_scores, scores)  # bit for bit, nan where none


def test_rank_content_refuses_no_threads() -> None:
    data = _community(0)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        rank_content(
            data["member"],
            data["segment"],
            data["excluded"],
            data["items"],
            data["ok"],
            data["freshness"],
            RankingWeights(),
            3,
            threads=0,
        )


def test_row_blocks_group_members_with_the_same_eligible_items() -> None:
    rng = np.random.default_rng(5)
    languages = rng.integers(0, 3, 50)
    item_languages = rng.integers(0, 3, 40)
    ok = languages[:, None] == item_languages[None, :]
    blocks = _row_blocks(ok, 8)
    rows = np.concatenate(blocks)
    assert sorted(rows.tolist()) == list(range(50))  # every member once
    for members in blocks:
        assert len(set(languages[members].tolist())) == 1
    assert _row_blocks(ok[:0], 8) == []


@pytest.mark.parametrize("threads", [1, 2])
def test_rank_content_ranks_each_member_as_alone_when_languages_are_mixed(threads: int) -> None:
    """Members are ranked in blocks of one language: the picks and scores are each one's own."""
    data = _community(11, m=60, n=60)
    languages = np.random.default_rng(11).integers(0, 2, 60)
    item_languages = np.arange(60) % 2
    ok = (languages[:, None] == item_languages[None, :]) & (np.arange(60) % 7 != 3)[None, :]
    weights = RankingWeights(mmr_lambda=0.6, mmr_candidates=12, duplicate_similarity=0.8)
    model = data["model"]
    learned = model.transform(data["history"], modelled_only=True)

    def rank(rows: np.ndarray, count: int):
        return rank_content(
            data["member"][rows],
            data["segment"][rows],
            data["excluded"][rows],
            data["items"],
            ok[rows],
            data["freshness"],
            weights,
            6,
            data["popularity"],
            history=data["history"][rows],
            co_engagement=data["co"],
            format_match=data["format_match"][rows],
            popularity_rows=data["rows"][rows],
            collaborative=learned[rows],
            collaborative_items=model.items_,
            threads=count,
        )

    indices, scores = rank(np.arange(60), threads)
    assert (indices >= 0).sum() > 200
    # Bit for bit whatever the blocks (as many as the threads ask for)...
    for count in (3, 5):
        other_indices, other_scores = rank(np.arange(60), count)
        np.testing.assert_array_equal(other_indices, indices)
        np.testing.assert_array_equal(other_scores, scores)
    # ...and as each member alone (whose product, a single row, BLAS may round otherwise).
    for row in range(60):
        alone_indices, alone_scores = rank(np.array([row]), 1)
        assert (item_languages[alone_indices[alone_indices >= 0]] == languages[row]).all()
        np.testing.assert_array_equal(indices[row], alone_indices[0])
        np.testing.assert_allclose(scores[row], alone_scores[0], rtol=1e-6)
