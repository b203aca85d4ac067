"""Delivery at provider speed: the worker through the SendGrid backend against a 20 ms mock.

The ``sendgrid`` figure of ``make bench``: :func:`nurture.delivery.deliver_messages` sends
queued messages through :class:`nurture.delivery.sendgrid_mailer.SendGridMailer` to a local
mock of Mail Send (:mod:`benchmarks.mock_sendgrid`, its own process) that answers each request
after 20 ms, on a PostgreSQL database when one is given (``--postgres-url``; a database of its
own is created there and dropped after), as the deliver flow runs it: chunks of
``NURTURE_CHUNK_SIZE`` ids, a session per chunk. The floor is what the issue measured: a plain
sequential loop of the sendgrid client's ``send()`` (``SendGridAPIClient.send``, its own
transport) on request bodies built before timing. Figures are emails per second and their
ratio to the floor's. The mock counts each message id it receives: every run must deliver each
message exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, insert, text, update
from sqlalchemy.engine import make_url

from benchmarks.journeys import StatementCounter
from benchmarks.measurement import Measurement
from nurture.chunks import chunked
from nurture.delivery import DeliverySummary, OutgoingEmail, TemplateRenderer, deliver_messages
from nurture.delivery.sendgrid_mailer import SendGridMailer
from nurture.settings import Settings
from nurture.storage import (
    Enrollment,
    Journey,
    Member,
    Message,
    MessageStatus,
    create_database_engine,
    migrate_database,
    open_session,
    session_scope,
)

__all__ = [
    "CONCURRENCY",
    "LATENCY_MS",
    "PROCESSES",
    "SendGridBenchmarkResult",
    "check_exactly_once",
    "mock_sendgrid",
    "mock_stats",
    "queue_messages",
    "render_sendgrid_section",
    "request_bodies",
    "requeue_messages",
    "run_sendgrid_benchmark",
    "scratch_database",
    "time_floor",
    "time_processes",
    "time_worker",
]

logger = logging.getLogger("benchmarks")

CONCURRENCY = (4, 64)
"""Senders of the measured runs: ``NURTURE_SEND_CONCURRENCY``'s default, and 64."""

LATENCY_MS = 20.0
"""The mock's answer time per request."""

PROCESSES = 2
"""Worker processes of the parallel run (at the largest concurrency each): one per CPU here."""

API_KEY = "SG.bench-key-id.bench-key-secret"
NOW = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
ITEMS = [
    {
        "key": f"item-{n}",
        "title": f"Item number {n}",
        "url": f"https://example.org/items/{n}",
        "kind": kind,
        "summary": "Three levers that work.",
        "reason": "you said you want to grow your community",
    }
    for n, kind in enumerate(("masterclass", "webinar", "article"))
]


@contextmanager
def mock_sendgrid(latency_ms: float = LATENCY_MS) -> Iterator[str]:
    """Run :mod:`benchmarks.mock_sendgrid` in its own process; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.mock_sendgrid", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the SendGrid mock did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def mock_stats(url: str, reset: bool = False) -> dict[str, int]:
    """The mock's counts: requests, connections, distinct ids, duplicates (``reset``: cleared)."""
    with urllib.request.urlopen(f"{url}/{'reset' if reset else 'stats'}", timeout=10) as answer:
        stats: dict[str, int] = json.loads(answer.read())
    return stats


@contextmanager
def scratch_database(postgres_url: str | None, directory: Path) -> Iterator[str]:
    """A fresh database: a new one on the PostgreSQL server, dropped after; else SQLite."""
    if postgres_url is None:
        yield f"sqlite:///{directory / 'sendgrid.db'}"
        return
    name = f"nurture_bench_{uuid.uuid4().hex[:10]}"
    admin = create_database_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def queue_messages(engine: Engine, count: int) -> list[int]:
    """Insert ``count`` members, each with a queued ``welcome`` message; their ids."""
    with session_scope(engine) as session:
        session.add(
            Journey(
                id=1,
                key="welcome",
                version=1,
                definition_hash="bench",
                definition={},
                source_path="welcome.yaml",
            )
        )
        session.flush()
        for chunk in chunked(list(range(1, count + 1)), 5000):
            session.execute(
                insert(Member),
                [
                    {
                        "id": n,
                        "email": f"member{n}@example.org",
                        "first_name": "Ada",
                        "last_name": f"Lovelace {n}",
                        "language": "fr" if n % 3 == 0 else "en",
                        "joined_at": NOW,
                        "consent_status": "granted",
                    }
                    for n in chunk
                ],
            )
            session.execute(
                insert(Enrollment),
                [
                    {
                        "id": n,
                        "journey_id": 1,
                        "journey_key": "welcome",
                        "member_id": n,
                        "occurrence": 1,
                    }
                    for n in chunk
                ],
            )
            session.execute(
                insert(Message),
                [
                    {
                        "id": n,
                        "enrollment_id": n,
                        "step_id": "hello",
                        "member_id": n,
                        "journey_key": "welcome",
                        "template": "welcome",
                        "subject": "Welcome to {{ community_name }}, {{ member.first_name }}!",
                        "context": {"items": ITEMS},
                        "scheduled_at": NOW,
                    }
                    for n in chunk
                ],
            )
    return list(range(1, count + 1))


def requeue_messages(engine: Engine, ids: Sequence[int] | None = None) -> None:
    """Put the messages ``ids`` (default: every message) back in the queue, as before any run."""
    statements = (
        [update(Message)]
        if ids is None
        else [update(Message).where(Message.id.in_(part)) for part in chunked(list(ids), 5000)]
    )
    with session_scope(engine) as session:
        for statement in statements:
            session.execute(
                statement.values(
                    status=MessageStatus.QUEUED,
                    claimed_at=None,
                    handed_over_at=None,
                    attempts=0,
                    sent_at=None,
                    backend=None,
                    provider_message_id=None,
                    error=None,
                )
            )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE messages"))


def time_worker(
    engine: Engine,
    renderer: TemplateRenderer,
    settings: Settings,
    url: str,
    ids: Sequence[int],
    concurrency: int,
    *,
    count: bool = False,
) -> tuple[float, DeliverySummary, dict[str, int], StatementCounter | None]:
    """Deliver ``ids`` through the SendGrid backend to the mock, a chunk per session.

    Returns:
        The seconds, what the runs reported (summed), the mock's counts, and the statement
        counter (``count`` only).
    """
    requeue_messages(engine)
    mock_stats(url, reset=True)
    counter = StatementCounter(engine) if count else None
    mailer = SendGridMailer(API_KEY, base_url=url, timeout=10, connections=concurrency)
    summary = DeliverySummary()
    start = time.perf_counter()
    for chunk in chunked(list(ids), settings.chunk_size):
        with session_scope(engine) as session:
            summary += deliver_messages(
                session,
                mailer,
                renderer,
                chunk,
                NOW,
                sender_email=settings.sender_email,
                sender_name=settings.sender_name,
                suppression_salt=settings.suppression_salt.get_secret_value(),
                concurrency=concurrency,
                rng=random.Random(0),
            )
    elapsed = time.perf_counter() - start
    mailer.close()
    if counter is not None:
        event.remove(engine, "before_cursor_execute", counter._statement)
        event.remove(engine, "commit", counter._commit)
    return elapsed, summary, mock_stats(url), counter


@dataclass
class _ProcessWorker:
    """What a worker process of the parallel run keeps between chunks: as a deliver worker."""

    engine: Engine
    renderer: TemplateRenderer
    settings: Settings
    mailer: SendGridMailer
    concurrency: int


_WORKER: _ProcessWorker | None = None


def _start_process_worker(
    database_url: str, mock_url: str, workspace: str, concurrency: int
) -> None:
    """Pool initializer: the process's engine, renderer and mailer, built once."""
    global _WORKER
    from benchmarks.delivery import build_renderer

    settings = Settings(workspace=Path(workspace))
    _WORKER = _ProcessWorker(
        engine=create_database_engine(database_url),
        renderer=build_renderer(settings),
        settings=settings,
        mailer=SendGridMailer(API_KEY, base_url=mock_url, timeout=10, connections=concurrency),
        concurrency=concurrency,
    )


def _deliver_chunk_in_process(chunk: list[int]) -> DeliverySummary:
    """Deliver one chunk in a worker process, a session of its own (as the deliver flow)."""
    worker = _WORKER
    assert worker is not None, "the pool's initializer did not run"
    settings = worker.settings
    with session_scope(worker.engine) as session:
        return deliver_messages(
            session,
            worker.mailer,
            worker.renderer,
            chunk,
            NOW,
            sender_email=settings.sender_email,
            sender_name=settings.sender_name,
            suppression_salt=settings.suppression_salt.get_secret_value(),
            concurrency=worker.concurrency,
            rng=random.Random(0),
        )


def time_processes(
    engine: Engine, pool: Pool, url: str, ids: Sequence[int], chunk_size: int
) -> tuple[float, DeliverySummary, dict[str, int]]:
    """Deliver ``ids`` with the worker processes of ``pool``, each taking the next free chunk.

    Returns:
        The seconds, what the chunks reported (summed), and the mock's counts.
    """
    requeue_messages(engine)
    mock_stats(url, reset=True)
    chunks = [list(chunk) for chunk in chunked(list(ids), chunk_size)]
    start = time.perf_counter()
    summaries = pool.map(_deliver_chunk_in_process, chunks, chunksize=1)
    elapsed = time.perf_counter() - start
    summary = DeliverySummary()
    for each in summaries:
        summary += each
    return elapsed, summary, mock_stats(url)


def request_bodies(
    engine: Engine, renderer: TemplateRenderer, settings: Settings, n: int
) -> list[Any]:
    """Mail Send bodies of the first ``n`` messages, rendered as the worker renders them."""
    mailer = SendGridMailer(API_KEY)
    bodies = []
    with open_session(engine) as session:
        rows = session.execute(
            Message.__table__.select().order_by(Message.id).limit(n)  # type: ignore[attr-defined]
        ).all()
        for row in rows:
            message = session.get(Message, row.id)
            member = session.get(Member, row.member_id)
            assert message is not None and member is not None
            rendered = renderer.render_message(message, member, now=NOW)
            email = OutgoingEmail(
                message_id=message.id,
                to_email=member.email,
                to_name=f"{member.first_name} {member.last_name}",
                from_email=settings.sender_email,
                from_name=settings.sender_name,
                subject=rendered.subject,
                html=rendered.html,
                text=rendered.text,
                headers=dict(rendered.headers),
                journey_key=message.journey_key,
                step_id=message.step_id,
            )
            bodies.append(mailer.build_request(email))
    return bodies


def time_floor(url: str, bodies: Sequence[Any]) -> float:
    """The floor: ``SendGridAPIClient.send`` on each body in a plain loop; the seconds."""
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(api_key=API_KEY, host=url)
    mock_stats(url, reset=True)
    start = time.perf_counter()
    for body in bodies:
        client.send(body)
    elapsed = time.perf_counter() - start
    stats = mock_stats(url)
    if stats["requests"] != len(bodies):
        raise RuntimeError(f"the floor sent {len(bodies)} requests, the mock saw {stats}")
    return elapsed


@dataclass(frozen=True)
class SendGridBenchmarkResult:
    """Everything one run of the SendGrid delivery benchmark measured.

    Attributes:
        database: ``postgresql`` or ``sqlite``.
        messages: Messages delivered by each worker run.
        floor_messages: Messages of each floor run.
        chunk_size: Messages per ``deliver_messages`` call.
        repeats: Rounds measured.
        latency_ms: The mock's latency.
        floor: The sequential loop's timings.
        runs: The worker's timings, per concurrency.
        parallel: The timings of ``processes`` worker processes, each at
            ``parallel_concurrency``, taking the chunks as they come free.
        processes: Worker processes of the parallel run.
        parallel_concurrency: Senders of each of them.
        parallel_connections: Connections the mock saw in one parallel run.
        connections: Connections the mock saw in one worker run, per concurrency.
        statements: SQL statements per concurrency, counted on an untimed run.
        commits: Commits per concurrency, on the same run.
        counted_messages: Messages of that run.
        summary: What every worker run reported.
        setup_seconds: Creating the database and the messages, the mock, the bodies.
        load: The 1-minute load average at the start and the end.
    """

    database: str
    messages: int
    floor_messages: int
    chunk_size: int
    repeats: int
    latency_ms: float
    floor: Measurement
    runs: dict[int, Measurement]
    parallel: Measurement
    processes: int
    parallel_concurrency: int
    parallel_connections: int
    connections: dict[int, int]
    statements: dict[int, int]
    commits: dict[int, int]
    counted_messages: int
    summary: DeliverySummary
    setup_seconds: float
    load: tuple[float, float]

    def rate(self, measurement: Measurement, messages: int) -> float:
        """Emails per second of the median round."""
        return messages / measurement.median

    @property
    def floor_rate(self) -> float:
        """The floor's emails per second."""
        return self.rate(self.floor, self.floor_messages)


def run_sendgrid_benchmark(
    settings: Settings,
    renderer: TemplateRenderer,
    work_dir: Path,
    *,
    postgres_url: str | None,
    messages: int = 5000,
    floor_messages: int = 200,
    repeats: int = 3,
) -> SendGridBenchmarkResult:
    """Measure the worker through the SendGrid backend against the sequential client loop.

    Args:
        settings: Sender, salt and chunk size.
        renderer: The renderer of the workspace's templates.
        work_dir: A folder for the SQLite file when there is no PostgreSQL.
        postgres_url: A PostgreSQL server URL (a database is created there); None: SQLite.
        messages: Messages per worker run.
        floor_messages: Messages per floor run (the floor is slow: its rate is what counts).
        repeats: Rounds; the report gives medians.

    Returns:
        The measurements.

    Raises:
        RuntimeError: A run did not send every message exactly once.
    """
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    with scratch_database(postgres_url, work_dir) as url, mock_sendgrid() as mock:
        engine = create_database_engine(url)
        migrate_database(engine)
        ids = queue_messages(engine, messages)
        bodies = request_bodies(engine, renderer, settings, floor_messages)
        setup_seconds = time.perf_counter() - start
        # Untimed: every concurrency once on a first chunk, counting statements and commits.
        first = ids[: settings.chunk_size]
        statements: dict[int, int] = {}
        commits: dict[int, int] = {}
        for concurrency in CONCURRENCY:
            *_, counter = time_worker(
                engine, renderer, settings, mock, first, concurrency, count=True
            )
            assert counter is not None
            statements[concurrency], commits[concurrency] = counter.statements, counter.commits
        time_floor(mock, bodies[:10])
        samples: dict[int, list[float]] = {concurrency: [] for concurrency in CONCURRENCY}
        parallel: list[float] = []
        connections: dict[int, int] = {}
        floor: list[float] = []
        summaries: set[DeliverySummary] = set()
        widest = max(CONCURRENCY)
        # spawn: a fresh interpreter, as a deliver worker process starts (no forked engine).
        with multiprocessing.get_context("spawn").Pool(
            PROCESSES,
            initializer=_start_process_worker,
            initargs=(url, mock, str(settings.workspace), widest),
        ) as pool:
            # Untimed: every process starts, compiles the templates, opens its connections.
            time_processes(engine, pool, mock, ids[: settings.chunk_size * PROCESSES], 50)
            for number in range(1, repeats + 1):
                floor.append(time_floor(mock, bodies))
                for concurrency in CONCURRENCY:
                    seconds, summary, stats, _ = time_worker(
                        engine, renderer, settings, mock, ids, concurrency
                    )
                    check_exactly_once(f"concurrency {concurrency}", len(ids), summary, stats)
                    samples[concurrency].append(seconds)
                    connections[concurrency] = stats["connections"]
                    summaries.add(summary)
                seconds, summary, stats = time_processes(
                    engine, pool, mock, ids, settings.chunk_size
                )
                check_exactly_once(f"{PROCESSES} processes", len(ids), summary, stats)
                parallel.append(seconds)
                summaries.add(summary)
                parallel_connections = stats["connections"]
                logger.info(
                    "sendgrid round %d/%d: floor %.1f emails/s, %s, %d processes %.0f emails/s",
                    number,
                    repeats,
                    len(bodies) / floor[-1],
                    ", ".join(
                        f"concurrency {c} {len(ids) / samples[c][-1]:.0f} emails/s"
                        for c in CONCURRENCY
                    ),
                    PROCESSES,
                    len(ids) / parallel[-1],
                )
        database = engine.dialect.name
        engine.dispose()
    (summary,) = summaries
    return SendGridBenchmarkResult(
        database=database,
        messages=len(ids),
        floor_messages=len(bodies),
        chunk_size=settings.chunk_size,
        repeats=repeats,
        latency_ms=LATENCY_MS,
        floor=Measurement("floor", tuple(floor)),
        runs={c: Measurement(f"concurrency {c}", tuple(samples[c])) for c in CONCURRENCY},
        parallel=Measurement(f"{PROCESSES} processes", tuple(parallel)),
        processes=PROCESSES,
        parallel_concurrency=widest,
        parallel_connections=parallel_connections,
        connections=connections,
        statements=statements,
        commits=commits,
        counted_messages=len(first),
        summary=summary,
        setup_seconds=setup_seconds,
        load=(load_start, os.getloadavg()[0]),
    )


def check_exactly_once(
    what: str, expected: int, summary: DeliverySummary, stats: dict[str, int]
) -> None:
    """Raise unless the run sent ``expected`` messages and the mock received each exactly once."""
    if (
        summary.sent != expected
        or stats["distinct"] != expected
        or stats["duplicates"]
        or stats["requests"] != expected
    ):
        raise RuntimeError(
            f"{what}: {summary}, the mock saw {stats}: not every message exactly once"
        )


def render_sendgrid_section(result: SendGridBenchmarkResult) -> list[str]:
    """The Markdown section of the SendGrid delivery figure."""
    floor_rate = result.floor_rate
    rows = [
        "| Measurement | Emails/s (median) | Ratio to the floor | Each round (emails/s) |",
        "|---|---:|---:|---:|",
        f"| Sequential `SendGridAPIClient.send` loop (floor), {result.floor_messages} emails "
        f"| {floor_rate:.0f} | 1.0 | "
        + ", ".join(f"{result.floor_messages / s:.0f}" for s in result.floor.samples)
        + " |",
    ]
    for concurrency, run in result.runs.items():
        rate = result.rate(run, result.messages)
        rows.append(
            f"| `deliver_messages`, SendGrid backend, concurrency {concurrency}, "
            f"{result.messages:,} emails | {rate:.0f} | {rate / floor_rate:.1f} | "
            + ", ".join(f"{result.messages / s:.0f}" for s in run.samples)
            + " |"
        )
    rate = result.rate(result.parallel, result.messages)
    rows.append(
        f"| `deliver_messages` in {result.processes} worker processes, concurrency "
        f"{result.parallel_concurrency} each, {result.messages:,} emails | {rate:.0f} | "
        f"{rate / floor_rate:.1f} | "
        + ", ".join(f"{result.messages / s:.0f}" for s in result.parallel.samples)
        + " |"
    )
    costs = "; ".join(
        f"concurrency {c}: {result.statements[c] / result.counted_messages:.2f} statements and "
        f"{result.commits[c] / result.counted_messages:.3f} commits"
        for c in result.runs
    )
    summary = result.summary
    noisy = [f"concurrency {c}" for c, run in result.runs.items() if run.is_noisy]
    if result.parallel.is_noisy:
        noisy.append(f"{result.processes} processes")
    database = "PostgreSQL" if result.database == "postgresql" else "SQLite"
    return [
        "## Delivery through the SendGrid backend against a 20 ms mock",
        "",
        "### What is measured",
        "",
        f"The delivery worker (`nurture.delivery.deliver_messages`) sending {result.messages:,} "
        f"queued `welcome` messages (one per member, rendered with the workspace's templates) "
        f"through the SendGrid backend (`SendGridMailer`: bodies built in Mail Send's JSON "
        f"shape, POSTed over a pool of keep-alive connections) to a local mock of Mail Send "
        f"(`benchmarks/mock_sendgrid.py`, asyncio, its own process) that answers every request "
        f"after {result.latency_ms:.0f} ms, on a fresh {database} database, in chunks of "
        f"{result.chunk_size} ids as the deliver flow hands them out (a session per chunk). "
        f"The worker keeps its exactly-once bookkeeping: claims, re-checks, the hand-off of "
        f"each group committed before any of its emails is sent, results written in groups. "
        f"The last row runs {result.processes} worker processes (started untimed, each with "
        f"its engine, renderer and mailer, as long-running deliver workers), each taking the "
        f"next chunk as it comes free, at concurrency {result.parallel_concurrency} each: one "
        f"process renders on one CPU at a time (the interpreter lock), so more CPUs take more "
        f"processes.",
        "",
        f"The floor is the loop the issue measured: `SendGridAPIClient.send` (the library's "
        f"own transport, a new connection per request) called on {result.floor_messages} "
        f"request bodies one after the other, the bodies built before timing. Figures are "
        f"emails per second of the median round, and their ratio to the floor's rate (higher "
        f"is better). Every run is checked by the mock's counts: each message id arrived "
        f"exactly once. Each figure is the median of {result.repeats} rounds; a round runs the "
        f"floor, then each concurrency, then the processes, back to back, after one untimed "
        f"run of each on a first chunk.",
        "",
        "### Results",
        "",
        *(
            [
                f"> **Noisy run** ({', '.join(noisy)}): rounds disagree; the machine was busy "
                f"(load average {result.load[0]:.2f} at the start, {result.load[1]:.2f} at "
                f"the end).",
                "",
            ]
            if noisy
            else []
        ),
        *rows,
        "",
        f"- Outcome of every worker run: {summary.sent:,} sent, {summary.failed} failed, "
        f"{summary.retried} retried, {summary.unknown} unknown; the mock saw each message "
        f"exactly once.",
        "- Connections opened by the worker per run: "
        + ", ".join(f"concurrency {c}: {n}" for c, n in result.connections.items())
        + f" (a new mailer each run); {result.processes} processes: "
        f"{result.parallel_connections} (their mailers keep their connections from run to run, "
        "as long-running workers do); the floor opens one per email.",
        f"- Per message ({result.counted_messages} counted, untimed): {costs}.",
        f"- Scale: {result.messages:,} emails per worker run, {result.floor_messages} per "
        f"floor run; load average {result.load[0]:.2f} at the start, {result.load[1]:.2f} at "
        f"the end (2 CPUs shared: the worker, the mock and {database} run on them).",
        f"- Not timed: creating the database and the messages, starting the mock, building "
        f"the floor's bodies ({result.setup_seconds:.1f} s).",
        "",
    ]
