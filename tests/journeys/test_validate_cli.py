"""``nurture journeys validate``: every problem of a workspace with its file, line and column."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nurture.cli import app
from nurture.journeys.loader import JOURNEY_SUFFIXES
from tests.pipeline_helpers import CONTENT

runner = CliRunner()

BROKEN = """\
id: broken
name: Broken
category: promotion
trigger:
  type: segment_entered
  segment: french-founder
  withn_days: 3
audience: "answers.rol == 'founder'"
steps:
  - id: hello
    type: send
    template: hello_there
    subject: Hello
    next: check
  - id: check
    type: branch
    cases:
      - when: "opened('hello') and"
        next: done
      - when: "not clicked('hello')"
        next: hello
    otherwise: done
  - id: done
    type: exit
"""

# (line, column, field, part of the message) of each problem in BROKEN
PROBLEMS = [
    (6, 3, "trigger.segment", "unknown segment 'french-founder'; did you mean 'french-founders'?"),
    (7, 3, "trigger.withn_days", "unknown field 'withn_days'; did you mean 'within_days'?"),
    (8, 1, "audience", "unknown question 'rol'; did you mean 'role'?"),
    (12, 5, "steps.0.template", "step 'hello': template 'hello_there' not found"),
    (18, 9, "steps.1.cases.0.when", "step 'check': when: the condition does not compile"),
    (21, 9, "steps.1.cases.1.next", "step 'check': cycle without a wait step"),
]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the demo workspace (content/), to break."""
    target = tmp_path / "workspace"
    shutil.copytree(CONTENT, target, ignore=shutil.ignore_patterns("nurture-data"))
    return target


def _validate(workspace: Path, *files: Path) -> tuple[int, str, str]:
    result = runner.invoke(
        app, ["--workspace", str(workspace), "journeys", "validate", *map(str, files)]
    )
    return result.exit_code, result.stdout, result.stderr


def _assert_reported(stderr: str, path: Path) -> None:
    lines = stderr.splitlines()
    for line, column, field, message in PROBLEMS:
        where = f"{path}:{line}:{column} [{field}]: "
        assert any(text.startswith(where) and message in text for text in lines), (
            f"{where}{message} not in:\n{stderr}"
        )


def test_a_clean_workspace_validates(workspace: Path) -> None:
    code, stdout, stderr = _validate(workspace)
    assert code == 0, stderr
    assert "ok welcome: member_joined trigger, " in stdout
    journeys = [p for p in (workspace / "journeys").iterdir() if p.suffix in JOURNEY_SUFFIXES]
    assert f"{len(journeys)} journeys valid" in stdout


def test_a_broken_journey_in_the_workspace_lists_every_problem(workspace: Path) -> None:
    broken = workspace / "journeys" / "broken.yaml"
    broken.write_text(BROKEN, encoding="utf-8")
    code, stdout, stderr = _validate(workspace)
    assert code == 1
    _assert_reported(stderr, broken)
    problems = [line for line in stderr.splitlines() if re.match(r".+:\d+:\d+ \[", line)]
    assert all(line.startswith(f"{broken}:") for line in problems), stderr
    assert f"{len(PROBLEMS)} problems in 1 file" in stderr
    assert "ok " not in stdout


def test_files_given_are_checked_against_the_workspace(workspace: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN, encoding="utf-8")
    code, stdout, stderr = _validate(workspace, broken, workspace / "journeys" / "welcome.yaml")
    assert code == 1
    _assert_reported(stderr, broken)
    assert "welcome.yaml" not in stderr

    code, stdout, stderr = _validate(workspace, workspace / "journeys" / "welcome.yaml")
    assert code == 0, stderr
    assert "ok welcome: member_joined trigger, " in stdout
    assert "1 journeys valid" in stdout


def test_bad_sending_rules_are_reported(workspace: Path) -> None:
    sending = workspace / "sending.yaml"
    sending.write_text("budget:\n  mesages: 3\n", encoding="utf-8")
    code, _, stderr = _validate(workspace)
    assert code == 1
    assert f"{sending}:2:3 [budget.mesages]: unknown field 'mesages'" in stderr


def test_a_broken_questionnaire_does_not_hide_the_journey_problems(
    workspace: Path, tmp_path: Path
) -> None:
    questionnaire = workspace / "questionnaire.yaml"
    questionnaire.write_text("questions: 3\n", encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN, encoding="utf-8")
    code, _, stderr = _validate(workspace, broken)
    assert code == 1
    assert f"{questionnaire}:" in stderr
    assert f"{broken}:7:3 [trigger.withn_days]" in stderr
