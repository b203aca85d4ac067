"""The ranking weights file (ranking.yaml): validation with lines, defaults, precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.errors import RankingFileValidationError, WorkspaceFileError
from nurture.recommend import (
    RankingFile,
    RankingWeights,
    load_ranking_file,
    ranking_weight_sets,
    write_ranking_file,
)
from nurture.recommend.ranking_file import DEFAULT_WEIGHTS
from nurture.runtime import Runtime
from nurture.settings import Settings

_DEFAULT_MEMBER = {
    group: RankingWeights(**weights).member for group, weights in DEFAULT_WEIGHTS.items()
}
"""The built-in `member` weight of each group."""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ranking.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_absent_file_gives_the_built_in_defaults(tmp_path: Path) -> None:
    loaded = load_ranking_file(tmp_path / "ranking.yaml")
    assert loaded == RankingFile()
    assert loaded.with_history == RankingWeights(**DEFAULT_WEIGHTS["with_history"])
    assert loaded.without_history == RankingWeights(**DEFAULT_WEIGHTS["without_history"])


def test_each_group_takes_any_field_the_rest_kept(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "with_history:\n  history: 0.6\n  mmr_lambda: 0.9\n"
        "without_history:\n  cold_start_popularity: 2.5\n  interest_half_life_days: 365\n",
    )
    loaded = load_ranking_file(path)
    assert (loaded.with_history.history, loaded.with_history.mmr_lambda) == (0.6, 0.9)
    assert loaded.with_history.member == _DEFAULT_MEMBER["with_history"]
    assert loaded.without_history.member == _DEFAULT_MEMBER["without_history"]
    assert loaded.without_history.cold_start_popularity == 2.5
    assert loaded.without_history.interest_half_life_days == 365


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            "with_history:\n  history: 0.6\n  histroy: 0.2\n",
            3,
            "with_history.histroy",
            "unknown field",
        ),
        ("with_history:\n  history: 0.6\nwithout_history:\n  member: -1\n", 4, "member", ""),
        ("without_history:\n  mmr_lambda: 1.5\n", 2, "mmr_lambda", ""),
        ("newcomers:\n  member: 0.2\n", 1, "newcomers", ""),
        ("- member: 0.2\n", 1, None, "expected a mapping"),
        ("with_history: [1\n", 1, None, ""),
    ],
)
def test_a_bad_file_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str | None, message: str
) -> None:

    path = _write(tmp_path, text)
    with pytest.raises(RankingFileValidationError) as caught:
        load_ranking_file(path)
    assert isinstance(caught.value, WorkspaceFileError)
    [problem] = caught.value.problems[:1]
    assert str(problem.path) == str(path)
    assert problem.line == line or (field is None and problem.line is not None)
    if field is not None:
        assert field in (problem.field or "")
    assert message in str(caught.value)


def test_the_settings_win_over_the_file_which_wins_over_the_defaults(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    _write(
        workspace,
        "with_history:\n  history: 0.6\n  freshness: 0.2\n"
        "without_history:\n  cold_start_popularity: 2.5\n  freshness: 0.3\n",
    )
    settings = Settings(workspace=workspace, ranking_weights={"freshness": 0.0}, mmr_lambda=0.7)
    with_history, without_history = ranking_weight_sets(settings)
    assert with_history.history == 0.6  # the file
    assert without_history.cold_start_popularity == 2.5  # the file
    assert with_history.freshness == without_history.freshness == 0.0  # the settings
    assert with_history.mmr_lambda == without_history.mmr_lambda == 0.7  # the settings
    assert with_history.member == _DEFAULT_MEMBER["with_history"]  # the default
    runtime = Runtime(settings)
    assert runtime.ranking_weights == with_history
    assert runtime.newcomer_ranking_weights == without_history


def test_what_is_written_reads_back(tmp_path: Path) -> None:
    with_history = RankingWeights(history=0.7, centre_history=False)
    without_history = RankingWeights(cold_start_popularity=3.0, community_popularity=1.0)
    path = write_ranking_file(
        tmp_path / "out" / "ranking.yaml", with_history, without_history, comment="tuned on X"
    )
    assert path.read_text(encoding="utf-8").startswith("# tuned on X\n")
    loaded = load_ranking_file(path)
    assert (loaded.with_history, loaded.without_history) == (with_history, without_history)
