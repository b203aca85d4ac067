"""The nightly flow imports the files waiting in the imports folder, and sets aside bad ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import func, select

from flows.nightly import nightly
from nurture.cli.status import read_flow_runs
from nurture.operations import operator_attention
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import Member
from tests.pipeline_helpers import NOW, welcome_only_workspace

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_pending_files_are_imported_once_and_unreadable_ones_set_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    monkeypatch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")
    settings = Settings(workspace=welcome_only_workspace(tmp_path / "workspace"), data_dir=tmp_path)
    inbox = tmp_path / "imports"
    inbox.mkdir()
    shutil.copy(EXAMPLES / "members.csv", inbox / "members.csv")
    shutil.copy(EXAMPLES / "answers.jsonl", inbox / "answers.jsonl")
    shutil.copy(EXAMPLES / "bad" / "members-no-email-column.csv", inbox / "members-broken.csv")
    (inbox / "notes.txt").write_text("not an import file", encoding="utf-8")

    state = nightly(str(settings.workspace), str(settings.data_dir), NOW, return_state=True)
    result = state.result()

    # A refused file does not fail the run, but the run says it needs attention, and why.
    assert (state.type.value, state.name) == ("COMPLETED", "Needs attention")
    assert state.message.startswith("nightly: import file members-broken.csv refused (")
    assert "imported 2 files of 3" in state.message
    # ... and `nurture status` puts it on the attention list, from the Prefect server.
    runs = read_flow_runs(str(PREFECT_API_URL.value()), flows=["nightly"])
    with Runtime(settings) as runtime, runtime.session() as session:
        attention = operator_attention(session, flow_runs=runs)
    assert any(
        "completed but needs attention: import file members-broken.csv refused" in item
        for item in attention
    ), attention
    outcomes = {row["file"]: row["outcome"] for row in result["imports"]}
    assert outcomes == {
        "members-broken.csv": "failed",
        "members.csv": "done",
        "answers.jsonl": "done",
    }
    [broken] = [row for row in result["imports"] if row["outcome"] == "failed"]
    assert "email" in broken["error"]
    members = _count_members(settings)
    assert members > 0
    assert result["profile"]["profiled"] == members
    assert sorted(path.name.split("-", 1)[1] for path in (inbox / "done").iterdir()) == [
        "answers.jsonl",
        "members.csv",
    ]
    assert [path.name.split("-", 1)[1] for path in (inbox / "failed").iterdir()] == [
        "members-broken.csv"
    ]
    assert sorted(path.name for path in inbox.iterdir()) == ["done", "failed", "notes.txt"]

    rerun = nightly(str(settings.workspace), str(settings.data_dir), NOW, return_state=True)
    again = rerun.result()

    assert (rerun.name, again["imports"]) == ("Completed", [])
    assert rerun.message.startswith("nightly: profiled ")
    assert _count_members(settings) == members


def _count_members(settings: Settings) -> int:
    with Runtime(settings) as runtime, runtime.session() as session:
        return session.scalar(select(func.count()).select_from(Member)) or 0
