"""docs/imports.md against the code: the fields it names, the choices, the rejects it shows."""

import re
from pathlib import Path

import pytest

from nurture.ingest import (
    ACTIVITY_COLUMNS,
    ACTIVITY_REQUIRED_COLUMNS,
    ACTIVITY_TYPES,
    ANSWER_COLUMNS,
    ANSWER_REQUIRED_COLUMNS,
    CONSENT_STATUSES,
    DEFAULT_BATCH_SIZE,
    MAX_RECORD_LINES,
    MEMBER_COLUMNS,
    MEMBER_REQUIRED_COLUMNS,
    REJECTS_COLUMNS,
    SUFFIXES,
    import_members,
)
from nurture.languages import DEFAULT_LANGUAGES
from nurture.workspace import load_questionnaire

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "imports.md").read_text(encoding="utf-8")
EXAMPLES = REPO / "examples"


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.M | re.S)
    assert match, f"docs/imports.md has no section {title!r}"
    return match.group(1)


def _table(text: str, first_heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the table whose header starts with ``| first_heading |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_heading} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def _names(cells: list[str]) -> list[str]:
    return re.findall(r"`([^`]+)`", cells[0])


@pytest.mark.parametrize(
    ("title", "columns", "required"),
    [
        ("Members", MEMBER_COLUMNS, MEMBER_REQUIRED_COLUMNS),
        ("Answers", ANSWER_COLUMNS, ANSWER_REQUIRED_COLUMNS),
        ("Activity events", ACTIVITY_COLUMNS, ACTIVITY_REQUIRED_COLUMNS),
    ],
)
def test_field_tables_name_exactly_the_fields_the_code_accepts(title, columns, required):
    rows = [row for row in _table(_section(title), "field") if _names(row)]
    documented = {_names(row)[0]: row[2] for row in rows}

    assert list(documented) == list(columns)  # the same fields, in the same order
    assert {name for name, cell in documented.items() if cell == "yes"} == set(required)
    assert set(documented.values()) <= {"yes", "no"}


def test_the_choices_the_code_allows_are_documented():
    members = {_names(row)[0]: row for row in _table(_section("Members"), "field") if _names(row)}
    assert re.findall(r"`([^`]+)`", members["language"][1]) == list(DEFAULT_LANGUAGES)
    assert re.findall(r"`([^`]+)`", members["consent_status"][1]) == list(CONSENT_STATUSES)
    types = [_names(row)[0] for row in _table(_section("Activity events"), "type")]
    assert types == list(ACTIVITY_TYPES)
    assert [_names(row)[0] for row in _table(_section("Files"), "suffix")] == list(SUFFIXES)
    rejects = _section("Refused records and the rejects file")
    assert [_names(row)[0] for row in _table(rejects, "column")] == list(REJECTS_COLUMNS)
    assert f"batches of {DEFAULT_BATCH_SIZE}" in _section("Batches, interruptions and re-runs")
    assert f"at most {MAX_RECORD_LINES} lines" in _section("Files")


def test_the_questions_documented_are_those_of_the_questionnaire():
    questionnaire = load_questionnaire(REPO / "content" / "questionnaire.yaml")
    rows = _table(_section("Answers"), "question")

    assert [_names(row)[0] for row in rows] == [q.key for q in questionnaire.questions]
    for row, question in zip(rows, questionnaire.questions, strict=True):
        assert row[1].split()[0] == question.kind.split("_")[0]
        if question.kind == "scale":
            assert f"{question.min}–{question.max}" in row[1]


def test_every_import_example_file_is_documented():
    # examples/evaluation/ is an evaluation dataset, documented in docs/evaluation.md;
    # examples/automations/ holds Prefect automations, documented in docs/operations.md.
    files = sorted(
        p.relative_to(EXAMPLES).as_posix()
        for p in EXAMPLES.rglob("*")
        if p.is_file() and p.relative_to(EXAMPLES).parts[0] not in ("evaluation", "automations")
    )
    linked = {name for name in re.findall(r"\(\.\./examples/([^)]+)\)", DOC) if "." in name}

    assert files and set(files) == linked


def test_the_rejects_example_is_what_the_code_writes(session, tmp_path):
    block = re.search(r"<!-- rejects of examples/bad/members\.csv.*?```csv\n(.*?)```", DOC, re.S)
    assert block, "docs/imports.md has no rejects example"
    import_members(session, EXAMPLES / "members.csv")
    rejects_path = tmp_path / "rejects.csv"

    import_members(session, EXAMPLES / "bad" / "members.csv", rejects_path)

    written = rejects_path.read_text(encoding="utf-8").replace("\r\n", "\n")
    assert written == block.group(1)
