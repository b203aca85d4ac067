"""The flows' helpers: pending imports, summaries, table rows, the task runner, Markdown reports."""

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
    sum_counts,
    task_runner_for,
    task_settings,
    with_task_runner,
)
from flows.nightly import nightly
from flows.reports import markdown_report
from nurture.pipeline import move_imported, pending_imports
from nurture.settings import Settings

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def test_pending_imports_go_members_first_then_answers_then_activity(tmp_path: Path) -> None:
    for name in (
        "activity.jsonl",
        "answers-2.csv",
        "answers-1.jsonl",
        "members.csv",
        "personas.csv",
        "notes.txt",
        "Members-extra.JSONL",
    ):
        (tmp_path / name).write_text("", encoding="utf-8")
    (tmp_path / "members-folder.csv").mkdir()

    pending = pending_imports(tmp_path)

    assert [(p.kind, p.path.name) for p in pending] == [
        ("members", "Members-extra.JSONL"),
        ("members", "members.csv"),
        ("answers", "answers-1.jsonl"),
        ("answers", "answers-2.csv"),
        ("activity", "activity.jsonl"),
    ]


def test_no_imports_folder_means_nothing_pending(tmp_path: Path) -> None:
    assert pending_imports(tmp_path / "missing") == []


def test_an_imported_file_moves_aside_stamped_with_the_time(tmp_path: Path) -> None:
    source = tmp_path / "members.csv"
    source.write_text("email\n", encoding="utf-8")
    paris = dt.timezone(dt.timedelta(hours=1))

    moved = move_imported(source, "done", NOW.astimezone(paris))

    assert moved == tmp_path / "done" / "20261102T090000Z-members.csv"
    assert moved.read_text(encoding="utf-8") == "email\n"
    assert not source.exists()


def test_chunk_summaries_add_up_field_by_field() -> None:
    total = sum_counts([{"sent": 2, "failed": 1, "label": "x"}, {"sent": 3, "flag": True}, {}])

    assert total == {"sent": 5, "failed": 1}


def test_chunk_names_show_the_first_and_last_id() -> None:
    assert chunk_name([3, 4, 9]) == "3-9 (3)"
    assert chunk_name([]) == "empty"


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
