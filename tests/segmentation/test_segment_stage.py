"""The segment stage on a runtime: block weights, move delay and the workspace's rule segments."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.errors import ConfigurationError, WorkspaceValidationError
from nurture.runtime import Runtime, settings_from
from nurture.settings import Settings
from nurture.stages import member_ids, profile_chunk, segment
from nurture.storage import SegmentationRun
from tests.pipeline_helpers import CONTENT, NOW, seed_demo


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    copy = tmp_path / "workspace"
    shutil.copytree(CONTENT, copy)
    return copy


def test_block_weights_are_a_json_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_SEGMENT_BLOCK_WEIGHTS", '{"text": 1, "activity": 0}')
    monkeypatch.setenv("NURTURE_SEGMENT_MOVE_AFTER_DAYS", "0.5")
    settings = settings_from()
    assert settings.segment_block_weights == {"text": 1.0, "activity": 0.0}
    assert settings.segment_move_after_days == 0.5
    monkeypatch.setenv("NURTURE_SEGMENT_BLOCK_WEIGHTS", '{"txt": 1}')
    with pytest.raises(ConfigurationError, match="NURTURE_SEGMENT_BLOCK_WEIGHTS"):
        settings_from()
    monkeypatch.setenv("NURTURE_SEGMENT_BLOCK_WEIGHTS", '{"text": -1}')
    with pytest.raises(ConfigurationError, match="greater than or equal to 0"):
        settings_from()


def test_the_segment_stage_uses_the_settings_and_the_rules(
    database_url: str, tmp_path: Path, workspace: Path
) -> None:
    settings = Settings(
        workspace=workspace,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
        n_segments=3,
        segment_block_weights={"text": 0.0},
        segment_move_after_days=7,
    )
    with Runtime(settings) as runtime:
        seed_demo(runtime, 40)
        profile_chunk(runtime, member_ids(runtime, NOW), NOW)
        summary = segment(runtime, NOW)
        with runtime.session() as session:
            run = session.scalars(select(SegmentationRun)).one()
    assert summary.n_segments == 3
    assert set(summary.rule_sizes) == {"french-founders", "event-regulars", "quiet-newcomers"}
    assert run.params["block_weights"] == {"choices": 1.0, "text": 0.0, "activity": 0.25}
    assert run.params["move_after_days"] == 7


def test_a_broken_rule_stops_the_workspace_check(workspace: Path, tmp_path: Path) -> None:
    path = workspace / "segments.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "answers.role == 'founder'", "answers.roles == 'founder'"
        ),
        encoding="utf-8",
    )
    settings = Settings(workspace=workspace, data_dir=tmp_path / "data")
    with pytest.raises(WorkspaceValidationError) as caught:
        Runtime(settings).check_workspace()
    (problem,) = caught.value.problems
    assert problem.field == "segments.0.rule"
    assert problem.line is not None and "unknown question 'roles'" in problem.message
