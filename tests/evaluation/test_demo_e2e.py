"""On the demo community, with the real model, nurture's ranking beats popularity on nDCG@10.

The demo members' activity follows their hidden persona, which their answers also reveal: a
ranking that uses what members said and did must find their next items better than the most
popular ones, for members with a history (warm) and for those with answers only (cold start).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from nurture.evaluation import evaluate_workspace
from nurture.orchestration import run_cycle
from nurture.runtime import Runtime
from nurture.settings import DEFAULT_EMBEDDING_MODEL, Settings
from tests.pipeline_helpers import CONTENT, NOW, seed_demo

pytestmark = [pytest.mark.e2e, pytest.mark.model]

N_MEMBERS = 1000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    settings = Settings(
        workspace=CONTENT,
        data_dir=tmp_path_factory.mktemp("demo") / "data",
        embedding_model=DEFAULT_EMBEDDING_MODEL,
    )
    with Runtime(settings) as runtime:
        seed_demo(runtime, N_MEMBERS)
        run_cycle(runtime, NOW, lists=("nightly",))
        yield runtime


@pytest.mark.parametrize("mode", ["warm", "cold-start"])
def test_the_engine_beats_popularity_on_ndcg(demo: Runtime, mode: str, tmp_path: Path) -> None:
    report = evaluate_workspace(demo, mode=mode, k=10)  # type: ignore[arg-type]

    ndcg = {name: values["ndcg@10"] for name, values in report.metrics.items()}
    assert report.counts["evaluated_members"] >= 40, report.counts
    assert ndcg["nurture"] is not None and ndcg["popularity"] is not None
    assert ndcg["nurture"] > ndcg["popularity"], report.to_dict()
    assert ndcg["nurture"] > ndcg["random"], report.to_dict()
