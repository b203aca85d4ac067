"""The results page: conversion per arm with its intervals; the simulation page's arms."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from nurture.journeys.results import ArmResult, JourneyResults
from nurture.journeys.stats import Rate, compare_rates
from nurture.reports import (
    render_results_report,
    render_simulation_report,
    write_results_report,
)
from tests.reports.pages import chart_rows, chart_specs, check_page
from tests.reports.samples import SIMULATION

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _results(control: tuple[int, int], journey: tuple[int, int]) -> JourneyResults:
    base, arm = Rate.of(*control), Rate.of(*journey)
    retention = {30: Rate.of(10, 20), 60: Rate.of(0, 0), 90: Rate.of(0, 0)}
    return JourneyResults(
        journey_key="welcome",
        name="Welcome new members",
        goal_events=("post",),
        window_days=30,
        reference="control",
        arms=(
            ArmResult("control", base.total, 0, base, None, retention),
            ArmResult("journey", arm.total, 3, arm, compare_rates(arm, base), retention),
        ),
        effect=0.05,
        needed_per_arm=686,
        unassigned=0,
        now=NOW,
    )


def test_the_results_page_charts_each_arm_with_its_interval(tmp_path: Path) -> None:
    written = write_results_report(
        _results((20, 200), (60, 400)), tmp_path / "results.html", generated_at=NOW
    )

    html = written.path.read_text(encoding="utf-8")
    check_page(html, charts=1)
    assert written.charts == ("arm-conversion",)
    assert written.summary == "2 arms, 600 members"
    rows = chart_rows(chart_specs(html)["arm-conversion"])
    assert [row["arm"] for row in rows] == ["control", "journey"]
    assert rows[1]["rate"] == 0.15 and rows[1]["low"] < 0.15 < rows[1]["high"]
    assert "each arm needs about 686 members" in " ".join(html.split())
    assert "reference" in html and "+5.0" in html


def test_a_small_experiment_says_not_enough_data() -> None:
    html = render_results_report(_results((1, 8), (3, 9)), title="Results", generated_at=NOW)

    check_page(html, charts=1)
    assert "not enough data" in html


def test_the_simulation_page_counts_the_arms() -> None:
    report = dataclasses.replace(SIMULATION, arms={SIMULATION.journeys[0]: {"control": 2, "a": 9}})

    html = render_simulation_report(report, title="Simulation", generated_at=NOW)

    check_page(html, charts=2)
    assert "arms (control: sent nothing)" in html and "control 2, a 9" in html
    plain = render_simulation_report(SIMULATION, title="Simulation", generated_at=NOW)
    assert "arms (control" not in plain
