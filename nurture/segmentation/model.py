"""``SegmentModel``: block-weighted scaling + k-means, with k chosen by silhouette score."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array, check_is_fitted
from threadpoolctl import threadpool_limits

__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_BLOCK_WEIGHTS",
    "INERTIA_TOLERANCE",
    "K_TOLERANCE",
    "STANDARDISED_BLOCKS",
    "SegmentModel",
    "resolve_block_weights",
]

DEFAULT_BLOCK_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"choices": 1.0, "text": 0.5, "activity": 0.25}
)
"""Share of the total variance each feature block contributes to distances.

What members say they are and want (their choices) weighs most; their free text adds nuance but
each member writes a sentence or two, so most of its variance is wording; activity says how
engaged a member is more than who they are. Segments then follow what members said about
themselves, with text and activity to tell apart members who answered alike.
"""

STANDARDISED_BLOCKS = frozenset({"activity"})
"""Blocks whose columns are scaled to unit variance before weighting.

Activity columns have unrelated units (days, counts, ratios), so each is standardised. One-hot
answers and embedding dimensions are already on a common scale; standardising them would blow
up rare options and noise dimensions, so they are only centred.
"""

K_TOLERANCE = 0.02
"""A re-run keeps the previous number of segments unless another scores this much higher."""

INERTIA_TOLERANCE = 0.01
"""A re-run keeps the clusters grown from the previous centroids unless a fresh k-means finds
clusters this much (relatively) tighter."""

_N_INIT = 4
_THREADS = 1
"""BLAS and OpenMP threads of the clustering. Its problems are small (a few thousand sampled rows,
a handful of centroids): threads spin waiting for each other between many tiny operations, and
on a shared machine they take the cores the work needs. On 20 000 members beside other work,
one thread did the same fit with a fifth to a tenth of the CPU time (docs/segments.md)."""
CHUNK_ROWS = 20_000
"""Rows scaled and assigned at a time by :meth:`SegmentModel.predict` and ``transform``: a
caller streaming rows in chunks of this many gets the very numbers of one call on every row."""


def resolve_block_weights(block_weights: Mapping[str, float] | None) -> dict[str, float]:
    """The weights in force: :data:`DEFAULT_BLOCK_WEIGHTS` with ``block_weights`` on top.

    Args:
        block_weights: ``{block: weight}`` for the blocks to change; ``None`` keeps the defaults.

    Returns:
        ``{block: weight}`` for every default block and every block named.

    Raises:
        ValueError: A weight is negative or not a finite number.
    """
    weights = dict(DEFAULT_BLOCK_WEIGHTS)
    for name, weight in (block_weights or {}).items():
        value = float(weight)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"block weight of {name!r} must be a number >= 0, found {weight!r}")
        weights[str(name)] = value
    return weights


class SegmentModel(ClusterMixin, TransformerMixin, BaseEstimator):
    """Cluster members on their raw profile features.

    Each block of columns is centred (and standardised for :data:`STANDARDISED_BLOCKS`), then
    multiplied so that its total variance equals its weight: a block's influence on distances no
    longer depends on how many columns it has. When ``n_segments`` is ``None``, k is the value in
    ``[min_segments, max_segments]`` with the best silhouette score on a sample.

    Given ``previous_centers`` (the raw-feature centroids of the previous run's segments), a
    re-run favours continuity: it keeps the previous number of segments unless another scores
    more than :data:`K_TOLERANCE` higher, and starts k-means from the previous centroids, keeping
    that solution unless a fresh k-means is more than :data:`INERTIA_TOLERANCE` tighter. Small
    changes in the community then leave members where they were.

    Args:
        n_segments: Number of segments; ``None`` chooses it.
        min_segments: Smallest k tried.
        max_segments: Largest k tried.
        block_weights: ``{block: weight}`` over :data:`DEFAULT_BLOCK_WEIGHTS`; ``None`` keeps
            the defaults. Blocks named in neither weigh 1.
        mini_batch_threshold: Above this many rows, ``MiniBatchKMeans`` is used.
        sample_size: Rows sampled to choose k and to score the fit.
        random_state: Seed of every random choice.
        previous_centers: ``(m, n_features)`` raw-feature centroids of the previous run's
            segments, or ``None``.
        fit_size: With more rows than this, the scaling and the clustering are fitted on a
            random sample of this many rows, and every row is then assigned to its nearest
            centroid in chunks (memory bounded by the sample, not the community); ``None``
            fits on every row.

    Attributes:
        n_segments_: The number of segments fitted.
        cluster_centers_: ``(n_segments_, n_features)`` centroids in the scaled space.
        labels_: Segment index of each row of the training data.
        silhouette_: Silhouette score of the fit on a sample (``None`` when undefined).
        silhouette_by_k_: ``{k: score}`` for each k tried.
        scalers_: ``{block: StandardScaler}`` fitted per block.
        block_factors_: ``{block: factor}`` applied after scaling.
        block_weights_: ``{block: weight}`` in force.
        blocks_: ``{block: column indices}``.
        n_features_in_: Columns seen in ``fit``.
        algorithm_: ``"kmeans"`` or ``"minibatch_kmeans"``.
        warm_started_: Whether the clusters grew from ``previous_centers``.
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
        previous_centers: Any = None,
        fit_size: int | None = None,
    ) -> None:
        self.n_segments = n_segments
        self.min_segments = min_segments
        self.max_segments = max_segments
        self.block_weights = block_weights
        self.mini_batch_threshold = mini_batch_threshold
        self.sample_size = sample_size
        self.random_state = random_state
        self.previous_centers = previous_centers
        self.fit_size = fit_size

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
            ValueError: Fewer than two rows, blocks that do not cover the columns exactly once,
                or a negative block weight.
        """
        with threadpool_limits(limits=_THREADS):
            return self._fit(X, blocks)

    def _fit(self, X: Any, blocks: Mapping[str, Sequence[int] | slice] | None) -> SegmentModel:
        X = check_array(X, dtype=[np.float32, np.float64])
        n_rows, n_features = X.shape
        if n_rows < 2:
            raise ValueError(f"SegmentModel needs at least 2 rows to cluster, found {n_rows}")
        all_rows = X
        fit_rows: np.ndarray | None = None
        if self.fit_size is not None and n_rows > self.fit_size:
            picker = np.random.default_rng(self.random_state)
            fit_rows = np.sort(picker.choice(n_rows, size=self.fit_size, replace=False))
            X = X[fit_rows]
            n_rows = len(X)
        self.n_features_in_ = n_features
        self.blocks_ = _resolve_blocks(blocks, n_features)
        self.block_weights_ = resolve_block_weights(self.block_weights)
        self.scalers_: dict[str, StandardScaler] = {}
        self.block_factors_: dict[str, float] = {}
        for name, columns in self.blocks_.items():
            scaler = StandardScaler(with_std=name in STANDARDISED_BLOCKS)
            part = scaler.fit_transform(X[:, columns])
            total_variance = float(part.var(axis=0).sum())
            weight = self.block_weights_.get(name, 1.0)
            factor = np.sqrt(weight / total_variance) if total_variance > 1e-12 else 0.0
            self.scalers_[name] = scaler
            self.block_factors_[name] = float(factor)
        Z = self.scale(X)
        previous = self._previous_scaled()
        rng = np.random.default_rng(self.random_state)
        sample = (
            np.sort(rng.choice(n_rows, size=self.sample_size, replace=False))
            if n_rows > self.sample_size
            else np.arange(n_rows)
        )
        self.silhouette_by_k_: dict[int, float] = {}
        k = self._choose_k(Z[sample], None if previous is None else len(previous))
        self.algorithm_ = "minibatch_kmeans" if n_rows > self.mini_batch_threshold else "kmeans"
        self.kmeans_ = self._kmeans(k, n_rows).fit(Z)
        self.warm_started_ = False
        if previous is not None and len(previous) == k:
            warm = self._kmeans(k, n_rows, init=previous).fit(Z)
            if self.kmeans_.inertia_ >= warm.inertia_ * (1.0 - INERTIA_TOLERANCE):
                self.kmeans_ = warm
                self.warm_started_ = True
        self.n_segments_ = k
        self.cluster_centers_ = self.kmeans_.cluster_centers_
        self.silhouette_ = self._score(Z[sample], self.kmeans_.labels_[sample])
        self.labels_ = self.kmeans_.labels_ if fit_rows is None else self.predict(all_rows)
        return self

    def _previous_scaled(self) -> np.ndarray | None:
        if self.previous_centers is None:
            return None
        centers = np.asarray(self.previous_centers, dtype=np.float64)
        if centers.ndim != 2 or not len(centers) or centers.shape[1] != self.n_features_in_:
            return None
        if not np.all(np.isfinite(centers)):
            return None
        return self.scale(centers)

    def _kmeans(
        self, k: int, n_rows: int, init: np.ndarray | None = None
    ) -> KMeans | MiniBatchKMeans:
        start: Any = "k-means++" if init is None else init
        n_init = _N_INIT if init is None else 1
        if n_rows > self.mini_batch_threshold:
            return MiniBatchKMeans(
                n_clusters=k,
                init=start,
                n_init=n_init,
                batch_size=4096,
                random_state=self.random_state,
            )
        return KMeans(n_clusters=k, init=start, n_init=n_init, random_state=self.random_state)

    def _choose_k(self, sample: np.ndarray, previous_k: int | None) -> int:
        n = len(sample)
        distinct = len(np.unique(sample, axis=0))
        if self.n_segments is not None:
            return max(1, min(int(self.n_segments), distinct))
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
        if previous_k is not None:
            kept = self.silhouette_by_k_.get(previous_k)
            if kept is not None and kept >= best_score - K_TOLERANCE:
                return previous_k
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
        X = check_array(X, dtype=[np.float32, np.float64])
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

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(offset, factor)`` per column, such that ``scale(X) == (X - offset) * factor``.

        Stored with a run, they let a later run place a member among the run's centroids
        without fitting again.
        """
        check_is_fitted(self, "scalers_")
        offset = np.zeros(self.n_features_in_)
        factor = np.zeros(self.n_features_in_)
        for name, columns in self.blocks_.items():
            scaler = self.scalers_[name]
            offset[columns] = scaler.mean_
            std = scaler.scale_ if scaler.scale_ is not None else 1.0
            factor[columns] = self.block_factors_[name] / std
        return offset, factor

    def predict(self, X: Any) -> np.ndarray:
        """The segment index of each row.

        Args:
            X: ``(n, n_features)`` raw features.

        Returns:
            ``(n,)`` segment indices.
        """
        check_is_fitted(self, "cluster_centers_")
        X = check_array(X, dtype=[np.float32, np.float64])
        out = np.empty(len(X), dtype=np.int32)
        with threadpool_limits(limits=_THREADS):
            for start in range(0, len(X), CHUNK_ROWS):
                part = self.scale(X[start : start + CHUNK_ROWS]).astype(self._center_dtype())
                out[start : start + CHUNK_ROWS] = self.kmeans_.predict(part)
        return out

    def transform(self, X: Any) -> np.ndarray:
        """Distance of each row to each centroid, in the scaled space.

        Args:
            X: ``(n, n_features)`` raw features.

        Returns:
            ``(n, n_segments_)`` distances.
        """
        check_is_fitted(self, "cluster_centers_")
        X = check_array(X, dtype=[np.float32, np.float64])
        out = np.empty((len(X), self.n_segments_), dtype=np.float64)
        with threadpool_limits(limits=_THREADS):
            for start in range(0, len(X), CHUNK_ROWS):
                part = self.scale(X[start : start + CHUNK_ROWS]).astype(self._center_dtype())
                out[start : start + CHUNK_ROWS] = self.kmeans_.transform(part)
        return out

    def _center_dtype(self) -> Any:
        return self.kmeans_.cluster_centers_.dtype


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
