"""Scale-out: the flows on two Dask worker processes give the single-process results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster
from sqlalchemy import select

from flows.common import with_task_runner
from flows.deliver import deliver
from flows.nightly import nightly
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import ContentItem, Member, Message
from nurture.storage.models import Recommendation
from tests.pipeline_helpers import NOW, seed_demo, welcome_only_workspace

pytestmark = pytest.mark.e2e

N_MEMBERS = 30
CHUNK = 10


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> None:
    # Dask workers start from this environment: they build the same settings as the flow.
    monkeypatch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")
    monkeypatch.setenv("NURTURE_CHUNK_SIZE", str(CHUNK))


def _community(root: Path) -> Settings:
    """A seeded community in a SQLite file of its own (every copy gets the same one)."""
    settings = Settings(
        workspace=welcome_only_workspace(root / "workspace"),
        data_dir=root / "data",
        embedding_model="hashing-64",
    )
    with Runtime(settings) as runtime:
        seed_demo(runtime, N_MEMBERS)
    return settings


def _run_both(settings: Settings) -> dict[str, Any]:
    folders = (str(settings.workspace), str(settings.data_dir))
    return {
        "nightly": with_task_runner(nightly, settings)(*folders, NOW),
        "deliver": with_task_runner(deliver, settings)(*folders, NOW),
    }


def _outcome(settings: Settings) -> dict[str, Any]:
    """Each member's recommendations (item and rank) and messages (step, status, items)."""
    with Runtime(settings) as runtime, runtime.session() as session:
        email = dict(session.execute(select(Member.id, Member.email)).tuples().all())
        key = dict(session.execute(select(ContentItem.id, ContentItem.key)).tuples().all())
        recommendations: dict[str, list[tuple[int, str]]] = {}
        for row in session.scalars(select(Recommendation)):
            recommendations.setdefault(email[row.member_id], []).append(
                (row.rank, key[row.content_item_id])
            )
        messages = sorted(
            (
                email[message.member_id],
                message.step_id,
                str(message.status),
                tuple(item["key"] for item in message.context.get("items", [])),
            )
            for message in session.scalars(select(Message))
        )
    return {
        "recommendations": {member: sorted(ranked) for member, ranked in recommendations.items()},
        "messages": messages,
    }


def _counts(result: dict[str, Any]) -> dict[str, Any]:
    nightly_result, deliver_result = result["nightly"], result["deliver"]
    return {
        "profiled": nightly_result["profile"]["profiled"],
        "recommendations": nightly_result["match"]["recommendations"],
        "segments": nightly_result["segment"]["sizes"],
        "delivery": deliver_result["send"],
    }


def test_a_local_dask_cluster_gives_the_single_process_results(
    tmp_path: Path, environment: None
) -> None:
    single = _community(tmp_path / "single")
    spread = _community(tmp_path / "dask").model_copy(
        update={"task_runner": "dask", "dask_workers": 2}
    )

    single_result = _run_both(single)
    spread_result = _run_both(spread)

    assert _counts(single_result)["delivery"]["sent"] == N_MEMBERS
    assert _counts(spread_result) == _counts(single_result)
    expected = _outcome(single)
    assert len(expected["recommendations"]) == N_MEMBERS
    assert _outcome(spread) == expected
    assert len(list(spread.resolved_outbox_dir.glob("*.eml"))) == N_MEMBERS


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as running:
        yield running


def test_the_chunks_spread_over_the_workers_of_an_existing_cluster(
    tmp_path: Path, environment: None, cluster: LocalCluster
) -> None:
    settings = _community(tmp_path / "remote").model_copy(
        update={"task_runner": "dask", "dask_address": cluster.scheduler_address}
    )

    result = with_task_runner(nightly, settings)(
        str(settings.workspace), str(settings.data_dir), NOW + dt.timedelta(minutes=1)
    )

    assert result["profile"]["profiled"] == N_MEMBERS
    assert result["match"]["recommendations"] == N_MEMBERS * settings.recommendations_per_member
    with Client(cluster) as client:
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    # 3 chunks to profile and 3 to match, on two worker processes: each ran some.
    assert len(executed) == 2
    assert sum(executed.values()) == 2 * (N_MEMBERS // CHUNK)
    assert all(count > 0 for count in executed.values())
