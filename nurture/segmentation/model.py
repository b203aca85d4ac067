"""``SegmentModel``: block-weighted scaling + k-means, with k chosen by silhouette score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array, check_is_fitted

__all__ = ["DEFAULT_BLOCK_WEIGHTS", "STANDARDISED_BLOCKS", "SegmentModel"]

DEFAULT_BLOCK_WEIGHTS: Mapping[str, float] = {"choices": 1.0, "text": 1.0, "activity": 0.5}
"""Share of the total variance each feature block contributes to distances."""

STANDARDISED_BLOCKS = frozenset({"activity"})
"""Blocks whose columns are scaled to unit variance before weighting.

Activity columns have unrelated units (days, counts, ratios), so each is standardised. One-hot
answers and embedding dimensions are already on a common scale; standardising them would blow
up rare options and noise dimensions, so they are only centred.
"""

_N_INIT = 4


class SegmentModel(ClusterMixin, TransformerMixin, BaseEstimator):
    """Cluster members on their raw profile features.

    Each block of columns is centred (and standardised for :data:`STANDARDISED_BLOCKS`), then
    multiplied so that its total variance equals its weight: a block's influence on distances no
    longer depends on how many columns it has. When ``n_segments`` is ``None``, k is the value in
    ``[min_segments, max_segments]`` with the best silhouette score on a sample.

    Args:
        n_segments: Number of segments; ``None`` chooses it.
        min_segments: Smallest k tried.
        max_segments: Largest k tried.
        block_weights: ``{block: weight}``; ``None`` means :data:`DEFAULT_BLOCK_WEIGHTS`.
            Blocks not named weigh 1.
        mini_batch_threshold: Above this many rows, ``MiniBatchKMeans`` is used.
        sample_size: Rows sampled to choose k and to score the fit.
        random_state: Seed of every random choice.

    Attributes:
        n_segments_: The number of segments fitted.
        cluster_centers_: ``(n_segments_, n_features)`` centroids in the scaled space.
        labels_: Segment index of each row of the training data.
        silhouette_: Silhouette score of the fit on a sample (``None`` when undefined).
        silhouette_by_k_: ``{k: score}`` for each k tried.
        scalers_: ``{block: StandardScaler}`` fitted per block.
        block_factors_: ``{block: factor}`` applied after scaling.
        blocks_: ``{block: column indices}``.
        n_features_in_: Columns seen in ``fit``.
        algorithm_: ``"kmeans"`` or ``"minibatch_kmeans"``.
    """

    def __init__(
        self,
        n_segments: int | None = None,
        min_segments: int = 3,
        max_segments: int = 10,
        block_weights: Mapping[str, float] | None = None,
        mini_batch_threshold: int = 20000,
        sample_size: int = 3000,
        random_state: int | None = None,
    ) -> None:
        self.n_segments = n_segments
        self.min_segments = min_segments
        self.max_segments = max_segments
        self.block_weights = block_weights
        self.mini_batch_threshold = mini_batch_threshold
        self.sample_size = sample_size
        self.random_state = random_state

    # -- fitting --------------------------------------------------------------------------

    def fit(
        self,
        X: Any,
        blocks: Mapping[str, Sequence[int] | slice] | None = None,
        y: Any = None,
    ) -> SegmentModel:
        """Fit the scaling and the clustering.

        Args:
            X: ``(n_members, n_features)`` raw features.
            blocks: ``{block name: column indices or slice}`` covering every column once;
                ``None`` treats all columns as one block named ``"all"``.
            y: Ignored (scikit-learn's signature).

        Returns:
            The fitted model.

        Raises:
            ValueError: Fewer than two rows, or blocks that do not cover the columns exactly once.
        """
        X = check_array(X, dtype=np.float64)
        n_rows, n_features = X.shape
        if n_rows < 2:
            raise ValueError(f"SegmentModel needs at least 2 rows to cluster, found {n_rows}")
        self.n_features_in_ = n_features
        self.blocks_ = _resolve_blocks(blocks, n_features)
        weights = dict(DEFAULT_BLOCK_WEIGHTS if self.block_weights is None else self.block_weights)
        self.scalers_: dict[str, StandardScaler] = {}
        self.block_factors_: dict[str, float] = {}
        for name, columns in self.blocks_.items():
            scaler = StandardScaler(with_std=name in STANDARDISED_BLOCKS)
            part = scaler.fit_transform(X[:, columns])
            total_variance = float(part.var(axis=0).sum())
            weight = float(weights.get(name, 1.0))
            factor = np.sqrt(weight / total_variance) if total_variance > 1e-12 else 0.0
            self.scalers_[name] = scaler
            self.block_factors_[name] = float(factor)
        Z = self.scale(X)
        rng = np.random.default_rng(self.random_state)
        sample = (
            np.sort(rng.choice(n_rows, size=self.sample_size, replace=False))
            if n_rows > self.sample_size
            else np.arange(n_rows)
        )
        self.silhouette_by_k_: dict[int, float] = {}
        k = self._choose_k(Z[sample])
        self.algorithm_ = "minibatch_kmeans" if n_rows > self.mini_batch_threshold else "kmeans"
        self.kmeans_ = self._kmeans(k, n_rows).fit(Z)
        self.n_segments_ = k
        self.cluster_centers_ = self.kmeans_.cluster_centers_
        self.labels_ = self.kmeans_.labels_
        self.silhouette_ = self._score(Z[sample], self.labels_[sample])
        return self

    def _kmeans(self, k: int, n_rows: int) -> KMeans | MiniBatchKMeans:
        if n_rows > self.mini_batch_threshold:
            return MiniBatchKMeans(
                n_clusters=k, n_init=_N_INIT, batch_size=4096, random_state=self.random_state
            )
        return KMeans(n_clusters=k, n_init=_N_INIT, random_state=self.random_state)

    def _choose_k(self, sample: np.ndarray) -> int:
        n = len(sample)
        if self.n_segments is not None:
            return max(1, min(int(self.n_segments), len(np.unique(sample, axis=0))))
        distinct = len(np.unique(sample, axis=0))
        high = min(self.max_segments, distinct - 1, n - 1)
        low = min(self.min_segments, high)
        if high < 2:
            return max(1, min(self.min_segments, distinct))
        best_k, best_score = low, -np.inf
        for k in range(max(2, low), high + 1):
            labels = KMeans(
                n_clusters=k, n_init=_N_INIT, random_state=self.random_state
            ).fit_predict(sample)
            score = self._score(sample, labels)
            if score is None:
                continue
            self.silhouette_by_k_[k] = score
            if score > best_score + 1e-9:
                best_k, best_score = k, score
        return best_k

    @staticmethod
    def _score(sample: np.ndarray, labels: np.ndarray) -> float | None:
        n_labels = len(np.unique(labels))
        if n_labels < 2 or n_labels >= len(sample):
            return None
        return float(silhouette_score(sample, labels))

    # -- using ----------------------------------------------------------------------------

    def scale(self, X: Any) -> np.ndarray:
        """Raw features to the scaled, block-weighted space the clustering works in.

        Args:
            X: ``(n, n_features)`` raw features.

        Returns:
            ``(n, n_features)`` scaled features.
        """
        check_is_fitted(self, "scalers_")
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"expected {self.n_features_in_} features as in fit, found {X.shape[1]}"
            )
        out = np.zeros_like(X)
        for name, columns in self.blocks_.items():
            out[:, columns] = (
                self.scalers_[name].transform(X[:, columns]) * self.block_factors_[name]
            )
        return out

    def predict(self, X: Any) -> np.ndarray:
        """The segment index of each row.

        Args:
            X: ``(n, n_features)`` raw features.

        Returns:
            ``(n,)`` segment indices.
        """
        check_is_fitted(self, "cluster_centers_")
        return self.kmeans_.predict(self.scale(X))

    def transform(self, X: Any) -> np.ndarray:
        """Distance of each row to each centroid, in the scaled space.

        Args:
            X: ``(n, n_features)`` raw features.

        Returns:
            ``(n, n_segments_)`` distances.
        """
        check_is_fitted(self, "cluster_centers_")
        return self.kmeans_.transform(self.scale(X))


def _resolve_blocks(
    blocks: Mapping[str, Sequence[int] | slice] | None, n_features: int
) -> dict[str, np.ndarray]:
    if blocks is None:
        return {"all": np.arange(n_features)}
    resolved: dict[str, np.ndarray] = {}
    seen = np.zeros(n_features, dtype=int)
    for name, columns in blocks.items():
        indices = (
            np.arange(n_features)[columns]
            if isinstance(columns, slice)
            else np.asarray(list(columns), dtype=int)
        )
        if indices.size and (indices.min() < 0 or indices.max() >= n_features):
            raise ValueError(f"block {name!r} names columns outside 0..{n_features - 1}")
        seen[indices] += 1
        if indices.size:
            resolved[name] = indices
    if np.any(seen != 1):
        bad = np.flatnonzero(seen != 1)[:5].tolist()
        raise ValueError(f"blocks must cover every column exactly once; columns {bad} do not")
    return resolved
