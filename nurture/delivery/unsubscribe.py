"""Signed unsubscribe tokens: a link in an email identifies its member without a login.

A token is ``<payload>.<signature>``, both URL-safe base64 without padding. The payload is
``<member id>:<issued at, unix seconds>``; the signature is HMAC-SHA256 of a versioned,
purpose-bound prefix plus the payload under the unsubscribe secret. Anyone can read a token's
member id; nobody without the secret can forge or alter one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac

from nurture.errors import ConfigurationError, InvalidUnsubscribeTokenError

__all__ = [
    "InvalidUnsubscribeTokenError",
    "make_unsubscribe_token",
    "verify_unsubscribe_token",
]

_PURPOSE = b"nurture-unsubscribe-v1:"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _signature(payload: bytes, secret: str) -> bytes:
    if not secret:
        raise ConfigurationError("unsubscribe secret: expected a non-empty string, found ''")
    return hmac.new(secret.encode("utf-8"), _PURPOSE + payload, hashlib.sha256).digest()


def make_unsubscribe_token(member_id: int, secret: str, issued_at: dt.datetime) -> str:
    """Sign a token naming ``member_id``.

    Args:
        member_id: The member the token unsubscribes.
        secret: The HMAC key (``Settings.unsubscribe_secret``).
        issued_at: When the token is issued (timezone-aware); used for an optional maximum age.

    Returns:
        A URL-safe token, fit for a path segment.

    Raises:
        ConfigurationError: The secret is empty.
        ValueError: ``issued_at`` is naive or ``member_id`` is not a positive integer.
    """
    if issued_at.tzinfo is None:
        raise ValueError(f"issued_at: expected a timezone-aware datetime, found {issued_at!r}")
    if isinstance(member_id, bool) or not isinstance(member_id, int) or member_id <= 0:
        raise ValueError(f"member_id: expected a positive integer, found {member_id!r}")
    payload = f"{member_id}:{int(issued_at.timestamp())}".encode("ascii")
    return f"{_b64encode(payload)}.{_b64encode(_signature(payload, secret))}"


def verify_unsubscribe_token(
    token: str,
    secret: str,
    max_age: dt.timedelta | None = None,
    *,
    now: dt.datetime | None = None,
) -> int:
    """Check a token's signature (in constant time) and return the member id it names.

    Args:
        token: The token from the unsubscribe link.
        secret: The HMAC key it was signed with.
        max_age: Refuse tokens issued longer ago than this; None (the default) accepts any age,
            as an unsubscribe link must keep working long after the email was sent.
        now: The current time, for ``max_age``; default: the clock.

    Returns:
        The member id.

    Raises:
        InvalidUnsubscribeTokenError: The token is malformed, its signature does not match, or
            it is older than ``max_age``.
        ConfigurationError: The secret is empty.
    """
    try:
        payload_part, signature_part = token.split(".")
        payload = _b64decode(payload_part)
        signature = _b64decode(signature_part)
    except (ValueError, binascii.Error, UnicodeEncodeError, AttributeError) as exc:
        raise InvalidUnsubscribeTokenError(
            "unsubscribe token: expected '<payload>.<signature>' in URL-safe base64, "
            f"found {token!r:.80}"
        ) from exc
    if not hmac.compare_digest(signature, _signature(payload, secret)):
        raise InvalidUnsubscribeTokenError("unsubscribe token: signature does not match")
    try:
        member_text, issued_text = payload.decode("ascii").split(":")
        member_id, issued_ts = int(member_text), int(issued_text)
    except (ValueError, UnicodeDecodeError) as exc:  # signed but unreadable: another format
        raise InvalidUnsubscribeTokenError("unsubscribe token: unreadable payload") from exc
    if max_age is not None:
        issued_at = dt.datetime.fromtimestamp(issued_ts, dt.UTC)
        current = now or dt.datetime.now(dt.UTC)
        if current - issued_at > max_age:
            raise InvalidUnsubscribeTokenError(
                f"unsubscribe token: issued {issued_at.isoformat()}, older than {max_age}"
            )
    return member_id
