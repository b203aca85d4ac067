"""Delivery: render messages in a jinja2 sandbox, send them through a mailer, exactly once."""

from nurture.delivery.mailers import (
    DeliveryResult,
    Mailer,
    OutboxMailer,
    OutgoingEmail,
    build_email_message,
    outbox_file_name,
    write_outbox_index,
)
from nurture.delivery.rendering import (
    STRINGS,
    RenderedEmail,
    TemplateRenderer,
    list_email_templates,
    resolve_language,
)
from nurture.delivery.suppression import (
    SuppressionReason,
    find_suppressed_hashes,
    find_suppression,
    is_suppressed,
    normalise_address,
    suppress_address,
    suppression_hash,
)
from nurture.delivery.unsubscribe import (
    InvalidUnsubscribeTokenError,
    make_unsubscribe_token,
    verify_unsubscribe_token,
)
from nurture.delivery.worker import DeliverySummary, deliver_messages, due_message_ids

__all__ = [
    "STRINGS",
    "DeliveryResult",
    "DeliverySummary",
    "InvalidUnsubscribeTokenError",
    "Mailer",
    "OutboxMailer",
    "OutgoingEmail",
    "RenderedEmail",
    "SuppressionReason",
    "TemplateRenderer",
    "build_email_message",
    "deliver_messages",
    "due_message_ids",
    "find_suppressed_hashes",
    "find_suppression",
    "is_suppressed",
    "list_email_templates",
    "make_unsubscribe_token",
    "normalise_address",
    "outbox_file_name",
    "resolve_language",
    "suppress_address",
    "suppression_hash",
    "verify_unsubscribe_token",
    "write_outbox_index",
]
