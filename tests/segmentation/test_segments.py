from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sqlalchemy import delete, select

from nurture.embedding import HashingEmbedder
from nurture.profiling import build_profiles
from nurture.segmentation import (
    current_segments,
    effective_segments,
    rename_segment,
    segment_members,
)
from nurture.storage.models import (
    Segment,
    SegmentAssignment,
    SegmentationRun,
    SegmentMembership,
)

from .conftest import NOW, ROLES


def profile_and_segment(session, questionnaire, **kwargs):
    build_profiles(session, HashingEmbedder(32), questionnaire, NOW)
    summary = segment_members(session, questionnaire=questionnaire, now=NOW, **kwargs)
    session.commit()
    return summary


def test_segmentation_recovers_groups_with_labels(session, questionnaire, population) -> None:
    summary = profile_and_segment(session, questionnaire)
    assert summary.n_segments == 4
    assert summary.quality is not None and summary.quality > 0.2
    assert sorted(summary.new) == ["seg-1", "seg-2", "seg-3", "seg-4"]
    assert summary.vanished == []
    assert sorted(summary.sizes.values()) == [30, 30, 30, 30]

    assignment = current_segments(session)
    members = sorted(population)
    ari = adjusted_rand_score([population[m] for m in members], [assignment[m] for m in members])
    assert ari >= 0.9

    labels = sorted(summary.labels.values())
    for role_label in ROLES.values():
        assert sum(label.startswith(role_label) for label in labels) == 1
    founders = next(label for label in labels if label.startswith("Founder"))
    assert "'" in founders  # top terms of the free text

    segments = session.scalars(select(Segment).order_by(Segment.key)).all()
    for segment in segments:
        assert segment.active
        assert segment.centroid is not None
        assert np.linalg.norm(segment.interest) == pytest.approx(1.0, abs=1e-5)
        assert len(segment.card["examples"]) == 3
        assert segment.card["distinctive"]
        assert segment.card["top_terms"]
    run = session.scalars(select(SegmentationRun)).one()
    assert run.params["feature_names_hash"]
    assert session.query(SegmentMembership).count() == 120


def test_rerun_keeps_segment_ids_and_labels(session, questionnaire, population) -> None:
    first = profile_and_segment(session, questionnaire)
    before = current_segments(session)
    renamed = rename_segment(session, "seg-1", "  Our   founders ")
    session.commit()
    assert renamed.label == "Our founders" and renamed.label_edited

    second = profile_and_segment(session, questionnaire)
    after = current_segments(session)
    assert second.run_id != first.run_id
    assert after == before
    assert second.warm_started
    assert second.new == [] and second.vanished == [] and second.merged == {}
    assert second.labels["seg-1"] == "Our founders"
    assert second.labels["seg-2"] == first.labels["seg-2"]
    segment = session.scalars(select(Segment).where(Segment.key == "seg-1")).one()
    assert segment.label_edited is True
    assert segment.card["label_edited"] is True  # mirrored for readers of the card
    assert segment.card["suggested_label"] == first.labels["seg-1"]
    assert segment.card["drift"] is not None and segment.card["drift"] < 1e-3
    assert session.query(Segment).count() == 4


def test_refreshing_labels_never_touches_an_edited_one(session, questionnaire, population) -> None:
    profile_and_segment(session, questionnaire)
    rename_segment(session, "seg-1", "Our founders")
    plain = session.scalars(select(Segment).where(Segment.key == "seg-2")).one()
    plain.label = "An old automatic label"
    session.commit()

    summary = profile_and_segment(session, questionnaire, refresh_labels=True)
    assert summary.labels["seg-1"] == "Our founders"
    assert summary.labels["seg-2"] == plain.card["suggested_label"] != "An old automatic label"


def test_rename_segment_resets_and_refuses(session, questionnaire, population) -> None:
    first = profile_and_segment(session, questionnaire)
    rename_segment(session, "seg-3", "Event people")
    reset = rename_segment(session, "seg-3", None)
    assert reset.label == first.labels["seg-3"] and not reset.label_edited
    assert reset.card["label_edited"] is False
    with pytest.raises(LookupError, match="no segment has the key 'seg-99'"):
        rename_segment(session, "seg-99", "x")
    with pytest.raises(ValueError, match="cannot be empty"):
        rename_segment(session, "seg-3", "   ")
    with pytest.raises(ValueError, match="at most 300"):
        rename_segment(session, "seg-3", "x" * 301)


def test_fewer_segments_reports_the_merged_one(session, questionnaire, population) -> None:
    profile_and_segment(session, questionnaire)
    summary = profile_and_segment(session, questionnaire, n_segments=3)
    assert summary.n_segments == 3
    assert summary.new == []
    assert summary.vanished == []
    ((gone, into),) = summary.merged.items()
    assert into in summary.sizes and gone not in summary.sizes
    active = session.scalars(select(Segment).where(Segment.active.is_(True))).all()
    assert len(active) == 3
    assert set(current_segments(session).values()) == {segment.id for segment in active}
    # Members of the merged segment moved at once: their segment no longer exists.
    assert set(effective_segments(session).values()) == {segment.id for segment in active}


def test_more_segments_reports_a_new_one(session, questionnaire, population) -> None:
    profile_and_segment(session, questionnaire, n_segments=3)
    summary = profile_and_segment(session, questionnaire, n_segments=4)
    assert summary.n_segments == 4
    assert summary.new == ["seg-4"]
    assert summary.vanished == [] and summary.merged == {}


def member_keys(session) -> dict[int, str]:
    keys = dict(session.execute(select(Segment.id, Segment.key)).tuples().all())
    return {member: keys[segment] for member, segment in current_segments(session).items()}


def test_same_input_gives_the_same_segments(session, questionnaire, population) -> None:
    first = profile_and_segment(session, questionnaire)
    before = member_keys(session)
    # Forget every run, as if on a fresh database holding the same profiles.
    for model in (SegmentAssignment, SegmentMembership, Segment, SegmentationRun):
        session.execute(delete(model))
    session.commit()
    second = segment_members(session, questionnaire=questionnaire, now=NOW)
    session.commit()
    assert second.labels == first.labels and second.sizes == first.sizes
    assert member_keys(session) == before


def test_a_new_feature_layout_keeps_ids_by_shared_members(
    session, questionnaire, population
) -> None:
    profile_and_segment(session, questionnaire)
    before = current_segments(session)
    # Another embedding dimension: a feature layout the old centroids do not live in.
    build_profiles(session, HashingEmbedder(48), questionnaire, NOW)
    summary = segment_members(session, questionnaire=questionnaire, now=NOW)
    session.commit()
    assert not summary.warm_started
    assert summary.new == [] and summary.vanished == [] and summary.merged == {}
    assert current_segments(session) == before


def test_nothing_to_segment(session, questionnaire) -> None:
    summary = segment_members(session, questionnaire=questionnaire, now=NOW)
    assert summary.run_id is None
    assert current_segments(session) == {}


def test_a_large_community_is_labelled_from_a_sample(session, questionnaire, population) -> None:
    # 120 members, fitted and labelled on 60 of them: sizes still count everyone.
    summary = profile_and_segment(session, questionnaire, fit_size=60)
    assert summary.n_segments == 4
    assert sum(summary.sizes.values()) == 120
    labels = sorted(summary.labels.values())
    for role_label in ROLES.values():
        assert sum(label.startswith(role_label) for label in labels) == 1
    for segment in session.scalars(select(Segment)).all():
        assert segment.card["described"] == 60
        assert segment.card["size"] == segment.size
        assert np.linalg.norm(segment.interest) == pytest.approx(1.0, abs=1e-5)
