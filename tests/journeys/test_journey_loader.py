"""Journey files: valid fixtures load, each invalid fixture reports file, line and message."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from nurture.errors import JourneyValidationError, WorkspaceFileError
from nurture.journeys import JourneyDefinition, load_journey, load_journeys, parse_duration

HERE = Path(__file__).parent
VALID = sorted((HERE / "valid").iterdir())
INVALID = sorted((HERE / "invalid").iterdir())
WORKSPACE_JOURNEYS = HERE.parents[1] / "content" / "journeys"

EXPECT = re.compile(r"#\s*expect:\s*(\d+):\s*(.+?)\s*$")


def _expectations(path: Path) -> list[tuple[int | None, str]]:
    """``# expect: LINE: message`` comments of a fixture (line 0: no line)."""
    found = []
    for text in path.read_text(encoding="utf-8").splitlines():
        match = EXPECT.search(text)
        if match:
            line = int(match.group(1))
            found.append((line or None, match.group(2)))
    return found


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.name)
def test_valid_fixture_loads(path: Path) -> None:
    definition = load_journey(path)
    assert isinstance(definition, JourneyDefinition)
    assert definition.source_path == str(path)
    assert re.fullmatch(r"[0-9a-f]{64}", definition.definition_hash)


@pytest.mark.parametrize("path", INVALID, ids=lambda path: path.name)
def test_invalid_fixture_reports_every_problem(path: Path) -> None:
    expected = _expectations(path)
    assert expected, f"{path.name} has no '# expect: LINE: message' comment"
    with pytest.raises(JourneyValidationError) as caught:
        load_journey(path)
    problems = caught.value.problems
    report = str(caught.value)
    assert len(problems) == len(expected), report
    for line, message in expected:
        matching = [p for p in problems if p.line == line and message in p.message]
        assert matching, f"no problem at line {line} with {message!r} in:\n{report}"
        problem = matching[0]
        assert Path(problem.path).name == path.name
        if line is not None:
            assert problem.column is not None
            assert f"{path.name}:{line}:" in report


def test_error_is_a_value_error_and_names_the_field() -> None:
    with pytest.raises(ValueError) as caught:
        load_journey(HERE / "invalid" / "typo_in_field.yaml")
    assert isinstance(caught.value, WorkspaceFileError)
    fields = {problem.field for problem in caught.value.problems}
    assert {"steps.0.templat", "steps.0.template"} <= fields


def test_workspace_welcome_journey_loads() -> None:
    definition = load_journey(WORKSPACE_JOURNEYS / "welcome.yaml")
    assert definition.id == "welcome"
    assert definition.trigger.type == "member_joined"
    assert definition.trigger.within_days is None
    assert [step.type for step in definition.steps] == ["send", "wait", "send", "exit"]
    first, wait, followup, _ = definition.steps
    assert first.template == "welcome"
    assert first.subject_for("fr") == (
        "Bienvenue dans {{ community_name }}, {{ member.first_name }} !"
    )
    assert first.subject_for("de") == "Welcome to {{ community_name }}, {{ member.first_name }}!"
    assert first.content.count == 3
    assert parse_duration(wait.duration).days == 3
    assert followup.template == "welcome_followup"
    assert followup.subject_for("fr") == "Trois contenus choisis pour vous"


def test_missing_templates_are_reported(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "welcome.html.j2").write_text("hi", encoding="utf-8")
    with pytest.raises(JourneyValidationError) as caught:
        load_journey(WORKSPACE_JOURNEYS / "welcome.yaml", templates_dir=templates)
    (problem,) = caught.value.problems
    assert problem.line == 30
    assert problem.field == "steps.2.template"
    assert "step 'send_followup': template 'welcome_followup' not found" in problem.message

    (templates / "welcome_followup.html.j2").write_text("hi", encoding="utf-8")
    assert (
        load_journey(WORKSPACE_JOURNEYS / "welcome.yaml", templates_dir=templates).id == "welcome"
    )


def test_load_journeys_reads_a_folder_in_name_order() -> None:
    definitions = load_journeys(HERE / "valid")
    assert [d.id for d in definitions] == ["account_notice", "minimal", "questionnaire-followup"]


def test_load_journeys_collects_problems_of_every_file() -> None:
    with pytest.raises(JourneyValidationError) as caught:
        load_journeys(HERE / "invalid")
    names = {Path(problem.path).name for problem in caught.value.problems}
    assert names == {path.name for path in INVALID}


def test_load_journeys_refuses_two_files_with_one_id(tmp_path: Path) -> None:
    shutil.copy(HERE / "valid" / "minimal.yaml", tmp_path / "a.yaml")
    shutil.copy(HERE / "valid" / "minimal.yaml", tmp_path / "b.yaml")
    with pytest.raises(JourneyValidationError) as caught:
        load_journeys(tmp_path)
    (problem,) = caught.value.problems
    assert Path(problem.path).name == "b.yaml"
    assert problem.line == 1
    assert "journey id 'minimal' is already used by" in problem.message


def test_load_journeys_of_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(JourneyValidationError, match="expected a folder"):
        load_journeys(tmp_path / "nowhere")


def test_definition_hash_ignores_layout_but_not_content(tmp_path: Path) -> None:
    original = load_journey(HERE / "valid" / "minimal.yaml")
    reformatted = tmp_path / "minimal.yaml"
    reformatted.write_text(
        "# same journey, other layout\n"
        "{id: minimal, name: Minimal, category: care, priority: 100,\n"
        " trigger: {type: member_joined},\n"
        " steps: [{id: hello, type: send, template: welcome,\n"
        "          subject: 'Hello {{ member.first_name }}', next: done},\n"
        "         {id: done, type: exit}]}\n",
        encoding="utf-8",
    )
    assert load_journey(reformatted).definition_hash == original.definition_hash
    changed = original.model_copy(update={"name": "Minimal, renamed"})
    assert changed.definition_hash != original.definition_hash


@pytest.mark.parametrize(
    ("text", "hours"), [("3d", 72), ("12h", 12), ("1w", 168), ("1d12h", 36), ("90m", 1.5)]
)
def test_parse_duration(text: str, hours: float) -> None:
    assert parse_duration(text).total_seconds() == hours * 3600


@pytest.mark.parametrize("text", ["", "3", "0d", "d3", "3 days", "1h1d", "-1d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)
