"""The HTTP API over real HTTP: uvicorn on a local port, httpx, the test database."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.settings import Settings
from nurture.storage.models import ActivityEvent, Answer, ApiKey, ApiRequest, ApiScope, Member
from nurture.web import create_app
from nurture.web.api import MAX_BATCH, PRUNE_EVERY, RateLimiter
from nurture.web.api_keys import create_api_key, find_api_key, hash_api_key, revoke_api_key

from .conftest import NOW

CONTENT = Path(__file__).resolve().parents[2] / "content"


def serve(app: object) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields its address."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join()


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"workspace": CONTENT, "api_rate_limit_per_minute": 1000})


@pytest.fixture
def api(api_settings: Settings, engine) -> Iterator[httpx.Client]:
    """A client of the app served over HTTP, on the demo workspace, with a fixed clock."""
    for base_url in serve(create_app(api_settings, engine=engine, clock=lambda: NOW)):
        with httpx.Client(base_url=base_url) as client:
            yield client


@pytest.fixture
def make_key(session: Session) -> Callable[[ApiScope], str]:
    def make(scope: ApiScope = ApiScope.WRITE) -> str:
        made = create_api_key(session, "platform", scope, NOW)
        session.commit()
        return made.key

    return make


def _headers(key: str, idempotency_key: str = "req-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}


def _count(session: Session, model: type) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_members_events_answers_then_a_replay_changes_nothing(api, session, make_key):
    key = make_key()
    members = {
        "members": [
            {"external_id": "u-1", "email": "Ada@Example.org", "language": "fr", "city": "Lyon"},
            {"email": "grace@example.org", "first_name": "Grace"},
        ]
    }
    done = api.post("/api/v1/members", json=members, headers=_headers(key, "m-1"))
    assert done.status_code == 200, done.text
    assert done.json() == {"received": 2, "stored": 2, "updated": 0, "unchanged": 0}
    again = api.post("/api/v1/members", json=members, headers=_headers(key, "m-1"))
    assert again.status_code == 200 and again.json() == done.json()
    assert again.headers["idempotent-replayed"] == "true"
    ada = session.scalars(select(Member).where(Member.external_id == "u-1")).one()
    assert (ada.email, ada.language, ada.attributes) == ("ada@example.org", "fr", {"city": "Lyon"})

    events = {
        "events": [
            {"member": "u-1", "type": "post", "occurred_at": "2026-10-31T10:00:00+00:00"},
            {"member": "grace@example.org", "type": "comment", "occurred_at": "2026-10-31"},
        ]
    }
    stored = api.post("/api/v1/events", json=events, headers=_headers(key, "e-1"))
    assert stored.status_code == 200 and stored.json()["stored"] == 2, stored.text
    # The same events under a new idempotency key: deduplicated as an import would.
    same = api.post("/api/v1/events", json=events, headers=_headers(key, "e-2"))
    assert same.json() == {"received": 2, "stored": 0, "updated": 0, "unchanged": 2}
    assert _count(session, ActivityEvent) == 2

    answers = {"answers": [{"member": "u-1", "question": "role", "value": "founder"}]}
    answered = api.post("/api/v1/answers", json=answers, headers=_headers(key, "a-1"))
    assert answered.status_code == 200 and answered.json()["stored"] == 1, answered.text
    assert session.scalars(select(Answer)).one().value == "founder"
    assert _count(session, ApiRequest) == 4

    read_key = make_key(ApiScope.READ)
    found = api.get("/api/v1/members/u-1", headers={"Authorization": f"Bearer {read_key}"})
    assert found.status_code == 200 and found.json()["email"] == "ada@example.org"
    missing = api.get("/api/v1/members/nobody", headers={"Authorization": f"Bearer {read_key}"})
    assert missing.status_code == 404


def test_a_refused_record_refuses_the_batch_naming_each_problem(api, session, make_key):
    key = make_key()
    body = {
        "members": [
            {"email": "fine@example.org"},
            {"email": "not-an-address", "language": "fr"},
            {"email": "x@example.org", "language": "klingon"},
            ["not", "an", "object"],
        ]
    }
    refused = api.post("/api/v1/members", json=body, headers=_headers(key))
    assert refused.status_code == 422
    problems = refused.json()["problems"]
    fields = [(p["index"], p["field"]) for p in problems]
    assert fields == [(1, "email"), (2, "language"), (3, None)]
    assert "array" in problems[2]["reason"]
    assert _count(session, Member) == 0  # nothing half-written
    # The same idempotency key may be used again once the body is fixed: refusals are not kept.
    first = {"members": body["members"][:1]}
    fixed = api.post("/api/v1/members", json=first, headers=_headers(key))
    assert fixed.status_code == 200

    unknown = {"events": [{"member": "ghost", "type": "post", "occurred_at": "2026-10-31"}]}
    no_member = api.post("/api/v1/events", json=unknown, headers=_headers(key, "e-1"))
    assert no_member.status_code == 422
    assert no_member.json()["problems"] == [
        {"index": 0, "field": "member", "reason": "no member has external id or e-mail 'ghost'"}
    ]
    odd = {"events": [{"member": "fine@example.org", "type": "post", "occurred_at": "x", "y": 1}]}
    assert (
        api.post("/api/v1/events", json=odd, headers=_headers(key, "e-2")).json()["problems"][0][
            "field"
        ]
        == "y"
    )
    future = {"answers": [{"member": "fine@example.org", "question": "role", "value": "king"}]}
    bad_answer = api.post("/api/v1/answers", json=future, headers=_headers(key, "a-1"))
    assert bad_answer.status_code == 422 and bad_answer.json()["problems"][0]["field"] == "value"
    assert _count(session, ActivityEvent) == 0 and _count(session, Answer) == 0


def test_keys_scopes_and_limits(api, session, make_key):
    key = make_key()
    body = {"members": [{"email": "a@example.org"}]}
    assert api.post("/api/v1/members", json=body).status_code == 401
    wrong = api.post("/api/v1/members", json=body, headers=_headers(key[:-2] + "xx"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    read_only = api.post("/api/v1/members", json=body, headers=_headers(make_key(ApiScope.READ)))
    assert read_only.status_code == 403 and "write" in read_only.json()["error"]
    no_idempotency = api.post(
        "/api/v1/members", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert no_idempotency.status_code == 400 and "Idempotency-Key" in no_idempotency.json()["error"]
    events = [{"member": "a", "type": "post", "occurred_at": "2026-10-31"}] * (MAX_BATCH + 1)
    oversize = api.post("/api/v1/events", json={"events": events}, headers=_headers(key))
    assert oversize.status_code == 413 and str(MAX_BATCH) in oversize.json()["error"]
    huge = api.post(
        "/api/v1/events",
        content=b'{"events": ["' + b"x" * (5 * 1024 * 1024) + b'"]}',
        headers=_headers(key),
    )
    assert huge.status_code == 413
    for broken in (b"{", b'{"members": {}}', b'{"members": [], "x": 1}', b"\xff", b'{"a":1,"a":2}'):
        answer = api.post("/api/v1/members", content=broken, headers=_headers(key))
        assert answer.status_code == 422, broken
        assert answer.json()["error"].startswith("body")
    api.post("/api/v1/members", json=body, headers=_headers(key, "k"))
    other = {"members": [{"email": "b@example.org"}]}
    reused = api.post("/api/v1/members", json=other, headers=_headers(key, "k"))
    assert reused.status_code == 422 and "another request" in reused.json()["error"]
    assert _count(session, Member) == 1

    revoke_api_key(session, key.split("_")[1], NOW)
    session.commit()
    assert api.post("/api/v1/members", json=body, headers=_headers(key, "z")).status_code == 401
    assert api.get("/api/v1/openapi.json").json()["paths"]["/api/v1/events"]["post"]


def test_rate_limit_answers_429_with_retry_after(api_settings, engine, session, make_key):
    key = make_key()
    settings = api_settings.model_copy(update={"api_rate_limit_per_minute": 2})
    for base_url in serve(create_app(settings, engine=engine, clock=lambda: NOW)):
        with httpx.Client(base_url=base_url) as client:
            body = {"members": [{"email": "a@example.org"}]}
            codes = [
                client.post("/api/v1/members", json=body, headers=_headers(key, f"r{n}"))
                for n in range(3)
            ]
    assert [answer.status_code for answer in codes] == [200, 200, 429]
    assert int(codes[2].headers["retry-after"]) >= 1


def test_idempotency_keys_are_forgotten_after_the_remembered_days(
    api_settings, engine, session, make_key
):
    key = make_key()
    now = [NOW]
    settings = api_settings.model_copy(update={"api_idempotency_days": 7})
    first = {"members": [{"email": "a@example.org", "first_name": "Ada"}]}
    later = {"members": [{"email": "a@example.org", "first_name": "Ada Lovelace"}]}
    other = {"members": [{"email": "b@example.org"}]}
    for base_url in serve(create_app(settings, engine=engine, clock=lambda: now[0])):
        with httpx.Client(base_url=base_url) as client:
            sent = client.post("/api/v1/members", json=first, headers=_headers(key, "k-1"))
            now[0] = NOW + dt.timedelta(days=6)
            # Within the days a replay with another body is refused, as always.
            mixed = client.post("/api/v1/members", json=later, headers=_headers(key, "k-1"))
            now[0] = NOW + dt.timedelta(days=7, seconds=1)
            reused = client.post("/api/v1/members", json=later, headers=_headers(key, "k-1"))
            kept = client.post("/api/v1/members", json=other, headers=_headers(key, "k-2"))
            now[0] += PRUNE_EVERY + dt.timedelta(days=7)
            pruning = client.post("/api/v1/members", json=other, headers=_headers(key, "k-3"))
    assert [sent.status_code, mixed.status_code, reused.status_code] == [200, 422, 200]
    assert "idempotent-replayed" not in reused.headers  # a new request, applied
    ada = session.scalars(select(Member).where(Member.email == "a@example.org")).one()
    assert ada.first_name == "Ada Lovelace"
    assert kept.status_code == 200 and pruning.status_code == 200
    session.expire_all()
    # The hourly prune took every key older than the remembered days: only k-3 is left.
    assert session.scalars(select(ApiRequest.idempotency_key)).all() == ["k-3"]


def test_rate_limiter_refills_with_time():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.wait(1) == 0 for _ in range(60))
    assert limiter.wait(1) == pytest.approx(1.0)
    assert limiter.wait(2) == 0  # each key has its own bucket
    now[0] += 1.0
    assert limiter.wait(1) == 0


def test_keys_are_stored_hashed_and_found_only_whole(session):
    made = create_api_key(session, "crm sync", ApiScope.READ, NOW)
    stored = session.scalars(select(ApiKey)).one()
    assert made.key not in (stored.key_hash, stored.prefix)
    assert stored.key_hash == hash_api_key(made.key)
    assert find_api_key(session, made.key) is stored
    tampered = made.key[:-1] + ("A" if made.key[-1] != "A" else "B")
    assert find_api_key(session, tampered) is None
    assert find_api_key(session, "nk_nothing") is None


def test_answers_and_bodies_follow_the_served_schema(api, make_key):
    import jsonschema

    schema = api.get("/api/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    post = schema["paths"]["/api/v1/members"]["post"]
    body_schema = post["requestBody"]["content"]["application/json"]["schema"]
    body = {"members": [{"email": "ada@example.org", "language": "fr", "city": "Lyon"}]}
    jsonschema.Draft202012Validator(body_schema).validate(body)
    key = make_key()
    done = api.post("/api/v1/members", json=body, headers=_headers(key))
    ok = post["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(ok).validate(done.json())
    refused = api.post(
        "/api/v1/members", json={"members": [{"email": "x"}]}, headers=_headers(key, "2")
    )
    problem = post["responses"]["422"]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(problem).validate(refused.json())
    events = schema["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]
    too_many = {"events": [{"member": "a", "type": "post", "occurred_at": "x"}] * 1001}
    assert not jsonschema.Draft202012Validator(events["application/json"]["schema"]).is_valid(
        too_many
    )


ODD_VALUES = [
    None,
    0,
    -1,
    2**70,
    1.5,
    True,
    [],
    ["x"],
    {},
    {"a": {"b": 1}},
    "",
    " ",
    "\x00",
    "é" * 400,
]


@pytest.mark.parametrize("kind", ["members", "events", "answers"])
def test_odd_values_in_every_field_get_a_4xx_never_a_500(api, make_key, kind):
    key = make_key()
    fields = {
        "members": ["email", "external_id", "language", "time_zone", "birthday", "joined_at",
                    "consent_status", "first_name", "city"],
        "events": ["member", "type", "occurred_at", "content_key", "properties",
                   "idempotency_key"],
        "answers": ["member", "question", "value", "answered_at"],
    }[kind]  # fmt: skip
    valid = {
        "members": {"email": "ada@example.org"},
        "events": {"member": "ada@example.org", "type": "post", "occurred_at": "2026-10-31"},
        "answers": {"member": "ada@example.org", "question": "role", "value": "founder"},
    }[kind]
    api.post(
        "/api/v1/members", json={"members": [{"email": "ada@example.org"}]}, headers=_headers(key)
    )
    records = [{**valid, name: value} for name in fields for value in ODD_VALUES]
    for start in range(0, len(records), 50):
        batch = {kind: records[start : start + 50]}
        answer = api.post(f"/api/v1/{kind}", json=batch, headers=_headers(key, f"{kind}{start}"))
        assert answer.status_code in (200, 422), answer.text
