import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nurture.cli import app
from nurture.errors import NurtureError
from tests.pipeline_helpers import CONTENT

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

COMMANDS = (
    "init",
    "demo",
    "import",
    "profile",
    "segment",
    "segments",
    "rename-segment",
    "report",
    "evaluate",
    "match",
    "journeys",
    "member",
    "recommend",
    "run",
    "outbox",
    "deliveries",
)


@pytest.fixture
def hashing_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast deterministic embedder: these tests are about the command line, not the model."""
    monkeypatch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")


def _nurture(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NURTURE_EMBEDDING_MODEL": "hashing-64"}
    return subprocess.run(
        [sys.executable, "-c", "from nurture.cli import main; main()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize(
    "command",
    [[c] for c in COMMANDS if c not in ("journeys", "member", "recommend", "deliveries")]
    + [
        ["journeys", "validate"],
        ["member", "export"],
        ["member", "erase"],
        ["recommend", "export"],
        ["deliveries", "unknown"],
        ["deliveries", "resolve"],
        ["deliveries", "recover"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_init_copies_the_demo_workspace(tmp_path: Path) -> None:
    target = tmp_path / "my-community"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert (target / "questionnaire.yaml").is_file()
    assert (target / "journeys" / "welcome.yaml").is_file()
    assert len(list((target / "library").glob("*.md"))) == len(
        list((CONTENT / "library").glob("*.md"))
    )
    validated = runner.invoke(app, ["--workspace", str(target), "journeys", "validate"])
    assert validated.exit_code == 0, validated.output
    assert "welcome" in validated.output


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = _nurture("init", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "not empty" in result.stderr
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_journeys_validate_names_file_and_line_of_a_typo(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (CONTENT / "journeys" / "welcome.yaml")
        .read_text(encoding="utf-8")
        .replace("duration: 3d", "duraton: 3d"),
        encoding="utf-8",
    )
    result = _nurture(
        "--workspace", str(CONTENT), "journeys", "validate", str(broken), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "broken.yaml:" in result.stderr
    assert "duraton" in result.stderr


def test_import_reports_refused_records_and_where_they_went(
    tmp_path: Path, hashing_model: None
) -> None:
    members = tmp_path / "members.csv"
    members.write_text(
        "email,first_name,language,joined_at\n"
        "ada@example.org,Ada,en,2026-01-05T10:00:00+00:00\n"
        "bob@example,Bob,en,2026-01-05T10:00:00+00:00\n",
        encoding="utf-8",
    )
    data = tmp_path / "data"
    result = runner.invoke(
        app,
        ["--workspace", str(CONTENT), "--data-dir", str(data), "import", "members", str(members)],
    )
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output and "1 refused" in result.output
    assert (data / "rejects" / "members.csv.rejects.csv").is_file()


def test_import_rejects_an_unknown_kind(tmp_path: Path) -> None:
    file = tmp_path / "x.csv"
    file.write_text("email\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "contacts", str(file)])
    assert result.exit_code != 0
    assert "members, answers or activity" in result.output


def _queued_and_sent(output: str) -> tuple[int, int]:
    text = " ".join(output.split())
    queued = re.search(r"(\d+) messages queued", text)
    sent = re.search(r"delivery: (\d+) sent", text)
    assert queued and sent, output
    return int(queued.group(1)), int(sent.group(1))


def test_demo_then_outbox_then_match(tmp_path: Path, hashing_model: None) -> None:
    data = tmp_path / "data"
    base = ["--workspace", str(CONTENT), "--data-dir", str(data)]

    # Enough members for a few to have joined in the welcome's last 14 days; at noon UTC, as
    # how many emails leave depends on the hour (members' quiet hours).
    noon = ["--now", "2026-03-02T12:00:00"]
    demo = runner.invoke(app, [*base, "demo", "--members", "100", "--no-prefect", *noon])
    assert demo.exit_code == 0, demo.output
    queued, sent = _queued_and_sent(demo.output)
    # Members whose night it is get their welcome when their quiet hours end.
    assert queued == sent > 0
    assert len(list((data / "outbox").glob("*.eml"))) == sent

    again = runner.invoke(app, [*base, "demo", "--members", "100", "--no-prefect", *noon])
    assert again.exit_code == 0, again.output
    assert _queued_and_sent(again.output) == (0, 0)
    assert len(list((data / "outbox").glob("*.eml"))) == sent

    listing = runner.invoke(app, [*base, "outbox", "--limit", "5"])
    assert listing.exit_code == 0, listing.output
    assert f"{sent} messages sent" in listing.output
    assert "send_" in listing.output  # the journey / step of the newest five

    email = (data / "demo" / "members.csv").read_text(encoding="utf-8").splitlines()[1]
    email = email.split(",")[1]
    shown = runner.invoke(app, [*base, "match", "--member", email])
    assert shown.exit_code == 0, shown.output
    assert "Recommendations for" in shown.output


def test_stages_run_one_by_one(tmp_path: Path, hashing_model: None) -> None:
    data = tmp_path / "data"
    base = ["--workspace", str(CONTENT), "--data-dir", str(data)]
    assert runner.invoke(app, [*base, "demo", "--members", "20", "--no-prefect"]).exit_code == 0

    profiled = runner.invoke(app, [*base, "profile"])
    segmented = runner.invoke(app, [*base, "segment"])
    matched = runner.invoke(app, [*base, "match"])
    inbox = data / "imports"  # a run imports the files waiting here first, as the flow does
    inbox.mkdir()
    shutil.copy(EXAMPLES / "members.csv", inbox / "members-crm.csv")
    cycle = runner.invoke(app, [*base, "run", "--no-prefect", "--now", "2099-01-01T00:00:00"])

    assert "20 members profiled" in profiled.output
    assert "segments of 20 members" in segmented.output
    assert "recommendations for 20 members" in matched.output
    assert cycle.exit_code == 0, cycle.output
    [done] = (inbox / "done").iterdir()
    assert done.name.endswith("Z-members-crm.csv")
    assert "profiled 26 members" in cycle.output
    queued, sent = _queued_and_sent(cycle.output)
    assert queued == sent > 0  # the follow-ups and re-engagements, long after
    assert "0 failed" in cycle.output


def test_an_invalid_setting_is_named_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "NURTURE_CHUNK_SIZE": "0"}
    result = subprocess.run(
        [sys.executable, "-c", "from nurture.cli import main; main()", "outbox"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "NURTURE_CHUNK_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_segment_keeps_the_name_the_marketer_gave_it(tmp_path: Path, hashing_model: None) -> None:
    data = tmp_path / "data"
    base = ["--workspace", str(CONTENT), "--data-dir", str(data)]
    assert runner.invoke(app, [*base, "demo", "--members", "40", "--no-prefect"]).exit_code == 0

    renamed = runner.invoke(app, [*base, "rename-segment", "seg-1", "Our founders"])
    segmented = runner.invoke(app, [*base, "segment"])
    unknown = runner.invoke(app, [*base, "rename-segment", "seg-99", "Nobody"])

    assert renamed.exit_code == 0, renamed.output
    assert "seg-1: Our founders" in renamed.output
    assert "Our founders" in segmented.output
    assert isinstance(unknown.exception, NurtureError)
    assert "seg-99" in str(unknown.exception)
