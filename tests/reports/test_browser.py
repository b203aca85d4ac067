"""The reports in a real browser: Debian's chromium, headless, every network request refused.

Playwright drives the system's chromium (``NURTURE_TEST_CHROMIUM``, else ``chromium`` on the
path; ``.ci/run`` installs it), never a browser of its own. Each page must draw every chart from
what it holds, with no request leaving ``file://``: the SVG marks are counted against the
chart's data, and hovering a mark shows its tooltip.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, sync_playwright

from nurture.evaluation import BASELINES, evaluate_folder
from nurture.journeys import load_journeys, load_sending_rules
from nurture.journeys.simulate import simulate_journeys
from nurture.orchestration import run_cycle
from nurture.reports import (
    render_segment_report,
    write_delivery_report,
    write_evaluation_report,
    write_journey_report,
    write_segment_report,
    write_simulation_report,
)
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import open_session
from nurture.workspace import load_questionnaire
from tests.pipeline_helpers import CONTENT, NOW, seed_demo

from .pages import chart_rows, chart_specs
from .samples import CARDS, POINTS

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("NURTURE_TEST_CHROMIUM") or shutil.which("chromium") or "chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPORTS = ("segments", "journeys", "delivery", "simulation", "evaluation")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evaluation"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four reports of a small community after a nightly run and a delivery, and the
    evaluation report of the example dataset."""
    root = tmp_path_factory.mktemp("browser")
    workspace = root / "workspace"
    shutil.copytree(CONTENT, workspace)
    settings = Settings(
        workspace=workspace,
        data_dir=root / "data",
        database_url=f"sqlite:///{root / 'nurture.db'}",
        embedding_model="hashing-64",
    )
    runtime = Runtime(settings)
    seed_demo(runtime, 40)
    run_cycle(runtime, NOW)
    paths = {name: root / f"{name}.html" for name in REPORTS}
    engine = runtime.engine
    with runtime.session() as session:
        questionnaire = load_questionnaire(settings.questionnaire_path)
        write_segment_report(session, paths["segments"], now=NOW, questionnaire=questionnaire)
        write_journey_report(session, paths["journeys"], now=NOW)
        write_delivery_report(session, paths["delivery"], now=NOW, days=7)
    with open_session(engine) as session:
        simulation = simulate_journeys(
            session,
            load_journeys(settings.journeys_dir, settings.templates_dir),
            start=NOW,
            days=14,
            rules=load_sending_rules(settings.sending_rules_path),
            suppression_salt=settings.suppression_salt.get_secret_value(),
        )
    write_simulation_report(simulation, paths["simulation"], generated_at=NOW)
    evaluation = evaluate_folder(settings, EXAMPLE, k=10)
    write_evaluation_report(
        evaluation.to_dict(), paths["evaluation"], generated_at=NOW, descriptions=BASELINES
    )
    return paths


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Headless chromium with a fresh profile, offline."""
    executable = shutil.which(CHROMIUM)
    if executable is None:
        pytest.fail(f"no {CHROMIUM}: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=executable,
            headless=True,
            args=FLAGS,
            offline=True,
        )
        yield context
        context.close()


class Opened:
    """A report open in the browser, every chart drawn (or failed), and what went wrong."""

    def __init__(self, browser: BrowserContext, path: Path) -> None:
        self.refused: list[str] = []
        self.errors: list[str] = []
        self.page: Page = browser.new_page()
        self.page.route("**/*", self._only_files)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console", lambda message: message.type == "error" and self.errors.append(message.text)
        )
        self.page.goto(path.as_uri())
        self.page.wait_for_function(
            "document.querySelectorAll('figure.chart:not([data-rendered])').length === 0",
            timeout=20_000,
        )
        self.html = path.read_text(encoding="utf-8")

    def _only_files(self, route: object) -> None:
        request = route.request  # type: ignore[attr-defined]
        if request.url.startswith("file://"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            self.refused.append(request.url)
            route.abort()  # type: ignore[attr-defined]

    def marks(self, chart: str, kind: str) -> Locator:
        """The data marks of a kind (``symbol``, ``line``, ``rect``, ``text``) drawn in a chart,
        not the axes' or legends'."""
        element = "text" if kind == "text" else "path"
        return self.page.locator(f"#{chart} svg .mark-{kind}.role-mark {element}")

    def tooltip_of(self, chart: str, kind: str) -> str:
        """Hover the first mark of a kind in ``chart``: the tooltip's text."""
        self.marks(chart, kind).first.hover(force=True)
        tooltip = self.page.locator("#vg-tooltip-element.visible")
        tooltip.wait_for(timeout=5_000)
        return tooltip.inner_text()

    def check_drawn(self, charts: list[str]) -> None:
        """Every chart of the page is an SVG; nothing was requested, nothing failed."""
        drawn = self.page.eval_on_selector_all(
            "figure.chart", "figures => figures.map(f => [f.id, f.dataset.rendered])"
        )
        assert drawn == [[name, "yes"] for name in charts]
        for name in charts:
            assert self.page.locator(f"#{name} .vega svg").count() == 1
        assert self.refused == []
        assert self.errors == []


@pytest.fixture
def opened(browser: BrowserContext) -> Iterator[list[Opened]]:
    pages: list[Opened] = []
    yield pages
    for page in pages:
        page.page.close()


def _open(opened: list[Opened], browser: BrowserContext, path: Path) -> Opened:
    page = Opened(browser, path)
    opened.append(page)
    return page


def test_the_segment_report_draws_the_map_sizes_and_lifecycle_offline(
    browser: BrowserContext, reports: dict[str, Path], opened: list[Opened]
) -> None:
    page = _open(opened, browser, reports["segments"])
    specs = chart_specs(page.html)
    page.check_drawn(["segment-map", "segment-sizes", "lifecycle-mix"])

    dots = chart_rows(specs["segment-map"])
    assert page.marks("segment-map", "symbol").count() == len(dots) == 40
    sizes = chart_rows(specs["segment-sizes"])
    assert page.marks("segment-sizes", "line").count() == len({r["segment"] for r in sizes})
    assert page.marks("segment-sizes", "symbol").count() == len(sizes)
    stages = chart_rows(specs["lifecycle-mix"])
    assert page.marks("lifecycle-mix", "rect").count() == len(stages)

    tooltip = page.tooltip_of("segment-map", "symbol")
    assert any(dot["label"] in tooltip and dot["segment"] in tooltip for dot in dots), tooltip
    assert "its members" in tooltip


def test_the_journey_report_draws_a_funnel_per_journey_offline(
    browser: BrowserContext, reports: dict[str, Path], opened: list[Opened]
) -> None:
    page = _open(opened, browser, reports["journeys"])
    specs = chart_specs(page.html)
    assert len(specs) >= 2
    page.check_drawn(list(specs))

    for name, spec in specs.items():
        rows = chart_rows(spec)
        assert page.marks(name, "rect").count() == len(rows)
        labels = page.marks(name, "text").all_text_contents()
        assert labels == [row["text"] for row in rows]
    busiest = max(specs, key=lambda name: chart_rows(specs[name])[0]["count"])
    tooltip = page.tooltip_of(busiest, "rect")  # the first bar: those who entered, the longest
    assert "entered" in tooltip and chart_rows(specs[busiest])[0]["text"] in tooltip


def test_the_delivery_and_simulation_reports_draw_per_day_offline(
    browser: BrowserContext, reports: dict[str, Path], opened: list[Opened]
) -> None:
    delivery = _open(opened, browser, reports["delivery"])
    delivery.check_drawn(["delivery-outcomes"])
    outcomes = chart_rows(chart_specs(delivery.html)["delivery-outcomes"])
    assert outcomes and delivery.marks("delivery-outcomes", "rect").count() == len(outcomes)
    assert "outcome" in delivery.tooltip_of("delivery-outcomes", "rect")

    simulation = _open(opened, browser, reports["simulation"])
    specs = chart_specs(simulation.html)
    assert "simulated-volumes" in specs
    simulation.check_drawn(list(specs))
    for name, spec in specs.items():
        assert simulation.marks(name, "rect").count() == len(chart_rows(spec))
    assert "journey" in simulation.tooltip_of("simulated-volumes", "rect")


def test_the_evaluation_report_plots_every_recommender_at_every_k_offline(
    browser: BrowserContext, reports: dict[str, Path], opened: list[Opened]
) -> None:
    page = _open(opened, browser, reports["evaluation"])
    specs = chart_specs(page.html)
    page.check_drawn(["precision-at-k", "ndcg-at-k"])

    for name, spec in specs.items():
        rows = chart_rows(spec)
        recommenders = {row["recommender"] for row in rows}
        assert recommenders == {"nurture", *BASELINES}
        assert page.marks(name, "line").count() == len(recommenders)
        assert page.marks(name, "symbol").count() == len(rows) == 10 * len(recommenders)
    plot = page.page.locator("#precision-at-k svg").bounding_box()
    assert plot is not None and plot["height"] > 100 and plot["width"] > 300  # visible
    tooltip = page.tooltip_of("precision-at-k", "symbol")
    assert "recommender" in tooltip and "precision" in tooltip
    assert page.page.locator("table#metrics tbody tr").count() == len(recommenders)


def test_a_page_that_loads_anything_is_caught(
    browser: BrowserContext, opened: list[Opened], tmp_path: Path
) -> None:
    page = tmp_path / "leaky.html"
    page.write_text('<img src="https://example.org/logo.png">', encoding="utf-8")

    leaky = _open(opened, browser, page)

    assert leaky.refused == ["https://example.org/logo.png"]


def test_markup_in_a_label_shows_as_text_in_the_tooltip(
    browser: BrowserContext, opened: list[Opened], tmp_path: Path
) -> None:
    label = "<b>Organisers</b> & <i>friends</i>"
    cards = [dataclasses.replace(CARDS[0], label=label), CARDS[1]]
    path = tmp_path / "segments.html"
    path.write_text(
        render_segment_report(cards, POINTS, title="Segments", generated_at=NOW), encoding="utf-8"
    )

    page = _open(opened, browser, path)
    page.check_drawn(["segment-map", "segment-sizes", "lifecycle-mix"])

    assert label in page.tooltip_of("segment-map", "symbol")  # the first dot: seg-1's
    assert page.page.locator("#vg-tooltip-element b, #vg-tooltip-element i").count() == 0
