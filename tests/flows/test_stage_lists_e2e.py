"""Prefect and the in-process runner run the same declared stage lists, to the same results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from nurture.orchestration import CYCLE, IN_PROCESS, load_orchestrator
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.stages import STAGE_LISTS
from tests.pipeline_helpers import NOW, seed_demo, welcome_only_workspace

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
N_MEMBERS = 25
CHUNK = 10


def _community(root: Path) -> Settings:
    """A seeded community in a SQLite file of its own, and a members file waiting to import."""
    settings = Settings(
        workspace=welcome_only_workspace(root / "workspace"),
        data_dir=root / "data",
        embedding_model="hashing-64",
        chunk_size=CHUNK,
    )
    with Runtime(settings) as runtime:
        seed_demo(runtime, N_MEMBERS)
    (root / "data" / "imports").mkdir()
    shutil.copy(EXAMPLES / "members.csv", root / "data" / "imports" / "members-crm.csv")
    return settings


def _comparable(summaries: dict[str, Any], root: Path) -> Any:
    """The summaries without what depends on the run's folder, clock or threads."""
    text = json.dumps(summaries, sort_keys=True).replace(str(root.resolve()), "<root>")
    found = json.loads(text)
    found["nightly"]["match_coverage"].pop("last_match_run_at")
    # Chunks profiled at once may both miss the embedding cache on a text they share.
    found["nightly"]["profile"].pop("texts_embedded")
    return found


def test_prefect_and_the_in_process_runner_do_the_same_stages_in_the_same_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    # The flow's tasks build their settings from the environment, like in production.
    monkeypatch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")
    monkeypatch.setenv("NURTURE_CHUNK_SIZE", str(CHUNK))
    here, there = _community(tmp_path / "here"), _community(tmp_path / "there")

    with Runtime(here) as runtime:
        in_process = load_orchestrator(IN_PROCESS).run(runtime, CYCLE, NOW)
    with Runtime(there) as runtime:
        through_prefect = load_orchestrator("prefect").run(runtime, CYCLE, NOW)

    for name in CYCLE:
        assert list(in_process[name]) == list(through_prefect[name]) == STAGE_LISTS[name].names
    assert in_process["nightly"]["imports"][0]["outcome"] == "done"  # the drift that was
    assert in_process["nightly"]["profile"]["chunks"] == 4  # 31 members in chunks of 10
    assert in_process["deliver"]["send"]["sent"] > 0
    expected = _comparable(in_process, tmp_path / "here")
    found = _comparable(through_prefect, tmp_path / "there")
    for name in CYCLE:
        for stage in STAGE_LISTS[name].names:
            assert found[name][stage] == expected[name][stage], (name, stage)
