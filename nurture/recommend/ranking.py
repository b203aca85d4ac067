"""A pure, vectorised ranker: a blend of interest signals, then diversified by MMR.

Everything works on a chunk of members at once with matrix products: one dense product for the
three interest vectors (the member's answers, their recent history, their segment), one sparse
product for co-engagement. Maximal marginal relevance then re-ranks a short list of candidates per
member; only its ``k`` positions are a Python loop, each a batched operation over the whole chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "INELIGIBLE",
    "PERSONAL_SIGNALS",
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
    centre_history: bool = Field(
        default=True,
        description=(
            "Take the catalogue's mean vector out of what a member consumed before averaging it: "
            "with many items, a plain average sits at the centre of the catalogue and favours "
            "generic items."
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
    block: int = 1024,
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
        block: Items per block while keeping the neighbours (bounds memory at
            ``block * n_items`` floats).

    Returns:
        An ``(n_items, n_items)`` float32 CSR matrix with values in ``[0, 1]``.
    """
    member_index = np.asarray(member_index)
    item_index = np.asarray(item_index, dtype=np.int64)
    if member_index.size == 0 or n_items == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    _, rows = np.unique(member_index, return_inverse=True)
    engaged = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows.ravel(), item_index)),
        shape=(int(rows.max()) + 1, n_items),
    )
    engaged.sum_duplicates()
    engaged.data[:] = 1.0  # engaged or not: repeated views of one item count once
    counts = (engaged.T @ engaged).tocsr()  # members who engaged with both items
    counts.setdiag(0.0)
    counts.eliminate_zeros()
    members_per_item = np.asarray(engaged.sum(axis=0), dtype=np.float32).ravel()
    co = counts.tocoo()
    values = co.data / np.sqrt(members_per_item[co.row] * members_per_item[co.col])
    values *= co.data / (co.data + shrinkage)
    similarity = sp.csr_matrix((values.astype(np.float32), (co.row, co.col)), shape=counts.shape)
    return _keep_neighbours(similarity, neighbours, block)


def _keep_neighbours(similarity: sp.csr_matrix, neighbours: int, block: int) -> sp.csr_matrix:
    n = similarity.shape[0]
    if neighbours >= n - 1:
        return similarity
    kept = []
    for start in range(0, n, block):
        dense = similarity[start : start + block].toarray()
        threshold = -np.partition(-dense, neighbours - 1, axis=1)[:, neighbours - 1 : neighbours]
        dense[dense < threshold] = 0.0
        kept.append(sp.csr_matrix(dense))
    return sp.vstack(kept, format="csr")


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
    if product.shape[1] == 0:
        return product
    top = np.asarray(product.max(axis=1).todense(), dtype=np.float32).ravel()
    product.data /= np.repeat(np.where(top > 0, top, 1.0), counts).astype(np.float32)
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


def _present(vectors: np.ndarray) -> np.ndarray:
    """Rows that hold a vector (an all-zero or non-finite row means "no vector")."""
    finite = np.isfinite(vectors).all(axis=1)
    return finite & (np.abs(np.nan_to_num(vectors)).sum(axis=1) > 0)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.nan_to_num(np.asarray(matrix, dtype=np.float32))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


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
    cosine to a taken item reaches ``duplicate_similarity`` are no longer eligible.

    Args:
        scores: ``(m, n)`` relevance scores, ``-inf`` (or anything at or below
            :data:`INELIGIBLE`) where an item is not eligible.
        item_vectors: ``(n, d)`` unit-length item embeddings.
        k: Items to pick per row.
        mmr_lambda: Trade-off between relevance (1) and variety (0).
        duplicate_similarity: Cosine from which two items count as near-duplicates.
        candidates: Only each row's best-scored ``candidates`` items (at least ``k``) take part;
            all items when none.

    Returns:
        ``(indices, picked_scores)``, both ``(m, k)``: item indices (``-1`` once a row runs out
        of eligible items) and their relevance scores (``nan`` there).
    """
    m, n = scores.shape
    indices = np.full((m, k), -1, dtype=np.int64)
    picked = np.full((m, k), np.nan, dtype=np.float64)
    if m == 0 or n == 0 or k == 0:
        return indices, picked
    items = np.asarray(item_vectors, dtype=np.float32)
    width = n if candidates is None else min(n, max(candidates, k))
    rows = np.arange(m)
    if width < n:
        pool = np.argpartition(scores, n - width, axis=1)[:, n - width :]
        pool_scores = np.take_along_axis(scores, pool, axis=1)
        pool_vectors = items[pool]  # (m, width, d)
        gram = np.matmul(pool_vectors, pool_vectors.transpose(0, 2, 1))  # (m, width, width)
    else:
        pool = np.broadcast_to(np.arange(n), (m, n))
        pool_scores = np.asarray(scores)
    available = np.isfinite(pool_scores) & (pool_scores > INELIGIBLE)
    max_similarity = np.zeros((m, width), dtype=np.float32)
    for position in range(k):
        mmr = mmr_lambda * pool_scores - (1.0 - mmr_lambda) * max_similarity
        mmr = np.where(available, mmr, -np.inf)
        best = np.argmax(mmr, axis=1)
        has_pick = available[rows, best]
        if not has_pick.any():
            break
        indices[has_pick, position] = pool[rows[has_pick], best[has_pick]]
        picked[has_pick, position] = pool_scores[rows[has_pick], best[has_pick]]
        available[rows, best] = False
        # Similarity of each row's pick to its pool (a copy: the Gram matrix stays as it is).
        similarity = gram[rows, best] if width < n else items[best] @ items.T
        similarity[~has_pick] = 0.0
        np.maximum(max_similarity, similarity, out=max_similarity)
        available &= similarity < duplicate_similarity
    return indices, picked


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
        collaborative=(collaborative, [(m, n)]),
    )
    if popularity_rows is not None:
        table = None if popularity is None else np.asarray(popularity)
        if table is None or table.ndim != 2 or table.shape[1] != n:
            found = None if table is None else table.shape
            raise ValueError(f"popularity_rows needs popularity of shape (r, {n}), found {found}")
        inside = (popularity_rows >= 0) & (popularity_rows < len(table))
        if not inside.all():
            raise ValueError(f"popularity_rows must lie in [0, {len(table)})")
    if k < 0:
        raise ValueError(f"k must be at least 0, found {k}")
    items = np.asarray(item_vectors, dtype=np.float32)

    # The interest vectors, each a unit vector or zero; and which members have each signal.
    interests = {
        "member": _unit_rows(member_interest),
        "history": np.zeros((m, d), dtype=np.float32),
        "segment": _unit_rows(segment_interest),
    }
    co_rows: sp.csr_matrix | None = None
    if history is not None:
        consumed = np.asarray(history @ items)
        if weights.centre_history and n:
            # Sum of each member's weights times the catalogue's mean: what every item shares.
            totals = np.asarray(history.sum(axis=1), dtype=np.float32).reshape(m, 1)
            consumed = consumed - totals * items.mean(axis=0, keepdims=True)
        interests["history"] = _unit_rows(consumed)
        if co_engagement is not None:
            co_rows = _co_engagement_rows(history, co_engagement)
    present = {name: _present(vectors) for name, vectors in interests.items()}
    present["co_engagement"] = (
        np.zeros(m, dtype=bool) if co_rows is None else np.diff(co_rows.indptr) > 0
    )
    learned = None if collaborative is None else scale_collaborative(collaborative)
    present["collaborative"] = (
        np.zeros(m, dtype=bool) if learned is None else learned.max(axis=1, initial=0.0) > 0
    )

    # A missing personal signal's weight goes to the member's other ones, in proportion.
    base = {name: float(getattr(weights, name)) for name in PERSONAL_SIGNALS}
    share = sum(base.values())
    held = sum(np.where(present[name], base[name], 0.0) for name in PERSONAL_SIGNALS)
    scale = np.divide(share, held, out=np.zeros(m), where=held > 0).astype(np.float32)
    blend = sum(
        (scale * np.where(present[name], base[name], 0.0).astype(np.float32))[:, None]
        * interests[name]
        for name in ("member", "history", "segment")
    )
    scores = np.asarray(blend, dtype=np.float32) @ items.T  # one product for three interests
    if co_rows is not None:  # sparse: only the items co-engaged with each member's history
        co_weight = scale * np.where(present["co_engagement"], base["co_engagement"], 0.0)
        counts = np.diff(co_rows.indptr)
        co_rows.data *= np.repeat(co_weight, counts).astype(np.float32)
        scores[np.repeat(np.arange(m), counts), co_rows.indices] += co_rows.data
    if learned is not None:
        learned_weight = scale * np.where(present["collaborative"], base["collaborative"], 0.0)
        scores += learned_weight.astype(np.float32)[:, None] * learned

    # Popularity and freshness, per row of the popularity table: one pass over the scores.
    fresh = np.float32(weights.freshness) * np.asarray(freshness, dtype=np.float32)
    popular = (
        np.ones((1, n), dtype=np.float32)
        if popularity is None
        else np.atleast_2d(normalise_popularity(popularity))
    )
    if popularity_rows is not None:
        member_rows = popularity_rows
    else:
        member_rows = np.arange(m) if len(popular) == m else np.zeros(m, dtype=np.int64)
    newcomer = ~present["history"]
    if weights.cold_start_popularity == weights.popularity or not newcomer.any():
        table = np.float32(weights.popularity) * popular + fresh[None, :]
        scores += table[member_rows] if len(popular) > 1 else table
    else:  # members with no history get popularity at its own weight
        scores += fresh[None, :]
        popularity_weight = np.where(
            newcomer, weights.cold_start_popularity, weights.popularity
        ).astype(np.float32)
        scores += popularity_weight[:, None] * (
            popular[member_rows] if len(popular) > 1 else popular
        )
    # Members without any personal signal are ranked by popularity (and freshness) alone.
    cold = np.flatnonzero(held == 0)
    if cold.size:
        scores[cold] += np.float32(share) * popular[member_rows[cold]]
    if format_match is not None:
        scores += format_match * np.float32(weights.format)
    # Arithmetic, not a masked assignment: with masks this irregular, it is ten times faster.
    scores += (excluded | ~item_ok) * INELIGIBLE
    return select_diverse(
        scores,
        items,
        k,
        weights.mmr_lambda,
        weights.duplicate_similarity,
        candidates=weights.mmr_candidates,
    )
