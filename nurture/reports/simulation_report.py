"""The simulation report: what the journeys would send, day by day, and what would be held back.

One self-contained HTML page (:mod:`nurture.reports.page`) of a journey simulation
(:func:`~nurture.journeys.simulate.simulate_journeys`): emails per day by journey, holds per day,
and per journey its entries, emails and holds. It names no member.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from nurture.reports.charts import Chart, simulated_holds_chart, simulated_volumes_chart
from nurture.reports.page import WrittenReport, render_page, write_report_file

if TYPE_CHECKING:
    from nurture.journeys.simulate import SimulationReport

__all__ = ["render_simulation_report", "write_simulation_report"]


def _render(
    report: SimulationReport, *, title: str, generated_at: dt.datetime
) -> tuple[str, list[Chart]]:
    charts = []
    if report.sends:
        charts.append(simulated_volumes_chart(report))
    if report.held_daily:
        charts.append(simulated_holds_chart(report))
    held = {entry.journey_key: entry for entry in report.held}
    rows = [
        {
            "journey": key,
            "entered": report.entered.get(key, 0),
            "emails": len(report.sends_of(key)),
            "held": held.get(key),
        }
        for key in report.journeys
    ]
    html = render_page(
        "simulation.html.j2",
        title=title,
        generated_at=generated_at,
        charts=charts,
        by_name={chart.name: chart for chart in charts},
        report=report,
        days=(report.end - report.start) / dt.timedelta(days=1),
        rows=rows,
        emails=len(report.sends),
    )
    return html, charts


def render_simulation_report(
    report: SimulationReport, *, title: str, generated_at: dt.datetime
) -> str:
    """The simulation as one HTML page.

    Args:
        report: The simulation.
        title: The page title.
        generated_at: When the report was made (shown on the page).

    Returns:
        The HTML document; it loads nothing from anywhere.
    """
    return _render(report, title=title, generated_at=generated_at)[0]


def write_simulation_report(
    report: SimulationReport,
    path: Path,
    *,
    generated_at: dt.datetime,
    title: str = "Journey simulation",
) -> WrittenReport:
    """Write a simulation's report to ``path``.

    Args:
        report: The simulation.
        path: The HTML file to write (its folder is made if missing).
        generated_at: When the report was made (shown on the page).
        title: The page title.

    Returns:
        The file written, with a one-sentence summary.
    """
    html, charts = _render(report, title=title, generated_at=generated_at)
    held = sum(
        entry.budget_deferred + entry.budget_skipped + entry.quiet_deferred for entry in report.held
    )
    return WrittenReport(
        path=path.resolve(),
        size_bytes=write_report_file(path, html),
        charts=tuple(chart.name for chart in charts),
        summary=f"{len(report.sends)} emails over {len(report.daily_volumes())} days, "
        f"{held} held back",
    )
