"""nurture as a service, proved through the Prefect UI's own REST API.

A real ``prefect server start`` on a free local port, ``python -m flows.serve`` serving the
deployments against it, one run of each deployment asked for through the API (as the UI's
"Run" button does); then the API must show the runs completed, their task runs, their logs and
the artifacts with real content.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from flows.serve import DELIVER_DEPLOYMENT, NIGHTLY_DEPLOYMENT, local_server
from nurture.cli import app
from nurture.demo import generate_library_community
from nurture.workspace import load_content_library, load_questionnaire
from tests.pipeline_helpers import NOW, welcome_only_workspace

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
N_MEMBERS = 30
CHUNK = 10
SECRET = "e2e-unsubscribe-secret-4f1c"
SALT = "e2e-suppression-salt-9a7d"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def prefect_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a Prefect server of this test's own, running on a free port."""
    api = f"http://127.0.0.1:{_free_port()}/api"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "NURTURE_"))
    }
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # Runs come only from this test; the schedules are checked, not waited for.
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
    )
    with (
        (tmp_path / "prefect-server.log").open("wb") as log,
        local_server(api, log=log, env=env, timeout=180),
    ):
        yield env


def _post(api: str, path: str, body: dict[str, Any] | None = None) -> Any:
    for _ in range(10):
        response = httpx.post(f"{api}{path}", json=body or {}, timeout=30)
        if response.status_code != 503:  # the server's SQLite database was busy: try again
            break
        time.sleep(1)
    response.raise_for_status()
    return response.json()


def _wait(what: str, check: Any, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _run_deployment(api: str, deployment: dict[str, Any]) -> dict[str, Any]:
    """Ask for a run of ``deployment`` at the tests' fixed time, like the UI's Run button."""
    run = _post(
        api,
        f"/deployments/{deployment['id']}/create_flow_run",
        {"parameters": {"now": NOW.isoformat()}},
    )

    def finished() -> dict[str, Any] | None:
        current = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=30).json()
        state = current["state"]["type"]
        return current if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

    done = _wait(f"the {deployment['name']} run", finished)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    return done


def _task_names(api: str, flow_run_id: str) -> list[str]:
    runs = _post(
        api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200}
    )
    assert all(run["state"]["type"] == "COMPLETED" for run in runs), runs
    # A task run is named after its task ("segment-3f2"), or "<task> <what>" for chunks.
    return sorted(run["name"].split(" ")[0].rsplit("-", 1)[0] for run in runs)


def _logs_once_complete(api: str, runs: list[dict[str, Any]]) -> str | None:
    """Every log line of ``runs``, once each run's logs end with its final state."""
    texts = []
    for run in runs:
        logs = _post(
            api, "/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200}
        )
        if not any(
            "Finished in state Completed" in log["message"]
            for log in logs
            if not log["task_run_id"]
        ):
            return None
        texts += [log["message"] for log in logs]
    return "\n".join(texts)


def _latest_artifacts(api: str) -> dict[str, dict[str, Any]]:
    keys = [
        "nurture-imports",
        "nurture-segments",
        "nurture-match-coverage",
        "nurture-journey-funnel",
        "nurture-delivery",
    ]
    found = _post(api, "/artifacts/latest/filter", {"artifacts": {"key": {"any_": keys}}})
    return {artifact["key"]: artifact for artifact in found}


def _table(artifact: dict[str, Any]) -> list[dict[str, Any]]:
    assert artifact["type"] == "table"
    data = artifact["data"]
    return json.loads(data) if isinstance(data, str) else data


def test_the_served_deployments_run_and_report_through_the_api(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    api = prefect_env["PREFECT_API_URL"]
    workspace = welcome_only_workspace(tmp_path / "workspace")
    data_dir = tmp_path / "data"
    # The community arrives as files dropped in the imports folder, for the nightly run.
    specs = load_content_library(workspace / "library")
    generate_library_community(
        data_dir / "imports",
        N_MEMBERS,
        3,
        now=NOW - dt.timedelta(days=1),
        library=specs,
        questionnaire=load_questionnaire(workspace / "questionnaire.yaml"),
    )
    serve_env = {
        **prefect_env,
        "NURTURE_WORKSPACE": str(workspace),
        "NURTURE_DATA_DIR": str(data_dir),
        "NURTURE_EMBEDDING_MODEL": "hashing-64",
        "NURTURE_CHUNK_SIZE": str(CHUNK),
        "NURTURE_NIGHTLY_CRON": "30 3 * * *",
        "NURTURE_NIGHTLY_TIME_ZONE": "Europe/Paris",
        "NURTURE_UNSUBSCRIBE_SECRET": SECRET,
        "NURTURE_SUPPRESSION_SALT": SALT,
    }
    with (tmp_path / "serve.log").open("wb") as log:
        serving = subprocess.Popen(
            [sys.executable, "-m", "flows.serve"],
            cwd=ROOT,
            env=serve_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def served() -> list[dict[str, Any]] | None:
            log = (tmp_path / "serve.log").read_text(encoding="utf-8", errors="replace")
            assert serving.poll() is None, f"`python -m flows.serve` stopped:\n{log[-3000:]}"
            found = _post(api, "/deployments/filter")
            return found if len(found) == 2 else None

        deployments = _wait("the deployments", served, timeout=180)
        by_name = {deployment["name"]: deployment for deployment in deployments}
        nightly, deliver = by_name[NIGHTLY_DEPLOYMENT], by_name[DELIVER_DEPLOYMENT]
        [cron] = [schedule["schedule"] for schedule in nightly["schedules"]]
        assert (cron["cron"], cron["timezone"]) == ("30 3 * * *", "Europe/Paris")
        [interval] = [schedule["schedule"] for schedule in deliver["schedules"]]
        assert interval["interval"] == 600

        nightly_run = _run_deployment(api, nightly)
        deliver_run = _run_deployment(api, deliver)
        # A run's process sends its last logs as it exits, just after the run is marked
        # completed: wait for them before stopping `serve`.
        messages = _wait("the logs", lambda: _logs_once_complete(api, [nightly_run, deliver_run]))
    finally:
        serving.terminate()
        serving.wait(timeout=60)

    # Stopping `serve` leaves the schedules on (pause_on_shutdown=False).
    for deployment in _post(api, "/deployments/filter"):
        assert not deployment["paused"]
        assert all(schedule["active"] for schedule in deployment["schedules"])

    runs = _post(
        api,
        "/flow_runs/filter",
        {"flow_runs": {"id": {"any_": [nightly_run["id"], deliver_run["id"]]}}},
    )
    assert sorted(run["state"]["type"] for run in runs) == ["COMPLETED", "COMPLETED"]

    chunks = N_MEMBERS // CHUNK
    assert _task_names(api, nightly_run["id"]) == sorted(
        ["pending_import_files"]
        + ["import_pending_files"] * 3
        + ["sync_workspace", "members_to_profile_ids", "segment"]
        + ["members_to_match_ids", "start_matching"]
        + ["profile_chunk", "match_chunk"] * chunks
        + ["best_hours", "segment_table", "experiment_results", "match_coverage"]
    )
    assert _task_names(api, deliver_run["id"]) == sorted(
        ["recover_deliveries", "run_journeys", "due_messages", "finish_delivery"]
        + ["deliver_chunk"] * chunks
        + ["journey_funnel", "delivery_report"]
    )

    assert f"profiled {CHUNK} members" in messages
    assert f"{N_MEMBERS} messages due" in messages
    assert SECRET not in messages and SALT not in messages
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.-]+", messages), "a log line names an address"

    # `nurture status` shows the completed runs, what they did, and no false stale warning.
    status = CliRunner().invoke(
        app,
        ["status", "--json"],
        env={"PREFECT_API_URL": api, "NURTURE_DATA_DIR": str(data_dir)},
    )
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    shown = {run["name"]: run for run in report["flow_runs"]}
    assert shown[nightly_run["name"]]["state_type"] == "COMPLETED"
    assert shown[nightly_run["name"]]["message"].startswith("nightly: imported 3 files of 3")
    assert shown[deliver_run["name"]]["message"].startswith("deliver: journeys: ")
    assert [item for item in report["attention"] if "nightly" in item] == []

    artifacts = _latest_artifacts(api)
    imports = _table(artifacts["nurture-imports"])
    assert [(row["file"], row["outcome"]) for row in imports] == [
        ("members.csv", "done"),
        ("answers.jsonl", "done"),
        ("activity.jsonl", "done"),
    ]
    assert imports[0]["stored"] == N_MEMBERS
    assert artifacts["nurture-imports"]["flow_run_id"] == nightly_run["id"]

    segments = _table(artifacts["nurture-segments"])
    clusters = [row for row in segments if row["kind"] == "cluster"]
    assert len(clusters) >= 2
    assert sum(row["size"] for row in clusters) == N_MEMBERS
    assert all(row["label"] for row in segments)

    coverage = artifacts["nurture-match-coverage"]
    assert coverage["type"] == "markdown"
    assert f"| members with recommendations | {N_MEMBERS} |" in coverage["data"]

    funnel = _table(artifacts["nurture-journey-funnel"])
    [welcome] = [
        row for row in funnel if (row["journey"], row["step"]) == ("welcome", "send_welcome")
    ]
    assert welcome["entered"] == N_MEMBERS
    assert welcome["sent"] == N_MEMBERS
    assert artifacts["nurture-journey-funnel"]["flow_run_id"] == deliver_run["id"]

    delivery = artifacts["nurture-delivery"]
    assert delivery["type"] == "markdown"
    assert f"| sent | {N_MEMBERS} |" in delivery["data"]
    assert "## by status" in delivery["data"]

    # The outbox holds the emails the deliver run sent.
    assert len(list((data_dir / "outbox").glob("*.eml"))) == N_MEMBERS
    assert not (data_dir / "imports" / "members.csv").exists()  # imported files go to done/
    assert len(list((data_dir / "imports" / "done").iterdir())) == 3
