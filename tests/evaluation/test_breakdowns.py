"""Figures per group of members (language, length of history), curves and timings, on tiny data."""

import datetime as dt
import math

import numpy as np
import pytest

from nurture.evaluation import (
    ENGINE,
    RECOMMENDERS,
    EvaluationData,
    Interactions,
    breakdown_metrics,
    history_bucket,
    member_groups,
    rank_and_score,
    timings_of,
    training_items,
)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_history_buckets_are_0_1_to_5_and_6_or_more() -> None:
    labels = history_bucket(np.array([0, 1, 5, 6, 40]))
    assert labels.tolist() == ["0", "1-5", "1-5", "6+", "6+"]


def _data() -> EvaluationData:
    """Four members, eight items; members 0, 1 speak en, member 2 fr, member 3 en (cold start).

    Training: member 0 has item 0 twice (one distinct item), member 1 items 0..5 (six), member 2
    item 7. Test: member 0 item 1, member 1 item 6, member 2 item 3, member 3 item 2.
    """
    train = Interactions.of([0, 0, 1, 1, 1, 1, 1, 1, 2], [0, 0, 0, 1, 2, 3, 4, 5, 7])
    test = Interactions.of([0, 1, 2, 3], [1, 6, 3, 2])
    return EvaluationData.build(
        member_keys=["m0", "m1", "m2", "m3"],
        item_keys=[f"i{index}" for index in range(8)],
        train=train,
        test=test,
        now=NOW,
        member_language=["en", "en", "fr", "en"],
        item_language=["en", "en", "en", "fr", "en", "en", "en", "fr"],
    )


def test_training_items_counts_distinct_items() -> None:
    data = _data()
    assert training_items(data, np.array([0, 1, 2, 3])).tolist() == [1, 6, 1, 0]
    assert training_items(data, np.array([2, 0])).tolist() == [1, 1]


def test_members_are_grouped_by_language_and_history_without_empty_groups() -> None:
    data = _data()
    rows = data.members_to_evaluate("warm")  # members 0, 1, 2

    groups = member_groups(data, rows)

    assert list(groups) == ["language", "history"]
    assert {name: mask.tolist() for name, mask in groups["language"].items()} == {
        "en": [True, True, False],
        "fr": [False, False, True],
    }
    assert list(groups["language"]) == ["en", "fr"]  # most members first
    assert {name: mask.tolist() for name, mask in groups["history"].items()} == {
        "1-5": [True, False, True],
        "6+": [False, True, False],
    }
    cold = member_groups(data, data.members_to_evaluate("cold-start"))
    assert {name: mask.tolist() for name, mask in cold["history"].items()} == {"0": [True]}


def test_without_languages_there_is_no_language_grouping() -> None:
    data = _data()
    plain = EvaluationData.build(
        member_keys=data.member_keys,
        item_keys=data.item_keys,
        train=data.train,
        test=data.test,
        now=NOW,
    )
    assert list(member_groups(plain, plain.members_to_evaluate("warm"))) == ["history"]


def test_the_breakdowns_and_curves_are_the_engines_figures_per_group() -> None:
    data = _data()
    rows = data.members_to_evaluate("warm")
    # The engine lists the held-out item first for member 0 (en), third for member 1 (en) and
    # not at all for member 2 (fr); its lists are scored as they are.
    engine = np.array([[1, 2, 3], [7, 3, 6], [6, 5, -1]])

    runs = rank_and_score(data, rows, engine, 3, seed=7, engine_seconds=2.5)
    groups = member_groups(data, rows)
    figures = breakdown_metrics(runs, groups, data.n_items, 3)

    assert list(runs) == list(RECOMMENDERS)
    english = figures["language"]["en"]
    assert english["members"] == 2
    assert english["metrics"][ENGINE]["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert english["metrics"][ENGINE]["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert english["metrics"][ENGINE]["coverage@3"] == pytest.approx(5 / 8)  # 1, 2, 3, 6, 7
    french = figures["language"]["fr"]
    assert french["members"] == 1 and french["metrics"][ENGINE]["hit_rate@3"] == 0.0
    assert figures["history"]["6+"]["members"] == 1
    assert figures["history"]["6+"]["metrics"][ENGINE]["recall@3"] == 1.0
    for grouping in figures.values():
        assert sum(group["members"] for group in grouping.values()) == len(rows)
        for group in grouping.values():
            assert list(group["metrics"]) == list(RECOMMENDERS)

    engine_run = runs[ENGINE]
    # member 0: hit at 1; member 1: hit at 3; member 2: none
    assert engine_run.curve("precision") == pytest.approx([1 / 3, 1 / 6, 2 / 9])
    assert engine_run.curve("ndcg")[0] == pytest.approx(1 / 3)
    assert engine_run.curve("precision")[-1] == pytest.approx(
        engine_run.summary(None, data.n_items, 3)["precision@3"]
    )


def test_each_recommender_is_timed() -> None:
    data = _data()
    rows = data.members_to_evaluate("warm")
    runs = rank_and_score(data, rows, np.full((len(rows), 3), -1), 3, seed=7, engine_seconds=2.5)

    timings = timings_of(runs)

    assert timings[ENGINE] == {"seconds": 2.5}
    for name in RECOMMENDERS[1:]:
        parts = timings[name]
        assert set(parts) == {"seconds", "fit_seconds", "rank_seconds"}
        assert min(parts.values()) >= 0
        assert parts["seconds"] == pytest.approx(parts["fit_seconds"] + parts["rank_seconds"])
    assert ENGINE not in timings_of(rank_and_score(data, rows, np.full((3, 3), -1), 3, seed=7))


def test_no_member_to_score_gives_no_figures() -> None:
    data = _data()
    rows = np.zeros(0, dtype=np.int64)
    runs = rank_and_score(data, rows, np.full((0, 3), -1), 3, seed=7)
    assert runs[ENGINE].summary(None, data.n_items, 3) == dict.fromkeys(
        ["precision@3", "recall@3", "ndcg@3", "hit_rate@3", "coverage@3"]
    )
    assert runs[ENGINE].curve("precision") == [None, None, None]
    assert breakdown_metrics(runs, member_groups(data, rows), data.n_items, 3) == {
        "language": {},
        "history": {},
    }
