"""plan_profiles on plain data: features, interest and stage of each member, without a database."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from nurture.profiling import (
    ActivitySummary,
    FeatureLayout,
    MemberFacts,
    interest_question_keys,
    plan_profiles,
)
from nurture.storage.models import LifecycleStage
from tests.stand_ins import Question, Questionnaire, options

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
QUESTIONNAIRE = Questionnaire(
    [
        Question("role", "single_choice", options("founder", "maintainer")),
        Question("goals", "multiple_choice", options("run_events", "grow")),
        Question("experience", "scale", min=1, max=5),
        Question("expectations", "free_text"),
    ]
)
LAYOUT = FeatureLayout.from_questionnaire(QUESTIONNAIRE, 2)
LABELS = {
    ("goals", "run_events"): np.array([0.0, 1.0], dtype=np.float32),
    ("goals", "grow"): np.array([1.0, 0.0], dtype=np.float32),
}


def _plan(facts):
    return plan_profiles(
        facts,
        layout=LAYOUT,
        label_vectors=LABELS,
        interest_keys=interest_question_keys(QUESTIONNAIRE),
        now=NOW,
    )


def test_a_member_profile_is_answers_text_and_activity_in_layout_order() -> None:
    activity = ActivitySummary()
    activity.add(
        "post", last_at=NOW - dt.timedelta(days=2), total=20, windows={7: 5, 30: 16, 90: 20}
    )
    facts = MemberFacts(
        joined_at=NOW - dt.timedelta(days=400),
        answers={"role": "maintainer", "goals": ["run_events"], "experience": 4},
        activity=activity,
        text_vectors={"expectations": np.array([0.6, 0.8], dtype=np.float32)},
    )

    (profile,) = _plan({7: facts}).values()

    assert profile.features.dtype == np.float32
    assert profile.features.shape == (LAYOUT.n_features,)
    choices = profile.features[LAYOUT.blocks["choices"]].tolist()
    assert choices == [0.0, 1.0, 1.0, 0.0, 0.75]  # role, goals, experience (4 on 1..5)
    assert profile.features[LAYOUT.blocks["text"]].tolist() == pytest.approx([0.6, 0.8])
    activity_block = profile.features[LAYOUT.blocks["activity"]]
    assert activity_block[0] == pytest.approx(math.log1p(2))
    # The interest is the unit mean of the free text and the chosen goal's label.
    assert profile.interest == pytest.approx(np.array([0.6, 1.8]) / np.linalg.norm([0.6, 1.8]))
    assert profile.lifecycle_stage is LifecycleStage.AMBASSADOR


def test_a_member_without_answers_or_activity_gets_defaults_and_no_interest() -> None:
    facts = {1: MemberFacts(joined_at=NOW - dt.timedelta(days=3))}

    profile = _plan(facts)[1]

    assert profile.features[LAYOUT.blocks["choices"]].tolist() == [0, 0, 0, 0, 0.5]
    assert not np.any(profile.features[LAYOUT.blocks["text"]])
    assert profile.interest is None
    assert profile.lifecycle_stage is LifecycleStage.NEW


def test_members_keep_their_order_and_unknown_options_count_for_nothing() -> None:
    facts = {
        5: MemberFacts(joined_at=NOW - dt.timedelta(days=60), answers={"goals": ["grow", "fly"]}),
        2: MemberFacts(joined_at=NOW - dt.timedelta(days=20), answers={"role": "astronaut"}),
    }
    profiles = _plan(facts)
    assert list(profiles) == [5, 2]
    assert profiles[5].interest == pytest.approx([1.0, 0.0])
    assert profiles[2].interest is None
    assert not np.any(profiles[2].features[:2])
    assert [p.lifecycle_stage for p in profiles.values()] == [
        LifecycleStage.AT_RISK,
        LifecycleStage.ONBOARDING,
    ]
