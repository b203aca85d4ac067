"""``delivery_report`` and ``suppression_summary``: statuses, reasons, the queue, the list."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from sqlalchemy.orm import Session

from nurture.operations import (
    ReasonCount,
    delivery_by_day,
    delivery_report,
    normalise_error,
    suppression_summary,
)
from nurture.operations.delivery import FAILURE_REASONS_SHOWN
from nurture.storage.models import MessageStatus
from tests.operations.conftest import NOW, Rows

HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (None, "(no error recorded)"),
        ("   ", "(no error recorded)"),
        (
            "550 5.1.1 <ada.lovelace+news@example.org>: Recipient address rejected",
            "550 5.1.1 <address>: Recipient address rejected",
        ),
        ("timeout after\n  30 s   (request 1234567)", "timeout after 30 s (request <n>)"),
        (
            "provider id 0f8fad5b-d9cb-469f-a165-70867728950e refused",
            "provider id <id> refused",
        ),
        ("message 4f3a9c0e1b2d7a6f8e9d refused", "message <id> refused"),
    ],
)
def test_normalise_error_masks_what_varies(error: str | None, reason: str) -> None:
    assert normalise_error(error) == reason


def test_normalise_error_cuts_long_texts() -> None:
    reason = normalise_error("word " * 100, limit=40)
    assert len(reason) <= 40
    assert reason.endswith("…")


def test_an_empty_database_reports_zeros(session: Session) -> None:
    report = delivery_report(session, now=NOW)

    assert report.by_status == {status.value: 0 for status in MessageStatus}
    assert report.total == 0
    assert report.failure_rate is None
    assert report.failures == report.suppressed_reasons == ()
    assert report.oldest_queued_at is None
    assert report.oldest_queued_age_hours is None
    assert report.since is None


def test_the_report_counts_statuses_failures_and_the_queue(session: Session, rows: Rows) -> None:
    journey = rows.journey("welcome", ["a", "b", "c", "d"])
    enrollments = [rows.enrollment(journey) for _ in range(6)]
    for index, enrollment in enumerate(enrollments[:3]):
        rows.message(enrollment, "a", delivery_status="bounce" if index == 0 else "delivered")
    rows.message(enrollments[3], "a", MessageStatus.FAILED, error="550 <x@example.org> unknown")
    rows.message(enrollments[4], "a", MessageStatus.FAILED, error="550  <y@example.org> unknown")
    rows.message(enrollments[5], "a", MessageStatus.FAILED, error="template error: missing")
    rows.message(enrollments[0], "b", MessageStatus.SUPPRESSED, error="unsubscribed")
    rows.message(enrollments[1], "b", MessageStatus.UNKNOWN, error="unexpected error")
    rows.message(enrollments[2], "b", MessageStatus.SENDING, claimed_at=NOW - 3 * HOUR)  # stuck
    rows.message(
        enrollments[3], "b", MessageStatus.SENDING, claimed_at=NOW - dt.timedelta(minutes=5)
    )
    rows.message(
        enrollments[4],
        "b",
        MessageStatus.QUEUED,
        scheduled_at=NOW - 5 * HOUR,
        attempts=2,
        error="connection reset",
    )
    rows.message(enrollments[5], "b", MessageStatus.QUEUED, scheduled_at=NOW - HOUR / 2)
    rows.message(enrollments[0], "c", MessageStatus.QUEUED, scheduled_at=NOW + 8 * HOUR)
    session.commit()

    report = delivery_report(session, now=NOW)

    assert report.by_status == {
        "queued": 3,
        "sending": 2,
        "sent": 3,
        "failed": 3,
        "suppressed": 1,
        "unknown": 1,
    }
    assert report.total == 13
    assert report.failure_rate == 0.5
    assert report.failures == (
        ReasonCount("550 <address> unknown", 2),
        ReasonCount("template error: missing", 1),
    )
    assert report.failures_other == 0
    assert report.suppressed_reasons == (ReasonCount("unsubscribed", 1),)
    assert report.bounced == 1
    assert (report.queued_due, report.queued_later, report.retries_pending) == (2, 1, 1)
    assert dt.datetime.fromisoformat(report.oldest_queued_at or "") == NOW - 5 * HOUR
    assert report.oldest_queued_age_hours == 5.0
    assert (report.unknown, report.sending, report.sending_stuck) == (1, 2, 1)
    assert json.loads(json.dumps(dataclasses.asdict(report)))["failures"][0]["count"] == 2


def test_since_limits_the_counts_not_the_queue(session: Session, rows: Rows) -> None:
    journey = rows.journey("welcome", ["old", "new", "waiting"])
    enrollment = rows.enrollment(journey)
    rows.message(enrollment, "old", MessageStatus.FAILED, created_at=NOW - 48 * HOUR, error="x")
    rows.message(enrollment, "new", MessageStatus.SENT, created_at=NOW - HOUR)
    rows.message(
        enrollment,
        "waiting",
        MessageStatus.QUEUED,
        created_at=NOW - 48 * HOUR,
        scheduled_at=NOW - 47 * HOUR,
    )
    session.commit()

    report = delivery_report(session, NOW - 24 * HOUR, now=NOW)

    assert report.by_status["failed"] == 0
    assert report.by_status["sent"] == 1
    assert report.by_status["queued"] == 0
    assert report.failure_rate == 0.0
    assert report.failures == ()
    assert report.queued_due == 1  # the queue is always whole
    assert report.oldest_queued_age_hours == 47.0
    assert report.since == (NOW - 24 * HOUR).isoformat()


def test_only_the_top_reasons_are_listed(session: Session, rows: Rows) -> None:
    journey = rows.journey("welcome", ["a"])
    extra = 3
    for index in range(FAILURE_REASONS_SHOWN + extra):
        rows.message(rows.enrollment(journey), "a", MessageStatus.FAILED, error=f"reason {index}")
    rows.message(rows.enrollment(journey), "a", MessageStatus.FAILED, error="reason 7")
    session.commit()

    report = delivery_report(session, now=NOW)

    assert len(report.failures) == FAILURE_REASONS_SHOWN
    assert report.failures[0] == ReasonCount("reason 7", 2)
    assert report.failures_other == extra


def test_suppression_summary_by_reason_and_pace(session: Session, rows: Rows) -> None:
    for day in range(1, 8):  # one a day over the week before
        rows.suppression("unsubscribed", NOW - dt.timedelta(days=day, hours=1))
    rows.suppression("bounced", NOW - dt.timedelta(days=20))
    for _ in range(3):
        rows.suppression("bounced", NOW - 2 * HOUR)
    rows.suppression("complained", NOW - 3 * HOUR)
    session.commit()

    summary = suppression_summary(session, NOW)

    assert summary.total == 12
    assert summary.by_reason == {"unsubscribed": 7, "bounced": 4, "complained": 1}
    assert summary.last_day == 4
    assert summary.last_day_by_reason == {"bounced": 3, "complained": 1}
    assert summary.daily_mean_before == 1.0


def test_delivery_by_day_counts_each_outcome_on_the_day_it_was_settled(
    session: Session, rows: Rows
) -> None:
    journey = rows.journey("welcome", ["a", "b", "c"])
    today, yesterday = NOW - HOUR, NOW - dt.timedelta(days=1)
    rows.message(rows.enrollment(journey), "a", sent_at=today)
    rows.message(rows.enrollment(journey), "a", sent_at=today, delivery_status="bounce")
    rows.message(rows.enrollment(journey), "a", sent_at=yesterday)
    rows.message(rows.enrollment(journey), "b", MessageStatus.FAILED, claimed_at=today)
    rows.message(rows.enrollment(journey), "b", MessageStatus.SUPPRESSED, claimed_at=yesterday)
    rows.message(rows.enrollment(journey), "c", MessageStatus.UNKNOWN, claimed_at=today)
    rows.message(rows.enrollment(journey), "c", MessageStatus.QUEUED)  # not settled
    rows.message(rows.enrollment(journey), "c", sent_at=NOW - dt.timedelta(days=9))  # too old
    session.commit()

    days = delivery_by_day(session, days=3, now=NOW)

    assert [day.day for day in days] == ["2026-10-30", "2026-10-31", "2026-11-01"]
    empty, before, last = days
    assert empty.total == 0 and set(empty.shares.values()) == {None}
    assert empty.by_outcome == {"sent": 0, "failed": 0, "suppressed": 0, "unknown": 0}
    assert before.by_outcome == {"sent": 1, "failed": 0, "suppressed": 1, "unknown": 0}
    assert before.shares["suppressed"] == 0.5
    assert last.by_outcome == {"sent": 2, "failed": 1, "suppressed": 0, "unknown": 1}
    assert (last.total, last.bounced, last.shares["sent"]) == (4, 1, 0.5)
    assert json.loads(json.dumps([dataclasses.asdict(day) for day in days]))


def test_delivery_by_day_wants_a_day_at_least(session: Session) -> None:
    with pytest.raises(ValueError, match="at least 1 day"):
        delivery_by_day(session, days=0)
