"""Evaluation data: temporal cut-off, warm and cold members, candidates, relevance."""

import datetime as dt

import numpy as np
import pytest

from nurture.evaluation import EvaluationData, Interactions, temporal_cutoff

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_the_cutoff_leaves_the_last_share_as_test() -> None:
    times = [T0 + dt.timedelta(days=day) for day in (9, 0, 3, 1, 7, 2, 4, 8, 6, 5)]
    cutoff = temporal_cutoff(times, 0.2)
    assert cutoff == T0 + dt.timedelta(days=8)
    assert sum(time >= cutoff for time in times) == 2
    assert temporal_cutoff(times, 0.5) == T0 + dt.timedelta(days=5)


def test_the_cutoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        temporal_cutoff([T0], 1.0)
    with pytest.raises(ValueError, match="no interactions"):
        temporal_cutoff([], 0.2)


def _data(**extra: object) -> EvaluationData:
    # members 0..3, items 0..3
    # member 0: trained on item 0, tested on items 0 (again) and 1 (weight 2)
    # member 1: trained on item 2, no test
    # member 2: no training, tested on item 3
    # member 3: nothing at all
    return EvaluationData.build(
        member_keys=["a", "b", "c", "d"],
        item_keys=["i0", "i1", "i2", "i3"],
        train=Interactions.of([0, 1], [0, 2]),
        test=Interactions.of([0, 0, 2], [0, 1, 3], [1.0, 2.0, 1.0]),
        now=T0,
        **extra,  # type: ignore[arg-type]
    )


def test_test_pairs_already_seen_in_training_are_left_out() -> None:
    data = _data()
    assert len(data.test) == 2
    assert data.counts["test_interactions_already_in_train"] == 1
    assert data.relevance(np.array([0, 2])).tolist() == [[0, 2, 0, 0], [0, 0, 0, 1]]


def test_warm_and_cold_start_members() -> None:
    data = _data()
    assert data.members_to_evaluate("warm").tolist() == [0]
    assert data.members_to_evaluate("cold-start").tolist() == [2]


def test_candidates_leave_out_training_items_unavailable_items_and_other_languages() -> None:
    data = _data(
        item_ok=np.array([True, True, True, False]),
        member_language=["en", "fr", "en", "en"],
        item_language=["en", "en", "fr", "en"],
    )
    assert data.candidates(np.array([0, 1, 2])).tolist() == [
        [False, True, False, False],  # item 0 seen, item 2 in French, item 3 unavailable
        [False, False, False, False],  # a French member, the only French item seen
        [True, True, False, False],
    ]


def test_languages_count_only_when_both_sides_have_them() -> None:
    data = _data(member_language=["en", "fr", "en", "en"])
    assert data.member_language is None
    assert data.candidates(np.array([1])).tolist() == [[True, True, False, True]]


def test_interactions_check_their_lengths() -> None:
    with pytest.raises(ValueError, match="as many members, items and weights"):
        Interactions.of([0, 1], [0])
