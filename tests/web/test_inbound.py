"""A community platform's signed webhook over real HTTP, mapped by the demo's discourse.yaml."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from nurture.settings import Settings
from nurture.storage.models import ActivityEvent, Member
from nurture.web import create_app

from .conftest import NOW
from .test_api import serve

CONTENT = Path(__file__).resolve().parents[2] / "content"
SECRET = "discourse-shared-secret"


@pytest.fixture
def platform(settings: Settings, engine, monkeypatch) -> Iterator[httpx.Client]:
    monkeypatch.setenv("DISCOURSE_WEBHOOK_SECRET", SECRET)
    app = create_app(
        settings.model_copy(update={"workspace": CONTENT}), engine=engine, clock=lambda: NOW
    )
    for base_url in serve(app):
        with httpx.Client(base_url=base_url) as client:
            yield client


def _send(client: httpx.Client, event: str, payload: object, secret: str = SECRET):
    body = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Discourse-Event": event,
        "X-Discourse-Event-Signature": f"sha256={digest}",
    }
    return client.post("/webhooks/integrations/discourse", content=body, headers=headers)


USER = {"user": {"id": 42, "username": "ada", "name": "Ada", "email": "Ada@example.org",
                 "created_at": "2026-10-31T08:00:00.000Z"}}  # fmt: skip
POST = {"post": {"id": 9001, "user_id": 42, "created_at": "2026-10-31T08:30:00.000Z",
                 "topic_title": "Hello", "raw": "First lines", "topic_id": 7}}  # fmt: skip


def test_a_signed_join_then_a_post_are_stored_once(platform, session):
    joined = _send(platform, "user_created", USER)
    assert joined.status_code == 200, joined.text
    assert joined.json()["rules"] == ["user_created"]
    posted = _send(platform, "post_created", POST)
    assert posted.status_code == 200 and posted.json()["events"]["stored"] == 1, posted.text
    again = _send(platform, "post_created", POST)  # the platform retries a delivery
    assert again.json()["events"] == {"stored": 0, "updated": 0, "unchanged": 1}
    ignored = _send(platform, "topic_created", {"topic": {}})
    assert ignored.status_code == 200 and ignored.json()["rules"] == []
    member = session.scalars(select(Member)).one()
    assert (member.external_id, member.email) == ("discourse-42", "ada@example.org")
    assert member.attributes == {"discourse_username": "ada"}
    event = session.scalars(select(ActivityEvent)).one()
    assert (event.type, event.idempotency_key) == ("post", "discourse-post-9001")


def test_bad_signatures_bodies_and_records_are_refused(platform, session):
    assert _send(platform, "user_created", USER, secret="guess").status_code == 403
    unsigned = platform.post("/webhooks/integrations/discourse", json=USER)
    assert unsigned.status_code == 403
    assert platform.post("/webhooks/integrations/nowhere", json=USER).status_code == 404
    broken = {"user": {**USER["user"], "email": "not-an-address"}}
    refused = _send(platform, "user_created", broken)
    assert refused.status_code == 422
    assert refused.json()["problems"] == [
        {
            "rule": "user_created",
            "record": "member",
            "index": 0,
            "field": "email",
            "reason": "expected an e-mail address, found 'not-an-address'",
        }
    ]
    orphan = _send(platform, "post_created", POST)  # its member never joined
    assert orphan.status_code == 422 and orphan.json()["problems"][0]["field"] == "member"
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Member)) == 0


def test_an_unset_secret_answers_503(settings, engine, monkeypatch):
    monkeypatch.delenv("DISCOURSE_WEBHOOK_SECRET", raising=False)
    app = create_app(
        settings.model_copy(update={"workspace": CONTENT}), engine=engine, clock=lambda: NOW
    )
    for base_url in serve(app):
        with httpx.Client(base_url=base_url) as client:
            assert _send(client, "user_created", USER).status_code == 503
