import datetime as dt
import email
import email.policy
import random
import threading

import pytest
from sqlalchemy import event, select, update

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
from nurture.delivery.worker import (
    RetryPolicy,
    _Result,
    _senders,
    _write_results,
    claim_messages,
)
from nurture.errors import ConfigurationError, DeliveryError, PermanentDeliveryError
from nurture.storage import open_session
from nurture.storage.models import Journey, Member, Message, MessageStatus

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
    message = add_message(consent_status="denied")
    mailer = RecordingMailer()
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(suppressed=1)
    assert mailer.sent == []
    assert "consent is 'denied', not 'granted'" in _reload(session, message.id).error


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


def test_transient_error_requeues_the_message_for_later(session, add_message, renderer):
    message = add_message()
    mailer = RecordingMailer(DeliveryError("connection reset"))
    retry = RetryPolicy(max_attempts=3, base_seconds=60, max_seconds=3600)
    options = {**SENDER, "retry": retry, "rng": random.Random(1)}
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **options)
    assert summary == DeliverySummary(retried=1)
    row = _reload(session, message.id)
    assert (row.status, row.attempts, row.error) == (MessageStatus.QUEUED, 1, "connection reset")
    assert NOW + dt.timedelta(seconds=30) <= row.scheduled_at <= NOW + dt.timedelta(seconds=60)

    mailer.error = None
    again = deliver_messages(session, mailer, renderer, [message.id], NOW, **options)
    assert again == DeliverySummary(skipped=1)  # not due before its backoff
    later = row.scheduled_at
    assert deliver_messages(session, mailer, renderer, [message.id], later, **options).sent == 1
    row = _reload(session, message.id)
    assert (row.status, row.attempts, row.error) == (MessageStatus.SENT, 2, None)


def test_unexpected_mailer_error_leaves_status_unknown(session, add_message, renderer, caplog):
    message = add_message()
    mailer = RecordingMailer(RuntimeError("boom"))
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(unknown=1)
    row = _reload(session, message.id)
    assert row.status is MessageStatus.UNKNOWN
    assert "boom" in row.error
    assert "may have gone out" in row.error
    assert "unexpected error from the mailer" in caplog.text


def test_error_texts_never_carry_the_address(session, add_message, renderer):
    permanent = add_message(email="zoe@example.org")
    mailer = RecordingMailer(PermanentDeliveryError("550 5.1.1 <ZOE@example.org>: unknown user"))
    deliver_messages(session, mailer, renderer, [permanent.id], NOW, **SENDER)
    error = _reload(session, permanent.id).error
    assert "example.org" not in error
    assert error == "550 5.1.1 <<recipient>>: unknown user"


def test_summaries_add_up():
    total = DeliverySummary(sent=1, skipped=2) + DeliverySummary(
        sent=2, failed=1, retried=3, unknown=1
    )
    assert total == DeliverySummary(sent=3, failed=1, skipped=2, retried=3, unknown=1)


def test_outbox_batch_then_index(session, add_message, renderer, tmp_path):
    count = 3
    ids = [add_message(step_id=f"step{i}").id for i in range(count)]
    mailer = OutboxMailer(tmp_path)
    deliver_messages(session, mailer, renderer, ids, NOW, **SENDER)
    page = write_outbox_index(tmp_path).read_text(encoding="utf-8")
    assert page.count(".eml</a>") == count
    statuses = session.scalars(select(Message.status).where(Message.id.in_(ids))).all()
    assert set(statuses) == {MessageStatus.SENT}


# --- claiming -----------------------------------------------------------------------------


def test_claim_takes_due_queued_messages_oldest_first(session, add_message):
    ids = [add_message().id for _ in range(4)]
    later = add_message(scheduled_at=NOW + dt.timedelta(hours=1))
    assert claim_messages(session, NOW, 3) == ids[:3]
    rows = session.scalars(select(Message).execution_options(populate_existing=True)).all()
    claimed = {row.id: row for row in rows if row.status is MessageStatus.SENDING}
    assert sorted(claimed) == ids[:3]
    assert {row.claimed_at for row in claimed.values()} == {NOW}
    assert claim_messages(session, NOW, 10) == [ids[3]]
    assert claim_messages(session, NOW, 10) == []
    assert _reload(session, later.id).status is MessageStatus.QUEUED


def test_claim_among_given_ids(session, add_message):
    ids = [add_message().id for _ in range(4)]
    assert claim_messages(session, NOW, 10, message_ids=[ids[3], ids[1]]) == [ids[1], ids[3]]
    assert claim_messages(session, NOW, 10, message_ids=[ids[1]]) == []
    assert claim_messages(session, NOW, 10, message_ids=[]) == []
    assert due_message_ids(session, NOW) == [ids[0], ids[2]]


def test_deliver_without_ids_works_the_whole_queue(session, add_message, renderer):
    ids = [add_message().id for _ in range(5)]
    add_message(scheduled_at=NOW + dt.timedelta(days=1))
    mailer = RecordingMailer()
    summary = deliver_messages(session, mailer, renderer, None, NOW, concurrency=2, **SENDER)
    assert summary == DeliverySummary(sent=5)
    assert sorted(sent.message_id for sent in mailer.sent) == ids


def test_an_empty_salt_fails_before_anything_is_claimed(session, add_message, renderer):
    message = add_message()
    options = {**SENDER, "suppression_salt": ""}
    with pytest.raises(ConfigurationError):
        deliver_messages(session, RecordingMailer(), renderer, [message.id], NOW, **options)
    assert _reload(session, message.id).status is MessageStatus.QUEUED


# --- backoff ------------------------------------------------------------------------------


def test_backoff_doubles_is_capped_and_jittered():
    policy = RetryPolicy(max_attempts=10, base_seconds=10, max_seconds=100)
    rng = random.Random(7)
    for attempts, ceiling in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delays = [policy.delay(attempts, None, rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered


def test_backoff_is_never_shorter_than_the_providers_retry_after():
    policy = RetryPolicy(base_seconds=1, max_seconds=10)
    assert policy.delay(1, 600, random.Random(0)) == 600
    assert policy.delay(1, 8, random.Random(0)) == 8
    assert 0.5 <= policy.delay(1, 0.1, random.Random(0)) <= 1


def test_backoff_is_reproducible_with_a_seeded_rng():
    policy = RetryPolicy()
    first = [policy.delay(n, None, random.Random(3)) for n in range(1, 6)]
    assert first == [policy.delay(n, None, random.Random(3)) for n in range(1, 6)]


def test_transient_errors_give_up_after_max_attempts(session, add_message, renderer):
    message = add_message()
    mailer = RecordingMailer(DeliveryError("503 service unavailable"))
    retry = RetryPolicy(max_attempts=3, base_seconds=1, max_seconds=1)
    when = NOW
    outcomes = []
    for _ in range(3):
        summary = deliver_messages(session, mailer, renderer, None, when, retry=retry, **SENDER)
        outcomes.append(summary)
        when += dt.timedelta(seconds=2)
    assert outcomes == [DeliverySummary(retried=1)] * 2 + [DeliverySummary(failed=1)]
    row = _reload(session, message.id)
    assert (row.status, row.attempts) == (MessageStatus.FAILED, 3)
    assert row.error == "gave up after 3 attempts: 503 service unavailable"


# --- concurrency --------------------------------------------------------------------------


class BarrierMailer(RecordingMailer):
    """Each send waits until ``parties`` sends are under way: it fails unless they overlap."""

    def __init__(self, parties: int):
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.barrier.wait()
            with self.lock:
                return super().send(email)
        finally:
            with self.lock:
                self.running -= 1


def test_sends_run_in_a_pool_of_the_configured_size(session, add_message, renderer):
    ids = [add_message().id for _ in range(8)]
    mailer = BarrierMailer(parties=4)
    summary = deliver_messages(session, mailer, renderer, ids, NOW, concurrency=4, **SENDER)
    assert summary == DeliverySummary(sent=8)
    assert mailer.most_at_once == 4
    assert sorted(sent.message_id for sent in mailer.sent) == ids


def test_concurrency_must_be_positive(session, renderer):
    with pytest.raises(ValueError, match="concurrency"):
        deliver_messages(session, RecordingMailer(), renderer, [], NOW, concurrency=0, **SENDER)


# --- checks right before the send ---------------------------------------------------------


def _set_definition(session, **definition) -> None:
    session.execute(update(Journey).values(definition=definition))
    session.commit()


def _unsubscribe(session, message: Message, *categories: str) -> None:
    session.execute(
        update(Member)
        .where(Member.id == message.member_id)
        .values(unsubscribed_categories=list(categories))
    )
    session.commit()


def test_a_category_unsubscribe_suppresses_that_category_only(session, add_message, renderer):
    message = add_message()
    _set_definition(session, category="promotion")
    _unsubscribe(session, message, "promotion")
    mailer = RecordingMailer()
    summary = deliver_messages(session, mailer, renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(suppressed=1)
    assert mailer.sent == []
    assert _reload(session, message.id).error == "member unsubscribed from 'promotion' emails"

    care = add_message()
    _set_definition(session, category="care")
    _unsubscribe(session, care, "promotion")
    assert deliver_messages(session, mailer, renderer, [care.id], NOW, **SENDER).sent == 1


def test_a_transactional_journey_ignores_category_unsubscribes(session, add_message, renderer):
    message = add_message()
    _set_definition(session, category="care", transactional=True)
    _unsubscribe(session, message, "care", "promotion")
    summary = deliver_messages(session, RecordingMailer(), renderer, [message.id], NOW, **SENDER)
    assert summary == DeliverySummary(sent=1)


def test_an_unsubscribe_during_a_batch_is_honoured_before_the_next_send(
    session, engine, add_message, renderer
):
    """The first email's unsubscribe link is used while the batch runs: the second is held."""
    first = add_message(email="ada@example.org")
    second = add_message(member=session.get(Member, first.member_id), step_id="b")

    class UnsubscribingMailer(RecordingMailer):
        def send(self, email: OutgoingEmail) -> DeliveryResult:
            result = super().send(email)
            with open_session(engine) as other:  # the web app, on its own connection
                suppress_address(other, "ada@example.org", SECRET, "unsubscribed", "one-click")
                other.commit()
            return result

    mailer = UnsubscribingMailer()
    summary = deliver_messages(session, mailer, renderer, [first.id, second.id], NOW, **SENDER)
    assert summary == DeliverySummary(sent=1, suppressed=1)
    assert [sent.message_id for sent in mailer.sent] == [first.id]
    row = _reload(session, second.id)
    assert (row.status, row.error) == (
        MessageStatus.SUPPRESSED,
        "address is in the suppression list",
    )


def test_a_send_without_an_answer_waits_for_the_providers_events(session, add_message, renderer):
    message = add_message()
    mailer = RecordingMailer(DeliveryError("read timed out", ambiguous=True))
    retry = RetryPolicy(max_attempts=3, base_seconds=60, ambiguous_seconds=1800)
    options = {**SENDER, "retry": retry, "rng": random.Random(1)}
    assert deliver_messages(session, mailer, renderer, [message.id], NOW, **options).retried == 1
    row = _reload(session, message.id)
    assert row.status == MessageStatus.QUEUED
    assert row.scheduled_at >= NOW + dt.timedelta(seconds=1800)


def test_claims_record_the_wall_clock_when_given(session, add_message, renderer):
    message = add_message()
    late = NOW + dt.timedelta(minutes=45)  # a chunk sent long after the run's start
    options = {**SENDER, "clock": lambda: late}
    mailer = RecordingMailer(RuntimeError("crash after the provider took it"))
    deliver_messages(session, mailer, renderer, [message.id], NOW, **options)
    assert _reload(session, message.id).claimed_at == late


def test_the_brand_reply_to_goes_on_every_email(session, add_message, renderer):
    message = add_message()
    mailer = RecordingMailer()
    options = {**SENDER, "reply_to": "hello@example.org"}
    assert deliver_messages(session, mailer, renderer, [message.id], NOW, **options).sent == 1
    assert mailer.sent[0].reply_to == "hello@example.org"


def _pause(session, message: Message, until: dt.datetime | None) -> None:
    session.execute(update(Member).where(Member.id == message.member_id).values(paused_until=until))
    session.commit()


def test_a_pause_suppresses_until_it_ends_but_not_transactional_mail(
    session, add_message, renderer
):
    paused = add_message()
    _pause(session, paused, NOW + dt.timedelta(weeks=1))
    mailer = RecordingMailer()
    summary = deliver_messages(session, mailer, renderer, [paused.id], NOW, **SENDER)
    assert summary == DeliverySummary(suppressed=1)
    assert mailer.sent == []
    assert _reload(session, paused.id).error == "member paused emails on the preference page"

    ended = add_message()
    _pause(session, ended, NOW - dt.timedelta(seconds=1))
    assert deliver_messages(session, mailer, renderer, [ended.id], NOW, **SENDER).sent == 1

    account = add_message()
    _pause(session, account, NOW + dt.timedelta(weeks=4))
    _set_definition(session, transactional=True)
    assert deliver_messages(session, mailer, renderer, [account.id], NOW, **SENDER).sent == 1


# --- statements and sender pools ------------------------------------------------------------


def test_a_claim_is_one_statement(session, add_message):
    ids = [add_message().id for _ in range(5)]
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        claimed = claim_messages(session, NOW, 3, message_ids=ids)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert claimed == ids[:3]
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("UPDATE")


def test_sent_results_are_written_only_while_sending(session, add_message, caplog):
    first, second = add_message().id, add_message().id
    claim_messages(session, NOW, 10)
    # Recovery settled the second meanwhile: its late result is not recorded.
    session.execute(
        update(Message).where(Message.id == second).values(status=MessageStatus.UNKNOWN)
    )
    results = [
        _Result(
            message_id,
            "sent",
            {
                "status": MessageStatus.SENT,
                "sent_at": NOW,
                "attempts": 2,
                "backend": "memory",
                "provider_message_id": f"mem-{message_id}" if message_id == first else None,
                "error": None,
            },
        )
        for message_id in (first, second)
    ]
    with caplog.at_level("WARNING", logger="nurture.delivery.worker"):
        _write_results(session, results)
    session.commit()
    written = _reload(session, first)
    assert (written.status, written.sent_at, written.attempts) == (MessageStatus.SENT, NOW, 2)
    assert (written.backend, written.provider_message_id) == ("memory", f"mem-{first}")
    assert _reload(session, second).status is MessageStatus.UNKNOWN
    if session.get_bind().dialect.supports_sane_multi_rowcount:
        assert "1 of 2 sent messages were no longer 'sending'" in caplog.text


def test_sender_threads_are_kept_from_call_to_call(session, add_message, renderer):
    threads: set[int] = set()

    class ThreadRecorder(RecordingMailer):
        def send(self, email: OutgoingEmail) -> DeliveryResult:
            threads.add(threading.get_ident())
            return super().send(email)

    for _ in range(3):
        ids = [add_message().id for _ in range(4)]
        deliver_messages(session, ThreadRecorder(), renderer, ids, NOW, concurrency=2, **SENDER)
    assert 1 <= len(threads) <= 2


def test_calls_at_the_same_time_get_pools_of_their_own():
    with _senders(3) as first, _senders(3) as second:
        assert first is not second
    with _senders(3) as again:
        assert again in (first, second)
    _senders.forget()  # as in a forked child: the pools kept are dropped
    with _senders(3) as fresh:
        assert fresh not in (first, second)
    first.shutdown()
    second.shutdown()
