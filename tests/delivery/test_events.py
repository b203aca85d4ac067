import datetime as dt

import pytest
from sqlalchemy import func, select, update

from nurture.delivery import is_suppressed
from nurture.delivery.events import EventSummary, record_provider_events
from nurture.delivery.suppression import find_suppression
from nurture.storage.models import (
    ActivityEvent,
    ContentItem,
    Message,
    MessageStatus,
    ProviderEvent,
)

from .conftest import NOW, SECRET

SALT = SECRET
RECEIVED = NOW + dt.timedelta(hours=1)


def _event(message: Message | None, kind: str, n: int = 1, **fields) -> dict:
    event = {
        "event": kind,
        "timestamp": int(NOW.timestamp()) + n,
        "sg_event_id": f"ev-{kind}-{n}",
        "sg_message_id": "sgid123.filter0001.1.2",
        "email": "member1@example.org",
    }
    if message is not None:
        event["nurture_message_id"] = str(message.id)
    event.update(fields)
    return event


def _record(session, events) -> EventSummary:
    summary = record_provider_events(session, events, salt=SALT, now=RECEIVED)
    session.commit()
    return summary


def _reload(session, message: Message) -> Message:
    return session.get(Message, message.id, populate_existing=True)


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def _sent(session, message: Message, provider_id: str | None = "sgid123") -> None:
    session.execute(
        update(Message)
        .where(Message.id == message.id)
        .values(status=MessageStatus.SENT, sent_at=NOW, provider_message_id=provider_id)
    )
    session.commit()


def test_delivery_events_update_the_message(session, add_message):
    message = add_message()
    _sent(session, message)
    summary = _record(session, [_event(message, "processed", 1), _event(message, "delivered", 2)])
    assert summary == EventSummary(received=2, recorded=2, delivery_updates=2)
    row = _reload(session, message)
    assert row.delivery_status == "delivered"
    assert row.status is MessageStatus.SENT
    events = session.scalars(select(ProviderEvent).order_by(ProviderEvent.id)).all()
    assert [(e.provider, e.event_id, e.type, e.message_id) for e in events] == [
        ("sendgrid", "ev-processed-1", "processed", message.id),
        ("sendgrid", "ev-delivered-2", "delivered", message.id),
    ]
    assert events[0].occurred_at == NOW + dt.timedelta(seconds=1)
    assert events[0].received_at == RECEIVED
    assert events[0].payload["sg_message_id"] == "sgid123.filter0001.1.2"


def test_a_later_stage_is_not_overwritten_by_an_earlier_one(session, add_message):
    message = add_message()
    _sent(session, message)
    _record(session, [_event(message, "delivered", 1), _event(message, "processed", 2)])
    assert _reload(session, message).delivery_status == "delivered"
    _record(session, [_event(message, "deferred", 3)])
    assert _reload(session, message).delivery_status == "delivered"
    _record(session, [_event(message, "bounce", 4, type="bounce")])
    assert _reload(session, message).delivery_status == "bounce"


def test_a_batch_sent_again_adds_nothing(session, add_message):
    message = add_message()
    _sent(session, message)
    batch = [_event(message, "delivered", 1), _event(message, "open", 2)]
    _record(session, batch)
    again = _record(session, batch)
    assert again == EventSummary(received=2, duplicates=2)
    assert _count(session, ProviderEvent) == 2
    assert _count(session, ActivityEvent) == 1


def test_events_without_id_are_deduplicated_by_content(session, add_message):
    message = add_message()
    _sent(session, message)
    event = _event(message, "open", 1)
    del event["sg_event_id"]
    other = dict(event, timestamp=event["timestamp"] + 1)
    summary = _record(session, [event, dict(event), other])
    assert (summary.recorded, summary.duplicates) == (2, 1)
    assert _record(session, [event]).duplicates == 1
    ids = session.scalars(select(ProviderEvent.event_id)).all()
    assert all(event_id.startswith("sha256:") for event_id in ids)


def test_opens_and_clicks_become_activity(session, add_message):
    message = add_message()
    _sent(session, message)
    session.add(
        ContentItem(
            key="b2b-masterclass",
            title="Grow a B2B community",
            url="https://example.org/b2b",
            kind="masterclass",
            language="en",
            text_hash="h",
            source_path="b2b.md",
        )
    )
    session.commit()
    summary = _record(
        session,
        [
            _event(message, "open", 1),
            _event(message, "open", 2, sg_machine_open=True),
            _event(message, "click", 3, url="https://EXAMPLE.org/b2b/#top"),
            _event(message, "click", 4, url="https://example.org/elsewhere"),
        ],
    )
    assert (summary.recorded, summary.activities) == (4, 3)
    rows = session.scalars(select(ActivityEvent).order_by(ActivityEvent.id)).all()
    assert [(r.type, r.content_key, r.idempotency_key) for r in rows] == [
        ("email_open", None, "sendgrid:ev-open-1"),
        ("email_click", "b2b-masterclass", "sendgrid:ev-click-3"),
        ("email_click", None, "sendgrid:ev-click-4"),
    ]
    assert {r.member_id for r in rows} == {message.member_id}
    assert rows[1].properties == {
        "message_id": message.id,
        "journey": "welcome",
        "url": "https://EXAMPLE.org/b2b/#top",
    }
    assert rows[0].occurred_at == NOW + dt.timedelta(seconds=1)
    # The machine open is still a provider event (journeys may read it), not activity.
    assert _count(session, ProviderEvent) == 4


@pytest.mark.parametrize(
    ("kind", "fields", "reason"),
    [
        ("bounce", {"type": "bounce", "reason": "550 no such user"}, "bounced"),
        ("spamreport", {}, "complained"),
        ("unsubscribe", {}, "unsubscribed"),
        ("group_unsubscribe", {"asm_group_id": 1}, "unsubscribed"),
    ],
)
def test_suppressing_events(session, add_message, kind, fields, reason):
    message = add_message()
    _sent(session, message)
    summary = _record(session, [_event(message, kind, 1, **fields)])
    assert summary.suppressed == 1
    entry = find_suppression(session, "member1@example.org", SALT)
    assert (entry.reason, entry.source) == (reason, f"sendgrid:{kind}")
    assert _record(session, [_event(message, kind, 2, **fields)]).suppressed == 0


def test_a_blocked_bounce_does_not_suppress(session, add_message):
    message = add_message()
    _sent(session, message)
    summary = _record(session, [_event(message, "bounce", 1, type="blocked")])
    assert summary.suppressed == 0
    assert not is_suppressed(session, "member1@example.org", SALT)
    assert _reload(session, message).delivery_status == "bounce"


def test_a_bounce_for_an_unknown_message_still_suppresses_its_address(session):
    event = _event(None, "bounce", 1, type="bounce", email="Gone@Example.org")
    summary = _record(session, [event])
    assert (summary.recorded, summary.unmatched, summary.suppressed) == (1, 1, 1)
    assert is_suppressed(session, "gone@example.org", SALT)
    assert session.scalar(select(ProviderEvent.message_id)) is None


def test_events_that_disagree_with_the_message_are_not_linked(session, add_message):
    """A message id reused after an erasure must not take another member's events."""
    message = add_message()
    _sent(session, message)
    other_address = _event(message, "open", 1, email="someone.else@example.org")
    other_send = _event(message, "click", 2, sg_message_id="othersend.filter1")
    unknown = _event(None, "open", 3, nurture_message_id="999999")
    summary = _record(session, [other_address, other_send, unknown])
    assert (summary.recorded, summary.unmatched, summary.activities) == (3, 3, 0)
    assert session.scalars(select(ProviderEvent.message_id)).all() == [None, None, None]


def test_link_by_sendgrid_message_id_without_custom_args(session, add_message):
    message = add_message()
    _sent(session, message)
    event = _event(None, "delivered", 1)
    summary = _record(session, [event])
    assert summary.unmatched == 0
    assert session.scalar(select(ProviderEvent.message_id)) == message.id


@pytest.mark.parametrize("status", [MessageStatus.SENDING, MessageStatus.UNKNOWN])
def test_a_message_the_provider_had_becomes_sent(session, add_message, status):
    message = add_message()
    session.execute(
        update(Message).where(Message.id == message.id).values(status=status, error="timeout")
    )
    session.commit()
    _record(session, [_event(message, "processed", 5)])
    row = _reload(session, message)
    assert row.status is MessageStatus.SENT
    assert row.sent_at == NOW + dt.timedelta(seconds=5)
    assert row.provider_message_id == "sgid123"
    assert row.backend == "sendgrid"
    assert row.error is None
    assert row.delivery_status == "processed"


def test_a_message_queued_again_after_a_timeout_is_not_sent_twice(session, add_message):
    retried = add_message()
    fresh = add_message(email="member2@example.org")
    session.execute(update(Message).where(Message.id == retried.id).values(attempts=1))
    session.commit()
    _record(session, [_event(retried, "delivered", 1), _event(fresh, "delivered", 2)])
    assert _reload(session, retried).status is MessageStatus.SENT
    assert _reload(session, fresh).status is MessageStatus.QUEUED


@pytest.mark.parametrize(
    "item",
    [
        None,
        "delivered",
        [],
        {},
        {"event": "open"},
        {"event": "open", "timestamp": True},
        {"event": "open", "timestamp": "1700000000"},
        {"event": "open", "timestamp": float("nan")},
        {"event": "open", "timestamp": 10**15},
        {"event": "open", "timestamp": -5},
        {"event": 3, "timestamp": 1_700_000_000},
        {"event": "\ud800", "timestamp": 1_700_000_000},
        {"event": "", "timestamp": 1_700_000_000},
    ],
)
def test_bad_items_are_skipped_and_counted(session, add_message, item):
    message = add_message()
    _sent(session, message)
    summary = _record(session, [item, _event(message, "delivered", 1)])
    assert (summary.received, summary.invalid, summary.recorded) == (2, 1, 1)


def test_odd_values_are_stored_without_harm(session, add_message):
    message = add_message()
    _sent(session, message)
    odd = _event(
        message,
        "click",
        1,
        sg_event_id="\ud800" * 3,
        nurture_message_id="not-a-number",
        email=["not", "a", "string"],
        url="\x00",
        extra={"nested": [1, 2, {"\ud83d": "x"}]},
    )
    summary = _record(session, [odd, _event(message, "open", 2, sg_event_id="x" * 400)])
    assert summary.recorded == 2
    # Both linked by SendGrid's message id; the click's odd URL is left out.
    assert summary.activities == 2
    assert _count(session, ProviderEvent) == 2


def test_texts_postgresql_refuses_are_made_storable() -> None:
    from nurture.delivery.events import _storable

    assert _storable({"reason": "bad\x00byte\udc80", "list": ["\x00"], "n": 3}) == {
        "reason": "bad\ufffdbyte?",
        "list": ["\ufffd"],
        "n": 3,
    }
