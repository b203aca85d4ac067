"""The declared stages: the two lists, pending imports, and how chunk summaries combine."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nurture.delivery import DeliverySummary
from nurture.orchestration import add_up, chunk_batches, combine_chunks, plain, run_stage
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.stages import (
    DELIVER,
    NIGHTLY,
    STAGE_LISTS,
    Stage,
    experiment_results,
    match_chunk,
    members_to_match_ids,
    members_to_profile_ids,
    move_imported,
    pending_imports,
    profile_chunk,
)
from tests.pipeline_helpers import CONTENT, NOW, welcome_only_workspace

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_each_run_declares_its_stages_once_in_order() -> None:
    assert NIGHTLY.names == [
        "imports",
        "content",
        "profile",
        "segment",
        "match",
        "best_hours",
        "segment_table",
        "experiment_results",
        "match_coverage",
    ]
    assert DELIVER.names == [
        "recover",
        "journeys",
        "send",
        "outbox_index",
        "journey_funnel",
        "delivery_report",
    ]
    assert dict(STAGE_LISTS) == {"nightly": NIGHTLY, "deliver": DELIVER}
    fanned = {stage.name: stage.over.name for stage in [*NIGHTLY, *DELIVER] if stage.over}
    assert fanned == {
        "imports": "import files",
        "profile": "members to profile",
        "match": "members to match",
        "send": "messages",
    }
    assert NIGHTLY.stage("profile").run is profile_chunk
    assert NIGHTLY.stage("profile").over.list_items is members_to_profile_ids  # type: ignore[union-attr]
    assert NIGHTLY.stage("match").over.list_items is members_to_match_ids  # type: ignore[union-attr]
    with pytest.raises(KeyError, match="no stage 'send'"):
        NIGHTLY.stage("send")


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
    total = add_up(
        [
            {"run_id": 7, "sent": 2, "lifecycle": {"new": 1}, "hash": "x", "flag": True},
            {"run_id": 7, "sent": 3, "lifecycle": {"new": 2, "active": 1}, "hash": "x"},
            {},
        ],
        keep=("run_id",),
    )

    assert total == {
        "run_id": 7,
        "sent": 5,
        "lifecycle": {"new": 3, "active": 1},
        "hash": "x",
        "flag": True,
    }


def test_a_fanned_out_stage_sums_its_chunks_and_says_how_many() -> None:
    match = NIGHTLY.stage("match")
    chunks = [
        {"run_id": 4, "members": 2, "recommendations": 6, "members_without_items": 0},
        {"run_id": 4, "members": 1, "recommendations": 3, "members_without_items": 1},
    ]

    total = combine_chunks(match, {"run_id": 4}, [1, 2, 3], chunks)

    assert total == {
        "run_id": 4,
        "members": 3,
        "recommendations": 9,
        "members_without_items": 1,
        "listed": 3,
        "chunks": 2,
    }
    nothing = combine_chunks(DELIVER.stage("send"), {}, [], [])
    assert nothing == {**plain(DeliverySummary()), "listed": 0, "chunks": 0}
    rows = combine_chunks(NIGHTLY.stage("imports"), {}, ["a", "b"], [[{"file": "a"}], []])
    assert rows == [{"file": "a"}]


def test_ids_go_in_chunks_of_the_chunk_size_and_files_one_at_a_time() -> None:
    settings = Settings(chunk_size=2)

    assert chunk_batches(NIGHTLY.stage("profile"), [1, 2, 3, 4, 5], settings) == [
        [1, 2],
        [3, 4],
        [5],
    ]
    assert chunk_batches(NIGHTLY.stage("imports"), ["a.csv", "b.csv"], settings) == [
        ["a.csv"],
        ["b.csv"],
    ]


class _Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class _Summary:
    count: np.int64
    colour: _Colour
    at: dt.datetime
    where: Path
    keys: tuple[str, ...]


def test_summaries_become_plain_data() -> None:
    summary = _Summary(np.int64(3), _Colour.RED, NOW, Path("/x/y"), ("a", "b"))

    assert plain(summary) == {
        "count": 3,
        "colour": "red",
        "at": "2026-11-02T09:00:00+00:00",
        "where": "/x/y",
        "keys": ["a", "b"],
    }
    assert type(plain(summary)["count"]) is int


def test_a_stage_describes_what_it_did_even_with_a_field_missing() -> None:
    stage = Stage("send", match_chunk, says="delivery: {sent} sent, {failed} failed")

    assert stage.describe({"sent": 3}) == "delivery: 3 sent, ? failed"
    assert NIGHTLY.stage("segment_table").describe([{}, {}]) == "2 segment cards"


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        workspace=welcome_only_workspace(tmp_path / "workspace"),
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
    )
    with Runtime(settings) as runtime:
        yield runtime


def test_the_imports_stage_imports_waiting_files_once_and_sets_bad_ones_aside(
    runtime: Runtime,
) -> None:
    inbox = runtime.settings.data_dir / "imports"
    inbox.mkdir(parents=True)
    shutil.copy(EXAMPLES / "members.csv", inbox / "members.csv")
    shutil.copy(EXAMPLES / "bad" / "members-no-email-column.csv", inbox / "members-broken.csv")

    rows = run_stage(runtime, NIGHTLY.stage("imports"), NOW)

    assert [(row["file"], row["outcome"]) for row in rows] == [
        ("members-broken.csv", "failed"),
        ("members.csv", "done"),
    ]
    assert rows[1]["stored"] > 0 and "email" in rows[0]["error"]
    assert sorted(path.name for path in inbox.iterdir()) == ["done", "failed"]
    assert run_stage(runtime, NIGHTLY.stage("imports"), NOW) == []


def test_journeys_with_a_holdout_or_a_split_get_their_results(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        workspace=CONTENT,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
    )
    with Runtime(settings) as runtime:
        tested = {journey.id for journey in runtime.workspace.journeys if journey.holdout}
        found = experiment_results(runtime, NOW)
    assert tested and [result["journey"] for result in found] == sorted(tested)
    assert NIGHTLY.stage("experiment_results").describe(found) == (
        f"{len(found)} journeys with a holdout or a split compared"
    )


def test_an_import_leaves_postgresql_with_the_statistics_of_what_it_stored(
    runtime: Runtime,
) -> None:
    from nurture.stages import import_file

    summary = import_file(runtime, "members", EXAMPLES / "members.csv")
    assert summary.stored > 0
    if runtime.engine.dialect.name != "postgresql":
        return  # SQLite's planner needs no statistics here: nothing to check
    # An unanalysed table says -1 (never counted); ANALYZE counts the rows just stored.
    assert _rows_counted_by_statistics(runtime, "members") == summary.stored


def _rows_counted_by_statistics(runtime: Runtime, table: str) -> float:
    """How many rows PostgreSQL's statistics say ``table`` holds (-1: never counted)."""
    from sqlalchemy import text

    with runtime.engine.connect() as connection:
        return float(
            connection.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table)"),
                {"table": table},
            ).scalar_one()
        )


def test_a_match_run_starts_on_the_statistics_of_the_embedding_cache_just_filled(
    runtime: Runtime,
) -> None:
    import time

    from sqlalchemy import text

    from nurture.embedding import embed_texts_cached
    from nurture.stages import start_matching
    from nurture.storage.database import rows_changed_since_analyze

    texts = [f"what member {index} expects of the community" for index in range(120)]
    with runtime.session() as session:  # as the profile stage stores its answers' vectors
        embed_texts_cached(session, runtime.embedder, texts)
    if runtime.engine.dialect.name == "postgresql":
        with runtime.session() as session:  # the server counts the committed rows
            session.execute(text("SELECT pg_stat_force_next_flush()"))
        deadline = time.monotonic() + 5
        while True:
            with runtime.session() as session:
                changed, _ = rows_changed_since_analyze(session, "embedding_cache")
            if changed is None or changed >= len(texts):
                break
            assert time.monotonic() < deadline, "the server never counted the rows inserted"
            time.sleep(0.05)
    start_matching(runtime, NOW)
    if runtime.engine.dialect.name != "postgresql":
        return  # SQLite's planner needs no statistics here: nothing to check
    # Each chunk's lookup by text hash is planned on the rows stored, not on an empty table.
    assert _rows_counted_by_statistics(runtime, "embedding_cache") == len(texts)
