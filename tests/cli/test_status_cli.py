"""`nurture status`: the database part always, flow runs from a (fake) Prefect API when set."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from nurture.cli import app
from nurture.cli.status import read_flow_runs
from nurture.storage import open_session
from nurture.storage.models import MessageStatus, utcnow
from tests.operations.conftest import Rows

runner = CliRunner()

HOUR = dt.timedelta(hours=1)


class FakePrefect(ThreadingHTTPServer):
    """A Prefect API that answers ``POST /api/flow_runs/filter`` with canned runs."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.status = 200

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"


def _sort_key(sort: str) -> Any:
    """The order of the Prefect API's sorts nurture asks for (missing times last)."""
    field, _, direction = sort.rpartition("_")
    column = field.lower()

    def key(run: dict[str, Any]) -> tuple[bool, float]:
        value = run.get(column) or run.get("expected_start_time")
        if not value:
            return (True, 0.0)
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        return (False, -stamp if direction == "DESC" else stamp)

    return key


class _Handler(BaseHTTPRequestHandler):
    server: FakePrefect

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        flow = body["flows"]["name"]["any_"][0]
        runs = self.server.runs.get(flow, [])
        types = (body.get("flow_runs") or {}).get("state", {}).get("type", {}).get("any_")
        if types is not None:
            runs = [run for run in runs if run["state_type"] in types]
        runs = sorted(runs, key=_sort_key(body["sort"]))
        payload = json.dumps(runs[: body["limit"]]).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def prefect() -> Iterator[FakePrefect]:
    server = FakePrefect()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _iso(time: dt.datetime | None) -> str | None:
    return time.isoformat().replace("+00:00", "Z") if time else None


def _prefect_run(
    name: str,
    state: str,
    started: dt.datetime,
    message: str = "",
    *,
    state_type: str | None = None,
) -> dict[str, Any]:
    """A flow run as the Prefect API returns it (the fields nurture reads, and a few more).

    A scheduled or late run has not started: ``started`` is when it is (was) due.
    """
    kind = state_type or state.upper()
    waiting = kind in ("SCHEDULED", "PENDING")
    running = kind == "RUNNING"
    return {
        "id": f"id-{name}",
        "name": name,
        "flow_id": "flow-id",
        "state_type": kind,
        "state_name": state,
        "expected_start_time": _iso(started),
        "start_time": None if waiting else _iso(started),
        "end_time": None if waiting or running else _iso(started + HOUR / 60),
        "total_run_time": 60.0,
        "state": {"type": kind, "name": state, "message": message or None},
    }


@pytest.fixture
def database(engine: Engine, database_url: str) -> str:
    """A database with a few emails (one unknown, one failed) and a suppression; its URL."""
    with open_session(engine) as session:
        rows = Rows(session)
        journey = rows.journey("welcome", ["a", "b"])
        for _ in range(3):
            rows.message(
                rows.enrollment(journey), "a", created_at=utcnow() - HOUR, sent_at=utcnow() - HOUR
            )
        rows.message(rows.enrollment(journey), "a", MessageStatus.UNKNOWN, error="boom")
        rows.message(
            rows.enrollment(journey),
            "b",
            MessageStatus.FAILED,
            created_at=utcnow() - 2 * HOUR,
            error="550 <ada@example.org> mailbox unavailable",
        )
        rows.suppression("bounced", utcnow())
        session.commit()
    return database_url


def _status(database_url: str, api_url: str | None, *args: str) -> Any:
    env = {"NURTURE_DATABASE_URL": database_url, "PREFECT_API_URL": api_url}
    result = runner.invoke(app, ["status", *args], env=env)
    assert result.exit_code == 0, result.output
    return result


def test_status_is_a_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert "status" in result.output
    assert "PREFECT_API_URL" in runner.invoke(app, ["status", "--help"]).output


def test_without_prefect_url_the_database_part_is_shown(database: str) -> None:
    result = _status(database, None)

    assert "PREFECT_API_URL is not set" in result.output
    assert "Emails: 5" in result.output
    assert "550 <address> mailbox unavailable" in result.output
    assert "ada@example.org" not in result.output
    assert "Suppression list: 1 addresses" in result.output
    assert "1 email is in status unknown" in result.output
    assert "No segmentation or match run yet" in result.output


def test_an_unreachable_prefect_server_is_told_and_the_rest_shown(
    database: str, closed_port: int
) -> None:
    api_url = f"http://127.0.0.1:{closed_port}/api"

    result = _status(database, api_url)

    assert f"Prefect server not reachable at {api_url}" in " ".join(result.output.split())
    assert "Emails: 5" in result.output
    assert "status unknown" in result.output

    data = json.loads(_status(database, api_url, "--json").stdout)
    assert data["prefect"]["api_url"] == api_url
    assert "not reachable" in data["prefect"]["problem"]
    assert data["flow_runs"] is None
    assert data["delivery"]["by_status"]["unknown"] == 1


def test_flow_runs_come_from_the_prefect_api(database: str, prefect: FakePrefect) -> None:
    now = utcnow()
    prefect.runs = {
        "nightly": [
            _prefect_run("bright-owl", "Failed", now - 2 * HOUR, "Flow run encountered an error"),
            _prefect_run("calm-heron", "Completed", now - 30 * HOUR),
        ],
        "deliver": [_prefect_run(f"run-{n}", "Completed", now - n * HOUR) for n in range(5)],
    }

    result = _status(database, prefect.api_url, "--runs", "2")

    assert [body["flows"]["name"]["any_"] for _, body in prefect.requests] == [
        ["nightly"],
        ["nightly"],
        ["nightly"],
        ["deliver"],
        ["deliver"],
        ["deliver"],
    ]
    path, body = prefect.requests[0]
    assert path == "/api/flow_runs/filter"
    assert (body["sort"], body["limit"]) == ("END_TIME_DESC", 2)
    assert body["flow_runs"]["state"]["type"]["any_"] == [
        "COMPLETED",
        "FAILED",
        "CRASHED",
        "CANCELLED",
    ]
    for name in ("bright-owl", "calm-heron", "run-0", "run-1"):
        assert name in result.output
    assert "run-2" not in result.output
    text = " ".join(result.output.split())
    assert "The last nightly run (bright-owl) ended Failed" in text
    assert "No nightly run completed in the last 26 hours" in text
    assert "not reachable" not in text

    data = json.loads(_status(database, prefect.api_url, "--json").stdout)
    assert data["prefect"]["problem"] is None
    runs = {run["name"]: run for run in data["flow_runs"]}
    assert runs["bright-owl"]["flow"] == "nightly"
    assert runs["bright-owl"]["message"] == "Flow run encountered an error"
    assert runs["run-0"]["state_type"] == "COMPLETED"
    assert len(runs) == 2 + 3


def test_an_api_error_is_told(database: str, prefect: FakePrefect) -> None:
    prefect.status = 500

    result = _status(database, prefect.api_url)

    assert f"the Prefect API at {prefect.api_url} answered 500" in " ".join(result.output.split())
    assert "Emails: 5" in result.output


def test_read_flow_runs_returns_newest_first_per_flow(prefect: FakePrefect) -> None:
    now = utcnow()
    prefect.runs = {
        "deliver": [
            _prefect_run("a", "Running", now),
            _prefect_run("b", "Late", now - HOUR, state_type="SCHEDULED"),
            _prefect_run("c", "Completed", now - 3 * HOUR),
            _prefect_run("d", "Completed", now - 2 * HOUR),
        ]
    }

    runs = read_flow_runs(prefect.api_url + "/", flows=["nightly", "deliver"], limit=1)

    assert [(run.flow, run.name, run.state_type) for run in runs] == [
        ("deliver", "d", "COMPLETED"),
        ("deliver", "b", "SCHEDULED"),
        ("deliver", "a", "RUNNING"),
    ]
    assert runs[0].started is not None
    assert runs[1].expected is not None and runs[1].started is None


def test_a_completed_run_beside_its_scheduled_ones_shows_and_is_not_stale(
    database: str, prefect: FakePrefect
) -> None:
    now = utcnow()
    upcoming = [
        _prefect_run(f"next-{n}", "Scheduled", now + (24 * n - 1) * HOUR, state_type="SCHEDULED")
        for n in (1, 2, 3)
    ]
    prefect.runs = {
        "nightly": [
            *upcoming,
            _prefect_run(
                "done-early",
                "Completed",
                now - HOUR / 4,
                "nightly: profiled 40 members; 400 recommendations for 40 members",
            ),
        ],
        "deliver": [
            _prefect_run(
                "refused-input",
                "Needs attention",
                now - HOUR / 6,
                "deliver: 2 emails failed (template or provider): `nurture status` lists the "
                "reasons; delivered 5: 3 sent, 0 suppressed, 2 failed",
                state_type="COMPLETED",
            )
        ],
    }

    result = _status(database, prefect.api_url, "--runs", "1")

    text = " ".join(result.output.split())
    assert "done-early" in text and "next-1" in text
    assert re.search(r"ended 1[34] min ago", text), text
    assert "profiled" in text  # the table wraps the message; --json below has it whole
    assert "stale" not in text
    assert "completed but needs attention: 2 emails failed" in text
    data = json.loads(_status(database, prefect.api_url, "--json").stdout)
    done = next(run for run in data["flow_runs"] if run["name"] == "done-early")
    assert done["message"].startswith("nightly: profiled 40 members")
    assert done["end_time"] is not None
