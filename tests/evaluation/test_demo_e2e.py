"""On the demo community, with the real model, nurture's ranking beats popularity on nDCG@10.

The demo members' activity follows their hidden persona, which their answers also reveal: a
ranking that uses what members said and did must find their next items better than the most
popular ones, for members with a history (warm) and for those with answers only (cold start).
"""

from pathlib import Path

import pytest

from nurture import pipeline
from nurture.evaluation import evaluate_workspace
from nurture.settings import DEFAULT_EMBEDDING_MODEL, Settings
from tests.pipeline_helpers import CONTENT, NOW, seed_demo

pytestmark = pytest.mark.e2e

N_MEMBERS = 1000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(
        workspace=CONTENT,
        data_dir=tmp_path_factory.mktemp("demo") / "data",
        embedding_model=DEFAULT_EMBEDDING_MODEL,
    )
    seed_demo(settings, N_MEMBERS)
    pipeline.run_nightly(settings, NOW)
    return settings


@pytest.mark.parametrize("mode", ["warm", "cold-start"])
def test_the_engine_beats_popularity_on_ndcg(demo: Settings, mode: str, tmp_path: Path) -> None:
    report = evaluate_workspace(demo, mode=mode, k=10)  # type: ignore[arg-type]

    ndcg = {name: values["ndcg@10"] for name, values in report.metrics.items()}
    assert report.counts["evaluated_members"] >= 40, report.counts
    assert ndcg["nurture"] is not None and ndcg["popularity"] is not None
    assert ndcg["nurture"] > ndcg["popularity"], report.to_dict()
    assert ndcg["nurture"] > ndcg["random"], report.to_dict()
