import datetime as dt
import re

import pytest
from sqlalchemy import select

from nurture.orchestration import run_cycle
from nurture.reports import mask_email, member_display_name, segment_cards
from nurture.runtime import Runtime
from nurture.storage import Segment, SegmentMembership
from nurture.workspace import load_questionnaire
from tests.pipeline_helpers import NOW

from .conftest import N_MEMBERS, add_founders_rule_segment

MASKED = re.compile(r"^[^()@]+ \(\w\*\*\*@[\w.-]+\)$")


def _cards(runtime: Runtime, now: dt.datetime = NOW):
    questionnaire = load_questionnaire(runtime.settings.questionnaire_path)
    with runtime.session() as session:
        return segment_cards(session, now, questionnaire=questionnaire)


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("ada@example.org", "a***@example.org"),
        ("a@b.co", "a***@b.co"),
        ("first.last+tag@mail.example.com", "f***@mail.example.com"),
        ("not-an-email", "***"),
    ],
)
def test_mask_email_keeps_one_letter_and_the_domain(email: str, masked: str) -> None:
    assert mask_email(email) == masked


def test_member_display_name_shows_first_name_and_last_initial() -> None:
    assert member_display_name("Ada", "Lovelace", "ada@example.org") == "Ada L. (a***@example.org)"
    assert member_display_name("Ada", "", "ada@example.org") == "Ada (a***@example.org)"
    assert member_display_name("", "Lovelace", "ada@example.org") == "a***@example.org"


def test_no_segments_no_cards(runtime: Runtime) -> None:
    assert _cards(runtime) == []


def test_cards_describe_every_cluster_segment(community: Runtime) -> None:
    cards = _cards(community, NOW + dt.timedelta(days=1))

    with community.session() as session:
        stored = {s.key: s for s in session.scalars(select(Segment))}
    assert [card.kind for card in cards] == ["cluster"] * len(cards)
    assert {card.key for card in cards} == set(stored)
    assert sum(card.size for card in cards) == N_MEMBERS
    assert sum(card.share for card in cards) == pytest.approx(1.0, abs=0.01)
    assert [card.size for card in cards] == sorted((card.size for card in cards), reverse=True)
    for card in cards:
        assert card.label == stored[card.key].label
        assert card.label and not card.label.startswith("Mixed")
        assert card.distinctive, card.key
        for feature in card.distinctive:
            assert feature.lift > 1
            assert feature.share > feature.overall_share
            assert feature.describe().startswith(f"{feature.question} = {feature.label}: ")
            assert f"(×{feature.lift:.1f})" in feature.describe()
        assert card.top_terms
        assert sum(card.lifecycle.values()) == card.size
        assert 1 <= len(card.examples) <= 3
        assert all(MASKED.match(example) for example in card.examples), card.examples
        assert card.drift.first_run
        assert set(card.drift.describe().values()) == {"first run"}
        assert card.run_age_days == 1.0


def test_drift_since_the_previous_run(community: Runtime) -> None:
    run_cycle(community, NOW + dt.timedelta(days=20), lists=("nightly",))  # lifecycles move on

    cards = _cards(community)

    assert sum(card.size for card in cards) == N_MEMBERS
    moved_in = moved_out = 0
    for card in cards:
        drift = card.drift
        assert not drift.first_run
        assert drift.previous_size is not None and drift.size_change is not None
        assert drift.previous_size + drift.size_change == card.size
        assert drift.new_members == 0  # the same members, segmented again
        assert drift.came_from_share == pytest.approx(
            sum(drift.came_from.values()) / card.size, abs=1e-3
        )
        assert card.key not in drift.came_from and card.key not in drift.left_to
        moved_in += sum(drift.came_from.values())
        moved_out += sum(drift.left_to.values())
        if drift.previous_size:
            assert drift.centroid_shift is not None and drift.centroid_shift >= 0
        assert "first run" not in drift.describe().values()
    # Every member who changed segment came from another one; those who left a segment that
    # vanished are not on any card's "left to".
    with community.session() as session:
        first, second = sorted(set(session.scalars(select(SegmentMembership.run_id))))
        rows = session.execute(
            select(SegmentMembership.run_id, SegmentMembership.member_id, Segment.key).join(
                Segment, Segment.id == SegmentMembership.segment_id
            )
        ).all()
    before = {member: key for run, member, key in rows if run == first}
    after = {member: key for run, member, key in rows if run == second}
    moved = sum(before[member] != after[member] for member in after)
    assert moved_in == moved
    assert moved_out <= moved


def test_a_rule_segment_gets_a_computed_card(community: Runtime) -> None:
    founders = add_founders_rule_segment(community)

    cards = _cards(community)

    assert sum(card.size for card in cards if card.kind == "cluster") == N_MEMBERS
    card = cards[-1]  # clusters come first
    assert (card.key, card.kind, card.size) == ("founders", "rule", len(founders))
    assert card.description == 'role == "founder"'
    assert card.share == pytest.approx(len(founders) / N_MEMBERS, abs=1e-3)
    role = next(f for f in card.distinctive if f.question == "role")
    assert (role.option, role.label, role.share) == ("founder", "Founder or executive", 1.0)
    assert role.lift == pytest.approx(N_MEMBERS / len(founders), abs=0.01)
    assert card.top_terms
    assert sum(card.lifecycle.values()) == card.size
    assert card.examples and all(MASKED.match(example) for example in card.examples)
    assert card.drift.first_run


def test_without_the_questionnaire_a_rule_card_leaves_answers_out(community: Runtime) -> None:
    with community.session() as session:
        rule = Segment(key="everyone", label="Everyone", kind="rule")
        session.add(rule)
        session.flush()
        run_id = session.scalars(select(Segment.last_run_id)).first()
        assert run_id is not None
        session.add(SegmentMembership(run_id=run_id, member_id=1, segment_id=rule.id))
    with community.session() as session:
        cards = segment_cards(session, NOW)

    card = next(card for card in cards if card.key == "everyone")
    assert (card.size, card.distinctive, card.top_terms) == (1, [], [])
    assert len(card.examples) == 1
    # Cluster cards still come whole from what segmentation stored.
    assert all(card.distinctive for card in cards if card.kind == "cluster")
