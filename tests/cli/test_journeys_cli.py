"""`nurture journeys simulate`, `status` and `migrate` on a small demo community."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from nurture.cli import app
from nurture.errors import MemberNotFoundError, NurtureError
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import Enrollment, Journey, Message
from tests.pipeline_helpers import CONTENT, seed_demo
from tests.reports.pages import chart_rows, chart_specs

runner = CliRunner()
ENV = {"NURTURE_EMBEDDING_MODEL": "hashing-64"}
START = "2026-11-01T09:00:00"  # when seed_demo generates the community
N_MEMBERS = 15


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A workspace copy and a data folder with a demo community and one journey run."""
    root = tmp_path_factory.mktemp("journeys-cli")
    workspace = root / "workspace"
    shutil.copytree(CONTENT, workspace)
    welcome = workspace / "journeys" / "welcome.yaml"  # every member, whenever they joined
    welcome.write_text(
        welcome.read_text(encoding="utf-8").replace("within_days: 14", "within_days: null"),
        encoding="utf-8",
    )
    settings = Settings(workspace=workspace, data_dir=root / "data", embedding_model="hashing-64")
    with Runtime(settings) as runtime:
        seed_demo(runtime, N_MEMBERS)
    result = _invoke(workspace, root / "data", "run", "--no-prefect", "--now", START)
    assert result.exit_code == 0, result.output
    return workspace, root / "data"


@pytest.fixture
def copy(community: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the community, for a test that changes it."""
    workspace, data = community
    shutil.copytree(workspace, tmp_path / "workspace")
    (tmp_path / "data").mkdir()
    with (
        contextlib.closing(sqlite3.connect(data / "nurture.db")) as source,
        contextlib.closing(sqlite3.connect(tmp_path / "data" / "nurture.db")) as target,
    ):
        source.backup(target)  # the WAL included
    return tmp_path / "workspace", tmp_path / "data"


def _invoke(workspace: Path, data: Path, *args: str) -> object:
    return runner.invoke(
        app, ["--workspace", str(workspace), "--data-dir", str(data), *args], env=ENV
    )


def _counts(data: Path, workspace: Path) -> tuple[int, int, int]:
    settings = Settings(workspace=workspace, data_dir=data)
    with Runtime(settings) as runtime, runtime.session() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Journey, Enrollment, Message)
        )


@pytest.mark.parametrize("command", ["simulate", "status", "migrate", "validate", "results"])
def test_every_journeys_command_has_help(command: str) -> None:
    result = runner.invoke(app, ["journeys", command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert command in runner.invoke(app, ["journeys", "--help"]).output


def test_simulate_json_lists_every_email_and_changes_nothing(
    community: tuple[Path, Path],
) -> None:
    workspace, data = community
    before = _counts(data, workspace)

    result = _invoke(
        workspace, data, "journeys", "simulate", "all", "--start", START, "--days", "10", "--json"
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["journey"] == "all" and report["members"] is None
    assert report["start"] == "2026-11-01T09:00:00+00:00"
    assert len(report["daily"]) == 11  # 9:00 to 9:00: eleven UTC days
    assert report["budget"]["messages"] == 3 and report["budget"]["over_budget"] == []
    assert report["budget"]["max_in_window"] <= 3
    assert report["sends"] and report["totals"]["messages_queued"] == len(report["sends"])
    journeys = {send["journey"] for send in report["sends"]}
    assert {"welcome", "digest"} <= journeys  # the follow-ups, the monthly digest
    assert _counts(data, workspace) == before


def test_simulate_html_draws_the_emails_per_day_and_names_no_member(
    community: tuple[Path, Path], tmp_path: Path
) -> None:
    workspace, data = community
    page = tmp_path / "out" / "simulation.html"

    args = ["simulate", "all", "--start", START, "--days", "10", "--json", "--html", str(page)]
    result = _invoke(workspace, data, "journeys", *args)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the JSON stays alone on stdout
    assert str(page.resolve()) in " ".join(result.stderr.split())
    html = page.read_text(encoding="utf-8")
    specs = chart_specs(html)
    volumes = chart_rows(specs["simulated-volumes"])
    assert {(row["day"], row["journey"], row["emails"]) for row in volumes} == {
        (day, journey, count)
        for day, counts in report["daily"].items()
        for journey, count in counts.items()
    }
    assert specs["simulated-volumes"]["encoding"]["x"]["scale"]["domain"] == list(report["daily"])
    held = chart_rows(specs["simulated-holds"]) if "simulated-holds" in specs else []
    assert sum(row["emails"] for row in held) == sum(
        entry["budget_deferred"] + entry["budget_skipped"] + entry["quiet_deferred"]
        for entry in report["held"]
    )
    assert not [send["email"] for send in report["sends"] if send["email"] in html]


def test_simulate_one_journey_shows_its_emails(community: tuple[Path, Path]) -> None:
    workspace, data = community

    result = _invoke(
        workspace, data, "journeys", "simulate", "welcome", "--start", START, "--limit", "5"
    )

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"for all {N_MEMBERS} members" in text
    assert "nothing was sent or saved" in text
    assert "emails of welcome" in text and "send_followup" in text
    assert "more (--limit, or --json for every one)" in text
    assert "nobody is over the budget" in text
    assert "Per journey" in text and "entered" in text


def test_simulate_one_member_by_address_in_any_case(community: tuple[Path, Path]) -> None:
    workspace, data = community
    email = (data / "demo" / "members.csv").read_text(encoding="utf-8").splitlines()[1]
    email = email.split(",")[1]

    result = _invoke(
        workspace,
        data,
        "journeys",
        "simulate",
        "all",
        "--member",
        f" {email.upper()} ",
        "--start",
        START,
        "--json",
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["members"]) == 1
    assert {send["email"] for send in report["sends"]} == {email}


def test_simulate_a_sample(community: tuple[Path, Path]) -> None:
    workspace, data = community
    args = ["journeys", "simulate", "all", "--sample", "4", "--start", START, "--json"]

    first = json.loads(_invoke(workspace, data, *args).stdout)
    again = json.loads(_invoke(workspace, data, *args).stdout)

    assert len(first["members"]) == 4 and first["members"] == again["members"]
    assert {send["member_id"] for send in first["sends"]} <= set(first["members"])


def test_simulate_refuses_what_it_cannot_do(community: tuple[Path, Path]) -> None:
    workspace, data = community

    unknown = _invoke(workspace, data, "journeys", "simulate", "nope")
    assert isinstance(unknown.exception, NurtureError)
    assert "no journey 'nope'" in str(unknown.exception)
    assert "welcome" in str(unknown.exception)

    stranger = _invoke(
        workspace, data, "journeys", "simulate", "all", "--member", "nobody@example.org"
    )
    assert isinstance(stranger.exception, MemberNotFoundError)
    assert "nobody@example.org" in str(stranger.exception)

    both = _invoke(
        workspace, data, "journeys", "simulate", "all", "--member", "a@b.c", "--sample", "2"
    )
    assert both.exit_code == 2 and "not both" in both.output

    tick = _invoke(workspace, data, "journeys", "simulate", "all", "--tick", "hourly")
    assert tick.exit_code == 2 and "duration" in tick.output


def test_status_shows_each_journey_and_version(community: tuple[Path, Path]) -> None:
    workspace, data = community

    table = _invoke(workspace, data, "journeys", "status")
    listing = _invoke(workspace, data, "journeys", "status", "--json")

    assert table.exit_code == 0, table.output
    assert "welcome · Welcome new members" in table.output
    assert "v1 (current)" in table.output and "in progress" in table.output
    statuses = {status["journey"]: status for status in json.loads(listing.output)}
    welcome = statuses["welcome"]
    assert welcome["current_version"] == 1 and welcome["in_workspace"] is True
    (version,) = welcome["versions"]
    assert version["enrolled"] == N_MEMBERS
    assert sum(welcome["messages"].values()) >= version["enrolled"] - version["active"]


def test_migrate_moves_members_to_the_changed_file(copy: tuple[Path, Path]) -> None:
    workspace, data = copy
    path = workspace / "journeys" / "welcome.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            '"Three things picked for you"', '"Three more things for you"'
        ),
        encoding="utf-8",
    )

    noted = _invoke(workspace, data, "journeys", "status")
    before = _counts(data, workspace)
    dry = _invoke(workspace, data, "journeys", "migrate", "welcome", "--dry-run")
    after_dry_run = _counts(data, workspace)
    done = _invoke(workspace, data, "journeys", "migrate", "welcome")
    again = _invoke(workspace, data, "journeys", "migrate", "welcome")
    after = json.loads(_invoke(workspace, data, "journeys", "status", "--json").output)

    text = " ".join(noted.output.split())
    assert "welcome: the workspace file changed since the last run" in text
    assert "becomes version 2 at the next run" in text
    assert dry.exit_code == 0, dry.output
    assert "welcome: would move" in dry.output and "to version 2" in dry.output
    assert after_dry_run == before  # the dry run registered nothing
    assert done.exit_code == 0, done.output
    assert "welcome: moved" in done.output
    assert "nothing to move" in again.output
    welcome = next(status for status in after if status["journey"] == "welcome")
    old, new = welcome["versions"]
    assert new["current"] is True and old["active"] == 0
    assert new["active"] > 0 and new["enrolled"] == new["active"]


def test_migrate_lists_the_members_it_leaves_alone(copy: tuple[Path, Path]) -> None:
    workspace, data = copy
    path = workspace / "journeys" / "welcome.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("send_followup", "send_more"), encoding="utf-8"
    )

    result = _invoke(workspace, data, "journeys", "migrate", "welcome")

    assert result.exit_code == 0, result.output
    assert "members left where they are" in result.output  # those waiting for the follow-up
    assert "version 2 has no step send_followup" in " ".join(result.output.split())


def test_migrate_an_unknown_journey(community: tuple[Path, Path]) -> None:
    workspace, data = community
    result = _invoke(workspace, data, "journeys", "migrate", "nope")
    assert isinstance(result.exception, NurtureError)
    assert "no journey 'nope'" in str(result.exception)


def test_results_compare_the_arms(community: tuple[Path, Path], tmp_path: Path) -> None:
    workspace, data = community
    later = "2026-12-15T09:00:00"  # the welcome's 30-day window has closed for everyone

    table = _invoke(
        workspace, data, "journeys", "results", "welcome", "--at", later, "--events", "post"
    )
    listing = _invoke(
        workspace,
        data,
        "journeys",
        "results",
        "welcome",
        "--at",
        later,
        "--events",
        "post,comment",
        "--json",
        "--html",
        str(tmp_path / "results.html"),
    )
    unknown = _invoke(workspace, data, "journeys", "results", "welcom")
    bad_event = _invoke(workspace, data, "journeys", "results", "welcome", "--events", "pots")

    assert table.exit_code == 0, table.output
    assert "welcome · Welcome new members" in table.output
    assert "not enough data" in table.output  # 15 members cannot show anything
    found = json.loads(listing.stdout)  # the JSON stays alone on stdout
    assert found["journey"] == "welcome" and found["window_days"] == 30
    assert sum(arm["enrolled"] for arm in found["arms"]) == N_MEMBERS
    assert {arm["arm"] for arm in found["arms"]} <= {"control", "journey"}
    assert any("not enough data" in note for note in found["notes"])
    page = (tmp_path / "results.html").read_text(encoding="utf-8")
    assert "Arms compared" in page
    assert unknown.exit_code != 0
    assert bad_event.exit_code == 2 and "unknown activity type pots" in bad_event.output
