"""Time the delivery worker against a bare render loop of the same messages.

The fourth figure of ``make bench``: :func:`nurture.delivery.deliver_messages` sends every
message the journeys figure's pass queued, through :class:`NullMailer` (its ``send`` returns a
``DeliveryResult`` at once: no file, no network), in chunks of ``NURTURE_CHUNK_SIZE`` as the
deliver flow hands them out, once with one sender and once with four, each on a fresh copy of
the SQLite file. The baseline renders the same messages with the same
:class:`nurture.delivery.TemplateRenderer` (``render_message``) in a plain loop: no claim, no
re-check, no commit. The ratio is what the exactly-once bookkeeping costs on top of rendering.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from benchmarks.journeys import StatementCounter, copy_database, sqlite_engine
from benchmarks.measurement import Measurement
from nurture.chunks import chunked
from nurture.delivery import (
    DeliveryResult,
    DeliverySummary,
    OutgoingEmail,
    TemplateRenderer,
    deliver_messages,
    due_message_ids,
)
from nurture.storage import Member, Message, MessageStatus, open_session, session_scope

if TYPE_CHECKING:
    import datetime as dt
    from pathlib import Path

    from nurture.settings import Settings

__all__ = [
    "CONCURRENCY",
    "DeliveryBenchmarkResult",
    "NullMailer",
    "build_renderer",
    "load_messages",
    "render_bare",
    "render_delivery_section",
    "run_delivery_benchmark",
    "time_delivery",
]

logger = logging.getLogger("benchmarks")

CONCURRENCY = (1, 4)
"""Senders of the two measured runs (``NURTURE_SEND_CONCURRENCY`` defaults to 4)."""


class NullMailer:
    """A mailer that accepts every email at once, sending nothing."""

    backend = "null"

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        """Accept ``email``."""
        return DeliveryResult(provider_message_id=f"null-{email.message_id}", backend=self.backend)


def build_renderer(settings: Settings) -> TemplateRenderer:
    """The renderer the pipeline's deliver stage builds from ``settings``."""
    return TemplateRenderer(
        settings.templates_dir.resolve(),
        community_name=settings.community_name,
        public_base_url=settings.public_base_url,
        unsubscribe_secret=settings.unsubscribe_secret.get_secret_value(),
        shared_context=(
            {"questionnaire_url": settings.questionnaire_url}
            if settings.questionnaire_url
            else None
        ),
    )


def time_delivery(
    database: Path,
    renderer: TemplateRenderer,
    settings: Settings,
    ids: Sequence[int],
    now: dt.datetime,
    concurrency: int,
    *,
    count: bool = False,
) -> tuple[float, DeliverySummary, set[int], StatementCounter | None]:
    """Deliver ``ids`` through the null mailer, a chunk per session as the deliver flow does.

    Args:
        database: A SQLite file holding the queued messages, changed in place.
        renderer: The renderer.
        settings: Sender, suppression salt and chunk size.
        ids: The messages to deliver.
        now: The time of delivery.
        concurrency: Emails sent at once.
        count: Count the statements and commits (untimed runs only).

    Returns:
        The seconds of every ``deliver_messages`` call with its session, what they reported
        (summed), the ids then ``sent``, and the counter.
    """
    engine = sqlite_engine(database)
    counter = StatementCounter(engine) if count else None
    with engine.connect():  # open the pool's connection before timing
        pass
    summary = DeliverySummary()
    start = time.perf_counter()
    for chunk in chunked(list(ids), settings.chunk_size):
        with session_scope(engine) as session:
            summary += deliver_messages(
                session,
                NullMailer(),
                renderer,
                chunk,
                now,
                sender_email=settings.sender_email,
                sender_name=settings.sender_name,
                suppression_salt=settings.suppression_salt.get_secret_value(),
                concurrency=concurrency,
                rng=random.Random(0),
            )
    elapsed = time.perf_counter() - start
    with open_session(engine) as session:
        sent = set(
            session.scalars(
                select(Message.id).where(
                    Message.id.in_(list(ids)), Message.status == MessageStatus.SENT
                )
            )
        )
    engine.dispose()
    return elapsed, summary, sent, counter


def load_messages(database: Path, ids: Sequence[int]) -> list[tuple[Message, Member]]:
    """The messages ``ids`` and their members, detached from any session, in id order."""
    engine = sqlite_engine(database)
    with open_session(engine) as session:
        rows = [
            (message, member)
            for message, member in session.execute(
                select(Message, Member)
                .join(Member, Member.id == Message.member_id)
                .where(Message.id.in_(list(ids)))
                .order_by(Message.id)
            ).tuples()
        ]
        session.expunge_all()
    engine.dispose()
    return rows


def render_bare(
    renderer: TemplateRenderer, messages: Sequence[tuple[Message, Member]], now: dt.datetime
) -> float:
    """The baseline: render every message in a plain loop; returns the seconds."""
    start = time.perf_counter()
    for message, member in messages:
        renderer.render_message(message, member, now=now)
    return time.perf_counter() - start


@dataclass(frozen=True)
class DeliveryBenchmarkResult:
    """Everything one run of the delivery benchmark measured.

    Attributes:
        members: Members in the demo community.
        seed: Seed of the demo community.
        messages: Queued messages delivered (all the journeys pass queued).
        templates: Distinct templates among them.
        chunk_size: Messages per ``deliver_messages`` call.
        repeats: Rounds measured.
        summary: What one delivery reported (the same for every run).
        statements: SQL statements per concurrency, counted on the first chunk (untimed).
        commits: Commits per concurrency, on the same chunk.
        counted_messages: Messages of that chunk.
        baseline: The bare render loop.
        runs: ``deliver_messages`` with each concurrency of :data:`CONCURRENCY`.
        warm_up_seconds: The untimed first chunk with each concurrency, and its bare render.
    """

    members: int
    seed: int
    messages: int
    templates: int
    chunk_size: int
    repeats: int
    summary: DeliverySummary
    statements: dict[int, int]
    commits: dict[int, int]
    counted_messages: int
    baseline: Measurement
    runs: tuple[Measurement, ...]
    warm_up_seconds: float


def run_delivery_benchmark(
    queued_database: Path,
    work_dir: Path,
    settings: Settings,
    now: dt.datetime,
    *,
    members: int,
    seed: int,
    repeats: int = 3,
) -> DeliveryBenchmarkResult:
    """Measure the delivery worker, with each concurrency, against a bare render loop.

    First, untimed, the first chunk is delivered with each concurrency (counting statements and
    commits) and rendered bare, which compiles the templates and configures the ORM for every
    side. Every run gets a new engine on its copy, so each compiles its statements afresh. Each
    round then delivers everything with one sender, then with four, each on a fresh copy of
    ``queued_database``, then renders the messages the runs sent, bare.

    Args:
        queued_database: A SQLite file holding queued messages (the journeys figure's pass);
            not changed, its engine disposed.
        work_dir: A folder for the copies.
        settings: Workspace (templates), sender, salt, chunk size, renderer settings.
        now: The time of delivery; the messages must be due.
        members: Members in the demo community (for the report).
        seed: Seed of the demo community (for the report).
        repeats: Rounds to measure; the report gives medians.

    Returns:
        The measurements and what they were made on.

    Raises:
        ValueError: ``repeats`` is below 1.
        RuntimeError: No message is due, or two runs sent different messages.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, found {repeats}")
    engine = sqlite_engine(queued_database)
    with open_session(engine) as session:
        ids = due_message_ids(session, now)
    engine.dispose()
    if not ids:
        raise RuntimeError("no message is due: the journeys pass queued nothing to deliver")
    renderer = build_renderer(settings)

    start = time.perf_counter()
    first = ids[: settings.chunk_size]
    statements: dict[int, int] = {}
    commits: dict[int, int] = {}
    for concurrency in CONCURRENCY:
        copy = copy_database(queued_database, work_dir / "deliver.db")
        _, _, _, counter = time_delivery(
            copy, renderer, settings, first, now, concurrency, count=True
        )
        assert counter is not None
        statements[concurrency], commits[concurrency] = counter.statements, counter.commits
    render_bare(renderer, load_messages(queued_database, first), now)
    warm_up_seconds = time.perf_counter() - start
    logger.info("delivery: warm-up (untimed) done on %d messages", len(first))

    samples: dict[int, list[float]] = {concurrency: [] for concurrency in CONCURRENCY}
    baseline: list[float] = []
    summaries: set[DeliverySummary] = set()
    for number in range(1, repeats + 1):
        sent_sets = []
        for concurrency in CONCURRENCY:
            copy = copy_database(queued_database, work_dir / "deliver.db")
            seconds, summary, sent, _ = time_delivery(
                copy, renderer, settings, ids, now, concurrency
            )
            samples[concurrency].append(seconds)
            summaries.add(summary)
            sent_sets.append(sent)
        if any(sent != sent_sets[0] for sent in sent_sets) or len(summaries) != 1:
            raise RuntimeError("two delivery runs of the same messages did different work")
        messages = load_messages(queued_database, sorted(sent_sets[0]))
        baseline.append(render_bare(renderer, messages, now))
        logger.info(
            "delivery round %d/%d: %s, bare render %.2f s",
            number,
            repeats,
            ", ".join(f"concurrency {c} {samples[c][-1]:.2f} s" for c in CONCURRENCY),
            baseline[-1],
        )
    (summary,) = summaries
    return DeliveryBenchmarkResult(
        members=members,
        seed=seed,
        messages=len(ids),
        templates=len({message.template for message, _ in messages}),
        chunk_size=settings.chunk_size,
        repeats=repeats,
        summary=summary,
        statements=statements,
        commits=commits,
        counted_messages=len(first),
        baseline=Measurement(
            "Bare `render_message` loop, same messages and renderer (baseline)", tuple(baseline)
        ),
        runs=tuple(
            Measurement(
                f"`deliver_messages`, null mailer, concurrency {concurrency}",
                tuple(samples[concurrency]),
            )
            for concurrency in CONCURRENCY
        ),
        warm_up_seconds=warm_up_seconds,
    )


def render_delivery_section(result: DeliveryBenchmarkResult) -> tuple[list[str], list[str]]:
    """The Markdown of the delivery figure: what is measured, and the notes under its table.

    Returns:
        ``(description lines, result lines)``; the caller renders the table between them.
    """
    summary = result.summary
    description = [
        f"The delivery worker (`nurture.delivery.deliver_messages`) sending the "
        f"{result.messages:,} messages the journeys figure's pass queued ({result.templates} "
        f"templates), in chunks of {result.chunk_size} as the deliver flow hands them out "
        f"(a session per chunk), through a null mailer whose `send` returns a `DeliveryResult` "
        f"at once (no file, no network): with one sender, then with four "
        f"(`NURTURE_SEND_CONCURRENCY`'s default), each on a fresh copy of the SQLite file. "
        f"What remains is what the worker does around the mailer: claims (`queued` -> "
        f"`sending`, committed), the re-checks of suppression and consent right before each "
        f"send, rendering, and recording each result in its own commit.",
        "",
        "The baseline renders the same messages with the same `TemplateRenderer` "
        "(`render_message(message, member, now=...)`, the same templates, CSS inlining and "
        "unsubscribe tokens) in a plain loop: no claim, no re-check, no commit; messages and "
        "members are loaded before it is timed. The ratio is the worker's time divided by the "
        "bare render's: what the exactly-once bookkeeping costs on top of rendering.",
        "",
        f"The first chunk is delivered with each concurrency and rendered bare once, untimed, "
        f"first (templates compiled, ORM configured). Each figure is the median of "
        f"{result.repeats} rounds; a round runs concurrency "
        f"{', then '.join(str(c) for c in CONCURRENCY)}, then the baseline, back to back, "
        f"and checks that both runs sent the same messages.",
    ]
    per_message = {run.label: run.median / max(result.messages, 1) * 1e3 for run in result.runs}
    costs = "; ".join(
        f"concurrency {concurrency}: {result.statements[concurrency] / result.counted_messages:.1f}"
        f" statements and {result.commits[concurrency] / result.counted_messages:.1f} commits"
        for concurrency in CONCURRENCY
    )
    notes = [
        f"- Outcome of every run: {summary.sent:,} sent, {summary.suppressed:,} suppressed, "
        f"{summary.failed:,} failed, {summary.retried:,} retried, {summary.unknown:,} unknown.",
        f"- Per message ({result.counted_messages} messages counted, untimed): {costs}.",
        "- "
        + "; ".join(f"{label}: {ms:.2f} ms per message" for label, ms in per_message.items())
        + f"; bare render: {result.baseline.median / max(result.messages, 1) * 1e3:.2f} ms.",
        f"- Not timed: copying the database, the warm-up ({result.warm_up_seconds:.1f} s).",
    ]
    return description, notes
