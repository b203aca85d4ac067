from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score

from nurture.segmentation import (
    SegmentModel,
    distinctive_terms,
    label_segments,
    match_by_overlap,
    match_segments,
    resolve_block_weights,
    top_terms,
)


def blobs(n: int = 240, centers: int = 5, seed: int = 0):
    X, y = make_blobs(
        n_samples=n, centers=centers, n_features=6, cluster_std=0.5, random_state=seed
    )
    blocks = {"choices": slice(0, 2), "text": slice(2, 4), "activity": slice(4, 6)}
    return X, y, blocks


def test_init_only_stores_params_and_clones() -> None:
    model = SegmentModel(n_segments=4, random_state=3)
    assert model.get_params()["n_segments"] == 4
    assert model.get_params()["block_weights"] is None
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        model.transform(np.zeros((2, 3)))


def test_fit_chooses_k_and_is_reproducible() -> None:
    X, y, blocks = blobs()
    model = SegmentModel(random_state=1).fit(X, blocks)
    assert model.n_segments_ == 5
    assert adjusted_rand_score(y, model.labels_) == pytest.approx(1.0)
    assert model.silhouette_ > 0.5
    assert set(model.silhouette_by_k_) == set(range(3, 11))
    again = SegmentModel(random_state=1).fit(X, blocks)
    np.testing.assert_array_equal(model.labels_, again.labels_)
    np.testing.assert_allclose(model.cluster_centers_, again.cluster_centers_)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    assert model.transform(X).shape == (len(X), 5)


def test_fixed_k_and_mini_batch() -> None:
    X, _, blocks = blobs(centers=3)
    model = SegmentModel(n_segments=3, mini_batch_threshold=10, random_state=0).fit(X, blocks)
    assert model.algorithm_ == "minibatch_kmeans"
    assert model.n_segments_ == 3
    assert model.cluster_centers_.shape == (3, 6)


def test_block_variance_matches_weights() -> None:
    rng = np.random.default_rng(0)
    X = np.hstack(
        [rng.integers(0, 2, (200, 5)), rng.normal(0, 0.1, (200, 20)), rng.poisson(30, (200, 3))]
    )
    blocks = {"choices": range(0, 5), "text": range(5, 25), "activity": range(25, 28)}
    weights = {"choices": 2.0, "text": 1.0, "activity": 0.5}
    model = SegmentModel(n_segments=3, block_weights=weights, random_state=0).fit(X, blocks)
    Z = model.scale(X)
    for name, columns in blocks.items():
        assert Z[:, list(columns)].var(axis=0).sum() == pytest.approx(weights[name], rel=1e-6)


def test_blocks_must_cover_every_column() -> None:
    X, _, _ = blobs()
    with pytest.raises(ValueError, match="exactly once"):
        SegmentModel(n_segments=2).fit(X, {"choices": slice(0, 3)})


def test_match_segments_recovers_permutation_and_gates() -> None:
    previous = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    current = previous[[2, 0, 1]] + 0.1
    assert match_segments(previous, current) == {0: 2, 1: 0, 2: 1}
    far = np.vstack([current[:2], [[50.0, 50.0]]])
    assert match_segments(previous, far, max_distance=5.0) == {0: 2, 1: 0}
    assert match_segments(previous, np.zeros((2, 3))) == {}


def test_top_terms_skip_english_and_french_stop_words() -> None:
    terms = top_terms(
        [
            "we want the roi and the revenue, nous voulons le roi",
            "les événements et les meetups with the speakers",
        ]
    )
    assert terms[0][:2] == ["roi", "revenue"]
    assert "les" not in terms[1] and "the" not in terms[1]
    assert "meetups" in terms[1]
    assert top_terms(["", "the and"]) == [[], []]


def test_label_segments_cards(questionnaire) -> None:
    ids = [1, 2, 3, 4, 5, 6]
    segment_of = np.array([0, 0, 0, 1, 1, 1])
    answers = {i: {"role": "founder" if i <= 3 else "maintainer"} for i in ids}
    texts = {i: "b2b roi" if i <= 3 else "github issues" for i in ids}
    descriptions = label_segments(
        questionnaire,
        ids,
        segment_of,
        answers,
        texts,
        lifecycle=dict.fromkeys(ids, "active"),
        distances=np.array([0.3, 0.1, 0.2, 0.5, 0.4, 0.6]),
    )
    assert descriptions[0].label.startswith("Founder or executive · '")
    assert "roi" in descriptions[0].label
    card = descriptions[1].card
    assert card["size"] == 3
    assert card["distinctive"][0]["option"] == "maintainer"
    assert card["distinctive"][0]["lift"] == 2.0
    assert card["examples"] == [5, 4, 6]
    assert card["lifecycle"] == {"active": 3}


def test_block_weights_default_and_override() -> None:
    assert resolve_block_weights(None) == {"choices": 1.0, "text": 0.5, "activity": 0.25}
    assert resolve_block_weights({"text": 2}) == {"choices": 1.0, "text": 2.0, "activity": 0.25}
    with pytest.raises(ValueError, match="'text' must be a number >= 0"):
        resolve_block_weights({"text": -1})
    with pytest.raises(ValueError, match="must be a number"):
        resolve_block_weights({"text": float("nan")})
    X, _, blocks = blobs()
    model = SegmentModel(n_segments=3, block_weights={"text": 0.0}, random_state=0).fit(X, blocks)
    assert model.block_weights_["text"] == 0.0
    assert not np.any(model.scale(X)[:, 2:4])  # a block of weight 0 plays no part


def test_a_rerun_starts_from_the_previous_centroids() -> None:
    X, y, blocks = blobs()
    first = SegmentModel(random_state=1).fit(X, blocks)
    raw_centroids = np.stack([X[first.labels_ == i].mean(axis=0) for i in range(5)])
    again = SegmentModel(random_state=2, previous_centers=raw_centroids[::-1]).fit(X, blocks)
    assert again.warm_started_
    assert again.n_segments_ == 5
    # Grown from the previous centroids, in their order: cluster i is the previous cluster 4 - i.
    np.testing.assert_array_equal(again.labels_, 4 - first.labels_)

    # Previous centroids of another k do not hold when another k is clearly better.
    fewer = SegmentModel(random_state=1, previous_centers=raw_centroids[:3]).fit(X, blocks)
    assert fewer.n_segments_ == 5 and not fewer.warm_started_
    assert adjusted_rand_score(y, fewer.labels_) == pytest.approx(1.0)
    # Centroids of another feature space are ignored.
    other = SegmentModel(random_state=1, previous_centers=np.zeros((5, 2))).fit(X, blocks)
    assert not other.warm_started_


def test_match_by_overlap_pairs_segments_sharing_members() -> None:
    previous = [{1, 2, 3, 4}, {5, 6, 7}, {8, 9}]
    current = [{5, 6, 7, 10}, {1, 2, 3}, {20, 21}]
    assert match_by_overlap(previous, current) == {0: 1, 1: 0}
    assert match_by_overlap(previous, [{1, 20, 21, 22}], min_jaccard=0.3) == {}
    assert match_by_overlap([], current) == {}


def test_distinctive_terms_say_different_things() -> None:
    texts = (
        ["Make our intranet feel like a real community"] * 6
        + ["Keep remote employees engaged"] * 4
        + ["Grow revenue with our customers", "Find speakers for meetups"] * 5
        + [""] * 3
    )
    in_segment = np.array([True] * 10 + [False] * 13)
    terms = distinctive_terms(texts, in_segment, limit=3)
    assert terms[0] == "intranet"  # the longest word of the most common sentence
    assert terms[1] in {"remote", "employees", "engaged"}  # then the other sentence
    assert "feel" not in terms and "make" not in terms
    assert distinctive_terms(texts, np.zeros(len(texts), dtype=bool)) == []


def test_labels_never_collide(questionnaire) -> None:
    ids = list(range(1, 9))
    segment_of = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    answers = {i: {"role": "founder"} for i in (1, 2, 3, 4)}
    answers.update({i: {"role": "maintainer"} for i in (5, 6, 7, 8)})
    texts = dict.fromkeys(ids, "")
    labels = [d.label for d in label_segments(questionnaire, ids, segment_of, answers, texts)]
    assert len(set(labels)) == 3
    assert labels[0].startswith("Founder or executive") and labels[0].endswith("(1)")
    assert labels[1].endswith("(2)")


def test_a_large_community_is_fitted_on_a_sample_and_assigned_in_chunks() -> None:
    X, y, blocks = blobs(n=2000, centers=4, seed=5)
    X32 = X.astype(np.float32)
    model = SegmentModel(n_segments=4, random_state=1, fit_size=300).fit(X32, blocks=blocks)
    assert model.labels_.shape == (2000,)
    # every member is placed at its nearest centroid, though only 300 were fitted on
    assert np.array_equal(model.labels_, model.predict(X32))
    assert np.array_equal(model.labels_, model.transform(X32).argmin(axis=1))
    assert adjusted_rand_score(y, model.labels_) > 0.95
    # features stay float32: no float64 copy of the community
    assert model.scale(X32[:10]).dtype == np.float32
    # the stored affine scaling reproduces the model's scaled space
    offset, factor = model.affine()
    assert np.allclose((X32[:50] - offset) * factor, model.scale(X32[:50]), atol=1e-5)


def test_without_fit_size_the_fit_uses_every_row() -> None:
    X, _, blocks = blobs(n=400, centers=3, seed=2)
    whole = SegmentModel(n_segments=3, random_state=1).fit(X, blocks=blocks)
    large = SegmentModel(n_segments=3, random_state=1, fit_size=400).fit(X, blocks=blocks)
    assert np.array_equal(whole.labels_, large.labels_)


def test_the_clustering_runs_on_one_thread_and_gives_the_same_segments(monkeypatch) -> None:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_info

    X, _ = make_blobs(n_samples=600, centers=4, n_features=6, random_state=3)
    threads_seen: list[int] = []
    fit = KMeans.fit

    def recording_fit(self, *args, **kwargs):
        threads_seen.extend(pool["num_threads"] for pool in threadpool_info())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(KMeans, "fit", recording_fit)
    model = SegmentModel(n_segments=4, random_state=0).fit(X.astype(np.float32))
    assert threads_seen and set(threads_seen) == {1}
    monkeypatch.setattr(KMeans, "fit", fit)
    # The thread limit is the fit's alone: the same rows give the same segments outside it.
    unlimited = KMeans(n_clusters=4, n_init=4, random_state=0).fit(model.scale(X))
    assert adjusted_rand_score(unlimited.labels_, model.labels_) == 1.0
