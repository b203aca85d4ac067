"""A 2-D map of members coloured by segment: their profiles projected by PCA."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from nurture.profiling.layout import FeatureLayout, QuestionnaireLike
from nurture.reports.cards import SegmentCard
from nurture.segmentation import SegmentModel
from nurture.storage.models import MemberProfile, Segment, SegmentationRun, SegmentMembership

__all__ = ["DEFAULT_MAP_SAMPLE", "MapPoint", "segment_map"]

DEFAULT_MAP_SAMPLE = 3000
"""Most members drawn on the map."""

_IN_BATCH = 1000


@dataclass(frozen=True)
class MapPoint:
    """One member on the map.

    Attributes:
        x: First principal component.
        y: Second principal component.
        segment: Key of the member's segment (its cluster when it is in several).
    """

    x: float
    y: float
    segment: str


def _segment_of_members(session: Session, cards: Sequence[SegmentCard]) -> dict[int, str]:
    """Each member's segment key: the first card (clusters come first) holding them."""
    keys_by_run: dict[int, list[str]] = {}
    for card in cards:
        if card.run_id is not None:
            keys_by_run.setdefault(card.run_id, []).append(card.key)
    if not keys_by_run:
        return {}
    rows = session.execute(
        select(SegmentMembership.member_id, Segment.key)
        .join(Segment, Segment.id == SegmentMembership.segment_id)
        .where(
            or_(
                *(
                    and_(SegmentMembership.run_id == run_id, Segment.key.in_(keys))
                    for run_id, keys in keys_by_run.items()
                )
            )
        )
    )
    rank = {card.key: index for index, card in enumerate(cards)}
    chosen: dict[int, str] = {}
    for member_id, key in rows.tuples():
        if member_id not in chosen or rank[key] < rank[chosen[member_id]]:
            chosen[member_id] = key
    return chosen


def _scaled(
    session: Session,
    features: np.ndarray,
    cards: Sequence[SegmentCard],
    questionnaire: QuestionnaireLike | None,
    seed: int,
) -> np.ndarray:
    """Features in the block-weighted space the clustering works in, when it can be rebuilt.

    Raw columns have unrelated scales (one-hot answers, embeddings, log counts): the segment
    model's scaling gives each block the weight it had in the clustering. A one-segment fit
    learns only that scaling (k-means with one centroid costs next to nothing).
    """
    blocks = None
    if questionnaire is not None:
        try:
            blocks = FeatureLayout.for_feature_count(questionnaire, features.shape[1]).blocks
        except ValueError:
            blocks = None  # profiles of another questionnaire: scale all columns as one block
    run_id = next((card.run_id for card in cards if card.run_id is not None), None)
    run = session.get(SegmentationRun, run_id) if run_id is not None else None
    weights = (run.params or {}).get("block_weights") if run is not None else None
    if blocks is None:
        weights = None
    model = SegmentModel(n_segments=1, block_weights=weights, random_state=seed)
    return model.fit(features, blocks=blocks).scale(features)


def segment_map(
    session: Session,
    cards: Sequence[SegmentCard],
    *,
    questionnaire: QuestionnaireLike | None = None,
    sample_size: int = DEFAULT_MAP_SAMPLE,
    seed: int = 42,
) -> list[MapPoint]:
    """Project a sample of the segments' members to 2-D, for the report's map.

    The profiles are scaled as the clustering scaled them (block weights of the run, which needs
    ``questionnaire`` for the blocks), then a PCA fitted on the sample keeps two components.
    Profiles of another feature layout than the majority's (stale ones) are left out.

    Args:
        session: Database session (only read).
        cards: The cards from :func:`~nurture.reports.segment_cards`.
        questionnaire: The workspace questionnaire, for the feature blocks.
        sample_size: Most members on the map.
        seed: Seed of the sample and of the PCA.

    Returns:
        One point per sampled member, in member id order.
    """
    segment_of = _segment_of_members(session, cards)
    ids = sorted(segment_of)
    if len(ids) > sample_size:
        rng = np.random.default_rng(seed)
        ids = sorted(int(i) for i in rng.choice(ids, size=sample_size, replace=False))
    rows: list[tuple[int, np.ndarray, str]] = []
    for start in range(0, len(ids), _IN_BATCH):
        batch = ids[start : start + _IN_BATCH]
        rows.extend(
            session.execute(
                select(
                    MemberProfile.member_id,
                    MemberProfile.features,
                    MemberProfile.feature_names_hash,
                ).where(MemberProfile.member_id.in_(batch))
            ).tuples()
        )
    if not rows:
        return []
    layout_hash = Counter(row[2] for row in rows).most_common(1)[0][0]
    rows = sorted((row for row in rows if row[2] == layout_hash), key=lambda row: row[0])
    members = [row[0] for row in rows]
    if len(rows) < 2:
        return [MapPoint(0.0, 0.0, segment_of[member_id]) for member_id in members]
    features = np.stack([row[1] for row in rows]).astype(np.float64)
    scaled = _scaled(session, features, cards, questionnaire, seed)
    if np.ptp(scaled, axis=0).max() < 1e-12:  # every member alike: nothing to project
        return [MapPoint(0.0, 0.0, segment_of[member_id]) for member_id in members]
    n_components = min(2, *scaled.shape)
    projected = PCA(n_components=n_components, random_state=seed).fit_transform(scaled)
    if n_components < 2:
        projected = np.hstack([projected, np.zeros((len(projected), 2 - n_components))])
    return [
        MapPoint(float(x), float(y), segment_of[member_id])
        for member_id, (x, y) in zip(members, projected, strict=True)
    ]
