"""attention_items on plain data: what the facts call for, in order, without a database."""

from __future__ import annotations

import dataclasses
import datetime as dt

from nurture.operations import AttentionFacts, AttentionThresholds, FlowRunSummary, attention_items
from nurture.operations.delivery import DeliveryReport, ReasonCount, SuppressionSummary
from nurture.storage.models import MessageStatus

NOW = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _facts(**changes) -> AttentionFacts:
    report = DeliveryReport(
        since=None,
        generated_at=NOW.isoformat(),
        by_status={status.value: 0 for status in MessageStatus},
        total=0,
        failure_rate=None,
        failures=(),
        failures_other=0,
        suppressed_reasons=(),
        bounced=0,
        queued_due=0,
        queued_later=0,
        retries_pending=0,
        oldest_queued_at=None,
        oldest_queued_age_hours=None,
        unknown=0,
        sending=0,
        sending_stuck=0,
    )
    facts = AttentionFacts(
        report=dataclasses.replace(report, **changes.pop("report", {})),
        unknown_ids=[],
        overdue_queued=0,
        members=10,
        last_nightly_work=NOW - 2 * HOUR,
        suppressions=SuppressionSummary(
            total=0, by_reason={}, last_day=0, last_day_by_reason={}, daily_mean_before=0.0
        ),
        last_retry_error=None,
    )
    return dataclasses.replace(facts, **changes)


def _sent_and_failed(sent: int, failed: int) -> dict[str, object]:
    by_status = {status.value: 0 for status in MessageStatus}
    by_status.update(sent=sent, failed=failed)
    return {
        "by_status": by_status,
        "failure_rate": round(failed / (sent + failed), 3),
        "failures": (ReasonCount("550 5.1.1 <address>: unknown user", failed),),
    }


def test_healthy_facts_call_for_nothing() -> None:
    assert attention_items(_facts(), NOW) == []
    assert attention_items(_facts(members=0, last_nightly_work=None), NOW) == []


def test_emails_in_doubt_are_named_by_id_most_urgent_first() -> None:
    facts = _facts(
        report={"unknown": 7, "sending_stuck": 1, **_sent_and_failed(sent=90, failed=10)},
        unknown_ids=[3, 5, 8, 13, 21],
    )
    unknown, stuck, failing = attention_items(facts, NOW)
    assert unknown.startswith("7 emails are in status unknown (ids 3, 5, 8, 13, 21, ...)")
    assert stuck.startswith("1 email stuck in status sending for more than 1 hour")
    assert failing == (
        "10% of the emails finished in the last 24 hours failed (10 of 100); most often: "
        "550 5.1.1 <address>: unknown user (10)."
    )
    relaxed = AttentionThresholds(failure_rate=0.2)
    assert len(attention_items(facts, NOW, thresholds=relaxed)) == 2


def test_bounces_a_slow_queue_and_retries_are_explained() -> None:
    facts = _facts(
        report={
            "by_status": {**{s.value: 0 for s in MessageStatus}, "sent": 20},
            "bounced": 2,
            "retries_pending": 3,
            "oldest_queued_age_hours": 2.5,
        },
        overdue_queued=4,
        last_retry_error="421 try again later <zoe@example.org>",
    )
    bounced, waiting, retries = attention_items(facts, NOW)
    assert bounced.startswith("10% of the emails sent in the last 24 hours bounced")
    assert "(bounce, dropped)" in bounced
    assert waiting.startswith("4 due emails are waiting in the queue for more than 1 hour")
    assert "(the oldest for 2.5 hours)" in waiting
    assert retries.endswith("(latest: 421 try again later <address>).")


def test_the_nightly_run_is_judged_by_its_runs_when_known_else_by_its_traces() -> None:
    stale = _facts(last_nightly_work=NOW - 30 * HOUR)
    (item,) = attention_items(stale, NOW)
    assert "No segmentation or match run in the last 26 hours (the last 30 hours ago)" in item
    (never,) = attention_items(_facts(last_nightly_work=None), NOW)
    assert never.startswith("No segmentation or match run yet")

    runs = [
        FlowRunSummary("nightly", "n-1", "FAILED", "Failed", None, (NOW - HOUR).isoformat()),
        FlowRunSummary("deliver", "d-1", "SCHEDULED", "Late"),
    ]
    late, failed = attention_items(stale, NOW, flow_runs=runs)
    assert late.startswith("1 deliver run is late")
    assert failed.startswith("The last nightly run (n-1) ended Failed at 2026-11-02 08:00 UTC")


def test_a_jump_in_suppressions_and_failing_conditions_come_last() -> None:
    jump = SuppressionSummary(
        total=40,
        by_reason={"bounced": 30, "unsubscribed": 10},
        last_day=12,
        last_day_by_reason={"bounced": 11, "unsubscribed": 1},
        daily_mean_before=1.5,
    )
    suppressed, conditions = attention_items(_facts(suppressions=jump), NOW, condition_errors=2)
    assert suppressed.startswith("12 addresses suppressed in the last 24 hours, against 1.5")
    assert "(bounced: 11, unsubscribed: 1)" in suppressed
    assert conditions.startswith("2 journey conditions could not be evaluated")
    usual = dataclasses.replace(jump, daily_mean_before=5.0)
    assert attention_items(_facts(suppressions=usual), NOW) == []
