"""Reaction within minutes: what the API accepts, one deliver run enrols and sends.

The real server (uvicorn), the API, the demo workspace's journeys and sending rules, the outbox.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from nurture.orchestration import run_stage_list
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.stages import DELIVER
from nurture.storage.models import Member, Message, MessageStatus
from nurture.web import create_app
from nurture.web.api_keys import create_api_key
from tests.pipeline_helpers import CONTENT, NOW

from .test_api import serve


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        workspace=CONTENT,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
    )
    with Runtime(settings) as runtime:
        yield runtime


def test_a_join_and_a_first_post_sent_by_the_api_are_answered_by_one_deliver_run(runtime):
    with runtime.session() as session:
        key = create_api_key(session, "platform", "write", NOW).key  # type: ignore[arg-type]
    app = create_app(runtime.settings, engine=runtime.engine, clock=lambda: NOW)
    auth = {"Authorization": f"Bearer {key}"}
    members = {
        "members": [
            # Joins now: the welcome journey's member_joined trigger is due.
            {"external_id": "new-1", "email": "ada@example.org", "first_name": "Ada",
             "consent_status": "granted", "time_zone": "Europe/London"},
            # A member of two months, whose first post arrives now.
            {"external_id": "old-2", "email": "grace@example.org", "first_name": "Grace",
             "consent_status": "granted", "joined_at": "2026-09-01T10:00:00+00:00"},
        ]
    }  # fmt: skip
    post = {
        "events": [
            {"member": "old-2", "type": "post", "occurred_at": (NOW - dt.timedelta(minutes=3))
             .isoformat(), "properties": {"title": "Hello from Lyon"}}
        ]
    }  # fmt: skip
    for base_url in serve(app):
        with httpx.Client(base_url=base_url, headers=auth) as client:
            joined = client.post("/api/v1/members", json=members, headers={"Idempotency-Key": "j"})
            assert joined.status_code == 200, joined.text
            posted = client.post("/api/v1/events", json=post, headers={"Idempotency-Key": "p"})
            assert posted.status_code == 200, posted.text
            replay = client.post("/api/v1/members", json=members, headers={"Idempotency-Key": "j"})
            assert replay.json() == joined.json()

    summary = run_stage_list(runtime, DELIVER, NOW + dt.timedelta(minutes=5))

    with runtime.session() as session:
        sent = session.execute(
            select(Member.email, Message.journey_key, Message.status).join(
                Member, Member.id == Message.member_id
            )
        ).all()
    assert sorted(sent) == [
        ("ada@example.org", "welcome", MessageStatus.SENT),
        ("grace@example.org", "first_contribution", MessageStatus.SENT),
    ], summary
    outbox = runtime.settings.resolved_outbox_dir
    assert len(list(outbox.glob("**/*.eml"))) == 2
