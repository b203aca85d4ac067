"""label_segments on plain data: labels from answers and words, a lifecycle fallback, no twins."""

from __future__ import annotations

import numpy as np

from nurture.segmentation import label_segments
from tests.stand_ins import Question, Questionnaire, options

QUESTIONNAIRE = Questionnaire(
    [
        Question("role", "single_choice", options("founder", "maintainer")),
        Question("goals", "multiple_choice", options("run_events", "grow")),
    ]
)


def test_a_label_joins_distinctive_answers_and_words_and_the_card_says_why() -> None:
    founders = [1, 2, 3]
    maintainers = [4, 5, 6]
    answers = {m: {"role": "founder"} for m in founders}
    answers |= {m: {"role": "maintainer"} for m in maintainers}
    texts = dict.fromkeys(founders, "pipeline and investors")
    texts |= {4: "github issues", 5: "pull requests", 6: "a pipeline of issues"}
    first, second = label_segments(
        QUESTIONNAIRE,
        founders + maintainers,
        np.array([0, 0, 0, 1, 1, 1]),
        answers,
        texts,
        lifecycle={1: "active", 2: "new", 3: "active"},
        distances=np.array([0.5, 0.1, 0.3, 0.0, 0.0, 0.0]),
    )
    # Words three members wrote, longer first at equal weight; one member's words are no topic.
    assert first.label == "Founder · 'investors, pipeline'"
    assert second.label == "Maintainer"  # 'issues': two members only
    assert first.card["size"] == 3 and first.card["share"] == 0.5
    assert first.card["lifecycle"] == {"active": 2, "new": 1}
    assert first.card["examples"] == [2, 3, 1]  # closest to the centre first
    assert first.card["top_terms"] == ["investors", "pipeline"]
    assert [entry["option"] for entry in first.card["distinctive"]] == ["founder"]


def test_nothing_distinctive_says_the_main_lifecycle_stage() -> None:
    same = {member_id: {"role": "founder"} for member_id in (1, 2, 3, 4)}
    quiet, mixed = label_segments(
        QUESTIONNAIRE,
        [1, 2, 3, 4],
        np.array([0, 0, 1, 1]),
        same,
        {},
        lifecycle={1: "at_risk", 2: "at_risk"},
    )
    assert quiet.label == "Mostly at risk members"
    assert mixed.label == "Mostly unknown members"
    (alone,) = label_segments(QUESTIONNAIRE, [1, 2], np.array([0, 0]), same, {})
    assert alone.label == "Mixed members"
    assert alone.card["examples"] == [1, 2]


def test_two_segments_that_would_read_the_same_get_a_spare_answer_then_a_number() -> None:
    answers = {
        1: {"role": "maintainer", "goals": ["grow"]},
        2: {"role": "maintainer", "goals": ["grow"]},
        3: {"role": "maintainer", "goals": ["run_events"]},
        4: {"role": "maintainer", "goals": ["run_events"]},
        5: {"role": "founder", "goals": ["grow"]},
        6: {"role": "founder", "goals": ["grow", "run_events"]},
        7: {"role": "founder", "goals": ["grow", "run_events"]},
        8: {"role": "founder", "goals": ["run_events"]},
    }
    segment_of = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    labels = [
        description.label
        for description in label_segments(
            QUESTIONNAIRE, list(answers), segment_of, answers, {}, label_answers=1
        )
    ]
    assert labels == ["Maintainer · Grow", "Maintainer · Run Events", "Founder"]
    twins = label_segments(QUESTIONNAIRE, [1, 2, 5], np.array([0, 1, 2]), answers, {})
    assert [description.label for description in twins][:2] == [
        "Maintainer (1)",
        "Maintainer (2)",
    ]
