"""Holdouts and splits: stable keyed draws, control enrolled and sent nothing, arms recorded."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.orm import Session

from nurture.journeys import advance_journeys, journey_status, load_journey
from nurture.journeys.experiments import choose_variant, draw_fraction, in_holdout
from nurture.journeys.models import JourneyDefinition, SplitStep, parse_share
from nurture.journeys.policy import SendingRules
from nurture.journeys.simulate import simulate_journeys
from nurture.storage.models import EnrollmentState, ExitReason, Member
from tests.journeys.engine_helpers import enrollments, journey, messages, no_content, send

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
ROOT = Path(__file__).parents[2]
SALT = "test-salt"
JOINED = {"type": "member_joined"}


def _split(*weights: int) -> tuple[dict[str, object], ...]:
    variants = [
        {"name": f"v{index}", "weight": weight, "next": f"send_v{index}"}
        for index, weight in enumerate(weights)
    ]
    return (
        {"id": "pick", "type": "split", "variants": variants},
        *(send(f"send_v{index}", "done") for index in range(len(weights))),
        {"id": "done", "type": "exit"},
    )


def _add_members(session: Session, count: int) -> None:
    session.execute(
        insert(Member),
        [
            {
                "email": f"m{n}@example.org",
                "first_name": f"M{n}",
                "joined_at": NOW - dt.timedelta(days=1),
            }
            for n in range(count)
        ],
    )
    session.flush()


# --- pure draws -------------------------------------------------------------------------


def test_parse_share() -> None:
    assert parse_share("10%") == pytest.approx(0.1)
    assert parse_share("2.5 %") == pytest.approx(0.025)
    for bad in ("10", "0%", "60%", "-5%", "ten%"):
        with pytest.raises(ValueError, match="share"):
            parse_share(bad)


def test_draws_are_stable_keyed_and_uniform() -> None:
    assert draw_fraction(SALT, "welcome", "1") == draw_fraction(SALT, "welcome", "1")
    assert draw_fraction(SALT, "welcome", "1") != draw_fraction("other", "welcome", "1")
    assert draw_fraction(SALT, "welcome", "1") != draw_fraction(SALT, "thanks", "1")
    values = [draw_fraction(SALT, "j", str(n)) for n in range(10_000)]
    assert all(0 <= value < 1 for value in values)
    deciles = Counter(int(value * 10) for value in values)
    assert all(900 < deciles[d] < 1100 for d in range(10))


def test_holdout_share_is_within_binomial_tolerance() -> None:
    definition = journey(JOINED, holdout="10%")
    held = sum(in_holdout(definition, member_id, SALT) for member_id in range(1, 2001))
    sd = math.sqrt(2000 * 0.1 * 0.9)
    assert abs(held - 200) < 4 * sd
    assert not any(in_holdout(journey(JOINED), member_id, SALT) for member_id in range(1, 200))


def test_variants_follow_their_weights() -> None:
    definition = journey(JOINED, *_split(3, 1))
    step = definition.split_step
    assert isinstance(step, SplitStep)
    names = Counter(choose_variant(definition, step, n, SALT).name for n in range(4000))
    sd = math.sqrt(4000 * 0.75 * 0.25)
    assert abs(names["v0"] - 3000) < 4 * sd
    assert names["v0"] + names["v1"] == 4000


def test_a_split_is_checked() -> None:
    with pytest.raises(ValidationError, match="kept for the holdout"):
        JourneyDefinition.model_validate(
            {
                "id": "j",
                "name": "J",
                "category": "care",
                "trigger": JOINED,
                "steps": [
                    {
                        "id": "pick",
                        "type": "split",
                        "variants": [
                            {"name": "control", "next": "done"},
                            {"name": "b", "next": "done"},
                        ],
                    },
                    {"id": "done", "type": "exit"},
                ],
            }
        )
    with pytest.raises(ValidationError, match="at most one split"):
        journey(JOINED, *_split(1, 1)[:3], {**_split(1, 1)[0], "id": "again"})


def test_new_fields_leave_existing_hashes_alone() -> None:
    """Journeys that use no holdout, goal window or best hour keep the hash they had before
    these fields existed (so no new version is registered for them)."""
    before = {  # computed by nurture before holdout, goal.within and at existed
        ROOT / "tests/journeys/valid/minimal.yaml": "8e4dff1eafb55c8b306a4df35aa985eae3d038a1"
        "0f27a92f7da8b3f6d17e9740",
        ROOT / "content/journeys/reengagement.yaml": "ba3f9081ca36e5df9be001ab91dc5e8c5fdb68dd"
        "fcfe24d2d3ad0e2332e1d135",
    }
    for path, digest in before.items():
        assert load_journey(path).definition_hash == digest, path
    assert journey(JOINED).definition_hash != journey(JOINED, holdout="10%").definition_hash


# --- the engine ---------------------------------------------------------------------------


def test_holdout_of_ten_percent_on_2000_members(session: Session) -> None:
    _add_members(session, 2000)
    definition = journey(JOINED, holdout="10%")
    summary = advance_journeys(
        session, [definition], NOW, no_content, suppression_salt=SALT, chunk_size=1000
    )
    rows = enrollments(session)
    assert summary.enrolled == len(rows) == 2000
    control = [row for row in rows if row.arm == "control"]
    sd = math.sqrt(2000 * 0.1 * 0.9)
    assert abs(len(control) - 200) < 4 * sd
    assert all(
        row.state == EnrollmentState.EXITED and row.exit_reason == ExitReason.HOLDOUT
        for row in control
    )
    held = {row.member_id for row in control}
    sent = {message.member_id for message in messages(session)}
    assert len(sent) == 2000 - len(control)
    assert not held & sent
    # a later pass sends the control group nothing either, and draws the same members
    advance_journeys(
        session, [definition], NOW + dt.timedelta(days=1), no_content, suppression_salt=SALT
    )
    assert not held & {message.member_id for message in messages(session)}
    assert held == {m for m in range(1, 2001) if in_holdout(definition, m, SALT)}


def test_split_sends_each_member_their_variant_and_records_it(session: Session) -> None:
    _add_members(session, 200)
    definition = journey(JOINED, *_split(1, 1), holdout="10%")
    advance_journeys(session, [definition], NOW, no_content, suppression_salt=SALT)
    rows = enrollments(session)
    arms = Counter(row.arm for row in rows)
    assert set(arms) == {"control", "v0", "v1"}
    step_of = {message.member_id: message.step_id for message in messages(session)}
    for row in rows:
        if row.arm == "control":
            assert row.member_id not in step_of
        else:
            assert step_of[row.member_id] == f"send_{row.arm}"
            assert row.state == EnrollmentState.COMPLETED
            expected = choose_variant(definition, definition.split_step, row.member_id, SALT)
            assert row.arm == expected.name
    (status,) = journey_status(session, [definition])
    (version,) = status.versions
    assert version.held_out == arms["control"]
    assert version.arms == {"v0": arms["v0"], "v1": arms["v1"]}
    assert version.enrolled == 200 and version.exited_other == {}
    assert status.to_dict()["versions"][0]["held_out"] == arms["control"]


def test_a_simulation_counts_the_arms_and_sends_control_nothing(session: Session) -> None:
    _add_members(session, 300)
    session.commit()
    definition = journey(JOINED, *_split(1, 1), holdout="10%")

    report = simulate_journeys(
        session,
        [definition],
        start=NOW,
        days=1,
        rules=SendingRules(budget=None, quiet_hours=None),
        pick_content=no_content,
        suppression_salt=SALT,
    )

    arms = report.arms["journey"]
    assert set(arms) == {"control", "v0", "v1"} and sum(arms.values()) == 300
    held = {m for m in range(1, 301) if in_holdout(definition, m, SALT)}
    assert arms["control"] == len(held)
    assert not held & {send.member_id for send in report.sends}
    assert len(report.sends) == 300 - len(held)
    assert report.to_dict()["arms"]["journey"] == arms
    assert enrollments(session) == []  # nothing kept
