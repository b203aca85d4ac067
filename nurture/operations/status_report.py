"""The status of a running nurture: recent flow runs, messages, suppressions, what to look at."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.operations.attention import (
    DEFAULT_THRESHOLDS,
    AttentionThresholds,
    last_nightly_work,
    operator_attention,
)
from nurture.operations.delivery import (
    DeliveryReport,
    SuppressionSummary,
    delivery_report,
    suppression_summary,
)
from nurture.operations.flow_runs import FlowRunSummary, flow_run_summary
from nurture.storage.models import Message, utcnow

__all__ = ["StatusReport", "status_report"]


@dataclass(frozen=True)
class StatusReport:
    """What ``nurture status`` shows.

    Attributes:
        generated_at: When the report was made (ISO 8601).
        flow_runs: The recent flow runs, flow by flow (in the order given), newest first;
            None when unknown (no orchestrator to ask).
        last_nightly_work: When the latest segmentation or match run started (ISO 8601).
        last_sent_at: When an email was last sent (ISO 8601).
        delivery: Every message by status, failures by reason, and the queue.
        suppressions: The suppression list by reason.
        attention: What an operator should look at, most urgent first.
    """

    generated_at: str
    flow_runs: tuple[FlowRunSummary, ...] | None
    last_nightly_work: str | None
    last_sent_at: str | None
    delivery: DeliveryReport
    suppressions: SuppressionSummary
    attention: tuple[str, ...]


def _by_flow_newest_first(runs: Sequence[FlowRunSummary]) -> tuple[FlowRunSummary, ...]:
    """Runs grouped by flow (flows in the order given), newest start first, unstarted last."""
    order: dict[str, int] = {}
    for run in runs:
        order.setdefault(run.flow, len(order))

    def key(run: FlowRunSummary) -> tuple[int, bool, float]:
        started = run.started
        return (order[run.flow], started is None, -started.timestamp() if started else 0.0)

    return tuple(sorted(runs, key=key))


def status_report(
    session: Session,
    now: dt.datetime | None = None,
    *,
    flow_runs: Sequence[FlowRunSummary | Mapping[str, Any]] | None = None,
    condition_errors: int = 0,
    thresholds: AttentionThresholds = DEFAULT_THRESHOLDS,
) -> StatusReport:
    """Gather the status of nurture from the database and the recent flow runs.

    Args:
        session: The database session; nothing is written.
        now: The time of the report (default: now).
        flow_runs: The recent runs of the flows; None when unknown.
        condition_errors: Journey conditions that failed to evaluate in the last deliver run.
        thresholds: When an item deserves attention.

    Returns:
        The report.
    """
    now = now or utcnow()
    runs = None
    if flow_runs is not None:
        runs = _by_flow_newest_first([flow_run_summary(run) for run in flow_runs])
    nightly = last_nightly_work(session)
    last_sent = session.scalar(select(func.max(Message.sent_at)))
    return StatusReport(
        generated_at=now.isoformat(),
        flow_runs=runs,
        last_nightly_work=nightly.isoformat() if nightly else None,
        last_sent_at=last_sent.isoformat() if last_sent else None,
        delivery=delivery_report(session, now=now, stuck_after=thresholds.sending_for),
        suppressions=suppression_summary(session, now),
        attention=tuple(
            operator_attention(
                session,
                now,
                flow_runs=runs,
                condition_errors=condition_errors,
                thresholds=thresholds,
            )
        ),
    )
