"""End to end through the Prefect flows: real embedding model, real database, local outbox."""

from __future__ import annotations

import csv
import datetime as dt
import email
from email import policy
from pathlib import Path

import pytest
from sklearn.metrics import adjusted_rand_score
from sqlalchemy import select

from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import ContentItem, Member, Message, MessageStatus
from nurture.storage.models import Segment, SegmentMembership
from tests.pipeline_helpers import NOW, seed_demo, welcome_only_workspace

pytestmark = [pytest.mark.e2e, pytest.mark.model]

N_MEMBERS = 300


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> Settings:
    # Flow tasks build their settings from the environment and their parameters, like in
    # production: the database URL is never a flow parameter.
    monkeypatch.setenv("NURTURE_DATABASE_URL", database_url)
    return Settings(
        workspace=welcome_only_workspace(tmp_path / "workspace"),
        data_dir=tmp_path / "data",
        database_url=database_url,
    )


def _run(settings: Settings, now: dt.datetime) -> dict:
    from flows.cycle import cycle

    return cycle(str(settings.workspace), str(settings.data_dir), now)


def test_the_flows_welcome_every_member_once_with_items_that_fit(settings: Settings) -> None:
    with Runtime(settings) as runtime:
        files = seed_demo(runtime, N_MEMBERS)

    result = _run(settings, NOW)

    assert result["nightly"]["profile"]["profiled"] == N_MEMBERS
    assert result["deliver"]["send"]["sent"] == N_MEMBERS
    with Runtime(settings) as runtime, runtime.session() as session:
        library = {item.key: item.language for item in session.scalars(select(ContentItem))}
        members = {member.id: member for member in session.scalars(select(Member))}
        messages = list(session.scalars(select(Message)))
        segment_of = dict(  # the clusters (rule segments sit beside them in the same run)
            session.execute(
                select(SegmentMembership.member_id, SegmentMembership.segment_id)
                .join(Segment, Segment.id == SegmentMembership.segment_id)
                .where(Segment.kind == "cluster")
            )
            .tuples()
            .all()
        )
    assert len(members) == N_MEMBERS
    assert sorted(m.member_id for m in messages) == sorted(members)  # one message each
    for message in messages:
        member = members[message.member_id]
        assert message.status == MessageStatus.SENT
        assert message.step_id == "send_welcome"
        items = message.context["items"]
        assert len(items) == 3
        for item in items:
            assert item["key"] in library
            assert library[item["key"]] == member.language
            assert item["reason"]

    # The .eml files are the emails members get: one per member, in their language.
    emls = list(settings.resolved_outbox_dir.glob("*.eml"))
    assert len(emls) == N_MEMBERS
    sample = email.message_from_bytes(emls[0].read_bytes(), policy=policy.default)
    assert sample.get_body(("plain",)) is not None and sample.get_body(("html",)) is not None
    assert sample["List-Unsubscribe"]

    # Segments recover the hidden personas far better than chance.
    with files.personas.open(encoding="utf-8") as handle:
        persona_of = {row["email"]: row["persona"] for row in csv.DictReader(handle)}
    emails = [members[member_id].email for member_id in sorted(segment_of)]
    score = adjusted_rand_score(
        [persona_of[address] for address in emails], [segment_of[i] for i in sorted(segment_of)]
    )
    assert score > 0.3, score

    again = _run(settings, NOW + dt.timedelta(hours=1))

    assert again["nightly"]["profile"]["texts_embedded"] == 0
    assert again["deliver"]["send"]["sent"] == 0
    assert len(list(settings.resolved_outbox_dir.glob("*.eml"))) == N_MEMBERS
