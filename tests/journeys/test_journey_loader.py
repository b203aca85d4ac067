"""Journey files: valid fixtures load, each invalid fixture reports file, line and message."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from nurture.errors import JourneyValidationError, WorkspaceFileError
from nurture.journeys import JourneyDefinition, load_journey, load_journeys, parse_duration
from nurture.journeys.models import STEP_KINDS, TRIGGER_KINDS

HERE = Path(__file__).parent
VALID = sorted((HERE / "valid").iterdir())
INVALID = sorted((HERE / "invalid").iterdir())
WORKSPACE_JOURNEYS = HERE.parents[1] / "content" / "journeys"

EXPECT = re.compile(r"#\s*expect:\s*(\d+):\s*(.+?)\s*$")

# The workspace the fixtures are checked against.
TEMPLATES = ("welcome", "thanks", "notice", "digest", "digest/events")
SEGMENT_KEYS = ("french-founders", "event-regulars", "quiet-newcomers")
QUESTION_KEYS = ("role", "goals", "experience")


@pytest.fixture(scope="module")
def templates_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A templates folder with both variants of every template the fixtures may name."""
    directory = tmp_path_factory.mktemp("templates")
    for name in TEMPLATES:
        for suffix in (".html.j2", ".txt.j2"):
            path = directory / f"{name}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{{ member.first_name }}", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def workspace(templates_dir: Path) -> dict[str, Any]:
    """The keyword arguments that check a journey against the fixtures' workspace."""
    return {
        "templates_dir": templates_dir,
        "segment_keys": SEGMENT_KEYS,
        "question_keys": QUESTION_KEYS,
    }


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
def test_valid_fixture_loads(path: Path, workspace: dict[str, Any]) -> None:
    definition = load_journey(path, **workspace)
    assert isinstance(definition, JourneyDefinition)
    assert definition.source_path == str(path)
    assert re.fullmatch(r"[0-9a-f]{64}", definition.definition_hash)


@pytest.mark.parametrize("path", INVALID, ids=lambda path: path.name)
def test_invalid_fixture_reports_every_problem(path: Path, workspace: dict[str, Any]) -> None:
    expected = _expectations(path)
    assert expected, f"{path.name} has no '# expect: LINE: message' comment"
    with pytest.raises(JourneyValidationError) as caught:
        load_journey(path, **workspace)
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


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("typo_in_branch_case.yaml", {"steps.0.cases.0.nxt", "steps.0.cases.0.next"}),
        ("typo_in_trigger_field.yaml", {"trigger.evnts", "trigger.events"}),
        (
            "typos_in_nested_fields.yaml",
            {
                "goal.event",
                "steps.0.content.cont",
                "steps.0.slots.events.kind",
                "steps.1.until.minutes",
            },
        ),
        ("unknown_segment.yaml", {"trigger.segment", "audience", "steps.0.cases.0.when"}),
        (
            "condition_does_not_parse.yaml",
            {"audience", "goal.condition", "steps.0.cases.0.when", "steps.0.cases.1.when"},
        ),
        ("unknown_answer_key.yaml", {"audience", "steps.0.cases.0.when"}),
        ("branch_cycle_without_wait.yaml", {"steps.1.cases.1.next"}),
        ("bad_schedule.yaml", {"trigger.cron", "trigger.time_zone"}),
        ("wait_without_duration.yaml", {"steps.0"}),
    ],
)
def test_nested_problems_name_their_field(
    name: str, fields: set[str], workspace: dict[str, Any]
) -> None:
    with pytest.raises(JourneyValidationError) as caught:
        load_journey(HERE / "invalid" / name, **workspace)
    assert {problem.field for problem in caught.value.problems} == fields


def test_a_problem_points_at_the_column_of_its_field(workspace: dict[str, Any]) -> None:
    with pytest.raises(JourneyValidationError) as caught:
        load_journey(HERE / "invalid" / "typo_in_branch_case.yaml", **workspace)
    typo = next(p for p in caught.value.problems if p.field == "steps.0.cases.0.nxt")
    assert (typo.line, typo.column) == (12, 9)
    with pytest.raises(JourneyValidationError) as caught:
        load_journey(HERE / "invalid" / "unknown_segment.yaml", **workspace)
    segment = next(p for p in caught.value.problems if p.field == "trigger.segment")
    assert (segment.line, segment.column) == (7, 3)


@pytest.mark.parametrize(
    "name", ["unknown_segment.yaml", "unknown_answer_key.yaml", "unknown_template.yaml"]
)
def test_workspace_checks_run_only_when_asked(name: str) -> None:
    assert load_journey(HERE / "invalid" / name).source_path.endswith(name)


def _segment_journey(tmp_path: Path, segment: str, condition: str) -> Path:
    path = tmp_path / "segment.yaml"
    path.write_text(
        "id: segment\n"
        "name: Segment\n"
        "category: care\n"
        f"trigger: {{type: segment_entered, segment: {segment}}}\n"
        f'audience: "{condition}"\n'
        "steps: [{id: done, type: exit}]\n",
        encoding="utf-8",
    )
    return path


def test_cluster_keys_are_always_known(tmp_path: Path) -> None:
    path = _segment_journey(tmp_path, "seg-12", "segment == 'seg-3' or 'seg-4' in segments")
    assert load_journey(path, segment_keys=[]).trigger.segment == "seg-12"


@pytest.mark.parametrize(
    "condition",
    [
        "segment == 'founders'",
        "'founders' == segment",
        "segment != 'founders'",
        "'founders' in segments",
        "'founders' not in segments",
        "segment in ('seg-1', 'founders')",
        "language == 'fr' and (segment == 'founders' or lifecycle == 'new')",
    ],
)
def test_conditions_naming_an_unknown_segment(tmp_path: Path, condition: str) -> None:
    path = _segment_journey(tmp_path, "seg-1", condition)
    with pytest.raises(JourneyValidationError) as caught:
        load_journey(path, segment_keys={"french-founders", "event-regulars"})
    (problem,) = caught.value.problems
    assert problem.field == "audience"
    assert (problem.line, problem.column) == (5, 1)
    assert "unknown segment 'founders'; did you mean 'french-founders'?" in problem.message
    assert "event-regulars, french-founders" in problem.message  # a set is listed sorted


def test_a_workspace_without_rule_segments_says_so(tmp_path: Path) -> None:
    path = _segment_journey(tmp_path, "founders", "true")
    with pytest.raises(JourneyValidationError, match=r"segments\.yaml declares no rule segment"):
        load_journey(path, segment_keys=[])


def test_workspace_welcome_journey_loads() -> None:
    definition = load_journey(WORKSPACE_JOURNEYS / "welcome.yaml")
    assert definition.id == "welcome"
    assert definition.trigger.type == "member_joined"
    assert definition.trigger.within_days == 14  # never long-standing members
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
    journey = tmp_path / "two_sends.yaml"
    journey.write_text(
        "id: two_sends\n"
        "name: Two sends\n"
        "category: care\n"
        "trigger: {type: member_joined}\n"
        "steps:\n"
        "  - {id: send_welcome, type: send, template: welcome, subject: Hi, next: later}\n"
        "  - id: later\n"
        "    type: send\n"
        "    template: welcome_followup\n"
        "    subject: Again\n"
        "    next: done\n"
        "  - {id: done, type: exit}\n",
        encoding="utf-8",
    )
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "welcome.html.j2").write_text("hi", encoding="utf-8")
    (templates / "welcome.txt.j2").write_text("hi", encoding="utf-8")
    with pytest.raises(JourneyValidationError) as caught:
        load_journey(journey, templates_dir=templates)
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (9, 5)
    assert problem.field == "steps.1.template"
    assert "step 'later': template 'welcome_followup' not found" in problem.message
    assert str(templates / "welcome_followup.html.j2") in problem.message
    assert str(templates / "welcome_followup.txt.j2") in problem.message

    (templates / "welcome_followup.html.j2").write_text("hi", encoding="utf-8")
    with pytest.raises(JourneyValidationError) as caught:
        load_journey(journey, templates_dir=templates)
    (problem,) = caught.value.problems
    assert problem.message.endswith(f"expected {templates / 'welcome_followup.txt.j2'}")

    (templates / "welcome_followup.txt.j2").write_text("hi", encoding="utf-8")
    assert load_journey(journey, templates_dir=templates).id == "two_sends"


def test_load_journeys_reads_a_folder_in_name_order(workspace: dict[str, Any]) -> None:
    definitions = load_journeys(HERE / "valid", **workspace)
    assert [Path(d.source_path).name for d in definitions] == [path.name for path in VALID]
    assert [d.id for d in definitions][:3] == ["account_notice", "tenth-contribution", "birthday"]


def test_valid_fixtures_use_every_trigger_and_step_kind() -> None:
    definitions = [load_journey(path) for path in VALID]
    assert {d.trigger.type for d in definitions} == set(TRIGGER_KINDS)
    assert {step.type for d in definitions for step in d.steps} == set(STEP_KINDS)


def test_load_journeys_collects_problems_of_every_file(workspace: dict[str, Any]) -> None:
    with pytest.raises(JourneyValidationError) as caught:
        load_journeys(HERE / "invalid", **workspace)
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
