"""Whole runs of the stage lists in this process: what ``nurture run --no-prefect`` does."""

import datetime as dt
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg.errors
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from nurture import orchestration, stages
from nurture.errors import ConfigurationError, WorkspaceValidationError
from nurture.orchestration import (
    CYCLE,
    IN_PROCESS,
    TRANSIENT_RETRIES,
    load_orchestrator,
    run_cycle,
    run_stage,
    run_stage_list,
)
from nurture.recommend import recommend_for_members
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.stages import DELIVER, NIGHTLY, import_file, member_ids
from nurture.storage import Member, Message, MessageStatus
from tests.pipeline_helpers import (
    CONTENT,
    NOW,
    recommendation_rows,
    seed_demo,
    welcome_only_workspace,
)

N_MEMBERS = 45
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        workspace=welcome_only_workspace(tmp_path / "workspace"),
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
        chunk_size=16,  # several chunks per stage
    )
    with Runtime(settings) as runtime:
        yield runtime


def _sent_eml(runtime: Runtime) -> list[Path]:
    return sorted(runtime.settings.resolved_outbox_dir.glob("*.eml"))


def _messages_per_member(runtime: Runtime) -> dict[int, list[str]]:
    with runtime.session() as session:
        rows = session.execute(
            select(Message.member_id, Message.step_id).where(Message.status == MessageStatus.SENT)
        ).all()
    steps: dict[int, list[str]] = {}
    for member_id, step_id in rows:
        steps.setdefault(member_id, []).append(step_id)
    return steps


def test_a_cycle_welcomes_every_member_once_and_a_rerun_sends_nothing(runtime: Runtime) -> None:
    seed_demo(runtime, N_MEMBERS)

    report = run_cycle(runtime, NOW)

    assert report.members == N_MEMBERS
    assert report.profiled == N_MEMBERS
    assert report.summaries["nightly"]["profile"]["chunks"] == 3  # 45 members, 16 a chunk
    assert report.segmentation is not None and report.segmentation.n_segments >= 2
    assert report.recommendations > 0
    assert report.delivery.sent == N_MEMBERS
    assert len(_sent_eml(runtime)) == N_MEMBERS
    assert report.outbox_index == runtime.settings.resolved_outbox_dir / "index.html"
    assert report.outbox_index.exists()
    assert all(steps == ["send_welcome"] for steps in _messages_per_member(runtime).values())

    again = run_cycle(runtime, NOW + dt.timedelta(hours=1))

    assert again.texts_embedded == 0  # every text came from the embedding cache
    assert again.delivery.sent == 0
    assert len(_sent_eml(runtime)) == N_MEMBERS


def test_chunks_worked_on_two_at_a_time_give_what_one_at_a_time_gives(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_demo(runtime, N_MEMBERS)
    threads: set[str] = set()
    recommend = recommend_for_members

    def watched(*args: Any, **kwargs: Any) -> Any:
        threads.add(threading.current_thread().name)
        return recommend(*args, **kwargs)

    monkeypatch.setattr(stages, "recommend_for_members", watched)
    two_at_once = runtime.settings.model_copy(update={"chunk_threads": 2})
    with Runtime(two_at_once, engine=runtime.engine) as at_once:
        nightly = run_stage_list(at_once, NIGHTLY, NOW)

    assert nightly["profile"]["profiled"] == N_MEMBERS
    assert nightly["match"]["chunks"] == 3  # 45 members, 16 a chunk
    assert len(threads) == 2 and all(name.startswith("nurture-chunk") for name in threads)
    rows = recommendation_rows(runtime)
    assert sum(map(len, rows.values())) == nightly["match"]["recommendations"] > 0

    one_at_a_time = runtime.settings.model_copy(
        update={"chunk_threads": 1, "incremental_nightly": False}  # every member again
    )
    with Runtime(one_at_a_time, engine=runtime.engine) as in_turn:
        again = run_stage(in_turn, NIGHTLY.stage("match"), NOW)

    assert again["recommendations"] == nightly["match"]["recommendations"]
    assert recommendation_rows(runtime) == rows


def test_the_follow_up_goes_out_after_the_wait_with_new_items(runtime: Runtime) -> None:
    seed_demo(runtime, N_MEMBERS)
    run_cycle(runtime, NOW)

    early = run_cycle(runtime, NOW + dt.timedelta(days=2))
    later = run_cycle(runtime, NOW + dt.timedelta(days=3, minutes=1))

    assert early.delivery.sent == 0
    assert later.delivery.sent == N_MEMBERS
    steps = _messages_per_member(runtime)
    assert all(sorted(s) == ["send_followup", "send_welcome"] for s in steps.values())
    with runtime.session() as session:
        items: dict[int, list[set[str]]] = {}
        for message in session.scalars(select(Message)):
            keys = {item["key"] for item in message.context["items"]}
            items.setdefault(message.member_id, []).append(keys)
    assert all(not (first & second) for first, second in items.values())


def test_member_ids_are_every_member_in_order(runtime: Runtime) -> None:
    seed_demo(runtime, 12)
    ids = member_ids(runtime, NOW)
    assert ids == sorted(ids)
    with runtime.session() as session:
        assert len(ids) == session.scalar(select(func.count()).select_from(Member)) == 12


def test_an_import_refuses_bad_rows_into_a_rejects_file_and_keeps_the_rest(
    runtime: Runtime, tmp_path: Path
) -> None:
    members = tmp_path / "members.csv"
    members.write_text(
        "external_id,email,first_name,language,joined_at\n"
        "m-1,ada@example.org,Ada,en,2026-01-05T10:00:00+00:00\n"
        "m-2,not-an-email,Bob,en,2026-01-05T10:00:00+00:00\n",
        encoding="utf-8",
    )

    summary = import_file(runtime, "members", members)

    assert (summary.stored, summary.refused) == (1, 1)
    rejects = runtime.settings.data_dir / "rejects" / "members.csv.rejects.csv"
    assert summary.rejects_path == rejects
    assert "not-an-email" in summary.rejects_path.read_text(encoding="utf-8")
    with runtime.session() as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 1


def test_check_workspace_names_the_broken_journey_file_and_line(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    shutil.copytree(CONTENT, workspace)
    journey = workspace / "journeys" / "welcome.yaml"
    journey.write_text(
        journey.read_text(encoding="utf-8").replace("duration: 3d", "duraton: 3d"),
        encoding="utf-8",
    )
    settings = Settings(workspace=workspace, data_dir=tmp_path / "data")

    with pytest.raises(WorkspaceValidationError) as raised:
        Runtime(settings).check_workspace()

    problem = raised.value.problems[0]
    assert Path(problem.path).name == "welcome.yaml"
    assert problem.line is not None
    assert "duraton" in str(raised.value)


def test_the_demo_workspace_journeys_run_for_days_within_the_budget(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        workspace=CONTENT,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
    )
    with Runtime(settings) as runtime:
        seed_demo(runtime, 60)
        rules = runtime.workspace.sending_rules
        assert rules.budget is not None

        reports = [run_cycle(runtime, NOW + dt.timedelta(hours=6 * n)) for n in range(9)]

        with runtime.session() as session:
            rows = session.execute(
                select(Message.member_id, Message.journey_key, Message.created_at)
            ).all()
    assert sum(report.delivery.failed for report in reports) == 0
    # Far fewer than the members: only newcomers are welcomed, nothing stale is celebrated.
    assert sum(report.delivery.sent for report in reports) > 0
    journeys = {journey for _, journey, _ in rows}
    assert "welcome" in journeys and len(journeys) >= 3, journeys
    sent_at: dict[int, list[dt.datetime]] = {}
    for member_id, _, created_at in rows:
        sent_at.setdefault(member_id, []).append(created_at)
    window = rules.budget.window_delta
    for moments in sent_at.values():
        for start in moments:
            in_window = [m for m in moments if start <= m < start + window]
            assert len(in_window) <= rules.budget.messages


def test_a_run_in_process_imports_the_waiting_files_first(runtime: Runtime) -> None:
    inbox = runtime.settings.data_dir / "imports"
    inbox.mkdir(parents=True)
    shutil.copy(EXAMPLES / "members.csv", inbox / "members.csv")

    report = run_cycle(runtime, NOW)

    assert [(row["file"], row["outcome"]) for row in report.imports] == [("members.csv", "done")]
    assert report.members == report.imports[0]["stored"] > 0
    assert report.profiled == report.members  # then profiled, as every member


def _failing_first(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, errors: list[Exception]
) -> list[Sequence[int]]:
    """Make the match stage's first chunk raise ``errors`` in turn, then rank.

    Returns:
        The calls of that chunk (the others may run at the same time, on PostgreSQL).
    """
    calls: list[Sequence[int]] = []
    recommend = recommend_for_members
    first_member = member_ids(runtime, NOW)[0]

    def failing(session: Any, embedder: Any, chunk: Sequence[int], *args: Any, **kw: Any):
        if first_member in chunk:
            calls.append(chunk)
            if len(calls) <= len(errors):
                raise errors[len(calls) - 1]
        return recommend(session, embedder, chunk, *args, **kw)

    monkeypatch.setattr(stages, "recommend_for_members", failing)
    monkeypatch.setattr(orchestration, "TRANSIENT_RETRY_DELAY_SECONDS", 0.0)
    return calls


def _ready_to_match(runtime: Runtime) -> None:
    """The demo community imported, and the nightly's stages before the match run."""
    seed_demo(runtime, N_MEMBERS)
    listed: dict[str, list[Any]] = {}
    for name in NIGHTLY.names[: NIGHTLY.names.index("match")]:
        run_stage(runtime, NIGHTLY.stage(name), NOW, listed)


def _deadlock() -> OperationalError:
    return OperationalError("INSERT ...", {}, psycopg.errors.DeadlockDetected("deadlock detected"))


def test_a_chunk_the_database_aborted_for_a_deadlock_runs_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _ready_to_match(runtime)
    calls = _failing_first(runtime, monkeypatch, [_deadlock()])

    with caplog.at_level("WARNING", logger="nurture.orchestration"):
        match = run_stage(runtime, NIGHTLY.stage("match"), NOW)

    assert match["chunks"] == 3 and match["members"] == N_MEMBERS  # 45 members, 16 a chunk
    assert len(calls) == 2 and calls[0] == calls[1]  # the first chunk twice
    assert sum(map(len, recommendation_rows(runtime).values())) == match["recommendations"] > 0
    assert (
        "match: a chunk of 16 members to match failed on the database (deadlock detected); "
        "running it again in 0 s (1 of 2)" in caplog.messages
    )


def test_a_chunk_is_not_run_again_after_an_error_that_would_come_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ready_to_match(runtime)
    calls = _failing_first(runtime, monkeypatch, [ValueError("a bug")])

    with pytest.raises(ValueError, match="a bug"):
        run_stage(runtime, NIGHTLY.stage("match"), NOW)
    assert len(calls) == 1


def test_a_chunk_still_failing_after_its_retries_ends_the_stage(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ready_to_match(runtime)
    calls = _failing_first(runtime, monkeypatch, [_deadlock()] * (TRANSIENT_RETRIES + 1))

    with pytest.raises(OperationalError, match="deadlock detected"):
        run_stage(runtime, NIGHTLY.stage("match"), NOW)
    assert len(calls) == TRANSIENT_RETRIES + 1


def test_the_in_process_orchestrator_runs_the_declared_lists_in_order(runtime: Runtime) -> None:
    seed_demo(runtime, 5)

    summaries = load_orchestrator(IN_PROCESS).run(runtime, CYCLE, NOW)

    assert list(summaries) == ["nightly", "deliver"]
    assert list(summaries["nightly"]) == NIGHTLY.names
    assert list(summaries["deliver"]) == DELIVER.names
    json.dumps(summaries)  # plain data, as a flow returns it


def test_prefect_is_found_by_its_entry_point_without_importing_prefect() -> None:
    script = (
        "import sys; from nurture.orchestration import load_orchestrator; "
        "o = load_orchestrator('prefect'); "
        "print(type(o).__module__, 'prefect' in sys.modules)"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert found.stdout.split() == ["flows.orchestrator", "False"]


def test_an_unknown_orchestrator_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="'airflow'; known: in-process, prefect"):
        load_orchestrator("airflow")
