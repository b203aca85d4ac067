"""The hand-off to the backend, recorded before each send: what recovery makes of a crash."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.delivery import (
    DeliveryResult,
    OutboxMailer,
    OutgoingEmail,
    deliver_messages,
    outbox_file_name,
)
from nurture.delivery.backends import acceptance_check_for
from nurture.delivery.mailers import AcceptanceCheck, HandedOver
from nurture.delivery.worker import (
    RecoverySummary,
    claim_messages,
    recover_stale_messages,
    recovery_verdict,
    resolve_unknown,
    unknown_messages,
)
from nurture.settings import Settings
from nurture.storage import create_database_engine, open_session
from nurture.storage.models import Message, MessageStatus

from .conftest import NOW
from .test_worker import SENDER, RecordingMailer

STALE = dt.timedelta(minutes=30)
LATER = NOW + dt.timedelta(hours=1)


# --- the rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handed_over", "provider_reported", "backend_holds", "verdict"),
    [
        # never handed over: no backend saw it, whatever a backend says
        (False, False, None, "requeue"),
        (False, False, False, "requeue"),
        # the provider's events settle it, whatever else is known
        (False, True, None, "sent"),
        (True, True, None, "sent"),
        (True, True, False, "sent"),
        # handed over: the backend's word, if it has one
        (True, False, True, "sent"),
        (True, False, False, "requeue"),
        (True, False, None, "unknown"),
    ],
)
def test_the_recovery_rule(handed_over, provider_reported, backend_holds, verdict):
    assert (
        recovery_verdict(
            handed_over=handed_over,
            provider_reported=provider_reported,
            backend_holds=backend_holds,
        )
        == verdict
    )


# --- the worker records the hand-off before the send ---------------------------------------


class PeekingMailer(RecordingMailer):
    """Reads, through a connection of its own, what the database says while it sends."""

    def __init__(self, database_url: str):
        super().__init__()
        self.engine = create_database_engine(database_url)
        self.seen: list[tuple[MessageStatus, dt.datetime | None, str | None]] = []

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        with open_session(self.engine) as own:
            row = own.get(Message, email.message_id)
            assert row is not None
            self.seen.append((row.status, row.handed_over_at, row.backend))
        return super().send(email)


def test_the_hand_off_is_committed_before_the_backend_is_called(
    session, add_message, renderer, database_url
):
    ids = [add_message().id for _ in range(3)]
    mailer = PeekingMailer(database_url)
    try:
        summary = deliver_messages(session, mailer, renderer, ids, NOW, concurrency=2, **SENDER)
    finally:
        mailer.engine.dispose()
    assert summary.sent == 3
    assert mailer.seen == [(MessageStatus.SENDING, NOW, "memory")] * 3
    rows = session.scalars(select(Message).execution_options(populate_existing=True)).all()
    assert {(row.status, row.handed_over_at) for row in rows} == {(MessageStatus.SENT, NOW)}


def test_a_new_claim_forgets_the_last_hand_off(session, add_message, renderer):
    message = add_message()
    session.execute(
        update(Message).where(Message.id == message.id).values(handed_over_at=NOW, attempts=1)
    )
    session.commit()
    assert claim_messages(session, LATER, 5) == [message.id]
    assert _reload(session, message).handed_over_at is None


# --- recovery -------------------------------------------------------------------------------


def _reload(session: Session, message: Message) -> Message:
    return session.get(Message, message.id, populate_existing=True)


def _stuck(
    session: Session,
    message: Message,
    *,
    handed_over: bool,
    backend: str | None = None,
) -> Message:
    """Leave ``message`` as a worker killed after its claim (and maybe its hand-off) would."""
    session.execute(
        update(Message)
        .where(Message.id == message.id)
        .values(
            status=MessageStatus.SENDING,
            claimed_at=NOW,
            handed_over_at=NOW + dt.timedelta(seconds=1) if handed_over else None,
            backend=backend,
        )
    )
    session.commit()
    return message


def _recover(session: Session, check: AcceptanceCheck | None = None) -> RecoverySummary:
    summary = recover_stale_messages(session, LATER, STALE, check=check)
    session.commit()
    return summary


def test_a_message_never_handed_over_goes_back_in_the_queue_and_out_once(
    session, add_message, renderer
):
    never = _stuck(session, add_message(), handed_over=False)
    handed = _stuck(session, add_message(), handed_over=True, backend="smtp")
    assert _recover(session) == RecoverySummary(requeued=1, unknown=1)
    row = _reload(session, never)
    assert (row.status, row.attempts, row.scheduled_at) == (MessageStatus.QUEUED, 1, NOW)
    assert row.error == (
        f"re-queued by recovery: claimed at {NOW.isoformat()} by a worker that stopped before "
        "handing it over"
    )
    assert _reload(session, handed).status is MessageStatus.UNKNOWN

    mailer = RecordingMailer()
    deliver_messages(session, mailer, renderer, None, LATER, **SENDER)
    assert [email.message_id for email in mailer.sent] == [never.id]
    assert _reload(session, never).status is MessageStatus.SENT
    assert _recover(session) == RecoverySummary()  # nothing left to settle


def _outbox_file(outbox: Path, message: Message) -> Path:
    email = OutgoingEmail(
        message_id=message.id,
        to_email="x@example.org",
        to_name="",
        from_email="team@example.org",
        from_name="",
        subject="",
        html="",
        text="",
        journey_key=message.journey_key,
        step_id=message.step_id,
    )
    return outbox / outbox_file_name(email)


def test_the_outbox_file_settles_a_handed_over_message(session, add_message, tmp_path):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    written = _stuck(session, add_message(), handed_over=True, backend="outbox")
    _outbox_file(outbox, written).write_bytes(b"Subject: hi\r\n\r\nhi\r\n")
    missing = _stuck(session, add_message(), handed_over=True, backend="outbox")
    elsewhere = _stuck(session, add_message(), handed_over=True, backend="smtp")

    assert _recover(session, OutboxMailer(outbox)) == RecoverySummary(sent=1, requeued=1, unknown=1)
    row = _reload(session, written)
    assert (row.status, row.sent_at, row.error) == (
        MessageStatus.SENT,
        NOW + dt.timedelta(seconds=1),
        None,
    )
    row = _reload(session, missing)
    assert (row.status, row.handed_over_at) == (MessageStatus.QUEUED, None)
    assert row.error.startswith("re-queued by recovery: handed to outbox at ")
    assert row.error.endswith(", which does not have it")
    assert _reload(session, elsewhere).status is MessageStatus.UNKNOWN  # the outbox cannot say


def test_without_its_folder_the_outbox_cannot_tell(session, add_message, tmp_path):
    message = _stuck(session, add_message(), handed_over=True, backend="outbox")
    assert _recover(session, OutboxMailer(tmp_path / "moved")) == RecoverySummary(unknown=1)
    assert _reload(session, message).status is MessageStatus.UNKNOWN


def test_the_outbox_settles_an_unknown_message_later(session, add_message, tmp_path):
    outbox = tmp_path / "outbox"
    message = _stuck(session, add_message(), handed_over=True, backend="outbox")
    assert _recover(session) == RecoverySummary(unknown=1)  # no word from any backend
    outbox.mkdir()
    _outbox_file(outbox, message).write_bytes(b"Subject: hi\r\n\r\nhi\r\n")
    assert _recover(session, OutboxMailer(outbox)) == RecoverySummary(sent=1)
    assert _reload(session, message).status is MessageStatus.SENT


def test_only_the_outbox_backend_has_a_check(tmp_path):
    outbox = Settings(data_dir=tmp_path, mail_backend="outbox")
    check = acceptance_check_for(outbox)
    assert isinstance(check, OutboxMailer)
    assert check.outbox_dir == outbox.resolved_outbox_dir
    assert isinstance(check, AcceptanceCheck)
    assert acceptance_check_for(Settings(data_dir=tmp_path, mail_backend="smtp")) is None


class RecoveringRenderer:
    """A renderer during whose work another process's recovery takes the claim back."""

    def __init__(self, renderer, database_url: str):
        self.renderer = renderer
        self.database_url = database_url

    def render_message(self, message, member, *, now):
        engine = create_database_engine(self.database_url)
        try:
            with open_session(engine) as other:
                # Much later: the claim looks abandoned.
                recover_stale_messages(other, LATER + dt.timedelta(days=1), STALE)
                other.commit()
        finally:
            engine.dispose()
        return self.renderer.render_message(message, member, now=now)


def test_a_slow_worker_does_not_send_what_recovery_took_back(
    session, add_message, renderer, database_url
):
    message = add_message()
    mailer = RecordingMailer()
    slow = RecoveringRenderer(renderer, database_url)
    summary = deliver_messages(session, mailer, slow, [message.id], NOW, **SENDER)
    row = _reload(session, message)
    if session.get_bind().dialect.name == "postgresql":
        # The claim is committed with the hand-off: recovery never saw it (the row was locked,
        # still queued to others), so the worker keeps it and sends it, once.
        assert [email.message_id for email in mailer.sent] == [message.id]
        assert summary.sent == 1
        assert row.status is MessageStatus.SENT
        return
    assert mailer.sent == []
    assert summary.sent == 0
    assert (row.status, row.handed_over_at) == (MessageStatus.QUEUED, None)


# --- an operator's word ---------------------------------------------------------------------


def test_an_operator_lists_and_resolves_unknown_messages(session, add_message, renderer):
    first = _stuck(session, add_message(email="ada@example.org"), handed_over=True, backend="smtp")
    second = _stuck(session, add_message(), handed_over=True, backend="smtp")
    queued = add_message()
    _recover(session)

    listed = unknown_messages(session)
    assert [(m.id, m.backend, m.claimed_at) for m in listed] == [
        (first.id, "smtp", NOW),
        (second.id, "smtp", NOW),
    ]
    assert listed[0].to_email == "ada@example.org"
    assert listed[0].handed_over_at == NOW + dt.timedelta(seconds=1)
    assert "no provider event" in listed[0].error
    assert [m.id for m in unknown_messages(session, limit=1)] == [first.id]

    assert resolve_unknown(session, [first.id, queued.id], "sent", LATER) == [first.id]
    assert resolve_unknown(session, [second.id], "requeue", LATER) == [second.id]
    session.commit()
    row = _reload(session, first)
    assert (row.status, row.sent_at, row.error) == (
        MessageStatus.SENT,
        NOW + dt.timedelta(seconds=1),
        None,
    )
    row = _reload(session, second)
    assert (row.status, row.scheduled_at, row.error) == (MessageStatus.QUEUED, LATER, None)
    assert _reload(session, queued).status is MessageStatus.QUEUED
    assert unknown_messages(session) == []
    assert resolve_unknown(session, [first.id], "requeue", LATER) == []  # settled already

    mailer = RecordingMailer()
    deliver_messages(session, mailer, renderer, None, LATER, **SENDER)
    assert sorted(email.message_id for email in mailer.sent) == sorted([second.id, queued.id])


def test_recovery_reads_the_hand_off_of_the_outbox_it_handed_to(session, add_message, tmp_path):
    """A message handed over with HandedOver's fields: the check gets what names the file."""
    seen: list[HandedOver] = []

    class Spy:
        backend = "outbox"

        def holds(self, message: HandedOver) -> bool | None:
            seen.append(message)
            return None

    message = _stuck(session, add_message(step_id="hello"), handed_over=True, backend="outbox")
    _recover(session, Spy())
    assert seen == [
        HandedOver(
            message_id=message.id,
            journey_key="welcome",
            step_id="hello",
            backend="outbox",
            handed_over_at=NOW + dt.timedelta(seconds=1),
        )
    ]


def test_a_message_whose_worker_always_stops_fails_after_the_last_attempt(session, add_message):
    """A message that crashes or hangs its worker before the hand-off must not come back forever."""
    message = add_message()
    for attempt in range(1, 4):
        _stuck(session, message, handed_over=False)
        summary = recover_stale_messages(session, LATER, STALE, max_attempts=3)
        session.commit()
        if attempt < 3:
            assert summary == RecoverySummary(requeued=1)
            assert _reload(session, message).attempts == attempt
    assert summary == RecoverySummary(failed=1)
    row = _reload(session, message)
    assert (row.status, row.attempts) == (MessageStatus.FAILED, 3)
    assert row.error.startswith("gave up after 3 attempts, its worker stopped each time: claimed ")


def test_an_operators_resolution_is_logged(session, add_message, caplog):
    message = _stuck(session, add_message(), handed_over=True, backend="smtp")
    _recover(session)
    with caplog.at_level("WARNING", logger="nurture.delivery.worker"):
        resolve_unknown(session, [message.id], "requeue", LATER)
    assert f"an operator resolved 1 unknown messages as re-queued: {message.id}" in caplog.text
