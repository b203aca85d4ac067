"""``validate_templates``: every email, every language, sample data, strict undefined variables."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nurture.cli import app
from nurture.errors import WorkspaceFileError, WorkspaceValidationError
from nurture.journeys import load_journeys
from nurture.journeys.models import TRIGGER_KINDS
from nurture.runtime import Runtime
from nurture.workspace import SubjectSample, journey_subjects, validate_templates
from nurture.workspace.template_samples import sample_trigger_contexts

CONTENT = Path(__file__).resolve().parents[2] / "content"
TEMPLATES_DIR = CONTENT / "templates"
COMMUNITY = "Builders & Co"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped templates, to break."""
    return Path(shutil.copytree(TEMPLATES_DIR, tmp_path / "templates"))


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def _replace(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, start=1) if needle in line)


def test_the_shipped_templates_are_valid() -> None:
    assert validate_templates(TEMPLATES_DIR, community_name=COMMUNITY) == []


def test_the_shipped_subjects_are_valid() -> None:
    journeys = load_journeys(CONTENT / "journeys", TEMPLATES_DIR)
    subjects = journey_subjects(journeys)
    assert len(subjects) >= len(journeys)
    assert {subject.language for subject in subjects} >= {"en", "fr"}
    problems = validate_templates(TEMPLATES_DIR, community_name=COMMUNITY, subjects=subjects)
    assert problems == []


def test_samples_cover_every_trigger_kind() -> None:
    assert set(sample_trigger_contexts()) == set(TRIGGER_KINDS)


def test_an_undefined_variable_names_the_file_and_line(folder: Path) -> None:
    path = folder / "birthday.txt.j2"
    _replace(path, "Happy birthday{% if member.first_name %}", "Happy {{ membre.name }}{% if 1 %}")
    problems = validate_templates(folder, community_name=COMMUNITY)
    assert len(problems) == 1
    problem = problems[0]
    assert Path(problem.path) == path
    assert problem.line == _line_of(path, "membre.name")
    assert "'membre' is undefined" in problem.message
    assert "birthday in en" in problem.message  # the English branch only
    assert str(problem).startswith(f"{path}:{problem.line}: ")


def test_a_french_only_mistake_is_found(folder: Path) -> None:
    path = folder / "welcome.html.j2"
    _replace(path, "Bienvenue dans {{ community_name }}", "Bienvenue dans {{ community_nom }}")
    problems = validate_templates(folder, community_name=COMMUNITY)
    assert [(Path(p.path).name, p.line) for p in problems] == [
        ("welcome.html.j2", _line_of(path, "community_nom"))
    ]
    assert "in fr" in problems[0].message


def test_a_mistake_behind_a_trigger_is_found(folder: Path) -> None:
    path = folder / "milestone.txt.j2"
    mistake = (
        "{% if (trigger | default({})).member_count | default(0) %}"
        "{{ trigger.member_cuont }}{% endif %}"
    )
    _replace(path, "{% endblock %}", mistake + "\n{% endblock %}")
    problems = validate_templates(folder, community_name=COMMUNITY)
    assert len(problems) == 1
    assert problems[0].line == _line_of(path, "member_cuont")
    assert "member_cuont" in problems[0].message
    assert "community_milestone" in problems[0].message


def test_a_template_that_needs_a_slot_is_found(folder: Path) -> None:
    path = folder / "digest.html.j2"
    _replace(
        path,
        "{% set events = ((slots | default({})).upcoming_events | default([], true))[:3] %}",
        "{% set events = slots.upcoming_events[:3] %}",
    )
    problems = validate_templates(folder, community_name=COMMUNITY)
    assert len(problems) == 1
    assert problems[0].line == _line_of(path, "slots.upcoming_events[:3]")
    assert "empty context" in problems[0].message


def test_a_bad_filter_and_a_syntax_error_are_found_even_in_unused_partials(folder: Path) -> None:
    _replace(folder / "_items.txt.j2", "{{ item.title }}", "{{ item.title | shout }}")
    _write(folder, "_unused.html.j2", "<p>\n{% if %}\n</p>\n")
    problems = validate_templates(folder, community_name=COMMUNITY)
    found = {(Path(p.path).name, p.line): p.message for p in problems}
    assert set(found) == {("_items.txt.j2", 3), ("_unused.html.j2", 2)}
    assert "No filter named 'shout'" in found["_items.txt.j2", 3]
    assert "syntax error" in found["_unused.html.j2", 2]


def test_an_error_in_the_layout_is_reported_once(folder: Path) -> None:
    _replace(folder / "layout.txt.j2", "{{ community_name }}\n", "{{ community_name.title() }\n")
    problems = validate_templates(folder, community_name=COMMUNITY)
    assert [(Path(p.path).name, p.line) for p in problems] == [("layout.txt.j2", 4)]


def test_an_email_without_its_text_part_is_a_problem(folder: Path) -> None:
    _write(folder, "lonely.html.j2", '{% extends "layout.html.j2" %}\n')
    problems = validate_templates(folder, community_name=COMMUNITY)
    assert len(problems) == 1
    assert Path(problems[0].path).name == "lonely.html.j2"
    assert "expected lonely.txt.j2" in problems[0].message


def test_a_missing_folder_is_a_problem(tmp_path: Path) -> None:
    problems = validate_templates(tmp_path / "nope", community_name=COMMUNITY)
    assert len(problems) == 1 and "expected a folder" in problems[0].message


def test_subjects_are_rendered_with_their_triggers_context() -> None:
    good = SubjectSample(
        "{{ trigger.threshold }} members!",
        "journeys/milestone.yaml",
        "steps.0.subject",
        "community_milestone",
    )
    bad = SubjectSample(
        "Hi {{ member.frist_name }}",
        "journeys/birthday.yaml",
        "steps.0.subject.fr",
        "anniversary",
        "fr",
    )
    wrong_trigger = SubjectSample(
        "{{ trigger.topic }}", "journeys/welcome.yaml", "steps.1.subject", "member_joined"
    )
    problems = validate_templates(
        TEMPLATES_DIR, community_name=COMMUNITY, subjects=[good, bad, wrong_trigger]
    )
    assert [(p.path, p.field) for p in problems] == [
        ("journeys/birthday.yaml", "steps.0.subject.fr"),
        ("journeys/welcome.yaml", "steps.1.subject"),
    ]
    assert "frist_name" in problems[0].message and "in fr" in problems[0].message
    assert "topic" in problems[1].message


def _workspace(tmp_path: Path) -> Path:
    workspace = Path(shutil.copytree(CONTENT, tmp_path / "workspace"))
    _replace(
        workspace / "templates" / "reengagement.txt.j2", "{{ community_name }}", "{{ comunity }}"
    )
    return workspace


def test_check_workspace_raises_every_template_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = _workspace(tmp_path)
    runtime = Runtime.from_overrides({"workspace": workspace, "data_dir": tmp_path / "data"})
    with pytest.raises(WorkspaceValidationError) as raised:
        runtime.check_workspace()
    error = raised.value
    assert isinstance(error, WorkspaceFileError) and isinstance(error, ValueError)
    assert [Path(p.path).name for p in error.problems] == ["reengagement.txt.j2"]
    assert "'comunity' is undefined" in str(error)


def test_journeys_validate_lists_template_problems(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "--workspace",
            str(workspace),
            "--data-dir",
            str(tmp_path / "data"),
            "journeys",
            "validate",
        ],
    )
    assert result.exit_code == 1, result.output
    path = workspace / "templates" / "reengagement.txt.j2"
    assert f"{path}:{_line_of(path, '{{ comunity }}')}: undefined" in result.output
