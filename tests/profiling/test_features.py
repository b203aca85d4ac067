from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from nurture.profiling import (
    EVENT_TYPES,
    ActivitySummary,
    FeatureLayout,
    activity_features,
    answer_features,
)

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


def test_layout_names_blocks_and_hash(questionnaire) -> None:
    layout = FeatureLayout.from_questionnaire(questionnaire, 8)
    assert layout.names[:7] == (
        "role=founder",
        "role=marketer",
        "role=developer",
        "goals=grow_members",
        "goals=run_events",
        "goals=measure_roi",
        "experience",
    )
    assert layout.blocks["choices"] == slice(0, 7)
    assert layout.blocks["text"] == slice(7, 15)
    assert layout.blocks["activity"] == slice(15, 15 + 2 + 4 * len(EVENT_TYPES))
    assert layout.names[15] == "activity:recency_log_days"
    assert layout.names[16:19] == ("activity:post:7d", "activity:post:30d", "activity:post:90d")
    assert "activity:mix:event_attended" in layout.names
    assert layout.names[-1] == "activity:email_click_per_open"
    assert not any(name.startswith(("secret", "birthday")) for name in layout.names)
    assert layout.hash == FeatureLayout.from_questionnaire(questionnaire, 8).hash
    assert layout.hash != FeatureLayout.from_questionnaire(questionnaire, 16).hash
    assert FeatureLayout.for_feature_count(questionnaire, layout.n_features).hash == layout.hash
    with pytest.raises(ValueError, match="re-run profiling"):
        FeatureLayout.for_feature_count(questionnaire, 3)


def test_answer_features_one_hot_and_scale(questionnaire) -> None:
    layout = FeatureLayout.from_questionnaire(questionnaire, 8)
    values = answer_features(
        layout,
        {"role": "marketer", "goals": ["run_events", "measure_roi", "unknown"], "experience": 4},
    )
    np.testing.assert_array_equal(values, [0, 1, 0, 0, 1, 1, 0.75])
    missing = answer_features(layout, {})
    np.testing.assert_array_equal(missing, [0, 0, 0, 0, 0, 0, 0.5])


def test_activity_features() -> None:
    summary = ActivitySummary()
    summary.add("post", last_at=NOW - dt.timedelta(days=2), total=5, windows={7: 1, 30: 3, 90: 5})
    summary.add(
        "email_open", last_at=NOW - dt.timedelta(days=9), total=4, windows={7: 0, 30: 4, 90: 4}
    )
    summary.add(
        "email_click", last_at=NOW - dt.timedelta(days=9), total=1, windows={7: 0, 30: 1, 90: 1}
    )
    values = activity_features(summary, NOW - dt.timedelta(days=400), NOW)
    assert values[0] == pytest.approx(math.log1p(2))
    post = 1 + 3 * EVENT_TYPES.index("post")
    assert values[post : post + 3] == pytest.approx([math.log1p(1), math.log1p(3), math.log1p(5)])
    # The mix: each type's share of the 10 events of the last 90 days.
    mix = dict(zip(EVENT_TYPES, values[1 + 3 * len(EVENT_TYPES) : -1], strict=True))
    assert mix == pytest.approx(
        {
            "post": 0.5,
            "comment": 0.0,
            "event_attended": 0.0,
            "content_view": 0.0,
            "email_open": 0.4,
            "email_click": 0.1,
        }
    )
    assert values[-1] == pytest.approx(0.25)

    never = activity_features(ActivitySummary(), NOW - dt.timedelta(days=10), NOW)
    assert never[0] == pytest.approx(math.log1p(10))
    assert not np.any(never[1:])
