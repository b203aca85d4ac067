"""A small demo community, profiled and segmented, on each test database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture import pipeline
from nurture.settings import Settings
from nurture.storage import Answer, Member, Segment, SegmentMembership, session_scope
from tests.pipeline_helpers import CONTENT, NOW, seed_demo

N_MEMBERS = 60


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # The demo workspace without its rule segments: these tests add the rule segments they need.
    workspace = tmp_path / "workspace"
    shutil.copytree(CONTENT, workspace, ignore=shutil.ignore_patterns("segments.yaml"))
    return Settings(
        workspace=workspace,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
    )


@pytest.fixture
def community(settings: Settings) -> Settings:
    """The settings of a database holding a demo community after one nightly run."""
    seed_demo(settings, N_MEMBERS)
    pipeline.run_nightly(settings, NOW)
    return settings


def member_emails(settings: Settings) -> list[str]:
    with session_scope(pipeline.engine_for(settings)) as session:
        return list(session.scalars(select(Member.email)))


def add_founders_rule_segment(settings: Settings) -> list[int]:
    """A rule segment of the founders, in the latest run beside the clusters; their ids."""
    with session_scope(pipeline.engine_for(settings)) as session:
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
