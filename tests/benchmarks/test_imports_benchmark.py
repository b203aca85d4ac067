"""Smoke test of the import figure on a tiny file: it runs, stores the same rows as its floor,
re-imports nothing and renders; it asserts nothing about speed (``benchmarks/imports.py``)."""

from __future__ import annotations

import os

from benchmarks.imports import main, render_imports_section, run_imports_benchmark


def test_the_import_figure_runs_on_a_tiny_file(tmp_path) -> None:
    result = run_imports_benchmark(
        activity_rows=400,
        answer_rows=150,
        seed=3,
        batch_size=100,
        postgres_url=os.environ.get("NURTURE_TEST_POSTGRES_URL"),
        work_dir=tmp_path,
    )

    kinds = [(figure.database, figure.kind) for figure in result.figures]
    assert kinds[:3] == [("sqlite", "members"), ("sqlite", "activity"), ("sqlite", "answers")]
    by_kind = {(figure.database, figure.kind): figure for figure in result.figures}
    assert by_kind["sqlite", "members"].rows == result.files.members_count
    assert by_kind["sqlite", "activity"].rows + by_kind["sqlite", "activity"].refused == 400
    assert by_kind["sqlite", "answers"].rows == 150
    assert all(figure.refused == 0 for figure in result.figures)  # the demo is possible
    report = "\n".join(render_imports_section(result))
    assert "| sqlite | activity | 400 |" in report and "ratio" in report
    if ("postgresql", "members") in by_kind:
        assert by_kind["postgresql", "members"].rows == result.files.members_count
        assert kinds[-1] == ("postgresql", "members")  # emptying the members empties the rest


def test_the_command_writes_its_report(tmp_path) -> None:
    output = tmp_path / "imports.md"

    code = main(
        [
            "--activity-rows",
            "100",
            "--answer-rows",
            "50",
            "--batch-size",
            "40",
            "--work-dir",
            str(tmp_path),
            "--postgres-url",
            "",
            "--output",
            str(output),
        ]
    )

    assert code == 0 and output.read_text(encoding="utf-8").startswith("## Imports")
