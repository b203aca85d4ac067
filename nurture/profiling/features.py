"""Per-member raw features, as pure functions of one member's answers and activity."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from nurture.profiling.layout import ACTIVITY_WINDOWS, EVENT_TYPES, MIX_WINDOW, FeatureLayout
from nurture.profiling.lifecycle import ActivitySummary

__all__ = ["MAX_RECENCY_DAYS", "activity_features", "answer_features"]

MAX_RECENCY_DAYS = 3650.0
"""Days since the last activity are capped here before the log."""


def _chosen(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)]
    return []


def answer_features(layout: FeatureLayout, answers: Mapping[str, Any]) -> np.ndarray:
    """The ``choices`` block of a member's features: one-hot options and scales in 0..1.

    Unknown options are ignored; a missing scale answer is the middle of the scale (0.5), so that
    not answering reads as neither low nor high.

    Args:
        layout: The feature layout.
        answers: ``{question key: stored answer value}`` of one member.

    Returns:
        A float32 vector of the ``choices`` block's width.
    """
    block = layout.blocks["choices"]
    out = np.zeros(block.stop - block.start, dtype=np.float32)
    for key, columns in layout.choice_columns.items():
        for option in _chosen(answers.get(key)):
            column = columns.get(option)
            if column is not None:
                out[column - block.start] = 1.0
    for key, (column, low, high) in layout.scale_columns.items():
        value = answers.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            scaled = (float(value) - low) / (high - low) if high > low else 0.5
            out[column - block.start] = min(1.0, max(0.0, scaled))
        else:
            out[column - block.start] = 0.5
    return out


def activity_features(
    summary: ActivitySummary, joined_at: dt.datetime, now: dt.datetime
) -> np.ndarray:
    """The ``activity`` block of a member's features.

    ``log1p`` of the days since the last activity (since joining for a member never active,
    capped at :data:`MAX_RECENCY_DAYS`); ``log1p`` of the count of each event type over 7 / 30 /
    90 days; each event type's share of the member's events over the last 90 days (all zero
    without any); and clicks per open over all time (0 with neither; capped at 1, since clicks
    without a tracked open happen).

    Args:
        summary: The member's activity up to ``now``.
        joined_at: When the member joined.
        now: The time of the computation.

    Returns:
        A float32 vector of the ``activity`` block's width.
    """
    since = summary.last_activity_at or joined_at
    days = min(MAX_RECENCY_DAYS, max(0.0, (now - since).total_seconds() / 86400.0))
    values = [math.log1p(days)]
    no_events: dict[int, int] = {}
    recent = []
    for event_type in EVENT_TYPES:
        counts = summary.counts.get(event_type, no_events)
        values.extend([math.log1p(counts.get(w, 0)) for w in ACTIVITY_WINDOWS])
        recent.append(counts.get(MIX_WINDOW, 0))
    total = sum(recent)
    values.extend(count / total if total else 0.0 for count in recent)
    opens = summary.totals.get("email_open", 0)
    clicks = summary.totals.get("email_click", 0)
    if opens:
        values.append(min(1.0, clicks / opens))
    else:
        values.append(1.0 if clicks else 0.0)
    return np.asarray(values, dtype=np.float32)
