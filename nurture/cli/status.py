"""``nurture status``: the recent flow runs, the messages, the suppressions, what to look at.

The flow runs come from the Prefect server's REST API (``PREFECT_API_URL``), read here with
one small HTTP call per flow: nurture itself never talks to Prefect. The rest comes from the
database. Importing this module registers the command on the ``nurture`` app.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nurture.cli.context import runtime_of
from nurture.runtime import utc_now

if TYPE_CHECKING:  # nurture.operations is imported by the command, not by `nurture --help`
    from nurture.operations import FlowRunSummary, ReasonCount, StatusReport

__all__ = ["FLOWS", "PrefectRuns", "read_flow_runs", "recent_flow_runs", "register", "status"]

console = Console()

FLOWS = ("nightly", "deliver")
"""The flows whose runs the status shows."""
DEFAULT_RUNS = 3
"""Runs that ended shown per flow (besides the last completed one and those not ended yet)."""
TIMEOUT_SECONDS = 5.0
"""How long to wait for the Prefect server."""

STATUS_HELP = (
    "Show how nurture is doing: the last completed, failed and crashed runs of the nightly and "
    "deliver flows (what each did, how long ago), the runs going on or due, the emails by "
    "status, failures by reason, the suppression list, and what an operator should look at.\n\n"
    "Flow runs are read from the Prefect server at PREFECT_API_URL (when set); the rest from "
    "the database."
)


@dataclasses.dataclass(frozen=True)
class PrefectRuns:
    """What the Prefect server said about the recent flow runs.

    Attributes:
        api_url: The ``PREFECT_API_URL`` asked, None when it is not set.
        runs: The runs, None when they could not be read.
        problem: Why they could not be read.
    """

    api_url: str | None
    runs: list[FlowRunSummary] | None
    problem: str | None = None


def _flow_run(flow: str, data: Mapping[str, Any]) -> FlowRunSummary:
    """A flow run of the Prefect API's JSON as a summary."""
    from nurture.operations import FlowRunSummary

    state = data.get("state") or {}
    return FlowRunSummary(
        flow=flow,
        name=str(data.get("name") or data.get("id") or "?"),
        state_type=str(data.get("state_type") or state.get("type") or "UNKNOWN"),
        state_name=str(data.get("state_name") or state.get("name") or "Unknown"),
        start_time=data.get("start_time"),
        end_time=data.get("end_time"),
        message=state.get("message") or None,
        expected_start_time=data.get("expected_start_time"),
        id=str(data["id"]) if data.get("id") else None,
    )


QUERIES: tuple[tuple[tuple[str, ...], str, int | None], ...] = (
    (("COMPLETED", "FAILED", "CRASHED", "CANCELLED"), "END_TIME_DESC", None),
    (("COMPLETED",), "END_TIME_DESC", 1),
    (("SCHEDULED", "PENDING", "RUNNING", "PAUSED"), "EXPECTED_START_TIME_ASC", None),
)
"""What is asked of each flow: ``(state types, sort, limit)`` (None: the runs asked for).

The last runs that ended (completed, failed, crashed, cancelled), newest first; the last
completed one, however many failed since; then the runs not ended yet: running, late, next
scheduled (their times tell the schedule's period).
"""


def read_flow_runs(
    api_url: str,
    flows: Iterable[str] = FLOWS,
    limit: int = DEFAULT_RUNS,
    *,
    api_key: str | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> list[FlowRunSummary]:
    """Read the recent and upcoming runs of each flow from a Prefect server.

    Per flow: the last ``limit`` runs that ended, the last completed one, and the next
    ``limit`` runs not ended yet (at least 3, to know the schedule's period).

    Args:
        api_url: The server's API (``http://127.0.0.1:4200/api``).
        flows: The flow names.
        limit: Runs that ended per flow.
        api_key: A Prefect Cloud API key, sent as a bearer token.
        timeout: Seconds to wait for each answer.

    Returns:
        The runs, flow by flow, each once.

    Raises:
        httpx.HTTPError: The server could not be reached or answered with an error.
        ValueError: The server's answer is not a list of flow runs.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    runs: list[FlowRunSummary] = []
    with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=timeout, headers=headers) as http:
        for flow in flows:
            seen: set[str] = set()
            for types, sort, count in QUERIES:
                response = http.post(
                    "flow_runs/filter",
                    json={
                        "flows": {"name": {"any_": [flow]}},
                        "flow_runs": {"state": {"type": {"any_": list(types)}}},
                        "sort": sort,
                        "limit": count or max(limit, 3 if "SCHEDULED" in types else limit),
                    },
                )
                response.raise_for_status()
                found = response.json()
                if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
                    raise ValueError(f"expected a list of flow runs, got {str(found)[:200]!r}")
                for data in found:
                    key = str(data.get("id") or data.get("name"))
                    if key not in seen:
                        seen.add(key)
                        runs.append(_flow_run(flow, data))
    return runs


def recent_flow_runs(limit: int = DEFAULT_RUNS) -> PrefectRuns:
    """The latest runs of each flow from the Prefect server at ``PREFECT_API_URL``, if any.

    Never raises: an unset URL or an unreachable server is told in ``problem``.
    """
    api_url = os.environ.get("PREFECT_API_URL", "").strip() or None
    if api_url is None:
        return PrefectRuns(None, None, "PREFECT_API_URL is not set: flow runs are not shown")
    try:
        runs = read_flow_runs(api_url, limit=limit, api_key=os.environ.get("PREFECT_API_KEY"))
    except httpx.HTTPStatusError as error:
        return PrefectRuns(
            api_url,
            None,
            f"the Prefect API at {api_url} answered {error.response.status_code} "
            f"{error.response.reason_phrase}",
        )
    except (httpx.HTTPError, ValueError) as error:
        reason = str(error) or type(error).__name__
        return PrefectRuns(api_url, None, f"Prefect server not reachable at {api_url} ({reason})")
    return PrefectRuns(api_url, runs)


# --- printing -------------------------------------------------------------------------------


def _when(value: str | None) -> str:
    """An ISO 8601 time as ``2026-11-01 09:00 UTC``."""
    if not value:
        return "-"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC)
    return parsed.strftime("%Y-%m-%d %H:%M UTC")


def _duration(run: FlowRunSummary) -> str:
    started, ended = run.started, run.ended
    if started is None or ended is None:
        return "-"
    seconds = int((ended - started).total_seconds())
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


STATE_STYLES = {"COMPLETED": "green", "FAILED": "red", "CRASHED": "red", "CANCELLED": "yellow"}
ATTENTION_STYLE = "yellow"


def _state(run: FlowRunSummary) -> str:
    style = ATTENTION_STYLE if run.needs_attention else STATE_STYLES.get(run.state_type, "")
    return f"[{style}]{escape(run.state_name)}[/]" if style else escape(run.state_name)


def _moment(run: FlowRunSummary, now: dt.datetime) -> str:
    """When the run ended, started or is due, from now: ``ended 2.0 h ago``, ``due in 20 h``."""
    from nurture.operations.flow_runs import time_ago

    if run.ended is not None:
        return f"ended {time_ago(run.ended, now)}"
    if run.started is not None:
        return f"started {time_ago(run.started, now)}"
    if run.expected is not None:
        return f"due {time_ago(run.expected, now)}"
    return "-"


def _runs_table(runs: Sequence[FlowRunSummary], now: dt.datetime) -> Table:
    table = Table(title="Flow runs (exact times in --json)")
    for column in ("run", "state", "when", "what it did"):
        table.add_column(column)
    for run in runs:
        message = (run.message or "").removeprefix(f"{run.flow}: ")
        took = _duration(run)
        table.add_row(
            f"{run.flow} [bold]{escape(run.name)}[/]",
            _state(run),
            _moment(run, now) + (f", took {took}" if took != "-" else ""),
            escape(message[:200]),
        )
    return table


def _counts_table(title: str, header: str, counts: Mapping[str, int]) -> Table:
    table = Table(title=title)
    table.add_column(header)
    table.add_column("count", justify="right")
    for name, count in counts.items():
        table.add_row(escape(name), str(count))
    return table


def _reasons_table(title: str, reasons: Sequence[ReasonCount], other: int = 0) -> Table:
    table = Table(title=title)
    table.add_column("reason")
    table.add_column("emails", justify="right")
    for reason in reasons:
        table.add_row(escape(reason.reason), str(reason.count))
    if other:
        table.add_row("[dim]other reasons[/]", str(other))
    return table


def _queue_table(report: StatusReport) -> Table:
    delivery = report.delivery
    table = Table(title="Queue", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    age = delivery.oldest_queued_age_hours
    rows = {
        "due now": str(delivery.queued_due),
        "scheduled later": str(delivery.queued_later),
        "waiting for a retry": str(delivery.retries_pending),
        "longest wait of a due email": f"{age:.1f} h" if age is not None else "-",
        "sending (stuck)": f"{delivery.sending} ({delivery.sending_stuck})",
        "unknown": str(delivery.unknown),
        "last email sent": _when(report.last_sent_at),
        "last segmentation or match run": _when(report.last_nightly_work),
    }
    for name, value in rows.items():
        table.add_row(name, value)
    return table


def _suppressions_table(report: StatusReport) -> Table:
    suppressions = report.suppressions
    table = Table(title=f"Suppression list: {suppressions.total} addresses")
    table.add_column("reason")
    table.add_column("addresses", justify="right")
    table.add_column("last 24 h", justify="right")
    for reason, count in suppressions.by_reason.items():
        table.add_row(
            escape(reason), str(count), str(suppressions.last_day_by_reason.get(reason, 0))
        )
    return table


def _print(report: StatusReport, prefect: PrefectRuns, now: dt.datetime) -> None:
    if report.flow_runs is not None:
        if report.flow_runs:
            console.print(_runs_table(report.flow_runs, now))
        else:
            console.print(f"No nightly or deliver run on the Prefect server at {prefect.api_url}.")
    else:
        console.print(f"[yellow]{escape(prefect.problem or '')}[/]", highlight=False)
    delivery = report.delivery
    console.print(_counts_table(f"Emails: {delivery.total}", "status", delivery.by_status))
    console.print(_queue_table(report))
    if delivery.failures:
        console.print(
            _reasons_table("Failures by reason", delivery.failures, delivery.failures_other)
        )
    if delivery.suppressed_reasons:
        console.print(
            _reasons_table("Not sent (suppressed) by reason", delivery.suppressed_reasons)
        )
    if report.suppressions.total:
        console.print(_suppressions_table(report))
    else:
        console.print("Suppression list: empty.")
    if report.attention:
        console.print("[bold]Look at:[/]")
        items = Table.grid(padding=(0, 1))
        items.add_column(justify="right")
        items.add_column()
        for number, item in enumerate(report.attention, start=1):
            items.add_row(f"{number}.", escape(item))
        console.print(items, highlight=False)
    else:
        console.print("[green]Nothing needs attention.[/]")


def status(
    ctx: typer.Context,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the status as JSON, for other programs.")
    ] = False,
    runs: Annotated[
        int,
        typer.Option(
            "--runs",
            min=1,
            max=50,
            help="Runs that ended shown per flow (the last completed one and the runs not "
            "ended yet are always shown).",
        ),
    ] = DEFAULT_RUNS,
) -> None:
    """Show how nurture is doing and what an operator should look at."""
    from nurture.operations import status_report

    prefect = recent_flow_runs(runs)
    now = utc_now()
    with runtime_of(ctx).session() as session:
        report = status_report(session, now, flow_runs=prefect.runs)
    if json_output:
        data = {
            "prefect": {"api_url": prefect.api_url, "problem": prefect.problem},
            **dataclasses.asdict(report),
        }
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    _print(report, prefect, now)


def register(app: typer.Typer) -> None:
    """Add ``nurture status`` to the command line app."""
    app.command("status", help=STATUS_HELP)(status)
