import datetime as dt
import email
import email.policy

from sqlalchemy import select, update

from nurture.delivery import (
    DeliveryResult,
    DeliverySummary,
    OutboxMailer,
    OutgoingEmail,
    deliver_messages,
    due_message_ids,
    suppress_address,
    write_outbox_index,
)
from nurture.errors import DeliveryError, PermanentDeliveryError
from nurture.storage.models import Journey, Message, MessageStatus

from .conftest import NOW, SECRET

SENDER = {
    "sender_email": "community@example.org",
    "sender_name": "The team",
    "suppression_salt": SECRET,
}


class RecordingMailer:
    """A mailer that records what it is given; can be told to fail."""

    backend = "memory"

    def __init__(self, error: Exception | None = None):
        self.sent: list[OutgoingEmail] = []
        self.error = error

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        if self.error is not None:
            raise self.error
        self.sent.append(email)
        return DeliveryResult(provider_message_id=f"mem-{email.message_id}", backend=self.backend)


def _reload(session, message_id: int) -> Message:
    return session.get(Message, message_id, populate_existing=True)


def test_due_message_ids(session, add_message):
    first = add_message()
    later = add_message(scheduled_at=NOW + dt.timedelta(hours=1))
    second = add_message()
    session.execute(update(Message).where(Message.id == second.id).values(status="sent"))
    third = add_message()
    session.commit()
    assert due_message_ids(session, NOW) == [first.id, third.id]
    assert due_message_ids(session, NOW, limit=1) == [first.id]
    assert later.id in due_message_ids(session, NOW + dt.timedelta(hours=2))


def test_deliver_sends_and_records(session, add_message, renderer, tmp_path):
    message = add_message(language="fr", first_name="Zoé")
    mailer = OutboxMailer(tmp_path)
    summary = deliver_messages(
        session, mailer, renderer, due_message_ids(session, NOW), NOW, **SENDER
    )
    assert summary == DeliverySummary(sent=1)
    row = _reload(session, message.id)
    assert row.status is MessageStatus.SENT
    assert row.sent_at == NOW
    assert row.attempts == 1
    assert row.backend == "outbox"
    assert row.provider_message_id == f"<nurture.{message.id}@example.org>"
    assert row.error is None

    [path] = tmp_path.glob("*.eml")
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Welcome to Builders & Co, Zoé!"
    assert parsed["List-Unsubscribe"].startswith("<https://nurture.example.org/unsubscribe/")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["From"].addresses[0].display_name == "The team"
    assert "Bonjour Zoé" in parsed.get_body(preferencelist=("plain",)).get_content()
    assert "Pourquoi pour vous" in parsed.get_body(preferencelist=("html",)).get_content()
    assert "000" in write_outbox_index(tmp_path).read_text(encoding="utf-8")


def test_second_delivery_of_same_ids_sends_nothing(session, add_message, renderer):
    ids = [add_message().id, add_message().id]
    mailer = RecordingMailer()
    assert deliver_messages(session, mailer, renderer, ids, NOW, **SENDER).sent == 2
    again = deliver_messages(session, mailer, renderer, ids, NOW, **SENDER)
    assert again == DeliverySummary(skipped=2)
    assert [sent.message_id for sent in mailer.sent] == ids
    assert due_message_ids(session, NOW) == []


def test_message_stuck_in_sending_is_not_resent(session, add_message, renderer):
    message = add_message()
    session.execute(update(Message).where(Message.id == message.id).values(status="sending"))
    session.commit()
    mailer = RecordingMailer()
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(skipped=1)
    assert mailer.sent == []
    assert _reload(session, message.id).status is MessageStatus.SENDING
    assert due_message_ids(session, NOW) == []


def test_message_not_due_is_skipped(session, add_message, renderer):
    message = add_message(scheduled_at=NOW + dt.timedelta(days=1))
    mailer = RecordingMailer()
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(skipped=1)
    assert _reload(session, message.id).status is MessageStatus.QUEUED


def test_suppressed_address_is_not_sent(session, add_message, renderer):
    message = add_message(email="Gone@Example.org")
    suppress_address(session, "gone@example.org", SECRET, "unsubscribed", "one-click")
    session.commit()
    mailer = RecordingMailer()
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(suppressed=1)
    assert mailer.sent == []
    row = _reload(session, message.id)
    assert row.status is MessageStatus.SUPPRESSED
    assert "suppression list" in row.error


def test_member_without_consent_is_not_sent(session, add_message, renderer):
    message = add_message(consent_status="withdrawn")
    mailer = RecordingMailer()
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(suppressed=1)
    assert mailer.sent == []
    assert "withdrawn" in _reload(session, message.id).error


def _make_journey_transactional(session) -> None:
    session.execute(update(Journey).values(definition={"transactional": True}))
    session.commit()


def test_transactional_message_goes_to_a_member_without_consent(session, add_message, renderer):
    unknown = add_message(consent_status="unknown")
    denied = add_message(consent_status="denied")
    _make_journey_transactional(session)
    mailer = RecordingMailer()
    ids = [unknown.id, denied.id]
    summary = deliver_messages(session, mailer, renderer, ids, NOW, **SENDER)
    assert summary == DeliverySummary(sent=2)


def test_suppressed_address_gets_no_transactional_message(session, add_message, renderer):
    message = add_message(email="erased@example.org")
    _make_journey_transactional(session)
    suppress_address(session, "erased@example.org", SECRET, "erased", "erasure request")
    session.commit()
    mailer = RecordingMailer()
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(suppressed=1)
    assert mailer.sent == []
    assert "suppression list" in _reload(session, message.id).error


def test_the_suppression_list_is_read_with_the_salt_given(session, add_message, renderer):
    message = add_message(email="gone@example.org")
    suppress_address(session, "gone@example.org", "another salt", "unsubscribed")
    session.commit()
    summary = deliver_messages(session, RecordingMailer(), renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(sent=1)  # a hash under another salt matches nothing


def test_template_error_fails_the_message(session, add_message, renderer):
    broken = add_message(subject="Hi {{ nobody }}")
    missing = add_message(template="no_such_template")
    fine = add_message()
    mailer = RecordingMailer()
    ids = [broken.id, missing.id, fine.id]
    summary = deliver_messages(session, mailer, renderer, ids, NOW, **SENDER)
    assert summary == DeliverySummary(sent=1, failed=2)
    assert [sent.message_id for sent in mailer.sent] == [fine.id]
    row = _reload(session, broken.id)
    assert row.status is MessageStatus.FAILED
    assert "'nobody' is undefined" in row.error
    assert row.attempts == 0
    assert "no_such_template.html.j2" in _reload(session, missing.id).error


def test_permanent_error_fails_the_message(session, add_message, renderer):
    message = add_message()
    mailer = RecordingMailer(PermanentDeliveryError("invalid address"))
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(failed=1)
    row = _reload(session, message.id)
    assert (row.status, row.attempts, row.error) == (MessageStatus.FAILED, 1, "invalid address")


def test_transient_error_requeues_the_message(session, add_message, renderer):
    message = add_message()
    mailer = RecordingMailer(DeliveryError("connection reset"))
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(retried=1)
    row = _reload(session, message.id)
    assert (row.status, row.attempts, row.error) == (MessageStatus.QUEUED, 1, "connection reset")
    mailer.error = None
    assert deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER).sent == 1
    row = _reload(session, message.id)
    assert (row.status, row.attempts, row.error) == (MessageStatus.SENT, 2, None)


def test_unexpected_mailer_error_leaves_status_unknown(session, add_message, renderer, caplog):
    message = add_message()
    mailer = RecordingMailer(RuntimeError("boom"))
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(failed=1)
    row = _reload(session, message.id)
    assert row.status is MessageStatus.UNKNOWN
    assert "boom" in row.error
    assert "unexpected error from the mailer" in caplog.text


def test_summaries_add_up():
    total = DeliverySummary(sent=1, skipped=2) + DeliverySummary(sent=2, failed=1, retried=3)
    assert total == DeliverySummary(sent=3, failed=1, skipped=2, retried=3)


def test_outbox_batch_then_index(session, add_message, renderer, tmp_path):
    count = 3
    ids = [add_message(step_id=f"step{i}").id for i in range(count)]
    mailer = OutboxMailer(tmp_path)
    deliver_messages(session, mailer, renderer, ids, NOW, **SENDER)
    page = write_outbox_index(tmp_path).read_text(encoding="utf-8")
    assert page.count(".eml</a>") == count
    statuses = session.scalars(select(Message.status).where(Message.id.in_(ids))).all()
    assert set(statuses) == {MessageStatus.SENT}
