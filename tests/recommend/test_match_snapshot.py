"""The match stage's stored recommendations on a seeded community, pinned.

The match stage is rewritten for speed now and then (columns left out of the passes, bulk
reads, compact answers): none of that may change a pick, its order, its reason or its score.
The digest below was taken from the code before such a rewrite; a change meant to alter the
ranking updates it, and says so. Scores are compared to 4 decimals: a new release of numpy or
scikit-learn moved the 6th decimal once (the pin was taken again in a fresh environment, on
unchanged code).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture import stages
from nurture.chunks import chunked
from nurture.recommend.run_state import forget_run_states
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage.models import ContentItem, Member, Recommendation
from tests.pipeline_helpers import CONTENT, NOW, seed_demo

MEMBERS = 300
CHUNK = 70  # chunks of unequal sizes, the last one short
DIGEST = "cf92516773d5ca6e"
"""The first 16 hex digits of the SHA-256 of the stored rows (see ``_stored_rows``)."""


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        workspace=CONTENT,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
    )
    forget_run_states()
    with Runtime(settings) as runtime:
        yield runtime
    forget_run_states()


def _stored_rows(runtime: Runtime) -> list[tuple[str, str, int, str, float]]:
    """Every recommendation as (member, item key, rank, reason, score to 4 decimals)."""
    query = (
        select(
            Member.email,
            ContentItem.key,
            Recommendation.rank,
            Recommendation.reason,
            Recommendation.score,
        )
        .join(Member, Member.id == Recommendation.member_id)
        .join(ContentItem, ContentItem.id == Recommendation.content_item_id)
        .order_by(Member.email, Recommendation.rank)
    )
    with runtime.session() as session:
        return [
            (email, key, rank, reason, round(score, 4))
            for email, key, rank, reason, score in session.execute(query).tuples()
        ]


def test_the_match_stage_stores_the_same_recommendations_as_before(runtime: Runtime) -> None:
    seed_demo(runtime, MEMBERS)
    stages.sync_workspace(runtime, NOW)
    for chunk in chunked(stages.members_to_profile_ids(runtime, NOW), CHUNK):
        stages.profile_chunk(runtime, chunk, NOW)
    stages.segment(runtime, NOW)
    started = stages.start_matching(runtime, NOW)
    for chunk in chunked(stages.members_to_match_ids(runtime, NOW), CHUNK):
        stages.match_chunk(runtime, chunk, NOW, **started)

    rows = _stored_rows(runtime)

    assert len({row[0] for row in rows}) > MEMBERS // 2
    digest = hashlib.sha256(repr(rows).encode("utf-8")).hexdigest()[:16]
    assert digest == DIGEST
