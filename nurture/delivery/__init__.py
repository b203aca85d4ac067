"""Delivery: render messages in a jinja2 sandbox, send them through a mailer, exactly once.

``SendGridMailer`` is imported on first use: the ``sendgrid`` library is slow to import and
only that backend needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nurture.delivery.backends import MAIL_BACKENDS, acceptance_check_for, mailer_for
from nurture.delivery.events import EventSummary, record_provider_events
from nurture.delivery.mailers import (
    AcceptanceCheck,
    DeliveryResult,
    HandedOver,
    Mailer,
    OutgoingEmail,
    build_email_message,
    redact_address,
)
from nurture.delivery.outbox_mailer import OutboxMailer, outbox_file_name, write_outbox_index
from nurture.delivery.rendering import (
    STRINGS,
    RenderedEmail,
    TemplateRenderer,
    list_email_templates,
    resolve_language,
)
from nurture.delivery.smtp import SmtpMailer
from nurture.delivery.suppression import (
    SuppressionReason,
    find_suppressed_hashes,
    find_suppression,
    is_suppressed,
    normalise_address,
    resubscribe_address,
    suppress_address,
    suppression_hash,
)
from nurture.delivery.unsubscribe import (
    InvalidUnsubscribeTokenError,
    make_unsubscribe_token,
    verify_unsubscribe_token,
)
from nurture.delivery.worker import (
    DeliverySummary,
    RecoverySummary,
    RetryPolicy,
    UnknownMessage,
    claim_messages,
    deliver_messages,
    due_message_ids,
    recover_stale_messages,
    recovery_verdict,
    requeue_unknown,
    resolve_unknown,
    unknown_messages,
)

if TYPE_CHECKING:
    from nurture.delivery.sendgrid_mailer import SendGridMailer

__all__ = [
    "MAIL_BACKENDS",
    "STRINGS",
    "AcceptanceCheck",
    "DeliveryResult",
    "DeliverySummary",
    "EventSummary",
    "HandedOver",
    "InvalidUnsubscribeTokenError",
    "Mailer",
    "OutboxMailer",
    "OutgoingEmail",
    "RecoverySummary",
    "RenderedEmail",
    "RetryPolicy",
    "SendGridMailer",
    "SmtpMailer",
    "SuppressionReason",
    "TemplateRenderer",
    "UnknownMessage",
    "acceptance_check_for",
    "build_email_message",
    "claim_messages",
    "deliver_messages",
    "due_message_ids",
    "find_suppressed_hashes",
    "find_suppression",
    "is_suppressed",
    "list_email_templates",
    "mailer_for",
    "make_unsubscribe_token",
    "normalise_address",
    "outbox_file_name",
    "record_provider_events",
    "recover_stale_messages",
    "recovery_verdict",
    "redact_address",
    "requeue_unknown",
    "resolve_language",
    "resolve_unknown",
    "resubscribe_address",
    "suppress_address",
    "suppression_hash",
    "unknown_messages",
    "verify_unsubscribe_token",
    "write_outbox_index",
]


def __getattr__(name: str) -> Any:
    if name == "SendGridMailer":
        from nurture.delivery.sendgrid_mailer import SendGridMailer

        return SendGridMailer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
