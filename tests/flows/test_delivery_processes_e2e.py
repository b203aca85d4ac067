"""The deliver flow's send stage in worker processes (``NURTURE_DELIVERY_PROCESSES``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from sqlalchemy import func, select

from flows.common import with_task_runner
from flows.deliver import deliver, delivery_task_runner, with_delivery_runner
from flows.nightly import nightly
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import Message
from nurture.storage.models import MessageStatus
from tests.pipeline_helpers import NOW, seed_demo, welcome_only_workspace

N_MEMBERS = 30
CHUNK = 5


def test_more_than_one_delivery_process_takes_a_process_pool() -> None:
    runner = delivery_task_runner(Settings(delivery_processes=3))
    assert isinstance(runner, ProcessPoolTaskRunner)
    assert runner._max_workers == 3
    assert isinstance(delivery_task_runner(Settings()), ThreadPoolTaskRunner)
    flow = with_delivery_runner(deliver, Settings(delivery_processes=2))
    assert flow.name == deliver.name
    assert isinstance(flow.task_runner, ProcessPoolTaskRunner)


@pytest.mark.e2e
def test_two_delivery_processes_send_every_message_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    # The worker processes start from this environment: they build the same settings.
    monkeypatch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")
    monkeypatch.setenv("NURTURE_CHUNK_SIZE", str(CHUNK))
    settings = Settings(
        workspace=welcome_only_workspace(tmp_path / "workspace"),
        data_dir=tmp_path / "data",
        embedding_model="hashing-64",
        delivery_processes=2,
    )
    with Runtime(settings) as runtime:
        seed_demo(runtime, N_MEMBERS)
    folders = (str(settings.workspace), str(settings.data_dir))
    with_task_runner(nightly, settings)(*folders, NOW)

    result = with_delivery_runner(deliver, settings)(*folders, NOW)

    assert result["send"]["sent"] == N_MEMBERS
    with Runtime(settings) as runtime, runtime.session() as session:
        statuses = dict(
            session.execute(select(Message.status, func.count()).group_by(Message.status)).all()
        )
    assert statuses == {MessageStatus.SENT: N_MEMBERS}
    files = list(settings.resolved_outbox_dir.glob("*.eml"))
    assert len(files) == N_MEMBERS  # one file per message: none sent twice
