"""Segment every profiled member, keep segment identities across runs, record the run.

A run fits :class:`~nurture.segmentation.model.SegmentModel` on all stored profiles, labels
each cluster, matches clusters to the previous run's active segments (same feature layout only)
so that a segment keeps its id, key and, if a marketer edited it (``card["label_edited"]``), its
label; then writes a ``SegmentationRun``, the ``Segment`` rows and this run's
``SegmentMembership`` rows. Older memberships stay as history.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from nurture.profiling.layout import CHOICE_KINDS, FeatureLayout, QuestionnaireLike
from nurture.segmentation.identity import match_segments
from nurture.segmentation.labels import SegmentDescription, label_segments
from nurture.segmentation.model import DEFAULT_BLOCK_WEIGHTS, SegmentModel
from nurture.storage.models import (
    Answer,
    MemberProfile,
    Segment,
    SegmentationRun,
    SegmentMembership,
)

__all__ = ["CLUSTER_KIND", "SegmentationSummary", "current_segments", "segment_members"]

CLUSTER_KIND = "cluster"
"""``Segment.kind`` of segments found by clustering (rule-based segments have another kind)."""

_KEY_NUMBER = re.compile(r"^seg-(\d+)$")
_INSERT_BATCH = 5000


@dataclass(frozen=True)
class SegmentationSummary:
    """What a segmentation run did.

    Attributes:
        run_id: The ``SegmentationRun`` written, or ``None`` when there was too little to cluster.
        n_segments: Number of segments.
        quality: Silhouette score on a sample (-1..1, higher is better), when defined.
        sizes: ``{segment key: members}``.
        labels: ``{segment key: label}``.
        new: Keys of segments created by this run.
        vanished: Keys of previous segments no cluster matched (now inactive).
        n_members: Members segmented.
        skipped: Profiles left out because their feature layout differs from the majority's.
        algorithm: ``kmeans`` or ``minibatch_kmeans``.
    """

    run_id: int | None
    n_segments: int
    quality: float | None
    sizes: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    n_members: int = 0
    skipped: int = 0
    algorithm: str = ""


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
            .execution_options(yield_per=_INSERT_BATCH)
        )
        for member_id, key, value in rows.tuples():
            if key in text_keys:
                if isinstance(value, str) and value.strip():
                    texts.setdefault(member_id, []).append(value.strip())
            else:
                answers.setdefault(member_id, {})[key] = value
    return answers, {member_id: " ".join(parts) for member_id, parts in texts.items()}


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


def _previous_segments(session: Session, layout_hash: str, n_features: int) -> list[Segment]:
    """Active cluster segments whose centroid lives in a comparable (same-layout) space."""
    segments = list(
        session.scalars(
            select(Segment)
            .where(Segment.kind == CLUSTER_KIND, Segment.active.is_(True))
            .order_by(Segment.id)
        )
    )
    run_ids = {s.last_run_id for s in segments if s.last_run_id is not None}
    hashes = {
        run.id: (run.params or {}).get("feature_names_hash")
        for run in session.scalars(select(SegmentationRun).where(SegmentationRun.id.in_(run_ids)))
    }
    return [
        s
        for s in segments
        if s.centroid is not None
        and s.centroid.shape == (n_features,)
        and hashes.get(s.last_run_id) == layout_hash
    ]


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
        block_weights: ``{block: weight}``; ``None`` means the model's defaults.
        mini_batch_threshold: Above this many members, ``MiniBatchKMeans`` is used.
        sample_size: Members sampled to choose the number of segments and score the fit.

    Returns:
        The run's summary; ``run_id`` is ``None`` (and nothing is written) with fewer than two
        profiles.

    Raises:
        ValueError: The stored profiles do not fit ``questionnaire``'s feature layout.
    """
    layout_hash, member_ids, features, interests, stages, skipped = _load_profiles(session)
    if layout_hash is None or len(member_ids) < 2:
        return SegmentationSummary(
            run_id=None, n_segments=0, quality=None, n_members=len(member_ids), skipped=skipped
        )
    X = np.stack(features).astype(np.float64)
    layout = FeatureLayout.for_feature_count(questionnaire, X.shape[1])
    if layout.hash != layout_hash:
        raise ValueError(
            "the stored profiles were built with another questionnaire than the one given "
            f"(layout hash {layout_hash[:12]}…, expected {layout.hash[:12]}…): "
            "re-run build_profiles first"
        )
    model = SegmentModel(
        n_segments=n_segments,
        min_segments=min_segments,
        max_segments=max_segments,
        block_weights=block_weights,
        mini_batch_threshold=mini_batch_threshold,
        sample_size=sample_size,
        random_state=seed,
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
    )

    centers = np.asarray(model.cluster_centers_, dtype=np.float64)
    previous = _previous_segments(session, layout_hash, X.shape[1])
    gate = float(np.median(pdist(centers))) if k >= 2 else None
    matches = match_segments(
        np.stack([s.centroid for s in previous]) if previous else np.zeros((0, X.shape[1])),
        centers,
        max_distance=gate,
    )

    run = SegmentationRun(
        algorithm=model.algorithm_,
        n_segments=k,
        quality=model.silhouette_,
        params={
            "feature_names_hash": layout_hash,
            "n_features": int(X.shape[1]),
            "n_segments": n_segments,
            "min_segments": min_segments,
            "max_segments": max_segments,
            "seed": seed,
            "block_weights": dict(block_weights or DEFAULT_BLOCK_WEIGHTS),
            "silhouette_by_k": {str(key): value for key, value in model.silhouette_by_k_.items()},
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
        label = description.label
        if index in matches:
            segment = previous[matches[index]]
            card["drift"] = round(float(np.linalg.norm(centers[index] - segment.centroid)), 4)
            if (segment.card or {}).get("label_edited"):
                card["label_edited"] = True
                label = segment.label
        else:
            segment = Segment(
                key=f"seg-{next_number}", kind=CLUSTER_KIND, first_run_id=run.id, created_at=now
            )
            next_number += 1
            session.add(segment)
            new_keys.append(segment.key)
            card["drift"] = None
        card["run_id"] = run.id
        segment.label = label
        segment.description = _description(description)
        segment.centroid = centers[index].astype(np.float32)
        segment.interest = _mean_interest(
            [interests[row] for row in np.flatnonzero(segment_of == index)]
        )
        segment.size = int(card["size"])
        segment.card = card
        segment.active = True
        segment.last_run_id = run.id
        segment_by_index[index] = segment
    session.flush()
    vanished: list[str] = []
    for segment in session.scalars(
        select(Segment).where(Segment.kind == CLUSTER_KIND, Segment.active.is_(True))
    ):
        if segment.last_run_id != run.id:
            segment.active = False
            vanished.append(segment.key)
    session.flush()

    segment_ids = {index: segment.id for index, segment in segment_by_index.items()}
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
    for start in range(0, len(rows), _INSERT_BATCH):
        session.execute(insert(SegmentMembership), rows[start : start + _INSERT_BATCH])
    session.flush()
    return SegmentationSummary(
        run_id=run.id,
        n_segments=k,
        quality=model.silhouette_,
        sizes={s.key: s.size for s in segment_by_index.values()},
        labels={s.key: s.label for s in segment_by_index.values()},
        new=new_keys,
        vanished=sorted(vanished),
        n_members=len(member_ids),
        skipped=skipped,
        algorithm=model.algorithm_,
    )


def _next_key_number(session: Session) -> int:
    numbers = [
        int(match.group(1))
        for key in session.scalars(select(Segment.key).where(Segment.key.like("seg-%")))
        if (match := _KEY_NUMBER.match(key))
    ]
    return max(numbers, default=0) + 1


def current_segments(session: Session) -> dict[int, int]:
    """Each member's segment in the latest segmentation run.

    Args:
        session: Database session.

    Returns:
        ``{member id: segment id}``; empty before the first run.
    """
    latest = session.scalar(select(func.max(SegmentationRun.id)))
    if latest is None:
        return {}
    rows = session.execute(
        select(SegmentMembership.member_id, SegmentMembership.segment_id)
        .where(SegmentMembership.run_id == latest)
        .order_by(SegmentMembership.member_id, SegmentMembership.id)
    )
    return {member_id: segment_id for member_id, segment_id in rows.tuples()}
