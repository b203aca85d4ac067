"""The mail backends' interface: ``Mailer.send(OutgoingEmail) -> DeliveryResult``.

A backend raises ``DeliveryError`` when a retry may succeed and ``PermanentDeliveryError`` when
it will not (both in ``nurture.errors``); the worker turns those into message statuses. Their
messages carry the provider's reason but never the recipient's address (``redact_address``).
Every backend that speaks MIME sends the same message, ``build_email_message``.

The backends: ``OutboxMailer`` (``nurture.delivery.outbox_mailer``), the default, writes each
email as a file; ``SmtpMailer`` (``nurture.delivery.smtp``) and ``SendGridMailer``
(``nurture.delivery.sendgrid_mailer``) send for real. ``nurture.delivery.backends.mailer_for``
picks one from the settings.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol, runtime_checkable

from nurture.errors import PermanentDeliveryError

__all__ = [
    "AcceptanceCheck",
    "DeliveryResult",
    "HandedOver",
    "Mailer",
    "OutgoingEmail",
    "build_email_message",
    "redact_address",
]

RECIPIENT_PLACEHOLDER = "<recipient>"


@dataclass(frozen=True)
class OutgoingEmail:
    """An email ready to send, backend-neutral.

    Attributes:
        message_id: The ``Message`` row id; backends use it to make sends idempotent.
        to_email: Recipient address.
        to_name: Recipient display name (may be empty).
        from_email: Sender address.
        from_name: Sender display name.
        subject: Subject line.
        html: HTML part.
        text: Plain-text part.
        headers: Extra headers (``List-Unsubscribe``...).
        journey_key: The journey the message belongs to.
        step_id: The journey step that queued it.
        reply_to: Where replies go (``brand.yaml``'s ``reply_to``); empty: to the sender.
    """

    message_id: int
    to_email: str
    to_name: str
    from_email: str
    from_name: str
    subject: str
    html: str
    text: str
    headers: dict[str, str] = field(default_factory=dict)
    journey_key: str = ""
    step_id: str = ""
    reply_to: str = ""


@dataclass(frozen=True)
class DeliveryResult:
    """What a backend says about an accepted email.

    Attributes:
        provider_message_id: The backend's id of the email (for the outbox: its Message-ID).
        backend: Name of the backend (``outbox``, ``smtp``, ``sendgrid``).
    """

    provider_message_id: str
    backend: str


@runtime_checkable
class Mailer(Protocol):
    """A mail backend."""

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        """Hand ``email`` to the backend.

        Raises:
            DeliveryError: The backend failed; a retry may succeed.
            PermanentDeliveryError: The backend refused the email for good.
        """
        ...


@dataclass(frozen=True)
class HandedOver:
    """A message the worker handed to a backend and never heard back about (it crashed).

    Attributes:
        message_id: The ``Message`` row id.
        journey_key: The journey the message belongs to.
        step_id: The journey step that queued it.
        backend: The backend it was handed to (``Message.backend``), if known.
        handed_over_at: When it was handed over.
    """

    message_id: int
    journey_key: str
    step_id: str
    backend: str | None
    handed_over_at: dt.datetime | None


@runtime_checkable
class AcceptanceCheck(Protocol):
    """A backend that can tell, after a crash, whether it holds an email handed to it.

    The outbox can (the ``.eml`` file is there or not); SMTP and SendGrid cannot, and their
    handed-over messages are settled by provider events or by an operator.
    """

    backend: str
    """The backend's name: only messages handed to a backend of this name are checked."""

    def holds(self, message: HandedOver) -> bool | None:
        """Whether the backend has ``message``: True, False (certainly not), None (cannot tell)."""
        ...


def _domain(address: str) -> str:
    _, _, domain = address.rpartition("@")
    return re.sub(r"[^A-Za-z0-9.-]", "", domain) or "nurture.invalid"


def build_email_message(email: OutgoingEmail, *, date: dt.datetime | None = None) -> EmailMessage:
    """An RFC 5322 multipart/alternative message (text, then HTML) for ``email``.

    The Message-ID is derived from the message id, so every backend and every retry of one
    message carries the same Message-ID.

    Args:
        email: The email.
        date: The Date header; default: the clock.

    Returns:
        The message.

    Raises:
        PermanentDeliveryError: An address or header is invalid (a newline in a header...).
    """
    message = EmailMessage()
    try:
        message["From"] = Address(display_name=email.from_name, addr_spec=email.from_email)
        message["To"] = Address(display_name=email.to_name, addr_spec=email.to_email)
        if email.reply_to:
            message["Reply-To"] = Address(addr_spec=email.reply_to)
        message["Subject"] = email.subject
        message["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
        message["Message-ID"] = f"<nurture.{email.message_id}@{_domain(email.from_email)}>"
        message["X-Nurture-Message-Id"] = str(email.message_id)
        if email.journey_key:
            message["X-Nurture-Journey"] = email.journey_key
        if email.step_id:
            message["X-Nurture-Step"] = email.step_id
        for name, value in email.headers.items():
            message[name] = value
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
    except (ValueError, TypeError, IndexError) as exc:
        reason = redact_address(str(exc), email.to_email)
        raise PermanentDeliveryError(
            f"message {email.message_id}: cannot build the email: {reason}"
        ) from exc
    return message


def redact_address(text: str, address: str) -> str:
    """``text`` with every occurrence of ``address`` (any case) replaced by ``<recipient>``.

    Provider replies often quote the recipient (``550 5.1.1 <zoe@example.org>: unknown user``);
    error messages are stored and logged, so they must not carry it.

    Args:
        text: A provider's reason.
        address: The recipient's address.

    Returns:
        The text without the address.
    """
    if not address:
        return text
    return re.sub(re.escape(address), RECIPIENT_PLACEHOLDER, text, flags=re.IGNORECASE)
