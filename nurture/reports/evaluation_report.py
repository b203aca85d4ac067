"""The evaluation report: nurture's ranking against the baselines, as one HTML page.

One self-contained HTML page (:mod:`nurture.reports.page`) of the figures ``nurture evaluate``
writes as JSON (``EvaluationReport.to_dict()``, ``docs/evaluation.md``): the table of every
metric at ``k`` per recommender, precision and nDCG at every cut-off from 1 to ``k`` as charts,
the figures per group of members (language, length of history), how long each recommender
took, and the split and counts. It reads nothing but those figures, so a page can be written
again from a JSON file; language names, paths and model names come from the data and are
escaped like every value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nurture.reports.charts import Chart, chart_spec
from nurture.reports.page import WrittenReport, render_page, write_report_file

__all__ = [
    "CURVE_TITLES",
    "metric_at_k_chart",
    "render_evaluation_report",
    "write_evaluation_report",
]

CURVE_TITLES = {"precision": "Precision at k", "ndcg": "nDCG at k"}
"""The heading of each curve's chart."""
_CURVE_WORDS = {"precision": "precision", "ndcg": "nDCG"}

_ENGINE_COLOUR = "#d62728"
_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#9c755f", "#76b7b2", "#edc948", "#bab0ac")


def _colours(recommenders: Sequence[str], engine: str) -> dict[str, str]:
    """The engine in red, the others in the palette's order."""
    others = iter(_COLOURS * (len(recommenders) // len(_COLOURS) + 1))
    return {name: _ENGINE_COLOUR if name == engine else next(others) for name in recommenders}


def metric_at_k_chart(
    metric: str,
    curves: Mapping[str, Sequence[float | None]],
    *,
    engine: str = "nurture",
    members: int | None = None,
) -> Chart:
    """A metric at every cut-off from 1 to k: one line per recommender, a dot per cut-off.

    Args:
        metric: ``precision`` or ``ndcg`` (the key of ``curves`` in the report's figures).
        curves: ``{recommender: [mean at 1, ..., mean at k]}``; ``None`` values are not drawn.
        engine: The recommender drawn in red (nurture's own ranking).
        members: How many members the means are over, for the caption.

    Returns:
        The chart ``<metric>-at-k``.
    """
    import altair as alt

    names = list(curves)
    rows = [
        {"recommender": name, "k": position, "value": value}
        for name, values in curves.items()
        for position, value in enumerate(values, start=1)
        if value is not None
    ]
    colours = _colours(names, engine)
    title = CURVE_TITLES.get(metric, f"{metric} at k")
    chart = (
        alt.Chart(alt.NamedData(name="curves"))
        .mark_line(point=True)
        .encode(
            x=alt.X("k:Q", title="k (length of the list)", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title=_CURVE_WORDS.get(metric, metric)),
            color=alt.Color(
                "recommender:N",
                sort=names,
                scale=alt.Scale(domain=names, range=[colours[name] for name in names]),
                legend=alt.Legend(title="recommender", orient="right"),
            ),
            tooltip=[
                alt.Tooltip("recommender:N"),
                alt.Tooltip("k:Q"),
                alt.Tooltip("value:Q", title=metric, format=".4f"),
            ],
        )
        .properties(width="container", height=280)
    )
    over = f", averaged over {members} members" if members is not None else ""
    longest = max((len(values) for values in curves.values()), default=0)
    return Chart(
        name=f"{metric}-at-k",
        title=title,
        caption=f"The {_CURVE_WORDS.get(metric, metric)} of each recommender's first k items"
        f"{over}, for k from 1 to {longest}; {engine} in red. Hover a dot for its value.",
        spec=chart_spec(chart, {"curves": rows}),
    )


def _best(
    values: Mapping[str, Mapping[str, float | None]], metrics: Sequence[str]
) -> dict[str, Any]:
    """The best value of each metric over the recommenders (coverage aside: more is not better)."""
    best: dict[str, Any] = {}
    for metric in metrics:
        known = [value for figures in values.values() if (value := figures.get(metric)) is not None]
        best[metric] = max(known) if known and not metric.startswith("coverage") else None
    return best


def _split_text(split: Mapping[str, Any]) -> str:
    if split.get("kind") == "temporal":
        text = f"temporal split at {split.get('cutoff')}"
        if "test_share" in split:
            text += f" (the last {float(split['test_share']):.0%} of interactions held out)"
        return text
    return f"given split: {split.get('train')} / {split.get('test')}"


def _render(
    figures: Mapping[str, Any],
    *,
    title: str,
    generated_at: dt.datetime,
    descriptions: Mapping[str, str],
) -> tuple[str, list[Chart]]:
    metrics: dict[str, dict[str, float | None]] = figures.get("metrics", {})
    names = next(iter(metrics.values()), {})
    metric_names = list(names)
    members = figures.get("counts", {}).get("evaluated_members")
    engine = "nurture"
    charts = [
        metric_at_k_chart(metric, curves, engine=engine, members=members)
        for metric, curves in figures.get("curves", {}).items()
        if any(value is not None for values in curves.values() for value in values)
    ]
    breakdowns = {
        grouping: [
            {
                "group": group,
                "members": group_figures["members"],
                "metrics": group_figures["metrics"],
                "best": _best(group_figures["metrics"], metric_names),
            }
            for group, group_figures in groups.items()
        ]
        for grouping, groups in figures.get("breakdowns", {}).items()
    }
    html = render_page(
        "evaluation.html.j2",
        title=title,
        generated_at=generated_at,
        charts=charts,
        by_name={chart.name: chart for chart in charts},
        figures=figures,
        recommenders=list(metrics),
        metric_names=metric_names,
        metrics=metrics,
        best=_best(metrics, metric_names),
        breakdowns=breakdowns,
        timings=figures.get("timings", {}),
        split_text=_split_text(figures.get("split", {})),
        descriptions=descriptions,
        engine=engine,
        members=members,
        comparison_metrics=list(next(iter(figures.get("comparisons", {}).values()), {})),
    )
    return html, charts


def render_evaluation_report(
    figures: Mapping[str, Any],
    *,
    generated_at: dt.datetime,
    title: str = "Offline evaluation",
    descriptions: Mapping[str, str] | None = None,
) -> str:
    """An evaluation's figures as one HTML page.

    Args:
        figures: The figures as ``nurture evaluate`` writes them as JSON.
        generated_at: When the report was made (shown on the page).
        title: The page title.
        descriptions: ``{recommender: what it is}``, shown beside the table.

    Returns:
        The HTML document; it loads nothing from anywhere.
    """
    return _render(
        figures, title=title, generated_at=generated_at, descriptions=descriptions or {}
    )[0]


def write_evaluation_report(
    figures: Mapping[str, Any],
    path: Path,
    *,
    generated_at: dt.datetime,
    title: str = "Offline evaluation",
    descriptions: Mapping[str, str] | None = None,
) -> WrittenReport:
    """Write an evaluation's report to ``path``.

    Args:
        figures: The figures as ``nurture evaluate`` writes them as JSON.
        path: The HTML file to write (its folder is made if missing).
        generated_at: When the report was made (shown on the page).
        title: The page title.
        descriptions: ``{recommender: what it is}``, shown beside the table.

    Returns:
        The file written, with a one-sentence summary.
    """
    html, charts = _render(
        figures, title=title, generated_at=generated_at, descriptions=descriptions or {}
    )
    members = figures.get("counts", {}).get("evaluated_members", 0)
    return WrittenReport(
        path=path.resolve(),
        size_bytes=write_report_file(path, html),
        charts=tuple(chart.name for chart in charts),
        summary=f"{len(figures.get('metrics', {}))} recommenders, {members} {figures.get('mode')} "
        f"members, k={figures.get('k')}",
    )
