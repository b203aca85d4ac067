"""What a match run learns once and every chunk of members shares.

The content library (items, embeddings, availability and freshness at the run's time), the
item-item co-engagement and the EASE model learned from every member's activity, and each
segment's popularity: computed once per match run, kept in memory for the run's next chunks
(keyed by database, run and time), never per member. What depends only on the library and the
set of engagements (items, vectors, co-engagement, EASE), and the answers to the choice
questions, are also kept for the next runs in the same process while their fingerprint (counts,
largest and summed ids, latest edits) is unchanged, and stored on disk for the runs of later
processes: a warm nightly whose new activity holds no engagement with an item, and in which no
choice answer changed, would otherwise learn them again, reading the whole community for nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sqlalchemy import BigInteger, Select, String, Text, cast, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from nurture.embedding import Embedder
from nurture.recommend.collaborative import EASE
from nurture.recommend.content_vectors import load_library_vectors
from nurture.recommend.groups import GroupPopularity
from nurture.recommend.ranking import RankingWeights, decay, learn_co_engagement
from nurture.storage import integer_rows, plain_rows
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    ContentItem,
    MatchRun,
    Member,
    SegmentationRun,
    SegmentMembership,
)
from nurture.storage.stored_json import JsonTexts

__all__ = [
    "CONSUMING_EVENT_TYPES",
    "ChoiceAnswers",
    "ItemInfo",
    "RunState",
    "build_run_state",
    "choice_answers",
    "forget_run_states",
    "item_available",
    "item_freshness",
    "language_code",
    "latest_segmentation_run",
    "load_choice_answers",
    "load_run_state",
    "microseconds",
    "occurred_at_column",
    "unit_vectors",
]

CONSUMING_EVENT_TYPES = ("content_view", "event_attended", "email_click")
"""Activity types whose ``content_key`` means the member consumed that item."""

_STREAM_ROWS = 50_000
_STATE_FILE_PREFIX = "match-state-"
_ANSWERS_FILE_PREFIX = "choice-answers-"
_CACHED_RUNS = 2
_SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class ItemInfo:
    """What ranking and reasons need of a content item, detached from any session.

    Attributes:
        id: The content item's id.
        key: Its key.
        title: Its title.
        kind: article, event, webinar, masterclass or discussion.
        language: Two-letter language code, lower case.
        published_at: When it was published, if known.
        event_start: When the event starts, for events.
        expires_at: When it stops being recommended, if ever.
    """

    id: int
    key: str
    title: str
    kind: str
    language: str
    published_at: dt.datetime | None
    event_start: dt.datetime | None
    expires_at: dt.datetime | None


def language_code(code: str | None) -> str:
    """The two-letter, lower-case language of a member or an item (``en`` when unknown)."""
    return (code or "en")[:2].lower()


def item_available(items: Sequence[ContentItem | ItemInfo], now: dt.datetime) -> np.ndarray:
    """Which items can be recommended at ``now``, whoever the member.

    An item is available when it is published, not expired, and (for events) not started yet.

    Args:
        items: The content items.
        now: The current time (timezone-aware).

    Returns:
        An ``(len(items),)`` bool array.
    """
    return np.array(
        [
            (item.published_at is None or item.published_at <= now)
            and (item.expires_at is None or item.expires_at > now)
            and (item.event_start is None or item.event_start >= now)
            for item in items
        ],
        dtype=bool,
    )


def item_freshness(
    items: Sequence[ContentItem | ItemInfo], now: dt.datetime, half_life_days: float
) -> np.ndarray:
    """Freshness of each item in ``[0, 1]``: recently published, or an event coming up soon.

    Freshness halves every ``half_life_days`` since publication; for an event still to come it
    is at least what the time left until the event gives. An undated item counts as half fresh.

    Args:
        items: The content items.
        now: The current time (timezone-aware).
        half_life_days: Days after which freshness halves.

    Returns:
        An ``(len(items),)`` float array.
    """

    def days(delta: dt.timedelta) -> float:
        return max(delta.total_seconds(), 0.0) / _SECONDS_PER_DAY

    fresh = np.full(len(items), 0.5, dtype=np.float64)
    for index, item in enumerate(items):
        values = []
        if item.published_at is not None:
            values.append(0.5 ** (days(now - item.published_at) / half_life_days))
        if item.event_start is not None and item.event_start >= now:
            values.append(0.5 ** (days(item.event_start - now) / half_life_days))
        if values:
            fresh[index] = max(values)
    return fresh


@dataclass(frozen=True)
class RunState:
    """The content library and what the whole community's activity says about it, at ``now``.

    Attributes:
        now: The time the run ranks for.
        items: Every content item, by id.
        vectors: ``(n, d)`` unit item embeddings, rows in the order of ``items``.
        available: ``(n,)`` bool: published, not expired, not a past event.
        freshness: ``(n,)`` in ``[0, 1]``.
        co_engagement: ``(n, n)`` item-item co-engagement (sparse).
        collaborative: The learned collaborative model (EASE) fitted on every member's
            engagements, or none when nobody engaged with anything.
        choice_questions: Keys of the single-choice questions whose answers group members.
        choice_answers: Every member's answers to them, read once per run (with ``groups``).
        groups: Popularity within answer groups (recency-weighted unless
            :attr:`RankingWeights.decay_popularity` is off), or none without choice
            questions or engagement.
        popularity: ``(s + 1, n)`` recency-weighted count of members who engaged with each
            item, per segment (row ``segment_rows[segment id]``); the last row is the whole
            community's, and stands in for a segment with no engagement at all.
        segment_rows: Row of ``popularity`` of each segment id.
        centres: The mean vector of the available items of each language (of all its items
            when none is available): what they have in common, taken out before reasons
            compare evidence with items.
        segmentation_run: The latest segmentation run when the state was built, whose
            segments ``popularity`` counts and whose memberships the run's members are
            ranked by (none before any segmentation).
    """

    now: dt.datetime
    items: list[ItemInfo]
    vectors: np.ndarray
    available: np.ndarray
    freshness: np.ndarray
    co_engagement: sp.csr_matrix
    popularity: np.ndarray
    segment_rows: dict[int, int]
    centres: dict[str, np.ndarray]
    collaborative: EASE | None = None
    segmentation_run: int | None = None
    choice_questions: tuple[str, ...] = ()
    choice_answers: ChoiceAnswers | None = None
    groups: GroupPopularity | None = None

    def answer_codes(self, member_ids: Sequence[int]) -> np.ndarray:
        """``(m, q)`` each member's answer code to each choice question, ``-1`` when unanswered.

        Args:
            member_ids: The members.
        """
        if self.choice_answers is None:
            return np.full((len(member_ids), len(self.choice_questions)), -1, dtype=np.int64)
        return self.choice_answers.of(member_ids)

    @cached_property
    def reason_vectors(self) -> np.ndarray:
        """``(n, d)`` each item's vector less its language's centre, at unit length.

        What reasons compare with a member's evidence (zero when nothing is left).
        """
        zero = np.zeros(self.vectors.shape[1], dtype=np.float32)
        if not self.items:
            return self.vectors - zero
        centres = np.stack([self.centres.get(item.language, zero) for item in self.items])
        return unit_vectors(self.vectors - centres)

    @cached_property
    def language_codes(self) -> tuple[np.ndarray, dict[str, int]]:
        """``(n,)`` each item's language as a small integer code, and the code of each language.

        Codes are numbered in the order the items meet the languages.
        """
        code_of: dict[str, int] = {}
        codes = np.array(
            [code_of.setdefault(item.language, len(code_of)) for item in self.items],
            dtype=np.int64,
        )
        return codes, code_of

    @cached_property
    def item_languages(self) -> np.ndarray:
        """``(n,)`` object array: each item's language."""
        return np.array([item.language for item in self.items], dtype=object)

    @cached_property
    def item_ids(self) -> np.ndarray:
        """``(n,)`` each item's id."""
        return np.array([item.id for item in self.items], dtype=np.int64)

    @cached_property
    def kind_codes(self) -> tuple[np.ndarray, dict[str, int]]:
        """``(n,)`` each item's kind as its index among the sorted kinds, and those indices."""
        kinds = sorted({item.kind for item in self.items})
        kind_index = {kind: index for index, kind in enumerate(kinds)}
        return np.array([kind_index[item.kind] for item in self.items], dtype=np.int64), kind_index

    @cached_property
    def item_keys(self) -> tuple[str, ...]:
        """Each item's key, in column order."""
        return tuple(item.key for item in self.items)

    def kinds_allowed(self, kinds: Collection[str]) -> np.ndarray:
        """``(n,)`` bool: whether each item is of one of ``kinds``."""
        wanted = frozenset(kinds)
        allowed = self._kinds_allowed.get(wanted)
        if allowed is None:
            allowed = np.array([item.kind in wanted for item in self.items], dtype=bool)
            self._kinds_allowed[wanted] = allowed
        return allowed

    @cached_property
    def _kinds_allowed(self) -> dict[frozenset[str], np.ndarray]:
        return {}

    @cached_property
    def segment_interests(self) -> dict[int, np.ndarray | None]:
        """The interest of each segment of :attr:`segmentation_run` read so far, by id.

        Filled by the run's chunks as they meet segments (a segment's interest is read once
        per run, not once per chunk); none where a segment has no interest of the right size.
        """
        return {}

    @cached_property
    def reason_sentences(self) -> dict[Hashable, str]:
        """Reason sentences the run's chunks made so far, keyed by what each depends on.

        The same sentences recur in every chunk (an item read, in each language): each is
        made once per run, not once per chunk.
        """
        return {}

    @cached_property
    def answer_options(self) -> dict[str | None, list[str]]:
        """The options of each stored answer text to a multiple-choice question, decoded so far.

        The same few combinations of options recur in every chunk: each text is decoded once
        per run. The lists are shared: read them, do not change them.
        """
        return {}

    @cached_property
    def column_of(self) -> dict[str, int]:
        """Column of each item key."""
        return {item.key: column for column, item in enumerate(self.items)}

    def popularity_row(self, segment_id: int | None) -> int:
        """The row of ``popularity`` for a member of ``segment_id`` (the community's if none)."""
        if segment_id is None:
            return self.popularity.shape[0] - 1
        return self.segment_rows.get(segment_id, self.popularity.shape[0] - 1)


def unit_vectors(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` at unit length along their last axis; a zero vector stays zero."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def latest_segmentation_run(session: Session) -> int | None:
    """Id of the latest segmentation run, if any."""
    return session.scalar(select(func.max(SegmentationRun.id)))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _microseconds(moment: dt.datetime) -> int:
    """``moment`` as whole microseconds since 1970 (UTC): exact, unlike a float timestamp."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _engagement_query(
    now: dt.datetime, occurred_at: Any = ActivityEvent.occurred_at
) -> Select[Any]:
    return select(ActivityEvent.member_id, ActivityEvent.content_key, occurred_at).where(
        ActivityEvent.type.in_(CONSUMING_EVENT_TYPES),
        ActivityEvent.content_key.is_not(None),
        ActivityEvent.occurred_at <= now,
    )


def occurred_at_column(session: Session) -> ColumnElement[Any]:
    """``ActivityEvent.occurred_at`` as a bulk read takes it fastest (see :func:`microseconds`).

    On SQLite, the stored text, which numpy reads at once (making a datetime of each row is
    most of such a read's time); on PostgreSQL, the whole microseconds since 1970, which the
    database computes exactly (``extract`` gives a numeric); elsewhere, the datetime.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return type_coerce(ActivityEvent.occurred_at, String)
    if dialect == "postgresql":
        epoch = func.extract("epoch", ActivityEvent.occurred_at)
        return cast(epoch * 1_000_000, BigInteger)
    return ActivityEvent.occurred_at.expression


def microseconds(moments: Sequence[dt.datetime | str | int]) -> np.ndarray:
    """Times read through :func:`occurred_at_column`, as whole microseconds since 1970 (UTC).

    Args:
        moments: Timezone-aware datetimes, SQLite's stored UTC text of them, or PostgreSQL's
            whole microseconds since 1970.

    Returns:
        An ``(len(moments),)`` int64 array.
    """
    if moments and all(type(moment) is int for moment in moments):
        return np.array(moments, dtype=np.int64)
    if moments and all(isinstance(moment, str) for moment in moments):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # text with an offset: read one by one below
                parsed = np.array(moments, dtype="datetime64[us]")
            return parsed.astype(np.int64)
        except (ValueError, Warning):
            pass
    return np.fromiter(
        (
            moment
            if isinstance(moment, int)
            else _microseconds(
                dt.datetime.fromisoformat(moment) if isinstance(moment, str) else moment
            )
            for moment in moments
        ),
        dtype=np.int64,
        count=len(moments),
    )


def _engagements(
    session: Session, column_of: dict[str, int], now: dt.datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every member-item engagement up to ``now``: member ids, item columns, times.

    One row per member and item (the latest engagement, so a member's repeated views count
    once), streamed from the database in batches; times are microseconds since 1970.
    """
    members: list[np.ndarray] = []
    columns: list[np.ndarray] = []
    times: list[np.ndarray] = []
    query = _engagement_query(now, occurred_at_column(session)).execution_options(
        yield_per=_STREAM_ROWS
    )
    for batch in session.execute(query).partitions():
        kept = [(m, column_of[k], t) for m, k, t in batch if k in column_of]
        if not kept:
            continue
        member_ids, item_columns, moments = zip(*kept, strict=True)
        members.append(np.fromiter(member_ids, dtype=np.int64, count=len(kept)))
        columns.append(np.fromiter(item_columns, dtype=np.int64, count=len(kept)))
        times.append(microseconds(moments))
    if not members:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    member_ids_all = np.concatenate(members)
    item_columns_all = np.concatenate(columns)
    times_all = np.concatenate(times)
    # One row per (member, item): the latest engagement.
    order = np.lexsort((times_all, item_columns_all, member_ids_all))
    member_ids_all, item_columns_all = member_ids_all[order], item_columns_all[order]
    times_all = times_all[order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (member_ids_all[1:] != member_ids_all[:-1]) | (
        item_columns_all[1:] != item_columns_all[:-1]
    )
    return member_ids_all[last], item_columns_all[last], times_all[last]


def _recency(times: np.ndarray, now: dt.datetime, half_life_days: float) -> np.ndarray:
    """The recency weight at ``now`` of engagements at ``times`` (microseconds since 1970)."""
    ages = (_microseconds(now) - times) / (_SECONDS_PER_DAY * 1e6)
    return decay(ages, half_life_days)


def _segment_popularity(
    session: Session,
    latest: int | None,
    members: np.ndarray,
    columns: np.ndarray,
    weights: np.ndarray,
    n_items: int,
) -> tuple[np.ndarray, dict[int, int]]:
    """Recency-weighted engagement per segment of the run ``latest``, and the community's."""
    memberships = np.zeros((0, 2), dtype=np.int64)
    if latest is not None:
        query = select(SegmentMembership.member_id, SegmentMembership.segment_id).where(
            SegmentMembership.run_id == latest
        )
        if session.get_bind().dialect.name != "sqlite":  # a server's rows streamed
            query = query.execution_options(yield_per=_STREAM_ROWS)
        memberships = integer_rows(session, query, 2)
    segment_ids = np.unique(memberships[:, 1]) if memberships.size else np.zeros(0, np.int64)
    segment_rows = {int(segment_id): row for row, segment_id in enumerate(segment_ids)}
    counts = np.zeros((len(segment_ids) + 1, n_items), dtype=np.float64)
    np.add.at(counts[-1], columns, weights)
    if memberships.size and members.size:
        # Each engagement counts in every segment its member belongs to.
        memberships = memberships[np.argsort(memberships[:, 0], kind="stable")]
        start = np.searchsorted(memberships[:, 0], members, side="left")
        stop = np.searchsorted(memberships[:, 0], members, side="right")
        repeats = stop - start
        engagement = np.repeat(np.arange(members.size), repeats)
        offsets = np.arange(engagement.size) - np.repeat(np.cumsum(repeats) - repeats, repeats)
        segment_of = memberships[np.repeat(start, repeats) + offsets, 1]
        rows_of = np.searchsorted(segment_ids, segment_of)
        np.add.at(counts, (rows_of, columns[engagement]), weights[engagement])
    empty = counts[:-1].sum(axis=1) == 0
    counts[:-1][empty] = counts[-1]
    return counts.astype(np.float32), segment_rows


def _fit_collaborative(members: np.ndarray, columns: np.ndarray, n_items: int) -> EASE | None:
    """EASE fitted on the binary member x item engagement matrix; none without engagement."""
    if members.size == 0 or n_items == 0:
        return None
    _, rows = np.unique(members, return_inverse=True)
    engaged = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows.ravel(), columns)),
        shape=(int(rows.max()) + 1, n_items),
    )
    return EASE().fit(engaged)


def choice_answers(
    session: Session, questions: Sequence[str], member_ids: Sequence[int] | None = None
) -> dict[int, dict[str, str]]:
    """Each member's latest answer to each of the single-choice ``questions``.

    Args:
        session: The database session.
        questions: Keys of single-choice questions.
        member_ids: Only these members; every member when none.

    Returns:
        ``{member id: {question key: answer value}}``.
    """
    if not questions:
        return {}
    # The stored JSON as text, decoded once per distinct value: a few options repeat, and
    # decoding each row's value costs more than the query.
    query = select(Answer.member_id, Answer.question_key, cast(Answer.value, Text)).where(
        Answer.question_key.in_(list(questions))
    )
    if member_ids is not None:
        query = query.where(Answer.member_id.in_(list(member_ids)))
    decoded = JsonTexts()
    out: dict[int, dict[str, str]] = {}
    rows = plain_rows(session, query.order_by(Answer.answered_at, Answer.id))
    for member_id, key, text in rows:
        value = decoded(text)
        if isinstance(value, str) and value:
            out.setdefault(member_id, {})[key] = value
    return out


@dataclass(frozen=True)
class ChoiceAnswers:
    """Each member's latest answer to each single-choice question, as small integer codes.

    Compact where a ``{member id: {question key: value}}`` dict is not: a million members
    take a few bytes each, not a dict each.

    Attributes:
        questions: The question keys, one column of ``codes`` each.
        member_ids: ``(N,)`` ascending ids of the members who answered one of them at least.
        codes: ``(N, q)`` the code of each member's answer to each question, ``-1`` when
            unanswered.
        values: For each question, the code of each answer value, numbered in the order of
            the members' first answers (then of the questions).
    """

    questions: tuple[str, ...]
    member_ids: np.ndarray
    codes: np.ndarray
    values: tuple[dict[str, int], ...]

    def of(self, member_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(m, q)`` the codes of ``member_ids``' answers (``-1`` when unanswered)."""
        ids = np.asarray(member_ids, dtype=np.int64).reshape(-1)
        out = np.full((ids.size, len(self.questions)), -1, dtype=np.int64)
        if not self.member_ids.size or not ids.size:
            return out
        at = np.searchsorted(self.member_ids, ids).clip(max=self.member_ids.size - 1)
        found = self.member_ids[at] == ids
        out[found] = self.codes[at[found]]
        return out


def load_choice_answers(session: Session, questions: Sequence[str]) -> ChoiceAnswers:
    """Every member's latest answer to each of the single-choice ``questions``, compact.

    The same answers as :func:`choice_answers` (a non-empty text each), as codes.

    Args:
        session: The database session.
        questions: Keys of single-choice questions.

    Returns:
        The answers.
    """
    questions = tuple(questions)
    position_of = {key: position for position, key in enumerate(questions)}
    query = select(Answer.member_id, Answer.question_key, cast(Answer.value, Text)).where(
        Answer.question_key.in_(list(questions))
    )
    session.flush()
    # Each valid answer as (member, question, code of its value in the order first seen):
    # the codes are renumbered below as the answers' dicts would number them.
    seen: list[dict[str, int]] = [{} for _ in questions]
    decoded = JsonTexts()
    members: list[int] = []
    positions: list[int] = []
    first_codes: list[int] = []
    rows = session.connection().execute(
        query.order_by(Answer.answered_at, Answer.id).execution_options(yield_per=_STREAM_ROWS)
    )
    for member_id, key, text in rows:
        value = decoded(text)
        if isinstance(value, str) and value:
            position = position_of[key]
            members.append(member_id)
            positions.append(position)
            first_codes.append(seen[position].setdefault(value, len(seen[position])))
    q = len(questions)
    member_array = np.array(members, dtype=np.int64)
    position_array = np.array(positions, dtype=np.int64)
    code_array = np.array(first_codes, dtype=np.int64)
    member_ids, first_answer, row_of = np.unique(
        member_array, return_index=True, return_inverse=True
    )
    cells = row_of.ravel() * q + position_array
    # The latest answer of each member to each question: the last of its cell, in answer order.
    _, last_from_end = np.unique(cells[::-1], return_index=True)
    latest = cells.size - 1 - last_from_end
    codes = np.full((member_ids.size, q), -1, dtype=np.int64)
    codes.reshape(-1)[cells[latest]] = code_array[latest]
    # Values numbered as a walk over the members (in the order of their first answer), then
    # the questions, meets them.
    walk = codes[np.argsort(first_answer, kind="stable")]
    values: list[dict[str, int]] = []
    for position in range(q):
        column = walk[:, position]
        column = column[column >= 0]
        met, first = np.unique(column, return_index=True)
        order = met[np.argsort(first, kind="stable")]
        renumber = np.full(len(seen[position]) + 1, -1, dtype=np.int64)
        renumber[order] = np.arange(order.size)
        codes[:, position] = renumber[codes[:, position]]  # -1 reads the last entry: -1
        value_of = {code: value for value, code in seen[position].items()}
        values.append({value_of[int(code)]: index for index, code in enumerate(order)})
    narrow = np.int16 if all(len(found) < 2**15 for found in values) else np.int32
    return ChoiceAnswers(questions, member_ids, codes.astype(narrow), tuple(values))


def _fit_groups(
    answers: ChoiceAnswers,
    members: np.ndarray,
    columns: np.ndarray,
    recency: np.ndarray,
    n_items: int,
) -> GroupPopularity | None:
    """Popularity within answer groups, from recency-weighted engagements."""
    if not answers.questions or members.size == 0 or n_items == 0:
        return None
    unique, rows = np.unique(members, return_inverse=True)
    return GroupPopularity().fit(answers.of(unique), rows.ravel(), columns, recency, n_items)


@dataclass(frozen=True)
class _Learned:
    """What a run learns that depends on neither its time nor the segments: kept across runs.

    The library (items, vectors) and the set of engagements up to the run's time (the latest
    time of each member-item pair), with what is learned from that set alone: co-engagement
    and EASE. A later run whose library and engagements are the same (same fingerprint)
    reuses it; recency weights, popularity and availability are computed again at its time.
    """

    items: list[ItemInfo]
    vectors: np.ndarray
    members: np.ndarray
    columns: np.ndarray
    times: np.ndarray
    co_engagement: sp.csr_matrix
    collaborative: EASE | None


def _library_fingerprint(session: Session) -> tuple[Any, ...]:
    """Changes whenever an item is added, removed or edited."""
    count, largest, latest = session.execute(
        select(
            func.count(ContentItem.id), func.max(ContentItem.id), func.max(ContentItem.updated_at)
        )
    ).one()
    return int(count or 0), int(largest or 0), str(latest)


def _engagement_fingerprint(session: Session, now: dt.datetime) -> tuple[int, int, int]:
    """Changes whenever an engagement up to ``now`` is added or deleted (ids only grow).

    It counts every event of a consuming type up to ``now``, with an item or not: a superset
    of the engagements (one without an item only costs learning again), which the index on
    type and time answers alone, where testing ``content_key`` reads each event's row (ten
    times as long).
    """
    count, largest, total = session.execute(
        select(
            func.count(ActivityEvent.id), func.max(ActivityEvent.id), func.sum(ActivityEvent.id)
        ).where(
            ActivityEvent.type.in_(CONSUMING_EVENT_TYPES),
            ActivityEvent.occurred_at <= now,
        )
    ).one()
    return int(count or 0), int(largest or 0), int(total or 0)


def _answers_fingerprint(session: Session, questions: Sequence[str]) -> tuple[Any, ...]:
    """Changes whenever an answer to one of ``questions`` is added, deleted or edited."""
    count, largest, total, latest = session.execute(
        select(
            func.count(Answer.id),
            func.max(Answer.id),
            func.sum(Answer.id),
            func.max(Answer.answered_at),
        ).where(Answer.question_key.in_(list(questions)))
    ).one()
    return int(count or 0), int(largest or 0), int(total or 0), str(latest)


def _save_learned(path: Path, learned: _Learned) -> None:
    """Write ``learned`` to ``path`` (``.npz``, no pickle), atomically."""
    items = [
        {
            "id": item.id,
            "key": item.key,
            "title": item.title,
            "kind": item.kind,
            "language": item.language,
            "published_at": _iso(item.published_at),
            "event_start": _iso(item.event_start),
            "expires_at": _iso(item.expires_at),
        }
        for item in learned.items
    ]
    co = learned.co_engagement.tocsr()
    arrays: dict[str, np.ndarray] = {
        "items": np.array(json.dumps(items)),
        "vectors": learned.vectors,
        "members": learned.members,
        "columns": learned.columns,
        "times": learned.times,
        "co_data": co.data,
        "co_indices": co.indices,
        "co_indptr": co.indptr,
        "co_shape": np.array(co.shape, dtype=np.int64),
    }
    model = learned.collaborative
    if model is not None:
        arrays.update(
            ease_items=model.items_,
            ease_weights=model.weights_,
            ease_params=np.array([model.l2, model.max_items, model.n_items_], dtype=np.float64),
        )
    _save_arrays(path, arrays, _STATE_FILE_PREFIX)


def _save_arrays(path: Path, arrays: dict[str, np.ndarray], prefix: str) -> None:
    """Write ``arrays`` to ``path`` atomically; keep the last few files named ``prefix*``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **arrays)  # type: ignore[arg-type]  # numpy types kwds as its options
    os.replace(partial, path)
    kept = sorted(path.parent.glob(f"{prefix}*.npz"), key=lambda f: f.stat().st_mtime)
    for old in kept[:-_CACHED_RUNS]:
        if old != path:
            old.unlink(missing_ok=True)


def _state_path(state_dir: Path, prefix: str, key: Hashable) -> Path:
    """The file of ``state_dir`` that holds what was learned under ``key``."""
    digest = hashlib.sha256(repr(key).encode("utf-8")).hexdigest()[:32]
    return state_dir / f"{prefix}{digest}.npz"


def _save_answers(path: Path, answers: ChoiceAnswers) -> None:
    """Write ``answers`` to ``path`` (``.npz``, no pickle), atomically."""
    arrays = {
        "questions": np.array(json.dumps(list(answers.questions))),
        "values": np.array(json.dumps([dict(values) for values in answers.values])),
        "member_ids": answers.member_ids,
        "codes": answers.codes,
    }
    _save_arrays(path, arrays, _ANSWERS_FILE_PREFIX)


def _read_answers(path: Path, questions: tuple[str, ...]) -> ChoiceAnswers | None:
    """What :func:`_save_answers` wrote to ``path``; None when absent, unreadable or other."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if tuple(json.loads(str(stored["questions"]))) != questions:
                return None
            values = tuple(
                {str(value): int(code) for value, code in found.items()}
                for found in json.loads(str(stored["values"]))
            )
            return ChoiceAnswers(questions, stored["member_ids"], stored["codes"], values)
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        return None


def _answers_or_read(
    session: Session, questions: tuple[str, ...], key: Hashable, state_dir: Path | None
) -> ChoiceAnswers:
    """The choice answers: read from ``state_dir`` when a run stored them under ``key``."""
    if state_dir is None:
        return load_choice_answers(session, questions)
    path = _state_path(state_dir, _ANSWERS_FILE_PREFIX, key)
    answers = _read_answers(path, questions) if path.is_file() else None
    if answers is None:
        answers = load_choice_answers(session, questions)
        with contextlib.suppress(OSError):  # a read-only or full disk costs the next run only
            _save_answers(path, answers)
    return answers


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _moment(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _read_learned(path: Path) -> _Learned | None:
    """What :func:`_save_learned` wrote to ``path``; None when absent or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            items = [
                ItemInfo(
                    id=int(item["id"]),
                    key=item["key"],
                    title=item["title"],
                    kind=item["kind"],
                    language=item["language"],
                    published_at=_moment(item["published_at"]),
                    event_start=_moment(item["event_start"]),
                    expires_at=_moment(item["expires_at"]),
                )
                for item in json.loads(str(stored["items"]))
            ]
            shape = tuple(int(size) for size in stored["co_shape"])
            co_engagement = sp.csr_matrix(
                (stored["co_data"], stored["co_indices"], stored["co_indptr"]), shape=shape
            )
            collaborative = None
            if "ease_weights" in stored:
                l2, max_items, n_items = stored["ease_params"].tolist()
                collaborative = EASE(l2=l2, max_items=int(max_items))
                collaborative.items_ = stored["ease_items"]
                collaborative.weights_ = stored["ease_weights"]
                collaborative.n_items_ = int(n_items)
            return _Learned(
                items=items,
                vectors=stored["vectors"],
                members=stored["members"],
                columns=stored["columns"],
                times=stored["times"],
                co_engagement=co_engagement,
                collaborative=collaborative,
            )
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _learn_or_read(
    session: Session,
    embedder: Embedder,
    now: dt.datetime,
    key: Hashable,
    state_dir: Path | None,
) -> _Learned:
    """The learned state: read from ``state_dir`` when a run stored it under ``key``."""
    if state_dir is None:
        return _learn(session, embedder, now)
    path = _state_path(state_dir, _STATE_FILE_PREFIX, key)
    learned = _read_learned(path) if path.is_file() else None
    if learned is None:
        learned = _learn(session, embedder, now)
        # A read-only or full disk only costs the next run its time.
        with contextlib.suppress(OSError):
            _save_learned(path, learned)
    return learned


def _learn(session: Session, embedder: Embedder, now: dt.datetime) -> _Learned:
    rows, vectors = load_library_vectors(session, embedder)
    items = [
        ItemInfo(
            id=item_id,
            key=key,
            title=title,
            kind=kind,
            language=language_code(language),
            published_at=published_at,
            event_start=event_start,
            expires_at=expires_at,
        )
        for item_id, key, title, kind, language, published_at, event_start, expires_at in rows
    ]
    column_of = {item.key: column for column, item in enumerate(items)}
    members, columns, times = _engagements(session, column_of, now)
    return _Learned(
        items=items,
        vectors=vectors,
        members=members,
        columns=columns,
        times=times,
        co_engagement=learn_co_engagement(members, columns, len(items)),
        collaborative=_fit_collaborative(members, columns, len(items)),
    )


_learned: OrderedDict[Hashable, _Learned] = OrderedDict()
_answers: OrderedDict[Hashable, ChoiceAnswers] = OrderedDict()
_learned_lock = threading.Lock()


def _remembered(cache: OrderedDict[Hashable, Any], key: Hashable, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made when missing; the cache keeps the last ``_CACHED_RUNS`` keys."""
    with _learned_lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = make()
    with _learned_lock:
        cache[key] = value
        while len(cache) > _CACHED_RUNS:
            cache.popitem(last=False)
    return value


def build_run_state(
    session: Session,
    embedder: Embedder,
    now: dt.datetime,
    weights: RankingWeights,
    choice_questions: Sequence[str] = (),
    state_dir: Path | None = None,
) -> RunState:
    """Load the library; learn co-engagement, EASE and popularity from activity up to ``now``.

    What depends only on the library and on the engagements up to ``now`` (the items and their
    vectors, co-engagement, EASE), and the answers to the choice questions, are kept in memory
    for the next runs, keyed by a fingerprint of what they were learned from (the library's
    items and their latest edit; the count, largest and sum of the engagement and answer
    ids): a nightly in which no engagement, item or choice answer changed reuses them, and the
    result is the same as learning them again. Recency weights, popularity per segment and
    within answer groups, availability and freshness are computed at ``now`` every time.

    Args:
        session: The database session.
        embedder: The embedding model (items lacking an embedding are embedded, through the
            cache; the caller commits).
        now: The time the run ranks for: later activity is ignored.
        weights: The ranking weights (half-lives, whether popularity decays).
        choice_questions: Keys of the single-choice questions whose answers group members.
        state_dir: A folder where what is learned from the library and the engagements, and
            the choice answers, are also stored (one ``.npz`` file per fingerprint, the last two
            of each kept), for the runs of later processes; none keeps them in memory only.

    Returns:
        The run's shared state.
    """
    # A database emptied and filled again (tests do) may repeat ids: its first member's
    # insertion time tells it apart.
    generation = session.scalar(select(func.min(Member.created_at)))
    database = (str(session.get_bind().engine.url), str(generation))
    learned_key = (
        database,
        embedder.name,
        _library_fingerprint(session),
        _engagement_fingerprint(session, now),
    )
    learned: _Learned = _remembered(
        _learned,
        learned_key,
        lambda: _learn_or_read(session, embedder, now, learned_key, state_dir),
    )
    items, vectors = learned.items, learned.vectors
    members, columns = learned.members, learned.columns
    recency = (
        _recency(learned.times, now, weights.interest_half_life_days)
        if weights.decay_popularity
        else np.ones(learned.times.shape, dtype=np.float64)
    )
    segmentation_run = latest_segmentation_run(session)
    popularity, segment_rows = _segment_popularity(
        session, segmentation_run, members, columns, recency, len(items)
    )
    questions = tuple(choice_questions)
    answers: ChoiceAnswers | None = None
    groups = None
    if questions and members.size and items:
        answers_key = (database, questions, _answers_fingerprint(session, questions))
        answers = _remembered(
            _answers,
            answers_key,
            lambda: _answers_or_read(session, questions, answers_key, state_dir),
        )
        groups = _fit_groups(answers, members, columns, recency, len(items))
    available = item_available(items, now)
    languages = np.array([item.language for item in items], dtype=object)
    centres: dict[str, np.ndarray] = {}
    for language in sorted(set(languages)):
        same = languages == language
        pool = same & available if (same & available).any() else same
        centres[str(language)] = vectors[pool].mean(axis=0)
    return RunState(
        now=now,
        items=items,
        vectors=vectors,
        available=available,
        freshness=item_freshness(items, now, weights.freshness_half_life_days),
        co_engagement=learned.co_engagement,
        popularity=popularity,
        segment_rows=segment_rows,
        centres=centres,
        collaborative=learned.collaborative,
        segmentation_run=segmentation_run,
        choice_questions=questions,
        choice_answers=answers,
        groups=groups,
    )


_states: OrderedDict[Hashable, RunState] = OrderedDict()
_states_lock = threading.Lock()


def load_run_state(
    session: Session,
    embedder: Embedder,
    now: dt.datetime,
    weights: RankingWeights,
    run_id: int | None,
    choice_questions: Sequence[str] = (),
    state_dir: Path | None = None,
) -> RunState:
    """The run's shared state: built on the run's first chunk, then reused by its next ones.

    The state is kept in memory for the last few runs, keyed by database, run (id and creation
    time, so a new database reusing an id is a new run), model, weights and ``now``. Without a
    ``run_id`` it is built afresh.

    Args:
        session: The database session.
        embedder: The embedding model.
        now: The time the run ranks for.
        weights: The ranking weights.
        run_id: The match run.
        choice_questions: Keys of the single-choice questions whose answers group members.
        state_dir: Where what is learned is also stored for later processes
            (:func:`build_run_state`); none keeps it in memory only.

    Returns:
        The run's shared state.
    """
    if run_id is None:
        return build_run_state(session, embedder, now, weights, choice_questions, state_dir)
    created = session.scalar(select(MatchRun.created_at).where(MatchRun.id == run_id))
    bind = session.get_bind()
    questions = tuple(choice_questions)
    key = (str(bind.engine.url), run_id, created, embedder.name, weights, now, questions)
    with _states_lock:
        state = _states.get(key)
        if state is None:
            state = build_run_state(session, embedder, now, weights, questions, state_dir)
            _states[key] = state
            while len(_states) > _CACHED_RUNS:
                _states.popitem(last=False)
        else:
            _states.move_to_end(key)
        return state


def forget_run_states() -> None:
    """Forget every run state and learned state kept in memory, as a new process starts.

    What a run stored in its ``state_dir`` stays.
    """
    with _states_lock:
        _states.clear()
    with _learned_lock:
        _learned.clear()
        _answers.clear()
