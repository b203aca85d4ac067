"""Exactly once under failure: a killed worker, two workers at once, injected backend faults."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.delivery import DeliveryResult, DeliverySummary, OutgoingEmail, deliver_messages
from nurture.delivery.worker import RecoverySummary, RetryPolicy, recover_stale_messages
from nurture.errors import DeliveryError, PermanentDeliveryError
from nurture.storage import open_session
from nurture.storage.models import (
    Enrollment,
    Journey,
    Member,
    Message,
    MessageStatus,
    ProviderEvent,
)

from .conftest import NOW, SECRET, make_renderer

REPO = Path(__file__).resolve().parents[2]
SENDER = {"sender_email": "team@example.org", "sender_name": "Team", "suppression_salt": SECRET}
LATER = NOW + dt.timedelta(hours=1)
STALE = dt.timedelta(minutes=30)


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A one-line email template: these tests are about delivery, not rendering."""
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "note.html.j2").write_text("<p>Hello {{ member.first_name }}</p>", encoding="utf-8")
    (folder / "note.txt.j2").write_text("Hello {{ member.first_name }}", encoding="utf-8")
    return folder


def queue_messages(session: Session, count: int) -> list[int]:
    """Queue ``count`` messages due at ``NOW``, one per member, in one transaction."""
    journey = Journey(
        key="note", version=1, definition_hash="h", definition={}, source_path="note.yaml"
    )
    members = [
        Member(email=f"m{i}@example.org", first_name=f"M{i}", joined_at=NOW) for i in range(count)
    ]
    session.add_all([journey, *members])
    session.flush()
    enrollments = [
        Enrollment(journey_id=journey.id, journey_key="note", member_id=member.id)
        for member in members
    ]
    session.add_all(enrollments)
    session.flush()
    messages = [
        Message(
            enrollment_id=enrollment.id,
            step_id="hello",
            member_id=enrollment.member_id,
            journey_key="note",
            template="note",
            subject="Hi",
            context={},
            scheduled_at=NOW,
        )
        for enrollment in enrollments
    ]
    session.add_all(messages)
    session.commit()
    return [message.id for message in messages]


def statuses(session: Session) -> dict[int, MessageStatus]:
    rows = session.execute(select(Message.id, Message.status)).all()
    return {message_id: status for message_id, status in rows}


# --- a worker killed mid-batch ----------------------------------------------------------------

WORKER = """
import datetime as dt, os, sys, time
from pathlib import Path
from nurture.delivery import DeliveryResult, deliver_messages
from nurture.storage import create_database_engine, open_session
from tests.delivery.conftest import SECRET, make_renderer

url, outbox, templates, now = sys.argv[1:5]

class FileMailer:
    def send(self, email):
        # The provider accepts the email at once and is slow to say so.
        Path(outbox, f"{email.message_id}.{os.getpid()}.{time.monotonic_ns()}").touch()
        time.sleep(0.1)
        return DeliveryResult(provider_message_id=f"p-{email.message_id}", backend="file")

with open_session(create_database_engine(url)) as session:
    deliver_messages(
        session, FileMailer(), make_renderer(Path(templates)), None,
        dt.datetime.fromisoformat(now), sender_email="team@example.org", sender_name="Team",
        suppression_salt=SECRET, concurrency=4,
    )
"""


class FileMailer:
    """Like the worker's mailer above: one file per email handed to the provider."""

    def __init__(self, outbox: Path):
        self.outbox = outbox

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        (self.outbox / f"{email.message_id}.{os.getpid()}.{time.monotonic_ns()}").touch()
        return DeliveryResult(provider_message_id=f"p-{email.message_id}", backend="file")


def sends_per_message(outbox: Path) -> Counter[int]:
    return Counter(int(path.name.split(".")[0]) for path in outbox.iterdir())


def _run_and_kill(database_url: str, outbox: Path, templates: Path, after_sends: int) -> None:
    """Start a worker process and SIGKILL it once ``after_sends`` emails went out."""
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, database_url, str(outbox), str(templates), NOW.isoformat()],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(outbox.iterdir())) < after_sends:
            if worker.poll() is not None:
                pytest.fail(f"the worker ended before it was killed: {worker.stderr.read()!r}")
            if time.monotonic() > deadline:
                pytest.fail("the worker sent nothing within a minute")
            time.sleep(0.005)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
        worker.stderr.close()
    assert worker.returncode == -signal.SIGKILL


def test_a_worker_killed_mid_batch_and_restarted_sends_each_message_once(
    session, database_url, tmp_path, templates
):
    ids = queue_messages(session, 60)
    outbox = tmp_path / "outbox"
    outbox.mkdir()

    _run_and_kill(database_url, outbox, templates, after_sends=8)

    at_kill = statuses(session)
    stuck = sorted(i for i, status in at_kill.items() if status is MessageStatus.SENDING)
    never_claimed = {i for i, status in at_kill.items() if status is MessageStatus.QUEUED}
    assert never_claimed, "the worker was killed mid-batch"
    assert 0 < len(stuck) <= 4  # at most the in-flight ones: the pool holds 4
    assert set(at_kill.values()) <= {
        MessageStatus.SENT,
        MessageStatus.SENDING,
        MessageStatus.QUEUED,
    }

    # The hand-off is committed before the mailer is called: a message claimed but not handed
    # over never reached the provider, and recovery puts it back in the queue.
    handed = set(
        session.scalars(
            select(Message.id).where(
                Message.status == MessageStatus.SENDING, Message.handed_over_at.is_not(None)
            )
        )
    )
    not_handed = set(stuck) - handed
    handed_over = sends_per_message(outbox)
    assert not any(handed_over[i] for i in not_handed)

    # The provider reports on some of the emails it accepted (its webhook); not on the others.
    reported = [i for i in sorted(handed) if handed_over[i]][::2]
    for message_id in reported:
        session.add(
            ProviderEvent(
                provider="sendgrid",
                event_id=f"evt-{message_id}",
                message_id=message_id,
                type="processed",
                occurred_at=NOW,
            )
        )
    session.commit()

    recovered = recover_stale_messages(session, LATER, STALE)
    session.commit()
    assert recovered == RecoverySummary(
        sent=len(reported), unknown=len(handed) - len(reported), requeued=len(not_handed)
    )

    restart = deliver_messages(
        session, FileMailer(outbox), make_renderer(templates), None, LATER, concurrency=4, **SENDER
    )
    assert restart == DeliverySummary(sent=len(never_claimed) + len(not_handed))

    final = statuses(session)
    sends = sends_per_message(outbox)
    assert max(sends.values()) == 1  # nothing went out twice
    unknown = {i for i, status in final.items() if status is MessageStatus.UNKNOWN}
    assert unknown == handed - set(reported)  # only handed-over ones the provider never confirmed
    sent = {i for i, status in final.items() if status is MessageStatus.SENT}
    assert sent == set(ids) - unknown
    assert all(sends[i] == 1 for i in sent)  # every sent message went out exactly once
    assert never_claimed | not_handed <= sent


# --- two workers at once ----------------------------------------------------------------------


class CountingMailer:
    """Thread-safe: counts the sends of each message."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sends: Counter[int] = Counter()

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        time.sleep(0.001)  # let the workers interleave
        with self.lock:
            self.sends[email.message_id] += 1
        return DeliveryResult(provider_message_id=f"p-{email.message_id}", backend="memory")


@pytest.mark.parametrize("given_ids", [False, True], ids=["queue", "same-ids"])
def test_two_workers_never_send_a_message_twice(session, engine, templates, given_ids):
    """Two workers, each with its own connection, on one queue (or handed the same ids).

    On PostgreSQL (``NURTURE_TEST_POSTGRES_URL``) the claims lock with ``SKIP LOCKED``; on
    SQLite they are serialised by its single writer.
    """
    count = 200 if engine.dialect.name == "postgresql" else 40  # SQLite: one writer, slow commits
    ids = queue_messages(session, count)
    mailer = CountingMailer()
    start = threading.Barrier(2)
    summaries: list[DeliverySummary] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with open_session(engine) as own:
                start.wait()
                summaries.append(
                    deliver_messages(
                        own,
                        mailer,
                        make_renderer(templates),
                        ids if given_ids else None,
                        NOW,
                        concurrency=4,
                        **SENDER,
                    )
                )
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    assert sorted(mailer.sends) == ids
    assert set(mailer.sends.values()) == {1}
    total = summaries[0] + summaries[1]
    assert total == DeliverySummary(sent=count, skipped=count if given_ids else 0)
    assert set(statuses(session).values()) == {MessageStatus.SENT}


# --- injected faults --------------------------------------------------------------------------


def too_many_requests(retry_after: float) -> DeliveryError:
    return DeliveryError("429 Too Many Requests", retry_after=retry_after)


SERVER_ERROR = DeliveryError("500 Internal Server Error")
TIMEOUT = DeliveryError("timeout after 10 s")
BAD_REQUEST = PermanentDeliveryError("400 Bad Request: invalid 'to' address")
OK = None

SCRIPTS: list[list[DeliveryError | None]] = [
    [too_many_requests(120), OK],
    [SERVER_ERROR, SERVER_ERROR, OK],
    [TIMEOUT, OK],
    [BAD_REQUEST],
    [SERVER_ERROR, TIMEOUT, SERVER_ERROR, SERVER_ERROR, OK],  # one try too many
    [too_many_requests(900), SERVER_ERROR, OK],
    [OK],
]


class ScriptedMailer:
    """Answers each message's sends from its script: an error to raise, or None to accept."""

    def __init__(self, scripts: dict[int, list[DeliveryError | None]]):
        self.lock = threading.Lock()
        self.scripts = {message_id: list(script) for message_id, script in scripts.items()}
        self.accepted: Counter[int] = Counter()
        self.last_error: dict[int, DeliveryError] = {}

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        with self.lock:
            outcome = self.scripts[email.message_id].pop(0)
            if outcome is not None:
                self.last_error[email.message_id] = outcome
                raise outcome
            self.accepted[email.message_id] += 1
        return DeliveryResult(provider_message_id=f"p-{email.message_id}", backend="memory")


def test_injected_faults_end_sent_or_failed_with_a_reason(session, templates):
    ids = queue_messages(session, len(SCRIPTS))
    mailer = ScriptedMailer(dict(zip(ids, SCRIPTS, strict=True)))
    retry = RetryPolicy(max_attempts=4, base_seconds=10, max_seconds=60)
    renderer, rng = make_renderer(templates), random.Random(0)
    now, runs = NOW, 0
    while True:
        runs += 1
        assert runs <= 20, "the queue never drained"
        mailer.last_error.clear()
        deliver_messages(
            session, mailer, renderer, None, now, concurrency=3, retry=retry, rng=rng, **SENDER
        )
        queued = session.scalars(
            select(Message)
            .where(Message.status == MessageStatus.QUEUED)
            .execution_options(populate_existing=True)
        ).all()
        retried = [message for message in queued if message.id in mailer.last_error]
        for message in retried:  # check the backoff of each message retried in this run
            error = mailer.last_error[message.id]
            delay = (message.scheduled_at - now).total_seconds()
            ceiling = min(retry.max_seconds, retry.base_seconds * 2 ** (message.attempts - 1))
            assert delay >= ceiling / 2
            if error.retry_after is not None:
                assert delay >= error.retry_after  # the rate-limit reset is honoured
            else:
                assert delay <= ceiling
            assert message.error == str(error)
        if not queued:
            break
        now = min(message.scheduled_at for message in queued)

    rows = {
        row.id: row
        for row in session.scalars(select(Message).execution_options(populate_existing=True))
    }
    outcome = {i: (rows[i].status, rows[i].attempts, rows[i].error) for i in ids}
    sent = MessageStatus.SENT
    failed = MessageStatus.FAILED
    assert [outcome[i] for i in ids] == [
        (sent, 2, None),
        (sent, 3, None),
        (sent, 2, None),
        (failed, 1, "400 Bad Request: invalid 'to' address"),
        (failed, 4, "gave up after 4 attempts: 500 Internal Server Error"),
        (sent, 3, None),
        (sent, 1, None),
    ]
    assert mailer.accepted == Counter({i: 1 for i in ids if rows[i].status is sent})
    assert session.scalar(select(func.count()).where(Message.status == MessageStatus.SENDING)) == 0
