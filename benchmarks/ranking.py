"""Time the ranking of a large community against a bare matrix product and top-k.

The second figure of ``make bench``: :func:`nurture.recommend.rank_content` ranks ``members``
synthetic members against ``items`` synthetic items (unit vectors of the embedding model's
dimension, no database), chunk after chunk as the match stage does, with every signal on: the
members' answers, history (sparse), co-engagement, segment interest and popularity, freshness,
format preference, the learned collaborative model (EASE: each chunk's scores of the items it
models), the language and exclusion masks, and maximal marginal relevance. The synthetic rows
have the mix of bench-scale's generated community: most of each row is ineligible (72% of the
items unavailable, two languages), 41% of the members have no history. What is learned once
per run from every member's history, co-engagement
(:func:`nurture.recommend.learn_co_engagement`) and EASE (:class:`nurture.recommend.EASE`), is
timed on its own. The baseline is the floor of any
embedding ranker on the same shapes and chunks: the bare product of the members' vectors with
the items' and an ``argpartition`` top-k. Inputs are generated before each chunk is timed,
identically in every round, and never count.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from benchmarks.measurement import Measurement
from nurture.recommend import EASE, RankingWeights, learn_co_engagement, rank_content

__all__ = [
    "ChunkInputs",
    "RankingBenchmarkResult",
    "bare_top_k",
    "chunk_inputs",
    "render_ranking_section",
    "run_ranking_benchmark",
    "synthetic_catalogue",
]

logger = logging.getLogger("benchmarks")

LANGUAGES = 2
"""Languages of the synthetic community: each item and member has one."""
KINDS = 5
"""Kinds of content (article, event...)."""
SEGMENTS = 10
"""Segments of the synthetic community."""
HISTORY_ITEMS = 20
"""Most items a synthetic member engaged with."""
NO_HISTORY_SHARE = 0.41
"""Share of members who engaged with nothing (as in bench-scale's generated community)."""
HISTORY_MEAN = 3.7
"""Mean number of items engaged with by a member who engaged with something (geometric)."""
IN_REACH_SHARE = 0.85
"""Share of a member's engagements with items in their language and still recommendable."""
UNAVAILABLE_SHARE = 0.72
"""Share of items not recommendable (past events, expired): bench-scale's library at its time
leaves 28 % of its items available, so that, with two languages, 86 % of a member's row is
ineligible."""


@dataclass(frozen=True)
class Catalogue:
    """The synthetic items and segments every chunk ranks against.

    Attributes:
        vectors: ``(n, d)`` unit item vectors.
        languages: ``(n,)`` language of each item.
        kinds: ``(n,)`` kind of each item.
        available: ``(n,)`` recommendable items.
        freshness: ``(n,)`` freshness in ``[0, 1]``.
        centroids: ``(SEGMENTS, d)`` unit segment interests.
        popularity: ``(SEGMENTS + 1, n)`` engagement counts per segment, then the community.
    """

    vectors: np.ndarray
    languages: np.ndarray
    kinds: np.ndarray
    available: np.ndarray
    freshness: np.ndarray
    centroids: np.ndarray
    popularity: np.ndarray


@dataclass(frozen=True)
class ChunkInputs:
    """The arguments of one chunk's ranking (see :func:`nurture.recommend.rank_content`)."""

    member_interest: np.ndarray
    segment_interest: np.ndarray
    excluded: np.ndarray
    item_ok: np.ndarray
    history: sp.csr_matrix
    format_match: np.ndarray
    popularity_rows: np.ndarray


@dataclass(frozen=True)
class RankingBenchmarkResult:
    """Everything one run of the ranking benchmark measured.

    Attributes:
        members: Synthetic members ranked.
        items: Synthetic items.
        dim: Vector dimension.
        k: Items per member.
        chunk_size: Members per chunk.
        repeats: Rounds measured.
        seed: Seed of the synthetic data.
        engagements: Member-item engagements co-engagement was learned from.
        co_engagement_pairs: Item pairs the learned co-engagement keeps.
        weights: The ranking weights.
        baseline: The bare product and top-k, summed over the chunks.
        learning: Learning co-engagement and EASE (once per run).
        ranking: ``rank_content`` over every chunk.
        total: Learning plus ranking: the match stage's arithmetic for the run.
        check_overlap: With only the member weight and no diversity, the share of the
            ranking's items that the baseline's top-k holds too, on the first chunk (1.0: both
            sides did the same work).
        setup_seconds: Time spent generating the catalogue and the histories.
    """

    members: int
    items: int
    dim: int
    k: int
    chunk_size: int
    repeats: int
    seed: int
    engagements: int
    co_engagement_pairs: int
    weights: RankingWeights
    baseline: Measurement
    learning: Measurement
    ranking: Measurement
    total: Measurement
    check_overlap: float
    setup_seconds: float


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def synthetic_catalogue(n_items: int, dim: int, seed: int) -> Catalogue:
    """Items around ``SEGMENTS`` topics, with languages, kinds, freshness and popularity.

    Args:
        n_items: Items.
        dim: Vector dimension.
        seed: Seed.

    Returns:
        The catalogue.
    """
    rng = np.random.default_rng([seed, 0])
    centroids = _unit(rng.standard_normal((SEGMENTS, dim), dtype=np.float32))
    topic = rng.integers(0, SEGMENTS, n_items)
    noise = rng.standard_normal((n_items, dim), dtype=np.float32)
    vectors = _unit(centroids[topic] + noise / np.sqrt(dim))  # ~0.7 cosine to their topic
    # Popularity: a long tail in the community, each segment leaning to its own topic.
    community = rng.zipf(1.6, n_items).clip(max=10_000).astype(np.float32)
    own = (topic[None, :] == np.arange(SEGMENTS)[:, None]).astype(np.float32)
    popularity = np.vstack([community[None, :] * (0.2 + own), community[None, :]])
    return Catalogue(
        vectors=vectors,
        languages=rng.integers(0, LANGUAGES, n_items),
        kinds=rng.integers(0, KINDS, n_items),
        available=rng.random(n_items) >= UNAVAILABLE_SHARE,
        freshness=rng.random(n_items).astype(np.float32),
        centroids=centroids,
        popularity=popularity,
    )


def _languages(seed: int, chunk: int, m: int) -> np.ndarray:
    """The language of each member of a chunk, the same for their history and their inputs."""
    return np.random.default_rng([seed, 3, chunk]).integers(0, LANGUAGES, m)


def _history(
    rng: np.random.Generator, catalogue: Catalogue, languages: np.ndarray
) -> sp.csr_matrix:
    """The decayed engagement weights of members speaking ``languages``.

    As in bench-scale's generated community: :data:`NO_HISTORY_SHARE` of the members engaged
    with nothing, the others with a geometric number of items (mean :data:`HISTORY_MEAN`, at
    most :data:`HISTORY_ITEMS`), :data:`IN_REACH_SHARE` of them in the member's language and
    still available, the others anywhere in the catalogue.
    """
    m, n = len(languages), len(catalogue.languages)
    counts = np.minimum(rng.geometric(1.0 / HISTORY_MEAN, m), HISTORY_ITEMS)
    counts[rng.random(m) < NO_HISTORY_SHARE] = 0
    rows = np.repeat(np.arange(m), counts)
    columns = rng.integers(0, n, rows.size)
    in_reach = [
        np.flatnonzero((catalogue.languages == language) & catalogue.available)
        for language in range(LANGUAGES)
    ]
    reach = rng.random(rows.size) < IN_REACH_SHARE
    for language, pool in enumerate(in_reach):
        chosen = reach & (languages[rows] == language)
        if pool.size:
            columns[chosen] = pool[rng.integers(0, pool.size, int(chosen.sum()))]
    weights = np.exp2(-rng.exponential(1.0, rows.size)).astype(np.float32)  # decayed
    history = sp.csr_matrix((weights, (rows, columns)), shape=(m, n))
    history.sum_duplicates()
    return history


def chunk_inputs(
    catalogue: Catalogue, history: sp.csr_matrix, seed: int, chunk: int
) -> ChunkInputs:
    """The synthetic members of one chunk, the same in every round.

    Members sit in a segment, most have answers near their segment's topic (10 % none), and
    their engagement history is ``history``; they speak one of the languages and prefer a
    couple of kinds.

    Args:
        catalogue: The items and segments.
        history: ``(m, n)`` the chunk's engagement weights.
        seed: Seed of the run.
        chunk: The chunk's number.

    Returns:
        The arguments of :func:`nurture.recommend.rank_content` for the chunk.
    """
    rng = np.random.default_rng([seed, 1, chunk])
    m = history.shape[0]
    dim = catalogue.vectors.shape[1]
    segment = rng.integers(0, SEGMENTS, m)
    noise = rng.standard_normal((m, dim), dtype=np.float32)
    interest = _unit(catalogue.centroids[segment] + 1.5 * noise / np.sqrt(dim))
    interest[rng.random(m) < 0.1] = 0.0
    language = _languages(seed, chunk, m)
    speaks = catalogue.languages[None, :] == np.arange(LANGUAGES)[:, None]
    item_ok = (speaks & catalogue.available[None, :])[language]
    excluded = history.toarray() > 0
    prefers = rng.random((m, KINDS)) < 0.4
    return ChunkInputs(
        member_interest=interest,
        segment_interest=catalogue.centroids[segment],
        excluded=excluded,
        item_ok=item_ok,
        history=history,
        format_match=np.ascontiguousarray(prefers[:, catalogue.kinds]),
        popularity_rows=segment,
    )


def bare_top_k(member_vectors: np.ndarray, item_vectors: np.ndarray, k: int) -> np.ndarray:
    """The baseline: the bare product of member and item vectors, and each row's top ``k``.

    Returns:
        ``(m, k)`` item indices, in no particular order.
    """
    scores = member_vectors @ item_vectors.T
    n = scores.shape[1]
    return np.argpartition(scores, n - k, axis=1)[:, n - k :]


def _learn(everyone: sp.coo_matrix, n_items: int) -> tuple[sp.csr_matrix, EASE]:
    """What the match stage learns once per run: co-engagement and the EASE model."""
    co = learn_co_engagement(everyone.row, everyone.col, n_items)
    return co, EASE().fit(everyone.tocsr())


def _rank(
    catalogue: Catalogue,
    inputs: ChunkInputs,
    weights: RankingWeights,
    k: int,
    learned: tuple[sp.csr_matrix, EASE],
):
    co, model = learned
    return rank_content(
        inputs.member_interest,
        inputs.segment_interest,
        inputs.excluded,
        catalogue.vectors,
        inputs.item_ok,
        catalogue.freshness,
        weights,
        k,
        catalogue.popularity,
        history=inputs.history,
        co_engagement=co,  # type: ignore[arg-type]
        format_match=inputs.format_match,
        popularity_rows=inputs.popularity_rows,
        collaborative=model.transform(inputs.history, modelled_only=True),
        collaborative_items=model.items_,
    )


def _check_same_work(catalogue: Catalogue, inputs: ChunkInputs, k: int) -> float:
    """Share of the ranking's items in the baseline's top-k, ranking by the member alone."""
    plain = RankingWeights(
        member=1.0,
        history=0.0,
        co_engagement=0.0,
        collaborative=0.0,
        segment=0.0,
        popularity=0.0,
        freshness=0.0,
        format=0.0,
        mmr_lambda=1.0,
        duplicate_similarity=1.0,
    )
    answered = np.abs(inputs.member_interest).sum(axis=1) > 0
    n = inputs.excluded.shape[1]
    indices, _ = rank_content(
        inputs.member_interest[answered],
        np.zeros_like(inputs.segment_interest[answered]),
        np.zeros((int(answered.sum()), n), dtype=bool),
        catalogue.vectors,
        np.ones((int(answered.sum()), n), dtype=bool),
        catalogue.freshness,
        plain,
        k,
    )
    top = bare_top_k(inputs.member_interest[answered], catalogue.vectors, k)
    same = [len(set(a) & set(b)) for a, b in zip(indices.tolist(), top.tolist(), strict=True)]
    return sum(same) / indices.size


def run_ranking_benchmark(
    n_members: int = 100_000,
    n_items: int = 5_000,
    dim: int = 384,
    k: int = 10,
    chunk_size: int = 500,
    repeats: int = 3,
    seed: int = 11,
) -> RankingBenchmarkResult:
    """Measure the ranking of a synthetic community against the bare product and top-k.

    Each round times, chunk after chunk, the baseline and :func:`nurture.recommend.rank_content`
    back to back on the same inputs, so both share the machine's conditions (each figure sums its
    chunks), then learning co-engagement once. Co-engagement is learned, and one chunk of each
    side runs, untimed, first.

    Args:
        n_members: Members to rank.
        n_items: Items in the catalogue.
        dim: Vector dimension (the embedding model's).
        k: Items per member.
        chunk_size: Members per chunk.
        repeats: Rounds to measure; the report gives medians.
        seed: Seed of the synthetic data.

    Returns:
        The measurements and what they were made on.

    Raises:
        ValueError: An argument is out of range.
        RuntimeError: The check that both sides do the same work failed.
    """
    if min(n_members, n_items, dim, k, chunk_size, repeats) < 1:
        raise ValueError("members, items, dim, k, chunk size and repeats must be at least 1")
    if k > n_items:
        raise ValueError(f"k ({k}) must not exceed the number of items ({n_items})")
    weights = RankingWeights()
    start = time.perf_counter()
    catalogue = synthetic_catalogue(n_items, dim, seed)
    starts = list(range(0, n_members, chunk_size))
    histories = [
        _history(
            np.random.default_rng([seed, 2, chunk]),
            catalogue,
            _languages(seed, chunk, min(chunk_size, n_members - s)),
        )
        for chunk, s in enumerate(starts)
    ]
    everyone = sp.vstack(histories, format="coo")
    setup_seconds = time.perf_counter() - start
    logger.info("synthetic community ready in %.1f s", setup_seconds)

    first = chunk_inputs(catalogue, histories[0], seed, 0)
    overlap = _check_same_work(catalogue, first, k)
    if overlap < 0.999:
        raise RuntimeError(
            f"ranking by the member alone kept only {overlap:.1%} of the baseline's top-k: the "
            f"two sides did not do the same work"
        )
    learned = _learn(everyone, n_items)
    bare_top_k(first.member_interest, catalogue.vectors, k)  # untimed warm-up of both sides
    _rank(catalogue, first, weights, k, learned)

    baseline: list[float] = []
    learning: list[float] = []
    ranking: list[float] = []
    for number in range(1, repeats + 1):
        bare_seconds = rank_seconds = 0.0
        for chunk, history in enumerate(histories):
            inputs = chunk_inputs(catalogue, history, seed, chunk)
            start = time.perf_counter()
            bare_top_k(inputs.member_interest, catalogue.vectors, k)
            bare_seconds += time.perf_counter() - start
            start = time.perf_counter()
            _rank(catalogue, inputs, weights, k, learned)
            rank_seconds += time.perf_counter() - start
        baseline.append(bare_seconds)
        ranking.append(rank_seconds)
        # Timed after the chunks, so that every round learns in the same state of the heap.
        start = time.perf_counter()
        learned = _learn(everyone, n_items)
        learning.append(time.perf_counter() - start)
        logger.info(
            "ranking round %d/%d: bare %.2f s, learning %.2f s, ranking %.2f s",
            number,
            repeats,
            bare_seconds,
            learning[-1],
            rank_seconds,
        )
    return RankingBenchmarkResult(
        members=n_members,
        items=n_items,
        dim=dim,
        k=k,
        chunk_size=chunk_size,
        repeats=repeats,
        seed=seed,
        engagements=int(everyone.nnz),
        co_engagement_pairs=int(learned[0].nnz),
        weights=weights,
        baseline=Measurement(
            "Bare matrix product + `argpartition` top-k (baseline)", tuple(baseline)
        ),
        learning=Measurement("Learning co-engagement and EASE (once per run)", tuple(learning)),
        ranking=Measurement("Ranking: `rank_content`, every signal, MMR", tuple(ranking)),
        total=Measurement(
            "Learning + ranking (the match stage's arithmetic)",
            tuple(a + b for a, b in zip(learning, ranking, strict=True)),
        ),
        check_overlap=overlap,
        setup_seconds=setup_seconds,
    )


def render_ranking_section(result: RankingBenchmarkResult) -> tuple[list[str], list[str]]:
    """The Markdown of the ranking figure: what is measured, then the results table.

    Returns:
        ``(description lines, result lines)``; the result lines list the noisy measurements
        separately, through the caller's table renderer.
    """
    per_member = result.total.median / result.members * 1e6
    description = [
        f"`nurture.recommend.rank_content` ranking {result.members:,} synthetic members against "
        f"{result.items:,} synthetic items (unit vectors of dimension {result.dim}, no "
        f"database), {result.k} items each, in chunks of {result.chunk_size} members as the "
        f"match stage runs, with every signal on: answers, history (up to {HISTORY_ITEMS} "
        f"items a member, sparse), co-engagement, segment interest and popularity "
        f"({SEGMENTS} segments), freshness, format preference, the learned collaborative model "
        f"(EASE, {min(result.items, EASE().max_items):,} items modelled), language and "
        "exclusion masks, "
        f"and maximal marginal relevance over each member's best {result.weights.mmr_candidates} "
        f"items. Co-engagement and EASE are learned once per run from every member's history "
        f"({result.engagements:,} engagements; {result.co_engagement_pairs:,} item pairs kept).",
        "",
        "The synthetic rows have the mix of bench-scale's generated community (its 5,000-item "
        "library at its time, its members' answers and activity), not mostly eligible items: "
        f"{UNAVAILABLE_SHARE:.0%} of the items are unavailable (past events, expired) and "
        f"members and items speak one of {LANGUAGES} languages, so that about "
        f"{1 - (1 - UNAVAILABLE_SHARE) / LANGUAGES:.0%} of a member's row is ineligible; "
        f"{NO_HISTORY_SHARE:.0%} of the members engaged with nothing, the others with "
        f"{HISTORY_MEAN} items on average, {IN_REACH_SHARE:.0%} of them in their language and "
        "still available (the items they consumed are excluded); 10% gave no answers.",
        "",
        "The baseline is the floor of any ranking by embeddings on the same shapes and chunks: "
        "the bare product of the members' vectors with the items' and an `argpartition` top-k. "
        "Each chunk's inputs are generated before it is timed, the same in every round; the "
        "baseline and the ranking run back to back on each chunk, and each figure sums its "
        f"chunks. Each figure is the median of {result.repeats} rounds, after one untimed chunk "
        "of each. The ratio is the figure's time divided by the baseline's.",
    ]
    results = [
        f"- {per_member:.0f} µs per member for learning and ranking; the Python loops are over "
        f"the {result.k} positions of MMR, each a batched operation over a block of the chunk, "
        "and over blocks of 32 members while computing the cosines MMR needs within each "
        "member's pool. After the matrix product, `rank_content` runs its passes in blocks of "
        "members on two threads (one per core, at most), as the product runs on the BLAS "
        "threads.",
        f"- Same work: ranking by the member's answers alone, without diversity, the ranking "
        f"keeps {result.check_overlap:.1%} of the baseline's top-{result.k} items.",
        f"- Not timed: generating the synthetic community ({result.setup_seconds:.1f} s) and "
        "each chunk's inputs.",
    ]
    return description, results
