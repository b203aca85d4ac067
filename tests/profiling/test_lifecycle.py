from __future__ import annotations

import datetime as dt

import pytest

from nurture.profiling import ActivitySummary, lifecycle_stage
from nurture.storage.models import LifecycleStage

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
EPS = dt.timedelta(seconds=1)


def days(n: float) -> dt.datetime:
    return NOW - dt.timedelta(days=n)


def activity(last_days_ago: float | None, contributions: int = 0) -> ActivitySummary:
    summary = ActivitySummary()
    if last_days_ago is not None:
        summary.add(
            "post" if contributions else "content_view",
            last_at=days(last_days_ago),
            total=max(1, contributions),
            windows={7: 0, 30: 0, 90: max(1, contributions)},
        )
    return summary


@pytest.mark.parametrize(
    ("joined", "summary", "expected"),
    [
        (days(7) + EPS, activity(None), "new"),
        (days(7), activity(None), "onboarding"),
        (days(30) + EPS, activity(None), "onboarding"),
        (days(30), activity(None), "at_risk"),
        (days(90) + EPS, activity(None), "at_risk"),
        (days(90), activity(None), "dormant"),
        (days(200), activity(30), "at_risk"),
        (days(200), activity(30 - 1e-4), "active"),
        (days(200), activity(90 - 1e-4), "at_risk"),
        (days(200), activity(90), "dormant"),
        (days(200), activity(1, contributions=2), "active"),
        (days(200), activity(1, contributions=3), "contributor"),
        (days(200), activity(1, contributions=14), "contributor"),
        (days(200), activity(1, contributions=15), "ambassador"),
        (days(200), activity(31, contributions=20), "at_risk"),
        (days(2), activity(1, contributions=3), "contributor"),
        (days(2), activity(1), "new"),
        (days(20), activity(1), "onboarding"),
    ],
)
def test_lifecycle_rules_at_boundaries(joined, summary, expected) -> None:
    assert lifecycle_stage(joined, summary, NOW) == expected
    assert expected in list(LifecycleStage)
