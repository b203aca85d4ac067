"""Crash trials: a worker killed (SIGKILL) at random points, recovered, restarted, until the
queue drains: every message is delivered exactly once.

On the outbox backend every message ends ``sent`` with exactly one ``.eml``, settled by the
recovery alone. On SMTP (a local aiosmtpd sink), what recovery cannot know, a message handed to
the server when the worker died, ends ``unknown``, and an operator settles it with
``nurture deliveries resolve`` after looking at the server's log: the trial plays that operator
by reading the sink's.

Each round runs a real worker process with the real ``OutboxMailer`` (slowed a little so kills
land between claim, hand-off, file and record), kills it at a random moment, then runs the
recovery a deliver run starts with, outbox check included. A send that finds its message's file
already there is a duplicate: the worker journals it before writing. More rounds:
``NURTURE_CRASH_KILLS=100``; ``NURTURE_CRASH_SEED`` replays a failing run.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.delivery import OutboxMailer, SmtpMailer, deliver_messages
from nurture.delivery.worker import RecoverySummary, recover_stale_messages, resolve_unknown
from nurture.storage.models import Message, MessageStatus

from .conftest import NOW, make_renderer
from .mail_helpers import HOST, free_port
from .test_exactly_once import REPO, SENDER, queue_messages, statuses

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("NURTURE_CRASH_KILLS", "4"))
MESSAGES = 10 + 6 * KILLS  # enough that the queue rarely drains before the last kill
STALE = dt.timedelta(minutes=30)

WORKER = """
import datetime as dt, os, random, sys, time
from pathlib import Path
from nurture.delivery import OutboxMailer, deliver_messages, outbox_file_name
from nurture.storage import create_database_engine, open_session
from tests.delivery.conftest import SECRET, make_renderer

url, outbox, journal, templates, now, seed = sys.argv[1:7]
rng = random.Random(int(seed))

class SlowOutbox(OutboxMailer):
    def send(self, email):
        time.sleep(rng.uniform(0, 0.01))
        if (self.outbox_dir / outbox_file_name(email)).exists():  # out already: a duplicate
            with open(journal, "a", encoding="utf-8") as log:
                log.write(f"{email.message_id}\\n")
                log.flush()
                os.fsync(log.fileno())
        result = super().send(email)
        time.sleep(rng.uniform(0, 0.01))
        return result

class SlowRenderer:
    def __init__(self, renderer):
        self.renderer = renderer
    def render_message(self, message, member, *, now):
        time.sleep(rng.uniform(0, 0.005))  # widens the claim -> hand-off window
        return self.renderer.render_message(message, member, now=now)

with open_session(create_database_engine(url)) as session:
    deliver_messages(
        session, SlowOutbox(outbox), SlowRenderer(make_renderer(Path(templates))), None,
        dt.datetime.fromisoformat(now), sender_email="team@example.org", sender_name="Team",
        suppression_salt=SECRET, concurrency=4,
    )
"""


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "note.html.j2").write_text("<p>Hello {{ member.first_name }}</p>", encoding="utf-8")
    (folder / "note.txt.j2").write_text("Hello {{ member.first_name }}", encoding="utf-8")
    return folder


def _emails(outbox: Path) -> list[Path]:
    return sorted(outbox.glob("*.eml"))


def _kill_at_random(arguments: list[str], delivered: Callable[[], int], rng) -> bool:
    """Start a worker, SIGKILL it once a few more emails went out; False if it finished first."""
    target = delivered() + rng.randint(1, 6)  # emails out before the kill...
    pause = rng.uniform(0, 0.03)  # ...and a little more
    worker = subprocess.Popen(
        [sys.executable, "-c", *arguments, str(rng.randrange(2**32))],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while delivered() < target and worker.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail("the worker delivered nothing for two minutes")
            time.sleep(0.002)
        time.sleep(pause)
        if worker.poll() is not None:
            assert worker.returncode == 0, worker.stderr.read()
            return False
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
        worker.stderr.close()
    return True


def _run_and_kill(
    database_url: str, outbox: Path, journal: Path, templates: Path, now: dt.datetime, rng
) -> bool:
    """Run a worker on the outbox at ``now``, SIGKILL it at a random moment."""
    arguments = [WORKER, database_url, str(outbox), str(journal), str(templates), now.isoformat()]
    return _kill_at_random(arguments, lambda: len(_emails(outbox)), rng)


def _recover(session: Session, outbox: Path, now: dt.datetime) -> RecoverySummary:
    summary = recover_stale_messages(session, now, STALE, check=OutboxMailer(outbox))
    session.commit()
    return summary


def test_killed_workers_on_the_outbox_lose_nothing_and_send_nothing_twice(
    session, database_url, tmp_path, templates
):
    seed = int(os.environ.get("NURTURE_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    ids = queue_messages(session, MESSAGES)
    outbox, journal = tmp_path / "outbox", tmp_path / "duplicates.txt"
    outbox.mkdir()
    journal.touch()

    now, kills, recovered = NOW, 0, []
    while kills < KILLS:
        now += dt.timedelta(hours=1)  # the last worker's claims are stale by now
        recovered.append(_recover(session, outbox, now))
        if not _run_and_kill(database_url, outbox, journal, templates, now, rng):
            if all(status is MessageStatus.SENT for status in statuses(session).values()):
                break  # drained before all the kills were spent
            continue
        kills += 1
        at_kill = statuses(session)
        assert MessageStatus.UNKNOWN not in at_kill.values(), f"seed {seed}"

    # A last recovery, then a worker that runs to the end.
    now += dt.timedelta(hours=1)
    recovered.append(_recover(session, outbox, now))
    assert sum(summary.unknown for summary in recovered) == 0, f"seed {seed}"
    final_run = deliver_messages(
        session, OutboxMailer(outbox), make_renderer(templates), None, now, concurrency=4, **SENDER
    )
    assert final_run.failed == final_run.unknown == 0, f"seed {seed}"

    final = statuses(session)
    assert set(final.values()) == {MessageStatus.SENT}, f"seed {seed}: {final}"  # 0 missing
    assert journal.read_text(encoding="utf-8") == "", f"seed {seed}: sent twice"  # 0 duplicates
    rows = session.scalars(select(Message).execution_options(populate_existing=True)).all()
    expected = sorted(f"{row.id:06d}-{row.journey_key}-{row.step_id}.eml" for row in rows)
    assert sorted(path.name for path in _emails(outbox)) == expected  # one file per message
    assert len(expected) == len(ids)
    if os.environ.get("NURTURE_CRASH_REPORT"):  # how often each recovery path was taken
        print(f"seed {seed}, {kills} kills, recoveries: {recovered}")


SMTP_WORKER = """
import datetime as dt, random, sys, time
from pathlib import Path
from nurture.delivery import SmtpMailer, deliver_messages
from nurture.storage import create_database_engine, open_session
from tests.delivery.conftest import SECRET, make_renderer

url, port, templates, now, seed = sys.argv[1:6]
rng = random.Random(int(seed))

class SlowSmtp(SmtpMailer):
    def send(self, email):
        time.sleep(rng.uniform(0, 0.01))
        return super().send(email)

with open_session(create_database_engine(url)) as session:
    deliver_messages(
        session, SlowSmtp("127.0.0.1", int(port), security="none"),
        make_renderer(Path(templates)), None, dt.datetime.fromisoformat(now),
        sender_email="team@example.org", sender_name="Team", suppression_salt=SECRET,
        concurrency=4,
    )
"""


class Sink:
    """An SMTP server's log: the nurture message id of every email it accepted, in order."""

    def __init__(self) -> None:
        self.accepted: list[int] = []

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        for line in content.split(b"\r\n"):
            if line.lower().startswith(b"x-nurture-message-id:"):
                self.accepted.append(int(line.split(b":", 1)[1]))
        return "250 2.0.0 Ok: queued"


def _run_smtp_and_kill(
    database_url: str, sink: Sink, port: int, templates: Path, now: dt.datetime, rng
) -> bool:
    """Run a worker on SMTP at ``now``, SIGKILL it at a random moment."""
    arguments = [SMTP_WORKER, database_url, str(port), str(templates), now.isoformat()]
    killed = _kill_at_random(arguments, lambda: len(sink.accepted), rng)
    time.sleep(0.2)  # an email whose last line was sent before the kill reaches the log
    return killed


def _settle_like_an_operator(session: Session, sink: Sink, now: dt.datetime) -> int:
    """What ``nurture deliveries unknown`` then ``resolve`` do, the server's log at hand."""
    unknown = [m for m, status in statuses(session).items() if status is MessageStatus.UNKNOWN]
    seen = set(sink.accepted)
    resolve_unknown(session, [m for m in unknown if m in seen], "sent", now)
    resolve_unknown(session, [m for m in unknown if m not in seen], "requeue", now)
    session.commit()
    return len(unknown)


def test_killed_workers_on_smtp_deliver_each_email_once_with_an_operator(
    session, database_url, tmp_path, templates
):
    seed = int(os.environ.get("NURTURE_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    ids = queue_messages(session, MESSAGES)
    sink, port = Sink(), free_port()
    server = Controller(sink, hostname=HOST, port=port)
    server.start()
    try:
        now, kills, settled = NOW, 0, 0
        while kills < KILLS:
            now += dt.timedelta(hours=1)
            recover_stale_messages(session, now, STALE, check=None)
            session.commit()
            settled += _settle_like_an_operator(session, sink, now)
            if not _run_smtp_and_kill(database_url, sink, port, templates, now, rng):
                if all(status is MessageStatus.SENT for status in statuses(session).values()):
                    break
                continue
            kills += 1
        now += dt.timedelta(hours=1)
        recover_stale_messages(session, now, STALE, check=None)
        session.commit()
        settled += _settle_like_an_operator(session, sink, now)
        final_run = deliver_messages(
            session,
            SmtpMailer(HOST, port, security="none"),
            make_renderer(templates),
            None,
            now,
            concurrency=4,
            **SENDER,
        )
        assert final_run.failed == final_run.unknown == 0, f"seed {seed}"
    finally:
        server.stop()
    assert set(statuses(session).values()) == {MessageStatus.SENT}, f"seed {seed}"
    assert sorted(sink.accepted) == sorted(ids), f"seed {seed}: missing or sent twice"
    if os.environ.get("NURTURE_CRASH_REPORT"):
        print(f"seed {seed}, {kills} kills, {settled} unknown emails settled by the operator")
