"""The scale benchmark on a tiny community: a smoke test that every stage runs and is reported.

It asserts nothing about speed (``make bench-scale`` measures it).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, inspect

from benchmarks.scale import (
    NOW,
    STAND_IN_MODEL,
    ScaleReport,
    bare_top_k,
    build_workspace,
    main,
    render_scale_report,
    render_scale_section,
    run_scale_benchmark,
)
from benchmarks.sendgrid_delivery import mock_sendgrid
from nurture import stages
from nurture.runtime import Runtime, settings_from
from nurture.storage.database import open_session
from nurture.storage.models import ActivityEvent, LifecycleStage, Member, MemberProfile


def test_the_library_grows_to_the_items_asked(tmp_path: Path) -> None:
    workspace = build_workspace(tmp_path / "workspace", 120)
    files = sorted((workspace / "library").glob("*.md"))
    assert len(files) == 120
    clone = next(path for path in files if path.stem.endswith("-c1"))
    assert "#1" in clone.read_text(encoding="utf-8")


def test_clones_are_related_items_not_copies(tmp_path: Path) -> None:
    from nurture.workspace import load_content_library

    workspace = build_workspace(tmp_path / "workspace", 200)
    items = {item.key: item for item in load_content_library(workspace / "library")}
    original = items["build-a-customer-academy"]
    clones = [items[f"build-a-customer-academy-c{n}"] for n in (1, 2, 3)]
    bodies = {item.body for item in [original, *clones]}
    assert len(bodies) == 4  # no two alike
    for clone in clones:
        assert clone.language == original.language
        assert set(original.tags) <= set(clone.tags) and len(clone.tags) > len(original.tags)
        assert clone.body.split("\n\n")[0] == original.body.split("\n\n")[0]


def test_every_stage_runs_and_the_warm_nightly_redoes_the_changed_members(
    tmp_path: Path,
) -> None:
    result = run_scale_benchmark(tmp_path, members=200, items=80)
    names = [figure.name for figure in result.figures]
    assert names == [
        "import members",
        "import answers",
        "import activity",
        "content",
        "profile",
        "segment",
        "match",
        "best hours",
        "journeys",
        "deliver (outbox)",
    ]
    assert all(f.floor is not None for f in result.figures if f.name != "best hours")
    assert all(figure.stage.peak_bytes > 0 for figure in result.figures)
    warm = {figure.name: figure for figure in result.warm}
    assert result.changed_members == 2
    assert warm["profile"].rows == result.changed_members
    assert warm["segment"].note.startswith("assigned")
    assert warm["match"].rows >= result.changed_members
    assert warm["best hours"].rows == 200
    report = "\n".join(render_scale_section(result))
    assert "Warm nightly" in report and "Peak RSS" in report


def test_until_profile_runs_the_imports_and_the_profile_stage_only(tmp_path: Path) -> None:
    result = run_scale_benchmark(tmp_path, members=120, items=60, until="profile")
    assert [figure.name for figure in result.figures] == [
        "import members",
        "import answers",
        "import activity",
        "profile",
    ]
    profile = result.figures[-1]
    assert profile.rows == 120 and profile.floor is not None
    assert not result.warm
    assert "Stopped after the profile stage" in "\n".join(render_scale_section(result))


def test_delivery_goes_through_sendgrid_to_the_mock_then_the_same_messages_to_the_outbox(
    tmp_path: Path,
) -> None:
    with mock_sendgrid(latency_ms=1) as url:
        result = run_scale_benchmark(
            tmp_path, members=300, items=60, sendgrid_url=url, warm=False, floor_emails=2
        )
    figures = {figure.name: figure for figure in result.figures}
    assert [figure.name for figure in result.figures][-2:] == [
        "deliver (sendgrid)",
        "deliver (outbox)",
    ]
    sendgrid, outbox = figures["deliver (sendgrid)"], figures["deliver (outbox)"]
    assert sendgrid.rows > 0 and sendgrid.rows == outbox.rows  # the mock saw each exactly once
    assert sendgrid.floor is not None and sendgrid.floor.seconds > 0
    assert "scaled to the" in sendgrid.floor_label
    assert len(list((tmp_path / "data" / "outbox").rglob("*.eml"))) == outbox.rows


def test_delivery_in_worker_processes_sends_each_message_once(tmp_path: Path) -> None:
    """With ``delivery_processes``, the chunks go to worker processes, as the deliver flow's."""
    with mock_sendgrid(latency_ms=1) as url:
        result = run_scale_benchmark(
            tmp_path,
            members=300,
            items=60,
            sendgrid_url=url,
            warm=False,
            floor_emails=2,
            chunk_size=3,
            delivery_processes=2,
        )
    figures = {figure.name: figure for figure in result.figures}
    sendgrid, outbox = figures["deliver (sendgrid)"], figures["deliver (outbox)"]
    assert result.delivery_processes == 2
    assert sendgrid.rows > 6 and sendgrid.rows == outbox.rows  # the mock saw each exactly once
    assert "2 processes, concurrency" in sendgrid.note
    report = render_scale_report(ScaleReport(300, "stand-in", results=[result]))
    assert "in each of 2 worker processes" in report


def test_delivery_may_be_capped_and_the_report_says_so(tmp_path: Path) -> None:
    result = run_scale_benchmark(tmp_path, members=300, items=60, warm=False, deliver_at_most=1)
    outbox = next(figure for figure in result.figures if figure.name == "deliver (outbox)")
    assert result.due_emails > 1
    assert outbox.rows == 1
    assert len(list((tmp_path / "data" / "outbox").rglob("*.eml"))) == 1
    assert "Delivery capped" in "\n".join(render_scale_section(result))


def test_the_command_runs_each_database_and_writes_the_headline_table(tmp_path: Path) -> None:
    output = tmp_path / "scale.md"
    postgres = os.environ.get("NURTURE_TEST_POSTGRES_URL")
    code = main(
        [
            "--members",
            "150",
            "--items",
            "60",
            "--embedder",
            "stand-in",
            "--no-warm",
            "--postgres-url",
            postgres or "postgresql://postgres@127.0.0.1:1/nowhere",
            "--output",
            str(output),
        ]
    )

    report = output.read_text(encoding="utf-8")
    assert code == 0
    headline = report[report.index("## Headline figures") : report.index("## What is measured")]
    assert "| Figure | SQLite | PostgreSQL |" in headline if postgres else "| SQLite |" in headline
    assert "deliver (sendgrid)" in headline and "cold nightly" in headline
    assert "**stand-in**" in headline and "no encoder check" in headline
    if postgres:
        assert "## PostgreSQL" in report
    else:
        assert "**PostgreSQL not measured**" in headline
        assert "cannot reach the database server" in headline


def test_a_floor_hands_the_memory_it_freed_back_to_the_system() -> None:
    from benchmarks.scale import _floor, _rss_bytes

    kept: list[bytes] = []

    @_floor
    def fragmenting_floor() -> int:
        # Rows read before timing, with a few long-lived objects between them: freed, the
        # rows' pages stay in the process until the allocator is asked to return them.
        rows = []
        for index in range(100_000):
            rows.append(bytes(2000) + bytes([index % 256]))
            if index % 50 == 0:
                kept.append(bytes(600) + bytes([index % 256]))
        grown = _rss_bytes()
        del rows
        return grown

    before = _rss_bytes()
    grown = fragmenting_floor()

    assert grown - before > 150 * 2**20
    assert _rss_bytes() - before < 50 * 2**20


def test_the_match_floor_multiplies_a_row_for_every_matched_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member without an interest still has a row in the match's product: in the floor's too."""
    workspace = build_workspace(tmp_path / "workspace", 30)
    runtime = Runtime(
        settings_from(
            {
                "workspace": workspace,
                "data_dir": tmp_path / "data",
                "database_url": f"sqlite:///{tmp_path / 'floor.db'}",
                "embedding_model": STAND_IN_MODEL,
            }
        )
    )
    stages.sync_workspace(runtime, NOW)
    with runtime.session() as session:
        members = [Member(email=f"m{n}@example.org", joined_at=NOW) for n in range(3)]
        session.add_all(members)
        session.flush()
        dim = runtime.embedder.dim
        for member, interest in zip(members, [np.ones(dim, np.float32), None], strict=False):
            session.add(
                MemberProfile(
                    member_id=member.id,
                    features=np.zeros(4, np.float32),
                    interest=interest,
                    lifecycle_stage=LifecycleStage.NEW,
                    feature_names_hash="x",
                )
            )
        session.commit()
        ids = [member.id for member in members]
    rows: list[int] = []
    partition = np.argpartition

    def counted(scores: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        rows.append(scores.shape[0])
        return partition(scores, *args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(np, "argpartition", counted)
    bare_top_k(runtime.engine, runtime.embedder, 5, 2, ids)
    runtime.close()
    assert rows == [2, 1]


def test_an_insert_floor_writes_into_a_copy_with_the_tables_keys_and_indexes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The floor stores the rows as the table would: its primary key, unique keys and indexes."""
    from benchmarks import scale

    with open_session(engine) as session:
        member = Member(email="m@example.org", joined_at=NOW)
        session.add(member)
        session.flush()
        session.add_all(
            ActivityEvent(
                member_id=member.id, type="post", occurred_at=NOW, idempotency_key=f"k{n}"
            )
            for n in range(3)
        )
        session.commit()
    seen: dict[str, object] = {}
    timed_block = scale.measured

    @contextmanager
    def inspecting() -> Iterator[scale.Timed]:
        schema = inspect(engine)
        seen["indexes"] = {
            (tuple(index["column_names"]), bool(index["unique"]))
            for index in schema.get_indexes("floor_activity_events")
        }
        seen["primary key"] = schema.get_pk_constraint("floor_activity_events")[
            "constrained_columns"
        ]
        seen["unique"] = {
            tuple(unique["column_names"])
            for unique in schema.get_unique_constraints("floor_activity_events")
        }
        with timed_block() as timed:
            yield timed

    monkeypatch.setattr(scale, "measured", inspecting)
    timed = scale.bare_insert(engine, ["activity_events"], 2)

    schema = inspect(engine)
    assert seen["indexes"] == {
        (tuple(index["column_names"]), bool(index["unique"]))
        for index in schema.get_indexes("activity_events")
    }
    assert seen["indexes"]
    assert seen["primary key"] == schema.get_pk_constraint("activity_events")["constrained_columns"]
    assert seen["unique"] == {
        tuple(unique["column_names"]) for unique in schema.get_unique_constraints("activity_events")
    }
    assert "floor_activity_events" not in schema.get_table_names()
    assert timed.seconds > 0
