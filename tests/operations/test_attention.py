"""``operator_attention``: what an operator should look at, in plain language."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy.orm import Session

from nurture.operations import AttentionThresholds, FlowRunSummary, operator_attention
from nurture.storage.models import MatchRun, MessageStatus
from tests.operations.conftest import NOW, Rows

HOUR = dt.timedelta(hours=1)


def _nightly_ran(session: Session, ago: dt.timedelta = 2 * HOUR) -> None:
    session.add(MatchRun(model="hashing-64", created_at=NOW - ago))
    session.flush()


def _only(items: list[str], *words: str) -> str:
    """The one item, checking it holds each of ``words``."""
    assert len(items) == 1, items
    for word in words:
        assert word in items[0], items[0]
    return items[0]


def _run(flow: str, state: str, ended: dt.datetime | None, **fields: str) -> FlowRunSummary:
    return FlowRunSummary(
        flow=flow,
        name=f"{flow}-{state.lower()}",
        state_type=fields.pop("state_type", state.upper()),
        state_name=state,
        start_time=(ended - HOUR).isoformat() if ended else None,
        end_time=ended.isoformat() if ended else None,
        **fields,
    )


HEALTHY_RUNS = [
    _run("nightly", "Completed", NOW - 3 * HOUR),
    _run("deliver", "Completed", NOW - HOUR / 4),
]


def test_an_empty_database_needs_nothing(session: Session) -> None:
    assert operator_attention(session, NOW) == []


def test_a_healthy_database_needs_nothing(session: Session, rows: Rows) -> None:
    _nightly_ran(session)
    journey = rows.journey("welcome", ["a", "b"])
    for _ in range(30):
        rows.message(rows.enrollment(journey), "a", delivery_status="delivered")
    rows.message(rows.enrollment(journey), "b", MessageStatus.QUEUED, scheduled_at=NOW + HOUR)
    rows.message(rows.enrollment(journey), "b", MessageStatus.FAILED, error="template error")
    rows.suppression("unsubscribed")
    session.commit()

    assert operator_attention(session, NOW) == []
    assert operator_attention(session, NOW, flow_runs=HEALTHY_RUNS) == []


def test_members_but_no_nightly_run_yet(session: Session, rows: Rows) -> None:
    rows.member()
    session.commit()

    _only(operator_attention(session, NOW), "No segmentation or match run yet", "nightly")


def test_no_nightly_work_for_too_long(session: Session, rows: Rows) -> None:
    rows.member()
    _nightly_ran(session, 30 * HOUR)
    session.commit()

    _only(operator_attention(session, NOW), "last 26 hours", "30 hours ago")
    relaxed = AttentionThresholds(nightly_within=dt.timedelta(hours=48))
    assert operator_attention(session, NOW, thresholds=relaxed) == []


def test_unknown_messages_are_to_be_resolved_with_the_provider(
    session: Session, rows: Rows
) -> None:
    _nightly_ran(session)
    journey = rows.journey("welcome", ["a"])
    unknown = [
        rows.message(rows.enrollment(journey), "a", MessageStatus.UNKNOWN, error="boom")
        for _ in range(2)
    ]
    session.commit()

    item = _only(operator_attention(session, NOW), "2 emails are in status unknown", "provider")
    assert f"ids {unknown[0].id}, {unknown[1].id})" in item


def test_emails_stuck_sending(session: Session, rows: Rows) -> None:
    _nightly_ran(session)
    journey = rows.journey("welcome", ["a", "b"])
    rows.message(rows.enrollment(journey), "a", MessageStatus.SENDING, claimed_at=NOW - 2 * HOUR)
    rows.message(rows.enrollment(journey), "b", MessageStatus.SENDING, claimed_at=NOW - HOUR / 6)
    session.commit()

    _only(operator_attention(session, NOW), "1 email stuck in status sending", "interrupted")


def test_a_high_failure_rate_names_the_top_reason(session: Session, rows: Rows) -> None:
    _nightly_ran(session)
    journey = rows.journey("welcome", ["a"])
    for _ in range(8):
        rows.message(rows.enrollment(journey), "a")
    for error in ("550 <a@example.org> unknown", "550 <b@example.org> unknown"):
        rows.message(rows.enrollment(journey), "a", MessageStatus.FAILED, error=error)
    # failures older than the period do not count
    for _ in range(5):
        rows.message(
            rows.enrollment(journey), "a", MessageStatus.FAILED, created_at=NOW - 30 * HOUR
        )
    session.commit()

    _only(
        operator_attention(session, NOW),
        "20% of the emails finished in the last 24 hours failed (2 of 10)",
        "most often: 550 <address> unknown (2)",
    )


def test_a_high_bounce_rate(session: Session, rows: Rows) -> None:
    _nightly_ran(session)
    journey = rows.journey("welcome", ["a"])
    for status in ["bounce", "dropped", *["delivered"] * 8]:
        rows.message(rows.enrollment(journey), "a", delivery_status=status)
    session.commit()

    _only(operator_attention(session, NOW), "20% of the emails sent", "bounced", "(2 of 10)")


def test_due_emails_waiting_too_long(session: Session, rows: Rows) -> None:
    _nightly_ran(session)
    journey = rows.journey("welcome", ["a", "b", "c"])
    rows.message(rows.enrollment(journey), "a", MessageStatus.QUEUED, scheduled_at=NOW - 3 * HOUR)
    rows.message(rows.enrollment(journey), "b", MessageStatus.QUEUED, scheduled_at=NOW - HOUR / 2)
    rows.message(rows.enrollment(journey), "c", MessageStatus.QUEUED, scheduled_at=NOW + HOUR)
    session.commit()

    _only(
        operator_attention(session, NOW),
        "1 due email is waiting",
        "the oldest for 3 hours",
        "deliver flow",
    )


def test_a_jump_in_suppressions(session: Session, rows: Rows) -> None:
    _nightly_ran(session)
    for day in range(1, 8):
        rows.suppression("unsubscribed", NOW - dt.timedelta(days=day, hours=2))
    for _ in range(6):
        rows.suppression("bounced", NOW - HOUR)
    session.commit()

    _only(
        operator_attention(session, NOW),
        "6 addresses suppressed in the last 24 hours",
        "against 1.0 a day",
        "bounced: 6",
    )


def test_a_usual_pace_of_suppressions_is_fine(session: Session, rows: Rows) -> None:
    _nightly_ran(session)
    for day in range(1, 8):
        for _ in range(5):
            rows.suppression("unsubscribed", NOW - dt.timedelta(days=day, hours=2))
    for _ in range(6):
        rows.suppression("unsubscribed", NOW - HOUR)
    session.commit()

    assert operator_attention(session, NOW) == []


def test_condition_errors_are_reported_when_given(session: Session) -> None:
    _only(operator_attention(session, NOW, condition_errors=3), "3 journey conditions", "false")


def test_retries_pending_show_the_latest_error(session: Session, rows: Rows) -> None:
    _nightly_ran(session)
    journey = rows.journey("welcome", ["a"])
    rows.message(
        rows.enrollment(journey),
        "a",
        MessageStatus.QUEUED,
        scheduled_at=NOW + HOUR,
        attempts=1,
        error="SMTP server busy (421)",
    )
    session.commit()

    _only(operator_attention(session, NOW), "1 email is waiting for another attempt", "421")


@pytest.mark.parametrize("state", ["Failed", "Crashed"])
def test_the_last_run_of_a_flow_failed(session: Session, state: str) -> None:
    runs = [
        *HEALTHY_RUNS,
        _run("deliver", state, NOW - HOUR / 6, message="Flow run encountered an exception"),
    ]

    _only(
        operator_attention(session, NOW, flow_runs=runs),
        f"The last deliver run (deliver-{state.lower()}) ended {state}",
        "encountered an exception",
    )


def test_a_failed_run_followed_by_a_completed_one_is_fine(session: Session) -> None:
    runs = [*HEALTHY_RUNS, _run("deliver", "Failed", NOW - HOUR)]

    assert operator_attention(session, NOW, flow_runs=runs) == []


def test_late_runs(session: Session) -> None:
    runs = [*HEALTHY_RUNS, _run("deliver", "Late", None, state_type="SCHEDULED")]

    _only(operator_attention(session, NOW, flow_runs=runs), "1 deliver run is late", "flows.serve")


def test_no_nightly_run_at_all_on_the_server(session: Session) -> None:
    runs = [_run("deliver", "Completed", NOW - HOUR)]

    _only(
        operator_attention(session, NOW, flow_runs=runs),
        "No nightly run on the Prefect server",
        "python -m flows.serve",
    )


def _scheduled(flow: str, *due: dt.datetime) -> list[FlowRunSummary]:
    return [
        FlowRunSummary(
            flow, f"{flow}-next-{n}", "SCHEDULED", "Scheduled", expected_start_time=at.isoformat()
        )
        for n, at in enumerate(due)
    ]


def test_a_nightly_that_completed_minutes_ago_is_not_stale_beside_its_next_runs(
    session: Session,
) -> None:
    runs = [
        *_scheduled("nightly", NOW + 23 * HOUR, NOW + 47 * HOUR, NOW + 71 * HOUR),
        _run("nightly", "Completed", NOW - HOUR / 4),
        *_scheduled("deliver", NOW + HOUR / 6, NOW + HOUR / 3),
        _run("deliver", "Completed", NOW - HOUR / 12),
    ]

    assert operator_attention(session, NOW, flow_runs=runs) == []


def test_a_deployment_whose_first_run_is_still_ahead_is_not_stale(session: Session) -> None:
    runs = _scheduled("nightly", NOW + HOUR, NOW + 25 * HOUR)

    assert operator_attention(session, NOW, flow_runs=runs) == []


def test_staleness_follows_the_schedule(session: Session) -> None:
    every_ten_minutes = _scheduled("deliver", *(NOW + n * HOUR / 6 for n in (1, 2, 3)))
    runs = [*HEALTHY_RUNS[:1], *every_ten_minutes, _run("deliver", "Completed", NOW - HOUR)]

    _only(
        operator_attention(session, NOW, flow_runs=runs),
        "No deliver run completed in the last 25 minutes (its schedule runs it every 10 "
        "minutes); the last one ended 60 minutes ago",
    )
    weekly = _scheduled("nightly", NOW + 24 * HOUR, NOW + 7 * 24 * HOUR + 24 * HOUR)
    runs = [*weekly, _run("nightly", "Completed", NOW - 3 * 24 * HOUR), HEALTHY_RUNS[1]]
    assert operator_attention(session, NOW, flow_runs=runs) == []


def test_a_run_that_completed_with_refused_input_needs_attention(session: Session) -> None:
    message = "nightly: import file members-x.csv refused (no email column); imported 0 files"
    runs = [_run("nightly", "Needs attention", NOW - HOUR, message=message), HEALTHY_RUNS[1]]
    runs[0] = dataclasses.replace(runs[0], state_type="COMPLETED")

    _only(
        operator_attention(session, NOW, flow_runs=runs),
        "The last nightly run (nightly-needs attention, 2026-11-01 08:00 UTC) completed but "
        "needs attention: import file members-x.csv refused (no email column)",
    )


def test_the_last_completed_nightly_run_is_too_old(session: Session) -> None:
    _nightly_ran(session)  # the database is not asked when flow runs are known
    runs = [_run("nightly", "Completed", NOW - 40 * HOUR), _run("deliver", "Completed", NOW)]

    _only(
        operator_attention(session, NOW, flow_runs=runs),
        "No nightly run completed in the last 26 hours",
        "40 hours ago",
    )


def test_flow_runs_may_be_mappings(session: Session) -> None:
    runs = [
        {
            "flow": "nightly",
            "name": "clever-fox",
            "state_type": "COMPLETED",
            "state_name": "Completed",
            "end_time": NOW - HOUR,
        },
        {"flow": "deliver", "name": "x", "state_type": "FAILED", "state_name": "Failed"},
    ]

    assert operator_attention(session, NOW, flow_runs=runs) == []
    with pytest.raises(ValueError, match="state_type"):
        operator_attention(session, NOW, flow_runs=[{"flow": "nightly", "name": "x"}])
