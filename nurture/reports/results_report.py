"""The results report: what a journey changes, arm by arm (holdout control, split variants).

One self-contained HTML page (:mod:`nurture.reports.page`) of
:func:`~nurture.journeys.results.journey_results`: goal conversion per arm with its 95%
interval as a chart, the comparison with the reference arm, retention on day 30, 60 and 90,
and the notes a reader needs. It names no member.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from nurture.reports.charts import Chart, chart_spec
from nurture.reports.page import WrittenReport, render_page, write_report_file

if TYPE_CHECKING:
    from nurture.journeys.results import JourneyResults

__all__ = ["conversion_chart", "render_results_report", "write_results_report"]


def conversion_chart(results: JourneyResults) -> Chart:
    """Goal conversion per arm: a bar for the rate, a rule for its 95% interval.

    Args:
        results: The journey's results.

    Returns:
        The chart ``arm-conversion``.
    """
    import altair as alt

    rows = [
        {
            "arm": arm.arm,
            "rate": arm.conversion.rate,
            "low": arm.conversion.low,
            "high": arm.conversion.high,
            "members": arm.conversion.total,
            "converted": arm.conversion.converted,
        }
        for arm in results.arms
        if arm.conversion is not None and arm.conversion.total
    ]
    base = alt.Chart(alt.NamedData(name="arms")).encode(
        x=alt.X("arm:N", sort=[arm.arm for arm in results.arms], title=None)
    )
    bars = base.mark_bar(color="#4e79a7").encode(
        y=alt.Y("rate:Q", title="converted", axis=alt.Axis(format="%")),
        tooltip=[
            alt.Tooltip("arm:N"),
            alt.Tooltip("members:Q"),
            alt.Tooltip("converted:Q"),
            alt.Tooltip("rate:Q", format=".1%"),
            alt.Tooltip("low:Q", format=".1%", title="95% CI from"),
            alt.Tooltip("high:Q", format=".1%", title="95% CI to"),
        ],
    )
    interval = base.mark_rule(color="#333", strokeWidth=2).encode(y="low:Q", y2="high:Q")
    chart = alt.layer(bars, interval).properties(width="container", height=240)
    goal = " or ".join(results.goal_events)
    return Chart(
        name="arm-conversion",
        title="Goal conversion per arm",
        caption=f"Share of members who did {goal} within {results.window_days:g} days of "
        "enrolling, per arm, with its 95% interval (Wilson); members still in their window are "
        "not counted.",
        spec=chart_spec(chart, {"arms": rows}),
    )


def _render(
    results: JourneyResults, *, title: str, generated_at: dt.datetime
) -> tuple[str, list[Chart]]:
    charts = []
    if any(arm.conversion is not None and arm.conversion.total for arm in results.arms):
        charts.append(conversion_chart(results))
    html = render_page(
        "results.html.j2",
        title=title,
        generated_at=generated_at,
        charts=charts,
        by_name={chart.name: chart for chart in charts},
        results=results,
    )
    return html, charts


def render_results_report(results: JourneyResults, *, title: str, generated_at: dt.datetime) -> str:
    """A journey's results as one HTML page.

    Args:
        results: The journey's results.
        title: The page title.
        generated_at: When the report was made (shown on the page).

    Returns:
        The HTML document; it loads nothing from anywhere.
    """
    return _render(results, title=title, generated_at=generated_at)[0]


def write_results_report(
    results: JourneyResults,
    path: Path,
    *,
    generated_at: dt.datetime,
    title: str = "Journey results",
) -> WrittenReport:
    """Write a journey's results report to ``path``.

    Args:
        results: The journey's results.
        path: The HTML file to write (its folder is made if missing).
        generated_at: When the report was made (shown on the page).
        title: The page title.

    Returns:
        The file written, with a one-sentence summary.
    """
    html, charts = _render(results, title=title, generated_at=generated_at)
    members = sum(arm.enrolled for arm in results.arms)
    return WrittenReport(
        path=path.resolve(),
        size_bytes=write_report_file(path, html),
        charts=tuple(chart.name for chart in charts),
        summary=f"{len(results.arms)} arms, {members} members",
    )
