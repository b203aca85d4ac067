"""The flows' helpers: run names, table rows, the task runner, tasks, Markdown reports."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows.common import (
    DEFAULT_THREADS,
    chunk_name,
    flat_row,
    task_runner_for,
    task_settings,
    with_task_runner,
)
from flows.nightly import nightly
from flows.reports import PUBLISHERS, markdown_report, results_table
from flows.tasks import chunk_task, single_task
from nurture.settings import Settings
from nurture.stages import DELIVER, NIGHTLY

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def test_chunk_names_show_the_first_and_last_id_or_the_files() -> None:
    assert chunk_name([3, 4, 9]) == "3-9 (3)"
    assert chunk_name([]) == "empty"
    assert chunk_name(["/data/imports/members.csv"]) == "members.csv"


def test_every_task_keeps_the_name_of_the_library_function_it_wraps() -> None:
    for stage in [*NIGHTLY, *DELIVER]:
        if stage.over is None:
            assert single_task(stage.run).name == stage.run.__name__
            continue
        assert chunk_task(stage.run).name == stage.run.__name__
        assert single_task(stage.over.list_items).name == stage.over.list_items.__name__
        assert chunk_task(stage.run).retries == 2  # retries live on the decorator
    assert single_task(NIGHTLY.stage("content").run) is single_task(NIGHTLY.stage("content").run)


def test_every_artifact_shows_a_declared_stage() -> None:
    assert set(PUBLISHERS) <= set(NIGHTLY.names) | set(DELIVER.names)


@dataclasses.dataclass
class _Row:
    key: str
    share: float
    traits: tuple[str, ...]
    by_status: dict[str, int]
    at: dt.datetime
    path: Path
    missing: None = None


def test_a_table_row_holds_json_scalars_only() -> None:
    row = flat_row(_Row("seg-1", 0.5, ("a", "b"), {"sent": 2}, NOW, Path("/x/y")))

    assert row == {
        "key": "seg-1",
        "share": 0.5,
        "traits": "a, b",
        "by_status": "sent: 2",
        "at": "2026-11-02T09:00:00+00:00",
        "path": "/x/y",
        "missing": None,
    }


def test_the_settings_choose_the_task_runner() -> None:
    threads = task_runner_for(Settings())
    assert isinstance(threads, ThreadPoolTaskRunner)
    assert threads._max_workers == DEFAULT_THREADS  # bounded, unlike Prefect's default

    local = task_runner_for(Settings(task_runner="dask", dask_workers=3))
    assert isinstance(local, DaskTaskRunner)
    assert local.address is None
    assert local.cluster_kwargs["n_workers"] == 3
    assert local.cluster_kwargs["processes"] is True
    assert local.cluster_kwargs["threads_per_worker"] == 1

    remote = task_runner_for(Settings(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert isinstance(remote, DaskTaskRunner)
    assert remote.address == "tcp://10.0.0.5:8786"
    assert remote.cluster_kwargs == {}


def test_with_task_runner_keeps_the_flow_and_changes_its_runner() -> None:
    dasked = with_task_runner(nightly, Settings(task_runner="dask"))

    assert dasked.name == "nightly"
    assert isinstance(dasked.task_runner, DaskTaskRunner)
    assert isinstance(nightly.task_runner, ThreadPoolTaskRunner)  # from this environment


def test_tasks_get_absolute_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    settings = task_settings("workspace", None)

    assert settings == {
        "workspace": str(tmp_path / "workspace"),
        "data_dir": str(tmp_path / "nurture-data"),
    }


def test_a_markdown_report_puts_scalars_in_one_table_and_nested_values_in_their_own() -> None:
    text = markdown_report(
        "Messages",
        {
            "total": 3,
            "failure_rate": 0.3333,
            "by_status": {"sent": 2, "failed": 1},
            "failures": [{"reason": "mailbox | full", "count": 1}],
            "suppressed_reasons": [],
        },
    )

    assert text.splitlines() == [
        "# Messages",
        "",
        "|  | value |",
        "|---|---|",
        "| total | 3 |",
        "| failure rate | 0.333 |",
        "",
        "## by status",
        "",
        "|  | count |",
        "|---|---|",
        "| sent | 2 |",
        "| failed | 1 |",
        "",
        "## failures",
        "",
        "| reason | count |",
        "|---|---|",
        "| mailbox \\| full | 1 |",
        "",
        "## suppressed reasons",
        "",
        "None.",
    ]


def test_journey_results_read_as_a_table_of_arms() -> None:
    control = {"converted": 10, "total": 100, "rate": 0.1, "low": 0.05, "high": 0.17}
    variant = {"converted": 30, "total": 100, "rate": 0.3, "low": 0.22, "high": 0.4}
    versus = {"difference": 0.2, "low": 0.09, "high": 0.31, "p_value": 0.00042}
    lines = results_table(
        [
            {"arm": "control", "enrolled": 100, "conversion": control, "comparison": None},
            {"arm": "long", "enrolled": 100, "conversion": variant, "comparison": versus},
            {"arm": "short", "enrolled": 3, "conversion": None, "comparison": None},
        ]
    )
    assert lines[0] == "| arm | members | conversion | difference | p-value |"
    assert lines[2] == "| control | 100 | 10.0 % [5.0, 17.0] | reference |  |"
    assert lines[3] == "| long | 100 | 30.0 % [22.0, 40.0] | +20.0 % [9.0, 31.0] | 0.00042 |"
    assert lines[4].startswith("| short | 3 | n/a |")
    assert "experiment_results" in PUBLISHERS
