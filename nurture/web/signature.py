"""Checks of SendGrid's signed Event Webhook: the public key, the signature, the timestamp.

SendGrid signs the timestamp header followed by the raw request body with ECDSA P-256 /
SHA-256 and sends the base64 DER signature in ``X-Twilio-Email-Event-Webhook-Signature``. The
signature is checked with the ``sendgrid`` library's own helper, over the body exactly as
received; the timestamp must be recent, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import binascii
import datetime as dt
import re

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from nurture.errors import ConfigurationError

__all__ = [
    "MAX_CLOCK_SKEW_SECONDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "check_webhook_signature",
    "load_webhook_public_key",
]

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP
MAX_CLOCK_SKEW_SECONDS = 60
"""How far in the future a timestamp may be (the two clocks differ a little)."""

_PEM_LINE = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def load_webhook_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key of the webhook, from SendGrid's settings page.

    Args:
        text: The key as SendGrid shows it (base64 of its DER form), or the same in PEM.

    Returns:
        The elliptic curve public key.

    Raises:
        ConfigurationError: The text is not an elliptic curve public key.
    """
    body = "".join(_PEM_LINE.sub("", text).split())
    try:
        key = EventWebhook().convert_public_key_to_ecdsa(body)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(
            "sendgrid_webhook_public_key: expected the base64 (or PEM) public key shown in "
            f"SendGrid's Event Webhook settings, found text that is not a key ({exc})"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigurationError(
            "sendgrid_webhook_public_key: expected an elliptic curve (ECDSA) public key, "
            f"found a {type(key).__name__}"
        )
    return key


def check_webhook_signature(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    key: ec.EllipticCurvePublicKey,
    *,
    now: dt.datetime,
    max_age_seconds: int,
) -> str | None:
    """Why a webhook request must be refused, or None when it is signed and recent.

    Args:
        body: The raw request body.
        signature: The signature header, if any.
        timestamp: The timestamp header (unix seconds), if any.
        key: SendGrid's public key (``load_webhook_public_key``).
        now: The current time.
        max_age_seconds: The oldest timestamp accepted, in seconds before ``now``.

    Returns:
        The reason, for the log and the answer, or None.
    """
    if not signature or not timestamp:
        return f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header"
    if not _TIMESTAMP.fullmatch(timestamp):
        return f"{TIMESTAMP_HEADER}: expected unix seconds"
    age = now.timestamp() - int(timestamp)
    if age > max_age_seconds:
        return f"{TIMESTAMP_HEADER}: signed {int(age)} s ago, more than {max_age_seconds} s"
    if age < -MAX_CLOCK_SKEW_SECONDS:
        return f"{TIMESTAMP_HEADER}: {int(-age)} s in the future"
    try:
        payload = body.decode("utf-8")
        valid = EventWebhook().verify_signature(payload, signature, timestamp, key)
    except (UnicodeDecodeError, binascii.Error, ValueError, TypeError, InvalidSignature):
        valid = False
    return None if valid else "signature does not match"
