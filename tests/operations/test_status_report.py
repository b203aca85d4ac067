"""``status_report``: flow runs, messages, suppressions and attention items, JSON-ready."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from sqlalchemy.orm import Session

from nurture.operations import FlowRunSummary, status_report
from nurture.storage.models import MatchRun, MessageStatus
from tests.operations.conftest import NOW, Rows

HOUR = dt.timedelta(hours=1)


def test_an_empty_database_has_a_quiet_status(session: Session) -> None:
    report = status_report(session, NOW)

    assert report.flow_runs is None
    assert report.last_nightly_work is None
    assert report.last_sent_at is None
    assert report.delivery.total == 0
    assert report.suppressions.total == 0
    assert report.attention == ()
    assert report.generated_at == NOW.isoformat()


def test_the_status_gathers_everything(session: Session, rows: Rows) -> None:
    session.add(MatchRun(model="hashing-64", created_at=NOW - 2 * HOUR))
    journey = rows.journey("welcome", ["a"])
    sent = rows.message(rows.enrollment(journey), "a", sent_at=NOW - HOUR)
    rows.message(rows.enrollment(journey), "a", MessageStatus.UNKNOWN, error="boom")
    rows.suppression("bounced")
    session.commit()
    runs = [
        FlowRunSummary(
            "deliver", "older", "COMPLETED", "Completed", (NOW - 2 * HOUR).isoformat(), None
        ),
        {
            "flow": "nightly",
            "name": "night",
            "state_type": "COMPLETED",
            "state_name": "Completed",
            "start_time": NOW - 5 * HOUR,
            "end_time": NOW - 4 * HOUR,
        },
        FlowRunSummary("deliver", "newer", "RUNNING", "Running", (NOW - HOUR).isoformat()),
    ]

    report = status_report(session, NOW, flow_runs=runs)

    assert [(run.flow, run.name) for run in report.flow_runs or ()] == [
        ("deliver", "newer"),
        ("deliver", "older"),
        ("nightly", "night"),
    ]  # flows in the order given, newest first
    assert dt.datetime.fromisoformat(report.last_sent_at or "") == sent.sent_at
    assert dt.datetime.fromisoformat(report.last_nightly_work or "") == NOW - 2 * HOUR
    assert report.delivery.by_status["unknown"] == 1
    assert report.suppressions.by_reason == {"bounced": 1}
    assert len(report.attention) == 1
    assert "unknown" in report.attention[0]
    data = json.loads(json.dumps(dataclasses.asdict(report)))
    assert data["flow_runs"][2]["end_time"] == (NOW - 4 * HOUR).isoformat()


def test_flow_runs_keep_the_flows_order_and_put_unstarted_runs_last(session: Session) -> None:
    def run(flow: str, name: str, started: dt.datetime | None) -> FlowRunSummary:
        start = started.isoformat() if started else None
        return FlowRunSummary(flow, name, "COMPLETED", "Completed", start, start)

    runs = [
        run("nightly", "old", NOW - 30 * HOUR),
        run("deliver", "late", None),
        run("nightly", "new", NOW - 6 * HOUR),
        run("deliver", "done", NOW - HOUR),
    ]

    report = status_report(session, NOW, flow_runs=runs)

    names = [run.name for run in report.flow_runs or ()]
    assert names == ["new", "old", "done", "late"]
