"""`nurture recommend export` and `nurture match --member`."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nurture.cli import app
from nurture.cli.app import root
from nurture.cli.recommend import recommend_app
from nurture.recommend import EXPORT_COLUMNS
from tests.pipeline_helpers import CONTENT

runner = CliRunner()

N_MEMBERS = 12


def _nurture_app() -> typer.Typer:
    """The ``nurture`` app with ``recommend`` on it, whether app.py registers it yet or not."""
    if any(group.name == "recommend" for group in app.registered_groups):
        return app
    local = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    local.callback()(root)
    local.add_typer(recommend_app, name="recommend")
    return local


@pytest.fixture
def community(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """A small demo community, one cycle run; the base options and the members' emails."""
    monkeypatch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")
    base = ["--workspace", str(CONTENT), "--data-dir", str(tmp_path / "data")]
    result = runner.invoke(app, [*base, "demo", "--members", str(N_MEMBERS), "--no-prefect"])
    assert result.exit_code == 0, result.output
    members = (tmp_path / "data" / "demo" / "members.csv").read_text(encoding="utf-8")
    emails = [row["email"] for row in csv.DictReader(io.StringIO(members))]
    return base, emails


def test_recommend_export_has_help() -> None:
    nurture = _nurture_app()
    assert "recommend" in runner.invoke(nurture, ["--help"]).output
    result = runner.invoke(nurture, ["recommend", "export", "--help"])
    assert result.exit_code == 0, result.output
    assert "--format" in result.output and "--output" in result.output
    assert "e-mail" in result.output  # says what the file holds about members


def test_export_csv_to_stdout(community: tuple[list[str], list[str]]) -> None:
    base, emails = community
    result = runner.invoke(_nurture_app(), [*base, "recommend", "export"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert {row["member_email"] for row in rows} == set(emails)
    for email in emails:
        ranks = [int(row["rank"]) for row in rows if row["member_email"] == email]
        assert ranks == sorted(ranks) and ranks[0] == 1
    assert all(row["reason"] and row["item_key"] for row in rows)


def test_export_jsonl_to_a_private_file(
    community: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    base, emails = community
    output = tmp_path / "out" / "lists.jsonl"
    result = runner.invoke(_nurture_app(), [*base, "recommend", "export", "--output", str(output)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert {record["member_email"] for record in records} == set(emails)
    assert f"exported {len(records)} recommendations" in result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600


def test_export_format_option_wins_over_the_suffix(
    community: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    base, _ = community
    output = tmp_path / "lists.jsonl"
    args = [*base, "recommend", "export", "--format", "csv", "-o", str(output)]
    assert runner.invoke(_nurture_app(), args).exit_code == 0
    assert output.read_text(encoding="utf-8").startswith(",".join(EXPORT_COLUMNS))


def test_export_refuses_an_unknown_format(tmp_path: Path) -> None:
    base = ["--data-dir", str(tmp_path / "data")]
    result = runner.invoke(_nurture_app(), [*base, "recommend", "export", "--format", "xml"])
    assert result.exit_code != 0
    assert "csv or jsonl" in result.output


def test_match_member_shows_scores_and_reasons(community: tuple[list[str], list[str]]) -> None:
    base, emails = community
    result = runner.invoke(app, [*base, "match", "--member", emails[0]])
    assert result.exit_code == 0, result.output
    assert "Recommendations for" in result.output
    assert "score" in result.output and "why" in result.output
    export = runner.invoke(_nurture_app(), [*base, "recommend", "export", "-f", "jsonl"])
    first = json.loads(export.stdout.splitlines()[0])
    assert first["member_email"] == emails[0]
    assert f"{first['score']:.3f}" in result.output
