"""The journey, delivery and simulation pages, and the inlined Vega libraries."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from nurture.operations import DeliveryReport, ReasonCount
from nurture.reports import (
    render_delivery_report,
    render_journey_report,
    render_simulation_report,
    vega_javascript,
    write_report_file,
    write_simulation_report,
)
from nurture.reports import vega as vega_module

from .pages import chart_rows, chart_specs, check_page, without_library
from .samples import DAYS, FUNNEL, SIMULATION, START

QUIET_REPORT = DeliveryReport(
    since="2026-03-01T00:00:00+00:00",
    generated_at=START.isoformat(),
    by_status={"queued": 0, "sending": 0, "sent": 508, "failed": 5, "suppressed": 2},
    total=515,
    failure_rate=0.01,
    failures=(ReasonCount("550 5.1.1 <address>: no such user", 5),),
    failures_other=0,
    suppressed_reasons=(ReasonCount("address is in the suppression list", 2),),
    bounced=3,
    queued_due=4,
    queued_later=7,
    retries_pending=1,
    oldest_queued_at=None,
    oldest_queued_age_hours=None,
    unknown=1,
    sending=0,
    sending_stuck=0,
)


def _text(html: str) -> str:
    return " ".join(without_library(html).split())


def test_the_journey_page_shows_each_funnel_with_counts_and_shares() -> None:
    html = render_journey_report([FUNNEL], title="Journeys", generated_at=START)

    assert list(chart_specs(html)) == ["funnel-welcome"]
    check_page(html, charts=1)
    text = _text(html)
    assert "Welcome &lt;new&gt; members (welcome)" in text
    assert '<td>send_welcome: opened</td><td>500 <span class="key">(25.0%)</span></td>' in text
    assert "<td>goal reached</td><td>300 " in text
    assert "consent 80 · suppressed 20" in text


def test_a_journey_page_without_journeys_has_no_script() -> None:
    html = render_journey_report([], title="Journeys", generated_at=START)

    check_page(html, charts=0)
    assert "No journey has run yet" in html


def test_the_delivery_page_shows_outcomes_per_day_reasons_and_queue() -> None:
    html = render_delivery_report(DAYS, QUIET_REPORT, title="Delivery", generated_at=START)

    (spec,) = chart_specs(html).values()
    assert sum(row["messages"] for row in chart_rows(spec)) == 516
    check_page(html, charts=1)
    text = _text(html)
    assert "2026-03-01 to 2026-03-03" in text
    assert '<td>2026-03-02</td><td>498 <span class="key">(99.6%)</span></td>' in text
    assert "<td>2026-03-01</td>" not in text  # a day without messages: in the chart only
    assert "550 5.1.1 &lt;address&gt;: no such user" in text
    assert "<td>due now</td><td>4</td>" in text


def test_a_delivery_page_of_quiet_days_says_so_without_a_chart() -> None:
    quiet = [dataclasses.replace(DAYS[0], day=f"2026-03-0{n}") for n in (1, 2)]
    html = render_delivery_report(quiet, QUIET_REPORT, title="Delivery", generated_at=START)

    check_page(html, charts=0)
    assert "No message was sent, failed or suppressed in these 2 days" in html


def test_the_simulation_page_shows_volumes_and_holds_and_names_no_member(
    tmp_path: Path,
) -> None:
    written = write_simulation_report(SIMULATION, tmp_path / "sim.html", generated_at=START)

    html = written.path.read_text(encoding="utf-8")
    assert written.charts == ("simulated-volumes", "simulated-holds")
    assert written.summary == "3 emails over 4 days, 3 held back"
    assert written.size_bytes == len(html.encode("utf-8"))
    check_page(html, charts=2)
    assert "@example.org" not in html
    text = _text(html)
    assert "the most any member would get in one such window is 2" in text
    assert "3 days from 2026-03-02 09:00 UTC" in text


def test_a_simulation_without_emails_says_so(tmp_path: Path) -> None:
    empty = dataclasses.replace(SIMULATION, sends=(), held=(), held_daily=())

    html = render_simulation_report(empty, title="Simulation", generated_at=START)

    check_page(html, charts=0)
    assert "The journeys would send no email in this period" in html


def test_a_report_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "page.html"

    assert write_report_file(path, "<p>first</p>") == 12
    assert write_report_file(path, "<p>é</p>") == 9
    assert path.read_text(encoding="utf-8") == "<p>é</p>"
    assert [p.name for p in path.parent.iterdir()] == ["page.html"]


def test_the_vega_libraries_are_inlined_safely_and_cached_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    javascript = vega_javascript()
    assert "vegaEmbed" in javascript
    assert "</script" not in javascript.lower() and "<!--" not in javascript

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = vega_module.vega_javascript.__wrapped__()  # type: ignore[attr-defined]
    (written,) = (tmp_path / "nurture").iterdir()
    assert cached == javascript == written.read_text(encoding="utf-8")
    assert vega_module.vega_lite_version() in written.name
    written.write_text("/* from the cache */", encoding="utf-8")
    assert vega_module.vega_javascript.__wrapped__() == "/* from the cache */"  # type: ignore[attr-defined]


def test_a_script_end_in_the_libraries_cannot_close_the_page_script() -> None:
    assert vega_module._inline_safe('s = "</script><!-- x";') == 's = "<\\/script><\\!-- x";'


def test_generated_at_is_shown_in_utc() -> None:
    html = render_journey_report(
        [], title="Journeys", generated_at=dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    )
    assert "Generated 2026-03-02 09:00 UTC" in html
