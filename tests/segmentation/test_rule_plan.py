"""Rule segments decided on plain data: who a rule holds for, what is stored, what goes."""

from __future__ import annotations

from array import array

import pytest

from nurture.segmentation import SegmentRule
from nurture.segmentation.rules import (
    RuleOutcome,
    StoredSegment,
    evaluate_rule,
    plan_rule_segments,
)
from nurture.storage.models import SegmentKind

FOUNDERS = SegmentRule(
    key="founders",
    label={"en": "Founders", "fr": "Fondateurs"},
    rule="answers.role == 'founder'",
)
VETERANS = SegmentRule(
    key="veterans",
    label={"en": "Veterans", "fr": "Vétérans"},
    description={"en": "Long-time members.", "fr": "Membres de longue date."},
    rule="answers.experience > 3",
)


def _context(role: str | None = None, experience: object = None) -> dict[str, object]:
    answers = {key: value for key, value in (("role", role), ("experience", experience)) if value}
    return {"member": {}, "answers": answers, "lifecycle": None, "activity": {}, "segment": None}


CONTEXTS = {
    1: _context("founder", 5),
    2: _context("founder"),
    3: _context("maintainer", "five"),
    4: _context(experience=4),
}


def test_a_rule_holds_for_the_members_it_describes_and_counts_failures() -> None:
    assert evaluate_rule(FOUNDERS, CONTEXTS) == RuleOutcome(members=array("q", [1, 2]))
    veterans = evaluate_rule(VETERANS, CONTEXTS)
    assert veterans.members.tolist() == [1, 4]  # member 2 never answered: the rule does not hold
    assert veterans.members.itemsize == 8  # eight bytes a member, not a Python integer
    assert veterans.errors == 1
    assert veterans.first_error is not None and veterans.first_error.startswith(
        "member 3: TypeError: "
    )


def test_new_and_stored_segments_get_labels_members_and_cards() -> None:
    outcomes = {rule.key: evaluate_rule(rule, CONTEXTS) for rule in (FOUNDERS, VETERANS)}
    stored = [StoredSegment(7, "veterans", SegmentKind.RULE)]

    plan = plan_rule_segments([FOUNDERS, VETERANS], outcomes, stored=stored, n_members=8)

    founders, veterans = plan.segments
    assert (founders.key, founders.stored_id, founders.label) == ("founders", None, "Founders")
    assert founders.description == "Members for whom answers.role == 'founder' holds."
    assert list(founders.members) == [1, 2]
    assert founders.card == {
        "size": 2,
        "share": 0.25,
        "rule": "answers.role == 'founder'",
        "labels": {"en": "Founders", "fr": "Fondateurs"},
        "descriptions": None,
        "errors": 0,
    }
    assert (veterans.stored_id, veterans.description) == (7, "Long-time members.")
    assert veterans.card["errors"] == 1
    assert plan.removed == []
    assert plan.errors == {"veterans": f"1 member(s), first: {outcomes['veterans'].first_error}"}


def test_rule_segments_no_longer_defined_go_and_cluster_keys_are_refused() -> None:
    stored = [
        StoredSegment(3, "old-rule", SegmentKind.RULE),
        StoredSegment(5, "founders", SegmentKind.RULE),
    ]
    outcomes = {"founders": RuleOutcome(members=array("q", [1]))}
    plan = plan_rule_segments([FOUNDERS], outcomes, stored=stored, n_members=0)
    assert plan.removed == [StoredSegment(3, "old-rule", SegmentKind.RULE)]
    assert plan.segments[0].stored_id == 5
    assert plan.segments[0].card["share"] == 0.0

    nothing = plan_rule_segments([], {}, stored=stored, n_members=4)
    assert (nothing.segments, [s.key for s in nothing.removed]) == ([], ["old-rule", "founders"])

    clash = [StoredSegment(1, "founders", SegmentKind.CLUSTER)]
    with pytest.raises(ValueError, match=r"already used by cluster segments: \['founders'\]"):
        plan_rule_segments([FOUNDERS], outcomes, stored=clash, n_members=4)
