import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nurture.cli import app as nurture_app
from nurture.cli.reports import report, segments
from nurture.runtime import Runtime

from .conftest import N_MEMBERS, member_emails

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
    assert chosen.read_text(encoding="utf-8").count("<circle") == N_MEMBERS
    assert "<svg" in written.read_text(encoding="utf-8")


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
