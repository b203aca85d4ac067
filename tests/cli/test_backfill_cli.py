"""`nurture run` refuses a backfill unless --allow-backfill; `journeys simulate` shows it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from nurture.cli import app
from nurture.errors import BackfillRefusedError
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import Enrollment, Message
from tests.pipeline_helpers import CONTENT, seed_demo

runner = CliRunner()
ENV = {"NURTURE_EMBEDDING_MODEL": "hashing-64"}
START = "2026-11-01T09:00:00"  # when seed_demo generates the community


def _invoke(workspace: Path, data: Path, *args: str) -> object:
    return runner.invoke(
        app, ["--workspace", str(workspace), "--data-dir", str(data), *args], env=ENV
    )


def _counts(workspace: Path, data: Path) -> tuple[int, int]:
    settings = Settings(workspace=workspace, data_dir=data)
    with Runtime(settings) as runtime, runtime.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Enrollment)) or 0,
            session.scalar(select(func.count()).select_from(Message)) or 0,
        )


def test_a_backfill_is_refused_then_allowed(tmp_path: Path) -> None:
    # A two-year-old community seen for the first time: the re-engagement journey alone would
    # write to every member silent for 30 days.
    workspace, data = tmp_path / "workspace", tmp_path / "data"
    shutil.copytree(CONTENT, workspace)
    sending = workspace / "sending.yaml"
    text = sending.read_text(encoding="utf-8")
    assert "max_share: 0.2" in text  # the shipped limit; a small community here, hence:
    sending.write_text(text.replace("min_members: 50", "min_members: 5"), encoding="utf-8")
    settings = Settings(workspace=workspace, data_dir=data, embedding_model="hashing-64")
    with Runtime(settings) as runtime:
        seed_demo(runtime, 30)

    refused = _invoke(workspace, data, "run", "--no-prefect", "--now", START)
    assert refused.exit_code != 0
    assert isinstance(refused.exception, BackfillRefusedError), refused.output
    message = str(refused.exception)
    assert message.startswith("refused: this run would start emailing ")
    assert "of 30 members" in message and "reengagement" in message
    assert "nurture run --allow-backfill" in message
    assert _counts(workspace, data) == (0, 0)  # nothing enrolled, nothing sent

    simulated = _invoke(
        workspace, data, "journeys", "simulate", "all", "--days", "1", "--start", START, "--json"
    )
    assert simulated.exit_code == 0, simulated.output
    backfill = json.loads(simulated.stdout)["backfill"]
    assert backfill["exceeded"] is True and backfill["community"] == 30
    assert "reengagement" in backfill["by_journey"]
    shown = _invoke(workspace, data, "journeys", "simulate", "all", "--days", "1", "--start", START)
    assert "Backfill:" in shown.output and "--allow-backfill" in shown.output

    allowed = _invoke(workspace, data, "run", "--no-prefect", "--now", START, "--allow-backfill")
    assert allowed.exit_code == 0, allowed.output
    enrolled, _ = _counts(workspace, data)
    assert enrolled >= backfill["members"]
    assert "NURTURE_ALLOW_BACKFILL" not in os.environ  # allowed for that run only

    # The next run has nothing new to backfill: it goes through without the flag.
    again = _invoke(workspace, data, "run", "--no-prefect", "--now", "2026-11-01T10:00:00")
    assert again.exit_code == 0, again.output
