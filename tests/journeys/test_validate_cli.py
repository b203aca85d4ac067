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


def test_a_typo_in_opened_is_reported_with_its_file_and_line(workspace: Path) -> None:
    journey = workspace / "journeys" / "reengagement.yaml"
    text = journey.read_text(encoding="utf-8").replace(
        "opened('send_checkin')", "opened('send_chekin') and trigger.dayz > 30"
    )
    journey.write_text(text, encoding="utf-8")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "send_chekin" in row)
    code, _, stderr = _validate(workspace)
    assert code == 1
    where = f"{journey}:{line}:"
    assert where in stderr and "[steps.3.cases.0.when]" in stderr, stderr
    assert (
        "opened('send_chekin') names no send step of this journey; did you mean 'send_checkin'?"
        in stderr
    )
    assert "unknown trigger field 'dayz'; did you mean 'days'?" in stderr
    assert "2 problems in 1 file" in stderr


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


def test_a_latin_1_journey_is_refused_at_its_first_bad_byte(
    workspace: Path, tmp_path: Path
) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(BROKEN.replace("name: Broken", "name: Créée").encode("latin-1"))
    code, _, stderr = _validate(workspace, latin)
    assert code == 1
    assert f"{latin}:2:9: not UTF-8 text: byte 0xe9" in stderr
    assert "Traceback" not in stderr


def test_a_duplicate_key_reads_the_same_in_every_file(workspace: Path) -> None:
    journey = workspace / "journeys" / "welcome.yaml"
    journey.write_text("id: welcome\n" + journey.read_text(encoding="utf-8"), encoding="utf-8")
    sending = workspace / "sending.yaml"
    sending.write_text("budget: {messages: 3}\nbudget: {messages: 4}\n", encoding="utf-8")
    code, _, stderr = _validate(workspace)
    assert code == 1
    message = "duplicate key 'id': already given on line 1; expected each key once"
    assert any(line.startswith(f"{journey}:") and message in line for line in stderr.splitlines())
    assert (
        f"{sending}:2:1 [budget]: duplicate key 'budget': already given on line 1; "
        "expected each key once" in stderr
    )
