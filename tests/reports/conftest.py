"""A small demo community, profiled and segmented, on each test database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.orchestration import run_cycle
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import Answer, Member, Segment, SegmentMembership
from tests.pipeline_helpers import CONTENT, NOW, seed_demo

N_MEMBERS = 60


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    # The demo workspace without its rule segments: these tests add the rule segments they need.
    workspace = tmp_path / "workspace"
    shutil.copytree(CONTENT, workspace, ignore=shutil.ignore_patterns("segments.yaml"))
    settings = Settings(
        workspace=workspace,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
    )
    with Runtime(settings) as runtime:
        yield runtime


@pytest.fixture
def community(runtime: Runtime) -> Runtime:
    """The runtime of a database holding a demo community after one nightly run."""
    seed_demo(runtime, N_MEMBERS)
    run_cycle(runtime, NOW, lists=("nightly",))
    return runtime


def member_emails(runtime: Runtime) -> list[str]:
    with runtime.session() as session:
        return list(session.scalars(select(Member.email)))


def add_founders_rule_segment(runtime: Runtime) -> list[int]:
    """A rule segment of the founders, in the latest run beside the clusters; their ids."""
    with runtime.session() as session:
        cluster = session.scalars(select(Segment).where(Segment.kind == "cluster")).first()
        assert cluster is not None
        founders = [
            member_id
            for member_id, value in session.execute(
                select(Answer.member_id, Answer.value).where(Answer.question_key == "role")
            ).tuples()
            if value == "founder"
        ]
        assert founders
        rule = Segment(
            key="founders",
            label="Founders",
            kind="rule",
            description='role == "founder"',
            size=len(founders),
            last_run_id=cluster.last_run_id,
        )
        session.add(rule)
        session.flush()
        session.add_all(
            SegmentMembership(run_id=cluster.last_run_id, member_id=member_id, segment_id=rule.id)
            for member_id in founders
        )
    return founders
