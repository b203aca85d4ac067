"""The incremental nightly: only members changed since the last complete run are redone."""

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

import nurture.segmentation.rules as rules_module
from nurture.embedding import Embedder
from nurture.orchestration import run_stage_list
from nurture.recommend import last_watermark, recommend_for_members, run_state
from nurture.runtime import Runtime
from nurture.segmentation import evaluate_rule_segments
from nurture.segmentation.assignments import _load_cluster_assignments, plan_cluster_assignments
from nurture.settings import Settings
from nurture.stages import (
    NIGHTLY,
    import_file,
    member_ids,
    members_to_match_ids,
    members_to_profile_ids,
)
from nurture.storage import (
    ActivityEvent,
    Answer,
    AssignmentState,
    MatchRun,
    Member,
    MemberProfile,
    Recommendation,
    Segment,
    SegmentAssignment,
    SegmentationRun,
    SegmentKind,
    SegmentMembership,
)
from tests.pipeline_helpers import NOW, recommendation_rows, seed_demo, welcome_only_workspace

N_MEMBERS = 60


def _runtime(database_url: str, tmp_path: Path, **overrides: object) -> Runtime:
    settings = Settings(
        workspace=welcome_only_workspace(tmp_path / "workspace"),
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
        chunk_size=16,
        **overrides,  # type: ignore[arg-type]
    )
    return Runtime(settings)


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    with _runtime(database_url, tmp_path) as runtime:
        seed_demo(runtime, N_MEMBERS)
        yield runtime


def _profiled_at(runtime: Runtime) -> dict[int, dt.datetime]:
    with runtime.session() as session:
        return dict(
            session.execute(select(MemberProfile.member_id, MemberProfile.computed_at))
            .tuples()
            .all()
        )


def _recommended_in(runtime: Runtime) -> dict[int, set[int | None]]:
    with runtime.session() as session:
        rows = session.execute(select(Recommendation.member_id, Recommendation.run_id)).all()
    runs: dict[int, set[int | None]] = {}
    for member_id, run_id in rows:
        runs.setdefault(member_id, set()).add(run_id)
    return runs


def _new_activity(runtime: Runtime, tmp_path: Path, external_ids: list[str]) -> None:
    path = tmp_path / "activity-new.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for index, external_id in enumerate(external_ids):
            record = {
                "member": external_id,
                "type": "post",
                "occurred_at": (NOW + dt.timedelta(hours=1)).isoformat(),
                "idempotency_key": f"new-{index}",
            }
            out.write(json.dumps(record) + "\n")
    assert import_file(runtime, "activity", path).stored == len(external_ids)


def _external_ids(runtime: Runtime, ids: list[int]) -> list[str]:
    with runtime.session() as session:
        found = session.execute(select(Member.id, Member.external_id).where(Member.id.in_(ids)))
        by_id = dict(found.tuples().all())
    return [str(by_id[member_id]) for member_id in ids]


def test_a_first_nightly_does_everyone_and_leaves_a_complete_watermark(runtime: Runtime) -> None:
    everyone = member_ids(runtime, NOW)
    assert members_to_profile_ids(runtime, NOW) == everyone
    summary = run_stage_list(runtime, NIGHTLY, NOW)
    assert summary["profile"]["profiled"] == N_MEMBERS
    assert summary["match"]["members"] == N_MEMBERS
    with runtime.session() as session:
        watermark = last_watermark(session)
    assert watermark is not None and watermark.complete
    assert watermark.now == NOW


def test_a_warm_nightly_skips_unchanged_members_and_redoes_changed_ones(
    runtime: Runtime, tmp_path: Path
) -> None:
    run_stage_list(runtime, NIGHTLY, NOW)
    before_profiles = _profiled_at(runtime)
    with runtime.session() as session:
        clusterings = session.scalar(select(func.count()).select_from(SegmentationRun))
    everyone = member_ids(runtime, NOW)
    changed = everyone[::20]  # 3 of 60: within segment_refit_share's 5%
    _new_activity(runtime, tmp_path, _external_ids(runtime, changed))
    later = NOW + dt.timedelta(days=1)
    assert members_to_profile_ids(runtime, later) == changed

    summary = run_stage_list(runtime, NIGHTLY, later)

    assert summary["profile"]["profiled"] == len(changed)
    after_profiles = _profiled_at(runtime)
    for member_id in everyone:
        expected = later if member_id in changed else before_profiles[member_id]
        assert after_profiles[member_id] == expected, member_id
    # No clustering again: the changed members were placed at their nearest segment.
    assert summary["segment"]["algorithm"] == "assigned"
    with runtime.session() as session:
        assert session.scalar(select(func.count()).select_from(SegmentationRun)) == clusterings
        latest_run = session.scalar(select(func.max(MatchRun.id)))
    runs = _recommended_in(runtime)
    matched = {member_id for member_id, run_ids in runs.items() if latest_run in run_ids}
    assert set(changed) <= matched
    assert summary["match"]["members"] < N_MEMBERS / 2
    unchanged_with_items = [m for m in everyone if m not in matched and m in runs]
    assert unchanged_with_items, "unchanged members keep their earlier recommendations"


def test_a_nightly_with_nothing_changed_redoes_nobody(runtime: Runtime) -> None:
    run_stage_list(runtime, NIGHTLY, NOW)
    later = NOW + dt.timedelta(days=1)
    summary = run_stage_list(runtime, NIGHTLY, later)
    assert summary["profile"]["profiled"] == 0
    assert summary["match"]["members"] == 0
    # The run still leaves its watermark: the next one starts from here.
    with runtime.session() as session:
        watermark = last_watermark(session)
    assert watermark is not None and watermark.now == later


def test_an_edited_answer_an_old_or_missing_profile_are_redone(runtime: Runtime) -> None:
    run_stage_list(runtime, NIGHTLY, NOW)
    everyone = member_ids(runtime, NOW)
    with runtime.session() as session:
        # an answer changed in place (same row id) after the last run, by the wall clock
        answer = session.scalars(select(Answer).where(Answer.member_id == everyone[1])).first()
        assert answer is not None
        session.execute(
            update(Answer)
            .where(Answer.id == answer.id)
            .values(answered_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
        )
        # a profile older than refresh_after_days (7 by default)
        session.execute(
            update(MemberProfile)
            .where(MemberProfile.member_id == everyone[2])
            .values(computed_at=NOW - dt.timedelta(days=30))
        )
        # a member without a profile, and a profile of another feature layout
        session.execute(delete(MemberProfile).where(MemberProfile.member_id == everyone[3]))
        session.execute(
            update(MemberProfile)
            .where(MemberProfile.member_id == everyone[4])
            .values(feature_names_hash="another layout")
        )
    assert members_to_profile_ids(runtime, NOW + dt.timedelta(days=1)) == everyone[1:5]


def test_a_failed_match_leaves_the_watermark_of_the_run_before(runtime: Runtime) -> None:
    run_stage_list(runtime, NIGHTLY, NOW)
    with runtime.session() as session:
        first = last_watermark(session)
    # a later match run that started (watermark taken) but never completed
    later = NOW + dt.timedelta(days=1)
    NIGHTLY.stage("match").start(runtime, later)  # type: ignore[misc]
    with runtime.session() as session:
        assert last_watermark(session) == first


def test_changed_ranking_settings_rematch_everyone(
    database_url: str, tmp_path: Path, runtime: Runtime
) -> None:
    run_stage_list(runtime, NIGHTLY, NOW)
    with _runtime(database_url, tmp_path / "other", recommendations_per_member=3) as other:
        assert members_to_profile_ids(other, NOW) == []
        assert members_to_match_ids(other, NOW) == member_ids(other, NOW)


def test_the_setting_off_redoes_everyone(
    database_url: str, tmp_path: Path, runtime: Runtime
) -> None:
    run_stage_list(runtime, NIGHTLY, NOW)
    with _runtime(database_url, tmp_path / "off", incremental_nightly=False) as off:
        everyone = member_ids(off, NOW)
        assert members_to_profile_ids(off, NOW) == everyone
        assert members_to_match_ids(off, NOW) == everyone


def _rule_members(runtime: Runtime) -> dict[str, set[int]]:
    """Each rule segment's members in the latest segmentation run, and its effective members."""
    with runtime.session() as session:
        run_id = session.scalar(select(func.max(SegmentationRun.id)))
        rows = session.execute(
            select(Segment.key, SegmentMembership.member_id)
            .join(Segment, Segment.id == SegmentMembership.segment_id)
            .where(SegmentMembership.run_id == run_id, Segment.kind == SegmentKind.RULE)
        ).all()
        effective = session.execute(
            select(Segment.key, SegmentAssignment.member_id)
            .join(Segment, Segment.id == SegmentAssignment.segment_id)
            .where(Segment.kind == SegmentKind.RULE)
        ).all()
    found: dict[str, set[int]] = {}
    for key, member_id in rows:
        found.setdefault(key, set()).add(member_id)
    for key, member_id in effective:
        found.setdefault(f"{key} (effective)", set()).add(member_id)
    return found


def _events(
    runtime: Runtime, tmp_path: Path, name: str, rows: list[tuple[str, str, dt.datetime]]
) -> None:
    path = tmp_path / f"activity-{name}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for index, (external_id, kind, occurred_at) in enumerate(rows):
            record = {
                "member": external_id,
                "type": kind,
                "occurred_at": occurred_at.isoformat(),
                "idempotency_key": f"{name}-{index}",
            }
            out.write(json.dumps(record) + "\n")
    assert import_file(runtime, "activity", path).stored == len(rows)


def test_a_warm_nightly_evaluates_the_rules_as_a_cold_one_would(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = NOW + dt.timedelta(days=1)
    with runtime.session() as session:
        recent = dict(
            session.execute(
                select(ActivityEvent.member_id, func.count())
                .where(
                    ActivityEvent.type == "event_attended",
                    ActivityEvent.occurred_at > NOW - dt.timedelta(days=91),
                )
                .group_by(ActivityEvent.member_id)
            )
            .tuples()
            .all()
        )
        # Members who want to run events and attended none in the last 91 days.
        organisers = sorted(
            member_id
            for member_id, value in session.execute(
                select(Answer.member_id, Answer.value).where(Answer.question_key == "goals")
            ).tuples()
            if "run_events" in (value or []) and not recent.get(member_id)
        )
    leaving, newcomer = _external_ids(runtime, organisers[:2])
    # Two events within 90 days at NOW, out of the window a day later: time alone moves them.
    edge = NOW - dt.timedelta(days=90) + dt.timedelta(hours=12)
    _events(
        runtime,
        tmp_path,
        "edge",
        [(leaving, "event_attended", edge)] * 1
        + [(leaving, "event_attended", edge + dt.timedelta(hours=1))],
    )
    run_stage_list(runtime, NIGHTLY, NOW)
    first = _rule_members(runtime)
    assert organisers[0] in first["event-regulars"]
    # New data for a few members: an organiser attends two events, others post.
    everyone = member_ids(runtime, NOW)
    _events(
        runtime,
        tmp_path,
        "new",
        [(newcomer, "event_attended", later - dt.timedelta(hours=h)) for h in (2, 3)]
        + [
            (external_id, "post", later - dt.timedelta(hours=1))
            for external_id in _external_ids(runtime, everyone[5:7])
        ],
    )
    read: list[int] = []
    contexts = rules_module.member_rule_contexts

    def spy(session: Session, ids: list[int], now: dt.datetime) -> dict[int, dict[str, object]]:
        read.extend(ids)
        return contexts(session, ids, now)

    monkeypatch.setattr(rules_module, "member_rule_contexts", spy)
    summary = run_stage_list(runtime, NIGHTLY, later)
    assert summary["segment"]["algorithm"] == "assigned"
    assert 0 < len(set(read)) < len(everyone) / 2, "only the changed members were read"
    warm = _rule_members(runtime)
    assert organisers[0] not in warm["event-regulars"]
    assert organisers[1] in warm["event-regulars"]
    # What evaluating every member at the same time gives.
    monkeypatch.setattr(rules_module, "member_rule_contexts", contexts)
    with runtime.session() as session:
        run_id = session.scalar(select(func.max(SegmentationRun.id)))
        evaluate_rule_segments(session, runtime.workspace.segment_rules, later, run_id=run_id)
    assert _rule_members(runtime) == warm


def test_a_warm_match_gives_the_changed_members_what_a_cold_one_would(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_stage_list(runtime, NIGHTLY, NOW)
    before = recommendation_rows(runtime)
    everyone = member_ids(runtime, NOW)
    changed = everyone[::20]
    _new_activity(runtime, tmp_path, _external_ids(runtime, changed))
    later = NOW + dt.timedelta(days=1)
    learned: list[dt.datetime] = []
    learn = run_state._learn

    def counted(session: Session, embedder: Embedder, now: dt.datetime) -> object:
        learned.append(now)
        return learn(session, embedder, now)

    monkeypatch.setattr(run_state, "_learn", counted)
    # The next nightly runs in another process: only what the last run stored on disk is left.
    assert list((runtime.settings.data_dir / "cache" / "match").glob("match-state-*.npz"))
    run_state.forget_run_states()
    summary = run_stage_list(runtime, NIGHTLY, later)
    # New posts are no engagement with an item: what the last run learned is reused.
    assert learned == []
    warm = recommendation_rows(runtime)
    with runtime.session() as session:
        latest_run = session.scalar(select(func.max(MatchRun.id)))
        matched = sorted(
            set(
                session.scalars(
                    select(Recommendation.member_id).where(Recommendation.run_id == latest_run)
                )
            )
        )
    assert set(changed) <= set(matched) and summary["match"]["members"] < N_MEMBERS / 2
    for member_id in everyone:
        if member_id not in matched:
            assert warm.get(member_id) == before.get(member_id), member_id
    # The same members ranked from scratch, nothing kept from earlier runs.
    run_state.forget_run_states()
    settings = runtime.settings
    with runtime.session() as session:
        recommend_for_members(
            session,
            runtime.embedder,
            matched,
            later,
            settings.recommendations_per_member,
            runtime.ranking_weights,
            kinds=settings.recommendation_kinds,
            newcomer_weights=runtime.newcomer_ranking_weights,
            choice_questions=[
                question.key
                for question in runtime.workspace.questionnaire.questions
                if question.kind == "single_choice"
            ],
        )
    assert learned == [later]
    cold = recommendation_rows(runtime)
    assert {m: cold.get(m) for m in matched} == {m: warm.get(m) for m in matched}


def test_a_warm_segment_stage_leaves_what_reading_everyone_would(
    runtime: Runtime, tmp_path: Path
) -> None:
    run_stage_list(runtime, NIGHTLY, NOW)
    everyone = member_ids(runtime, NOW)
    changed = everyone[::20]
    _new_activity(runtime, tmp_path, _external_ids(runtime, changed))
    unassigned, waiting = everyone[7], everyone[11]
    with runtime.session() as session:
        clusters = list(
            session.scalars(select(Segment.id).where(Segment.kind == SegmentKind.CLUSTER))
        )
        placed_in = session.scalar(
            select(SegmentAssignment.segment_id).where(
                SegmentAssignment.member_id == waiting, SegmentAssignment.segment_id.in_(clusters)
            )
        )
        # A member who lost their effective cluster segment, and one waiting to move elsewhere.
        session.execute(
            delete(SegmentAssignment).where(
                SegmentAssignment.member_id == unassigned,
                SegmentAssignment.segment_id.in_(clusters),
            )
        )
        session.add(
            SegmentAssignment(
                member_id=waiting,
                segment_id=next(s for s in clusters if s != placed_in),
                state=AssignmentState.PENDING,
                since=NOW,
                updated_at=NOW,
            )
        )
    later = NOW + dt.timedelta(days=1)

    summary = run_stage_list(runtime, NIGHTLY, later)

    assert summary["segment"]["algorithm"] == "assigned"
    move_after = dt.timedelta(days=runtime.settings.segment_move_after_days)
    with runtime.session() as session:
        run_id = session.scalar(select(func.max(SegmentationRun.id)))
        profiled = set(session.scalars(select(MemberProfile.member_id)))
        rows = session.execute(
            select(SegmentMembership.member_id, SegmentMembership.segment_id)
            .join(Segment, Segment.id == SegmentMembership.segment_id)
            .where(SegmentMembership.run_id == run_id, Segment.kind == SegmentKind.CLUSTER)
            .order_by(SegmentMembership.id)
        ).tuples()
        placement = {m: s for m, s in rows if m in profiled}  # each member's last row
        active = {
            segment.id: segment
            for segment in session.scalars(
                select(Segment).where(Segment.kind == SegmentKind.CLUSTER, Segment.active)
            )
        }
        # Every member's assignments brought up to date at once would change nothing.
        everyone_at_once = plan_cluster_assignments(
            _load_cluster_assignments(session),
            placement,
            later,
            move_after=move_after,
            active_segments=set(active),
        )
    assert summary["segment"]["n_members"] == len(placement) == N_MEMBERS
    sizes = {segment.key: segment.size for segment in active.values()}
    assert sizes == {
        segment.key: list(placement.values()).count(segment.id) for segment in active.values()
    }
    assert summary["segment"]["sizes"] == sizes
    assert (
        everyone_at_once.inserts,
        everyone_at_once.updates,
        everyone_at_once.deletes,
        everyone_at_once.departures,
    ) == ([], [], [], [])
