"""Smoke tests of the journeys and delivery figures on a tiny demo community.

They check that the figures run, do the same work on both sides and render; they assert nothing
about speed (``make bench`` measures it).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from benchmarks.run import DEFAULT_WORKSPACE, main, render_report, run_message_benchmarks
from nurture.settings import Settings

MEMBERS = 60


def test_journeys_and_delivery_figures_run_on_a_tiny_community() -> None:
    settings = Settings(workspace=DEFAULT_WORKSPACE)

    journeys, delivery = run_message_benchmarks(settings, MEMBERS, seed=3, repeats=1)

    assert journeys is not None and delivery is not None
    assert journeys.rows["messages"] == journeys.summary.messages_queued > 0
    assert journeys.rows["enrollments"] == journeys.summary.enrolled
    assert delivery.messages == journeys.summary.messages_queued
    assert delivery.summary.sent + delivery.summary.suppressed == delivery.messages
    assert [run.label for run in delivery.runs] == [
        "`deliver_messages`, null mailer, concurrency 1",
        "`deliver_messages`, null mailer, concurrency 4",
    ]
    report = render_report(
        None, dt.datetime(2026, 5, 1, tzinfo=dt.UTC), journeys=journeys, delivery=delivery
    )
    assert "## The journey engine against bare inserts" in report
    assert "## Delivery against a bare render loop" in report
    assert report.count("### What is measured") == 2
    assert f"--members {MEMBERS} --seed 3 --repeats 1" in report


def test_only_delivery_reports_that_figure_alone(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"

    status = main(
        ["--only", "delivery", "--members", str(MEMBERS), "--repeats", "1", "--output", str(output)]
    )

    report = output.read_text(encoding="utf-8")
    assert status == 0
    assert "## Delivery against a bare render loop" in report
    assert "## The journey engine" not in report
    assert "## The profile stage" not in report
