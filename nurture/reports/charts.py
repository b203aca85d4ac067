"""The reports' charts: Vega-Lite specifications built with Altair, data included.

Each function turns report data into a :class:`Chart`: its specification is JSON-ready and
carries its rows under ``datasets`` (Altair checks the specification against the Vega-Lite
schema; the rows, plain values, are added after that check, which would cost seconds on a map of
thousands of members). A page draws the charts with the inlined Vega libraries
(:mod:`nurture.reports.vega`); every chart has tooltips.

Altair is imported when a chart is built, not with this module: it takes a second to import,
and the commands that only read cards or status need not pay for it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nurture.operations.delivery import OUTCOMES, DeliveryDay
from nurture.operations.funnel import FUNNEL_STAGES, JourneyFunnel
from nurture.operations.shares import count_with_share, share_of
from nurture.reports.cards import SegmentCard
from nurture.reports.segment_history import SegmentSize
from nurture.reports.segment_map import MapPoint
from nurture.storage.models import LifecycleStage

if TYPE_CHECKING:
    import altair

    from nurture.journeys.simulate import SimulationReport

__all__ = [
    "MAP_HEIGHT",
    "MAP_WIDTH",
    "STAGE_COLOURS",
    "Chart",
    "chart_spec",
    "delivery_outcomes_chart",
    "funnel_chart",
    "lifecycle_mix_chart",
    "segment_map_chart",
    "segment_sizes_chart",
    "simulated_holds_chart",
    "simulated_volumes_chart",
]

MAP_WIDTH = 640
MAP_HEIGHT = 420
_MAP_MARGIN = 12

STAGE_COLOURS = dict(
    zip(
        (*(stage.value for stage in LifecycleStage), "unknown"),
        ("#9ecae1", "#6baed6", "#31a354", "#238b45", "#006d2c", "#fd8d3c", "#bdbdbd", "#e4e7eb"),
        strict=True,
    )
)
"""A colour per lifecycle stage: greens as members grow, orange when they drift away."""

_FUNNEL_COLOURS = dict(
    zip(
        FUNNEL_STAGES,
        (
            "#4e79a7",
            "#a0cbe8",
            "#59a14f",
            "#8cd17d",
            "#f1ce63",
            "#b07aa1",
            "#86bcb6",
            "#e15759",
            "#bab0ac",
        ),
        strict=True,
    )
)
_OUTCOME_COLOURS = dict(zip(OUTCOMES, ("#59a14f", "#e15759", "#bab0ac", "#f28e2b"), strict=True))
_HOLD_KINDS = {
    "budget_deferred": ("budget: waited", "#4e79a7"),
    "budget_skipped": ("budget: skipped", "#e15759"),
    "quiet_deferred": ("quiet hours: waited", "#76b7b2"),
}
_NOT_A_NAME = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class Chart:
    """A chart of a report: a Vega-Lite specification and the words around it.

    Attributes:
        name: Its id on the page (``segment-map``): lowercase letters, digits, ``_`` and ``-``.
        title: Its heading.
        caption: What it shows, in a sentence or two (also its accessible description).
        spec: The Vega-Lite specification, JSON-ready, its data included.
    """

    name: str
    title: str
    caption: str
    spec: dict[str, Any]


def _chart_name(*parts: str) -> str:
    return "-".join(_NOT_A_NAME.sub("-", part.lower()).strip("-") or "x" for part in parts)


def chart_spec(
    chart: altair.TopLevelMixin, datasets: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, Any]:
    """An Altair chart's specification, checked against the Vega-Lite schema, with its rows.

    Build the chart on ``alt.NamedData(name=...)``: the rows are attached after the check, which
    would cost seconds on thousands of rows.

    Args:
        chart: The Altair chart.
        datasets: ``{NamedData name: rows}``; each row maps field names to JSON values.

    Returns:
        The JSON-ready specification, for :class:`Chart`.
    """
    spec = chart.to_dict()
    spec["datasets"] = {name: [dict(row) for row in rows] for name, rows in datasets.items()}
    return spec


def _colour_scale(colours: Mapping[str, str]) -> altair.Scale:
    import altair as alt

    return alt.Scale(domain=list(colours), range=list(colours.values()))


def _day_axis(days: Sequence[str]) -> altair.X:
    """An x axis of whole UTC days (ISO dates), every one of ``days`` shown, with data or not."""
    import altair as alt

    return alt.X(
        "day:O",
        title="day (UTC)",
        scale=alt.Scale(domain=list(days)),
        axis=alt.Axis(labelAngle=-45, labelOverlap=True),
    )


def _map_domains(points: Sequence[MapPoint]) -> tuple[list[float], list[float]]:
    """Axis domains with one scale for both axes (distances keep their meaning), centred."""
    xs = [p.x for p in points] or [0.0]
    ys = [p.y for p in points] or [0.0]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    inner_w, inner_h = MAP_WIDTH - 2 * _MAP_MARGIN, MAP_HEIGHT - 2 * _MAP_MARGIN
    scale = min(inner_w / span_x if span_x else inner_w, inner_h / span_y if span_y else inner_h)
    mid_x, mid_y = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    half_w, half_h = MAP_WIDTH / 2 / scale, MAP_HEIGHT / 2 / scale
    return [mid_x - half_w, mid_x + half_w], [mid_y - half_h, mid_y + half_h]


def segment_map_chart(
    points: Sequence[MapPoint], cards: Sequence[SegmentCard], colours: Mapping[str, str]
) -> Chart:
    """Members as dots on the PCA map, coloured by segment; a dot's tooltip names its segment.

    Args:
        points: Members on the map (:func:`~nurture.reports.segment_map`).
        cards: The segments' cards, for their labels and sizes.
        colours: ``{segment key: colour}`` (:func:`~nurture.reports.segment_colours`).

    Returns:
        The chart ``segment-map``, one dot per point.
    """
    import altair as alt

    by_key = {card.key: card for card in cards}
    rows = []
    for point in points:
        card = by_key.get(point.segment)
        rows.append(
            {
                "x": round(point.x, 4),
                "y": round(point.y, 4),
                "segment": point.segment,
                "label": card.label if card else point.segment,
                "members": f"{card.size} ({card.share:.1%})" if card else "",
            }
        )
    x_domain, y_domain = _map_domains(points)
    chart = (
        alt.Chart(alt.NamedData(name="members"))
        .mark_circle(size=28, opacity=0.75)
        .encode(
            x=alt.X("x:Q", scale=alt.Scale(domain=x_domain, nice=False, zero=False), axis=None),
            y=alt.Y("y:Q", scale=alt.Scale(domain=y_domain, nice=False, zero=False), axis=None),
            color=alt.Color("segment:N", scale=_colour_scale(colours), legend=None),
            tooltip=[
                alt.Tooltip("label:N", title="segment"),
                alt.Tooltip("segment:N", title="key"),
                alt.Tooltip("members:N", title="its members"),
            ],
        )
        .properties(width=MAP_WIDTH, height=MAP_HEIGHT)
        .configure_view(stroke=None)
    )
    return Chart(
        name="segment-map",
        title="Map of members",
        caption=f"{len(points)} members projected to two dimensions (PCA of their profiles), "
        "coloured by segment: nearby dots have similar profiles. Hover a dot for its segment.",
        spec=chart_spec(chart, {"members": rows}),
    )


def segment_sizes_chart(history: Sequence[SegmentSize], colours: Mapping[str, str]) -> Chart:
    """Each segment's members in each segmentation run: one line per segment.

    Args:
        history: Sizes per run (:func:`~nurture.reports.segment_size_history`).
        colours: ``{segment key: colour}``; segments not in it are drawn grey.

    Returns:
        The chart ``segment-sizes``.
    """
    import altair as alt

    known = {**colours}
    for entry in history:
        known.setdefault(entry.key, "#9aa5b1")
    rows = [
        {
            "run_at": entry.run_at.isoformat(),
            "when": entry.run_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "run": entry.run_id,
            "segment": entry.key,
            "label": entry.label,
            "members": entry.size,
            "share": entry.share,
        }
        for entry in history
    ]
    chart = (
        alt.Chart(alt.NamedData(name="sizes"))
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "run_at:T",
                title="segmentation run (UTC)",
                scale=alt.Scale(type="utc"),
                axis=alt.Axis(format="%Y-%m-%d", labelOverlap=True, tickCount=8),
            ),
            y=alt.Y("members:Q", title="members"),
            color=alt.Color("segment:N", scale=_colour_scale(known), legend=None),
            tooltip=[
                alt.Tooltip("label:N", title="segment"),
                alt.Tooltip("segment:N", title="key"),
                alt.Tooltip("when:N", title="run"),
                alt.Tooltip("members:Q"),
                alt.Tooltip("share:Q", title="share of the members clustered", format=".1%"),
            ],
        )
        .properties(width="container", height=260)
    )
    runs = len({entry.run_id for entry in history})
    return Chart(
        name="segment-sizes",
        title="Segment sizes over time",
        caption=f"Members in each segment at each of the last {runs} segmentation runs.",
        spec=chart_spec(chart, {"sizes": rows}),
    )


def lifecycle_mix_chart(cards: Sequence[SegmentCard]) -> Chart:
    """Each segment's members by lifecycle stage: one bar per segment, stages stacked to 100%.

    Args:
        cards: The cards, in the order to show them.

    Returns:
        The chart ``lifecycle-mix``.
    """
    import altair as alt

    order = {stage: index for index, stage in enumerate(STAGE_COLOURS)}
    rows = []
    names = []
    for card in cards:
        name = f"{card.label} · {card.key}"
        names.append(name)
        size = sum(card.lifecycle.values())
        for stage, count in card.lifecycle.items():
            rows.append(
                {
                    "segment": name,
                    "stage": stage.replace("_", " "),
                    "order": order.get(stage, len(order)),
                    "members": count,
                    "share": share_of(count, size),
                }
            )
    stages = {stage.replace("_", " "): colour for stage, colour in STAGE_COLOURS.items()}
    chart = (
        alt.Chart(alt.NamedData(name="stages"))
        .mark_bar()
        .encode(
            y=alt.Y("segment:N", sort=names, title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X("members:Q", stack="normalize", title="share of the segment"),
            color=alt.Color(
                "stage:N",
                scale=_colour_scale(stages),
                legend=alt.Legend(title="lifecycle stage", orient="bottom"),
            ),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("segment:N"),
                alt.Tooltip("stage:N"),
                alt.Tooltip("members:Q"),
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
        .properties(width="container", height=alt.Step(26))
    )
    return Chart(
        name="lifecycle-mix",
        title="Lifecycle mix",
        caption="Where each segment's members stand, from newcomers to members drifting away.",
        spec=chart_spec(chart, {"stages": rows}),
    )


def funnel_chart(funnel: JourneyFunnel) -> Chart:
    """A journey's funnel as bars, each labelled with its count and share of those who entered.

    The bars: entered; each send step's sent, delivered, opened and clicked; then the goal, the
    completions, the other exits and those still in progress.

    Args:
        funnel: The journey's funnel (:func:`~nurture.operations.journey_funnels`).

    Returns:
        The chart ``funnel-<journey>``.
    """
    import altair as alt

    stages = funnel.stages()
    rows = [
        {
            "stage": stage.label,
            "kind": stage.stage.replace("_", " "),
            "count": stage.count,
            "share": stage.share,
            "text": count_with_share(stage.count, funnel.entered),
        }
        for stage in stages
    ]
    kinds = {kind.replace("_", " "): colour for kind, colour in _FUNNEL_COLOURS.items()}
    most = max((stage.count for stage in stages), default=0)
    base = alt.Chart(alt.NamedData(name="funnel")).encode(
        y=alt.Y("stage:N", sort=[str(row["stage"]) for row in rows], title=None),
        x=alt.X(
            "count:Q",
            title="enrollments or emails",
            scale=alt.Scale(domain=[0, max(most * 1.2, 1)], nice=False),  # room for the labels
            axis=alt.Axis(format="d", tickMinStep=1),
        ),
    )
    bars = base.mark_bar().encode(
        color=alt.Color("kind:N", scale=_colour_scale(kinds), legend=None),
        tooltip=[
            alt.Tooltip("stage:N"),
            alt.Tooltip("text:N", title="count (share of those who entered)"),
        ],
    )
    labels = base.mark_text(align="left", dx=4, color="#3e4c59").encode(text="text:N")
    chart = alt.layer(bars, labels).properties(width="container", height=alt.Step(22))
    return Chart(
        name=_chart_name("funnel", funnel.journey),
        title=f"{funnel.name} ({funnel.journey})",
        caption=f"{funnel.entered} enrollments: each send step's emails sent, delivered, "
        "opened and clicked, then how the members left; shares are of those who entered.",
        spec=chart_spec(chart, {"funnel": rows}),
    )


def _stacked_days(
    data: str, days: Sequence[str], *, measure: str, part: str, colour: altair.Color
) -> altair.Chart:
    """Bars per day, stacked by ``part`` in the rows' ``order``, with each part's share."""
    import altair as alt

    return (
        alt.Chart(alt.NamedData(name=data))
        .mark_bar()
        .encode(
            x=_day_axis(days),
            y=alt.Y(f"{measure}:Q", title=measure),
            color=colour,
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("day:O"),
                alt.Tooltip(f"{part}:N"),
                alt.Tooltip(f"{measure}:Q"),
                alt.Tooltip("share:Q", title=f"of the day's {measure}", format=".1%"),
            ],
        )
        .properties(width="container", height=260)
    )


def delivery_outcomes_chart(days: Sequence[DeliveryDay]) -> Chart:
    """Messages settled per UTC day, stacked by outcome (sent, failed, suppressed, unknown).

    Args:
        days: The days (:func:`~nurture.operations.delivery_by_day`).

    Returns:
        The chart ``delivery-outcomes``.
    """
    import altair as alt

    rows = [
        {
            "day": day.day,
            "outcome": outcome,
            "order": index,
            "messages": day.by_outcome[outcome],
            "share": day.shares[outcome],
        }
        for day in days
        for index, outcome in enumerate(OUTCOMES)
        if day.by_outcome[outcome]
    ]
    chart = _stacked_days(
        "outcomes",
        [day.day for day in days],
        measure="messages",
        part="outcome",
        colour=alt.Color(
            "outcome:N",
            scale=_colour_scale(_OUTCOME_COLOURS),
            legend=alt.Legend(title="outcome", orient="bottom"),
        ),
    )
    return Chart(
        name="delivery-outcomes",
        title="Delivery outcomes per day",
        caption=f"Messages settled on each of the last {len(days)} days (UTC), by outcome.",
        spec=chart_spec(chart, {"outcomes": rows}),
    )


def simulated_volumes_chart(report: SimulationReport) -> Chart:
    """The emails a simulation queued per UTC day, stacked by journey.

    Args:
        report: The simulation (:func:`~nurture.journeys.simulate.simulate_journeys`).

    Returns:
        The chart ``simulated-volumes``.
    """
    import altair as alt

    order = {key: index for index, key in enumerate(report.journeys)}
    volumes = report.daily_volumes()
    rows: list[dict[str, Any]] = []
    for day, counts in volumes.items():
        total = sum(counts.values())
        rows.extend(
            {
                "day": day.isoformat(),
                "journey": key,
                "order": order.get(key, len(order)),
                "emails": count,
                "share": share_of(count, total),
            }
            for key, count in counts.items()
        )
    chart = _stacked_days(
        "volumes",
        [day.isoformat() for day in volumes],
        measure="emails",
        part="journey",
        colour=alt.Color(
            "journey:N",
            sort=list(report.journeys),
            legend=alt.Legend(title="journey", orient="bottom"),
        ),
    )
    return Chart(
        name="simulated-volumes",
        title="Emails per day",
        caption="The emails the journeys would queue each day (UTC), by journey.",
        spec=chart_spec(chart, {"volumes": rows}),
    )


def simulated_holds_chart(report: SimulationReport) -> Chart:
    """The emails the budget and the quiet hours held back per UTC day, stacked by kind of hold.

    Args:
        report: The simulation (:func:`~nurture.journeys.simulate.simulate_journeys`).

    Returns:
        The chart ``simulated-holds``.
    """
    import altair as alt

    rows = [
        {
            "day": held.day.isoformat(),
            "journey": held.journey_key,
            "hold": label,
            "emails": getattr(held, field),
        }
        for held in report.held_daily
        for field, (label, _) in _HOLD_KINDS.items()
        if getattr(held, field)
    ]
    colours = dict(_HOLD_KINDS.values())
    chart = (
        alt.Chart(alt.NamedData(name="holds"))
        .mark_bar()
        .encode(
            x=_day_axis([day.isoformat() for day in report.daily_volumes()]),
            y=alt.Y("emails:Q", title="emails held"),
            color=alt.Color(
                "hold:N",
                scale=_colour_scale(colours),
                legend=alt.Legend(title="held by", orient="bottom"),
            ),
            detail="journey:N",
            tooltip=[
                alt.Tooltip("day:O"),
                alt.Tooltip("journey:N"),
                alt.Tooltip("hold:N", title="held by"),
                alt.Tooltip("emails:Q"),
            ],
        )
        .properties(width="container", height=220)
    )
    return Chart(
        name="simulated-holds",
        title="Emails held back per day",
        caption="Emails that waited for room in the member's budget, were skipped because it "
        "was spent, or waited for the end of the member's quiet hours, by day (UTC).",
        spec=chart_spec(chart, {"holds": rows}),
    )
