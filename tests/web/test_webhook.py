import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr
from sqlalchemy import func, select, update

from nurture.delivery import is_suppressed
from nurture.storage.models import ActivityEvent, Message, MessageStatus, ProviderEvent
from nurture.web.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER

from .conftest import NOW, SALT, sign

URL = "/webhooks/sendgrid"
STAMP = str(int(NOW.timestamp()))


def _post(client, key, body: bytes, timestamp: str = STAMP, **headers):
    signed = {
        SIGNATURE_HEADER: sign(key, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
        "Content-Type": "application/json",
    }
    signed.update(headers)
    return client.post(URL, content=body, headers=signed)


def _json(value) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def sent(session, add_member, add_message) -> Message:
    member = add_member()
    message = add_message(member)
    session.execute(
        update(Message)
        .where(Message.id == message.id)
        .values(status=MessageStatus.SENT, provider_message_id="sgid1")
    )
    session.commit()
    return message


def _batch(message: Message) -> bytes:
    events = [
        {
            "event": "delivered",
            "sg_event_id": "e1",
            "sg_message_id": "sgid1.filter1",
            "timestamp": int(NOW.timestamp()) - 30,
            "email": "member1@example.org",
            "nurture_message_id": str(message.id),
            "journey": "welcome",
            "step": "hello",
        },
        {
            "event": "open",
            "sg_event_id": "e2",
            "sg_message_id": "sgid1.filter1",
            "timestamp": int(NOW.timestamp()) - 20,
            "email": "member1@example.org",
            "nurture_message_id": str(message.id),
        },
        {
            "event": "spamreport",
            "sg_event_id": "e3",
            "sg_message_id": "sgid1.filter1",
            "timestamp": int(NOW.timestamp()) - 10,
            "email": "member1@example.org",
            "nurture_message_id": str(message.id),
        },
    ]
    # SendGrid's own layout (spaces, key order) must not matter: the raw bytes are signed.
    return json.dumps(events, indent=1).encode("utf-8")


def test_a_signed_batch_is_applied(client, session, webhook_key, sent):
    response = _post(client, webhook_key, _batch(sent))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "received": 3,
        "recorded": 3,
        "duplicates": 0,
        "invalid": 0,
        "unmatched": 0,
        "delivery_updates": 1,
        "activities": 1,
        "suppressed": 1,
        "refused": [],
    }
    session.expire_all()
    assert session.get(Message, sent.id).delivery_status == "delivered"
    assert session.scalar(select(ActivityEvent.type)) == "email_open"
    assert is_suppressed(session, "member1@example.org", SALT)


def test_a_replayed_batch_adds_nothing(client, session, webhook_key, sent):
    body = _batch(sent)
    assert _post(client, webhook_key, body).status_code == 200
    again = _post(client, webhook_key, body)
    assert again.status_code == 200
    assert again.json()["duplicates"] == 3 and again.json()["recorded"] == 0
    assert _count(session, ProviderEvent) == 3
    assert _count(session, ActivityEvent) == 1


def test_a_forged_signature_is_refused(client, session, sent):
    other_key = ec.generate_private_key(ec.SECP256R1())
    response = _post(client, other_key, _batch(sent))
    assert response.status_code == 403
    assert response.json() == {"error": "signature does not match"}
    assert _count(session, ProviderEvent) == 0


def test_a_tampered_body_is_refused(client, session, webhook_key, sent):
    body = _batch(sent)
    headers = {
        SIGNATURE_HEADER: sign(webhook_key, STAMP, body),
        TIMESTAMP_HEADER: STAMP,
    }
    tampered = body.replace(b"spamreport", b"unsubscribe")
    assert client.post(URL, content=tampered, headers=headers).status_code == 403
    # Nor may the signed timestamp be changed.
    later = str(int(STAMP) + 1)
    assert (
        client.post(URL, content=body, headers={**headers, TIMESTAMP_HEADER: later}).status_code
        == 403
    )
    assert _count(session, ProviderEvent) == 0


@pytest.mark.parametrize(("offset", "status"), [(-301, 403), (-299, 200), (55, 200), (120, 403)])
def test_the_timestamp_must_be_recent(client, session, webhook_key, sent, offset, status):
    """Signed 5 minutes ago at most (webhook_max_age_seconds), a minute ahead at most."""
    response = _post(client, webhook_key, _batch(sent), timestamp=str(int(STAMP) + offset))
    assert response.status_code == status
    assert _count(session, ProviderEvent) == (3 if status == 200 else 0)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {SIGNATURE_HEADER: "abc"},
        {TIMESTAMP_HEADER: STAMP},
        {SIGNATURE_HEADER: "", TIMESTAMP_HEADER: STAMP},
        {SIGNATURE_HEADER: "%%%not base64", TIMESTAMP_HEADER: STAMP},
        {SIGNATURE_HEADER: "c2lnbmF0dXJl", TIMESTAMP_HEADER: STAMP},
        {SIGNATURE_HEADER: "c2lnbmF0dXJl", TIMESTAMP_HEADER: "yesterday"},
        {SIGNATURE_HEADER: "c2lnbmF0dXJl", TIMESTAMP_HEADER: "9" * 40},
        {SIGNATURE_HEADER: "c2lnbmF0dXJl", TIMESTAMP_HEADER: "-5"},
    ],
)
def test_missing_or_bad_signature_headers_are_refused(client, session, sent, headers):
    response = client.post(URL, content=_batch(sent), headers=headers)
    assert response.status_code == 403
    assert _count(session, ProviderEvent) == 0


@pytest.mark.parametrize("body", [b"", b"not json", b'{"event": "open"}', b'"x"', b"[" * 100000])
def test_signed_but_malformed_bodies_get_400(client, webhook_key, body):
    response = _post(client, webhook_key, body)
    assert response.status_code == 400
    assert "expected a JSON array" in response.json()["error"]


def test_bad_events_in_a_good_batch_are_skipped(client, session, webhook_key, sent):
    events = json.loads(_batch(sent))
    body = json.dumps([None, 1, "x", {"event": "open"}, *events]).encode()
    response = _post(client, webhook_key, body)
    assert response.status_code == 200
    assert response.json()["invalid"] == 4
    assert response.json()["recorded"] == 3


def test_an_empty_batch_is_fine(client, webhook_key):
    response = _post(client, webhook_key, b"[]")
    assert response.status_code == 200
    assert response.json()["received"] == 0


def test_a_body_too_large_is_refused(client, webhook_key):
    from nurture.web.app import MAX_WEBHOOK_BYTES

    body = b"[" + b" " * MAX_WEBHOOK_BYTES + b"]"
    assert _post(client, webhook_key, body).status_code == 413


def test_without_a_key_the_webhook_is_unavailable(make_client, settings, session, sent):
    client = make_client(settings.model_copy(update={"sendgrid_webhook_public_key": None}))
    response = client.post(URL, content=_batch(sent))
    assert response.status_code == 503
    assert "NURTURE_SENDGRID_WEBHOOK_PUBLIC_KEY" in response.json()["error"]
    assert client.get("/health").text == "ok"


@pytest.mark.parametrize("key", ["not a key", "bm90IGEga2V5", "rsa"])
def test_an_invalid_key_makes_the_webhook_unavailable(make_client, settings, sent, key):
    if key == "rsa":
        der = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        key = der.decode()
    client = make_client(
        settings.model_copy(update={"sendgrid_webhook_public_key": SecretStr(key)})
    )
    response = client.post(URL, content=_batch(sent))
    assert response.status_code == 503
    assert "sendgrid_webhook_public_key" in response.json()["error"]


def test_a_pem_key_works_too(make_client, settings, webhook_key, sent):
    pem = (
        webhook_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    client = make_client(
        settings.model_copy(update={"sendgrid_webhook_public_key": SecretStr(pem)})
    )
    assert _post(client, webhook_key, _batch(sent)).status_code == 200


def test_never_a_500(client, webhook_key, sent):
    """Whatever a client sends, the answer is a 2xx or a 4xx."""
    events = json.loads(_batch(sent))
    bodies = [
        b"\xff\xfe\x00",
        b'["\\ud800"]',
        _json([{"event": "\ud800", "timestamp": 1}]),
        _json([{"event": "open", "timestamp": 1e308}]),
        json.dumps(
            [{"event": "open", "timestamp": 1_790_000_000, "sg_event_id": {"a": 1}}]
        ).encode(),
        _json([{**events[1], "nurture_message_id": "9" * 40, "sg_event_id": "big"}]),
        _json([{**events[1], "nurture_message_id": -1, "sg_event_id": "neg"}]),
        _json([{**events[1], "email": "\x00@x", "sg_event_id": "nul"}]),
        _json([{**events[0], "event": "bounce", "email": 5, "sg_event_id": "b"}]),
        json.dumps([[[[[]]]]] * 50).encode(),
        json.dumps({"events": events}).encode(),
        b"[" + b"{}," * 1000 + b"{}]",
    ]
    for body in bodies:
        signed = _post(client, webhook_key, body)
        assert signed.status_code < 500, (body[:80], signed.text)
        unsigned = client.post(URL, content=body)
        assert unsigned.status_code == 403
    for path, method in [
        ("/webhooks/sendgrid", "get"),
        ("/unsubscribe/", "post"),
        ("/unsubscribe/a/b", "post"),
        ("/preferences/%ff", "post"),
        ("/nowhere", "get"),
    ]:
        assert getattr(client, method)(path).status_code < 500


def _nested(depth: int, leaf=1, kind: str = "list"):
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


@pytest.mark.parametrize(
    ("depth", "kind"), [(500, "list"), (500, "dict"), (33, "list"), (5000, "dict"), (50000, "list")]
)
def test_a_deeply_nested_event_is_refused_alone(client, session, webhook_key, sent, depth, kind):
    """One event nested too deep is refused with its reason; the good ones of the batch stay."""
    events = json.loads(_batch(sent))
    poison = {**events[1], "sg_event_id": "deep", "custom": _nested(depth, kind=kind)}
    if depth > 900:  # beyond what json.dumps can write: build the body by hand
        inner = (
            ("[" * depth + "1" + "]" * depth)
            if kind == "list"
            else ('{"a":' * depth + "1" + "}" * depth)
        )
        poison_json = json.dumps({**poison, "custom": 0})
        poison_json = poison_json.replace('"custom": 0', f'"custom": {inner}')
    else:
        poison_json = json.dumps(poison)
    body = "[" + json.dumps(events[0]) + "," + poison_json + "," + json.dumps(events[2]) + "]"
    response = _post(client, webhook_key, body.encode())
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["recorded"] == 2
    assert summary["invalid"] == 1
    assert summary["refused"] == ["event 1: nested deeper than 32 levels"]
    session.expire_all()
    stored = set(session.scalars(select(ProviderEvent.event_id)))
    assert stored == {"e1", "e3"}
    assert is_suppressed(session, "member1@example.org", SALT)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("9" * 5000, "does not fit in 64 bits"),
        ("-" + "1" * 25, "does not fit in 64 bits"),
        ("18446744073709551616", "does not fit in 64 bits"),
        ("NaN", "NaN is not valid JSON"),
        ("-Infinity", "-Infinity is not valid JSON"),
    ],
)
def test_a_huge_number_refuses_its_event_not_the_batch(
    client, session, webhook_key, sent, value, reason
):
    """A signed event holding what no database column can take is refused alone, with why."""
    events = json.loads(_batch(sent))
    poison = json.dumps({**events[1], "sg_event_id": "huge", "custom": 0})
    poison = poison.replace('"custom": 0', f'"custom": {value}')
    body = "[" + json.dumps(events[0]) + "," + poison + "," + json.dumps(events[2]) + "]"
    response = _post(client, webhook_key, body.encode())
    assert response.status_code == 200, response.text
    summary = response.json()
    assert (summary["recorded"], summary["invalid"]) == (2, 1)
    [refused] = summary["refused"]
    assert refused.startswith("event 1: ") and reason in refused
    session.expire_all()
    assert set(session.scalars(select(ProviderEvent.event_id))) == {"e1", "e3"}


def test_a_key_named_twice_refuses_its_event_not_the_batch(client, session, webhook_key, sent):
    events = json.loads(_batch(sent))
    poison = json.dumps({**events[1], "sg_event_id": "twice"})[:-1] + ', "email": "x@example.org"}'
    body = "[" + json.dumps(events[0]) + "," + poison + "," + json.dumps(events[2]) + "]"
    response = _post(client, webhook_key, body.encode())
    assert response.status_code == 200, response.text
    assert response.json()["refused"] == ["event 1: duplicate key 'email'"]
    session.expire_all()
    assert set(session.scalars(select(ProviderEvent.event_id))) == {"e1", "e3"}


def test_nesting_up_to_the_limit_is_kept(client, session, webhook_key, sent):
    events = json.loads(_batch(sent))
    event = {**events[1], "custom": _nested(31, kind="dict")}  # 32 levels with the event
    response = _post(client, webhook_key, _json([event]))
    assert response.status_code == 200
    assert response.json()["recorded"] == 1
    assert response.json()["refused"] == []


def test_deep_events_passed_in_python_are_refused_alone(session, sent):
    """The same bound holds for callers that decoded the events themselves."""
    from nurture.delivery import record_provider_events

    events = json.loads(_batch(sent))
    poison = {**events[1], "sg_event_id": "deep", "custom": _nested(2000)}
    summary = record_provider_events(session, [events[0], poison], salt=SALT, now=NOW)
    assert (summary.recorded, summary.invalid) == (1, 1)
    assert summary.refused == ["event 1: nested deeper than 32 levels"]


@pytest.mark.parametrize(
    "body",
    [b"[1}", b"[1,]", b"[,1]", b'["a]', b"[[1]", b"[1] x", b'[{"a": [1}]', b"[" + b"[" * 40],
)
def test_unbalanced_arrays_get_400(client, webhook_key, body):
    response = _post(client, webhook_key, body)
    assert response.status_code == 400
