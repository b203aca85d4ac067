"""A pure, vectorised ranker: a blend of interest signals, then diversified by MMR.

Everything works on a chunk of members at once with matrix products: one dense product for the
three interest vectors (the member's answers, their recent history, their segment: each a cosine,
linear in the items, so their weighted sum is one member vector), one sparse product for
co-engagement; the other signals are added in place, one pass each over the chunk's scores, and
the learned model's only on the items it models. Only each member's best ``mmr_candidates``
items are kept; maximal marginal relevance re-ranks them, its ``k`` positions a Python loop, each
a batched operation over the whole chunk, with the cosines within each member's pool computed
only for the items it is likely to take (and on demand for the others). The dense product uses
the BLAS threads; everything after it is row by row, so it runs in blocks of members, each of
members with the same eligible items (one language's: its passes run on that language's columns
only), on a small thread pool (numpy releases the GIL in these passes), with the same picks and
scores for any number of threads.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "INELIGIBLE",
    "PERSONAL_SIGNALS",
    "RANKING_THREADS",
    "RankingWeights",
    "co_engagement_scores",
    "decay",
    "learn_co_engagement",
    "normalise_popularity",
    "rank_content",
    "scale_collaborative",
    "select_diverse",
]

INELIGIBLE = np.float32(-1e30)
"""A score at or below this marks an item a member cannot get (as ``-inf`` does)."""

PERSONAL_SIGNALS = ("member", "history", "co_engagement", "collaborative", "segment")
"""The weights whose signal a member may lack; a missing one's weight goes to the others."""
INTEREST_SIGNALS = ("member", "history", "segment")
"""The personal signals that are a cosine to an interest vector: linear in the items."""
RANKING_THREADS = 2
"""Most threads :func:`rank_content` uses by default (never more than the machine's cores)."""


def _default_threads() -> int:
    """:data:`RANKING_THREADS`, or fewer when the machine has fewer cores."""
    return max(1, min(RANKING_THREADS, os.cpu_count() or 1))


class RankingWeights(BaseModel):
    """How the ranker blends its signals and diversifies; stored with each match run.

    A member's score for an item is::

        member * cos(answers, item) + history * cos(recent history, item)
        + co_engagement * co-engagement(item) + collaborative * learned model(item)
        + segment * cos(segment, item)
        + popularity * popularity in the segment (item) + freshness * freshness(item)
        + format * (item's kind is a format the member prefers)

    The first five are personal signals: when a member lacks one (no answers, no history, no
    segment), its weight is shared among the ones they have, in proportion; when they have none,
    popularity takes the whole personal share.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    member: float = Field(
        default=0.3,
        ge=0,
        description="Weight of the similarity to the member's answers (free text and goals).",
    )
    history: float = Field(
        default=0.25,
        ge=0,
        description=(
            "Weight of the similarity to the content the member consumed (viewed, clicked, "
            "attended), recent content counting more (see interest_half_life_days)."
        ),
    )
    co_engagement: float = Field(
        default=0.25,
        ge=0,
        description=(
            "Weight of co-engagement: members who engaged with what this member engaged with "
            "also engaged with the item."
        ),
    )
    collaborative: float = Field(
        default=0.3,
        ge=0,
        description=(
            "Weight of the learned collaborative model (EASE, fitted on every member's "
            "engagements once per match run): what members with the same items engaged with."
        ),
    )
    segment: float = Field(
        default=0.1, ge=0, description="Weight of the similarity to the segment's interest."
    )
    popularity: float = Field(
        default=0.2,
        ge=0,
        description="Weight of the item's recent popularity in the member's segment.",
    )
    cold_start_popularity: float = Field(
        default=1.0,
        ge=0,
        description=(
            "Weight of popularity for a member with no history (nothing consumed yet): the "
            "popularity within their answer groups, else their segment's, is the strongest "
            "prior for newcomers; replaces popularity for them."
        ),
    )
    community_popularity: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description=(
            "Share of the whole community's popularity in the popularity of a member ranked by "
            "their segment's (0: the segment's alone, 1: the community's alone). Members who "
            "answered a single-choice question are ranked by their answer groups' popularity, "
            "already shrunk towards the community's, which this leaves as it is."
        ),
    )
    freshness: float = Field(default=0.1, ge=0, description="Weight of the item's freshness.")
    format: float = Field(
        default=0.05,
        ge=0,
        description="Bonus of an item whose kind is among the formats the member prefers.",
    )
    mmr_lambda: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Maximal marginal relevance: 1 ranks by score alone, lower favours variety.",
    )
    mmr_candidates: int = Field(
        default=30,
        ge=1,
        description="Best-scored items per member that maximal marginal relevance re-ranks.",
    )
    duplicate_similarity: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Items at least this similar (cosine) to one already listed are left out.",
    )
    freshness_half_life_days: float = Field(
        default=60.0, gt=0, description="Days after which an item's freshness halves."
    )
    interest_half_life_days: float = Field(
        default=90.0,
        gt=0,
        description=(
            "Days after which an engagement (a view, click or attended event) counts half, in "
            "the member's history and in popularity."
        ),
    )
    decay_popularity: bool = Field(
        default=True,
        description=(
            "Count each engagement in popularity (the community's, the segments', the answer "
            "groups') at its recency weight (interest_half_life_days). Off, every engagement "
            "counts once however old: the long-run popularity, as the popularity baseline of "
            "nurture evaluate counts it."
        ),
    )
    centre_history: bool = Field(
        default=True,
        description=(
            "Take the catalogue's mean vector out of what a member consumed before averaging it: "
            "with many items, a plain average sits at the centre of the catalogue and favours "
            "generic items."
        ),
    )
    unscored_items_by_content: bool = Field(
        default=True,
        description=(
            "Rank an item that neither co-engagement nor the learned model can score (nobody "
            "engaged with it alongside other items yet) by its similarity to the member's "
            "interests, with the weight of those two signals too, as a signal a member lacks "
            "goes to their other ones. Off, new content trails content with engagement."
        ),
    )
    reason_min_similarity: float = Field(
        default=0.2,
        ge=-1,
        le=1,
        description=(
            "Below this cosine, a member's evidence is too weak to explain an item; measured once "
            "what all items of the language have in common is taken out of both vectors."
        ),
    )


def decay(age_days: np.ndarray | float, half_life_days: float) -> np.ndarray:
    """Exponential time decay: 1 for now, 0.5 after ``half_life_days``; future ages count as 1.

    Args:
        age_days: Ages in days.
        half_life_days: Days after which the weight halves.

    Returns:
        The weights, as float64.
    """
    age = np.clip(np.asarray(age_days, dtype=np.float64), 0.0, None)
    return np.exp2(-age / half_life_days)


def learn_co_engagement(
    member_index: np.ndarray,
    item_index: np.ndarray,
    n_items: int,
    *,
    neighbours: int = 50,
    shrinkage: float = 5.0,
    block: int = 4096,
) -> sp.csr_matrix:
    """Item-item co-engagement learned from who engaged with what, as a sparse matrix.

    Two items are close when the same members engaged with both: the cosine of their columns in
    the binary member × item matrix, shrunk towards 0 when few members share them
    (``co / (co + shrinkage)``), keeping each item's ``neighbours`` closest items. The diagonal is
    0: an item is not its own neighbour.

    Args:
        member_index: ``(e,)`` integer id of the member of each engagement (any integers).
        item_index: ``(e,)`` column of the item of each engagement, in ``[0, n_items)``.
        n_items: Number of items.
        neighbours: Closest items kept per item.
        shrinkage: Members an item pair must share to reach half its cosine.
        block: Items per block while keeping the neighbours (bounds memory by the item pairs
            that members share within a block).

    Returns:
        An ``(n_items, n_items)`` float32 CSR matrix with values in ``[0, 1]``.
    """
    member_index = np.asarray(member_index)
    item_index = np.asarray(item_index, dtype=np.int64)
    if member_index.size == 0 or n_items == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    _, rows = np.unique(member_index, return_inverse=True)
    engaged = _binary_engagement(rows.ravel(), item_index, int(rows.max()) + 1, n_items)
    by_item = engaged.T.tocsr()
    members_per_item = np.bincount(engaged.indices, minlength=n_items).astype(np.float32)
    scale = np.divide(
        1.0,
        np.sqrt(members_per_item),
        out=np.zeros(n_items, np.float32),
        where=members_per_item > 0,
    )
    kept = min(neighbours, n_items - 1)
    # Sparse throughout: an item shares members with few others, and a large catalogue holds
    # many items nobody engaged with (a dense row per item spent minutes on 72 000 questions).
    blocks = []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        co = sp.csr_matrix(by_item[start:stop] @ engaged)  # members who engaged with both
        co.sort_indices()
        row = np.repeat(np.arange(stop - start), np.diff(co.indptr))
        column = co.indices.astype(np.int64)
        count = co.data.astype(np.float32)
        other = column != row + start  # not its own neighbour
        row, column, count = row[other], column[other], count[other]
        # co / sqrt(members_i * members_j) * co / (co + shrinkage), as float32 operations
        similarity = count * scale[column]
        similarity *= scale[start + row]
        similarity *= count
        similarity /= count + np.float32(shrinkage)
        if kept < n_items - 1 and kept > 0:  # each item's closest, ties kept
            similarity = np.where(
                similarity >= _kth_largest(similarity, row, stop - start, kept)[row], similarity, 0
            )
        positive = similarity > 0
        blocks.append(
            sp.csr_matrix(
                (similarity[positive], (row[positive], column[positive])),
                shape=(stop - start, n_items),
                dtype=np.float32,
            )
        )
    return sp.vstack(blocks, format="csr")


def _kth_largest(values: np.ndarray, rows: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """``(n_rows,)`` the ``k``-th largest of each row's values (0 for a row with fewer).

    ``values`` and ``rows`` list a sparse matrix's stored entries, rows in ascending order; the
    entries not stored count as 0, as in the dense row.
    """
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order = np.lexsort((-values, rows))  # by row, largest first
    out = np.zeros(n_rows, dtype=values.dtype)
    full = counts >= k
    out[full] = np.maximum(values[order[starts[full] + k - 1]], 0)
    return out


def _binary_engagement(
    member_rows: np.ndarray, item_index: np.ndarray, n_members: int, n_items: int
) -> sp.csr_matrix:
    """The binary member x item matrix (float32 CSR): 1 where the member engaged with the item."""
    engaged = sp.csr_matrix(
        (np.ones(len(item_index), dtype=np.float32), (member_rows, item_index)),
        shape=(n_members, n_items),
    )
    engaged.sum_duplicates()
    engaged.data[:] = 1.0  # engaged or not: repeated views of one item count once
    return engaged


def _csr(matrix: Any) -> sp.csr_matrix:
    """``matrix`` as a float32 CSR matrix, copied only when it is not one already."""
    if sp.issparse(matrix) and matrix.format == "csr" and matrix.dtype == np.float32:
        return matrix
    return sp.csr_matrix(matrix, dtype=np.float32)


def _co_engagement_rows(history: Any, co_engagement: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    """:func:`co_engagement_scores`, sparse: only the items co-engaged with a member's history."""
    product = sp.csr_matrix(_csr(history) @ _csr(co_engagement))
    product.eliminate_zeros()
    counts = np.diff(product.indptr)
    if product.nnz == 0:
        return product
    top = np.ones(product.shape[0], dtype=np.float32)
    filled = counts > 0  # each non-empty row's largest value, without sorting the indices
    top[filled] = np.maximum.reduceat(product.data, product.indptr[:-1][filled])
    top[top <= 0] = 1.0
    product.data /= np.repeat(top, counts)
    return product


def co_engagement_scores(history: Any, co_engagement: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Each member's co-engagement with each item, scaled to ``[0, 1]`` per member.

    The history-weighted sum of the item-item co-engagement of what the member engaged with,
    divided by the member's largest value: their most co-engaged item scores 1.

    Args:
        history: ``(m, n)`` non-negative engagement weights (dense or scipy sparse).
        co_engagement: ``(n, n)`` item-item co-engagement (see :func:`learn_co_engagement`).

    Returns:
        An ``(m, n)`` float32 array; all zero for a member with no history or no co-engaged item.
    """
    return _co_engagement_rows(history, co_engagement).toarray()


def scale_collaborative(scores: np.ndarray) -> np.ndarray:
    """The learned model's scores in ``[0, 1]`` per member: negatives 0, the largest 1.

    Args:
        scores: ``(m, n)`` raw scores (:meth:`nurture.recommend.EASE.transform`).

    Returns:
        ``(m, n)`` float32; a row without any positive score stays all zero.
    """
    positive = np.clip(np.asarray(scores, dtype=np.float32), 0.0, None)
    top = positive.max(axis=1, keepdims=True, initial=0.0)
    return np.divide(positive, top, out=np.zeros_like(positive), where=top > 0)


def normalise_popularity(counts: np.ndarray) -> np.ndarray:
    """Popularity in ``[0, 1]`` per row: ``log1p(count)`` over the row's largest.

    A row with no engagement at all gives every item the same popularity, 1.

    Args:
        counts: ``(..., n)`` non-negative (possibly decayed) engagement counts.

    Returns:
        An array of the same shape, float32.
    """
    logs = np.log1p(np.clip(np.asarray(counts, dtype=np.float32), 0, None))
    top = logs.max(axis=-1, keepdims=True, initial=0.0)
    return np.divide(logs, top, out=np.ones_like(logs), where=top > 0)


def _unit_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row at unit length (``nan`` read as 0), and which rows hold a vector at all."""
    matrix = np.nan_to_num(np.asarray(matrix, dtype=np.float32))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    present = (norms > 0) & np.isfinite(norms)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=present), present[:, 0]


def select_diverse(
    scores: np.ndarray,
    item_vectors: np.ndarray,
    k: int,
    mmr_lambda: float,
    duplicate_similarity: float,
    *,
    candidates: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``k`` items per row by maximal marginal relevance, never two near-duplicates.

    At each position, every row takes the eligible item maximising
    ``mmr_lambda * score - (1 - mmr_lambda) * max cos(item, items already taken)``; items whose
    cosine to a taken item reaches ``duplicate_similarity`` are no longer eligible. Between
    equal values, the item of the lowest index wins.

    Args:
        scores: ``(m, n)`` relevance scores, ``-inf`` (or anything at or below
            :data:`INELIGIBLE`) where an item is not eligible.
        item_vectors: ``(n, d)`` unit-length item embeddings.
        k: Items to pick per row.
        mmr_lambda: Trade-off between relevance (1) and variety (0).
        duplicate_similarity: Cosine from which two items count as near-duplicates.
        candidates: Only each row's best-scored ``candidates`` items (at least ``k``; of equal
            scores, those of the lowest index) take part; all items when none.

    Returns:
        ``(indices, picked_scores)``, both ``(m, k)``: item indices (``-1`` once a row runs out
        of eligible items) and their relevance scores (``nan`` there).
    """
    m, n = scores.shape
    if m == 0 or n == 0 or k == 0:
        return np.full((m, k), -1, dtype=np.int64), np.full((m, k), np.nan, dtype=np.float64)
    items = np.asarray(item_vectors, dtype=np.float32)
    width = _pool_width(n, k, candidates)
    if width < n:
        pool, pool_scores = _best_of(scores, width)
        return _maximal_marginal_relevance(
            pool, pool_scores, items, k, mmr_lambda, duplicate_similarity
        )
    return _maximal_marginal_relevance(
        None, np.asarray(scores), items, k, mmr_lambda, duplicate_similarity
    )


def _pool_width(n: int, k: int, candidates: int | None) -> int:
    """How many of each row's best-scored items maximal marginal relevance re-ranks."""
    return n if candidates is None else min(n, max(candidates, k))


def _best_of(scores: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best ``width`` items, in the order of their index, and their scores.

    Between items scoring as much as the row's ``width``-th best, those of the lowest index
    are kept (``nan`` scores count as ``-inf``).
    """
    m, n = scores.shape
    # The threshold by a partition of the negated scores, not an argpartition of the scores:
    # most of a row is ineligible, tied at the lowest score, which slows numpy's selection
    # down tenfold when it looks for the top end.
    ranked = np.where(np.isnan(scores), -np.inf, scores) if np.isnan(scores).any() else scores
    threshold = -np.partition(-ranked, width - 1, axis=1)[:, width - 1 : width]
    kept = ranked > threshold
    tied = ranked == threshold
    missing = width - np.count_nonzero(kept, axis=1)
    crowded = np.flatnonzero(np.count_nonzero(tied, axis=1) > missing)
    kept |= tied
    if crowded.size:  # more ties than places: the first ones by index
        first = np.cumsum(tied[crowded], axis=1, dtype=np.int64) <= missing[crowded, None]
        kept[crowded] &= ~tied[crowded] | first
    pool = np.flatnonzero(kept).reshape(m, width) - (np.arange(m, dtype=np.int64) * n)[:, None]
    return pool, np.take_along_axis(scores, pool, axis=1)


def _maximal_marginal_relevance(
    pool: np.ndarray | None,
    pool_scores: np.ndarray,
    items: np.ndarray,
    k: int,
    mmr_lambda: float,
    duplicate_similarity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`select_diverse` on each row's pool (``pool`` none: the whole catalogue)."""
    m, width = pool_scores.shape
    indices = np.full((m, k), -1, dtype=np.int64)
    picked = np.full((m, k), np.nan, dtype=np.float64)
    if m == 0 or width == 0 or k == 0:
        return indices, picked
    rows = np.arange(m)
    similarities: _PoolSimilarity | _AllSimilarity
    if pool is not None:
        similarities = _PoolSimilarity(items, pool, pool_scores, k)
    else:
        pool = np.broadcast_to(np.arange(width), (m, width))
        similarities = _AllSimilarity(items)
    available = np.isfinite(pool_scores) & (pool_scores > INELIGIBLE)
    relevance = np.where(available, mmr_lambda * pool_scores, -np.inf)
    max_similarity = np.zeros((m, width), dtype=np.float32)
    for position in range(k):
        if position:
            mmr = relevance - (1.0 - mmr_lambda) * max_similarity
            mmr[~available] = -np.inf
        else:  # nothing taken yet: the best score
            mmr = relevance
        best = np.argmax(mmr, axis=1)
        has_pick = available[rows, best]
        if not has_pick.any():
            break
        indices[has_pick, position] = pool[rows[has_pick], best[has_pick]]
        picked[has_pick, position] = pool_scores[rows[has_pick], best[has_pick]]
        available[rows, best] = False
        if position == k - 1:
            break
        similarity = similarities.to_pool(best, has_pick)
        np.maximum(max_similarity, similarity, out=max_similarity)
        available &= similarity < duplicate_similarity
    return indices, picked


class _AllSimilarity:
    """Cosines of each row's pick to every item (the pool is the whole catalogue)."""

    def __init__(self, items: np.ndarray) -> None:
        self.items = items

    def to_pool(self, best: np.ndarray, has_pick: np.ndarray) -> np.ndarray:
        similarity = self.items[best] @ self.items.T
        similarity[~has_pick] = 0.0
        return similarity


class _PoolSimilarity:
    """Cosines of each row's pick to the rest of its pool, computed only where needed.

    Maximal marginal relevance mostly takes items among each row's ``k`` best-scored, so the
    cosines of the best ``k - 1`` (the last pick's are never needed) to the pool are computed
    up front (under a third of the pool's Gram matrix by default), a block of rows at a time
    so that the pool's vectors stay in the processor's cache; a row whose pick lies outside
    them gets its pick's cosines on demand.
    """

    BLOCK = 32
    """Rows whose pool vectors are gathered at once (32 x 30 x 384 floats: 1.5 MB)."""

    def __init__(self, items: np.ndarray, pool: np.ndarray, pool_scores: np.ndarray, k: int):
        m, width = pool.shape
        self.items = items
        self.pool = pool
        self.rows = np.arange(m)
        kept = min(width, k - 1)  # the last pick's cosines are never needed
        if 0 < kept < width:
            ahead = np.argpartition(-pool_scores, kept - 1, axis=1)[:, :kept]
        else:
            ahead = np.broadcast_to(np.arange(kept), (m, kept))
        self.slot = np.full((m, width), -1, dtype=np.int64)
        np.put_along_axis(self.slot, ahead, np.arange(kept)[None, :], axis=1)
        ahead_items = np.take_along_axis(pool, ahead, axis=1)
        self.gram = np.empty((m, kept, width), dtype=np.float32)
        for start in range(0, m, self.BLOCK):
            block = slice(start, start + self.BLOCK)
            vectors = np.take(items, pool[block], axis=0)  # (block, width, d)
            ahead_vectors = np.take(items, ahead_items[block], axis=0)  # (block, kept, d)
            np.matmul(ahead_vectors, vectors.transpose(0, 2, 1), out=self.gram[block])

    def to_pool(self, best: np.ndarray, has_pick: np.ndarray) -> np.ndarray:
        slot = self.slot[self.rows, best]
        similarity = self.gram[self.rows, np.maximum(slot, 0)]
        missing = np.flatnonzero((slot < 0) & has_pick)
        if missing.size:
            vectors = np.take(self.items, self.pool[missing], axis=0)  # (r, width, d)
            picks = np.take(self.items, self.pool[missing, best[missing]], axis=0)  # (r, d)
            similarity[missing] = np.einsum("rwd,rd->rw", vectors, picks)
        similarity[~has_pick] = 0.0
        return similarity


def _check_shapes(
    m: int, n: int, d: int, segment_interest: np.ndarray, item_vectors: np.ndarray, **arrays: Any
) -> None:
    if segment_interest.shape != (m, d) or item_vectors.shape[1:] != (d,):
        raise ValueError(
            f"interest shapes {(m, d)} and {segment_interest.shape} do not match item vectors "
            f"{item_vectors.shape}: expected (m, d), (m, d) and (n, d)"
        )
    for name, (array, shapes) in arrays.items():
        if array is not None and array.shape not in shapes:
            expected = " or ".join(str(shape) for shape in shapes)
            raise ValueError(f"expected {name} of shape {expected}, found {array.shape}")


def rank_content(
    member_interest: np.ndarray,
    segment_interest: np.ndarray,
    excluded: np.ndarray,
    item_vectors: np.ndarray,
    item_ok: np.ndarray,
    freshness: np.ndarray,
    weights: RankingWeights,
    k: int,
    popularity: np.ndarray | None = None,
    *,
    history: np.ndarray | sp.spmatrix | None = None,
    co_engagement: np.ndarray | sp.spmatrix | None = None,
    format_match: np.ndarray | None = None,
    popularity_rows: np.ndarray | None = None,
    collaborative: np.ndarray | None = None,
    collaborative_items: np.ndarray | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank content items for a chunk of members, with diversity.

    Args:
        member_interest: ``(m, d)`` unit vectors of the members' stated interests (answers); an
            all-zero (or ``nan``) row means the member has none.
        segment_interest: ``(m, d)`` interest of each member's current segment; an all-zero row
            means none.
        excluded: ``(m, n)`` bool, true where the member already received or consumed the item.
        item_vectors: ``(n, d)`` unit-length item embeddings.
        item_ok: ``(m, n)`` bool eligibility (language, kind, not expired, not a past event...).
        freshness: ``(n,)`` freshness of each item, in ``[0, 1]``.
        weights: How the signals blend and how much variety MMR enforces.
        k: Items per member.
        popularity: ``(n,)``, ``(m, n)`` or, with ``popularity_rows``, ``(r, n)`` non-negative
            popularity: engagement counts (raw or decayed) in the whole community, for each
            member, or for each segment, normalised here per row with
            :func:`normalise_popularity`; none means every item is as popular.
        history: ``(m, n)`` non-negative weights of what each member engaged with (dense or
            scipy sparse; recent engagements weigh more); their weighted mean item vector is
            the history interest, and they drive co-engagement. None: no member has history.
        co_engagement: ``(n, n)`` item-item co-engagement (:func:`learn_co_engagement`); none:
            no co-engagement signal.
        format_match: ``(m, n)`` bool, true where the item's kind is a format the member prefers.
        popularity_rows: ``(m,)`` the row of ``popularity`` of each member (their segment's).
        collaborative: ``(m, n)`` the learned collaborative model's scores
            (:class:`~nurture.recommend.EASE`), scaled here to ``[0, 1]`` per member (negative
            scores count as 0); a member whose row has no positive score lacks the signal.
        collaborative_items: The item columns ``collaborative`` holds, when it holds only the
            items the model scores (``EASE.items_``, with ``EASE.transform(...,
            modelled_only=True)``): ``collaborative`` is then ``(m, len(collaborative_items))``,
            the other items scoring 0, and no ``(m, n)`` array of zeros is built.
        threads: Threads that rank blocks of the chunk's members at once after the matrix
            product (which uses the BLAS threads); none: :data:`RANKING_THREADS`. Any number
            gives the same picks and scores.

    Returns:
        ``(indices, scores)``, both ``(m, k)``: item indices, best first (``-1`` when a member
        has fewer than ``k`` eligible items), and their scores (``nan`` there).

    Raises:
        ValueError: If the shapes do not agree, or ``k`` is negative.
    """
    m, d = member_interest.shape
    n = item_vectors.shape[0]
    if popularity_rows is not None:
        popularity_rows = np.asarray(popularity_rows, dtype=np.int64)
    _check_shapes(
        m,
        n,
        d,
        segment_interest,
        item_vectors,
        excluded=(excluded, [(m, n)]),
        item_ok=(item_ok, [(m, n)]),
        freshness=(np.asarray(freshness), [(n,)]),
        popularity=(
            None if popularity is None or popularity_rows is not None else np.asarray(popularity),
            [(n,), (m, n)],
        ),
        popularity_rows=(popularity_rows, [(m,)]),
        history=(history, [(m, n)]),
        co_engagement=(co_engagement, [(n, n)]),
        format_match=(format_match, [(m, n)]),
        collaborative=(
            collaborative,
            [(m, n) if collaborative_items is None else (m, len(collaborative_items))],
        ),
    )
    if popularity_rows is not None:
        table = None if popularity is None else np.asarray(popularity)
        if table is None or table.ndim != 2 or table.shape[1] != n:
            found = None if table is None else table.shape
            raise ValueError(f"popularity_rows needs popularity of shape (r, {n}), found {found}")
        inside = (popularity_rows >= 0) & (popularity_rows < len(table))
        if not inside.all():
            raise ValueError(f"popularity_rows must lie in [0, {len(table)})")
    if collaborative_items is not None and len(collaborative_items):
        columns = np.asarray(collaborative_items)
        if columns.min() < 0 or columns.max() >= n:
            raise ValueError(f"collaborative_items must lie in [0, {n})")
    if k < 0:
        raise ValueError(f"k must be at least 0, found {k}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, found {threads}")
    items = np.ascontiguousarray(item_vectors, dtype=np.float32)

    # The interest vectors, each a unit vector or zero; and which members have each signal.
    interests: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    interests["member"], present["member"] = _unit_rows(member_interest)
    interests["segment"], present["segment"] = _unit_rows(segment_interest)
    interests["history"] = np.zeros((m, d), dtype=np.float32)
    present["history"] = np.zeros(m, dtype=bool)
    co_rows: sp.csr_matrix | None = None
    if history is not None:
        consumed = np.asarray(history @ items, dtype=np.float32)
        if weights.centre_history and n:
            # Sum of each member's weights times the catalogue's mean: what every item shares.
            totals = np.asarray(history.sum(axis=1), dtype=np.float32).reshape(m, 1)
            consumed = consumed - totals * items.mean(axis=0, keepdims=True)
        interests["history"], present["history"] = _unit_rows(consumed)
        if co_engagement is not None:
            co_rows = _co_engagement_rows(history, co_engagement)
    present["co_engagement"] = (
        np.zeros(m, dtype=bool) if co_rows is None else np.diff(co_rows.indptr) > 0
    )
    learned = None if collaborative is None else np.asarray(collaborative, dtype=np.float32)
    learned_top = (
        np.zeros(m, dtype=np.float32) if learned is None else learned.max(axis=1, initial=0.0)
    )
    present["collaborative"] = learned_top > 0

    # A missing personal signal's weight goes to the member's other ones, in proportion.
    base = {name: float(getattr(weights, name)) for name in PERSONAL_SIGNALS}
    share = sum(base.values())
    held = sum(np.where(present[name], base[name], 0.0) for name in PERSONAL_SIGNALS)
    scale = np.divide(share, held, out=np.zeros(m), where=held > 0)
    member_weight = {
        name: (scale * np.where(present[name], base[name], 0.0)).astype(np.float32)
        for name in PERSONAL_SIGNALS
    }
    # The three interests are linear in the items: one product for all of them.
    blend = sum(member_weight[name][:, None] * interests[name] for name in INTEREST_SIGNALS)
    blend = np.asarray(blend, dtype=np.float32).reshape(m, d)
    if co_rows is not None:  # sparse: only the items co-engaged with each member's history
        co_rows.data *= np.repeat(member_weight["co_engagement"], np.diff(co_rows.indptr))
    learned_factor = np.divide(  # clip(s, 0) / top * weight == clip(s * weight / top, 0)
        member_weight["collaborative"],
        learned_top,
        out=np.zeros(m, dtype=np.float32),
        where=learned_top > 0,
    )

    # An item nobody engaged with alongside anything else has no co-engagement, and the learned
    # model cannot score it either: its interest similarity takes both signals' weight, as a
    # member's missing signal goes to the others (else new content trails old content).
    unscored: np.ndarray | None = None
    unscored_factor: np.ndarray | None = None
    if weights.unscored_items_by_content and co_engagement is not None and co_rows is not None:
        unscored = np.bincount(_csr(co_engagement).indices, minlength=n) == 0
        interest_share = sum(member_weight[name] for name in INTEREST_SIGNALS)
        gained = member_weight["co_engagement"] + member_weight["collaborative"]
        unscored_factor = np.divide(
            interest_share + gained,
            interest_share,
            out=np.ones(m, dtype=np.float32),
            where=interest_share > 0,
        ).astype(np.float32)

    # Popularity (at each member's weight, in their row of the table) and freshness.
    fresh = np.float32(weights.freshness) * np.asarray(freshness, dtype=np.float32)
    popular = (
        np.ones((1, n), dtype=np.float32)
        if popularity is None
        else np.atleast_2d(normalise_popularity(popularity))
    )
    per_member = popularity_rows is None and len(popular) == m > 1
    if popularity_rows is not None:
        member_rows = popularity_rows
    else:
        member_rows = np.arange(m) if per_member else np.zeros(m, dtype=np.int64)
    # Members with no history get popularity at its own weight; members without any personal
    # signal are ranked by popularity (and freshness) alone: it takes the personal share too.
    popularity_weight = np.where(
        present["history"], weights.popularity, weights.cold_start_popularity
    ) + np.where(held > 0, 0.0, share)
    if per_member:
        table = popularity_weight.astype(np.float32)[:, None] * popular + fresh[None, :]
        row_of = np.arange(m)
    else:  # a small table: one row per (table row, weight) pair
        pairs, pair_of = np.unique(
            np.stack([member_rows, popularity_weight.view(np.int64)], axis=1),
            axis=0,
            return_inverse=True,
        )
        table = pairs[:, 1].view(np.float64).astype(np.float32)[:, None] * popular[pairs[:, 0]]
        table += fresh[None, :]
        row_of = pair_of.ravel()

    # One product for the three interests, as the floor of any ranking by embeddings does (its
    # BLAS already uses every core); the passes after it are row by row: in row blocks, on a
    # thread pool (numpy releases the GIL in them), with the same results for any split.
    scores = blend @ items.T
    modelled = None if collaborative_items is None else np.asarray(collaborative_items, np.int64)
    distinct_columns = modelled is not None and len(np.unique(modelled)) == len(modelled)
    format_bonus = np.float32(weights.format) if format_match is not None else np.float32(0.0)
    width = _pool_width(n, k, weights.mmr_candidates)

    def rank_rows(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The passes after the product and MMR for the members at rows ``members``."""
        rows = len(members)
        # Arithmetic, not a masked assignment: with masks this irregular, it is ten times faster.
        unwanted = np.take(excluded, members, axis=0) | ~np.asarray(
            np.take(item_ok, members, axis=0), dtype=bool
        )
        # Most of a row is ineligible (another language, unavailable): the passes run on the
        # columns some member of the block may get, and on the first ``width``, where the
        # items that fill the pool of a member with fewer eligible ones lie (the lowest
        # indices): picks, pools and scores are those of the whole row.
        wanted = ~unwanted.all(axis=0)
        wanted[:width] = True
        columns = None if wanted.all() else np.flatnonzero(wanted)
        # A C-ordered copy (the scatters below write through a flat view of it).
        block = np.take(scores, members, axis=0)
        if columns is not None:
            block = np.take(block, columns, axis=1)
            unwanted = unwanted[:, columns]
        size = block.shape[1]
        position = None
        if columns is not None:  # the block's column of each item, -1 when left out
            position = np.full(n, -1, dtype=np.int64)
            position[columns] = np.arange(size)
        if unscored is not None and unscored_factor is not None:
            block[:, unscored if columns is None else unscored[columns]] *= unscored_factor[
                members, None
            ]
        if co_rows is not None:
            chosen_rows = co_rows[members]
            targets = chosen_rows.indices.astype(np.int64)
            values = chosen_rows.data
            owners = np.repeat(np.arange(rows, dtype=np.int64), np.diff(chosen_rows.indptr))
            if position is not None:
                targets = position[targets]
                inside = targets >= 0
                targets, values, owners = targets[inside], values[inside], owners[inside]
            np.add.at(block.reshape(-1), owners * size + targets, values)
        if learned is not None:
            contribution = np.take(learned, members, axis=0) * learned_factor[members, None]
            np.maximum(contribution, np.float32(0.0), out=contribution)
            if modelled is None:
                if columns is None:
                    block += contribution
                else:
                    block += contribution[:, columns]
            else:
                targets = modelled if position is None else position[modelled]
                inside = targets >= 0
                if not inside.all():
                    targets, contribution = targets[inside], contribution[:, inside]
                if distinct_columns:  # only the modelled columns, each once: a plain gather
                    block[:, targets] += contribution
                else:  # a column named twice adds twice: one flat scatter
                    flat = (
                        np.arange(rows, dtype=np.int64)[:, None] * size + targets[None, :]
                    ).ravel()
                    np.add.at(block.reshape(-1), flat, contribution.ravel())
        member_rows = row_of[members]
        member_table = table[member_rows] if columns is None else table[:, columns]
        block += member_table if columns is None else member_table[member_rows]
        if format_match is not None and format_bonus:
            # In the scores' memory order (a mask built by column comes transposed): faster.
            chosen = np.take(format_match, members, axis=0)
            if columns is not None:
                chosen = np.take(chosen, columns, axis=1)
            block += chosen * format_bonus
        block += unwanted * INELIGIBLE
        pool, kept = _best_of(block, width) if width < n else (None, block)
        if pool is not None and columns is not None:
            pool = columns[pool]
        return _maximal_marginal_relevance(
            pool, kept, items, k, weights.mmr_lambda, weights.duplicate_similarity
        )

    workers = max(1, min(_default_threads() if threads is None else threads, m))
    # One block a thread (more where members' eligible items differ): a block's passes make a
    # few hundred numpy calls whatever its size, which smaller blocks, kept for balance, repeat
    # at a higher cost than the balance saves.
    blocks = _row_blocks(item_ok, workers)
    if workers == 1:
        parts = [rank_rows(members) for members in blocks]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nurture-rank") as pool:
            parts = list(pool.map(rank_rows, blocks))
    indices = np.full((m, k), -1, dtype=np.int64)
    picked = np.full((m, k), np.nan, dtype=np.float64)
    for members, (block_indices, block_picked) in zip(blocks, parts, strict=True):
        indices[members], picked[members] = block_indices, block_picked
    return indices, picked


def _row_blocks(item_ok: np.ndarray, count: int) -> list[np.ndarray]:
    """The members' rows in about ``count`` blocks, each of members with the same eligible items.

    Members of one language share their eligible items (about half the library's, with two
    languages): a block of such members works on those columns only, where a block that mixed
    languages would work on both languages' items.
    """
    m = item_ok.shape[0]
    if m == 0:
        return []
    # Rows grouped by a hash of their eligible items (two patterns sharing a hash share
    # blocks: slower, never different, as any split of the rows gives the same picks).
    packed = np.packbits(np.asarray(item_ok, dtype=bool), axis=1)
    padded = np.zeros((m, -(-packed.shape[1] // 8) * 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    words = padded.view(np.uint64)
    mixers = np.random.default_rng(0).integers(1, 2**63, size=words.shape[1], dtype=np.uint64)
    keys = (words * (mixers | np.uint64(1))).sum(axis=1, dtype=np.uint64)
    _, group = np.unique(keys, return_inverse=True)
    group = group.ravel()
    order = np.argsort(group, kind="stable")
    sizes = np.bincount(group)
    target = max(1, -(-m // max(1, count)))  # rows per block, rounded up
    blocks: list[np.ndarray] = []
    start = 0
    for size in sizes.tolist():
        members = order[start : start + size]
        pieces = -(-size // target)
        blocks.extend(np.array_split(members, pieces))
        start += size
    return blocks
