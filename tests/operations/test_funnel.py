"""``journey_funnel``: per journey and send step, from entry to goal."""

from __future__ import annotations

import dataclasses
import json

from sqlalchemy.orm import Session

from nurture.operations import FunnelRow, FunnelStage, journey_funnel, journey_funnels
from nurture.storage.models import EnrollmentState, MessageStatus
from tests.operations.conftest import Rows


def test_an_empty_database_has_no_funnel(session: Session) -> None:
    assert journey_funnel(session) == []


def test_a_journey_that_sent_nothing_has_zero_rows_in_step_order(
    session: Session, rows: Rows
) -> None:
    rows.journey("welcome", ["send_welcome", "send_followup"])

    funnel = journey_funnel(session)

    assert [(row.journey, row.step, row.template) for row in funnel] == [
        ("welcome", "send_welcome", "welcome_send_welcome"),
        ("welcome", "send_followup", "welcome_send_followup"),
    ]
    assert funnel[0] == FunnelRow(
        journey="welcome",
        step="send_welcome",
        template="welcome_send_welcome",
        entered=0,
        reached=0,
        sent=0,
        delivered=0,
        opened=0,
        clicked=0,
        goal_reached=0,
        suppressed=0,
        failed=0,
        open_rate=None,
        click_rate=None,
    )


def test_the_funnel_counts_each_stage_per_step(session: Session, rows: Rows) -> None:
    v1 = rows.journey("welcome", ["send_welcome", "send_old"], version=1)
    v2 = rows.journey("welcome", ["send_welcome", "send_tips", "send_followup"], version=2)
    goal = rows.enrollment(v1, state=EnrollmentState.EXITED, exit_reason="goal")
    done = rows.enrollment(v1, state=EnrollmentState.COMPLETED)
    consent = rows.enrollment(v2, state=EnrollmentState.EXITED, exit_reason="consent")
    active = rows.enrollment(v2, current_step="send_tips")
    rows.enrollment(rows.journey("digest", ["send_digest"]))

    by_status = rows.message(goal, "send_welcome", delivery_status="delivered")
    by_event = rows.message(done, "send_welcome")
    opened_only = rows.message(consent, "send_welcome")
    rows.message(active, "send_welcome", MessageStatus.FAILED, error="550 no such user")
    rows.event(by_event, "delivered")
    rows.event(by_event, "open")
    rows.event(by_event, "click")
    rows.event(opened_only, "open")
    rows.event(opened_only, "open")
    rows.event(by_status, "processed")
    rows.message(goal, "send_old")
    rows.message(done, "send_tips", MessageStatus.SUPPRESSED, error="unsubscribed")
    rows.message(active, "send_tips", MessageStatus.QUEUED)
    session.commit()

    funnel = {(row.journey, row.step): row for row in journey_funnel(session)}

    assert list(funnel) == [
        ("digest", "send_digest"),
        ("welcome", "send_welcome"),
        ("welcome", "send_tips"),
        ("welcome", "send_followup"),
        ("welcome", "send_old"),  # only the first version had it: after the current steps
    ]
    welcome = funnel["welcome", "send_welcome"]
    assert (welcome.entered, welcome.goal_reached) == (4, 1)
    assert (welcome.reached, welcome.sent, welcome.failed, welcome.suppressed) == (4, 3, 1, 0)
    assert (welcome.delivered, welcome.opened, welcome.clicked) == (3, 2, 1)
    assert (welcome.open_rate, welcome.click_rate) == (round(2 / 3, 3), round(1 / 3, 3))
    tips = funnel["welcome", "send_tips"]
    assert (tips.reached, tips.sent, tips.suppressed, tips.entered) == (2, 0, 1, 4)
    assert tips.open_rate is None
    assert funnel["welcome", "send_old"].template is None
    assert funnel["welcome", "send_old"].sent == 1
    assert funnel["digest", "send_digest"].entered == 1


def test_a_click_without_an_open_event_counts_as_an_open(session: Session, rows: Rows) -> None:
    journey = rows.journey("welcome", ["send_welcome"])
    message = rows.message(rows.enrollment(journey), "send_welcome")
    rows.event(message, "click")
    rows.event(message, "click")
    session.commit()

    (row,) = journey_funnel(session)

    assert (row.delivered, row.opened, row.clicked) == (1, 1, 1)


def test_rows_are_json_ready(session: Session, rows: Rows) -> None:
    rows.journey("welcome", ["send_welcome"])
    session.commit()

    assert json.loads(json.dumps([dataclasses.asdict(r) for r in journey_funnel(session)]))


def test_a_journey_funnel_runs_from_entry_through_each_step_to_the_exits(
    session: Session, rows: Rows
) -> None:
    v1 = rows.journey("welcome", ["send_welcome"], version=1)
    v2 = rows.journey("welcome", ["send_welcome", "send_tips"], version=2)
    goal = rows.enrollment(v1, state=EnrollmentState.EXITED, exit_reason="goal")
    done = rows.enrollment(v1, state=EnrollmentState.COMPLETED)
    rows.enrollment(v2, state=EnrollmentState.EXITED, exit_reason="consent")
    rows.enrollment(v2, state=EnrollmentState.EXITED, exit_reason="consent")
    rows.enrollment(v2, state=EnrollmentState.EXITED, exit_reason="missing_step")
    active = rows.enrollment(v2, current_step="send_tips")
    opened = rows.message(goal, "send_welcome")
    rows.event(opened, "open")
    rows.message(done, "send_welcome", delivery_status="delivered")
    rows.message(active, "send_welcome", MessageStatus.FAILED, error="550 no such user")
    rows.message(done, "send_tips")
    session.commit()

    (funnel,) = journey_funnels(session)

    assert (funnel.journey, funnel.name, funnel.entered) == ("welcome", "Welcome", 6)
    assert (funnel.in_progress, funnel.completed, funnel.goal_reached, funnel.exited) == (
        1,
        1,
        1,
        3,
    )
    assert funnel.exit_reasons == {"consent": 2, "missing_step": 1}
    assert [row.step for row in funnel.steps] == ["send_welcome", "send_tips"]
    stages = funnel.stages()
    assert [stage.stage for stage in stages] == [
        "entered",
        *["sent", "delivered", "opened", "clicked"] * 2,
        "goal_reached",
        "completed",
        "exited",
        "in_progress",
    ]
    by_label = {stage.label: stage for stage in stages}
    assert by_label["entered"] == FunnelStage("entered", None, 6, 1.0)
    assert by_label["send_welcome: sent"] == FunnelStage("sent", "send_welcome", 2, 0.333)
    assert by_label["send_welcome: delivered"].count == 2  # an open implies delivery
    assert by_label["send_welcome: opened"].count == 1
    assert by_label["send_tips: sent"].count == 1
    assert by_label["exited"] == FunnelStage("exited", None, 3, 0.5)
    assert by_label["goal reached"].share == 0.167
    assert json.loads(json.dumps([dataclasses.asdict(stage) for stage in stages]))


def test_a_funnel_nobody_entered_has_no_shares(session: Session, rows: Rows) -> None:
    rows.journey("digest", ["send_digest"])
    session.commit()

    (funnel,) = journey_funnels(session)

    assert funnel.entered == 0
    assert {stage.share for stage in funnel.stages()} == {None}
    assert {stage.count for stage in funnel.stages()} == {0}
