"""The chart builders: valid Vega-Lite, the data the report holds, tooltips on every mark."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import altair as alt
import pytest

from nurture.reports import (
    Chart,
    delivery_outcomes_chart,
    funnel_chart,
    lifecycle_mix_chart,
    segment_colours,
    segment_map_chart,
    segment_sizes_chart,
    simulated_holds_chart,
    simulated_volumes_chart,
)
from nurture.reports.charts import MAP_HEIGHT, MAP_WIDTH

from .samples import CARDS, DAYS, FUNNEL, HISTORY, POINTS, SIMULATION

COLOURS = segment_colours([card.key for card in CARDS])

BUILDERS: dict[str, Callable[[], Chart]] = {
    "segment-map": lambda: segment_map_chart(POINTS, CARDS, COLOURS),
    "segment-sizes": lambda: segment_sizes_chart(HISTORY, COLOURS),
    "lifecycle-mix": lambda: lifecycle_mix_chart(CARDS),
    "funnel-welcome": lambda: funnel_chart(FUNNEL),
    "delivery-outcomes": lambda: delivery_outcomes_chart(DAYS),
    "simulated-volumes": lambda: simulated_volumes_chart(SIMULATION),
    "simulated-holds": lambda: simulated_holds_chart(SIMULATION),
}


def _rows(chart: Chart) -> list[dict[str, Any]]:
    (rows,) = chart.spec["datasets"].values()
    return rows


def _tooltips(spec: dict[str, Any]) -> list[dict[str, Any]]:
    layers = spec.get("layer", [spec])
    return [field for layer in layers for field in layer.get("encoding", {}).get("tooltip", [])]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_chart_is_valid_vega_lite_with_its_data_and_tooltips(name: str) -> None:
    chart = BUILDERS[name]()

    assert chart.name == name
    alt.TopLevelSpec.validate(chart.spec)  # the whole specification, rows included
    assert json.loads(json.dumps(chart.spec)) == chart.spec
    assert _rows(chart)
    assert _tooltips(chart.spec)
    assert chart.title and chart.caption


def test_the_map_keeps_one_scale_for_both_axes() -> None:
    chart = segment_map_chart(POINTS, CARDS, COLOURS)

    x, y = (chart.spec["encoding"][axis]["scale"]["domain"] for axis in ("x", "y"))
    assert (x[1] - x[0]) / (y[1] - y[0]) == pytest.approx(MAP_WIDTH / MAP_HEIGHT)
    assert x[0] < -2.0 and x[1] > 2.0 and y[0] < -0.5 and y[1] > 1.0
    rows = _rows(chart)
    assert [row["label"] for row in rows] == ["Organisers <&> friends"] * 3 + ["Newcomers"] * 2
    assert rows[0]["members"] == "3 (60.0%)"


def test_sizes_over_time_colour_past_segments_too() -> None:
    chart = segment_sizes_chart(HISTORY, COLOURS)

    scale = chart.spec["encoding"]["color"]["scale"]
    assert scale["domain"] == ["seg-1", "seg-2", "old"]
    assert scale["range"][:2] == [COLOURS["seg-1"], COLOURS["seg-2"]]
    assert [(row["run"], row["segment"], row["members"]) for row in _rows(chart)] == [
        (entry.run_id, entry.key, entry.size) for entry in HISTORY
    ]
    assert "last 2 segmentation runs" in chart.caption


def test_the_funnel_lists_its_stages_in_order_with_their_shares() -> None:
    chart = funnel_chart(FUNNEL)

    rows = _rows(chart)
    assert [row["stage"] for row in rows][:6] == [
        "entered",
        "send_welcome: sent",
        "send_welcome: delivered",
        "send_welcome: opened",
        "send_welcome: clicked",
        "send_tips: sent",
    ]
    assert [row["stage"] for row in rows][-4:] == [
        "goal reached",
        "completed",
        "exited",
        "in progress",
    ]
    texts = {row["stage"]: row["text"] for row in rows}
    assert texts["entered"] == "2000 (100.0%)"
    assert texts["send_welcome: opened"] == "500 (25.0%)"
    assert texts["goal reached"] == "300 (15.0%)"
    y = chart.spec["layer"][0]["encoding"]["y"]
    assert y["sort"] == [row["stage"] for row in rows]
    assert chart.title == "Welcome <new> members (welcome)"


def test_delivery_days_show_every_day_and_only_outcomes_that_happened() -> None:
    chart = delivery_outcomes_chart(DAYS)

    assert chart.spec["encoding"]["x"]["scale"]["domain"] == [day.day for day in DAYS]
    assert [(row["day"], row["outcome"], row["messages"]) for row in _rows(chart)] == [
        ("2026-03-02", "sent", 498),
        ("2026-03-02", "suppressed", 2),
        ("2026-03-03", "sent", 10),
        ("2026-03-03", "failed", 5),
        ("2026-03-03", "unknown", 1),
    ]
    assert _rows(chart)[0]["share"] == 0.996


def test_simulated_emails_and_holds_per_day_and_journey() -> None:
    volumes = _rows(simulated_volumes_chart(SIMULATION))
    holds = _rows(simulated_holds_chart(SIMULATION))

    assert [(row["day"], row["journey"], row["emails"]) for row in volumes] == [
        ("2026-03-02", "welcome", 2),
        ("2026-03-03", "digest", 1),
    ]
    assert [(row["day"], row["hold"], row["emails"]) for row in holds] == [
        ("2026-03-02", "quiet hours: waited", 2),
        ("2026-03-03", "budget: waited", 1),
    ]
    domain = simulated_holds_chart(SIMULATION).spec["encoding"]["x"]["scale"]["domain"]
    assert domain == ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]  # 9:00 to 9:00
