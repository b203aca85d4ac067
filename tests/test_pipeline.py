import datetime as dt
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture import pipeline
from nurture.errors import WorkspaceValidationError
from nurture.journeys import load_sending_rules
from nurture.settings import Settings
from nurture.storage import Member, Message, MessageStatus, session_scope
from tests.pipeline_helpers import CONTENT, NOW, seed_demo, welcome_only_workspace

N_MEMBERS = 45


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        workspace=welcome_only_workspace(tmp_path / "workspace"),
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
        chunk_size=16,  # several chunks per stage
    )


def _sent_eml(settings: Settings) -> list[Path]:
    return sorted(settings.resolved_outbox_dir.glob("*.eml"))


def _messages_per_member(settings: Settings) -> dict[int, list[str]]:
    with session_scope(pipeline.engine_for(settings)) as session:
        rows = session.execute(
            select(Message.member_id, Message.step_id).where(Message.status == MessageStatus.SENT)
        ).all()
    steps: dict[int, list[str]] = {}
    for member_id, step_id in rows:
        steps.setdefault(member_id, []).append(step_id)
    return steps


def test_a_cycle_welcomes_every_member_once_and_a_rerun_sends_nothing(
    settings: Settings,
) -> None:
    seed_demo(settings, N_MEMBERS)

    report = pipeline.run_cycle(settings, NOW)

    assert report.members == N_MEMBERS
    assert report.profiled == N_MEMBERS
    assert report.segmentation is not None and report.segmentation.n_segments >= 2
    assert report.recommendations > 0
    assert report.delivery.sent == N_MEMBERS
    assert len(_sent_eml(settings)) == N_MEMBERS
    assert (settings.resolved_outbox_dir / "index.html").exists()
    assert all(steps == ["send_welcome"] for steps in _messages_per_member(settings).values())

    again = pipeline.run_cycle(settings, NOW + dt.timedelta(hours=1))

    assert again.texts_embedded == 0  # every text came from the embedding cache
    assert again.delivery.sent == 0
    assert len(_sent_eml(settings)) == N_MEMBERS


def test_the_follow_up_goes_out_after_the_wait_with_new_items(settings: Settings) -> None:
    seed_demo(settings, N_MEMBERS)
    pipeline.run_cycle(settings, NOW)

    early = pipeline.run_cycle(settings, NOW + dt.timedelta(days=2))
    later = pipeline.run_cycle(settings, NOW + dt.timedelta(days=3, minutes=1))

    assert early.delivery.sent == 0
    assert later.delivery.sent == N_MEMBERS
    steps = _messages_per_member(settings)
    assert all(sorted(s) == ["send_followup", "send_welcome"] for s in steps.values())
    with session_scope(pipeline.engine_for(settings)) as session:
        items: dict[int, list[set[str]]] = {}
        for message in session.scalars(select(Message)):
            keys = {item["key"] for item in message.context["items"]}
            items.setdefault(message.member_id, []).append(keys)
    assert all(not (first & second) for first, second in items.values())


def test_member_ids_are_every_member_in_order(settings: Settings) -> None:
    seed_demo(settings, 12)
    ids = pipeline.member_ids(settings)
    assert ids == sorted(ids)
    assert len(ids) == pipeline.count_members(settings) == 12


def test_an_import_refuses_bad_rows_into_a_rejects_file_and_keeps_the_rest(
    settings: Settings, tmp_path: Path
) -> None:
    members = tmp_path / "members.csv"
    members.write_text(
        "external_id,email,first_name,language,joined_at\n"
        "m-1,ada@example.org,Ada,en,2026-01-05T10:00:00+00:00\n"
        "m-2,not-an-email,Bob,en,2026-01-05T10:00:00+00:00\n",
        encoding="utf-8",
    )

    summary = pipeline.import_file(settings, "members", members)

    assert (summary.stored, summary.refused) == (1, 1)
    assert summary.rejects_path == settings.data_dir / "rejects" / "members.csv.rejects.csv"
    assert "not-an-email" in summary.rejects_path.read_text(encoding="utf-8")
    with session_scope(pipeline.engine_for(settings)) as session:
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
        pipeline.check_workspace(settings)

    problem = raised.value.problems[0]
    assert Path(problem.path).name == "welcome.yaml"
    assert problem.line is not None
    assert "duraton" in str(raised.value)


def test_resolve_now_reads_a_naive_time_as_utc() -> None:
    naive = dt.datetime(2030, 1, 1, 9, 0)
    assert pipeline.resolve_now(naive) == naive.replace(tzinfo=dt.UTC)
    assert pipeline.resolve_now(NOW) is NOW
    assert pipeline.resolve_now(None).tzinfo is not None


def test_the_demo_workspace_journeys_run_for_days_within_the_budget(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        workspace=CONTENT,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
    )
    seed_demo(settings, 60)
    rules = load_sending_rules(settings.sending_rules_path)
    assert rules.budget is not None

    reports = [pipeline.run_cycle(settings, NOW + dt.timedelta(hours=6 * n)) for n in range(9)]

    assert sum(report.delivery.failed for report in reports) == 0
    assert sum(report.delivery.sent for report in reports) > 60
    with session_scope(pipeline.engine_for(settings)) as session:
        rows = session.execute(
            select(Message.member_id, Message.journey_key, Message.created_at)
        ).all()
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
