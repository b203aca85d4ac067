"""Delivery health: messages by status and by day, failures by reason, the queue, suppressions.

Error texts are grouped once normalised: addresses, long numbers and ids are masked (so one
reason is one group, and no address reaches a report), whitespace collapsed, long texts cut.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from nurture.operations.shares import share_of
from nurture.storage.models import DeliveryStatus, Message, MessageStatus, Suppression, utcnow

__all__ = [
    "BOUNCED_DELIVERY_STATUSES",
    "FAILURE_REASONS_SHOWN",
    "OUTCOMES",
    "STUCK_AFTER",
    "DeliveryDay",
    "DeliveryReport",
    "ReasonCount",
    "SuppressionSummary",
    "delivery_by_day",
    "delivery_report",
    "normalise_error",
    "suppression_summary",
]

FAILURE_REASONS_SHOWN = 10
"""Failure reasons a report lists, most frequent first; the others are counted together."""

BOUNCED_DELIVERY_STATUSES = (DeliveryStatus.BOUNCE, DeliveryStatus.DROPPED)
"""``Message.delivery_status`` values of a sent email the provider could not deliver."""

ERROR_TEXT_LIMIT = 160
"""Characters of a normalised error text kept."""

STUCK_AFTER = dt.timedelta(hours=1)
"""How long a message may stay in ``sending`` before a report calls it stuck."""

NO_ERROR = "(no error recorded)"

OUTCOMES = (
    MessageStatus.SENT.value,
    MessageStatus.FAILED.value,
    MessageStatus.SUPPRESSED.value,
    MessageStatus.UNKNOWN.value,
)
"""The statuses a message ends in once a worker took it: the outcomes :func:`delivery_by_day`
counts."""

_ADDRESS = re.compile(r"<?[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+>?")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_HEX_ID = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{16,}\b", re.I)
_LONG_NUMBER = re.compile(r"\b\d{5,}\b")
_SPACES = re.compile(r"\s+")


def normalise_error(text: str | None, limit: int = ERROR_TEXT_LIMIT) -> str:
    """An error text as a failure reason: the same for every message that failed the same way.

    Addresses become ``<address>``, ids (UUIDs, long hexadecimal strings) ``<id>`` and numbers
    of five digits or more ``<n>``; SMTP codes (``550 5.1.1``) are kept. Whitespace runs become
    one space and a text longer than ``limit`` is cut, ending in ``…``.

    Args:
        text: The ``Message.error`` text.
        limit: The most characters returned.

    Returns:
        The reason; ``(no error recorded)`` for an empty text.
    """
    if not text or not text.strip():
        return NO_ERROR
    reason = _ADDRESS.sub("<address>", text)
    reason = _UUID.sub("<id>", reason)
    reason = _HEX_ID.sub("<id>", reason)
    reason = _LONG_NUMBER.sub("<n>", reason)
    reason = _SPACES.sub(" ", reason).strip()
    return reason if len(reason) <= limit else reason[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class ReasonCount:
    """A reason and how many messages (or addresses) it accounts for."""

    reason: str
    count: int


def _top_reasons(errors: Iterable[tuple[str | None, int]]) -> tuple[list[ReasonCount], int]:
    """The most frequent normalised reasons, and the count of the rest."""
    grouped: Counter[str] = Counter()
    for error, count in errors:
        grouped[normalise_error(error)] += count
    ranked = sorted(grouped.items(), key=lambda item: (-item[1], item[0]))
    shown = [ReasonCount(reason, count) for reason, count in ranked[:FAILURE_REASONS_SHOWN]]
    return shown, sum(count for _, count in ranked[FAILURE_REASONS_SHOWN:])


@dataclass(frozen=True)
class DeliveryReport:
    """Where the messages stand, and why some were not sent.

    The counts by status, the failure and suppression reasons, ``failure_rate`` and
    ``bounced`` are of the messages queued since ``since`` (all of them when None). The queue
    fields (``queued_due`` to ``sending_stuck``) are of every message, however old: an email
    stuck in the queue matters whenever it was queued.

    Attributes:
        since: The start of the period (ISO 8601), None for all time.
        generated_at: When the report was made (ISO 8601).
        by_status: Messages by status, every status listed (``queued``, ``sending``, ``sent``,
            ``failed``, ``suppressed``, ``unknown``).
        total: Messages counted in ``by_status``.
        failure_rate: ``failed / (sent + failed)``, None when neither happened.
        failures: Failed messages by normalised error text, most frequent first (at most 10).
        failures_other: Failed messages of the reasons beyond those listed.
        suppressed_reasons: Messages not sent by reason (suppressed address, no consent...).
        bounced: Sent messages the provider reports as bounced or dropped.
        queued_due: Queued messages due now.
        queued_later: Queued messages scheduled for later (quiet hours, waits).
        retries_pending: Queued messages waiting for another attempt after a transient error.
        oldest_queued_at: When the longest-waiting due message became due (ISO 8601).
        oldest_queued_age_hours: How long it has waited, in hours.
        unknown: Messages in ``unknown`` status: an error came while sending, they may have
            gone out; the provider knows.
        sending: Messages claimed by a worker and not settled yet.
        sending_stuck: Of those, claimed more than an hour before the report.
    """

    since: str | None
    generated_at: str
    by_status: dict[str, int]
    total: int
    failure_rate: float | None
    failures: tuple[ReasonCount, ...]
    failures_other: int
    suppressed_reasons: tuple[ReasonCount, ...]
    bounced: int
    queued_due: int
    queued_later: int
    retries_pending: int
    oldest_queued_at: str | None
    oldest_queued_age_hours: float | None
    unknown: int
    sending: int
    sending_stuck: int


@dataclass(frozen=True)
class _PeriodCounts:
    """The messages queued in a period: by status, why they failed or were not sent."""

    by_status: dict[str, int]
    failures: list[ReasonCount]
    failures_other: int
    suppressed: list[ReasonCount]
    bounced: int


def _period_counts(session: Session, since: dt.datetime | None) -> _PeriodCounts:
    period = [Message.created_at >= since] if since is not None else []
    by_status = {status.value: 0 for status in MessageStatus}
    for status, count in session.execute(
        select(Message.status, func.count()).where(*period).group_by(Message.status)
    ).tuples():
        by_status[str(status)] = count

    def reasons(status: MessageStatus) -> tuple[list[ReasonCount], int]:
        rows = session.execute(
            select(Message.error, func.count())
            .where(Message.status == status, *period)
            .group_by(Message.error)
        ).tuples()
        return _top_reasons(rows)

    failures, failures_other = reasons(MessageStatus.FAILED)
    suppressed, suppressed_other = reasons(MessageStatus.SUPPRESSED)
    if suppressed_other:
        suppressed.append(ReasonCount("other reasons", suppressed_other))
    bounced = session.scalar(
        select(func.count()).where(
            Message.status == MessageStatus.SENT,
            Message.delivery_status.in_(BOUNCED_DELIVERY_STATUSES),
            *period,
        )
    )
    return _PeriodCounts(by_status, failures, failures_other, suppressed, bounced or 0)


@dataclass(frozen=True)
class _QueueState:
    """Where the queue stands now, whatever the period."""

    due: int
    oldest_due: dt.datetime | None
    later: int
    retries: int
    unknown: int
    sending: int
    stuck: int


def _queue_state(session: Session, now: dt.datetime, stuck_after: dt.timedelta) -> _QueueState:
    queued = Message.status == MessageStatus.QUEUED
    due_count, oldest_due = session.execute(
        select(func.count(), func.min(Message.scheduled_at)).where(
            queued, Message.scheduled_at <= now
        )
    ).one()
    later = session.scalar(select(func.count()).where(queued, Message.scheduled_at > now)) or 0
    retries = session.scalar(select(func.count()).where(queued, Message.attempts > 0)) or 0
    current = dict(
        session.execute(
            select(Message.status, func.count())
            .where(Message.status.in_([MessageStatus.UNKNOWN, MessageStatus.SENDING]))
            .group_by(Message.status)
        )
        .tuples()
        .all()
    )
    stuck = session.scalar(
        select(func.count()).where(
            Message.status == MessageStatus.SENDING,
            func.coalesce(Message.claimed_at, Message.scheduled_at) < now - stuck_after,
        )
    )
    return _QueueState(
        due=due_count or 0,
        oldest_due=oldest_due,
        later=later,
        retries=retries,
        unknown=current.get(MessageStatus.UNKNOWN, 0),
        sending=current.get(MessageStatus.SENDING, 0),
        stuck=stuck or 0,
    )


def delivery_report(
    session: Session,
    since: dt.datetime | None = None,
    *,
    now: dt.datetime | None = None,
    stuck_after: dt.timedelta = STUCK_AFTER,
) -> DeliveryReport:
    """Count the messages by status and group the failures by reason.

    Args:
        session: The database session; nothing is written.
        since: Count only the messages queued since then (``Message.created_at``); None: all.
        now: The time of the report, for the queue's ages (default: now).
        stuck_after: How long in ``sending`` makes a message stuck.

    Returns:
        The report.
    """
    now = now or utcnow()
    period = _period_counts(session, since)
    queue = _queue_state(session, now, stuck_after)
    by_status = period.by_status
    finished = by_status[MessageStatus.SENT] + by_status[MessageStatus.FAILED]
    oldest = queue.oldest_due
    return DeliveryReport(
        since=since.isoformat() if since is not None else None,
        generated_at=now.isoformat(),
        by_status=by_status,
        total=sum(by_status.values()),
        failure_rate=share_of(by_status[MessageStatus.FAILED], finished),
        failures=tuple(period.failures),
        failures_other=period.failures_other,
        suppressed_reasons=tuple(period.suppressed),
        bounced=period.bounced,
        queued_due=queue.due,
        queued_later=queue.later,
        retries_pending=queue.retries,
        oldest_queued_at=oldest.isoformat() if oldest is not None else None,
        oldest_queued_age_hours=(
            round((now - oldest).total_seconds() / 3600, 2) if oldest is not None else None
        ),
        unknown=queue.unknown,
        sending=queue.sending,
        sending_stuck=queue.stuck,
    )


@dataclass(frozen=True)
class SuppressionSummary:
    """The suppression list: how large, why, and how fast it grows.

    Attributes:
        total: Suppressed addresses.
        by_reason: Addresses by reason (unsubscribed, bounced, complained, manual, erased),
            most first.
        last_day: Addresses suppressed in the 24 hours before the summary.
        last_day_by_reason: Those by reason, most first.
        daily_mean_before: Mean addresses suppressed per day over the 7 days before those 24
            hours (the usual pace).
    """

    total: int
    by_reason: dict[str, int]
    last_day: int
    last_day_by_reason: dict[str, int]
    daily_mean_before: float


def suppression_summary(session: Session, now: dt.datetime | None = None) -> SuppressionSummary:
    """Count the suppressed addresses by reason, overall and over the last day.

    Args:
        session: The database session; nothing is written.
        now: The end of the last day (default: now).

    Returns:
        The summary.
    """
    now = now or utcnow()
    day_ago = now - dt.timedelta(days=1)
    week_before = day_ago - dt.timedelta(days=7)

    def by_reason(*where: ColumnElement[bool]) -> dict[str, int]:
        rows = session.execute(
            select(Suppression.reason, func.count()).where(*where).group_by(Suppression.reason)
        ).tuples()
        return dict(sorted(rows, key=lambda item: (-item[1], item[0])))

    overall = by_reason()
    last_day = by_reason(Suppression.created_at > day_ago, Suppression.created_at <= now)
    before = (
        session.scalar(
            select(func.count()).where(
                Suppression.created_at > week_before, Suppression.created_at <= day_ago
            )
        )
        or 0
    )
    return SuppressionSummary(
        total=sum(overall.values()),
        by_reason=overall,
        last_day=sum(last_day.values()),
        last_day_by_reason=last_day,
        daily_mean_before=round(before / 7, 2),
    )


@dataclass(frozen=True)
class DeliveryDay:
    """What came of the messages settled on one UTC day.

    A message is settled when it was sent (on its ``sent_at`` day) or when a worker last took
    it and it failed, was suppressed or ended in ``unknown`` (its ``claimed_at`` day).

    Attributes:
        day: The day (ISO 8601 date).
        by_outcome: Messages by outcome, every one of :data:`OUTCOMES` listed.
        shares: Each outcome's share of ``total`` (None when nothing was settled that day).
        total: Messages settled that day.
        bounced: Of those sent, the ones the provider reports bounced or dropped.
    """

    day: str
    by_outcome: dict[str, int]
    shares: dict[str, float | None]
    total: int
    bounced: int


def _utc_day(session: Session, moment: ColumnElement[dt.datetime]) -> ColumnElement[str]:
    """The UTC day of a timestamp, as the database can group by it."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", moment))
    return func.date(moment)  # SQLite keeps UTC times as text


def delivery_by_day(
    session: Session, *, days: int = 30, now: dt.datetime | None = None
) -> list[DeliveryDay]:
    """Count the messages settled on each of the last ``days`` UTC days, by outcome.

    Args:
        session: The database session; nothing is written.
        days: How many days, today included.
        now: The time of the report: its UTC day is the last one (default: now).

    Returns:
        One entry per day, oldest first, days without any message included.

    Raises:
        ValueError: ``days`` is below 1.
    """
    if days < 1:
        raise ValueError(f"expected at least 1 day, found {days}")
    now = now or utcnow()
    last = now.astimezone(dt.UTC).date()
    first = last - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    settled = func.coalesce(Message.sent_at, Message.claimed_at)
    day = _utc_day(session, settled)
    bounced = case(
        (
            (Message.status == MessageStatus.SENT)
            & Message.delivery_status.in_(BOUNCED_DELIVERY_STATUSES),
            1,
        ),
        else_=0,
    )
    rows = session.execute(
        select(day, Message.status, func.count(), func.sum(bounced))
        .where(Message.status.in_(OUTCOMES), settled >= start, settled < end)
        .group_by(day, Message.status)
    ).tuples()
    counts: dict[dt.date, dict[str, int]] = {}
    bounces: Counter[dt.date] = Counter()
    for found_day, status, count, bounced_count in rows:
        date = dt.date.fromisoformat(str(found_day)[:10])
        counts.setdefault(date, dict.fromkeys(OUTCOMES, 0))[str(status)] += count
        bounces[date] += int(bounced_count or 0)
    result = []
    for offset in range(days):
        date = first + dt.timedelta(days=offset)
        by_outcome = counts.get(date, dict.fromkeys(OUTCOMES, 0))
        total = sum(by_outcome.values())
        result.append(
            DeliveryDay(
                day=date.isoformat(),
                by_outcome=by_outcome,
                shares={outcome: share_of(count, total) for outcome, count in by_outcome.items()},
                total=total,
                bounced=bounces[date],
            )
        )
    return result
