"""Segment every profiled member, keep segment identities across runs, record the run.

A run fits :class:`~nurture.segmentation.model.SegmentModel` on all stored profiles (starting
from the previous run's centroids when the feature layout is the same), labels each cluster and
matches the clusters to the previous run's active segments so that a segment keeps its id, its
key and its label:

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.profiling.layout import CHOICE_KINDS, FeatureLayout, QuestionnaireLike
from nurture.segmentation.assignments import update_cluster_assignments
from nurture.segmentation.identity import match_by_overlap, match_segments
from nurture.segmentation.labels import SegmentDescription, label_segments
from nurture.segmentation.model import SegmentModel
from nurture.segmentation.rules import (
    RuleSegmentationSummary,
    SegmentRule,
    evaluate_rule_segments,
)
from nurture.storage.models import (
    Answer,
    Member,
    MemberProfile,
    Segment,
    SegmentationRun,
    SegmentKind,
    SegmentMembership,
)

__all__ = [
    "DEFAULT_MOVE_AFTER",
    "MERGE_SHARE",
    "SegmentationSummary",
    "current_segments",
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
_INSERT_BATCH = 5000
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


def _load_profiles(
    session: Session,
) -> tuple[str | None, list[int], list[np.ndarray], list[np.ndarray | None], list[str], int]:
    rows = session.execute(
        select(
            MemberProfile.member_id,
            MemberProfile.features,
            MemberProfile.interest,
            MemberProfile.lifecycle_stage,
            MemberProfile.feature_names_hash,
        ).order_by(MemberProfile.member_id)
    ).all()
    if not rows:
        return None, [], [], [], [], 0
    layout_hash = Counter(row.feature_names_hash for row in rows).most_common(1)[0][0]
    kept = [row for row in rows if row.feature_names_hash == layout_hash]
    return (
        layout_hash,
        [row.member_id for row in kept],
        [row.features for row in kept],
        [row.interest for row in kept],
        [row.lifecycle_stage for row in kept],
        len(rows) - len(kept),
    )


def _load_answers(
    session: Session, questionnaire: QuestionnaireLike
) -> tuple[dict[int, dict[str, Any]], dict[int, str]]:
    questions = [q for q in questionnaire.questions if getattr(q, "profile", True)]
    choice_keys = [q.key for q in questions if q.kind in CHOICE_KINDS]
    text_keys = [q.key for q in questions if q.kind == "free_text"]
    answers: dict[int, dict[str, Any]] = {}
    texts: dict[int, list[str]] = {}
    if choice_keys or text_keys:
        rows = session.execute(
            select(Answer.member_id, Answer.question_key, Answer.value)
            .where(Answer.question_key.in_(choice_keys + text_keys))
            .order_by(Answer.member_id, Answer.question_key)
            .execution_options(yield_per=_INSERT_BATCH)
        )
        for member_id, key, value in rows.tuples():
            if key in text_keys:
                if isinstance(value, str) and value.strip():
                    texts.setdefault(member_id, []).append(value.strip())
            else:
                answers.setdefault(member_id, {})[key] = value
    return answers, {member_id: " ".join(parts) for member_id, parts in texts.items()}


def _load_languages(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Member.id, Member.language)).tuples().all())


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


@dataclass
class _Previous:
    """The active cluster segments before this run, and whether their centroids compare."""

    segments: list[Segment]
    comparable: bool


def _previous_segments(session: Session, layout_hash: str, n_features: int) -> _Previous:
    """Active cluster segments; comparable when all their centroids live in this run's space."""
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
    comparable = bool(segments) and all(
        s.centroid is not None
        and s.centroid.shape == (n_features,)
        and params.get(s.last_run_id, {}).get("feature_names_hash") == layout_hash
        and params.get(s.last_run_id, {}).get("centroids") == CENTROID_SPACE
        for s in segments
    )
    return _Previous(segments, comparable)


def _members_of(session: Session, segments: Sequence[Segment]) -> list[set[int]]:
    """Each segment's members in its last run."""
    found: list[set[int]] = []
    for segment in segments:
        if segment.last_run_id is None:
            found.append(set())
            continue
        found.append(
            set(
                session.scalars(
                    select(SegmentMembership.member_id).where(
                        SegmentMembership.run_id == segment.last_run_id,
                        SegmentMembership.segment_id == segment.id,
                    )
                )
            )
        )
    return found


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
    move_after: dt.timedelta = DEFAULT_MOVE_AFTER,
    rules: Sequence[SegmentRule] | None = None,
    refresh_labels: bool = False,
) -> SegmentationSummary:
    """Cluster all profiled members into labelled segments with stable identities.

    Profiles whose feature layout differs from the majority's (stale profiles) are left out. The
    caller commits.

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
    layout_hash, member_ids, features, interests, stages, skipped = _load_profiles(session)
    if layout_hash is None or len(member_ids) < 2:
        rule_summary = evaluate_rule_segments(session, rules, now) if rules is not None else None
        return _with_rules(
            SegmentationSummary(
                run_id=None,
                n_segments=0,
                quality=None,
                n_members=len(member_ids),
                skipped=skipped,
            ),
            rule_summary,
        )
    X = np.stack(features).astype(np.float64)
    layout = FeatureLayout.for_feature_count(questionnaire, X.shape[1])
    if layout.hash != layout_hash:
        raise ValueError(
            "the stored profiles were built with another questionnaire than the one given "
            f"(layout hash {layout_hash[:12]}…, expected {layout.hash[:12]}…): "
            "re-run build_profiles first"
        )
    previous = _previous_segments(session, layout_hash, X.shape[1])
    previous_centroids = (
        np.stack([s.centroid for s in previous.segments]).astype(np.float64)
        if previous.comparable
        else None
    )
    model = SegmentModel(
        n_segments=n_segments,
        min_segments=min_segments,
        max_segments=max_segments,
        block_weights=block_weights,
        mini_batch_threshold=mini_batch_threshold,
        sample_size=sample_size,
        random_state=seed,
        previous_centers=previous_centroids,
    ).fit(X, blocks=layout.blocks)
    segment_of = model.labels_
    distances = model.transform(X)[np.arange(len(X)), segment_of]
    k = model.n_segments_
    answers, texts = _load_answers(session, questionnaire)
    descriptions = label_segments(
        questionnaire,
        member_ids,
        segment_of,
        answers,
        texts,
        lifecycle=dict(zip(member_ids, stages, strict=True)),
        distances=distances,
        n_segments=k,
        languages=_load_languages(session),
    )
    raw_centroids = np.stack(
        [
            X[segment_of == index].mean(axis=0) if np.any(segment_of == index) else X.mean(axis=0)
            for index in range(k)
        ]
    )
    centers = np.asarray(model.cluster_centers_, dtype=np.float64)
    if previous_centroids is not None:
        previous_scaled = model.scale(previous_centroids)
        gate = float(np.median(pdist(centers))) if k >= 2 else None
        matches = match_segments(previous_scaled, centers, max_distance=gate)
    else:
        previous_scaled = None
        clusters = [set(np.asarray(member_ids)[segment_of == index].tolist()) for index in range(k)]
        matches = match_by_overlap(
            _members_of(session, previous.segments), clusters, min_jaccard=MIN_OVERLAP
        )

    run = SegmentationRun(
        algorithm=model.algorithm_,
        n_segments=k,
        quality=model.silhouette_,
        params={
            "feature_names_hash": layout_hash,
            "n_features": int(X.shape[1]),
            "centroids": CENTROID_SPACE,
            "n_segments": n_segments,
            "min_segments": min_segments,
            "max_segments": max_segments,
            "seed": seed,
            "block_weights": dict(model.block_weights_),
            "silhouette_by_k": {str(key): value for key, value in model.silhouette_by_k_.items()},
            "warm_started": bool(model.warm_started_),
            "move_after_days": move_after.total_seconds() / 86400.0,
            "n_members": len(member_ids),
            "skipped": skipped,
        },
        created_at=now,
    )
    session.add(run)
    session.flush()

    next_number = _next_key_number(session)
    segment_by_index: dict[int, Segment] = {}
    new_keys: list[str] = []
    # Larger clusters first, so new keys are numbered by size.
    for index in sorted(range(k), key=lambda i: (-descriptions[i].card["size"], i)):
        description = descriptions[index]
        card = dict(description.card)
        card["suggested_label"] = description.label
        if index in matches:
            segment = previous.segments[matches[index]]
            if previous_scaled is not None:
                shift = float(np.linalg.norm(centers[index] - previous_scaled[matches[index]]))
                card["drift"] = round(shift, 4)
            else:
                card["drift"] = None
            keep = segment.label_edited or not refresh_labels
            label = segment.label if keep and segment.label else description.label
        else:
            segment = Segment(
                key=f"seg-{next_number}",
                kind=SegmentKind.CLUSTER,
                first_run_id=run.id,
                created_at=now,
            )
            next_number += 1
            session.add(segment)
            new_keys.append(segment.key)
            card["drift"] = None
            label = description.label
        card["label_edited"] = bool(segment.label_edited)
        card["run_id"] = run.id
        segment.label = label
        segment.description = _description(description)
        segment.centroid = raw_centroids[index].astype(np.float32)
        segment.interest = _mean_interest(
            [interests[row] for row in np.flatnonzero(segment_of == index)]
        )
        segment.size = int(card["size"])
        segment.card = card
        segment.active = True
        segment.last_run_id = run.id
        segment_by_index[index] = segment
    session.flush()

    segment_ids = {index: segment.id for index, segment in segment_by_index.items()}
    now_in = {
        member_id: segment_ids[int(index)]
        for member_id, index in zip(member_ids, segment_of, strict=True)
    }
    key_of = {segment.id: segment.key for segment in segment_by_index.values()}
    gone = [s for i, s in enumerate(previous.segments) if i not in set(matches.values())]
    members_before = _members_of(session, gone)
    vanished: list[str] = []
    merged: dict[str, str] = {}
    for segment, before in zip(gone, members_before, strict=True):
        segment.active = False
        went = Counter(key_of[now_in[m]] for m in before if m in now_in)
        top = went.most_common(1)
        if before and top and top[0][1] >= MERGE_SHARE * len(before):
            merged[segment.key] = top[0][0]
        else:
            vanished.append(segment.key)
    _distinct_labels(session, [segment_by_index[i] for i in range(k)])
    session.flush()

    rows = [
        {
            "run_id": run.id,
            "member_id": member_id,
            "segment_id": segment_ids[int(index)],
            "distance": float(distance),
            "created_at": now,
        }
        for member_id, index, distance in zip(member_ids, segment_of, distances, strict=True)
    ]
    for batch in chunked(rows, _INSERT_BATCH):
        session.execute(insert(SegmentMembership), batch)
    changes = update_cluster_assignments(
        session, now_in, now, move_after=move_after, active_segments=set(segment_ids.values())
    )
    session.flush()
    rule_summary = (
        evaluate_rule_segments(session, rules, now, run_id=run.id) if rules is not None else None
    )
    return _with_rules(
        SegmentationSummary(
            run_id=run.id,
            n_segments=k,
            quality=model.silhouette_,
            sizes={s.key: s.size for s in segment_by_index.values()},
            labels={s.key: s.label for s in segment_by_index.values()},
            new=new_keys,
            vanished=sorted(vanished),
            merged=dict(sorted(merged.items())),
            n_members=len(member_ids),
            skipped=skipped,
            algorithm=model.algorithm_,
            warm_started=bool(model.warm_started_),
            moved=changes.moved,
            pending=changes.pending,
        ),
        rule_summary,
    )


def _with_rules(
    summary: SegmentationSummary, rules: RuleSegmentationSummary | None
) -> SegmentationSummary:
    if rules is None:
        return summary
    return dataclasses.replace(
        summary, rule_sizes=rules.sizes, rule_labels=rules.labels, rule_errors=rules.errors
    )


def _distinct_labels(session: Session, segments: Sequence[Segment]) -> None:
    """Give a segment whose label another active segment already has its key as a suffix."""
    session.flush()
    others = Counter(
        session.scalars(
            select(Segment.label).where(
                Segment.active.is_(True),
                Segment.id.not_in([s.id for s in segments if s.id is not None]),
            )
        )
    )
    seen: Counter[str] = Counter(others)
    for segment in segments:
        if seen[segment.label] and not segment.label_edited:
            segment.label = f"{segment.label} ({segment.key})"[:300]
        seen[segment.label] += 1


def _next_key_number(session: Session) -> int:
    numbers = [
        int(match.group(1))
        for key in session.scalars(select(Segment.key).where(Segment.key.like("seg-%")))
        if (match := _KEY_NUMBER.match(key))
    ]
    return max(numbers, default=0) + 1


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
