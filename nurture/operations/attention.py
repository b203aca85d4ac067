"""What an operator should look at, in plain language, most urgent first."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.operations.delivery import (
    BOUNCED_DELIVERY_STATUSES,
    DeliveryReport,
    SuppressionSummary,
    delivery_report,
    normalise_error,
    suppression_summary,
)
from nurture.operations.flow_runs import FlowRunSummary, flow_run_summary, schedule_period
from nurture.storage.models import (
    MatchRun,
    Member,
    Message,
    MessageStatus,
    SegmentationRun,
    utcnow,
)

__all__ = [
    "DELIVER_FLOW",
    "NIGHTLY_FLOW",
    "AttentionFacts",
    "AttentionThresholds",
    "allowed_age",
    "attention_items",
    "last_nightly_work",
    "load_attention_facts",
    "operator_attention",
]

NIGHTLY_FLOW = "nightly"
DELIVER_FLOW = "deliver"
IDS_SHOWN = 5
"""Message ids an item names."""
LATE = "Late"
"""The state name Prefect gives a scheduled run nobody started on time."""


@dataclass(frozen=True)
class AttentionThresholds:
    """When something deserves an operator's attention.

    Attributes:
        recent: The period failure and bounce rates are measured over.
        failure_rate: Failed emails over those finished (sent or failed) above which to warn.
        bounce_rate: Bounced emails over those sent above which to warn.
        queued_for: How long a due email may wait in the queue.
        sending_for: How long an email may stay in ``sending``.
        nightly_within: How recent the last nightly run must be.
        suppression_jump_factor: Addresses suppressed in the last day, over the usual daily
            pace, above which to warn...
        suppression_jump_min: ...once at least this many were suppressed.
    """

    recent: dt.timedelta = dt.timedelta(hours=24)
    failure_rate: float = 0.05
    bounce_rate: float = 0.05
    queued_for: dt.timedelta = dt.timedelta(hours=1)
    sending_for: dt.timedelta = dt.timedelta(hours=1)
    nightly_within: dt.timedelta = dt.timedelta(hours=26)
    suppression_jump_factor: float = 3.0
    suppression_jump_min: int = 5


DEFAULT_THRESHOLDS = AttentionThresholds()


def _hours(delta: dt.timedelta) -> str:
    """``1 hour``, ``2.5 hours``, ``26 hours`` (whole hours from 10 on)."""
    hours = delta.total_seconds() / 3600
    text = f"{hours:.0f}" if hours >= 10 or hours == int(hours) else f"{hours:.1f}"
    return f"{text} hour" if text == "1" else f"{text} hours"


def _when(time: dt.datetime | None) -> str:
    """``2026-11-01 09:00 UTC``."""
    return time.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if time else "an unknown time"


def _noun(count: int, word: str, plural: str | None = None) -> str:
    """``1 email``, ``2 emails``."""
    return f"1 {word}" if count == 1 else f"{count} {plural or word + 's'}"


def _are(count: int, word: str, plural: str | None = None) -> str:
    """``1 email is``, ``2 emails are``."""
    return f"{_noun(count, word, plural)} {'is' if count == 1 else 'are'}"


def last_nightly_work(session: Session) -> dt.datetime | None:
    """When the database last saw nightly work: the latest segmentation or match run."""
    times = [
        session.scalar(select(func.max(SegmentationRun.created_at))),
        session.scalar(select(func.max(MatchRun.created_at))),
    ]
    found = [time for time in times if time is not None]
    return max(found) if found else None


def allowed_age(
    flow: str, runs: Sequence[FlowRunSummary], thresholds: AttentionThresholds
) -> tuple[dt.timedelta | None, dt.timedelta | None]:
    """How old the last completed run of ``flow`` may be, and the schedule's period if known.

    A run's schedule allows one period between runs, plus some slack for the run's own time
    (a quarter of the period, between 15 minutes and 2 hours): a daily nightly may be 26 hours
    old. Without a known schedule the nightly gets ``thresholds.nightly_within``; another flow
    is then never called stale.
    """
    period = schedule_period(runs)
    if period is not None:
        slack = min(max(period / 4, dt.timedelta(minutes=15)), dt.timedelta(hours=2))
        return period + slack, period
    return (thresholds.nightly_within if flow == NIGHTLY_FLOW else None), None


def _span(delta: dt.timedelta) -> str:
    """``25 minutes`` under an hour and a half, else as :func:`_hours` (``26 hours``)."""
    minutes = delta.total_seconds() / 60
    if minutes < 90:
        return _noun(round(minutes), "minute")
    return _hours(delta)


def _flow_run_items(
    runs: Sequence[FlowRunSummary], now: dt.datetime, thresholds: AttentionThresholds
) -> list[str]:
    items: list[str] = []
    flows = sorted({run.flow for run in runs} | {NIGHTLY_FLOW, DELIVER_FLOW})
    for flow in flows:
        of_flow = [run for run in runs if run.flow == flow]
        ended = [run for run in of_flow if run.ended is not None]
        last = max(ended, key=lambda run: run.ended or now) if ended else None
        if last is not None and last.failed:
            why = f": {normalise_error(last.message)}" if last.message else ""
            items.append(
                f"The last {flow} run ({last.name}) ended {last.state_name} at "
                f"{_when(last.ended)}{why}. Look at its logs in the Prefect UI."
            )
        elif last is not None and last.needs_attention:
            why = normalise_error(last.message).removeprefix(f"{flow}: ")
            items.append(
                f"The last {flow} run ({last.name}, {_when(last.ended)}) completed but needs "
                f"attention: {why}"
            )
        late = [run for run in of_flow if run.state_name == LATE]
        if late:
            items.append(
                f"{_are(len(late), f'{flow} run')} late: scheduled, but nothing started "
                f"{'it' if len(late) == 1 else 'them'}. Is `python -m flows.serve` running?"
            )
        items += _stale_items(flow, of_flow, now, thresholds)
    return items


def _stale_items(
    flow: str, runs: Sequence[FlowRunSummary], now: dt.datetime, thresholds: AttentionThresholds
) -> list[str]:
    """The flow's last completed run, judged against what its schedule allows."""
    if not runs:
        if flow != NIGHTLY_FLOW:
            return []
        return [
            "No nightly run on the Prefect server: profiles, segments and recommendations are "
            "not refreshed. Is the nightly deployment served (`python -m flows.serve`)?"
        ]
    finished = [run.ended or run.started for run in runs if run.completed]
    last_done = max((time for time in finished if time is not None), default=None)
    if last_done is None:  # never completed: a failure or a late run above says why, if any
        return []
    allowed, period = allowed_age(flow, runs, thresholds)
    if allowed is None or now - last_done <= allowed:
        return []
    schedule = f" (its schedule runs it every {_span(period)})" if period is not None else ""
    what = (
        "profiles, segments and recommendations are getting stale"
        if flow == NIGHTLY_FLOW
        else "its work is waiting"
    )
    return [
        f"No {flow} run completed in the last {_span(allowed)}{schedule}; the last one ended "
        f"{_span(now - last_done)} ago: {what}."
    ]


@dataclass(frozen=True)
class AttentionFacts:
    """What the attention list reads from the database, as plain data.

    Attributes:
        report: The delivery report of the recent period.
        unknown_ids: The first ids of the messages in status unknown.
        overdue_queued: Queued messages due for longer than the thresholds allow.
        members: Members in the community.
        last_nightly_work: When the latest segmentation or match run was made.
        suppressions: The suppression list's summary.
        last_retry_error: The error of the latest message queued again after a transient error.
    """

    report: DeliveryReport
    unknown_ids: list[int]
    overdue_queued: int
    members: int
    last_nightly_work: dt.datetime | None
    suppressions: SuppressionSummary
    last_retry_error: str | None


def load_attention_facts(
    session: Session, now: dt.datetime, thresholds: AttentionThresholds = DEFAULT_THRESHOLDS
) -> AttentionFacts:
    """Read what the attention list needs.

    Args:
        session: The database session; nothing is written.
        now: The time of the check.
        thresholds: When to warn (the recent period, how long a due email may wait).

    Returns:
        The facts.
    """
    queued = Message.status == MessageStatus.QUEUED
    return AttentionFacts(
        report=delivery_report(
            session, since=now - thresholds.recent, now=now, stuck_after=thresholds.sending_for
        ),
        unknown_ids=list(
            session.scalars(
                select(Message.id)
                .where(Message.status == MessageStatus.UNKNOWN)
                .order_by(Message.id)
                .limit(IDS_SHOWN)
            )
        ),
        overdue_queued=session.scalar(
            select(func.count()).where(queued, Message.scheduled_at < now - thresholds.queued_for)
        )
        or 0,
        members=session.scalar(select(func.count()).select_from(Member)) or 0,
        last_nightly_work=last_nightly_work(session),
        suppressions=suppression_summary(session, now),
        last_retry_error=session.scalar(
            select(Message.error)
            .where(queued, Message.attempts > 0)
            .order_by(Message.id.desc())
            .limit(1)
        ),
    )


def _delivery_items(facts: AttentionFacts, thresholds: AttentionThresholds) -> list[str]:
    """Emails in doubt, stuck, failing, bouncing or waiting too long."""
    report = facts.report
    recent = _hours(thresholds.recent)
    items: list[str] = []
    if report.unknown:
        ids = ", ".join(str(message_id) for message_id in facts.unknown_ids)
        items.append(
            f"{_are(report.unknown, 'email')} in status unknown (ids "
            f"{ids}{', ...' if report.unknown > IDS_SHOWN else ''}"
            "): they were handed to the mail backend and may or may not have gone out. Check "
            "them with the mail provider, then settle them with `nurture deliveries resolve "
            "--sent|--requeue IDS` (`nurture deliveries unknown` says what is known); nurture "
            "never sends them again by itself."
        )
    if report.sending_stuck:
        items.append(
            f"{_noun(report.sending_stuck, 'email')} stuck in status sending for more than "
            f"{_hours(thresholds.sending_for)}: a deliver run was probably interrupted. The "
            "next deliver run (or `nurture deliveries recover`) re-queues those never handed to "
            "the mail backend and settles the others."
        )
    failed = report.by_status[MessageStatus.FAILED]
    finished = failed + report.by_status[MessageStatus.SENT]
    if report.failure_rate is not None and failed and report.failure_rate > thresholds.failure_rate:
        top = report.failures[0] if report.failures else None
        reason = f"; most often: {top.reason} ({top.count})" if top else ""
        items.append(
            f"{report.failure_rate:.0%} of the emails finished in the last {recent} failed "
            f"({failed} of {finished}){reason}."
        )
    sent = report.by_status[MessageStatus.SENT]
    if sent and report.bounced / sent > thresholds.bounce_rate:
        items.append(
            f"{report.bounced / sent:.0%} of the emails sent in the last {recent} bounced or were "
            f"dropped ({report.bounced} of {sent}): check the quality of the addresses imported "
            f"and the sender's reputation ({', '.join(BOUNCED_DELIVERY_STATUSES)})."
        )
    if facts.overdue_queued and report.oldest_queued_age_hours is not None:
        items.append(
            f"{_are(facts.overdue_queued, 'due email')} waiting in the queue for more than "
            f"{_hours(thresholds.queued_for)} (the oldest for "
            f"{_hours(dt.timedelta(hours=report.oldest_queued_age_hours))}): is the deliver flow "
            "running?"
        )
    return items


def _nightly_work_items(
    facts: AttentionFacts, now: dt.datetime, thresholds: AttentionThresholds
) -> list[str]:
    """The nightly run judged by the segmentation and match runs it leaves."""
    last = facts.last_nightly_work
    if last is None and facts.members:
        return [
            "No segmentation or match run yet: run the nightly flow (or `nurture run`) to "
            "profile, segment and match the members."
        ]
    if last is not None and now - last > thresholds.nightly_within:
        return [
            f"No segmentation or match run in the last {_hours(thresholds.nightly_within)} "
            f"(the last {_hours(now - last)} ago): is the nightly flow running?"
        ]
    return []


def _suppression_items(facts: AttentionFacts, thresholds: AttentionThresholds) -> list[str]:
    """A jump in suppressed addresses over the usual pace."""
    suppressions = facts.suppressions
    usual = suppressions.daily_mean_before
    if suppressions.last_day < thresholds.suppression_jump_min or suppressions.last_day <= (
        thresholds.suppression_jump_factor * usual
    ):
        return []
    reasons = ", ".join(
        f"{reason}: {count}" for reason, count in suppressions.last_day_by_reason.items()
    )
    return [
        f"{_noun(suppressions.last_day, 'address', 'addresses')} suppressed in the last "
        "24 hours, "
        f"against {usual:.1f} a day the week before ({reasons}): look for a bad import, "
        "a complaint wave or a bounce wave."
    ]


def attention_items(
    facts: AttentionFacts,
    now: dt.datetime,
    *,
    flow_runs: Sequence[FlowRunSummary] | None = None,
    condition_errors: int = 0,
    thresholds: AttentionThresholds = DEFAULT_THRESHOLDS,
) -> list[str]:
    """Decide, on plain data, what an operator should look at.

    Args:
        facts: What the database says (:func:`load_attention_facts`).
        now: The time of the check.
        flow_runs: The recent runs of the flows; None when unknown: the nightly run is then
            judged by the segmentation and match runs it leaves.
        condition_errors: Journey conditions that failed to evaluate in the last deliver run.
        thresholds: When to warn.

    Returns:
        One sentence per item, most urgent first; empty when all is well.
    """
    items: list[str] = []
    if flow_runs is not None:
        items += _flow_run_items(flow_runs, now, thresholds)
    items += _delivery_items(facts, thresholds)
    if flow_runs is None:
        items += _nightly_work_items(facts, now, thresholds)
    items += _suppression_items(facts, thresholds)
    if condition_errors:
        items.append(
            f"{_noun(condition_errors, 'journey condition')} could not be evaluated in the last "
            "deliver run and counted as false: see the deliver run's logs and check the "
            "journeys (`nurture journeys validate`)."
        )
    if facts.report.retries_pending:
        items.append(
            f"{_are(facts.report.retries_pending, 'email')} waiting for another attempt after a "
            f"transient error of the mail backend (latest: "
            f"{normalise_error(facts.last_retry_error)})."
        )
    return items


def operator_attention(
    session: Session,
    now: dt.datetime | None = None,
    *,
    flow_runs: Sequence[FlowRunSummary | Mapping[str, Any]] | None = None,
    condition_errors: int = 0,
    thresholds: AttentionThresholds = DEFAULT_THRESHOLDS,
) -> list[str]:
    """List, in plain language, what an operator should look at now.

    Reads (:func:`load_attention_facts`), then decides (:func:`attention_items`).

    Args:
        session: The database session; nothing is written.
        now: The time of the check (default: now).
        flow_runs: The recent runs of the flows, from the orchestrator; None when unknown: the
            nightly run is then judged by the segmentation and match runs it leaves.
        condition_errors: Journey conditions that failed to evaluate in the last deliver run
            (``JourneySummary.condition_errors``); they are not stored.
        thresholds: When to warn.

    Returns:
        One sentence per item, most urgent first; empty when all is well.
    """
    now = now or utcnow()
    return attention_items(
        load_attention_facts(session, now, thresholds),
        now,
        flow_runs=None if flow_runs is None else [flow_run_summary(run) for run in flow_runs],
        condition_errors=condition_errors,
        thresholds=thresholds,
    )
