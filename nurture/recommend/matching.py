"""Recommendations for a chunk of members: bulk loads, one ranking, reasons, one write.

What the whole run shares (the library, co-engagement, popularity per segment) is learned once
per match run (:mod:`nurture.recommend.run_state`). For a chunk of member ids, a handful of
queries load what is the members' own (languages, answers, interests, current segments, what they
consumed and when, items already sent); the ranker runs once over the whole chunk; the chunk's
``Recommendation`` rows are then replaced.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sqlalchemy import LargeBinary, Select, Text, cast, delete, or_, select, type_coerce
from sqlalchemy.orm import Session

from nurture.delivery.history import sent_item_keys
from nurture.embedding import Embedder, embed_texts_cached
from nurture.ingest.bulk import write_columns
from nurture.recommend.changes import Watermark
from nurture.recommend.ranking import RankingWeights, decay, rank_content
from nurture.recommend.reasons import (
    Evidence,
    EvidenceKind,
    co_engagement_reason,
    collaborative_reason,
    distinct_evidence,
    goal_label,
    popular_reason,
    reason_text,
)
from nurture.recommend.run_state import (
    CONSUMING_EVENT_TYPES,
    RunState,
    item_available,
    item_freshness,
    language_code,
    load_run_state,
    microseconds,
    occurred_at_column,
    unit_vectors,
)
from nurture.storage.database import among, driver_rows, plain_rows
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    ContentItem,
    MatchRun,
    Member,
    MemberProfile,
    MessageStatus,
    Recommendation,
    Segment,
    SegmentKind,
    SegmentMembership,
    table_of,
    utcnow,
)
from nurture.storage.stored_json import JsonTexts

__all__ = [
    "CONSUMING_EVENT_TYPES",
    "MatchSummary",
    "RankingSignals",
    "RecommendedItem",
    "evidence_groups",
    "item_available",
    "item_freshness",
    "load_ranking_signals",
    "recommend_for_members",
    "recommendations_for",
    "recommendations_of",
    "start_match_run",
]

HISTORY_LIMIT = 20
"""Most recent consumed items a reason may name (only items in the member's language: a reason
is written in it, and never names an item, or an event, in another)."""

CO_ENGAGEMENT_REASON = 0.5
"""An item is explained by co-engagement with something the member consumed when it is at least
this close (relative to that item's closest co-engaged item)."""
COLLABORATIVE_REASON = 0.5
"""The learned model's score for an item, relative to the member's best (1), from which it
explains the item (when neither the member's evidence nor co-engagement does)."""

_EXPECTATIONS_QUESTION = "expectations"
_GOALS_QUESTION = "goals"
_FORMATS_QUESTION = "formats"
# A message in any of these states has reached, or is about to reach, the member: the items it
# carries are not recommended again. Failed and suppressed messages never reached them.
_DELIVERED_STATUSES = (
    MessageStatus.QUEUED,
    MessageStatus.SENDING,
    MessageStatus.SENT,
    MessageStatus.UNKNOWN,
)


@dataclass(frozen=True)
class MatchSummary:
    """What one call of ``recommend_for_members`` did.

    Attributes:
        run_id: The match run the recommendations belong to.
        members: Members processed (ids that name no member are skipped).
        recommendations: Recommendation rows written.
        members_without_items: Members left with no eligible item at all.
        cold_start: Members with neither answers nor history, ranked by their segment or the
            community.
    """

    run_id: int
    members: int
    recommendations: int
    members_without_items: int
    cold_start: int = 0


@dataclass(frozen=True)
class RecommendedItem:
    """A recommended content item as the journey engine and email templates see it.

    Attributes:
        key: The content item's key.
        title: Its title.
        url: Where it lives.
        kind: article, event, webinar, masterclass or discussion.
        summary: Its short summary.
        language: ``en`` or ``fr``.
        reason: Why it is recommended, in the member's language.
        score: The ranking score (higher is better).
        event_start: When the event starts, for events.
        time_zone: The IANA zone the event is held in, when known.
        venue: Where an in-person event takes place; None for an online one.
    """

    key: str
    title: str
    url: str
    kind: str
    summary: str
    language: str
    reason: str
    score: float
    event_start: dt.datetime | None = None
    time_zone: str | None = None
    venue: str | None = None


def start_match_run(
    session: Session,
    embedder: Embedder,
    weights: RankingWeights | None = None,
    k: int = 10,
    *,
    kinds: Collection[str] | None = None,
    watermark: Watermark | None = None,
    newcomer_weights: RankingWeights | None = None,
) -> int:
    """Record a new match run (model and parameters) and return its id.

    Args:
        session: The database session (the caller commits).
        embedder: The embedding model the run ranks with.
        weights: The ranking weights the run uses.
        k: Recommendations per member.
        kinds: The kinds of content the run recommends; all when none.
        watermark: The database's state the run starts from (the incremental nightly's
            :func:`~nurture.recommend.changes.last_watermark` once it is complete).
        newcomer_weights: The ranking weights of members without history, when they differ.

    Returns:
        The id of the new ``MatchRun`` row.
    """
    weights = weights or RankingWeights()
    params: dict[str, Any] = {"k": k, "weights": weights.model_dump()}
    if newcomer_weights is not None and newcomer_weights != weights:
        params["newcomer_weights"] = newcomer_weights.model_dump()
    if kinds is not None:
        params["kinds"] = sorted(kinds)
    if watermark is not None:
        params["watermark"] = watermark.to_json()
    run = MatchRun(model=embedder.name, params=params)
    session.add(run)
    session.flush()
    return run.id


@dataclass
class _Chunk:
    """Everything loaded for a chunk of members, rows in the order of ``member_ids``.

    ``history`` holds recency weights of what each member consumed; ``recent`` each member's
    latest consumed items, newest first, as (column, event type).
    """

    member_ids: list[int]
    languages: list[str]
    interest: np.ndarray
    segment_interest: np.ndarray
    segment_ids: list[int | None]
    history: sp.csr_matrix
    recent: list[list[tuple[int, str]]]
    excluded: np.ndarray
    answers: list[str | None]
    goals: list[list[str]]
    formats: list[list[str]]


def _best_segments(
    session: Session, ids: Sequence[int], dim: int, state: RunState
) -> dict[int, tuple[int, np.ndarray | None]]:
    """Each member's current segment in the run's segmentation run, with its interest.

    The segmentation run is the state's (:attr:`RunState.segmentation_run`, the one its
    popularity counts), and each segment's interest is read once per match run
    (:attr:`RunState.segment_interests`): two round trips fewer per chunk.
    """
    latest_run = state.segmentation_run
    if latest_run is None:
        return {}
    connection = session.connection()  # after _load_chunk's flush
    memberships = connection.execute(
        select(
            SegmentMembership.member_id,
            SegmentMembership.segment_id,
            SegmentMembership.distance,
            Segment.kind,
            Segment.interest.is_(None).label("no_interest"),
        )
        .join(Segment, Segment.id == SegmentMembership.segment_id)
        .where(
            SegmentMembership.run_id == latest_run,
            among(session, SegmentMembership.member_id, ids),
        )
    ).all()
    # A member may sit in a cluster and in rule-based segments: the cluster wins, then the
    # segment with an interest vector, then the closest, then the oldest segment (rows come
    # in no defined order, and PostgreSQL's differs from SQLite's): each member's first row
    # once sorted by member, then by those keys.
    chosen: dict[int, int] = {}
    if memberships:
        members, segments, distances, kinds, no_interest = zip(*memberships, strict=True)
        member_array = np.array(members, dtype=np.int64)
        segment_array = np.array(segments, dtype=np.int64)
        order = np.lexsort(
            (
                segment_array,
                np.array([np.inf if d is None else d for d in distances], dtype=np.float64),
                np.array([bool(flag) for flag in no_interest], dtype=bool),
                np.array([kind != SegmentKind.CLUSTER for kind in kinds], dtype=bool),
                member_array,
            )
        )
        member_array, segment_array = member_array[order], segment_array[order]
        first = np.ones(order.size, dtype=bool)
        first[1:] = member_array[1:] != member_array[:-1]
        chosen = dict(zip(member_array[first].tolist(), segment_array[first].tolist(), strict=True))
    # The interests of the few segments chosen, read once each per run, not once per
    # membership or per chunk.
    interests = state.segment_interests
    unread = sorted(set(chosen.values()) - interests.keys())
    if unread:
        read: dict[int, np.ndarray | None] = dict.fromkeys(unread)
        for segment_id, interest in connection.execute(
            select(Segment.id, Segment.interest).where(Segment.id.in_(unread))
        ).all():
            fits = interest is not None and interest.shape == (dim,)
            read[segment_id] = interest if fits else None
        interests.update(read)
    best: dict[int, tuple[int, np.ndarray | None]] = {
        member_id: (segment_id, interests.get(segment_id))
        for member_id, segment_id in chosen.items()
    }
    return best


def _load_chunk(
    session: Session, member_ids: Sequence[int], state: RunState, dim: int, weights: RankingWeights
) -> _Chunk:
    now = state.now
    # Each member with their profile's interest, in one query (the interest as its stored
    # bytes, read in place).
    members = driver_rows(
        session,
        select(Member.id, Member.language, type_coerce(MemberProfile.interest, LargeBinary))
        .outerjoin(MemberProfile, MemberProfile.member_id == Member.id)
        .where(among(session, Member.id, member_ids))
        .order_by(Member.id),
    )
    ids = [row[0] for row in members]
    languages = [language_code(row[1]) for row in members]
    row_of = {member_id: row for row, member_id in enumerate(ids)}
    m, n = len(ids), len(state.items)
    column_of = state.column_of

    interest = np.zeros((m, dim), dtype=np.float32)
    size = dim * np.dtype(np.float32).itemsize
    # The stored vectors of the right size, joined and read at once.
    fitting = [
        (row, stored)
        for row, (_, _, stored) in enumerate(members)
        if stored is not None and len(stored) == size
    ]
    if fitting:
        fitting_rows, blobs = zip(*fitting, strict=True)
        interest[list(fitting_rows)] = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(
            -1, dim
        )

    segment_interest = np.zeros((m, dim), dtype=np.float32)
    segment_ids: list[int | None] = [None] * m
    for member_id, (segment_id, vector) in _best_segments(session, ids, dim, state).items():
        segment_ids[row_of[member_id]] = segment_id
        if vector is not None:
            segment_interest[row_of[member_id]] = vector

    excluded = np.zeros((m, n), dtype=bool)
    recent: list[list[tuple[int, str]]] = [[] for _ in range(m)]
    consumed = driver_rows(
        session,
        select(
            ActivityEvent.member_id,
            ActivityEvent.content_key,
            ActivityEvent.type,
            occurred_at_column(session),
        )
        .where(
            among(session, ActivityEvent.member_id, ids),
            # ``type || ''``: the same test, but one SQLite cannot answer from the index on
            # ``type``, which its planner otherwise prefers to the members' (it has no
            # statistics): that index reads every member's consuming events for each chunk.
            ActivityEvent.type.concat("").in_(CONSUMING_EVENT_TYPES),
            ActivityEvent.content_key.is_not(None),
            ActivityEvent.occurred_at <= now,
        )
        .order_by(ActivityEvent.occurred_at.desc(), ActivityEvent.id.desc()),
    )
    # The events (of items in the library), newest first, as arrays.
    event_members, event_keys, event_types, event_times = (
        zip(*consumed, strict=True) if consumed else ((), (), (), ())
    )
    found = np.fromiter(
        map(column_of.get, event_keys, repeat(-1)), dtype=np.int64, count=len(event_keys)
    )
    kept = np.flatnonzero(found >= 0)
    kept_list = kept.tolist()
    # ``ids`` ascend (the query's order) and hold every event's member.
    rows = np.searchsorted(
        np.asarray(ids, dtype=np.int64), np.asarray(event_members, dtype=np.int64)[kept]
    ).astype(np.int64)
    columns = found[kept]
    types = [event_types[index] for index in kept_list]
    # As ``(now - occurred_at).total_seconds() / 86_400``: the same float, from whole
    # microseconds.
    elapsed = microseconds([now])[0] - microseconds([event_times[index] for index in kept_list])
    ages = elapsed.astype(np.float64) / 1e6 / 86_400.0
    excluded[rows, columns] = True
    # Each member's latest items in their language, newest first: the first event of each
    # member-item pair, at most HISTORY_LIMIT a member.
    _, first = np.unique(rows * n + columns, return_index=True)
    first.sort()
    item_language = state.item_languages
    member_language = np.array(languages, dtype=object)
    first = first[item_language[columns[first]] == member_language[rows[first]]]
    first = first[np.argsort(rows[first], kind="stable")]
    owner = rows[first]
    place = np.arange(first.size) - np.searchsorted(owner, owner, side="left")
    chosen = first[place < HISTORY_LIMIT]
    for row, column, index in zip(
        rows[chosen].tolist(), columns[chosen].tolist(), chosen.tolist(), strict=True
    ):
        recent[row].append((column, types[index]))
    # Every engagement counts, the recent ones more: repeated visits mean a stronger interest.
    history = sp.csr_matrix(
        (
            decay(ages, weights.interest_half_life_days).astype(np.float32),
            (rows, columns),
        ),
        shape=(m, n),
    )

    for member_id, keys in sent_item_keys(session, ids, statuses=_DELIVERED_STATUSES).items():
        for key in keys:
            column = column_of.get(key)
            if column is not None:
                excluded[row_of[member_id], column] = True

    answers: list[str | None] = [None] * m
    goals: list[list[str]] = [[] for _ in range(m)]
    formats: list[list[str]] = [[] for _ in range(m)]
    # The stored JSON as text, decoded once per distinct value; the options, which recur in
    # every chunk, once per run.
    decoded = JsonTexts()
    options_of = state.answer_options
    for member_id, question_key, text in driver_rows(
        session,
        select(Answer.member_id, Answer.question_key, cast(Answer.value, Text)).where(
            among(session, Answer.member_id, ids),
            Answer.question_key.in_((_EXPECTATIONS_QUESTION, _GOALS_QUESTION, _FORMATS_QUESTION)),
        ),
    ):  # all at once: on PostgreSQL, a fetch per row costs more than the rows
        row = row_of[member_id]
        if question_key == _EXPECTATIONS_QUESTION:
            value = decoded(text)
            if isinstance(value, str) and value.strip():
                answers[row] = value.strip()
            continue
        chosen = options_of.get(text)
        if chosen is None:
            value = decoded(text)
            listed = value if isinstance(value, list) else [value]
            chosen = [option for option in listed if isinstance(option, str) and option]
            options_of[text] = chosen
        if question_key == _GOALS_QUESTION:
            goals[row] = chosen
        else:
            formats[row] = chosen

    return _Chunk(
        member_ids=ids,
        languages=languages,
        interest=interest,
        segment_interest=segment_interest,
        segment_ids=segment_ids,
        history=history,
        recent=recent,
        excluded=excluded,
        answers=answers,
        goals=goals,
        formats=formats,
    )


def _format_match(chunk: _Chunk, state: RunState) -> np.ndarray:
    """``(m, n)`` bool: the item's kind is among the formats the member said they prefer."""
    item_kinds, kind_index = state.kind_codes
    prefers = np.zeros((len(chunk.member_ids), len(kind_index) + 1), dtype=bool)
    for row, chosen in enumerate(chunk.formats):
        prefers[row, [kind_index[kind] for kind in chosen if kind in kind_index]] = True
    return np.take(prefers, item_kinds, axis=1)  # in row order, as the ranker reads it


@dataclass(frozen=True)
class _EvidenceGroup:
    """The evidence of some members of a chunk, padded to the widest of them only.

    Attributes:
        rows: ``(g,)`` the members' rows in the chunk.
        vectors: ``(g, e, d)`` each member's evidence vectors, padded to ``e`` slots.
        mask: ``(g, e)`` bool, true where a slot holds real evidence.
    """

    rows: np.ndarray
    vectors: np.ndarray
    mask: np.ndarray


def evidence_groups(widths: np.ndarray) -> list[np.ndarray]:
    """Rows grouped by how many slots of evidence they hold, so that each pads to few.

    A group holds the rows whose width lies in ``(2 ** (g - 1), 2 ** g]`` (one group for
    widths 1 and 2, one for 3 and 4, then 5 to 8...): padding a chunk to its widest member
    (the odd member with twenty pieces of evidence when most have four) would multiply the
    memory and the comparisons of reasons by the ratio. Rows without evidence are left out.

    Args:
        widths: ``(m,)`` the slots of evidence of each row.

    Returns:
        The groups' rows, each ascending, the narrowest group first.
    """
    widths = np.asarray(widths, dtype=np.int64)
    group = np.zeros(widths.shape, dtype=np.int64)
    some = widths > 0
    group[some] = np.ceil(np.log2(np.maximum(widths[some], 2))).astype(np.int64)
    return [np.flatnonzero(some & (group == value)) for value in np.unique(group[some])]


def _evidence(
    session: Session, embedder: Embedder, chunk: _Chunk, state: RunState
) -> tuple[list[list[Evidence]], list[_EvidenceGroup]]:
    """Each member's evidence: ``(stated evidence, its vectors in groups of similar width)``.

    A member's slots hold what they stated (answer, then goals: the evidence lists) followed
    by their recent items (``chunk.recent``, whose evidence :func:`_consumed` gives when a
    reason names one). The vectors are those reasons compare: less the centre of the member's
    language, at unit length (an item's are :attr:`RunState.reason_vectors`: the member's
    recent items are in their language). Members are padded by group
    (:func:`evidence_groups`), not all to the widest.
    """
    label_of = functools.cache(goal_label)  # a few options in a few languages
    labels = [
        [label_of(goal, language) for goal in goals]
        for goals, language in zip(chunk.goals, chunk.languages, strict=True)
    ]
    texts = sorted(
        {answer for answer in chunk.answers if answer} | {label for row in labels for label in row}
    )
    vector_of = dict(zip(texts, embed_texts_cached(session, embedder, texts), strict=True))

    evidence: list[list[Evidence]] = []
    # Where each stated piece of evidence goes (row, slot) and its text's index into
    # ``text_vectors``, set at once.
    text_at: list[tuple[int, int, int]] = []
    text_index = {text: index for index, text in enumerate(vector_of)}
    goal_evidence = functools.cache(functools.partial(Evidence, EvidenceKind.GOAL))
    for row, (answer, row_labels) in enumerate(zip(chunk.answers, labels, strict=True)):
        found: list[Evidence] = []
        if answer:
            text_at.append((row, 0, text_index[answer]))
            found.append(Evidence(EvidenceKind.ANSWER, answer))
        for label in row_labels:
            text_at.append((row, len(found), text_index[label]))
            found.append(goal_evidence(label))
        evidence.append(found)

    m, dim = len(chunk.member_ids), embedder.dim
    stated = np.array([len(found) for found in evidence], dtype=np.int64).reshape(m)
    recent = np.array([len(consumed) for consumed in chunk.recent], dtype=np.int64).reshape(m)
    # Every (row, slot) that holds evidence, with its vector: what they stated, then each
    # member's recent items in the slots after it.
    rows = np.zeros(0, dtype=np.int64)
    slots = np.zeros(0, dtype=np.int64)
    vectors = np.zeros((0, dim), dtype=np.float32)
    if text_at:
        rows, slots, which = np.array(text_at, dtype=np.int64).T
        text_vectors = np.stack(list(vector_of.values())).astype(np.float32, copy=False)
        vectors = unit_vectors(text_vectors[which] - _centres(chunk, state, dim)[rows])
    if recent.any():
        recent_rows = np.repeat(np.arange(m), recent)
        starts = np.cumsum(recent) - recent
        recent_slots = np.repeat(stated - starts, recent) + np.arange(len(recent_rows))
        columns = np.array([column for consumed in chunk.recent for column, _ in consumed])
        rows = np.concatenate([rows, recent_rows])
        slots = np.concatenate([slots, recent_slots])
        vectors = np.concatenate([vectors, state.reason_vectors[columns]])
    widths = stated + recent
    groups: list[_EvidenceGroup] = []
    local = np.zeros(m, dtype=np.int64)
    for members in evidence_groups(widths):
        local[members] = np.arange(members.size)
        inside = np.isin(rows, members)
        width = int(widths[members].max())
        padded = np.zeros((members.size, width, dim), dtype=np.float32)
        mask = np.zeros((members.size, width), dtype=bool)
        padded[local[rows[inside]], slots[inside]] = vectors[inside]
        mask[local[rows[inside]], slots[inside]] = True
        groups.append(_EvidenceGroup(members, padded, mask))
    return evidence, groups


def _centres(chunk: _Chunk, state: RunState, dim: int) -> np.ndarray:
    """``(m, d)`` the centre of each member's language (zero when it has none)."""
    zero = np.zeros(dim, dtype=np.float32)
    return np.stack([state.centres.get(language, zero) for language in chunk.languages])


def _consumed(state: RunState, column: int, event_type: str) -> Evidence:
    kind = EvidenceKind.ATTENDED if event_type == "event_attended" else EvidenceKind.READ
    return Evidence(kind, state.items[column].title)


def _co_engagement_sources(
    chunk: _Chunk, state: RunState, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each recommended item, the member's recent item most co-engaged with it.

    Returns:
        ``(source, strength)``, both ``(m, k)``: the index into ``chunk.recent[row]`` and the
        co-engagement between the two items relative to the recent item's strongest one (1 for
        its most co-engaged item, 0 when none).
    """
    m, k = indices.shape
    width = max((len(recent) for recent in chunk.recent), default=0)
    if width == 0 or k == 0:
        return np.zeros((m, k), dtype=np.int64), np.zeros((m, k), dtype=np.float32)
    recent = np.full((m, width), -1, dtype=np.int64)
    for row, consumed in enumerate(chunk.recent):
        recent[row, : len(consumed)] = [column for column, _ in consumed]
    sources = np.broadcast_to(recent[:, :, None], (m, width, k))
    targets = np.broadcast_to(indices[:, None, :], (m, width, k))
    valid = (sources >= 0) & (targets >= 0)
    strength = np.zeros((m, width, k), dtype=np.float32)
    if valid.any():
        top = state.co_engagement.max(axis=1).toarray().ravel()
        pairs = np.asarray(
            state.co_engagement[sources[valid], targets[valid]], dtype=np.float32
        ).ravel()
        strongest = top[sources[valid]]
        strength[valid] = np.divide(pairs, strongest, out=np.zeros_like(pairs), where=strongest > 0)
    best = np.argmax(strength, axis=1)
    return best, np.take_along_axis(strength, best[:, None, :], axis=1)[:, 0, :]


def _reasons(
    session: Session,
    embedder: Embedder,
    chunk: _Chunk,
    state: RunState,
    indices: np.ndarray,
    weights: RankingWeights,
    learned: np.ndarray | None = None,
) -> list[list[str]]:
    """The reason of each recommended item, in the member's language.

    ``learned`` holds the learned model's scores of the modelled items (``EASE.items_``) only.
    """
    m, k = indices.shape
    model = state.collaborative
    put_forward = np.zeros((m, k), dtype=bool)
    modelled = np.full(len(state.items), -1, dtype=np.int64)
    if learned is not None and model is not None and weights.collaborative > 0 and k:
        modelled[model.items_] = np.arange(len(model.items_))
        columns = modelled[np.clip(indices, 0, None)]
        positive = np.clip(learned, 0.0, None)
        top = positive.max(axis=1, initial=0.0)[:, None]
        picked = np.where(columns >= 0, np.take_along_axis(positive, columns.clip(0), axis=1), 0)
        strength = np.divide(picked, top, out=np.zeros_like(picked), where=top > 0)
        put_forward = (strength >= COLLABORATIVE_REASON) & (indices >= 0)
    # What every item of the member's language shares ("community") says nothing about why
    # this item: evidence and items are compared once it is taken out. A recommended item is
    # in the member's language: its vector less its own language's centre is the one.
    evidence, groups = _evidence(session, embedder, chunk, state)
    best = np.full((m, k), -1, dtype=np.int64)
    for group in groups:  # members apart: each group compares its own slots only
        recommended = (
            state.reason_vectors[np.clip(indices[group.rows], 0, None)]
            if len(state.items)
            else np.zeros((group.rows.size, k, embedder.dim), dtype=np.float32)
        )
        best[group.rows], _ = distinct_evidence(
            group.vectors, group.mask, recommended, weights.reason_min_similarity
        )
    source, strength = _co_engagement_sources(chunk, state, indices)
    # The same sentences recur across members: each is made once per chunk, and those that
    # name an item once per run (the run state keeps them for the next chunks).
    stated_reason = functools.cache(reason_text)
    popular = functools.cache(popular_reason)
    generic_learned = functools.cache(collaborative_reason)
    sentences = state.reason_sentences

    def naming_an_item(
        kind: str, sentence: Callable[[Evidence, str], str]
    ) -> Callable[[int, str, str], str]:
        """The reason of ``kind`` naming the item at ``column``, made once per run."""

        @functools.cache
        def reason(column: int, event_type: str, language: str) -> str:
            key = (kind, column, event_type, language)
            made = sentences.get(key)
            if made is None:
                made = sentences[key] = sentence(_consumed(state, column, event_type), language)
            return made

        return reason

    consumed_reason = naming_an_item("consumed", reason_text)
    co_reason = naming_an_item("co_engagement", co_engagement_reason)
    learned_reason = naming_an_item(
        "learned", lambda item, language: collaborative_reason(language, item)
    )

    reasons: list[list[str]] = []
    # As lists: reading numpy arrays one element at a time costs more than the loop.
    picks, slots, sources = indices.tolist(), best.tolist(), source.tolist()
    strengths, learned_picks = strength.tolist(), put_forward.tolist()
    learned_weights = None if model is None else model.weights_
    for language, recent, stated, segment_id, *row_values in zip(
        chunk.languages,
        chunk.recent,
        evidence,
        chunk.segment_ids,
        picks,
        slots,
        strengths,
        sources,
        learned_picks,
        strict=True,
    ):
        first_recent = len(stated)  # answers and goals come first
        named: set[int] = set()  # the member's items a reason of this list already names
        learned_reasons = 0
        listed: list[str] = []
        for pick, slot, strong, source_index, learned_pick in zip(*row_values, strict=True):
            if pick < 0:
                break
            if slot >= 0:
                if slot >= first_recent:
                    column, event_type = recent[slot - first_recent]
                    reason = consumed_reason(column, event_type, language)
                    named.add(column)
                else:
                    reason = stated_reason(stated[slot], language)
            elif strong >= CO_ENGAGEMENT_REASON:
                column, event_type = recent[source_index]
                reason = co_reason(column, event_type, language)
                named.add(column)
            elif learned_pick:
                supporting = None
                if learned_reasons and learned_weights is not None:
                    supporting = _learned_support(learned_weights, modelled, recent, pick, named)
                if supporting is not None:
                    column, event_type = supporting
                    named.add(column)
                    reason = learned_reason(column, event_type, language)
                else:
                    reason = generic_learned(language, again=learned_reasons > 0)
                learned_reasons += 1
            else:
                reason = popular(segment_id is not None, language)
            listed.append(reason)
        reasons.append(listed)
    return reasons


def _learned_support(
    weights: np.ndarray,
    modelled: np.ndarray,
    recent: list[tuple[int, str]],
    item: int,
    named: set[int],
) -> tuple[int, str] | None:
    """The member's recent item that adds most to ``item``'s learned score, not yet named.

    Args:
        weights: The learned model's item-item weights (``EASE.weights_``).
        modelled: Each item's row in ``weights`` (``-1`` when not modelled).
        recent: The member's recent items, newest first, as (column, event type).
        item: The recommended item's column.
        named: Columns a reason of the same list already names.

    Returns:
        The (column, event type) whose weight towards ``item`` is the largest positive one;
        none when no recent item left supports it.
    """
    target = modelled[item]
    if target < 0:
        return None
    best: tuple[int, str] | None = None
    best_weight = 0.0
    for column, event_type in recent:
        source = modelled[column]
        if column in named or source < 0:
            continue
        weight = float(weights[source, target])
        if weight > best_weight:
            best, best_weight = (column, event_type), weight
    return best


def _member_popularity(
    chunk: _Chunk, state: RunState, popularity_rows: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The popularity each member is ranked with: their answer groups', else their segment's.

    Returns:
        ``(popularity, rows, by_group)``: a table and each member's row in it, and ``(m,)``
        whether each member is ranked by their answer groups. The table's first rows are the
        segments' (``state.popularity``); one row follows for each combination of answers
        found among the members who answered a choice question (group shares are scaled to
        the community's total engagement, like the segment counts): members who answered
        alike share a row.
    """
    rows = np.array(popularity_rows, dtype=np.int64)
    none = np.zeros(len(rows), dtype=bool)
    if state.groups is None or not state.choice_questions:
        return state.popularity, rows, none
    codes = state.answer_codes(chunk.member_ids)
    answered = np.asarray((codes >= 0).any(axis=1), dtype=bool)
    if not answered.any():
        return state.popularity, rows, none
    combinations, combination_of = np.unique(codes[answered], axis=0, return_inverse=True)
    total = float(state.popularity[-1].sum())
    table = np.concatenate(
        [
            np.asarray(state.popularity, dtype=np.float32),
            state.groups.transform(combinations) * np.float32(total),
        ]
    )
    rows[answered] = len(state.popularity) + combination_of.ravel()
    return table, rows, answered


def _with_community(table: np.ndarray, community: np.ndarray, share: float) -> np.ndarray:
    """Each row of a popularity table with ``share`` of it made the community's popularity.

    The community's counts are scaled to the row's total first (an empty row takes them as
    they are), so that the mix weighs shares, not sizes.
    """
    table = np.asarray(table, dtype=np.float32)
    community = np.asarray(community, dtype=np.float32)
    totals = table.sum(axis=1, keepdims=True, dtype=np.float64)
    community_total = float(community.sum())
    if community_total <= 0:
        return table
    scale = np.where(totals > 0, totals / community_total, 1.0).astype(np.float32)
    return np.float32(1 - share) * table + np.float32(share) * scale * community[None, :]


@dataclass(frozen=True)
class RankingSignals:
    """What the ranker needs for a chunk of members besides the weights: every signal, once.

    :meth:`rank` runs :func:`~nurture.recommend.ranking.rank_content` on them, so that other
    weights (those that do not change the signals: every weight but the half-lives) can rank
    the same members again without loading anything (the evaluation's tuning and ablation do).

    Attributes:
        member_ids: The members, one row each.
        item_keys: The content items' keys, one column each.
        has_history: ``(m,)`` whether the member consumed anything.
        arguments: The arguments of ``rank_content`` but the weights and ``k``, by name.
        community: ``(n,)`` the whole community's popularity (recency-weighted counts), mixed
            into the segment popularity at :attr:`RankingWeights.community_popularity`.
        by_group: ``(m,)`` whether the member is ranked by their answer groups' popularity
            (already shrunk towards the community's: the mix leaves it as it is).
        group_rows: The first row of the popularity table that holds answer groups'
            popularity (the rows before it are the segments', which the mix applies to).
    """

    member_ids: list[int]
    item_keys: list[str]
    has_history: np.ndarray
    arguments: dict[str, Any]
    community: np.ndarray
    by_group: np.ndarray
    group_rows: int

    def rank(
        self, weights: RankingWeights, k: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rank the members (or the members at ``rows``) with ``weights``.

        Args:
            weights: The ranking weights.
            k: Items per member.
            rows: Rows of the members to rank; all when none.

        Returns:
            ``(indices, scores)``, both ``(len(rows), k)``, as ``rank_content`` gives them.
        """
        arguments = self.arguments if rows is None else _rows_of(self.arguments, rows)
        if weights.community_popularity > 0:
            arguments = dict(arguments)
            table = arguments["popularity"]
            mixed = _with_community(
                table[: self.group_rows], self.community, weights.community_popularity
            )
            if self.group_rows < len(table):  # the groups' rows are left as they are
                mixed = np.concatenate([mixed, table[self.group_rows :]])
            arguments["popularity"] = mixed
        return rank_content(weights=weights, k=k, **arguments)


_PER_MEMBER = (
    "member_interest",
    "segment_interest",
    "excluded",
    "item_ok",
    "history",
    "format_match",
    "popularity_rows",
    "collaborative",
)


def _rows_of(arguments: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """The arguments of ``rank_content`` restricted to the members at ``rows``."""
    out = dict(arguments)
    for name in _PER_MEMBER:
        if out.get(name) is not None:
            out[name] = out[name][rows]
    popularity = arguments["popularity"]
    per_member = popularity.ndim == 2 and len(popularity) == len(arguments["member_interest"])
    if arguments.get("popularity_rows") is None and per_member:
        out["popularity"] = popularity[rows]
    return out


def _signals(chunk: _Chunk, state: RunState, kinds: Collection[str] | None) -> RankingSignals:
    """Every signal of the chunk's members, ready for the ranker."""
    # Languages as small integer codes: comparing (m, n) Python strings costs more than ranking.
    item_languages, code_of = state.language_codes
    member_languages = np.array([code_of.get(lang, -1) for lang in chunk.languages], np.int64)
    item_ok = (member_languages[:, None] == item_languages[None, :]) & state.available[None, :]
    if kinds is not None:
        item_ok &= state.kinds_allowed(kinds)[None, :]
    popularity_rows = [state.popularity_row(segment_id) for segment_id in chunk.segment_ids]
    learned = (
        None
        if state.collaborative is None
        else state.collaborative.transform(chunk.history, modelled_only=True)
    )
    popularity, rows_of_popularity, by_group = _member_popularity(chunk, state, popularity_rows)
    return RankingSignals(
        member_ids=list(chunk.member_ids),
        item_keys=list(state.item_keys),
        has_history=np.diff(chunk.history.indptr) > 0,
        arguments={
            "member_interest": chunk.interest,
            "segment_interest": chunk.segment_interest,
            "excluded": chunk.excluded,
            "item_vectors": state.vectors,
            "item_ok": item_ok,
            "freshness": state.freshness,
            "popularity": popularity,
            "popularity_rows": rows_of_popularity,
            "history": chunk.history,
            "co_engagement": state.co_engagement,
            "format_match": _format_match(chunk, state),
            "collaborative": learned,
            "collaborative_items": (
                None if state.collaborative is None else state.collaborative.items_
            ),
        },
        community=state.popularity[-1],
        by_group=by_group,
        group_rows=len(state.popularity),
    )


_RUN_STATE_FIELDS = ("interest_half_life_days", "freshness_half_life_days", "decay_popularity")
"""The weights the run's shared state depends on: other weights share one state."""


def load_ranking_signals(
    session: Session,
    embedder: Embedder,
    member_ids: Sequence[int],
    now: dt.datetime,
    weights: RankingWeights | None = None,
    *,
    kinds: Collection[str] | None = None,
    choice_questions: Sequence[str] = (),
) -> RankingSignals:
    """Load every ranking signal of some members once, to rank them with many weights.

    The signals depend on the half-lives of ``weights`` (history and popularity decay,
    freshness); :meth:`RankingSignals.rank` may use any other weights. Nothing is written.

    Args:
        session: The database session (after the nightly's profiles and segments).
        embedder: The embedding model.
        member_ids: The members.
        now: The ranking time.
        weights: The weights the signals are computed with; the defaults when none.
        kinds: Recommend only items of these kinds; all when none.
        choice_questions: Keys of the single-choice questions (see
            :func:`recommend_for_members`).

    Returns:
        The signals, members in id order.
    """
    weights = weights or RankingWeights()
    state = load_run_state(session, embedder, now, weights, None, choice_questions)
    chunk = _load_chunk(session, list(member_ids), state, embedder.dim, weights)
    return _signals(chunk, state, kinds)


def recommend_for_members(
    session: Session,
    embedder: Embedder,
    member_ids: Sequence[int],
    now: dt.datetime,
    k: int = 10,
    weights: RankingWeights | None = None,
    *,
    run_id: int | None = None,
    kinds: Collection[str] | None = None,
    choice_questions: Sequence[str] = (),
    newcomer_weights: RankingWeights | None = None,
    state_dir: Path | None = None,
) -> MatchSummary:
    """Rank content for a chunk of members and replace their recommendations, with reasons.

    Each member's items blend similarity to their answers and to what they consumed (recent
    consumption counting more), co-engagement (members who consumed the same items also consumed
    these), their segment's interest and popularity, and freshness (see :class:`RankingWeights`).
    Eligible items are in the member's language, of one of ``kinds``, published, not expired,
    not past events, and neither consumed (viewed, attended, clicked) nor carried by a message
    sent to the member. Only activity up to ``now`` counts. The chunk's previous recommendations
    are deleted; the caller commits.

    Args:
        session: The database session.
        embedder: The embedding model (the one profiles and segments were built with).
        member_ids: The members of the chunk.
        now: The current time (timezone-aware).
        k: Recommendations per member.
        weights: Ranking weights of the members with a history (who consumed something); of
            every member when ``newcomer_weights`` is none; the defaults when none.
        run_id: The match run to file the rows under; a new one is started when none. What the
            run shares (co-engagement, popularity) is learned on its first chunk only.
        kinds: Recommend only items of these kinds (``article``, ``event``...); all when none.
        choice_questions: Keys of the single-choice questions (role, country...): a member who
            answered some gets the popularity within their answer groups
            (:class:`~nurture.recommend.GroupPopularity`) instead of their segment's.
        newcomer_weights: Ranking weights of the members without any history; ``weights``
            when none.
        state_dir: A folder where what the run learns from the library and everyone's
            engagements is stored for later runs (:func:`~nurture.recommend.build_run_state`);
            none keeps it in memory only.

    Returns:
        A summary: members processed, rows written, members left without any eligible item,
        members ranked without answers or history.
    """
    weights = weights or RankingWeights()
    if run_id is None:
        run_id = start_match_run(
            session, embedder, weights, k, kinds=kinds, newcomer_weights=newcomer_weights
        )
    state = load_run_state(session, embedder, now, weights, run_id, choice_questions, state_dir)
    chunk = _load_chunk(session, list(member_ids), state, embedder.dim, weights)
    m = len(chunk.member_ids)
    session.connection().execute(  # Core: the session holds no recommendation to keep in step
        delete(table_of(Recommendation)).where(
            among(session, table_of(Recommendation).c.member_id, chunk.member_ids)
        )
    )
    if m == 0:
        return MatchSummary(run_id=run_id, members=0, recommendations=0, members_without_items=0)

    signals = _signals(chunk, state, kinds)
    newcomers = np.flatnonzero(~signals.has_history)
    if newcomer_weights is None or newcomer_weights == weights or newcomers.size == 0:
        indices, scores = signals.rank(weights, k)
    else:
        indices = np.full((m, k), -1, dtype=np.int64)
        scores = np.full((m, k), np.nan, dtype=np.float64)
        others = np.flatnonzero(signals.has_history)
        if others.size:
            indices[others], scores[others] = signals.rank(weights, k, others)
        same_state = all(
            getattr(newcomer_weights, name) == getattr(weights, name) for name in _RUN_STATE_FIELDS
        )
        newcomer_state = (
            state
            if same_state
            else load_run_state(
                session, embedder, now, newcomer_weights, run_id, choice_questions, state_dir
            )
        )
        newcomer_signals = signals if same_state else _signals(chunk, newcomer_state, kinds)
        indices[newcomers], scores[newcomers] = newcomer_signals.rank(
            newcomer_weights, k, newcomers
        )
    learned = signals.arguments["collaborative"]
    reasons = _reasons(session, embedder, chunk, state, indices, weights, learned)

    written = _write_recommendations(
        session, chunk.member_ids, state, indices, scores, reasons, run_id
    )
    has_answers = np.abs(chunk.interest).sum(axis=1) > 0
    return MatchSummary(
        run_id=run_id,
        members=m,
        recommendations=written,
        members_without_items=int((indices[:, 0] < 0).sum()) if k else m,
        cold_start=int((~signals.has_history & ~has_answers).sum()),
    )


_RECOMMENDATION_COLUMNS = (
    "member_id",
    "content_item_id",
    "run_id",
    "rank",
    "score",
    "reason",
    "created_at",
)


def _write_recommendations(
    session: Session,
    member_ids: Sequence[int],
    state: RunState,
    indices: np.ndarray,
    scores: np.ndarray,
    reasons: list[list[str]],
    run_id: int,
) -> int:
    """Insert the chunk's recommendations (each member's reasons, in rank order); their count.

    The rows go to the driver column by column (``executemany`` on SQLite, ``COPY`` on
    PostgreSQL, :func:`~nurture.ingest.bulk.write_columns`): a Core insert converts every
    value of every row in Python, which costs more than the insert itself.
    """
    counts = np.array([len(listed) for listed in reasons], dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return 0
    rows = np.repeat(np.arange(len(member_ids)), counts)
    positions = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    item_ids = state.item_ids
    values: list[list[Any]] = [
        np.asarray(member_ids, dtype=np.int64)[rows].tolist(),
        item_ids[indices[rows, positions]].tolist(),
        [run_id] * total,
        (positions + 1).tolist(),
        np.asarray(scores, dtype=np.float64)[rows, positions].tolist(),
        [reason for listed in reasons for reason in listed],
        [utcnow()] * total,
    ]
    return write_columns(
        session, table_of(Recommendation), _RECOMMENDATION_COLUMNS, values, conflict=()
    )


def _available_at(query: Select[Any], now: dt.datetime | None) -> Select[Any]:
    """``query`` without items that expired or events that started by ``now`` (when given)."""
    if now is None:
        return query
    return query.where(
        or_(ContentItem.expires_at.is_(None), ContentItem.expires_at > now),
        or_(ContentItem.event_start.is_(None), ContentItem.event_start >= now),
    )


def recommendations_of(
    session: Session, member_ids: Collection[int], *, now: dt.datetime | None = None
) -> dict[int, list[RecommendedItem]]:
    """The current recommendations of several members, best first, in one query.

    Args:
        session: The database session.
        member_ids: The members (a chunk: all their recommendations are read).
        now: As for :func:`recommendations_for`.

    Returns:
        ``{member id: items}``, each list as ``recommendations_for`` gives it; a member
        without recommendations is left out.
    """
    ids = sorted(set(member_ids))
    if not ids:
        return {}
    query = _available_at(
        select(
            Recommendation.member_id,
            ContentItem.key,
            ContentItem.title,
            ContentItem.url,
            ContentItem.kind,
            ContentItem.summary,
            ContentItem.language,
            Recommendation.reason,
            Recommendation.score,
            ContentItem.event_start,
            ContentItem.event_time_zone,
            ContentItem.venue,
        )
        .join(ContentItem, ContentItem.id == Recommendation.content_item_id)
        .where(among(session, Recommendation.member_id, ids))
        .order_by(Recommendation.member_id, Recommendation.rank),
        now,
    )
    found: dict[int, list[RecommendedItem]] = defaultdict(list)
    for member_id, *values in plain_rows(session, query).tuples():
        found[member_id].append(RecommendedItem(*values))
    return dict(found)


def recommendations_for(
    session: Session,
    member_id: int,
    limit: int | None = None,
    *,
    now: dt.datetime | None = None,
) -> list[RecommendedItem]:
    """A member's current recommendations, best first.

    Args:
        session: The database session.
        member_id: The member.
        limit: At most this many items; all when none.
        now: When given, items that expired or events that started since the ranking are
            left out.

    Returns:
        The recommended items with their reasons.
    """
    query = _available_at(
        select(Recommendation, ContentItem)
        .join(ContentItem, ContentItem.id == Recommendation.content_item_id)
        .where(Recommendation.member_id == member_id)
        .order_by(Recommendation.rank),
        now,
    )
    if limit is not None:
        query = query.limit(limit)
    return [
        RecommendedItem(
            key=item.key,
            title=item.title,
            url=item.url,
            kind=item.kind,
            summary=item.summary,
            language=item.language,
            reason=recommendation.reason,
            score=recommendation.score,
            event_start=item.event_start,
            time_zone=item.event_time_zone,
            venue=item.venue,
        )
        for recommendation, item in session.execute(query).tuples()
    ]
