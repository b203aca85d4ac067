"""Provider events: what SendGrid's Event Webhook reports, recorded once and put to use.

Each event of a batch (SendGrid's format: ``event``, ``timestamp``, ``sg_event_id``,
``sg_message_id``, ``email``, the message's custom args such as ``nurture_message_id``, and
``url``, ``type``, ``reason``... depending on the event) becomes one ``ProviderEvent`` row, keyed
by ``sg_event_id`` (or a hash of the event when it has none): a batch sent twice adds nothing
the second time. A new event then

- updates its message's ``delivery_status`` (processed, deferred, delivered, bounce, dropped;
  a later stage never goes back to an earlier one), and moves a message the worker left
  ``sending`` or ``unknown``, or queued again after a failed try, to ``sent``: the provider had
  it, so it must not be sent again;
- becomes the member's ``email_open`` / ``email_click`` activity (``content_key`` names the
  content item whose URL was clicked); automatic opens (``sg_machine_open``, Apple Mail Privacy
  Protection) are not activity;
- puts the address on the suppression list: a bounce (not a ``blocked`` one, which is
  temporary), a spam report, an unsubscribe through SendGrid's own link.

An event is linked to a message by ``nurture_message_id`` (or, without it, by SendGrid's message
id) only when what the event says agrees with the message: message ids can be reused after an
erasure, and another member's open must not become this member's activity. Unlinked events are
stored all the same.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from nurture.delivery.suppression import normalise_address, suppress_address
from nurture.ingest.fields import load_json
from nurture.sentences import describe_provider_events
from nurture.storage import insert_ignoring_conflicts
from nurture.storage.models import (
    ActivityEvent,
    ContentItem,
    DeliveryStatus,
    Member,
    Message,
    MessageStatus,
    ProviderEvent,
    SuppressionReason,
    table_of,
)

__all__ = [
    "DELIVERY_STATUSES",
    "MAX_EVENT_DEPTH",
    "PROVIDER",
    "EventSummary",
    "RefusedEvent",
    "decode_event_batch",
    "record_provider_events",
]

logger = logging.getLogger(__name__)

PROVIDER = "sendgrid"
"""The ``ProviderEvent.provider`` of the events recorded here."""

MESSAGE_ID_ARG = "nurture_message_id"
"""The custom arg naming the ``Message`` (set by the SendGrid mailer)."""

DELIVERY_STATUSES: dict[str, int] = {
    DeliveryStatus.PROCESSED: 1,
    DeliveryStatus.DEFERRED: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.BOUNCE: 4,
    DeliveryStatus.DROPPED: 4,
}
"""Events that set ``Message.delivery_status``, with their stage: a lower stage never replaces a
higher one (events can arrive out of order)."""

MAX_EVENT_DEPTH = 32
"""Deepest nesting of lists and objects inside one event (SendGrid's events are flat, with a
list of categories at most); a deeper event is refused on its own."""

_ACTIVITY_TYPES = {"open": "email_open", "click": "email_click"}
_SUPPRESSING: dict[str, SuppressionReason] = {
    "bounce": SuppressionReason.BOUNCED,
    "spamreport": SuppressionReason.COMPLAINED,
    "unsubscribe": SuppressionReason.UNSUBSCRIBED,
    "group_unsubscribe": SuppressionReason.UNSUBSCRIBED,
}
_MAX_EVENT_ID = 300  # ProviderEvent.event_id
_MAX_IDEMPOTENCY_KEY = 128  # ActivityEvent.idempotency_key
_MAX_TEXT = 2000
# Events dated outside these years are refused: no email predates 2000, none is sent after 2200.
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp()
_LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC).timestamp()


@dataclass
class EventSummary:
    """What a batch of provider events did.

    Attributes:
        received: Items in the batch.
        recorded: New events stored.
        duplicates: Events already stored (a batch sent again), skipped.
        invalid: Items that are not events (no type, no usable timestamp...), skipped.
        unmatched: New events linked to no message (unknown, or not matching what it says).
        delivery_updates: Messages whose delivery status or status changed.
        activities: Opens and clicks added to members' activity.
        suppressed: Addresses added to the suppression list.
        refused: Why some invalid items were refused (``event 3: nested deeper than 32
            levels``), by their index in the batch.
    """

    received: int = 0
    recorded: int = 0
    duplicates: int = 0
    invalid: int = 0
    unmatched: int = 0
    delivery_updates: int = 0
    activities: int = 0
    suppressed: int = 0
    refused: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counts by name, and the reasons of the refusals."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RefusedEvent:
    """An item of a batch refused before it was decoded (see :func:`decode_event_batch`).

    Attributes:
        reason: Why, in words.
    """

    reason: str


class _TooDeep(ValueError):
    """An event nested deeper than ``MAX_EVENT_DEPTH``."""


@dataclass(frozen=True)
class _Event:
    """The parts of one event this module uses, checked."""

    type: str
    event_id: str
    occurred_at: dt.datetime
    email: str | None
    provider_message_id: str | None
    message_id: int | None
    url: str | None
    bounce_type: str | None
    machine_open: bool
    payload: dict[str, Any]


def _text(value: Any, max_length: int = _MAX_TEXT) -> str | None:
    """``value`` if it is a string a database can store, stripped and not empty; else None."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > max_length or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, from JSON escapes
        return None
    return value


def _hash_id(data: str) -> str:
    return "sha256:" + hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


def _parse_event(item: Any) -> _Event | None:
    """The event ``item`` describes, or None when it is not a usable event."""
    if not isinstance(item, Mapping):
        return None
    kind = _text(item.get("event"), 50)
    timestamp = item.get("timestamp")
    if kind is None or isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return None
    if not math.isfinite(timestamp) or not _EARLIEST <= timestamp < _LATEST:
        return None
    payload = _storable(dict(item))
    event_id = _text(item.get("sg_event_id"), _MAX_EVENT_ID)
    if event_id is None:
        # The same event sent again hashes the same: it is still recorded once.
        event_id = _hash_id(json.dumps(payload, sort_keys=True, default=str))
    email = _text(item.get("email"), 320)
    raw_message_id = item.get(MESSAGE_ID_ARG)
    message_id: int | None = None
    if isinstance(raw_message_id, str) and raw_message_id.strip().isdigit():
        message_id = int(raw_message_id.strip())
    elif isinstance(raw_message_id, int) and not isinstance(raw_message_id, bool):
        message_id = raw_message_id
    if message_id is not None and not 0 < message_id < 2**63:
        message_id = None
    return _Event(
        type=kind,
        event_id=event_id,
        occurred_at=dt.datetime.fromtimestamp(timestamp, dt.UTC),
        email=email if email is not None and "@" in email else None,
        provider_message_id=_text(item.get("sg_message_id"), 300),
        message_id=message_id,
        url=_text(item.get("url")),
        bounce_type=_text(item.get("type"), 50),
        machine_open=item.get("sg_machine_open") is True,
        payload=payload,
    )


def _same_provider_message(stored: str | None, reported: str | None) -> bool:
    """Whether SendGrid's id of an event can be that of the message (unknown either side: yes).

    The event's ``sg_message_id`` is the ``X-Message-Id`` of the send, a dot and more.
    """
    if not stored or not reported:
        return True
    return reported == stored or reported.startswith(stored + ".")


def _find_message(session: Session, event: _Event) -> tuple[Message, Member] | None:
    """The message the event is about, and its member, when the event agrees with them."""
    message: Message | None = None
    if event.message_id is not None:
        message = session.get(Message, event.message_id, populate_existing=True)
    elif event.provider_message_id:
        prefix = event.provider_message_id.split(".", 1)[0]
        message = session.scalar(
            select(Message).where(Message.provider_message_id == prefix).limit(1)
        )
    if message is None:
        return None
    if not _same_provider_message(message.provider_message_id, event.provider_message_id):
        return None
    member = session.get(Member, message.member_id, populate_existing=True)
    if member is None:
        return None
    if event.email is not None and normalise_address(event.email) != normalise_address(
        member.email
    ):
        return None
    return message, member


def _update_message(session: Session, message: Message, event: _Event) -> bool:
    """Apply what the event says about the delivery of ``message``; whether anything changed."""
    changed = False
    retried = message.status == MessageStatus.QUEUED and message.attempts > 0
    if retried or message.status in (MessageStatus.SENDING, MessageStatus.UNKNOWN):
        # The provider had it: the send went through, whatever the worker could record (a
        # timeout puts a message back in the queue); sending it again would be a duplicate.
        # A conditional UPDATE: a worker may claim the retried message meanwhile, and then the
        # worker's result stands.
        settled = session.execute(
            update(Message)
            .where(
                Message.id == message.id,
                or_(
                    Message.status.in_([MessageStatus.SENDING, MessageStatus.UNKNOWN]),
                    and_(Message.status == MessageStatus.QUEUED, Message.attempts > 0),
                ),
            )
            .values(
                status=MessageStatus.SENT,
                sent_at=message.sent_at or event.occurred_at,
                backend=message.backend or PROVIDER,
                provider_message_id=message.provider_message_id
                or (event.provider_message_id or "").split(".", 1)[0]
                or None,
                error=None,
            )
            .execution_options(synchronize_session=False)
        )
        session.refresh(message)
        changed = settled.rowcount == 1  # type: ignore[attr-defined]
    stage = DELIVERY_STATUSES.get(event.type)
    if stage is not None and stage >= DELIVERY_STATUSES.get(message.delivery_status or "", 0):
        changed = changed or message.delivery_status != event.type
        message.delivery_status = DeliveryStatus(event.type)
    return changed


def _normalise_url(url: str) -> str:
    """``url`` without its fragment and trailing slash, scheme and host in lower case."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


class _ContentKeys:
    """Content item keys by URL, read once per batch."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._by_url: dict[str, str] | None = None

    def find(self, url: str | None) -> str | None:
        if url is None:
            return None
        if self._by_url is None:
            self._by_url = {}
            for key, item_url in self._session.execute(select(ContentItem.key, ContentItem.url)):
                self._by_url.setdefault(_normalise_url(item_url), key)
        return self._by_url.get(_normalise_url(url))


def _add_activity(
    session: Session, event: _Event, message: Message, content_keys: _ContentKeys
) -> bool:
    """Record an open or click as the member's activity; whether it was added."""
    kind = _ACTIVITY_TYPES.get(event.type)
    if kind is None or (event.type == "open" and event.machine_open):
        return False
    key = f"{PROVIDER}:{event.event_id}"
    if len(key) > _MAX_IDEMPOTENCY_KEY:
        key = f"{PROVIDER}:{_hash_id(event.event_id)}"
    properties: dict[str, Any] = {"message_id": message.id, "journey": message.journey_key}
    if event.url is not None:
        properties["url"] = event.url
    row = {
        "member_id": message.member_id,
        "type": kind,
        "occurred_at": event.occurred_at,
        "content_key": content_keys.find(event.url) if event.type == "click" else None,
        "properties": properties,
        "idempotency_key": key,
    }
    return insert_ignoring_conflicts(session, table_of(ActivityEvent), [row]) == 1


def _suppress(
    session: Session,
    event: _Event,
    member: Member | None,
    salt: str,
    now: dt.datetime,
) -> bool:
    """Put the address an event reports as bouncing, complaining or unsubscribing on the list."""
    reason = _SUPPRESSING.get(event.type)
    if reason is None or (event.type == "bounce" and event.bounce_type == "blocked"):
        return False
    address = event.email or (member.email if member is not None else None)
    if address is None:
        return False
    return suppress_address(session, address, salt, reason, f"{PROVIDER}:{event.type}", now=now)


def record_provider_events(
    session: Session, events: Sequence[Any], *, salt: str, now: dt.datetime
) -> EventSummary:
    """Record a batch of SendGrid events and apply each new one (the caller commits).

    Args:
        session: The database session.
        events: The decoded items of the webhook's JSON array; those that are not usable events
            are skipped and counted as invalid.
        salt: Salt of the suppression list (``Settings.suppression_salt``).
        now: When the batch was received.

    Returns:
        Counts of what the batch did.
    """
    summary = EventSummary(received=len(events))
    content_keys = _ContentKeys(session)
    for index, item in enumerate(events):
        try:
            event = None if isinstance(item, RefusedEvent) else _parse_event(item)
        except _TooDeep as exc:
            event, item = None, RefusedEvent(str(exc))
        if isinstance(item, RefusedEvent):
            logger.warning("provider event %d of the batch refused: %s", index, item.reason)
            summary.refused.append(f"event {index}: {item.reason}")
        if event is None:
            summary.invalid += 1
            continue
        found = _find_message(session, event)
        message, member = found if found is not None else (None, None)
        row = {
            "provider": PROVIDER,
            "event_id": event.event_id,
            "message_id": message.id if message is not None else None,
            "type": event.type,
            "occurred_at": event.occurred_at,
            "payload": event.payload,
            "received_at": now,
        }
        if not insert_ignoring_conflicts(session, table_of(ProviderEvent), [row]):
            summary.duplicates += 1
            continue
        summary.recorded += 1
        if message is None:
            summary.unmatched += 1
        else:
            summary.delivery_updates += _update_message(session, message, event)
            summary.activities += _add_activity(session, event, message, content_keys)
        summary.suppressed += _suppress(session, event, member, salt, now)
        session.flush()  # the next event of the same message reads this one's changes
    logger.info("%s", describe_provider_events(summary))
    return summary


def _storable(value: Any, depth: int = 0) -> Any:
    """``value`` with texts PostgreSQL's JSON refuses made safe (NUL, lone surrogates).

    Raises:
        _TooDeep: Lists and objects are nested deeper than ``MAX_EVENT_DEPTH``.
    """
    if isinstance(value, str):
        text = value.replace("\x00", "\ufffd")
        return text.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict | list) and depth >= MAX_EVENT_DEPTH:
        raise _TooDeep(f"nested deeper than {MAX_EVENT_DEPTH} levels")
    if isinstance(value, dict):
        return {
            _storable(str(key), depth + 1): _storable(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_storable(item, depth + 1) for item in value]
    return value


_STRUCTURE = re.compile(r'["\[\]{},]')
_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_SPACE = " \t\r\n"


def _split_json_array(text: str) -> list[tuple[str, int]] | None:
    """The items of a JSON array, each as its source and its nesting depth, undecoded.

    A linear scan of the brackets outside strings: how deep an item is nested is known before
    the item is decoded (the decoder recurses). None when ``text`` is not one array.
    """
    text = text.strip(_JSON_SPACE)
    if not text.startswith("["):
        return None
    items: list[tuple[str, int]] = []
    depth, deepest, start, pos = 1, 1, 1, 1
    while True:
        found = _STRUCTURE.search(text, pos)
        if found is None:
            return None
        char, pos = found.group(), found.end()
        if char == '"':
            rest = _STRING_REST.match(text, pos)
            if rest is None:
                return None
            pos = rest.end()
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
        if (depth == 1 and char == ",") or depth == 0:
            source = text[start : pos - 1].strip(_JSON_SPACE)
            if source or char == "," or items:
                items.append((source, deepest - 1))
            start, deepest = pos, 1
        if depth == 0:
            return items if char == "]" and pos == len(text) else None


def decode_event_batch(body: bytes) -> list[Any] | None:
    """The items of a webhook body (a JSON array), each decoded on its own.

    An item nested deeper than ``MAX_EVENT_DEPTH`` is not decoded, and one holding what JSON
    or a database cannot take (an integer beyond 64 bits, ``NaN``, a key named twice) is not
    kept: each becomes a ``RefusedEvent`` saying why, and the other items of the batch are kept.

    Args:
        body: The request body, UTF-8 JSON.

    Returns:
        The items, or None when the body is not a JSON array (or an item is not JSON).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = _split_json_array(text)
    if parts is None:
        return None
    items: list[Any] = []
    for source, depth in parts:
        if depth > MAX_EVENT_DEPTH:
            items.append(RefusedEvent(f"nested deeper than {MAX_EVENT_DEPTH} levels"))
            continue
        try:
            items.append(load_json(source))
        except json.JSONDecodeError:
            return None
        except ValueError as error:
            items.append(RefusedEvent(str(error)))
    return items
