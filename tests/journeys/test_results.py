"""Journey results on seeded communities: a true difference shows, no data says so."""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import insert
from sqlalchemy.orm import Session

from nurture.journeys import advance_journeys
from nurture.journeys.results import journey_results
from nurture.storage.models import ActivityEvent, Member
from tests.journeys.engine_helpers import enrollments, journey, no_content, send

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
SALT = "results-salt"
RATES = {"control": 0.10, "short": 0.12, "long": 0.30}


def _experiment(**rules: object):  # type: ignore[no-untyped-def]
    return journey(
        {"type": "member_joined"},
        {
            "id": "pick",
            "type": "split",
            "variants": [
                {"name": "short", "next": "send_short"},
                {"name": "long", "next": "send_long"},
            ],
        },
        send("send_short", "done"),
        send("send_long", "done"),
        {"id": "done", "type": "exit"},
        goal={"events": ["post"], "within": "30d"},
        **rules,
    )


def _seed(session: Session, members: int, holdout: str = "20%") -> object:
    session.execute(
        insert(Member),
        [
            {"email": f"m{n}@example.org", "first_name": f"M{n}", "joined_at": NOW}
            for n in range(members)
        ],
    )
    definition = _experiment(holdout=holdout)
    advance_journeys(session, [definition], NOW, no_content, suppression_salt=SALT)
    rows = enrollments(session)
    draw = random.Random(7)
    events = []
    for row in rows:
        if draw.random() < RATES[row.arm or "control"]:
            at = NOW + dt.timedelta(days=draw.uniform(1, 29))
            events.append((row.member_id, "post", at))
        if draw.random() < 0.5:  # some activity around day 25 for retention
            events.append((row.member_id, "comment", NOW + dt.timedelta(days=25)))
    # a post after the window is not a conversion
    events.append((rows[0].member_id, "post", NOW + dt.timedelta(days=35)))
    session.execute(
        insert(ActivityEvent),
        [
            {"member_id": m, "type": kind, "occurred_at": at, "idempotency_key": f"e{index}"}
            for index, (m, kind, at) in enumerate(events)
        ],
    )
    session.flush()
    return definition


def test_results_show_the_arm_that_truly_converts_more(session: Session) -> None:
    definition = _seed(session, 3000)
    found = journey_results(session, definition, NOW + dt.timedelta(days=40))
    arms = {arm.arm: arm for arm in found.arms}
    assert found.reference == "control"
    assert [arm.arm for arm in found.arms] == ["control", "short", "long"]
    assert sum(arm.enrolled for arm in found.arms) == 3000
    assert 450 < arms["control"].enrolled < 750
    long = arms["long"]
    assert long.conversion is not None and long.comparison is not None
    assert abs(long.conversion.rate - 0.30) < 0.05
    assert long.comparison.significant
    assert 0.1 < long.comparison.low < long.comparison.difference < long.comparison.high
    assert long.comparison.p_value < 0.001
    assert found.needed_per_arm and found.needed_per_arm > 100
    assert not [note for note in found.notes if "not enough data" in note]
    # retention on day 30 is measured, day 60 and 90 not yet (nobody enrolled that long ago)
    assert long.retention[30].total == long.enrolled
    assert 0.6 < long.retention[30].rate < 0.7  # 1 - (1 - 0.5) * (1 - 0.3): comment or post
    assert long.retention[90].total == 0
    assert found.to_dict()["arms"][2]["comparison"]["significant"] is True


def test_results_say_not_enough_data(session: Session) -> None:
    definition = _seed(session, 40)
    found = journey_results(session, definition, NOW + dt.timedelta(days=40))
    assert any("not enough data" in note for note in found.notes)
    assert all(arm.comparison is None or not arm.comparison.significant for arm in found.arms)


def test_members_still_in_their_window_are_not_counted(session: Session) -> None:
    definition = _seed(session, 100)
    found = journey_results(session, definition, NOW + dt.timedelta(days=10))
    assert all(arm.conversion is not None and arm.conversion.total == 0 for arm in found.arms)
    assert sum(arm.in_window for arm in found.arms) == 100
    assert any("still within the goal window" in note for note in found.notes)
