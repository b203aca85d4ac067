"""Segment every profiled member, keep segment identities across runs, record the run.

A run fits :class:`~nurture.segmentation.model.SegmentModel` on the stored profiles (starting
from the previous run's centroids when the feature layout is the same), labels each cluster and
matches the clusters to the previous run's active segments so that a segment keeps its id, its
key and its label. In a large community it holds a sample only: the clusters are fitted and
labelled on it, and every member's features are read again a chunk at a time to place them
(memory follows the sample and the chunk, not the community). Matching:

- same feature layout: Hungarian assignment on the distance between the previous centroids
  (stored as mean raw features, scaled as this run scales) and this run's, pairs further apart
  than the median distance between this run's centroids left unmatched;
- another layout (a question added, another embedding model): Hungarian assignment on the
  members the segments share (Jaccard index of at least 0.3).

A segment that persists keeps its label, automatic or edited (an edited label, flagged
``Segment.label_edited``, is never overwritten; the freshly computed one is kept in
``card["suggested_label"]``). A cluster no previous segment matches is a new segment; a previous
segment no cluster matches becomes inactive: *merged* when most of its members went to one
segment, *vanished* otherwise. The run writes a ``SegmentationRun``, the ``Segment`` rows and
this run's ``SegmentMembership`` rows (older ones stay as history), then updates each member's
effective segment (:mod:`nurture.segmentation.assignments`) and, when given, evaluates the rule
segments (:mod:`nurture.segmentation.rules`) into the same run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist
from sqlalchemy import Select, func, insert, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.profiling.layout import CHOICE_KINDS, FeatureLayout, QuestionnaireLike
from nurture.segmentation.assignments import (
    AssignmentChanges,
    update_cluster_assignments_in_chunks,
)
from nurture.segmentation.identity import match_by_shared, match_segments
from nurture.segmentation.labels import SegmentDescription, label_segments
from nurture.segmentation.model import CHUNK_ROWS, SegmentModel
from nurture.segmentation.rules import (
    RuleSegmentationSummary,
    SegmentRule,
    evaluate_rule_segments,
)
from nurture.storage import refresh_statistics
from nurture.storage.models import (
    Answer,
    Member,
    MemberProfile,
    Segment,
    SegmentAssignment,
    SegmentationRun,
    SegmentKind,
    SegmentMembership,
)

__all__ = [
    "DEFAULT_FIT_SIZE",
    "DEFAULT_MOVE_AFTER",
    "MERGE_SHARE",
    "ClusterMemberships",
    "PlannedSegment",
    "PreviousSegment",
    "SegmentationInputs",
    "SegmentationPlan",
    "SegmentationSummary",
    "current_segments",
    "load_segmentation_inputs",
    "plan_segmentation",
    "rename_segment",
    "segment_members",
]

DEFAULT_MOVE_AFTER = dt.timedelta(days=3)
"""How long a member's move to another cluster segment must hold before it counts."""

MERGE_SHARE = 0.5
"""A vanished segment is reported merged when at least this share of its members went to one
segment."""

MIN_OVERLAP = 0.3
"""Smallest Jaccard index of a match by shared members (when centroids cannot be compared)."""

CENTROID_SPACE = "raw_mean"
"""How ``Segment.centroid`` is stored (``SegmentationRun.params["centroids"]``): the mean raw
feature vector of the members; older runs stored centroids in their own scaled space."""

_KEY_NUMBER = re.compile(r"^seg-(\d+)$")
DEFAULT_FIT_SIZE = 50_000
"""Members the clusters are fitted on at most (a random sample); the others are assigned."""

_INSERT_BATCH = 5000
_PROFILES_CHANGED = "the member profiles changed while they were segmented: run it again"
_LABEL_BATCH = 1000
_IN_BATCH = 1000


@dataclass(frozen=True)
class SegmentationSummary:
    """What a segmentation run did.

    Attributes:
        run_id: The ``SegmentationRun`` written, or ``None`` when there was too little to
            cluster (rule segments may still have a run of their own: ``rules_run_id``).
        n_segments: Number of cluster segments.
        quality: Silhouette score on a sample (-1..1, higher is better), when defined.
        sizes: ``{segment key: members}`` of the cluster segments (this run's clusters).
        labels: ``{segment key: label}`` of the cluster segments.
        new: Keys of segments created by this run.
        vanished: Keys of previous segments no cluster matched and whose members scattered.
        merged: ``{key of a previous segment no cluster matched: key of the segment that took
            most of its members}``.
        n_members: Members segmented.
        skipped: Profiles left out because their feature layout differs from the majority's.
        algorithm: ``kmeans`` or ``minibatch_kmeans``.
        warm_started: Whether the clusters grew from the previous run's centroids.
        moved: Members whose effective segment changed this run (their move held long enough,
            or their segment is gone).
        pending: Members whose move to another segment waits to hold long enough.
        rule_sizes: ``{rule segment key: members}``.
        rule_labels: ``{rule segment key: label}``.
        rule_errors: ``{rule segment key: what failed}`` for rules that failed for some members.
    """

    run_id: int | None
    n_segments: int
    quality: float | None
    sizes: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    merged: dict[str, str] = field(default_factory=dict)
    n_members: int = 0
    skipped: int = 0
    algorithm: str = ""
    warm_started: bool = False
    moved: int = 0
    pending: int = 0
    rule_sizes: dict[str, int] = field(default_factory=dict)
    rule_labels: dict[str, str] = field(default_factory=dict)
    rule_errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PreviousSegment:
    """An active cluster segment before a run, as plain data.

    Attributes:
        id: The segment's id.
        key: Its key (``seg-3``).
        label: Its label.
        label_edited: Whether a marketer chose the label.
        centroid: Its stored centroid, if any.
        layout_hash: The feature layout of its last run.
        centroid_space: How its last run stored centroids (``CENTROID_SPACE`` today).
        members: Its members in its last run (ids; a sorted array when read from the database).
    """

    id: int
    key: str
    label: str
    label_edited: bool
    centroid: np.ndarray | None
    layout_hash: str | None
    centroid_space: str | None
    members: Collection[int]


@dataclass(frozen=True)
class SegmentationInputs:
    """What a segmentation run reads from the database.

    In a large community, only a sample's rows are held (``sampled``): every member's features
    are read again in chunks (``read_features``) to place them, so memory does not grow with
    the community's size beyond a few numbers per member.

    Attributes:
        layout_hash: The feature layout most profiles have (``None`` without profiles).
        member_ids: The members whose profile has that layout, in id order.
        features: Their raw feature vectors, one row per member, or one per sampled row.
        interests: The interest vectors of the described rows (``None`` for a member without
            one); every member's when ``described`` is ``None``.
        stages: The lifecycle stages of the described rows (every member's likewise).
        skipped: Profiles left out because their layout differs.
        previous: The active cluster segments before the run.
        answers: ``{member id: {question key: answer}}`` of the choice questions.
        texts: ``{member id: free text}``.
        languages: ``{member id: language}``.
        next_key_number: The number of the next new segment's key (``seg-<number>``).
        other_labels: Labels of the other active segments (rule segments).
        described: Rows of ``member_ids`` whose answers, texts, languages, interests and stages
            were read (a sample of a large community: segments are labelled and given their
            interest from it); ``None`` when every member's were.
        sampled: Rows of ``member_ids`` whose features ``features`` holds (the clusters are
            fitted on them); ``None`` when it holds every member's.
        read_features: Reads every member's features again, in chunks of
            :data:`~nurture.segmentation.model.CHUNK_ROWS` rows in ``member_ids`` order;
            required with ``sampled``.
    """

    layout_hash: str | None
    member_ids: Sequence[int] | np.ndarray
    features: np.ndarray
    interests: Sequence[np.ndarray | None]
    stages: Sequence[str]
    skipped: int = 0
    previous: list[PreviousSegment] = field(default_factory=list)
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)
    languages: dict[int, str] = field(default_factory=dict)
    next_key_number: int = 1
    other_labels: list[str] = field(default_factory=list)
    described: np.ndarray | None = None
    sampled: np.ndarray | None = None
    read_features: Callable[[], Iterable[np.ndarray]] | None = None


@dataclass(frozen=True)
class PlannedSegment:
    """A cluster segment as a run leaves it.

    Attributes:
        key: Its key.
        previous_id: The id of the segment it continues; ``None`` for a new segment.
        label: Its label.
        description: A sentence or two describing it.
        centroid: The mean raw feature vector of its members.
        interest: The normalised mean interest of its members, if any.
        size: Its members.
        card: Its card (``label_segments``'s, plus the suggested label, drift and whether the
            label was edited); the run id is added when written.
    """

    key: str
    previous_id: int | None
    label: str
    description: str
    centroid: np.ndarray
    interest: np.ndarray | None
    size: int
    card: dict[str, Any]


@dataclass(frozen=True)
class ClusterMemberships:
    """Every member's cluster in a run, as arrays: iterating gives ``(member id, key, distance)``.

    Attributes:
        member_ids: The members, in id order.
        keys: The segment key of each cluster index.
        clusters: Each member's cluster index.
        distances: Each member's distance to its cluster's centre (in the scaled space).
    """

    member_ids: np.ndarray
    keys: tuple[str, ...]
    clusters: np.ndarray
    distances: np.ndarray

    def __len__(self) -> int:
        return len(self.member_ids)

    def __iter__(self) -> Iterator[tuple[int, str, float]]:
        for start in range(0, len(self.member_ids), _INSERT_BATCH):
            yield from self.chunk(start, start + _INSERT_BATCH)

    def chunk(self, start: int, stop: int) -> list[tuple[int, str, float]]:
        """The memberships of rows ``start`` to ``stop``, as tuples."""
        return [
            (member_id, self.keys[cluster], distance)
            for member_id, cluster, distance in zip(
                self.member_ids[start:stop].tolist(),
                self.clusters[start:stop].tolist(),
                self.distances[start:stop].tolist(),
                strict=True,
            )
        ]


@dataclass(frozen=True)
class SegmentationPlan:
    """What a segmentation run decided, before anything is written.

    Attributes:
        algorithm: ``kmeans`` or ``minibatch_kmeans``.
        quality: Silhouette score, when defined.
        warm_started: Whether the clusters grew from the previous run's centroids.
        params: The run's parameters (``SegmentationRun.params``).
        segments: The cluster segments, largest first (new keys are numbered in this order).
        memberships: ``(member id, segment key, distance to its centre)`` of every member.
        deactivated: Ids of the previous segments no cluster matched.
        vanished: Keys of those whose members scattered.
        merged: ``{key of such a segment: key of the segment that took most of its members}``.
    """

    algorithm: str
    quality: float | None
    warm_started: bool
    params: dict[str, Any]
    segments: list[PlannedSegment]
    memberships: ClusterMemberships
    deactivated: list[int] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    merged: dict[str, str] = field(default_factory=dict)


# --- load -----------------------------------------------------------------------------------


def _majority_layout(session: Session) -> tuple[str | None, int]:
    """The feature layout most profiles have, and the profiles of other layouts."""
    counts = session.execute(
        select(MemberProfile.feature_names_hash, func.count()).group_by(
            MemberProfile.feature_names_hash
        )
    ).all()
    if not counts:
        return None, 0
    layout_hash, kept = max(counts, key=lambda row: (row[1], row[0]))
    return layout_hash, sum(int(count) for _, count in counts) - int(kept)


def _profile_ids(session: Session, layout_hash: str) -> np.ndarray:
    """The ids of the members whose profile has ``layout_hash``, in order (int64)."""
    ids = session.scalars(
        select(MemberProfile.member_id)
        .where(MemberProfile.feature_names_hash == layout_hash)
        .order_by(MemberProfile.member_id)
        .execution_options(yield_per=_INSERT_BATCH)
    )
    return np.fromiter(ids, dtype=np.int64)


def _load_profile_rows(
    session: Session, layout_hash: str, member_ids: Sequence[int] | None, n_rows: int
) -> tuple[np.ndarray, list[np.ndarray | None], list[str]]:
    """Features (one float32 matrix), interests and stages of these members, or everyone's.

    ``n_rows`` is how many rows to expect (``len(member_ids)``, or the number of profiles).
    """
    query = (
        select(
            MemberProfile.member_id,
            MemberProfile.features,
            MemberProfile.interest,
            MemberProfile.lifecycle_stage,
        )
        .where(MemberProfile.feature_names_hash == layout_hash)
        .order_by(MemberProfile.member_id)
    )
    interests: list[np.ndarray | None] = []
    stages: list[str] = []
    matrix: np.ndarray | None = None
    for _, features, interest, stage in _in_batches(
        session, query, MemberProfile.member_id, member_ids
    ):
        if matrix is None:
            matrix = np.empty((n_rows, len(features)), dtype=np.float32)
        if len(stages) == n_rows:
            raise RuntimeError(_PROFILES_CHANGED)
        matrix[len(stages)] = features
        interests.append(interest)
        stages.append(stage)
    if matrix is None:
        return np.zeros((0, 0), dtype=np.float32), [], []
    return matrix[: len(stages)], interests, stages


def _feature_reader(
    session: Session, layout_hash: str, member_ids: np.ndarray, n_features: int
) -> Callable[[], Iterator[np.ndarray]]:
    """Reads every member's features again, ``CHUNK_ROWS`` rows at a time, in id order."""

    def read() -> Iterator[np.ndarray]:
        rows = session.execute(
            select(MemberProfile.member_id, MemberProfile.features)
            .where(MemberProfile.feature_names_hash == layout_hash)
            .order_by(MemberProfile.member_id)
            .execution_options(yield_per=_INSERT_BATCH)
        ).tuples()
        # Rows are fetched a batch at a time into one chunk (no two chunks' rows held at once).
        chunk = np.empty((min(CHUNK_ROWS, len(member_ids)), n_features), dtype=np.float32)
        filled = start = 0
        for member_id, features in rows:
            if start + filled >= len(member_ids) or member_id != member_ids[start + filled]:
                raise RuntimeError(_PROFILES_CHANGED)
            chunk[filled] = features
            filled += 1
            if filled == len(chunk):
                yield chunk
                start += filled
                filled = 0
                chunk = np.empty(
                    (min(CHUNK_ROWS, len(member_ids) - start), n_features), dtype=np.float32
                )
        if start + filled != len(member_ids):
            raise RuntimeError(_PROFILES_CHANGED)

    return read


def _in_batches(
    session: Session, query: Select[Any], column: Any, member_ids: Sequence[int] | None
) -> Iterator[Any]:
    """The rows of ``query``, for every member or only ``member_ids`` (in ``IN`` batches)."""
    if member_ids is None:
        yield from session.execute(query.execution_options(yield_per=_INSERT_BATCH)).tuples()
        return
    for batch in chunked(list(member_ids), _LABEL_BATCH):
        yield from session.execute(query.where(column.in_(batch))).tuples()


def _load_answers(
    session: Session, questionnaire: QuestionnaireLike, member_ids: Sequence[int] | None = None
) -> tuple[dict[int, dict[str, Any]], dict[int, str]]:
    questions = [q for q in questionnaire.questions if getattr(q, "profile", True)]
    choice_keys = [q.key for q in questions if q.kind in CHOICE_KINDS]
    text_keys = [q.key for q in questions if q.kind == "free_text"]
    answers: dict[int, dict[str, Any]] = {}
    texts: dict[int, list[str]] = {}
    if choice_keys or text_keys:
        query = (
            select(Answer.member_id, Answer.question_key, Answer.value)
            .where(Answer.question_key.in_(choice_keys + text_keys))
            .order_by(Answer.member_id, Answer.question_key)
        )
        for member_id, key, value in _in_batches(session, query, Answer.member_id, member_ids):
            if key in text_keys:
                if isinstance(value, str) and value.strip():
                    texts.setdefault(member_id, []).append(value.strip())
            else:
                answers.setdefault(member_id, {})[key] = value
    return answers, {member_id: " ".join(parts) for member_id, parts in texts.items()}


def _load_languages(session: Session, member_ids: Sequence[int] | None = None) -> dict[int, str]:
    query = select(Member.id, Member.language)
    return dict(_in_batches(session, query, Member.id, member_ids))


def _sample_rows(size: int | None, n_rows: int, seed: int) -> np.ndarray | None:
    """``size`` rows of ``n_rows`` at random (seeded), in order; None (every row) if no more.

    The same draw as :class:`~nurture.segmentation.model.SegmentModel`'s ``fit_size`` sample:
    with the same seed and size, the rows read are the rows the clusters are fitted on.
    """
    if size is None or n_rows <= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_rows, size, replace=False))


def _load_previous_segments(session: Session) -> list[PreviousSegment]:
    """The active cluster segments, with their last run's layout and members."""
    segments = list(
        session.scalars(
            select(Segment)
            .where(Segment.kind == SegmentKind.CLUSTER, Segment.active.is_(True))
            .order_by(Segment.id)
        )
    )
    run_ids = {s.last_run_id for s in segments if s.last_run_id is not None}
    params = {
        run.id: run.params or {}
        for run in session.scalars(select(SegmentationRun).where(SegmentationRun.id.in_(run_ids)))
    }
    members: dict[int, np.ndarray] = {}
    for segment in segments:
        rows = session.scalars(
            select(SegmentMembership.member_id)
            .where(
                SegmentMembership.run_id == segment.last_run_id,
                SegmentMembership.segment_id == segment.id,
            )
            .execution_options(yield_per=_INSERT_BATCH)
        )
        members[segment.id] = np.unique(np.fromiter(rows, dtype=np.int64))
    return [
        PreviousSegment(
            id=segment.id,
            key=segment.key,
            label=segment.label,
            label_edited=bool(segment.label_edited),
            centroid=segment.centroid,
            layout_hash=_run_param(params, segment.last_run_id, "feature_names_hash"),
            centroid_space=_run_param(params, segment.last_run_id, "centroids"),
            members=members[segment.id],
        )
        for segment in segments
    ]


def _run_param(params: Mapping[int, Mapping[str, Any]], run_id: int | None, name: str) -> Any:
    return params.get(run_id, {}).get(name) if run_id is not None else None


def _next_key_number(session: Session) -> int:
    numbers = [
        int(match.group(1))
        for key in session.scalars(select(Segment.key).where(Segment.key.like("seg-%")))
        if (match := _KEY_NUMBER.match(key))
    ]
    return max(numbers, default=0) + 1


def load_segmentation_inputs(
    session: Session,
    questionnaire: QuestionnaireLike,
    *,
    label_size: int | None = None,
    seed: int = 42,
) -> SegmentationInputs:
    """Read what a segmentation run needs: profiles, answers, the segments before the run.

    Args:
        session: Database session.
        questionnaire: The questionnaire (which answers count).
        label_size: With more profiled members, the features, answers, texts, languages,
            interest vectors and stages of a random sample of this many only are read (the
            clusters are fitted on it when ``fit_size`` is the same size and the seed the
            same, and segments are labelled and given their interest from it), and every
            member's features are read again in chunks to place them (``read_features``):
            memory then grows with the sample, not the community; ``None`` reads every
            member's.
        seed: Random seed of the sample.

    Returns:
        The inputs; with fewer than two usable profiles, only the profiles are read.
    """
    layout_hash, skipped = _majority_layout(session)
    if layout_hash is None:
        return SegmentationInputs(None, [], np.zeros((0, 0), dtype=np.float32), [], [], skipped)
    member_ids = _profile_ids(session, layout_hash)
    described = _sample_rows(label_size, len(member_ids), seed)
    sample = None if described is None else member_ids[described].tolist()
    features, interests, stages = _load_profile_rows(
        session, layout_hash, sample, len(member_ids) if sample is None else len(sample)
    )
    inputs = SegmentationInputs(layout_hash, member_ids, features, interests, stages, skipped)
    if len(member_ids) < 2:
        return inputs
    answers, texts = _load_answers(session, questionnaire, sample)
    read_features = (
        None
        if described is None
        else _feature_reader(session, layout_hash, member_ids, features.shape[1])
    )
    return dataclasses.replace(
        inputs,
        described=described,
        sampled=described,
        read_features=read_features,
        previous=_load_previous_segments(session),
        answers=answers,
        texts=texts,
        languages=_load_languages(session, sample),
        next_key_number=_next_key_number(session),
        other_labels=list(
            session.scalars(
                select(Segment.label).where(
                    Segment.active.is_(True), Segment.kind != SegmentKind.CLUSTER
                )
            )
        ),
    )


# --- plan -----------------------------------------------------------------------------------


def _mean_interest(vectors: list[np.ndarray | None]) -> np.ndarray | None:
    usable = [v for v in vectors if v is not None and v.size and np.any(v)]
    if not usable:
        return None
    dims = Counter(v.shape[0] for v in usable).most_common(1)[0][0]
    mean = np.mean(np.stack([v for v in usable if v.shape[0] == dims]), axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm).astype(np.float32) if norm > 0 else None


def _description(description: SegmentDescription) -> str:
    card = description.card
    parts = [f"{card['size']} members ({card['share']:.0%})."]
    if card["distinctive"]:
        answers = ", ".join(
            f"{entry['label']} ({entry['share']:.0%} vs {entry['overall_share']:.0%})"
            for entry in card["distinctive"][:3]
        )
        parts.append(f"Distinctive answers: {answers}.")
    if card["top_terms"]:
        parts.append(f"They write about: {', '.join(card['top_terms'][:5])}.")
    return " ".join(parts)


def _previous_centroids(inputs: SegmentationInputs) -> np.ndarray | None:
    """The previous segments' centroids, when every one lives in this run's feature space."""
    n_features = inputs.features.shape[1]
    comparable = bool(inputs.previous) and all(
        segment.centroid is not None
        and segment.centroid.shape == (n_features,)
        and segment.layout_hash == inputs.layout_hash
        and segment.centroid_space == CENTROID_SPACE
        for segment in inputs.previous
    )
    if not comparable:
        return None
    centroids = [segment.centroid for segment in inputs.previous if segment.centroid is not None]
    return np.stack(centroids).astype(np.float64)


@dataclass(frozen=True)
class _Matching:
    """Which previous segment each cluster continues, and how far its centre moved."""

    matches: dict[int, int]
    """``{cluster index: index in the previous segments}``."""
    previous_scaled: np.ndarray | None
    """The previous centroids in this run's scaled space, when they compare."""


def _match_previous(
    inputs: SegmentationInputs,
    model: SegmentModel,
    placement: _Placement,
    previous_centroids: np.ndarray | None,
) -> _Matching:
    """Match this run's clusters to the previous segments (see the module docstring)."""
    centers = np.asarray(model.cluster_centers_, dtype=np.float64)
    k = model.n_segments_
    if previous_centroids is not None:
        previous_scaled = model.scale(previous_centroids)
        gate = float(np.median(pdist(centers))) if k >= 2 else None
        return _Matching(
            match_segments(previous_scaled, centers, max_distance=gate), previous_scaled
        )
    shared = np.zeros((k, len(inputs.previous)), dtype=np.int64)
    for col, segment in enumerate(inputs.previous):
        shared[:, col] = _clusters_of(placement, segment.members, k)
    return _Matching(
        match_by_shared(
            shared,
            np.bincount(placement.labels, minlength=k).tolist(),
            [len(_member_array(segment.members)) for segment in inputs.previous],
            min_jaccard=MIN_OVERLAP,
        ),
        None,
    )


def _member_array(members: Collection[int]) -> np.ndarray:
    """Member ids as a sorted array of distinct int64."""
    return np.unique(np.fromiter(members, dtype=np.int64, count=len(members)))


def _clusters_of(placement: _Placement, members: Collection[int], k: int) -> np.ndarray:
    """How many of ``members`` each cluster holds (members not placed by the run are left out)."""
    wanted = _member_array(members)
    sorted_ids = placement.sorted_ids
    found = np.searchsorted(sorted_ids, wanted)
    inside = found < len(sorted_ids)
    inside[inside] = sorted_ids[found[inside]] == wanted[inside]
    rows = placement.order[found[inside]]
    return np.bincount(placement.labels[rows], minlength=k)


def _plan_segments(
    inputs: SegmentationInputs,
    model: SegmentModel,
    placement: _Placement,
    descriptions: Sequence[SegmentDescription],
    matching: _Matching,
    *,
    refresh_labels: bool,
) -> dict[int, PlannedSegment]:
    """Each cluster's segment (continued or new), by cluster index, largest first."""
    centers = np.asarray(model.cluster_centers_, dtype=np.float64)
    sizes = np.bincount(placement.labels, minlength=model.n_segments_)
    described = placement.labels if inputs.described is None else placement.labels[inputs.described]
    next_number = inputs.next_key_number
    planned: dict[int, PlannedSegment] = {}
    for index in sorted(range(model.n_segments_), key=lambda i: (-descriptions[i].card["size"], i)):
        description = descriptions[index]
        card = dict(description.card)
        card["suggested_label"] = description.label
        previous = inputs.previous[matching.matches[index]] if index in matching.matches else None
        if previous is not None:
            if matching.previous_scaled is not None:
                shift = centers[index] - matching.previous_scaled[matching.matches[index]]
                card["drift"] = round(float(np.linalg.norm(shift)), 4)
            else:
                card["drift"] = None
            keep = previous.label_edited or not refresh_labels
            label = previous.label if keep and previous.label else description.label
            key = previous.key
        else:
            key = f"seg-{next_number}"
            next_number += 1
            card["drift"] = None
            label = description.label
        card["label_edited"] = previous is not None and previous.label_edited
        planned[index] = PlannedSegment(
            key=key,
            previous_id=previous.id if previous is not None else None,
            label=label,
            description=_description(description),
            centroid=placement.means[index] if sizes[index] else placement.means[-1],
            interest=_mean_interest(
                [inputs.interests[row] for row in np.flatnonzero(described == index).tolist()]
            ),
            size=int(card["size"]),
            card=card,
        )
    return planned


@dataclass(frozen=True)
class _Placement:
    """Where a run places every member: cluster, distance to its centre, and cluster means."""

    labels: np.ndarray
    """Each member's cluster index (rows of ``member_ids``)."""
    distances: np.ndarray
    """Each member's distance to its cluster's centre, in the scaled space."""
    means: np.ndarray
    """Each cluster's mean raw row (float32), then the mean of every row."""
    sorted_ids: np.ndarray
    """The member ids, sorted."""
    order: np.ndarray
    """Row of each of ``sorted_ids``."""


def _place(inputs: SegmentationInputs, model: SegmentModel) -> _Placement:
    """Place every member at its nearest centre: from ``features``, or chunk by chunk."""
    k = model.n_segments_
    member_ids = np.asarray(inputs.member_ids, dtype=np.int64)
    sums = np.zeros((k + 1, inputs.features.shape[1]), dtype=np.float64)
    if inputs.sampled is None:
        X = inputs.features
        labels = model.labels_
        distances = model.transform(X)[np.arange(len(X)), labels]
        for start in range(0, len(X), CHUNK_ROWS):
            _add_sums(sums, X[start : start + CHUNK_ROWS], labels[start : start + CHUNK_ROWS])
    else:
        if inputs.read_features is None:
            raise ValueError("inputs holding a sample of the features need read_features")
        labels = np.empty(len(member_ids), dtype=np.int32)
        distances = np.empty(len(member_ids), dtype=np.float64)
        start = 0
        for chunk in inputs.read_features():
            stop = start + len(chunk)
            if stop > len(member_ids):
                raise ValueError("read_features gave more rows than there are members")
            part = model.predict(chunk)
            labels[start:stop] = part
            distances[start:stop] = model.transform(chunk)[np.arange(len(chunk)), part]
            _add_sums(sums, chunk, part)
            start = stop
        if start != len(member_ids):
            raise ValueError(f"read_features gave {start} rows for {len(member_ids)} members")
    counts = np.append(np.maximum(np.bincount(labels, minlength=k), 1), max(len(labels), 1))
    order = np.argsort(member_ids, kind="stable")
    return _Placement(
        labels=labels,
        distances=distances,
        means=(sums / counts[:, None].astype(np.float64)).astype(np.float32),
        sorted_ids=member_ids[order],
        order=order,
    )


def _add_sums(sums: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> None:
    """Add each row to its cluster's sum (``sums[label]``) and to the total (``sums[-1]``)."""
    k = len(sums) - 1
    part = rows.astype(np.float64)
    one_hot = np.zeros((len(labels), k), dtype=np.float64)
    one_hot[np.arange(len(labels)), labels] = 1.0
    sums[:k] += one_hot.T @ part
    sums[k] += part.sum(axis=0)


def _distinct_labels(
    planned: Mapping[int, PlannedSegment], other_labels: Sequence[str]
) -> dict[int, PlannedSegment]:
    """Give a segment whose label another active segment already has its key as a suffix."""
    seen: Counter[str] = Counter(other_labels)
    distinct = dict(planned)
    for index in sorted(planned):
        segment = planned[index]
        if seen[segment.label] and not segment.card["label_edited"]:
            segment = dataclasses.replace(segment, label=f"{segment.label} ({segment.key})"[:300])
            distinct[index] = segment
        seen[segment.label] += 1
    return distinct


def _gone(
    previous: Sequence[PreviousSegment],
    matched: Collection[int],
    placement: _Placement,
    planned: Mapping[int, PlannedSegment],
) -> tuple[list[int], list[str], dict[str, str]]:
    """The previous segments no cluster matched: their ids, the vanished, the merged.

    Of clusters that took as many of a segment's members, the first in ``planned`` (the
    largest) is the one it merged into.
    """
    deactivated: list[int] = []
    vanished: list[str] = []
    merged: dict[str, str] = {}
    for position, segment in enumerate(previous):
        if position in matched:
            continue
        deactivated.append(segment.id)
        went = _clusters_of(placement, segment.members, len(planned))
        size = len(_member_array(segment.members))
        top = max(planned, key=lambda index: int(went[index]))  # the first of the largest
        if size and went[top] and went[top] >= MERGE_SHARE * size:
            merged[segment.key] = planned[top].key
        else:
            vanished.append(segment.key)
    return deactivated, sorted(vanished), dict(sorted(merged.items()))


def _layout(layout_hash: str, questionnaire: QuestionnaireLike, n_features: int) -> FeatureLayout:
    """The questionnaire's feature layout, which must be the one the profiles were built with."""
    layout = FeatureLayout.for_feature_count(questionnaire, n_features)
    if layout.hash != layout_hash:
        raise ValueError(
            "the stored profiles were built with another questionnaire than the one given "
            f"(layout hash {layout_hash[:12]}…, expected {layout.hash[:12]}…): "
            "re-run build_profiles first"
        )
    return layout


def _describe(
    inputs: SegmentationInputs,
    questionnaire: QuestionnaireLike,
    model: SegmentModel,
    placement: _Placement,
) -> list[SegmentDescription]:
    """Each cluster's label and card (from the described members; sizes from everyone)."""
    rows = inputs.described
    all_ids = np.asarray(inputs.member_ids, dtype=np.int64)
    member_ids = (all_ids if rows is None else all_ids[rows]).tolist()
    labels = placement.labels if rows is None else placement.labels[rows]
    descriptions = label_segments(
        questionnaire,
        member_ids,
        labels,
        inputs.answers,
        inputs.texts,
        lifecycle=dict(zip(member_ids, inputs.stages, strict=True)),
        distances=placement.distances if rows is None else placement.distances[rows],
        n_segments=model.n_segments_,
        languages=inputs.languages,
    )
    if rows is None:
        return descriptions
    sizes = np.bincount(placement.labels, minlength=model.n_segments_)
    total = len(inputs.member_ids)
    return [
        dataclasses.replace(
            description,
            card={
                **description.card,
                "size": int(size),
                "share": round(int(size) / total, 3),
                "described": len(member_ids),
            },
        )
        for description, size in zip(descriptions, sizes.tolist(), strict=True)
    ]


def _run_params(
    inputs: SegmentationInputs,
    model: SegmentModel,
    options: Mapping[str, Any],
    move_after: dt.timedelta,
) -> dict[str, Any]:
    """What ``SegmentationRun.params`` records of a run."""
    offset, factor = model.affine()
    return {
        "feature_names_hash": inputs.layout_hash,
        "n_features": int(inputs.features.shape[1]),
        "centroids": CENTROID_SPACE,
        "n_segments": options["n_segments"],
        "min_segments": options["min_segments"],
        "max_segments": options["max_segments"],
        "seed": options["random_state"],
        "fit_size": options["fit_size"],
        "block_weights": dict(model.block_weights_),
        "silhouette_by_k": {str(key): value for key, value in model.silhouette_by_k_.items()},
        "warm_started": bool(model.warm_started_),
        "move_after_days": move_after.total_seconds() / 86400.0,
        "n_members": len(inputs.member_ids),
        "skipped": inputs.skipped,
        "scaling": {"offset": offset.tolist(), "factor": factor.tolist()},
    }


def plan_segmentation(
    inputs: SegmentationInputs,
    questionnaire: QuestionnaireLike,
    *,
    n_segments: int | None = None,
    min_segments: int = 3,
    max_segments: int = 10,
    seed: int = 42,
    block_weights: Mapping[str, float] | None = None,
    mini_batch_threshold: int = 20000,
    sample_size: int = 3000,
    fit_size: int | None = DEFAULT_FIT_SIZE,
    move_after: dt.timedelta = DEFAULT_MOVE_AFTER,
    refresh_labels: bool = False,
) -> SegmentationPlan | None:
    """Decide a segmentation run on plain data: fit, label, match to the previous segments.

    Args:
        inputs: What the run reads (:func:`load_segmentation_inputs`).
        questionnaire: The questionnaire the profiles were built with (layout, labels).
        n_segments: Number of segments; ``None`` chooses it by silhouette score.
        min_segments: Smallest number of segments tried.
        max_segments: Largest number of segments tried.
        seed: Random seed (sampling, k-means).
        block_weights: ``{block: weight}`` over the model's defaults.
        mini_batch_threshold: Above this many members, ``MiniBatchKMeans`` is used.
        sample_size: Members sampled to choose the number of segments and score the fit.
        fit_size: With more members, the clusters are fitted on a sample of this many and
            every member is assigned to the nearest in chunks; ``None`` fits on everyone.
        move_after: How long a member's move to another segment must hold (recorded).
        refresh_labels: Give persisting segments their freshly computed label (edited labels
            are still kept).

    Returns:
        The plan; ``None`` with fewer than two usable profiles.

    Raises:
        ValueError: The profiles do not fit ``questionnaire``'s feature layout.
    """
    if inputs.layout_hash is None or len(inputs.member_ids) < 2:
        return None
    layout = _layout(inputs.layout_hash, questionnaire, inputs.features.shape[1])
    X = inputs.features
    previous_centroids = _previous_centroids(inputs)
    options: dict[str, Any] = {
        "n_segments": n_segments,
        "min_segments": min_segments,
        "max_segments": max_segments,
        "block_weights": block_weights,
        "mini_batch_threshold": mini_batch_threshold,
        "sample_size": sample_size,
        "random_state": seed,
        "fit_size": fit_size,
    }
    model = SegmentModel(**options, previous_centers=previous_centroids).fit(
        X, blocks=layout.blocks
    )
    placement = _place(inputs, model)
    descriptions = _describe(inputs, questionnaire, model, placement)
    matching = _match_previous(inputs, model, placement, previous_centroids)
    planned = _plan_segments(
        inputs, model, placement, descriptions, matching, refresh_labels=refresh_labels
    )
    deactivated, vanished, merged = _gone(
        inputs.previous, set(matching.matches.values()), placement, planned
    )
    planned = _distinct_labels(planned, inputs.other_labels)
    return SegmentationPlan(
        algorithm=model.algorithm_,
        quality=model.silhouette_,
        warm_started=bool(model.warm_started_),
        params=_run_params(inputs, model, options, move_after),
        segments=list(planned.values()),
        memberships=ClusterMemberships(
            member_ids=np.asarray(inputs.member_ids, dtype=np.int64),
            keys=tuple(planned[index].key for index in range(model.n_segments_)),
            clusters=placement.labels,
            distances=placement.distances,
        ),
        deactivated=deactivated,
        vanished=vanished,
        merged=merged,
    )


# --- write ----------------------------------------------------------------------------------


def _write_segmentation(
    session: Session, plan: SegmentationPlan, now: dt.datetime, move_after: dt.timedelta
) -> tuple[int, AssignmentChanges]:
    """Store a plan: the run, its segments, its memberships, the effective assignments."""
    run = SegmentationRun(
        algorithm=plan.algorithm,
        n_segments=len(plan.segments),
        quality=plan.quality,
        params=plan.params,
        created_at=now,
    )
    session.add(run)
    session.flush()
    segments: list[Segment] = []
    for planned in plan.segments:
        if planned.previous_id is None:
            segment = Segment(
                key=planned.key, kind=SegmentKind.CLUSTER, first_run_id=run.id, created_at=now
            )
            session.add(segment)
        else:
            segment = session.get_one(Segment, planned.previous_id)
        segment.label = planned.label
        segment.description = planned.description
        segment.centroid = planned.centroid
        segment.interest = planned.interest
        segment.size = planned.size
        segment.card = {**planned.card, "run_id": run.id}
        segment.active = True
        segment.last_run_id = run.id
        segments.append(segment)
    for segment_id in plan.deactivated:
        session.get_one(Segment, segment_id).active = False
    session.flush()
    segment_ids = {segment.key: segment.id for segment in segments}
    memberships = plan.memberships
    of_cluster = np.array([segment_ids[key] for key in memberships.keys], dtype=np.int64)
    for start in range(0, len(memberships), _INSERT_BATCH):
        session.execute(
            insert(SegmentMembership),
            [
                {
                    "run_id": run.id,
                    "member_id": member_id,
                    "segment_id": segment_ids[key],
                    "distance": distance,
                    "created_at": now,
                }
                for member_id, key, distance in memberships.chunk(start, start + _INSERT_BATCH)
            ],
        )
    order = np.argsort(memberships.member_ids, kind="stable")
    changes = update_cluster_assignments_in_chunks(
        session,
        memberships.member_ids[order],
        of_cluster[memberships.clusters[order]],
        now,
        move_after=move_after,
        active_segments=set(segment_ids.values()),
    )
    session.flush()
    # The rule segments then read the effective segments a chunk at a time.
    refresh_statistics(session, (SegmentMembership, SegmentAssignment))
    return run.id, changes


def segment_members(
    session: Session,
    *,
    questionnaire: QuestionnaireLike,
    now: dt.datetime,
    n_segments: int | None = None,
    min_segments: int = 3,
    max_segments: int = 10,
    seed: int = 42,
    block_weights: Mapping[str, float] | None = None,
    mini_batch_threshold: int = 20000,
    sample_size: int = 3000,
    fit_size: int | None = DEFAULT_FIT_SIZE,
    move_after: dt.timedelta = DEFAULT_MOVE_AFTER,
    rules: Sequence[SegmentRule] | None = None,
    refresh_labels: bool = False,
) -> SegmentationSummary:
    """Cluster all profiled members into labelled segments with stable identities.

    Profiles whose feature layout differs from the majority's (stale profiles) are left out.
    Reads (:func:`load_segmentation_inputs`), decides (:func:`plan_segmentation`), then writes
    the run. The caller commits.

    Args:
        session: Database session.
        questionnaire: The questionnaire the profiles were built with (layout, labels).
        now: Time of the run (timezone-aware).
        n_segments: Number of segments; ``None`` chooses it by silhouette score.
        min_segments: Smallest number of segments tried.
        max_segments: Largest number of segments tried.
        seed: Random seed (sampling, k-means).
        block_weights: ``{block: weight}`` over the model's defaults.
        mini_batch_threshold: Above this many members, ``MiniBatchKMeans`` is used.
        sample_size: Members sampled to choose the number of segments and score the fit.
        fit_size: With more members, the clusters are fitted on a sample of this many and
            every member is assigned to the nearest in chunks, and the segments are labelled
            and given their interest from another sample of this many (only its members'
            answers and interests are read); ``None`` fits and labels on everyone.
        move_after: How long a member's move to another segment must hold before it counts.
        rules: Every rule segment of the workspace, evaluated into this run (rule segments not
            among them become inactive); ``None`` leaves rule segments alone.
        refresh_labels: Give persisting segments their freshly computed label (edited labels
            are still kept).

    Returns:
        The run's summary; ``run_id`` is ``None`` (and no cluster is written) with fewer than two
        profiles.

    Raises:
        ValueError: The stored profiles do not fit ``questionnaire``'s feature layout.
    """
    inputs = load_segmentation_inputs(session, questionnaire, label_size=fit_size, seed=seed)
    plan = plan_segmentation(
        inputs,
        questionnaire,
        n_segments=n_segments,
        min_segments=min_segments,
        max_segments=max_segments,
        seed=seed,
        block_weights=block_weights,
        mini_batch_threshold=mini_batch_threshold,
        sample_size=sample_size,
        fit_size=fit_size,
        move_after=move_after,
        refresh_labels=refresh_labels,
    )
    run_id, changes = (
        _write_segmentation(session, plan, now, move_after)
        if plan is not None
        else (None, AssignmentChanges())
    )
    rule_summary = (
        evaluate_rule_segments(session, rules, now, run_id=run_id) if rules is not None else None
    )
    return _with_rules(_summary(inputs, plan, run_id, changes), rule_summary)


def _summary(
    inputs: SegmentationInputs,
    plan: SegmentationPlan | None,
    run_id: int | None,
    changes: AssignmentChanges,
) -> SegmentationSummary:
    if plan is None:
        return SegmentationSummary(
            run_id=None,
            n_segments=0,
            quality=None,
            n_members=len(inputs.member_ids),
            skipped=inputs.skipped,
        )
    return SegmentationSummary(
        run_id=run_id,
        n_segments=len(plan.segments),
        quality=plan.quality,
        sizes={s.key: s.size for s in plan.segments},
        labels={s.key: s.label for s in plan.segments},
        new=[s.key for s in plan.segments if s.previous_id is None],
        vanished=plan.vanished,
        merged=plan.merged,
        n_members=len(inputs.member_ids),
        skipped=inputs.skipped,
        algorithm=plan.algorithm,
        warm_started=plan.warm_started,
        moved=changes.moved,
        pending=changes.pending,
    )


def _with_rules(
    summary: SegmentationSummary, rules: RuleSegmentationSummary | None
) -> SegmentationSummary:
    if rules is None:
        return summary
    return dataclasses.replace(
        summary, rule_sizes=rules.sizes, rule_labels=rules.labels, rule_errors=rules.errors
    )


def current_segments(session: Session) -> dict[int, int]:
    """Each member's cluster segment in the latest clustering run (what clustering says today).

    Journeys read :func:`~nurture.segmentation.assignments.effective_segments` instead: a move
    only counts there once it has held long enough.

    Args:
        session: Database session.

    Returns:
        ``{member id: segment id}``; empty before the first run.
    """
    latest = session.scalar(
        select(func.max(SegmentMembership.run_id))
        .join(Segment, Segment.id == SegmentMembership.segment_id)
        .where(Segment.kind == SegmentKind.CLUSTER)
    )
    if latest is None:
        return {}
    rows = session.execute(
        select(SegmentMembership.member_id, SegmentMembership.segment_id)
        .join(Segment, Segment.id == SegmentMembership.segment_id)
        .where(SegmentMembership.run_id == latest, Segment.kind == SegmentKind.CLUSTER)
        .order_by(SegmentMembership.member_id, SegmentMembership.id)
    )
    return {member_id: segment_id for member_id, segment_id in rows.tuples()}


def rename_segment(session: Session, key: str, label: str | None) -> Segment:
    """Give a cluster segment the label a marketer chose; segmentation never overwrites it.

    Args:
        session: Database session (the caller commits).
        key: The segment's key (``seg-3``).
        label: The new label; ``None`` goes back to the label segmentation suggests (and lets
            later runs keep it up to date only with ``refresh_labels``).

    Returns:
        The renamed segment.

    Raises:
        LookupError: No segment has this key.
        ValueError: The label is empty or longer than 300 characters, or the segment is a rule
            segment (its label comes from ``segments.yaml``).
    """
    segment = session.scalars(select(Segment).where(Segment.key == key)).one_or_none()
    if segment is None:
        known = ", ".join(session.scalars(select(Segment.key).order_by(Segment.id)))
        raise LookupError(f"no segment has the key {key!r}; known keys: {known or 'none'}")
    if segment.kind == SegmentKind.RULE:
        raise ValueError(f"segment {key!r} is declared by rule: change its label in segments.yaml")
    card = dict(segment.card or {})
    if label is None:
        segment.label = str(card.get("suggested_label") or segment.label)
        segment.label_edited = False
    else:
        text = " ".join(label.split())
        if not text:
            raise ValueError("a segment label cannot be empty")
        if len(text) > 300:
            raise ValueError(f"a segment label has at most 300 characters, found {len(text)}")
        segment.label = text
        segment.label_edited = True
    card["label_edited"] = segment.label_edited
    segment.card = card
    session.flush()
    return segment
