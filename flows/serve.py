"""Serve the flows as scheduled deployments: ``python -m flows.serve``.

``nurture-nightly`` runs on a cron schedule in a time zone (``NURTURE_NIGHTLY_CRON``, default
02:00, in ``NURTURE_NIGHTLY_TIME_ZONE``, default UTC) and ``nurture-deliver`` every
``NURTURE_DELIVER_EVERY_MINUTES`` (10) minutes. Both show in the Prefect UI, where they can also
be run by hand. The process serves until interrupted; its schedules stay active when it stops
(``pause_on_shutdown=False``), so runs due meanwhile wait for the next ``serve`` as late runs.

Point ``PREFECT_API_URL`` at a Prefect server before serving, or pass ``--start-server`` to start
one at that address (default ``http://127.0.0.1:4200/api``) for as long as the deployments are
served: what ``make ui`` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.deliver import deliver
from flows.nightly import nightly
from nurture.runtime import Runtime, settings_from
from nurture.settings import Settings

__all__ = [
    "DEFAULT_API_URL",
    "DELIVER_DEPLOYMENT",
    "NIGHTLY_DEPLOYMENT",
    "build_deployments",
    "local_server",
    "main",
    "wait_for_server",
]

DEFAULT_API_URL = "http://127.0.0.1:4200/api"
NIGHTLY_DEPLOYMENT = "nurture-nightly"
DELIVER_DEPLOYMENT = "nurture-deliver"

# A run that would overlap one still going is cancelled: the next schedule comes soon enough.
_ONE_AT_A_TIME = ConcurrencyLimitConfig(
    limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
)


def build_deployments(
    settings: Settings,
    *,
    nightly_cron: str | None = None,
    time_zone: str | None = None,
    deliver_every_minutes: int | None = None,
) -> list[RunnerDeployment]:
    """The nightly and deliver deployments, scheduled as ``settings`` say unless overridden.

    Their parameters are the absolute workspace and data folders of ``settings``, so that runs
    use the same folders whatever directory they start in, and the UI shows which.
    """
    parameters = {
        "workspace": str(settings.workspace.resolve()),
        "data_dir": str(settings.data_dir.resolve()),
    }
    cron = nightly_cron or settings.nightly_cron
    zone = time_zone or settings.nightly_time_zone
    minutes = deliver_every_minutes or settings.deliver_every_minutes
    return [
        nightly.to_deployment(
            name=NIGHTLY_DEPLOYMENT,
            schedules=[Cron(cron, timezone=zone)],
            parameters=parameters,
            concurrency_limit=_ONE_AT_A_TIME,
            description=f"Import, profile, segment, match and report; cron {cron!r} ({zone}).",
            tags=["nurture"],
        ),
        deliver.to_deployment(
            name=DELIVER_DEPLOYMENT,
            schedules=[Interval(dt.timedelta(minutes=minutes))],
            parameters=parameters,
            concurrency_limit=_ONE_AT_A_TIME,
            description=f"Advance journeys and send what is due; every {minutes} minutes.",
            tags=["nurture"],
        ),
    ]


def wait_for_server(api_url: str, timeout: float = 120.0) -> None:
    """Wait until the Prefect server at ``api_url`` answers its health check.

    Raises:
        TimeoutError: It did not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{api_url.rstrip('/')}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no Prefect server answered at {api_url} within {timeout:.0f} s")
        time.sleep(0.5)


@contextmanager
def local_server(
    api_url: str = DEFAULT_API_URL,
    *,
    log: IO[Any] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``prefect server start`` at the host and port of ``api_url`` while in the block.

    Args:
        api_url: The API URL the server must answer at (``http://HOST:PORT/api``).
        log: Where the server's output goes (default: this process's).
        env: The server's environment (default: this process's), e.g. its own ``PREFECT_HOME``.
        timeout: Seconds to wait for the server to answer.

    Yields:
        The server process, once it answers; it is stopped when the block ends.

    Raises:
        TimeoutError: The server did not answer in time (it is stopped).
    """
    address = urlsplit(api_url)
    command = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        address.hostname or "127.0.0.1",
        "--port",
        str(address.port or 4200),
    ]
    server_env = dict(os.environ if env is None else env)
    server_env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    process = subprocess.Popen(command, env=server_env, stdout=log, stderr=log)
    try:
        wait_for_server(api_url, timeout)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> None:
    """Serve the nightly and deliver deployments until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__)
    parser.add_argument("--workspace", help="workspace folder (default: NURTURE_WORKSPACE)")
    parser.add_argument("--data-dir", help="data folder (default: NURTURE_DATA_DIR)")
    parser.add_argument("--nightly-cron", help="cron of nightly (default: NURTURE_NIGHTLY_CRON)")
    parser.add_argument(
        "--time-zone", help="time zone of the cron (default: NURTURE_NIGHTLY_TIME_ZONE)"
    )
    parser.add_argument(
        "--deliver-every",
        type=int,
        metavar="MINUTES",
        help="minutes between deliver runs (default: NURTURE_DELIVER_EVERY_MINUTES)",
    )
    parser.add_argument(
        "--start-server",
        action="store_true",
        help=f"also run a Prefect server at PREFECT_API_URL (default {DEFAULT_API_URL})",
    )
    args = parser.parse_args(argv)
    # The library's own warnings and errors (loggers "nurture.*") go to the run logs in the UI
    # too: the runs start in processes of their own, with this environment.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "nurture")
    settings = settings_from(
        {
            key: value
            for key, value in (("workspace", args.workspace), ("data_dir", args.data_dir))
            if value is not None
        }
    )
    Runtime(settings).check_workspace()  # a broken workspace fails now, not at 02:00
    deployments = build_deployments(
        settings,
        nightly_cron=args.nightly_cron,
        time_zone=args.time_zone,
        deliver_every_minutes=args.deliver_every,
    )
    api_url = PREFECT_API_URL.value()
    if not args.start_server:
        if not api_url:
            parser.error("set PREFECT_API_URL to a Prefect server, or pass --start-server")
        serve(*deployments, pause_on_shutdown=False)
        return
    api_url = api_url or DEFAULT_API_URL
    log_path = Path(settings.data_dir) / "prefect-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log, local_server(api_url, log=log):
        print(f"Prefect server and UI: {api_url.removesuffix('/api')}  (its log: {log_path})")
        with temporary_settings({PREFECT_API_URL: api_url}):
            serve(*deployments, pause_on_shutdown=False)


if __name__ == "__main__":
    main()
