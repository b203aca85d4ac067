"""Build and store member profiles: raw features, interest vector and lifecycle stage.

Members are profiled in chunks of ids with a few bulk queries per chunk (members, answers,
activity aggregated by the database). A member's features depend on that member only, so chunks
can run independently (and in parallel, on separate sessions). Free texts go through the
embedding cache: a re-run embeds only texts never seen before.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Text, case, cast, func, insert, select, update
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.embedding import Embedder, embed_texts_cached, start_embedding_cached
from nurture.profiling.features import activity_features, answer_features
from nurture.profiling.layout import (
    ACTIVITY_WINDOWS,
    FeatureLayout,
    QuestionnaireLike,
    english_label,
)
from nurture.profiling.lifecycle import ActivitySummary, lifecycle_stage
from nurture.storage import among, plain_connection
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    LifecycleStage,
    Member,
    MemberProfile,
    table_of,
)
from nurture.storage.stored_json import JsonTexts

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MemberFacts",
    "PlannedProfile",
    "ProfileSummary",
    "build_profiles",
    "every_profile_has_layout",
    "interest_question_keys",
    "lifecycle_stages",
    "load_activity_summaries",
    "plan_profiles",
]

DEFAULT_CHUNK_SIZE = 500
"""Members per bulk query."""


@dataclass(frozen=True)
class ProfileSummary:
    """What a profiling run did.

    Attributes:
        profiled: Members whose profile was written.
        texts_embedded: Texts sent to the embedding model (cache misses).
        lifecycle: Count of members per lifecycle stage.
        feature_names_hash: Hash of the feature layout used.
        n_features: Width of the feature vectors.
    """

    profiled: int
    texts_embedded: int
    lifecycle: dict[str, int] = field(default_factory=dict)
    feature_names_hash: str = ""
    n_features: int = 0


class _CountingEmbedder:
    """Wraps an embedder to count the texts actually embedded (the cache misses)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.count = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.count += len(texts)
        return self.inner.embed(texts)


def interest_question_keys(questionnaire: QuestionnaireLike) -> list[str]:
    """The questions whose chosen options' labels feed the interest vector.

    These are the multiple-choice profile questions (goals, formats): they say what a member wants,
    where single choices (role, kind of community) say who they are.

    Args:
        questionnaire: The questionnaire.

    Returns:
        Question keys, in questionnaire order.
    """
    return [
        q.key
        for q in questionnaire.questions
        if getattr(q, "profile", True) and q.kind == "multiple_choice"
    ]


def load_activity_summaries(
    session: Session, ids: Sequence[int], now: dt.datetime
) -> dict[int, ActivitySummary]:
    """Each member's activity up to ``now``, aggregated by the database in one query.

    Args:
        session: Database session.
        ids: Members to summarise (keep it to a chunk: they go in an ``IN`` list).
        now: End of the activity windows (timezone-aware); later events are left out.

    Returns:
        ``{member id: summary}``; members without any activity are left out.
    """
    windows = {
        days: func.sum(
            case((ActivityEvent.occurred_at > now - dt.timedelta(days=days), 1), else_=0)
        )
        for days in ACTIVITY_WINDOWS
    }
    rows = plain_connection(session).execute(
        select(
            ActivityEvent.member_id,
            ActivityEvent.type,
            func.count().label("total"),
            func.max(ActivityEvent.occurred_at).label("last_at"),
            *(expr.label(f"w{days}") for days, expr in windows.items()),
        )
        .where(among(session, ActivityEvent.member_id, ids), ActivityEvent.occurred_at <= now)
        .group_by(ActivityEvent.member_id, ActivityEvent.type)
    )
    summaries: dict[int, ActivitySummary] = {}
    for member_id, event_type, total, last_at, *counts in rows:
        if isinstance(last_at, str):  # a database that loses the column type on max()
            last_at = dt.datetime.fromisoformat(last_at)
        if last_at is not None and last_at.tzinfo is None:
            last_at = last_at.replace(tzinfo=dt.UTC)
        summary = summaries.get(member_id)
        if summary is None:
            summary = summaries[member_id] = ActivitySummary()
        summary.add(
            event_type,
            last_at=last_at,
            total=int(total),
            windows={
                days: int(count or 0) for days, count in zip(ACTIVITY_WINDOWS, counts, strict=True)
            },
        )
    return summaries


def _label_vectors(
    session: Session,
    embedder: Embedder,
    questionnaire: QuestionnaireLike,
    keys: Collection[str],
) -> dict[tuple[str, str], np.ndarray]:
    pairs: list[tuple[str, str]] = []
    texts: list[str] = []
    for question in questionnaire.questions:
        if question.key not in keys:
            continue
        for option in question.options:
            pairs.append((question.key, option.key))
            texts.append(english_label(option.labels, option.key))
    if not texts:
        return {}
    vectors = embed_texts_cached(session, embedder, texts)
    return dict(zip(pairs, vectors, strict=True))


def _unit(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    if norm == 0.0 or not np.isfinite(norm):
        return None
    return (vector / norm).astype(np.float32)


@dataclass(frozen=True)
class MemberFacts:
    """What profiling reads of one member, as plain data.

    Attributes:
        joined_at: When the member joined.
        answers: ``{question key: answer}`` of the profile questions.
        activity: The member's activity up to the time of the profiling.
        text_vectors: ``{free-text question key: embedding}`` of the non-empty free texts.
    """

    joined_at: dt.datetime
    answers: dict[str, Any] = field(default_factory=dict)
    activity: ActivitySummary = field(default_factory=ActivitySummary)
    text_vectors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedProfile:
    """A member's profile as profiling computes it.

    Attributes:
        features: The raw feature vector (see :mod:`nurture.profiling.layout`).
        interest: The unit interest vector, or ``None`` when there is nothing to say it.
        lifecycle_stage: The lifecycle stage.
    """

    features: np.ndarray
    interest: np.ndarray | None
    lifecycle_stage: LifecycleStage


def plan_profiles(
    facts: Mapping[int, MemberFacts],
    *,
    layout: FeatureLayout,
    label_vectors: Mapping[tuple[str, str], np.ndarray],
    interest_keys: Sequence[str],
    now: dt.datetime,
) -> dict[int, PlannedProfile]:
    """Each member's profile, computed from plain data.

    Args:
        facts: ``{member id: what profiling reads of them}``.
        layout: The feature layout.
        label_vectors: ``{(question key, option key): embedding of its English label}`` of the
            interest questions.
        interest_keys: The questions whose chosen options feed the interest vector
            (:func:`interest_question_keys`).
        now: The time of the computation (timezone-aware): activity windows end here.

    Returns:
        ``{member id: profile}``, in the order of ``facts``.
    """
    return {
        member_id: _DraftProfile.of(member, layout, label_vectors, interest_keys, now).finish(
            member.text_vectors, layout
        )
        for member_id, member in facts.items()
    }


@dataclass(frozen=True)
class _DraftProfile:
    """A member's profile but for the vectors of their free texts."""

    answer_features: np.ndarray
    activity_features: np.ndarray
    chosen_labels: list[np.ndarray]
    lifecycle_stage: LifecycleStage

    @classmethod
    def of(
        cls,
        member: MemberFacts,
        layout: FeatureLayout,
        label_vectors: Mapping[tuple[str, str], np.ndarray],
        interest_keys: Sequence[str],
        now: dt.datetime,
    ) -> _DraftProfile:
        """The draft of ``member``'s profile (``member.text_vectors`` is not read)."""
        chosen_labels: list[np.ndarray] = []
        for key in interest_keys:
            value = member.answers.get(key)
            chosen = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            chosen_labels.extend(
                label_vectors[(key, option)] for option in chosen if (key, option) in label_vectors
            )
        return cls(
            answer_features=answer_features(layout, member.answers),
            activity_features=activity_features(member.activity, member.joined_at, now),
            chosen_labels=chosen_labels,
            lifecycle_stage=lifecycle_stage(member.joined_at, member.activity, now),
        )

    def finish(
        self, text_vectors: Mapping[str, np.ndarray], layout: FeatureLayout
    ) -> PlannedProfile:
        """The profile, with ``{free-text question key: embedding}`` of the member's texts."""
        texts = [
            text_vectors.get(key, np.zeros(layout.text_dim, dtype=np.float32))
            for key in layout.text_columns
        ]
        features = np.concatenate([self.answer_features, *texts, self.activity_features])
        # The interest: the unit mean of the texts' vectors and the chosen options' labels.
        vectors = [vector for vector in texts if np.any(vector)] + self.chosen_labels
        return PlannedProfile(
            features=features.astype(np.float32),
            interest=_unit(np.mean(np.stack(vectors), axis=0)) if vectors else None,
            lifecycle_stage=self.lifecycle_stage,
        )


def _read_member_facts(
    session: Session,
    embedder: Embedder,
    layout: FeatureLayout,
    chunk: Sequence[int],
    now: dt.datetime,
    background: Executor,
) -> tuple[dict[int, MemberFacts], Callable[[], dict[int, dict[str, np.ndarray]]]]:
    """What profiling reads of a chunk of members, the vectors of their free texts to come.

    Ids without a member are left out. The free texts are being embedded in ``background``: the
    function returned waits for their vectors, ``{member id: {question key: vector}}``.
    """
    connection = plain_connection(session)
    joined: dict[int, dt.datetime] = dict(
        connection.execute(
            select(Member.id, Member.joined_at).where(among(session, Member.id, chunk))
        )
        .tuples()
        .all()
    )
    answer_keys = [*layout.choice_columns, *layout.scale_columns, *layout.text_columns]
    answers: dict[int, dict[str, Any]] = {}
    if answer_keys:
        decoded = JsonTexts()
        # Ordered, so that free texts reach the embedder in the same order on every database.
        rows = connection.execute(
            select(Answer.member_id, Answer.question_key, cast(Answer.value, Text))
            .where(among(session, Answer.member_id, chunk), Answer.question_key.in_(answer_keys))
            .order_by(Answer.member_id)
        )
        for member_id, key, value in rows:
            answers.setdefault(member_id, {})[key] = decoded(value)
    text_vectors = _start_embedding_free_texts(session, embedder, layout, answers, background)
    activity = load_activity_summaries(session, chunk, now)
    facts = {
        member_id: MemberFacts(
            joined_at=joined[member_id],
            answers=answers.get(member_id, {}),
            activity=activity.get(member_id, ActivitySummary()),
        )
        for member_id in chunk
        if member_id in joined
    }
    return facts, text_vectors


def _write_profiles(
    session: Session,
    profiles: Mapping[int, PlannedProfile],
    layout_hash: str,
    now: dt.datetime,
) -> None:
    """Store (replace) the profiles: one bulk statement for those stored, one for the new."""
    stored = set(
        session.scalars(
            select(MemberProfile.member_id).where(among(session, MemberProfile.member_id, profiles))
        )
    )
    rows: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for member_id, planned in profiles.items():
        rows[member_id in stored].append(
            {
                "member_id": member_id,
                "features": planned.features,
                "interest": planned.interest,
                "lifecycle_stage": planned.lifecycle_stage,
                "feature_names_hash": layout_hash,
                "computed_at": now,
            }
        )
    if rows[True]:  # an ORM bulk update: the profiles the session holds take the new values
        session.execute(update(MemberProfile), rows[True])
    if rows[False]:  # no profile of these is stored, so none is in the session: Core's insert
        plain_connection(session).execute(insert(table_of(MemberProfile)), rows[False])


def build_profiles(
    session: Session,
    embedder: Embedder,
    questionnaire: QuestionnaireLike,
    now: dt.datetime,
    member_ids: Sequence[int] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ProfileSummary:
    """Compute and store (replace) the profiles of ``member_ids``, or of every member.

    For each member: the raw feature vector (see :mod:`nurture.profiling.layout`), the interest
    vector (unit mean of the free-text embeddings and of the English labels of the options chosen
    in :func:`interest_question_keys`; ``None`` when there is neither) and the lifecycle stage
    (see :mod:`nurture.profiling.lifecycle`). Ids without a member are skipped. Each chunk is
    read, computed (as :func:`plan_profiles` does) and written; its new free texts are embedded
    in a second thread meanwhile, while this one reads the chunk's activity and computes all
    but the texts' part of each profile. The caller commits.

    Args:
        session: Database session.
        embedder: The sentence embedder (its cache entries are added to the session).
        questionnaire: The questionnaire defining the answer features.
        now: The time of the computation (timezone-aware): activity windows end here.
        member_ids: Members to profile; all members when ``None``.
        chunk_size: Members per bulk query.

    Returns:
        Counts of what was done.
    """
    counting = _CountingEmbedder(embedder)
    layout = FeatureLayout.from_questionnaire(questionnaire, embedder.dim)
    interest_keys = interest_question_keys(questionnaire)
    label_vectors = _label_vectors(session, counting, questionnaire, interest_keys)
    if member_ids is None:
        ids: Sequence[int] = session.scalars(select(Member.id).order_by(Member.id)).all()
    else:
        ids = sorted(set(member_ids))
    stages: Counter[str] = Counter()
    for chunk in chunked(ids, chunk_size):
        with ThreadPoolExecutor(1, thread_name_prefix="nurture-embed") as background:
            # The chunk's new free texts are embedded (on every core) while this thread reads
            # the members' activity and computes the rest of their profiles.
            facts, text_vectors = _read_member_facts(
                session, counting, layout, chunk, now, background
            )
            drafts = {
                member_id: _DraftProfile.of(member, layout, label_vectors, interest_keys, now)
                for member_id, member in facts.items()
            }
            vectors = text_vectors()
        profiles = {
            member_id: draft.finish(vectors.get(member_id, {}), layout)
            for member_id, draft in drafts.items()
        }
        _write_profiles(session, profiles, layout.hash, now)
        stages.update(profile.lifecycle_stage for profile in profiles.values())
    return ProfileSummary(
        profiled=stages.total(),
        texts_embedded=counting.count,
        lifecycle=dict(sorted(stages.items())),
        feature_names_hash=layout.hash,
        n_features=layout.n_features,
    )


def _start_embedding_free_texts(
    session: Session,
    embedder: Embedder,
    layout: FeatureLayout,
    answers: dict[int, dict[str, Any]],
    background: Executor,
) -> Callable[[], dict[int, dict[str, np.ndarray]]]:
    """Start embedding the non-empty free-text answers in ``background``.

    The function returned waits for their vectors, ``{member id: {question key: vector}}``.
    """
    keys: list[tuple[int, str]] = []
    texts: list[str] = []
    for member_id, mine in answers.items():
        for key in layout.text_columns:
            value = mine.get(key)
            if isinstance(value, str) and value.strip():
                keys.append((member_id, key))
                texts.append(value.strip())
    embedding = start_embedding_cached(session, embedder, texts, background)

    def vectors() -> dict[int, dict[str, np.ndarray]]:
        by_member: dict[int, dict[str, np.ndarray]] = {}
        for (member_id, key), vector in zip(keys, embedding.result(), strict=True):
            by_member.setdefault(member_id, {})[key] = vector
        return by_member

    return vectors


def every_profile_has_layout(session: Session, layout_hash: str) -> bool:
    """Whether no stored profile has another feature layout than ``layout_hash``.

    Looked up at both ends of the layout's index (its least and greatest value), where
    ``!=`` reads every row of the wide profiles table.
    """
    lowest, highest = session.execute(
        select(
            func.min(MemberProfile.feature_names_hash), func.max(MemberProfile.feature_names_hash)
        )
    ).one()
    return lowest in (None, layout_hash) and highest in (None, layout_hash)


def lifecycle_stages(
    session: Session, member_ids: Sequence[int] | None = None
) -> dict[int, LifecycleStage]:
    """Each profiled member's lifecycle stage, as of their last profiling.

    Journeys branch or trigger on it; the rules are in :mod:`nurture.profiling.lifecycle` and
    ``docs/segments.md``.

    Args:
        session: Database session.
        member_ids: Members wanted; every profiled member when ``None``.

    Returns:
        ``{member id: stage}``; members never profiled are left out.
    """
    query = select(MemberProfile.member_id, MemberProfile.lifecycle_stage)
    if member_ids is None:
        return dict(session.execute(query).tuples().all())
    ids = sorted(set(member_ids))
    stages: dict[int, LifecycleStage] = {}
    for chunk in chunked(ids, DEFAULT_CHUNK_SIZE):
        rows = session.execute(query.where(MemberProfile.member_id.in_(chunk)))
        stages.update(rows.tuples().all())
    return stages
