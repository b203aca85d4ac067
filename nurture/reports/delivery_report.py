"""The delivery report: what came of the messages day by day, and why some were not sent.

One self-contained HTML page (:mod:`nurture.reports.page`): the outcomes per day as a chart and
a table, the period's totals, the failure and suppression reasons, and the queue.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from nurture.operations.delivery import (
    OUTCOMES,
    DeliveryDay,
    DeliveryReport,
    delivery_by_day,
    delivery_report,
)
from nurture.reports.charts import Chart, delivery_outcomes_chart
from nurture.reports.page import WrittenReport, render_page, write_report_file

__all__ = ["DEFAULT_DELIVERY_DAYS", "render_delivery_report", "write_delivery_report"]

DEFAULT_DELIVERY_DAYS = 30
"""Days the delivery report covers, today included."""


def _render(
    days: Sequence[DeliveryDay],
    report: DeliveryReport,
    *,
    title: str,
    generated_at: dt.datetime,
) -> tuple[str, list[Chart]]:
    totals = {outcome: sum(day.by_outcome[outcome] for day in days) for outcome in OUTCOMES}
    settled = sum(totals.values())
    charts = [delivery_outcomes_chart(days)] if settled else []
    html = render_page(
        "delivery.html.j2",
        title=title,
        generated_at=generated_at,
        charts=charts,
        chart=charts[0] if charts else None,
        days=days,
        busy_days=[day for day in days if day.total],
        outcomes=OUTCOMES,
        totals=totals,
        settled=settled,
        bounced=sum(day.bounced for day in days),
        report=report,
    )
    return html, charts


def render_delivery_report(
    days: Sequence[DeliveryDay],
    report: DeliveryReport,
    *,
    title: str,
    generated_at: dt.datetime,
) -> str:
    """The delivery report as one HTML page.

    Args:
        days: The outcomes per day (:func:`~nurture.operations.delivery_by_day`), oldest first.
        report: The delivery report of the same period
            (:func:`~nurture.operations.delivery_report`): reasons and queue.
        title: The page title.
        generated_at: When the report was made (shown on the page).

    Returns:
        The HTML document; it loads nothing from anywhere.
    """
    return _render(days, report, title=title, generated_at=generated_at)[0]


def write_delivery_report(
    session: Session,
    path: Path,
    *,
    now: dt.datetime,
    days: int = DEFAULT_DELIVERY_DAYS,
    title: str = "Delivery",
) -> WrittenReport:
    """Read the last ``days`` days of delivery and write the delivery report to ``path``.

    Args:
        session: Database session (only read).
        path: The HTML file to write (its folder is made if missing).
        now: The time of the report: its UTC day is the last one.
        days: How many days, today included.
        title: The page title.

    Returns:
        The file written, with a one-sentence summary.
    """
    by_day = delivery_by_day(session, days=days, now=now)
    since = dt.datetime.fromisoformat(by_day[0].day).replace(tzinfo=dt.UTC)
    report = delivery_report(session, since, now=now)
    html, charts = _render(by_day, report, title=title, generated_at=now)
    settled = sum(day.total for day in by_day)
    sent = sum(day.by_outcome["sent"] for day in by_day)
    return WrittenReport(
        path=path.resolve(),
        size_bytes=write_report_file(path, html),
        charts=tuple(chart.name for chart in charts),
        summary=f"{settled} messages settled in {days} days, {sent} sent",
    )
