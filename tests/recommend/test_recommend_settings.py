"""The ranking settings (NURTURE_RANKING_WEIGHTS, ...) reach the ranker and the match run."""

import pytest
from sqlalchemy import select

from nurture.errors import ConfigurationError
from nurture.recommend import RankingWeights
from nurture.recommend.ranking_file import DEFAULT_WEIGHTS
from nurture.runtime import Runtime, settings_from
from nurture.settings import Settings
from nurture.stages import start_matching
from nurture.storage import MatchRun
from tests.pipeline_helpers import NOW

_DEFAULT_MEMBER = {
    group: RankingWeights(**weights).member for group, weights in DEFAULT_WEIGHTS.items()
}
"""The built-in `member` weight of each group."""


def test_settings_defaults_are_the_built_in_weights_of_each_group(tmp_path):
    settings = Settings(workspace=tmp_path)  # no ranking.yaml
    runtime = Runtime(settings)
    assert runtime.ranking_weights == RankingWeights(**DEFAULT_WEIGHTS["with_history"])
    assert runtime.newcomer_ranking_weights == RankingWeights(**DEFAULT_WEIGHTS["without_history"])
    assert settings.ranking_weights == {}


def test_weights_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NURTURE_RANKING_WEIGHTS", '{"co_engagement": 0.4, "freshness": 0}')
    monkeypatch.setenv("NURTURE_INTEREST_HALF_LIFE_DAYS", "30")
    monkeypatch.setenv("NURTURE_MMR_LAMBDA", "0.6")
    monkeypatch.setenv("NURTURE_RECOMMENDATION_KINDS", '["webinar", "event"]')
    settings = settings_from()
    weights = Runtime(settings).ranking_weights
    assert (weights.co_engagement, weights.freshness) == (0.4, 0.0)
    assert weights.member == _DEFAULT_MEMBER["with_history"]  # not named: the default
    assert (weights.interest_half_life_days, weights.mmr_lambda) == (30.0, 0.6)
    assert settings.recommendation_kinds == ["webinar", "event"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NURTURE_RANKING_WEIGHTS", '{"membr": 0.4}'),
        ("NURTURE_RANKING_WEIGHTS", '{"member": -1}'),
        ("NURTURE_RANKING_WEIGHTS", '{"mmr_lambda": 0.5}'),
        ("NURTURE_MMR_LAMBDA", "1.5"),
        ("NURTURE_INTEREST_HALF_LIFE_DAYS", "0"),
    ],
)
def test_bad_ranking_settings_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        settings_from()


def test_the_match_run_records_the_settings(database_url: str, tmp_path):
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        embedding_model="hashing-64",
        ranking_weights={"popularity": 0.5},
        mmr_lambda=0.7,
        recommendation_kinds=["article"],
        recommendations_per_member=4,
    )
    with Runtime(settings) as runtime:
        run_id = start_matching(runtime, NOW)["run_id"]
        with runtime.session() as session:
            params = session.scalar(select(MatchRun.params).where(MatchRun.id == run_id))
    assert params["k"] == 4 and params["kinds"] == ["article"]
    assert (params["weights"]["popularity"], params["weights"]["mmr_lambda"]) == (0.5, 0.7)
