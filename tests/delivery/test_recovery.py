"""Recovery of messages a crashed worker left in ``sending``: settled, never re-sent blindly."""

import datetime as dt
import itertools

import pytest
from sqlalchemy import update

from nurture.delivery import deliver_messages
from nurture.delivery.worker import RecoverySummary, recover_stale_messages, requeue_unknown
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.stages import recover_deliveries
from nurture.storage.models import Message, MessageStatus, ProviderEvent

from .conftest import NOW
from .test_worker import SENDER, RecordingMailer

STALE = dt.timedelta(minutes=30)
LATER = NOW + dt.timedelta(hours=1)
_event_ids = itertools.count()


def _stuck(
    session,
    message: Message,
    claimed_at: dt.datetime | None = NOW,
    *,
    handed_over: bool = True,
    backend: str | None = "sendgrid",
) -> Message:
    """Leave ``message`` as a crashed worker would: claimed, handed over (or not), sent or not,
    never recorded."""
    session.execute(
        update(Message)
        .where(Message.id == message.id)
        .values(
            status=MessageStatus.SENDING,
            claimed_at=claimed_at,
            handed_over_at=(claimed_at or NOW) if handed_over else None,
            backend=backend if handed_over else None,
        )
    )
    session.commit()
    return message


def _event(session, message: Message, event_type: str, minutes: int) -> None:
    session.add(
        ProviderEvent(
            provider="sendgrid",
            event_id=f"evt-{next(_event_ids)}",
            message_id=message.id,
            type=event_type,
            occurred_at=NOW + dt.timedelta(minutes=minutes),
            payload={},
        )
    )
    session.commit()


def _reload(session, message: Message) -> Message:
    return session.get(Message, message.id, populate_existing=True)


def _recover(session, now: dt.datetime = LATER) -> RecoverySummary:
    summary = recover_stale_messages(session, now, STALE)
    session.commit()
    return summary


def test_a_message_the_provider_reported_on_is_settled_as_sent(session, add_message):
    message = _stuck(session, add_message())
    _event(session, message, "delivered", minutes=2)
    _event(session, message, "processed", minutes=1)
    _event(session, message, "open", minutes=9)
    assert _recover(session) == RecoverySummary(sent=1)
    row = _reload(session, message)
    assert row.status is MessageStatus.SENT
    assert row.sent_at == NOW + dt.timedelta(minutes=1)
    assert row.delivery_status == "delivered"  # an open is no delivery status of its own
    assert row.error is None


@pytest.mark.parametrize(
    ("events", "delivery_status"),
    [(["processed", "bounce"], "bounce"), (["dropped"], "dropped"), (["click"], "delivered")],
)
def test_any_event_proving_acceptance_settles_it(session, add_message, events, delivery_status):
    message = _stuck(session, add_message())
    for minutes, event_type in enumerate(events):
        _event(session, message, event_type, minutes)
    assert _recover(session) == RecoverySummary(sent=1)
    row = _reload(session, message)
    assert (row.status, row.delivery_status) == (MessageStatus.SENT, delivery_status)


def test_without_a_provider_event_it_is_unknown_for_an_operator(session, add_message):
    message = _stuck(session, add_message())
    _event(session, message, "unsubscribe", minutes=1)  # says nothing about this send
    assert _recover(session) == RecoverySummary(unknown=1)
    row = _reload(session, message)
    assert row.status is MessageStatus.UNKNOWN
    assert row.error == (
        f"claimed at {NOW.isoformat()}, handed to sendgrid at {NOW.isoformat()}, no provider "
        "event: check the provider, then `nurture deliveries resolve`"
    )


def test_recovery_never_sends_again(session, add_message, renderer):
    message = _stuck(session, add_message())
    _recover(session)
    mailer = RecordingMailer()
    deliver_messages(session, mailer, renderer, None, LATER, **SENDER)
    deliver_messages(session, mailer, renderer, [message.id], LATER, **SENDER)
    assert mailer.sent == []
    assert _reload(session, message).status is MessageStatus.UNKNOWN


def test_a_recent_claim_is_left_to_its_worker(session, add_message):
    message = _stuck(session, add_message(), claimed_at=LATER - dt.timedelta(minutes=5))
    assert _recover(session) == RecoverySummary()
    assert _reload(session, message).status is MessageStatus.SENDING


def test_a_claim_of_unknown_time_counts_as_stale(session, add_message):
    message = _stuck(session, add_message(), claimed_at=None)
    assert _recover(session) == RecoverySummary(unknown=1)
    assert _reload(session, message).error.startswith("claimed at an unknown time")


def test_events_arriving_after_recovery_settle_an_unknown_message(session, add_message):
    message = _stuck(session, add_message())
    assert _recover(session) == RecoverySummary(unknown=1)
    _event(session, message, "delivered", minutes=40)
    assert _recover(session, LATER + dt.timedelta(minutes=10)) == RecoverySummary(sent=1)
    row = _reload(session, message)
    assert (row.status, row.delivery_status, row.error) == (MessageStatus.SENT, "delivered", None)


def test_other_states_are_left_alone(session, add_message):
    queued = add_message()
    assert _recover(session) == RecoverySummary()
    assert _reload(session, queued).status is MessageStatus.QUEUED


def test_an_operator_requeues_unknown_messages(session, add_message, renderer):
    unknown = _stuck(session, add_message())
    stuck = _stuck(session, add_message(), claimed_at=LATER)
    _recover(session)
    assert requeue_unknown(session, [unknown.id, stuck.id]) == 1
    session.commit()
    row = _reload(session, unknown)
    assert (row.status, row.error) == (MessageStatus.QUEUED, None)
    assert _reload(session, stuck).status is MessageStatus.SENDING
    mailer = RecordingMailer()
    deliver_messages(session, mailer, renderer, None, LATER, **SENDER)
    assert [sent.message_id for sent in mailer.sent] == [unknown.id]


def test_the_recover_stage_uses_the_stale_setting(session, add_message, database_url, tmp_path):
    old = _stuck(session, add_message())
    recent = _stuck(session, add_message(), claimed_at=NOW + dt.timedelta(minutes=50))
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, sending_stale_after_minutes=20
    )
    with Runtime(settings) as runtime:
        assert recover_deliveries(runtime, LATER) == RecoverySummary(unknown=1)
    assert _reload(session, old).status is MessageStatus.UNKNOWN
    assert _reload(session, recent).status is MessageStatus.SENDING
