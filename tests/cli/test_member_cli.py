"""`nurture member export` and `nurture member erase`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nurture.cli import app
from nurture.rights import EXPORT_SECTIONS
from tests.pipeline_helpers import welcome_only_workspace

runner = CliRunner()

N_MEMBERS = 8


@pytest.fixture
def hashing_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast deterministic embedder: these tests are about the command line, not the model."""
    monkeypatch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")
    monkeypatch.setenv("NURTURE_SUPPRESSION_SALT", "cli-test-salt")


@pytest.fixture
def community(tmp_path: Path, hashing_model: None) -> tuple[list[str], str]:
    """A small demo community, one cycle run; returns the base options and one member's email."""
    workspace = welcome_only_workspace(tmp_path / "workspace")  # no quiet hours: any hour works
    base = ["--workspace", str(workspace), "--data-dir", str(tmp_path / "data")]
    result = runner.invoke(app, [*base, "demo", "--members", str(N_MEMBERS), "--no-prefect"])
    assert result.exit_code == 0, result.output
    first = (tmp_path / "data" / "demo" / "members.csv").read_text(encoding="utf-8").splitlines()
    return base, first[1].split(",")[1]


def _nurture(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NURTURE_EMBEDDING_MODEL": "hashing-64",
        "NURTURE_SUPPRESSION_SALT": "cli-test-salt",
    }
    return subprocess.run(
        [sys.executable, "-c", "from nurture.cli import main; main()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _eml_to(outbox: Path, email: str) -> list[Path]:
    return [path for path in outbox.glob("*.eml") if email in path.read_text(encoding="utf-8")]


def test_member_is_listed_with_its_commands() -> None:
    assert "member" in runner.invoke(app, ["--help"]).output
    result = runner.invoke(app, ["member", "--help"])
    assert result.exit_code == 0
    assert "export" in result.output and "erase" in result.output


@pytest.mark.parametrize("command", ["export", "erase"])
def test_member_commands_have_help(command: str) -> None:
    result = runner.invoke(app, ["member", command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "--output" in result.output if command == "export" else "--yes" in result.output


def test_export_prints_json_to_stdout(community: tuple[list[str], str]) -> None:
    base, email = community
    result = runner.invoke(app, [*base, "member", "export", email.upper()])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["email"] == email
    assert set(EXPORT_SECTIONS) <= set(document)
    assert list(document)[-1] == "suppression"
    assert document["members"][0]["email"] == email
    assert document["messages"][0]["journey"] == "welcome"


def test_export_writes_a_private_file(community: tuple[list[str], str], tmp_path: Path) -> None:
    base, email = community
    output = tmp_path / "exports" / "member.json"
    result = runner.invoke(app, [*base, "member", "export", email, "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text(encoding="utf-8"))["email"] == email
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert email not in result.stdout  # the data went to the file only


def test_erase_asks_for_confirmation(community: tuple[list[str], str], tmp_path: Path) -> None:
    base, email = community
    refused = runner.invoke(app, [*base, "member", "erase", email], input="n\n")
    assert refused.exit_code == 1
    assert "cannot be undone" in refused.output
    assert runner.invoke(app, [*base, "member", "export", email]).exit_code == 0

    confirmed = runner.invoke(app, [*base, "member", "erase", email], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert f"erased {email}" in confirmed.output


def test_erase_then_nothing_is_left_and_nothing_is_sent(
    community: tuple[list[str], str], tmp_path: Path
) -> None:
    base, email = community
    data = tmp_path / "data"
    assert _eml_to(data / "outbox", email)

    erased = runner.invoke(app, [*base, "member", "erase", email, "--yes"])

    assert erased.exit_code == 0, erased.output
    assert "members: 1" in erased.output
    assert "outbox_files: 1" in erased.output
    assert "suppression list (reason: erased)" in erased.output
    assert _eml_to(data / "outbox", email) == []

    again = runner.invoke(app, [*base, "member", "erase", email, "--yes"])
    assert again.exit_code == 0, again.output
    assert "nothing held" in again.output

    # The demo imports its members again: the erased address comes back but gets nothing.
    rerun = runner.invoke(app, [*base, "demo", "--members", str(N_MEMBERS), "--no-prefect"])
    assert rerun.exit_code == 0, rerun.output
    assert "1 new" in rerun.output
    assert "0 enrolled" in rerun.output
    assert _eml_to(data / "outbox", email) == []

    export = runner.invoke(app, [*base, "member", "export", email])
    assert export.exit_code == 0, export.output
    assert json.loads(export.stdout)["suppression"]["reason"] == "erased"


def test_unknown_addresses_are_named(community: tuple[list[str], str], tmp_path: Path) -> None:
    base, _ = community
    export = _nurture(*base, "member", "export", "nobody@example.org", cwd=tmp_path)
    erase = _nurture(*base, "member", "erase", "nobody@example.org", "--yes", cwd=tmp_path)
    for result in (export, erase):
        assert result.returncode == 1
        assert "nobody@example.org" in result.stderr
        assert "Traceback" not in result.stderr
    assert "nothing erased" in erase.stderr


def test_erase_warns_when_the_salt_is_the_development_default(
    community: tuple[list[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, email = community
    monkeypatch.delenv("NURTURE_SUPPRESSION_SALT")
    result = runner.invoke(app, [*base, "member", "erase", email, "--yes"])
    assert result.exit_code == 0, result.output
    assert "NURTURE_SUPPRESSION_SALT is the development default" in result.stderr
