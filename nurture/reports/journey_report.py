"""The journey report: each journey's funnel, from entry through each send step to its exits.

One self-contained HTML page (:mod:`nurture.reports.page`), a chart and a table per journey.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from nurture.operations.funnel import JourneyFunnel, journey_funnels
from nurture.reports.charts import Chart, funnel_chart
from nurture.reports.page import WrittenReport, render_page, write_report_file

__all__ = ["render_journey_report", "write_journey_report"]


def _render(
    funnels: Sequence[JourneyFunnel], *, title: str, generated_at: dt.datetime
) -> tuple[str, list[Chart]]:
    charts = [funnel_chart(funnel) for funnel in funnels]
    html = render_page(
        "journeys.html.j2",
        title=title,
        generated_at=generated_at,
        charts=charts,
        journeys=list(zip(funnels, charts, strict=True)),
    )
    return html, charts


def render_journey_report(
    funnels: Sequence[JourneyFunnel], *, title: str, generated_at: dt.datetime
) -> str:
    """The journey report as one HTML page: per journey, its funnel chart and its numbers.

    Args:
        funnels: The journeys' funnels (:func:`~nurture.operations.journey_funnels`).
        title: The page title.
        generated_at: When the report was made (shown on the page).

    Returns:
        The HTML document; it loads nothing from anywhere.
    """
    return _render(funnels, title=title, generated_at=generated_at)[0]


def write_journey_report(
    session: Session, path: Path, *, now: dt.datetime, title: str = "Journeys"
) -> WrittenReport:
    """Read every journey's funnel and write the journey report to ``path``.

    Args:
        session: Database session (only read).
        path: The HTML file to write (its folder is made if missing).
        now: The time of the report.
        title: The page title.

    Returns:
        The file written, with a one-sentence summary.
    """
    funnels = journey_funnels(session)
    html, charts = _render(funnels, title=title, generated_at=now)
    entered = sum(funnel.entered for funnel in funnels)
    return WrittenReport(
        path=path.resolve(),
        size_bytes=write_report_file(path, html),
        charts=tuple(chart.name for chart in charts),
        summary=f"{len(funnels)} journeys, {entered} enrollments",
    )
