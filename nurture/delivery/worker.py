"""The delivery worker: send due messages through a mailer, each exactly once.

A message moves ``queued -> sending -> sent | failed | suppressed`` (or back to ``queued``
after a transient backend error). The move to ``sending`` is a conditional UPDATE committed
before anything is rendered or sent: of several workers given the same id, exactly one claims
it; the others skip it. A message left in ``sending`` (the worker crashed between the send and
the final commit) is never picked up again here: whether it went out is unknown, and sending it
twice is worse than not at all. Unlike other stages, this function commits, once per step.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.delivery.mailers import Mailer, OutgoingEmail
from nurture.delivery.rendering import TemplateRenderer
from nurture.delivery.suppression import find_suppressed_hashes, suppression_hash
from nurture.errors import DeliveryError, PermanentDeliveryError, TemplateError
from nurture.storage.models import Enrollment, Journey, Member, Message, MessageStatus

__all__ = ["CONSENT_GRANTED", "DeliverySummary", "deliver_messages", "due_message_ids"]

logger = logging.getLogger(__name__)

CONSENT_GRANTED = "granted"
"""The only ``Member.consent_status`` that allows sending."""


@dataclass(frozen=True)
class DeliverySummary:
    """What one call of ``deliver_messages`` did.

    Attributes:
        sent: Messages the mailer accepted.
        failed: Messages that will not be sent (template error, permanent refusal, or an
            unexpected error; those left in ``unknown`` status count here too).
        suppressed: Messages not sent because the address is in the suppression list
            (unsubscribed, bounced, erased...) or, outside transactional journeys, the member
            lacks consent.
        skipped: Ids not claimed: not queued (another worker has them, or they are done) or not
            due yet.
        retried: Messages put back in the queue after a transient backend error.
    """

    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    skipped: int = 0
    retried: int = 0

    def __add__(self, other: DeliverySummary) -> DeliverySummary:
        return DeliverySummary(
            sent=self.sent + other.sent,
            failed=self.failed + other.failed,
            suppressed=self.suppressed + other.suppressed,
            skipped=self.skipped + other.skipped,
            retried=self.retried + other.retried,
        )


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


def _claim(session: Session, message_id: int, now: dt.datetime) -> bool:
    result = session.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.status == MessageStatus.QUEUED,
            Message.scheduled_at <= now,
        )
        .values(status=MessageStatus.SENDING)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def _finish(session: Session, message_id: int, **values: Any) -> None:
    """Move a claimed message out of ``sending`` and commit."""
    session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.SENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def _is_transactional(session: Session, message: Message) -> bool:
    """Whether the journey version the message's enrollment runs is transactional."""
    definition = session.scalar(
        select(Journey.definition)
        .join(Enrollment, Enrollment.journey_id == Journey.id)
        .where(Enrollment.id == message.enrollment_id)
    )
    return isinstance(definition, dict) and definition.get("transactional") is True


def _suppression_reason(
    member: Member, suppressed_hashes: set[str], salt: str, *, transactional: bool
) -> str | None:
    """Why the member must not get the message, or None.

    The suppression list (unsubscribed, bounced, erased...) stops every message; consent other
    than granted stops all but those of transactional journeys.
    """
    if suppression_hash(member.email, salt) in suppressed_hashes:
        return "address is in the suppression list"
    if not transactional and (member.consent_status or "").strip().lower() != CONSENT_GRANTED:
        return f"consent is {member.consent_status!r}, not {CONSENT_GRANTED!r}"
    return None


def _display_name(member: Member) -> str:
    return " ".join(part for part in (member.first_name, member.last_name) if part).strip()


def deliver_messages(
    session: Session,
    mailer: Mailer,
    renderer: TemplateRenderer,
    message_ids: Iterable[int],
    now: dt.datetime,
    *,
    sender_email: str,
    sender_name: str,
    suppression_salt: str,
) -> DeliverySummary:
    """Render and send the given messages, each at most once, committing each step.

    Per message: claim it (``queued`` and due -> ``sending``), check suppression and consent
    (an address in the suppression list gets nothing; a member without consent gets only the
    messages of transactional journeys), render, send, record. A template error or
    ``PermanentDeliveryError`` makes it ``failed`` with the reason in ``error``; a
    ``DeliveryError`` puts it back in ``queued`` with ``attempts`` + 1; an unexpected error from
    the mailer leaves it ``unknown`` (it may have gone out), an unexpected error before the send
    makes it ``failed``.

    Args:
        session: The database session; it is committed after each step.
        mailer: The backend.
        renderer: Renders the templates.
        message_ids: The messages to deliver (from ``due_message_ids``).
        now: The current time: due check, unsubscribe token issue time, ``sent_at``.
        sender_email: The From address.
        sender_name: The From display name.
        suppression_salt: Salt of the suppression list (``Settings.suppression_salt``), the
            one its hashes were made with.

    Returns:
        Counts of what happened.
    """
    counts = {"sent": 0, "failed": 0, "suppressed": 0, "skipped": 0, "retried": 0}
    for message_id in message_ids:
        if not _claim(session, message_id, now):
            counts["skipped"] += 1
            continue
        outcome = _deliver_claimed(
            session, mailer, renderer, message_id, now, sender_email, sender_name, suppression_salt
        )
        counts[outcome] += 1
    return DeliverySummary(**counts)


def _deliver_claimed(
    session: Session,
    mailer: Mailer,
    renderer: TemplateRenderer,
    message_id: int,
    now: dt.datetime,
    sender_email: str,
    sender_name: str,
    salt: str,
) -> str:
    """Deliver one claimed message; return the ``DeliverySummary`` field it counts in."""
    try:
        message = session.get(Message, message_id, populate_existing=True)
        member = (
            session.get(Member, message.member_id, populate_existing=True)
            if message is not None
            else None
        )
        if message is None or member is None:
            _finish(session, message_id, status=MessageStatus.FAILED, error="member not found")
            return "failed"
        suppressed = find_suppressed_hashes(session, [suppression_hash(member.email, salt)])
        reason = _suppression_reason(
            member, suppressed, salt, transactional=_is_transactional(session, message)
        )
        if reason is not None:
            _finish(session, message_id, status=MessageStatus.SUPPRESSED, error=reason)
            return "suppressed"
        rendered = renderer.render_message(message, member, now=now)
        outgoing = OutgoingEmail(
            message_id=message_id,
            to_email=member.email,
            to_name=_display_name(member),
            from_email=sender_email,
            from_name=sender_name,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            headers=dict(rendered.headers),
            journey_key=message.journey_key,
            step_id=message.step_id,
        )
    except TemplateError as exc:
        session.rollback()
        _finish(session, message_id, status=MessageStatus.FAILED, error=str(exc))
        return "failed"
    except Exception as exc:
        logger.exception("message %s: unexpected error before sending", message_id)
        session.rollback()
        _finish(
            session,
            message_id,
            status=MessageStatus.FAILED,
            error=f"unexpected error before sending: {type(exc).__name__}: {exc}",
        )
        return "failed"

    attempts = Message.attempts + 1
    try:
        result = mailer.send(outgoing)
    except PermanentDeliveryError as exc:
        _finish(session, message_id, status=MessageStatus.FAILED, attempts=attempts, error=str(exc))
        return "failed"
    except DeliveryError as exc:
        _finish(session, message_id, status=MessageStatus.QUEUED, attempts=attempts, error=str(exc))
        return "retried"
    except Exception as exc:
        logger.exception("message %s: unexpected error from the mailer", message_id)
        _finish(
            session,
            message_id,
            status=MessageStatus.UNKNOWN,
            attempts=attempts,
            error=f"unexpected error while sending: {type(exc).__name__}: {exc}",
        )
        return "failed"
    _finish(
        session,
        message_id,
        status=MessageStatus.SENT,
        sent_at=now,
        attempts=attempts,
        backend=result.backend,
        provider_message_id=result.provider_message_id,
        error=None,
    )
    return "sent"
