"""plan_segmentation on plain data: keys, labels, continuity and departures, without a database."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nurture.profiling import FeatureLayout
from nurture.segmentation import PreviousSegment, SegmentationInputs, plan_segmentation
from nurture.segmentation.segments import CENTROID_SPACE
from tests.stand_ins import Question, Questionnaire, options

QUESTIONNAIRE = Questionnaire(
    [Question("role", "single_choice", options("founder", "maintainer", "organiser"))]
)
LAYOUT = FeatureLayout.from_questionnaire(QUESTIONNAIRE, 0)
GROUPS = {"founder": 12, "maintainer": 10, "organiser": 8}
"""Each role's members: three groups of different sizes, one answer column each."""


def _members() -> dict[str, list[int]]:
    ids = iter(range(101, 200))
    return {role: [next(ids) for _ in range(size)] for role, size in GROUPS.items()}


MEMBERS = _members()


def _inputs(**changes) -> SegmentationInputs:
    rng = np.random.default_rng(0)
    member_ids, rows, answers, interests = [], [], {}, []
    for column, (role, ids) in enumerate(MEMBERS.items()):
        for member_id in ids:
            vector = rng.normal(0.0, 0.01, LAYOUT.n_features)
            vector[column] += 1.0
            member_ids.append(member_id)
            rows.append(vector)
            answers[member_id] = {"role": role}
            interests.append(np.eye(3, dtype=np.float32)[column])
    inputs = SegmentationInputs(
        layout_hash=LAYOUT.hash,
        member_ids=member_ids,
        features=np.stack(rows),
        interests=interests,
        stages=["active"] * len(member_ids),
        answers=answers,
        languages=dict.fromkeys(member_ids, "en"),
    )
    return dataclasses.replace(inputs, **changes)


def _previous(role: str, segment_id: int, key: str, **changes) -> PreviousSegment:
    inputs = _inputs()
    rows = [inputs.member_ids.index(member_id) for member_id in MEMBERS[role]]
    segment = PreviousSegment(
        id=segment_id,
        key=key,
        label=f"Old {role} label",
        label_edited=False,
        centroid=inputs.features[rows].mean(axis=0).astype(np.float32),
        layout_hash=LAYOUT.hash,
        centroid_space=CENTROID_SPACE,
        members=frozenset(MEMBERS[role]),
    )
    return dataclasses.replace(segment, **changes)


def _plan(inputs: SegmentationInputs, **options):
    plan = plan_segmentation(inputs, QUESTIONNAIRE, n_segments=3, **options)
    assert plan is not None
    return plan


def _key_of(plan) -> dict[int, str]:
    return {member_id: key for member_id, key, _ in plan.memberships}


def _role_of_key(plan) -> dict[str, str]:
    key_of = _key_of(plan)
    return {key_of[ids[0]]: role for role, ids in MEMBERS.items()}


def test_a_first_run_numbers_new_segments_by_size_and_places_every_member() -> None:
    plan = _plan(_inputs(next_key_number=5))

    assert [(s.key, s.size, s.previous_id) for s in plan.segments] == [
        ("seg-5", 12, None),
        ("seg-6", 10, None),
        ("seg-7", 8, None),
    ]
    key_of = _key_of(plan)
    for role, ids in MEMBERS.items():
        assert len({key_of[member_id] for member_id in ids}) == 1, role
    assert _role_of_key(plan) == {"seg-5": "founder", "seg-6": "maintainer", "seg-7": "organiser"}
    assert all(distance >= 0 for _, _, distance in plan.memberships)
    founders = plan.segments[0]
    assert founders.label.startswith("Founder") and founders.card["suggested_label"]
    assert founders.card["drift"] is None and founders.card["label_edited"] is False
    assert founders.interest is not None
    assert np.linalg.norm(founders.interest) == pytest.approx(1.0)
    assert founders.centroid.dtype == np.float32 and founders.centroid[0] == pytest.approx(1, 0.1)
    assert (plan.deactivated, plan.vanished, plan.merged) == ([], [], {})
    assert plan.params["n_members"] == 30
    assert plan.params["feature_names_hash"] == LAYOUT.hash
    assert plan.params["centroids"] == CENTROID_SPACE


def test_segments_continue_with_their_key_and_label_and_a_gone_one_is_merged() -> None:
    previous = [
        _previous("founder", 1, "seg-1"),
        _previous("maintainer", 2, "seg-2"),
        _previous("organiser", 3, "seg-3"),
        # A segment whose members all went to the founders' segment: merged into it.
        _previous("founder", 4, "seg-4", centroid=np.full(LAYOUT.n_features, 5, np.float32)),
    ]
    plan = _plan(_inputs(previous=previous, next_key_number=5))

    continued = {s.key: (s.previous_id, s.label) for s in plan.segments}
    assert continued == {
        "seg-1": (1, "Old founder label"),
        "seg-2": (2, "Old maintainer label"),
        "seg-3": (3, "Old organiser label"),
    }
    assert _role_of_key(plan) == {"seg-1": "founder", "seg-2": "maintainer", "seg-3": "organiser"}
    assert all(s.card["drift"] == pytest.approx(0, abs=0.5) for s in plan.segments)
    assert (plan.deactivated, plan.vanished, plan.merged) == ([4], [], {"seg-4": "seg-1"})


def test_a_gone_segment_whose_members_scattered_vanishes() -> None:
    scattered = frozenset(member for ids in MEMBERS.values() for member in ids[:3])
    previous = [
        _previous("founder", 1, "seg-1"),
        _previous("maintainer", 2, "seg-2"),
        _previous("organiser", 3, "seg-3"),
        _previous(
            "founder",
            4,
            "seg-4",
            centroid=np.full(LAYOUT.n_features, 5, np.float32),
            members=scattered,
        ),
    ]
    plan = _plan(_inputs(previous=previous))
    assert (plan.deactivated, plan.vanished, plan.merged) == ([4], ["seg-4"], {})


def test_refreshing_labels_keeps_only_the_edited_one() -> None:
    previous = [
        _previous("founder", 1, "seg-1", label="Our founders", label_edited=True),
        _previous("maintainer", 2, "seg-2"),
        _previous("organiser", 3, "seg-3"),
    ]
    plan = _plan(_inputs(previous=previous), refresh_labels=True)
    assert plan.warm_started  # as many previous centroids as clusters: k-means starts there
    labels = {s.key: s.label for s in plan.segments}
    assert labels["seg-1"] == "Our founders"
    assert plan.segments[0].card["label_edited"] is True
    assert (
        labels["seg-2"]
        == next(s for s in plan.segments if s.key == "seg-2").card["suggested_label"]
    )
    assert labels["seg-2"] != "Old maintainer label"


def test_another_layout_matches_segments_by_their_members() -> None:
    previous = [
        _previous("organiser", 7, "seg-7", layout_hash="another layout"),
        _previous("founder", 8, "seg-8", layout_hash="another layout"),
    ]
    plan = _plan(_inputs(previous=previous, next_key_number=9))
    assert not plan.warm_started
    assert {s.key: s.previous_id for s in plan.segments} == {"seg-8": 8, "seg-9": None, "seg-7": 7}
    assert _role_of_key(plan) == {"seg-8": "founder", "seg-9": "maintainer", "seg-7": "organiser"}
    assert all(s.card["drift"] is None for s in plan.segments)


def test_a_label_another_active_segment_has_gets_the_key_unless_edited() -> None:
    first = _plan(_inputs())
    taken = [s.label for s in first.segments[:2]]
    plan = _plan(_inputs(other_labels=taken))
    assert [s.label for s in plan.segments] == [
        f"{taken[0]} (seg-1)",
        f"{taken[1]} (seg-2)",
        first.segments[2].label,
    ]
    edited = [_previous("founder", 1, "seg-1", label=taken[0], label_edited=True)]
    kept = _plan(_inputs(previous=edited, other_labels=taken))
    assert kept.segments[0].label == taken[0]


def test_too_few_profiles_plan_nothing_and_another_questionnaire_is_refused() -> None:
    assert plan_segmentation(_inputs(member_ids=[101]), QUESTIONNAIRE) is None
    assert plan_segmentation(_inputs(layout_hash=None), QUESTIONNAIRE) is None
    with pytest.raises(ValueError, match="another questionnaire"):
        plan_segmentation(_inputs(layout_hash="stale"), QUESTIONNAIRE)


def _many_inputs(n_members: int) -> SegmentationInputs:
    """``n_members`` members in the three roles, every one's features in memory."""
    rng = np.random.default_rng(3)
    columns = rng.integers(0, 3, n_members)
    features = rng.normal(0.0, 0.05, (n_members, LAYOUT.n_features)).astype(np.float32)
    features[np.arange(n_members), columns] += 1.0
    member_ids = list(range(1001, 1001 + n_members))
    roles = list(GROUPS)
    return SegmentationInputs(
        layout_hash=LAYOUT.hash,
        member_ids=member_ids,
        features=features,
        interests=[np.eye(3, dtype=np.float32)[column] for column in columns],
        stages=["active"] * n_members,
        answers={m: {"role": roles[c]} for m, c in zip(member_ids, columns, strict=True)},
        languages=dict.fromkeys(member_ids, "en"),
    )


def test_placing_members_chunk_by_chunk_gives_what_holding_every_row_gives() -> None:
    everyone = _many_inputs(90)
    rows = np.sort(np.random.default_rng(42).choice(90, 40, replace=False))
    chunks: list[int] = []

    def read_features():
        for start in range(0, 90, 25):
            chunks.append(start)
            yield everyone.features[start : start + 25]

    sampled = dataclasses.replace(
        everyone,
        member_ids=np.asarray(everyone.member_ids),
        features=everyone.features[rows],
        interests=[everyone.interests[row] for row in rows],
        stages=[everyone.stages[row] for row in rows],
        answers={
            everyone.member_ids[row]: everyone.answers[everyone.member_ids[row]] for row in rows
        },
        described=rows,
        sampled=rows,
        read_features=read_features,
    )
    # Every row held: the model draws the same 40 rows to fit on (same seed, same size).
    held = _plan(
        dataclasses.replace(sampled, features=everyone.features, sampled=None, read_features=None),
        fit_size=40,
        seed=42,
    )
    streamed = _plan(sampled, fit_size=40, seed=42)

    assert chunks == [0, 25, 50, 75]
    assert list(streamed.memberships) == list(held.memberships)
    assert len(streamed.memberships) == 90
    assert [(s.key, s.size, s.label) for s in streamed.segments] == [
        (s.key, s.size, s.label) for s in held.segments
    ]
    for mine, theirs in zip(streamed.segments, held.segments, strict=True):
        np.testing.assert_array_equal(mine.centroid, theirs.centroid)
        np.testing.assert_array_equal(mine.interest, theirs.interest)


def test_a_sample_without_a_way_to_read_every_row_is_refused() -> None:
    everyone = _many_inputs(30)
    rows = np.arange(0, 30, 2)
    sampled = dataclasses.replace(everyone, features=everyone.features[rows], sampled=rows)
    with pytest.raises(ValueError, match="read_features"):
        _plan(sampled, fit_size=15)
