"""A learned collaborative model: EASE, an item-item linear autoencoder with a closed form.

EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019) learns an
item-item weight matrix ``B`` minimising ``||X - X B||² + l2 ||B||²`` with a zero diagonal,
``X`` the binary member x item engagement matrix. The solution is one matrix inverse:
``P = (XᵀX + l2 I)⁻¹``, ``B = -P / diag(P)`` (column-wise), ``diag(B) = 0``. A member's score
for an item is their engagement row times ``B``: what members with the same items also engaged
with, learned jointly rather than pair by pair. The model is fitted once per match run.

Cost grows with the cube of the items modelled: only the ``max_items`` most engaged-with items
are (2 000 by default: a 2 000 x 2 000 symmetric positive definite matrix, inverted through its
Cholesky factorisation in float32, 16 MB and a fraction of a second on one core; 5 000 items
take about 15 times longer); the others score 0 and are left to the content signals. Chosen
over ALS/BPR (``implicit``): no new dependency, no iterations or seeds, and on small
communities it is the stronger of the two families in published comparisons;
docs/evaluation.md has the measured figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

__all__ = ["EASE"]


class EASE(BaseEstimator):  # type: ignore[misc]
    """EASE, fitted on a member x item engagement matrix (scikit-learn's estimator contract).

    Args:
        l2: Strength of the L2 regularisation (larger: closer to popularity-free co-counts,
            safer on few members).
        max_items: The most engaged-with items modelled; the others score 0.
    """

    def __init__(self, l2: float = 50.0, max_items: int = 2000) -> None:
        self.l2 = l2
        self.max_items = max_items

    def fit(self, engagement: Any) -> EASE:
        """Learn the item-item weights from who engaged with what.

        Args:
            engagement: ``(members, n)`` non-negative engagement (dense or scipy sparse); any
                positive value counts as one engagement.

        Returns:
            The fitted model (``items_``: modelled item columns, ``weights_``: their
            ``(len(items_), len(items_))`` float32 weight matrix, ``n_items_``).

        Raises:
            ValueError: If ``l2`` is not positive or ``max_items`` below 1.
        """
        if not self.l2 > 0:
            raise ValueError(f"l2 must be positive, found {self.l2}")
        if self.max_items < 1:
            raise ValueError(f"max_items must be at least 1, found {self.max_items}")
        binary = _binary(engagement)
        counts = np.bincount(binary.indices, minlength=binary.shape[1])
        engaged = np.flatnonzero(counts > 0)
        if len(engaged) > self.max_items:  # the most engaged-with, ties by column
            order = np.lexsort((engaged, -counts[engaged]))
            engaged = np.sort(engaged[order[: self.max_items]])
        self.items_ = engaged
        self.n_items_ = int(binary.shape[1])
        kept = self._modelled(binary)
        gram = (kept.T.tocsr() @ kept).toarray()  # members who engaged with both items
        self.weights_ = _closed_form(gram, self.l2)
        return self

    def transform(self, engagement: Any, *, modelled_only: bool = False) -> np.ndarray:
        """Each member's score for each item: their engagement row times the learned weights.

        Args:
            engagement: ``(m, n_items_)`` engagement of the members to score (dense or sparse;
                positive values count as one).
            modelled_only: Return only the columns of the modelled items (``items_``), in their
                order; the others score 0 anyway.

        Returns:
            ``(m, n_items_)`` float32 scores (``(m, len(items_))`` with ``modelled_only``); 0
            for items not modelled and for members with no modelled engagement.

        Raises:
            NotFittedError: If the model is not fitted.
            ValueError: If the number of columns differs from the one fitted.
        """
        check_is_fitted(self, "weights_")
        binary = _binary(engagement)
        if binary.shape[1] != self.n_items_:
            raise ValueError(f"expected {self.n_items_} item columns, found {binary.shape[1]}")
        if len(self.items_) == self.n_items_:  # every item modelled: no column selection
            return np.asarray(binary @ self.weights_, dtype=np.float32)
        modelled = (
            np.asarray(self._modelled(binary) @ self.weights_, dtype=np.float32)
            if len(self.items_)
            else np.zeros((binary.shape[0], 0), dtype=np.float32)
        )
        if modelled_only:
            return modelled
        out = np.zeros(binary.shape, dtype=np.float32)
        out[:, self.items_] = modelled
        return out

    def _modelled(self, binary: sp.csr_matrix) -> sp.csr_matrix:
        """``binary``'s modelled columns (``items_``), by renumbering its indices."""
        column = np.full(binary.shape[1], -1, dtype=np.int64)
        column[self.items_] = np.arange(len(self.items_))
        renumbered = column[binary.indices]
        keep = renumbered >= 0
        indptr = np.concatenate([[0], np.cumsum(keep)])[binary.indptr]
        return sp.csr_matrix(
            (binary.data[keep], renumbered[keep], indptr),
            shape=(binary.shape[0], len(self.items_)),
        )


def _binary(engagement: Any) -> sp.csr_matrix:
    """``engagement`` as a float32 CSR matrix of ones where positive, sorted and deduplicated."""
    binary = sp.csr_matrix(engagement, dtype=np.float32, copy=True)
    binary.sum_duplicates()
    binary.data = (binary.data > 0).astype(np.float32)
    binary.eliminate_zeros()
    return binary


def _closed_form(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's weights from the item-item co-counts: ``B = -P / diag(P)``, ``P = (G + l2 I)⁻¹``.

    The matrix is symmetric positive definite: its inverse comes from a Cholesky factorisation,
    in float32 (counts are exact in it; the weights are stored in float32 anyway), a quarter of
    the work of a general inverse in float64. On one BLAS thread: OpenBLAS's factorisation
    synchronises its threads at every block, and on a shared machine it then runs several times
    slower than on one.
    """
    n = len(gram)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    regularised = np.array(gram, dtype=np.float32)
    regularised[np.diag_indices(n)] += np.float32(l2)
    with threadpool_limits(limits=1, user_api="blas"):
        factor, info = lapack.spotrf(regularised, lower=False, clean=False, overwrite_a=True)
        if info == 0:
            upper, info = lapack.spotri(factor, lower=False, overwrite_c=True)
    if info != 0:  # not positive definite in float32: the general inverse, in float64
        inverse = np.linalg.inv(gram.astype(np.float64) + l2 * np.eye(n))
    else:
        inverse = np.triu(upper) + np.triu(upper, 1).T
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)
