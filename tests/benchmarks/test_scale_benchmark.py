"""The scale benchmark on a tiny community: a smoke test that every stage runs and is reported.

It asserts nothing about speed (``make bench-scale`` measures it).
"""

from pathlib import Path

from benchmarks.scale import build_workspace, render_scale_section, run_scale_benchmark


def test_the_library_grows_to_the_items_asked(tmp_path: Path) -> None:
    workspace = build_workspace(tmp_path / "workspace", 120)
    files = sorted((workspace / "library").glob("*.md"))
    assert len(files) == 120
    clone = next(path for path in files if path.stem.endswith("-c1"))
    assert "#1" in clone.read_text(encoding="utf-8")


def test_every_stage_runs_and_the_warm_nightly_redoes_the_changed_members(
    tmp_path: Path,
) -> None:
    result = run_scale_benchmark(tmp_path, members=200, items=80)
    names = [figure.name for figure in result.figures]
    assert names == [
        "import members",
        "import answers",
        "import activity",
        "content",
        "profile",
        "segment",
        "match",
        "journeys",
        "deliver (outbox)",
    ]
    assert all(figure.floor is not None for figure in result.figures)
    assert all(figure.stage.peak_bytes > 0 for figure in result.figures)
    warm = {figure.name: figure for figure in result.warm}
    assert result.changed_members == 2
    assert warm["profile"].rows == result.changed_members
    assert warm["segment"].note.startswith("assigned")
    assert warm["match"].rows >= result.changed_members
    report = "\n".join(render_scale_section(result))
    assert "Warm nightly" in report and "Peak RSS" in report
