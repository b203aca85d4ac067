"""The rejects file is safe to open in a spreadsheet (issue 15, point 8): a cell that would run
as a formula is escaped as the recommendations export escapes it, with the same function."""

import csv

import pytest

from nurture import csv_safety
from nurture.ingest import import_activity, import_members
from nurture.recommend import export as recommend_export
from tests.ingest.ingest_helpers import read_rejects, write


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("https://evil.example")', '\'=HYPERLINK("https://evil.example")'),
        ("+33 6 12 34 56 78", "'+33 6 12 34 56 78"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("Ada = Lovelace", "Ada = Lovelace"),
        ("", ""),
        (12, 12),
    ],
)
def test_formula_cells_are_escaped(cell, written):
    assert csv_safety.escape_formula(cell) == written


def test_the_recommendations_export_escapes_with_the_same_function():
    assert recommend_export.escape_formula is csv_safety.escape_formula


def test_refused_records_that_look_like_formulas_are_written_escaped(session, tmp_path):
    text = (
        "external_id,email,first_name\n"
        '=HYPERLINK("https://evil.example"),not-an-address,Eve\n'
        "+33612345678,also-not-an-address,Tel\n"
        "-1,,Minus\n"
        "@SUM(A1),bad@,At\n"
        "\t=1+1,tab@,Tab\n"
        "m-6,ok@example.org,Ok\n"
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, write(tmp_path / "m.csv", text), rejects_path)

    assert (summary.stored, summary.refused) == (1, 5)
    with rejects_path.open(encoding="utf-8", newline="") as handle:
        cells = [row for row in csv.reader(handle)][1:]
    raws = [row[3] for row in cells]
    assert raws == [
        '\'=HYPERLINK("https://evil.example"),not-an-address,Eve',
        "'+33612345678,also-not-an-address,Tel",
        "'-1,,Minus",
        "'@SUM(A1),bad@,At",
        "'\t=1+1,tab@,Tab",
    ]
    assert all(not cell.startswith(csv_safety.FORMULA_START) for row in cells for cell in row)


def test_a_key_that_is_a_formula_or_not_text_is_written_safely(session, tmp_path):
    import_members(session, write(tmp_path / "m.csv", "external_id,email\nm1,ada@example.org\n"))
    lines = (
        '{"member": "m1", "type": "post", "occurred_at": "2026-01-05T10:00:00Z", "=cmd": 1}\n'
        '{"member": "m1", "type": "post", "occurred_at": "2026-01-05T10:00:00Z", "\\ud800": 1}\n'
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_activity(session, write(tmp_path / "a.jsonl", lines), rejects_path)

    assert summary.refused == 2
    first, second = read_rejects(rejects_path)
    assert first["field"] == "'=cmd"
    assert second["field"] == "'\\ud800'" and "unknown fields '\\ud800'" in second["reason"]
