import json
from pathlib import Path

import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from nurture.cli import app as nurture_app
from nurture.cli.reports import report, segments
from nurture.orchestration import run_cycle
from nurture.runtime import Runtime
from nurture.storage import Journey, Message, MessageStatus
from tests.pipeline_helpers import NOW

from .conftest import N_MEMBERS, member_emails
from .pages import chart_rows, chart_specs

KINDS = ("segments", "journeys", "delivery")

runner = CliRunner()


def _app(runtime: Runtime) -> typer.Typer:
    """The two commands on a small app whose runtime is the test's."""
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = runtime

    app.command()(segments)
    app.command()(report)
    return app


def test_segments_json_is_the_cards(community: Runtime) -> None:
    result = runner.invoke(_app(community), ["segments", "--json"])

    assert result.exit_code == 0, result.output
    cards = json.loads(result.stdout)
    assert sum(card["size"] for card in cards) == N_MEMBERS
    for card in cards:
        assert card["label"] and card["kind"] == "cluster"
        assert all(feature["lift"] > 1 for feature in card["distinctive"])
        assert card["drift"]["text"]["size"] == "first run"
    assert not [email for email in member_emails(community) if email in result.stdout]


def test_segments_prints_a_table_per_card(community: Runtime) -> None:
    result = runner.invoke(_app(community), ["segments"])

    assert result.exit_code == 0, result.output
    assert f"segments of {N_MEMBERS} members" in result.output
    assert result.output.count("distinctive") == result.output.count("top words") >= 2
    assert "***@" in result.output


def test_segments_before_any_run(runtime: Runtime) -> None:
    result = runner.invoke(_app(runtime), ["segments"])
    assert result.exit_code == 0, result.output
    assert "No segments yet" in result.output
    assert json.loads(runner.invoke(_app(runtime), ["segments", "--json"]).stdout) == []


def test_report_writes_the_html_where_asked(community: Runtime, tmp_path: Path) -> None:
    default = runner.invoke(_app(community), ["report"])
    chosen = tmp_path / "out" / "mine.html"
    asked = runner.invoke(_app(community), ["report", "--output", str(chosen)])

    assert default.exit_code == 0, default.output
    written = community.settings.data_dir / "reports" / "segments.html"
    assert str(written.resolve()) in default.output
    assert f"{N_MEMBERS} members on the map" in default.output
    assert asked.exit_code == 0, asked.output
    assert str(chosen.resolve()) in asked.output
    specs = chart_specs(chosen.read_text(encoding="utf-8"))
    assert len(chart_rows(specs["segment-map"])) == N_MEMBERS
    assert list(chart_specs(written.read_text(encoding="utf-8"))) == list(specs)


def test_report_all_writes_the_segment_journey_and_delivery_pages(community: Runtime) -> None:
    run_cycle(community, NOW, lists=("deliver",))
    with community.session() as session:
        sent = session.scalar(select(func.count()).where(Message.status == MessageStatus.SENT))
        journeys = set(session.scalars(select(Journey.key)))
    assert sent and journeys

    result = runner.invoke(
        _app(community),
        ["report", "all", "--days", "7", "--now", NOW.strftime("%Y-%m-%dT%H:%M:%S")],
    )

    assert result.exit_code == 0, result.output
    folder = community.settings.data_dir / "reports"
    pages = {kind: (folder / f"{kind}.html").read_text(encoding="utf-8") for kind in KINDS}
    for kind in KINDS:
        assert f"{kind}: " in result.output
        assert str((folder / f"{kind}.html").resolve()) in result.output
    assert set(chart_specs(pages["journeys"])) == {f"funnel-{key}" for key in journeys}
    outcomes = chart_rows(chart_specs(pages["delivery"])["delivery-outcomes"])
    assert sum(row["messages"] for row in outcomes if row["outcome"] == "sent") == sent
    assert f"{sent} sent" in " ".join(result.output.split())
    assert (
        chart_specs(pages["delivery"])["delivery-outcomes"]["encoding"]["x"]["scale"]["domain"][-1]
        == NOW.date().isoformat()
    )
    emails = member_emails(community)
    for page in pages.values():
        assert [email for email in emails if email in page] == []


def test_report_all_refuses_one_output_file(community: Runtime, tmp_path: Path) -> None:
    result = runner.invoke(_app(community), ["report", "all", "-o", str(tmp_path / "a.html")])

    assert result.exit_code == 2
    assert "give --output with one report" in result.output
    assert not (community.settings.data_dir / "reports").exists()


def test_report_help_names_every_report() -> None:
    result = runner.invoke(nurture_app, ["report", "--help"])

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for kind in (*KINDS, "all"):
        assert kind in text
    assert "without network access" in text


def test_nurture_segments_json(
    community: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURTURE_DATABASE_URL", database_url)
    monkeypatch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")
    base = [
        "--workspace",
        str(community.settings.workspace),
        "--data-dir",
        str(community.settings.data_dir),
    ]

    result = runner.invoke(nurture_app, [*base, "segments", "--json"])

    assert result.exit_code == 0, result.output
    assert sum(card["size"] for card in json.loads(result.stdout)) == N_MEMBERS
