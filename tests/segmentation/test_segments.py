from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sqlalchemy import select

from nurture.embedding import HashingEmbedder
from nurture.profiling import build_profiles
from nurture.segmentation import current_segments, segment_members
from nurture.storage.models import Segment, SegmentationRun, SegmentMembership

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


def test_rerun_keeps_segment_ids_and_edited_labels(session, questionnaire, population) -> None:
    first = profile_and_segment(session, questionnaire)
    before = current_segments(session)
    edited = session.scalars(select(Segment).where(Segment.key == "seg-1")).one()
    edited.label = "Our founders"
    edited.card = {**edited.card, "label_edited": True}
    session.commit()

    second = profile_and_segment(session, questionnaire)
    after = current_segments(session)
    assert second.run_id != first.run_id
    assert after == before
    assert second.new == [] and second.vanished == []
    assert second.labels["seg-1"] == "Our founders"
    assert second.labels["seg-2"] == first.labels["seg-2"]
    segment = session.scalars(select(Segment).where(Segment.key == "seg-1")).one()
    assert segment.card["label_edited"] is True
    assert segment.card["drift"] is not None and segment.card["drift"] < 1e-6
    assert session.query(Segment).count() == 4


def test_fewer_segments_deactivates_the_unmatched(session, questionnaire, population) -> None:
    profile_and_segment(session, questionnaire)
    summary = profile_and_segment(session, questionnaire, n_segments=3)
    assert summary.n_segments == 3
    assert len(summary.vanished) == 1
    assert summary.new == []
    active = session.scalars(select(Segment).where(Segment.active.is_(True))).all()
    assert len(active) == 3
    assert set(current_segments(session).values()) == {segment.id for segment in active}


def test_nothing_to_segment(session, questionnaire) -> None:
    summary = segment_members(session, questionnaire=questionnaire, now=NOW)
    assert summary.run_id is None
    assert current_segments(session) == {}
