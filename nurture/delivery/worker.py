"""The delivery worker: send due messages through a mailer, each exactly once.

A message moves through named states (``MessageStatus``)::

    queued -> sending -> sent | failed | suppressed | unknown
    sending -> queued, due later  (a transient error: backoff with jitter)
    sending -> queued             (recovery: claimed, never handed to the backend)

``claim_messages`` moves due messages from ``queued`` to ``sending`` in one committed
transaction before anything is rendered or sent (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
concurrent workers take disjoint sets; a conditional UPDATE elsewhere): of several workers, one
claims a message and the others never see it queued. ``deliver_messages`` claims no more than its
pool of senders can take at once, in groups (a new group once half the senders are free),
checks the suppression list, consent, the member's pause and unsubscribed categories right before
each send, records the hand-off (``handed_over_at``) of the whole group in one commit before
calling the backend, sends concurrently and records the results that came back together, in the
commit of the next group's claim (or within ``RESULTS_COMMIT_SECONDS``). A crash therefore
leaves in ``sending`` at most the messages claimed and not yet settled at the time, never more
than the senders (``concurrency``); ``recover_stale_messages`` puts back in the queue those
never handed over (no backend saw them), settles the others from the provider's events or the
backend's own word (the outbox's files), and marks the rest ``unknown`` for an operator
(``unknown_messages``, ``resolve_unknown``). A message that may have reached the backend is never
re-queued by the code: sending twice is worse than not at all.

Unlike other stages, the worker commits, once per group of messages: the claim, the hand-off,
the results. On PostgreSQL ``deliver_messages`` commits a group's claim with its hand-off (and
the results that came back before it), one commit a group: until then its rows stay locked
(other workers skip them) and a crash rolls the claim back, leaving them queued.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import any_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, defer

from nurture.chunks import chunked
from nurture.delivery.events import DELIVERY_STATUSES
from nurture.delivery.mailers import (
    AcceptanceCheck,
    DeliveryResult,
    HandedOver,
    Mailer,
    OutgoingEmail,
    redact_address,
)
from nurture.delivery.rendering import TemplateRenderer
from nurture.delivery.suppression import (
    consent_refusal,
    find_suppressed_hashes,
    suppression_hash,
)
from nurture.errors import DeliveryError, PermanentDeliveryError, TemplateError
from nurture.storage.database import among
from nurture.storage.models import (
    DeliveryStatus,
    Enrollment,
    Journey,
    Member,
    Message,
    MessageStatus,
    ProviderEvent,
)

__all__ = [
    "ACCEPTED_EVENT_TYPES",
    "PAUSED_REASON",
    "RESULTS_COMMIT_SECONDS",
    "DeliverySummary",
    "RecoverySummary",
    "RecoveryVerdict",
    "Resolution",
    "RetryPolicy",
    "UnknownMessage",
    "claim_messages",
    "deliver_messages",
    "due_message_ids",
    "recover_stale_messages",
    "recovery_verdict",
    "requeue_unknown",
    "resolve_unknown",
    "unknown_messages",
]

logger = logging.getLogger(__name__)

PAUSED_REASON = "member paused emails on the preference page"
"""The error of a message suppressed because its member paused every email."""


RESULTS_COMMIT_SECONDS = 0.5
"""Longest time a send's result waits, unwritten, for the next group's commit: after it, the
results that came back are committed, and the free senders get messages, even fewer than half
a group."""

ACCEPTED_EVENT_TYPES = frozenset((*DELIVERY_STATUSES, "open", "click"))
"""Provider events that prove the provider accepted an email (SendGrid's names)."""

Outcome = Literal["sent", "failed", "suppressed", "retried", "unknown"]
"""What became of one claimed message: the ``DeliverySummary`` field it counts in."""


@dataclass(frozen=True)
class DeliverySummary:
    """What one call of ``deliver_messages`` did.

    Attributes:
        sent: Messages the mailer accepted.
        failed: Messages that will not be sent: template error, permanent refusal, too many
            transient errors.
        suppressed: Messages not sent because the address is in the suppression list
            (unsubscribed, bounced, erased...) or, outside transactional journeys, the member
            lacks consent or unsubscribed from the journey's category.
        skipped: Ids given but not claimed: not queued (another worker has them, or they are
            done) or not due yet.
        retried: Messages put back in the queue, for later, after a transient backend error.
        unknown: Messages the mailer failed on unexpectedly: they may have gone out, so they
            wait in ``unknown`` status for an operator.
    """

    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    skipped: int = 0
    retried: int = 0
    unknown: int = 0

    def __add__(self, other: DeliverySummary) -> DeliverySummary:
        return DeliverySummary(
            sent=self.sent + other.sent,
            failed=self.failed + other.failed,
            suppressed=self.suppressed + other.suppressed,
            skipped=self.skipped + other.skipped,
            retried=self.retried + other.retried,
            unknown=self.unknown + other.unknown,
        )


@dataclass(frozen=True)
class RetryPolicy:
    """How transient backend errors (429, 5xx, timeouts) are retried.

    Attributes:
        max_attempts: Tries of one message before it fails for good.
        base_seconds: Delay after the first failed try; it doubles with each try.
        max_seconds: Longest delay (before jitter), unless the provider asks for more.
    """

    max_attempts: int = 6
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    ambiguous_seconds: float = 1800.0
    """Least delay after an ambiguous failure (sent, no answer), so that the provider's events
    can show it went through (the message is then settled as sent) before it is tried again."""

    def delay(
        self,
        attempts: int,
        retry_after: float | None,
        rng: random.Random,
        *,
        ambiguous: bool = False,
    ) -> float:
        """Seconds to wait before the next try of a message that failed ``attempts`` times.

        Exponential backoff, capped, with jitter (a random half to all of it) so that messages
        failing together do not come back together; never less than what the provider asked
        for (a 429's rate-limit reset).

        Args:
            attempts: Tries so far, the failed one included (1 or more).
            retry_after: Seconds the provider asked to wait, if it said.
            rng: The source of the jitter.
            ambiguous: The failed try may have reached the provider (``ambiguous_seconds``).

        Returns:
            The delay in seconds.
        """
        backoff = min(self.max_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        delay = rng.uniform(0.5, 1.0) * backoff
        return float(max(delay, retry_after or 0.0, self.ambiguous_seconds if ambiguous else 0.0))


@dataclass(frozen=True)
class RecoverySummary:
    """What one call of ``recover_stale_messages`` did.

    Attributes:
        sent: Messages settled as sent: the provider reported on them, or the backend holds
            them (the outbox's file).
        unknown: Messages handed to the backend and left in ``sending`` with no word from it,
            now ``unknown`` for an operator to check.
        requeued: Messages back in the queue: claimed but never handed to the backend, or
            handed to a backend that certainly does not have them (no outbox file).
        failed: Messages that would have gone back in the queue, but their workers stopped
            ``max_attempts`` times with them: failed, so that one message that crashes its
            worker cannot stop the others for good.
    """

    sent: int = 0
    unknown: int = 0
    requeued: int = 0
    failed: int = 0


@dataclass(frozen=True)
class _Run:
    """What every message of one ``deliver_messages`` call shares."""

    renderer: TemplateRenderer
    now: dt.datetime
    salt: str
    sender_email: str
    sender_name: str
    reply_to: str
    retry: RetryPolicy
    rng: random.Random
    backend: str | None
    """The mailer's name (``Mailer.backend``), recorded with each hand-off."""
    definitions: dict[int, Any] = field(default_factory=dict)
    """The definitions of the journeys met so far, by journey id: read once per call."""


@dataclass(frozen=True)
class _Result:
    """A send's result, not yet written: the values its message leaves ``sending`` with."""

    message_id: int
    outcome: Outcome
    values: dict[str, Any]


@dataclass(frozen=True)
class _InFlight:
    """A claimed message handed to the mailer: what recording its result needs."""

    email: OutgoingEmail
    attempts: int
    """Tries of the message, this one included."""


def due_message_ids(session: Session, now: dt.datetime, limit: int | None = None) -> list[int]:
    """Ids of the queued messages due at ``now``, oldest id first.

    Args:
        session: The database session.
        now: The current time (timezone-aware).
        limit: At most this many ids; None for all.

    Returns:
        The ids.
    """
    query = (
        select(Message.id)
        .where(Message.status == MessageStatus.QUEUED, Message.scheduled_at <= now)
        .order_by(Message.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def claim_messages(
    session: Session,
    now: dt.datetime,
    limit: int,
    *,
    message_ids: Collection[int] | None = None,
) -> list[int]:
    """Move up to ``limit`` due queued messages to ``sending``, in one committed transaction.

    On PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED``, so concurrent
    workers claim disjoint sets without waiting on each other; everywhere the UPDATE only
    takes rows still ``queued``, so a message is claimed once whatever the interleaving.

    Args:
        session: The database session; it is committed.
        now: The current time: due check and ``claimed_at``.
        limit: At most this many messages.
        message_ids: Claim only among these; None: among all queued messages.

    Returns:
        The ids claimed, in ascending order.
    """
    claimed = _claim(session, now, limit, message_ids)
    session.commit()
    return claimed


def _claim(
    session: Session,
    now: dt.datetime,
    limit: int,
    message_ids: Collection[int] | None,
    claimed_at: dt.datetime | None = None,
) -> list[int]:
    """``claim_messages`` without the commit."""
    if limit < 1 or (message_ids is not None and not message_ids):
        return []
    due = [Message.status == MessageStatus.QUEUED, Message.scheduled_at <= now]
    candidates = select(Message.id).where(*due).order_by(Message.id).limit(limit)
    if message_ids is not None:
        candidates = candidates.where(among(session, Message.id, message_ids))
    # One statement, one round trip: the candidates are locked by the subquery (FOR UPDATE
    # SKIP LOCKED on PostgreSQL, which re-checks ``due`` on rows changed meanwhile; SQLite
    # runs one writer at a time) and moved to ``sending`` by the UPDATE, still only if due.
    locked = candidates.with_for_update(skip_locked=True).scalar_subquery()
    if session.get_bind().dialect.name == "postgresql":
        # ``= ANY(ARRAY(subquery))``: the subquery runs once. Joined as ``IN (subquery)``, the
        # planner may run it again for each row, each run skipping none of the rows this one
        # locked and taking more: past ``limit``.
        chosen = Message.id == any_(func.array(locked))
    else:
        chosen = Message.id.in_(locked)
    claimed = session.scalars(
        update(Message)
        .where(chosen, *due)
        .values(status=MessageStatus.SENDING, claimed_at=claimed_at or now, handed_over_at=None)
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(claimed)


def _finish(session: Session, message_id: int, **values: Any) -> None:
    """Move a claimed message out of ``sending`` (the caller commits)."""
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.SENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        logger.warning(
            "message %s was no longer 'sending' (recovery or a provider event settled it); "
            "its outcome %r is not recorded",
            message_id,
            values.get("status"),
        )


def _suppression_reason(
    member: Member,
    definition: dict[str, Any] | None,
    suppressed_hashes: set[str],
    salt: str,
    now: dt.datetime,
) -> str | None:
    """Why the member must not get a message of the journey ``definition`` at ``now``, or None.

    The suppression list (unsubscribed, bounced, erased...) stops every message. Consent other
    than granted, a pause still running and an unsubscribe from the journey's category (both
    set on the preference page) stop all but the messages of transactional journeys.
    """
    if suppression_hash(member.email, salt) in suppressed_hashes:
        return "address is in the suppression list"
    definition = definition if isinstance(definition, dict) else {}
    if definition.get("transactional") is True:
        return None
    if member.paused_until is not None and member.paused_until > now:
        # One text for every pause, so that the status report counts them as one reason.
        return PAUSED_REASON
    return consent_refusal(member, definition.get("category"))


def _display_name(member: Member) -> str:
    return " ".join(part for part in (member.first_name, member.last_name) if part).strip()


def deliver_messages(
    session: Session,
    mailer: Mailer,
    renderer: TemplateRenderer,
    message_ids: Iterable[int] | None,
    now: dt.datetime,
    *,
    sender_email: str,
    sender_name: str,
    suppression_salt: str,
    reply_to: str | None = None,
    concurrency: int = 1,
    retry: RetryPolicy | None = None,
    rng: random.Random | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> DeliverySummary:
    """Render and send messages, each at most once, ``concurrency`` at a time.

    Messages are claimed (``queued`` and due -> ``sending``, see ``claim_messages``) in
    groups, never more than the senders can take at once: a first group of ``concurrency``,
    then a new group each time half the senders or more are free, so that the next group is
    checked and rendered while the last one is on the wire. Right before its send, each claimed
    message is checked again: an address in the suppression list gets nothing; a member without
    consent, who paused emails until after ``now`` or unsubscribed from the journey's category,
    gets only the messages of transactional journeys (the others are ``suppressed``, with the
    reason). Then it is rendered, its hand-off committed with its group's (on PostgreSQL in the
    claim's transaction, its rows locked until then), handed to the mailer
    in a pool of ``concurrency`` threads, and its result recorded with the others that came
    back, in the commit of the next claim (at most ``RESULTS_COMMIT_SECONDS`` later):

    - accepted: ``sent`` (``sent_at``, ``backend``, ``provider_message_id``);
    - ``PermanentDeliveryError`` or a template error: ``failed`` with the reason;
    - ``DeliveryError`` (429, 5xx, timeout): back to ``queued`` with ``attempts`` + 1, due
      after ``retry``'s backoff (at least the provider's ``retry_after``), or ``failed`` with
      "gave up after N attempts" once ``retry.max_attempts`` tries failed;
    - any other error from the mailer: ``unknown`` (the email may have gone out).

    Error texts carry the reason, never the recipient's address.

    Args:
        session: The database session, used by this thread only; it is committed after each
            step (claim, hand-off, results), once per group of messages.
        mailer: The backend; its ``send`` is called from several threads at once when
            ``concurrency`` > 1.
        renderer: Renders the templates.
        message_ids: The messages to deliver (a chunk of ``due_message_ids``); None: every
            message due at ``now``, as a queue worker.
        now: The current time: due check, unsubscribe token issue time, ``sent_at``, and the
            start of retry delays.
        sender_email: The From address.
        sender_name: The From display name.
        reply_to: The Reply-To address (``brand.yaml``); None: replies go to the sender.
        suppression_salt: Salt of the suppression list (``Settings.suppression_salt``), the
            one its hashes were made with.
        concurrency: Emails sent at the same time (``Settings.send_concurrency``).
        retry: Backoff and attempt limit of transient errors; default ``RetryPolicy()``.
        rng: Source of the backoff jitter; tests pass a seeded one.
        clock: The wall clock, read for each claim's ``claimed_at`` (never earlier than
            ``now``): a chunk sent late in a long run must not look stale to the recovery of a
            run that overlaps it. None: ``claimed_at`` is ``now``.

    Returns:
        Counts of what happened.

    Raises:
        ConfigurationError: The suppression salt is empty (nothing is claimed).
        ValueError: ``concurrency`` is less than 1.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    suppression_hash("", suppression_salt)  # an unusable salt fails before any claim
    run = _Run(
        renderer=renderer,
        now=now,
        salt=suppression_salt,
        sender_email=sender_email,
        sender_name=sender_name,
        reply_to=reply_to or "",
        retry=retry or RetryPolicy(),
        rng=rng or random.Random(),
        backend=getattr(mailer, "backend", None),
    )
    pending = None if message_ids is None else set(message_ids)
    requested = 0 if pending is None else len(pending)
    claimed = 0
    counts: Counter[str] = Counter()
    in_flight: dict[Future[DeliveryResult], _InFlight] = {}
    results: list[_Result] = []  # came back, not yet written
    refill = max(1, (concurrency + 1) // 2)
    # SQLite has one writer at a time: a claim held while its group renders would stop the others.
    hold_claims = session.get_bind().dialect.name == "postgresql"
    exhausted = commit_results = False
    with _senders(concurrency) as pool:
        while True:
            # Claimed and not settled: in flight, or come back with the result unwritten; the
            # results are written before any claim, so that never exceeds ``concurrency``.
            free = concurrency - len(in_flight)
            # A new group once half the senders are free; any free sender once nothing came
            # back for ``RESULTS_COMMIT_SECONDS`` (the pool is never left short for long).
            wanted = refill if in_flight and not commit_results else 1
            claim = not exhausted and free >= wanted
            ids: list[int] = []
            if claim or commit_results or not in_flight:
                _write_results(session, results)
                results.clear()
                if claim:
                    claimed_at = max(now, clock()) if clock is not None else now
                    ids = _claim(session, now, free, pending, claimed_at)
                    exhausted = not ids
                # One commit for the results that came back and the new claim. On PostgreSQL
                # a claim is committed with its group's hand-off instead, one commit (an fsync)
                # a group: its rows stay locked meanwhile, skipped by every other worker.
                if not (ids and hold_claims):
                    session.commit()
                commit_results = False
            if ids:
                claimed += len(ids)
                if pending is not None:
                    pending.difference_update(ids)
                for item in _prepare(session, run, ids, claimed_at):
                    if isinstance(item, _InFlight):
                        in_flight[pool.submit(mailer.send, item.email)] = item
                    else:
                        counts[item] += 1
                continue
            if not in_flight:
                break
            done, _ = wait(
                in_flight,
                timeout=RESULTS_COMMIT_SECONDS if results else None,
                return_when=FIRST_COMPLETED,
            )
            commit_results = not done
            for future in done:
                result = _record(run, in_flight.pop(future), future)
                counts[result.outcome] += 1
                results.append(result)
    if pending is not None:
        counts["skipped"] = requested - claimed
    return DeliverySummary(**counts)


class _SenderPools:
    """Thread pools of senders, kept for the process: none is started per call (per chunk).

    A call takes an idle pool of its size (or starts one) and gives it back when every send it
    submitted came back, so calls running at the same time never share one. A forked child
    forgets its parent's pools (their threads did not follow it).
    """

    def __init__(self) -> None:
        self._idle: dict[int, list[ThreadPoolExecutor]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, concurrency: int) -> Iterator[ThreadPoolExecutor]:
        with self._lock:
            idle = self._idle.get(concurrency)
            pool = idle.pop() if idle else None
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="nurture-send")
        try:
            yield pool
        except BaseException:
            pool.shutdown(wait=True)  # as before: every send submitted ends before the error
            raise
        with self._lock:
            self._idle.setdefault(concurrency, []).append(pool)

    def forget(self) -> None:
        """Drop every idle pool (in a forked child: their threads are the parent's)."""
        self._idle = {}
        self._lock = threading.Lock()


_senders = _SenderPools()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_senders.forget)


def _prepare(
    session: Session, run: _Run, ids: Sequence[int], handed_at: dt.datetime
) -> list[_InFlight | Outcome]:
    """Check and render claimed messages: an email to send, or the outcome already recorded.

    The emails to send are recorded as handed over to the backend, in the commit that ends
    this, before any reaches the backend.
    """
    rows = session.execute(
        select(Message, Member, Enrollment.journey_id)
        .join(Member, Member.id == Message.member_id)
        .outerjoin(Enrollment, Enrollment.id == Message.enrollment_id)
        .where(among(session, Message.id, ids))
        .options(defer(Member.attributes))  # neither checked nor rendered
        .execution_options(populate_existing=True)
    ).all()
    definitions = run.definitions
    unread = {journey_id for *_, journey_id in rows if journey_id is not None} - definitions.keys()
    if unread:
        definitions.update(
            session.execute(
                select(Journey.id, Journey.definition).where(Journey.id.in_(sorted(unread)))
            )
            .tuples()
            .all()
        )
    found = {
        message.id: (message, member, definitions.get(journey_id) if journey_id else None)
        for message, member, journey_id in rows
    }
    suppressed = find_suppressed_hashes(
        session, [suppression_hash(member.email, run.salt) for _, member, _ in found.values()]
    )
    prepared: list[_InFlight | Outcome] = []
    for message_id in ids:
        if message_id not in found:
            _finish(session, message_id, status=MessageStatus.FAILED, error="member not found")
            prepared.append("failed")
            continue
        message, member, definition = found[message_id]
        prepared.append(_prepare_one(session, run, message, member, definition, suppressed))
    emails = [item.email.message_id for item in prepared if isinstance(item, _InFlight)]
    handed = _hand_over(session, emails, handed_at, run.backend)
    # The outcomes and the hand-offs recorded: no transaction stays open while the mailer works.
    session.commit()
    return [
        item
        for item in prepared
        if not isinstance(item, _InFlight) or item.email.message_id in handed
    ]


def _hand_over(
    session: Session, message_ids: Sequence[int], at: dt.datetime, backend: str | None
) -> set[int]:
    """Record claimed messages as handed to the backend; the ids still ours (the caller commits).

    Conditional, like every move out of ``sending``: a message recovery took back meanwhile (a
    claim older than the stale delay) is not handed over, so it is sent by one worker only.
    """
    if not message_ids:
        return set()
    values: dict[str, Any] = {"handed_over_at": at}
    if backend is not None:
        values["backend"] = backend
    handed = set(
        session.scalars(
            update(Message)
            .where(
                among(session, Message.id, message_ids),
                Message.status == MessageStatus.SENDING,
                Message.handed_over_at.is_(None),
            )
            .values(**values)
            .returning(Message.id)
            .execution_options(synchronize_session=False)
        ).all()
    )
    for message_id in sorted(set(message_ids) - handed):
        logger.warning("message %s: taken back by recovery before its send; not sent", message_id)
    return handed


def _prepare_one(
    session: Session,
    run: _Run,
    message: Message,
    member: Member,
    definition: dict[str, Any] | None,
    suppressed: set[str],
) -> _InFlight | Outcome:
    """Check and render one claimed message (see ``_prepare``)."""
    message_id, address = message.id, member.email
    try:
        reason = _suppression_reason(member, definition, suppressed, run.salt, run.now)
        if reason is not None:
            _finish(session, message.id, status=MessageStatus.SUPPRESSED, error=reason)
            return "suppressed"
        rendered = run.renderer.render_message(message, member, now=run.now)
        email = OutgoingEmail(
            message_id=message.id,
            to_email=member.email,
            to_name=_display_name(member),
            from_email=run.sender_email,
            from_name=run.sender_name,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            headers=dict(rendered.headers),
            journey_key=message.journey_key,
            step_id=message.step_id,
            reply_to=run.reply_to,
        )
    except TemplateError as exc:
        error = redact_address(str(exc), address)
        _finish(session, message_id, status=MessageStatus.FAILED, error=error)
        return "failed"
    except Exception as exc:
        logger.exception("message %s: unexpected error before sending", message_id)
        error = redact_address(f"{type(exc).__name__}: {exc}", address)
        _finish(
            session,
            message_id,
            status=MessageStatus.FAILED,
            error=f"unexpected error before sending: {error}",
        )
        return "failed"
    return _InFlight(email=email, attempts=message.attempts + 1)


def _record(run: _Run, sent: _InFlight, future: Future[DeliveryResult]) -> _Result:
    """The result of one send: its outcome and the values its message takes (unwritten)."""
    message_id, attempts = sent.email.message_id, sent.attempts
    try:
        result = future.result()
    except PermanentDeliveryError as exc:
        reason = redact_address(str(exc), sent.email.to_email)
        values: dict[str, Any] = {
            "status": MessageStatus.FAILED,
            "attempts": attempts,
            "error": reason,
        }
        return _Result(message_id, "failed", values)
    except DeliveryError as exc:
        reason = redact_address(str(exc), sent.email.to_email)
        if attempts >= run.retry.max_attempts:
            error = f"gave up after {attempts} attempts: {reason}"
            values = {"status": MessageStatus.FAILED, "attempts": attempts, "error": error}
            return _Result(message_id, "failed", values)
        delay = run.retry.delay(attempts, exc.retry_after, run.rng, ambiguous=exc.ambiguous)
        logger.info(
            "message %s: try %d failed, next in %.0f s: %s", message_id, attempts, delay, reason
        )
        values = {
            "status": MessageStatus.QUEUED,
            "attempts": attempts,
            "scheduled_at": run.now + dt.timedelta(seconds=delay),
            "error": reason,
        }
        return _Result(message_id, "retried", values)
    except Exception as exc:
        logger.exception("message %s: unexpected error from the mailer", message_id)
        reason = redact_address(f"{type(exc).__name__}: {exc}", sent.email.to_email)
        values = {
            "status": MessageStatus.UNKNOWN,
            "attempts": attempts,
            "error": f"unexpected error while sending, it may have gone out: {reason}",
        }
        return _Result(message_id, "unknown", values)
    values = {
        "status": MessageStatus.SENT,
        "sent_at": run.now,
        "attempts": attempts,
        "backend": result.backend,
        "provider_message_id": result.provider_message_id,
        "error": None,
    }
    return _Result(message_id, "sent", values)


_SENT = (
    update(Message.__table__)  # type: ignore[arg-type]
    .where(
        Message.__table__.c.id == bindparam("b_id"),
        Message.__table__.c.status == MessageStatus.SENDING,
    )
    .values(
        status=MessageStatus.SENT,
        sent_at=bindparam("b_sent_at"),
        attempts=bindparam("b_attempts"),
        backend=bindparam("b_backend"),
        provider_message_id=bindparam("b_provider_message_id"),
        error=None,
    )
)
"""Records one accepted send, still ``sending``: executed once for many (executemany), on
SQLite."""


_MESSAGES = Message.__table__
_SENT_ROWS = select(
    *(
        func.unnest(bindparam(f"b_{name}", type_=ARRAY(column.type))).label(name)
        for name, column in (
            ("id", _MESSAGES.c.id),
            ("sent_at", _MESSAGES.c.sent_at),
            ("attempts", _MESSAGES.c.attempts),
            ("backend", _MESSAGES.c.backend),
            ("provider_message_id", _MESSAGES.c.provider_message_id),
        )
    )
).subquery("sent_rows")
_SENT_IN_ONE = (
    update(_MESSAGES)  # type: ignore[arg-type]
    .where(
        _MESSAGES.c.id == _SENT_ROWS.c.id,
        _MESSAGES.c.status == MessageStatus.SENDING,
    )
    .values(
        status=MessageStatus.SENT,
        sent_at=_SENT_ROWS.c.sent_at,
        attempts=_SENT_ROWS.c.attempts,
        backend=_SENT_ROWS.c.backend,
        provider_message_id=_SENT_ROWS.c.provider_message_id,
        error=None,
    )
    .returning(_MESSAGES.c.id)
)
"""Records many accepted sends, still ``sending``, in one statement on PostgreSQL: the values
in one array parameter per column (``unnest``), the rows written returned."""


def _write_results(session: Session, results: Sequence[_Result]) -> None:
    """Write the results of sends (the caller commits): accepted ones in one statement."""
    sent = [result for result in results if result.outcome == "sent"]
    if sent:
        written = _write_sent(session, sent)
        if written is not None and written != len(sent):
            logger.warning(
                "%d of %d sent messages were no longer 'sending' (recovery or a provider event "
                "settled them); their outcome 'sent' is not recorded",
                len(sent) - written,
                len(sent),
            )
    for result in results:
        if result.outcome != "sent":
            _finish(session, result.message_id, **result.values)


def _write_sent(session: Session, sent: Sequence[_Result]) -> int | None:
    """Record accepted sends; how many were still ``sending`` (None: the driver cannot tell)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        columns: dict[str, list[Any]] = {
            "b_id": [result.message_id for result in sent],
            "b_sent_at": [result.values["sent_at"] for result in sent],
            "b_attempts": [result.values["attempts"] for result in sent],
            "b_backend": [result.values["backend"] for result in sent],
            "b_provider_message_id": [result.values["provider_message_id"] for result in sent],
        }
        return len(connection.execute(_SENT_IN_ONE, columns).all())
    params = [
        {
            "b_id": result.message_id,
            "b_sent_at": result.values["sent_at"],
            "b_attempts": result.values["attempts"],
            "b_backend": result.values["backend"],
            "b_provider_message_id": result.values["provider_message_id"],
        }
        for result in sent
    ]
    written = connection.execute(_SENT, params)
    if not connection.dialect.supports_sane_multi_rowcount:
        return None
    return int(written.rowcount)


# --- recovery -------------------------------------------------------------------------------

RecoveryVerdict = Literal["sent", "requeue", "unknown"]
"""What recovery does with a message a crashed worker left: settle it as sent, put it back in
the queue, or leave it to an operator."""


def recovery_verdict(
    *, handed_over: bool, provider_reported: bool, backend_holds: bool | None
) -> RecoveryVerdict:
    """What becomes of a message a stopped worker claimed and never recorded the result of.

    - The provider reported on it (an event proving it accepted the email): ``sent``.
    - It was never handed to the backend: no backend saw it, ``requeue``.
    - The backend says it holds it (the outbox's file): ``sent``; says it certainly does not:
      ``requeue``.
    - Otherwise it may have gone out: ``unknown``, for an operator; never sent again blindly.

    Args:
        handed_over: The worker recorded its hand-off to the backend (``handed_over_at``).
        provider_reported: Provider events prove the provider accepted it.
        backend_holds: The backend's own word (``AcceptanceCheck.holds``): None when it has
            none, or was not asked.

    Returns:
        The verdict.
    """
    if provider_reported:
        return "sent"
    if not handed_over:
        return "requeue"
    if backend_holds is None:
        return "unknown"
    return "sent" if backend_holds else "requeue"


def recover_stale_messages(
    session: Session,
    now: dt.datetime,
    stale_after: dt.timedelta,
    *,
    check: AcceptanceCheck | None = None,
    max_attempts: int = RetryPolicy.max_attempts,
) -> RecoverySummary:
    """Settle the messages a crashed worker left in ``sending``; never send one twice.

    A message still ``sending`` longer than ``stale_after`` after its claim belonged to a
    worker that stopped before recording its result. Each gets ``recovery_verdict``:

    - provider events prove acceptance (processed, delivered, deferred, bounce, dropped, open,
      click): ``sent``, ``sent_at`` from the earliest such event, ``delivery_status`` from the
      latest;
    - never handed over (no ``handed_over_at``): back to ``queued``, due at once, one attempt
      more (``failed`` once it made ``max_attempts``: a message that crashes or hangs its
      worker must not come back forever);
    - handed to the backend ``check`` speaks for: ``sent`` when it holds the email, back to
      ``queued`` as above when it certainly does not;
    - otherwise ``unknown``, with an error saying what is known, for an operator
      (``unknown_messages``, ``resolve_unknown``).

    Messages already ``unknown`` are looked at again: provider events or ``check`` may settle
    them now.

    Args:
        session: The database session; the caller commits.
        now: The current time.
        stale_after: How long after its claim a ``sending`` message counts as abandoned
            (``Settings.sending_stale_after_minutes``); longer than any send can take.
        check: The backend's word on handed-over messages (``acceptance_check_for``); None:
            none.
        max_attempts: Attempts after which a message is failed rather than re-queued
            (``Settings.max_send_attempts``).

    Returns:
        Counts of what was settled.
    """
    stale = session.execute(
        select(
            Message.id,
            Message.status,
            Message.claimed_at,
            Message.handed_over_at,
            Message.attempts,
            Message.backend,
            Message.journey_key,
            Message.step_id,
        )
        .where(
            or_(
                Message.status == MessageStatus.UNKNOWN,
                (Message.status == MessageStatus.SENDING)
                & or_(Message.claimed_at.is_(None), Message.claimed_at <= now - stale_after),
            )
        )
        .order_by(Message.id)
    ).all()
    counts: Counter[str] = Counter()
    for batch in chunked(stale, 500):
        events = _acceptance_events(session, [row.id for row in batch])
        for row in batch:
            # An ``unknown`` message may have reached the backend whatever its columns say.
            handed_over = row.handed_over_at is not None or row.status == MessageStatus.UNKNOWN
            holds = None
            if handed_over and check is not None and row.backend == check.backend:
                holds = check.holds(
                    HandedOver(
                        message_id=row.id,
                        journey_key=row.journey_key,
                        step_id=row.step_id,
                        backend=row.backend,
                        handed_over_at=row.handed_over_at,
                    )
                )
            verdict = recovery_verdict(
                handed_over=handed_over, provider_reported=row.id in events, backend_holds=holds
            )
            outcome = _apply_verdict(session, row, verdict, events.get(row.id), now, max_attempts)
            if outcome is not None:
                counts[outcome] += 1
    summary = RecoverySummary(**counts)
    if summary != RecoverySummary():
        logger.info(
            "recovered deliveries: %d sent, %d re-queued, %d unknown, %d failed",
            summary.sent,
            summary.requeued,
            summary.unknown,
            summary.failed,
        )
    return summary


def _apply_verdict(
    session: Session,
    row: Any,
    verdict: RecoveryVerdict,
    reported: tuple[dt.datetime, DeliveryStatus] | None,
    now: dt.datetime,
    max_attempts: int,
) -> Literal["sent", "requeued", "unknown", "failed"] | None:
    """Carry out ``verdict`` on a stale message; its ``RecoverySummary`` field, or None."""
    claimed = row.claimed_at.isoformat() if row.claimed_at else "an unknown time"
    handed = row.handed_over_at.isoformat() if row.handed_over_at else "an unknown time"
    backend = row.backend or "the mail backend"
    if verdict == "sent" and reported is not None:
        first_at, latest = reported
        changed = _settle(
            session,
            row.id,
            row.status,
            status=MessageStatus.SENT,
            sent_at=first_at,
            delivery_status=latest,
            error=None,
        )
        return "sent" if changed else None
    if verdict == "sent":
        changed = _settle(
            session,
            row.id,
            row.status,
            status=MessageStatus.SENT,
            sent_at=row.handed_over_at or now,
            error=None,
        )
        return "sent" if changed else None
    if verdict == "requeue":
        if row.handed_over_at is None and row.status == MessageStatus.SENDING:
            reason = f"claimed at {claimed} by a worker that stopped before handing it over"
            # Not if the worker, slow but alive, hands it over meanwhile.
            still_ours: tuple[Any, ...] = (Message.handed_over_at.is_(None),)
        else:
            reason = f"handed to {backend} at {handed}, which does not have it"
            still_ours = ()
        attempts = row.attempts + 1
        if attempts >= max_attempts:
            changed = _settle(
                session,
                row.id,
                row.status,
                *still_ours,
                status=MessageStatus.FAILED,
                attempts=attempts,
                error=f"gave up after {attempts} attempts, its worker stopped each time: {reason}",
            )
            return "failed" if changed else None
        changed = _settle(
            session,
            row.id,
            row.status,
            *still_ours,
            status=MessageStatus.QUEUED,
            attempts=attempts,
            handed_over_at=None,
            error=f"re-queued by recovery: {reason}",
        )
        return "requeued" if changed else None
    if row.status != MessageStatus.SENDING:
        return None  # already unknown, and still nothing known
    changed = _settle(
        session,
        row.id,
        row.status,
        status=MessageStatus.UNKNOWN,
        error=f"claimed at {claimed}, handed to {backend} at {handed}, no provider event: "
        "check the provider, then `nurture deliveries resolve`",
    )
    return "unknown" if changed else None


def _acceptance_events(
    session: Session, message_ids: Sequence[int]
) -> dict[int, tuple[dt.datetime, DeliveryStatus]]:
    """Per message with events proving acceptance: (earliest time, latest delivery status)."""
    rows = session.execute(
        select(ProviderEvent.message_id, ProviderEvent.type, ProviderEvent.occurred_at)
        .where(
            ProviderEvent.message_id.in_(message_ids),
            ProviderEvent.type.in_(sorted(ACCEPTED_EVENT_TYPES)),
        )
        .order_by(ProviderEvent.occurred_at, ProviderEvent.id)
    ).all()
    found: dict[int, tuple[dt.datetime, DeliveryStatus]] = {}
    for message_id, event_type, occurred_at in rows:
        first_at, latest = found.get(message_id, (occurred_at, DeliveryStatus.DELIVERED))
        # An open or a click proves delivery without being a delivery status of its own; a
        # later stage wins, as when the webhook records the events (they arrive out of order).
        if DELIVERY_STATUSES.get(event_type, 0) >= DELIVERY_STATUSES[latest]:
            latest = DeliveryStatus(event_type)
        found[message_id] = (first_at, latest)
    return found


def _settle(
    session: Session, message_id: int, current: MessageStatus, *where: Any, **values: Any
) -> int:
    """Update a message still in status ``current`` (and ``where``); 1 if it was, else 0."""
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == current, *where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount == 1)  # type: ignore[attr-defined]


# --- an operator's word on unknown messages --------------------------------------------------

Resolution = Literal["sent", "requeue"]
"""What an operator decided about an ``unknown`` message after checking the provider."""


@dataclass(frozen=True)
class UnknownMessage:
    """An ``unknown`` message and what is known about it, for an operator.

    Attributes:
        id: The message id (``nurture deliveries resolve`` takes it).
        to_email: The recipient's address, to look up at the provider.
        journey_key: The journey.
        step_id: The journey step.
        backend: The backend it was handed to, if known.
        claimed_at: When a worker claimed it.
        handed_over_at: When the worker handed it to the backend.
        attempts: Tries recorded before this one.
        provider_message_id: The provider's id (``<nurture.ID@domain>`` Message-ID for MIME
            backends), if one was recorded.
        error: What recovery or the worker said about it.
    """

    id: int
    to_email: str
    journey_key: str
    step_id: str
    backend: str | None
    claimed_at: dt.datetime | None
    handed_over_at: dt.datetime | None
    attempts: int
    provider_message_id: str | None
    error: str | None


def unknown_messages(session: Session, limit: int | None = None) -> list[UnknownMessage]:
    """The ``unknown`` messages, oldest claim first, with what is known about each.

    Args:
        session: The database session; nothing is written.
        limit: At most this many; None for all.

    Returns:
        The messages.
    """
    query = (
        select(Message, Member.email)
        .join(Member, Member.id == Message.member_id)
        .where(Message.status == MessageStatus.UNKNOWN)
        .order_by(Message.claimed_at, Message.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [
        UnknownMessage(
            id=message.id,
            to_email=email,
            journey_key=message.journey_key,
            step_id=message.step_id,
            backend=message.backend,
            claimed_at=message.claimed_at,
            handed_over_at=message.handed_over_at,
            attempts=message.attempts,
            provider_message_id=message.provider_message_id,
            error=message.error,
        )
        for message, email in session.execute(query)
    ]


def resolve_unknown(
    session: Session, message_ids: Iterable[int], resolution: Resolution, now: dt.datetime
) -> list[int]:
    """Settle ``unknown`` messages as an operator decided, after checking the provider; logged.

    ``sent``: the provider has the email; the message becomes ``sent`` (``sent_at`` its
    hand-off time, else ``now``). ``requeue``: the provider has no trace of it; it goes back
    in the queue, due at once, and is sent again.

    Args:
        session: The database session; the caller commits.
        message_ids: The messages; those not ``unknown`` are left alone.
        resolution: ``sent`` or ``requeue``.
        now: The current time.

    Returns:
        The ids settled, ascending.
    """
    settled: list[int] = []
    for batch in chunked(sorted(set(message_ids)), 500):
        rows = session.execute(
            select(Message.id, Message.handed_over_at).where(
                Message.id.in_(batch), Message.status == MessageStatus.UNKNOWN
            )
        ).all()
        for message_id, handed_over_at in rows:
            values: dict[str, Any] = (
                {"status": MessageStatus.SENT, "sent_at": handed_over_at or now, "error": None}
                if resolution == "sent"
                else {"status": MessageStatus.QUEUED, "scheduled_at": now, "error": None}
            )
            if _settle(session, message_id, MessageStatus.UNKNOWN, **values):
                settled.append(message_id)
    if settled:
        logger.warning(
            "an operator resolved %d unknown messages as %s: %s",
            len(settled),
            "sent" if resolution == "sent" else "re-queued",
            ", ".join(map(str, settled)),
        )
    return sorted(settled)


def requeue_unknown(session: Session, message_ids: Iterable[int]) -> int:
    """Put ``unknown`` messages back in the queue, once an operator checked they did not go out.

    Only for messages the provider has no trace of: a re-queued message is sent again. The
    message keeps its due time (``resolve_unknown`` makes it due now).

    Args:
        session: The database session; the caller commits.
        message_ids: The messages; those not ``unknown`` are left alone.

    Returns:
        How many were re-queued.
    """
    requeued = 0
    for batch in chunked(sorted(set(message_ids)), 500):
        result = session.execute(
            update(Message)
            .where(Message.id.in_(batch), Message.status == MessageStatus.UNKNOWN)
            .values(status=MessageStatus.QUEUED, error=None)
            .execution_options(synchronize_session=False)
        )
        requeued += result.rowcount  # type: ignore[attr-defined]
    return requeued
