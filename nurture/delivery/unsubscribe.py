"""Signed unsubscribe tokens: a link in an email identifies its member without a login.

A token is ``<payload>.<signature>``, both URL-safe base64 without padding. The payload is
``<member id>:<issued at, unix seconds>:<address tag>``; the signature is HMAC-SHA256 of a
versioned, purpose-bound prefix plus the payload under the unsubscribe secret. Anyone can read a
token's member id; nobody without the secret can forge or alter one.

The address tag is a short keyed hash of the member's normalised address. SQLite may give the id
of an erased member to a new one, so an id alone could point a stale link at someone else: a
token only acts on a member whose current address has the tag it carries
(``find_token_member``). It also stops an old link from acting once the member changed address.
Tokens made without an address (no tag) still verify, but never find a member.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from sqlalchemy.orm import Session

from nurture.delivery.suppression import normalise_address
from nurture.errors import ConfigurationError, InvalidUnsubscribeTokenError
from nurture.storage.models import Member

__all__ = [
    "InvalidUnsubscribeTokenError",
    "UnsubscribeToken",
    "find_token_member",
    "make_unsubscribe_token",
    "read_unsubscribe_token",
    "unsubscribe_address_tag",
    "verify_unsubscribe_token",
]

_PURPOSE = b"nurture-unsubscribe-v1:"
_ADDRESS_PURPOSE = b"nurture-unsubscribe-address-v1:"
_TAG_BYTES = 9  # 72 bits, 12 characters: only tells addresses of one member id apart
_MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class UnsubscribeToken:
    """What a verified token says.

    Attributes:
        member_id: The member it was issued for.
        issued_at: When it was issued (UTC, to the second).
        address_tag: The tag of the member's address when it was issued; None for a token made
            without an address.
    """

    member_id: int
    issued_at: dt.datetime
    address_tag: str | None


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _key(secret: str) -> bytes:
    if not secret:
        raise ConfigurationError("unsubscribe secret: expected a non-empty string, found ''")
    return secret.encode("utf-8")


def _signature(payload: bytes, secret: str) -> bytes:
    return hmac.new(_key(secret), _PURPOSE + payload, hashlib.sha256).digest()


def unsubscribe_address_tag(email: str, secret: str) -> str:
    """The tag a token carries for ``email``: a short keyed hash of the normalised address.

    Args:
        email: The address, in any case, with or without surrounding spaces.
        secret: The HMAC key (``Settings.unsubscribe_secret``).

    Returns:
        12 URL-safe base64 characters; without the secret they say nothing about the address.

    Raises:
        ConfigurationError: The secret is empty.
    """
    data = _ADDRESS_PURPOSE + normalise_address(email).encode("utf-8")
    return _b64encode(hmac.new(_key(secret), data, hashlib.sha256).digest()[:_TAG_BYTES])


def make_unsubscribe_token(
    member_id: int, secret: str, issued_at: dt.datetime, *, email: str | None = None
) -> str:
    """Sign a token naming ``member_id`` (and, given ``email``, bound to that address).

    Args:
        member_id: The member the token unsubscribes.
        secret: The HMAC key (``Settings.unsubscribe_secret``).
        issued_at: When the token is issued (timezone-aware); used for an optional maximum age.
        email: The member's address. The web pages act only on tokens made with it: pass it
            for every link sent to a member.

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
    fields = [str(member_id), str(int(issued_at.timestamp()))]
    if email is not None:
        fields.append(unsubscribe_address_tag(email, secret))
    payload = ":".join(fields).encode("ascii")
    return f"{_b64encode(payload)}.{_b64encode(_signature(payload, secret))}"


def read_unsubscribe_token(
    token: str,
    secret: str,
    max_age: dt.timedelta | None = None,
    *,
    now: dt.datetime | None = None,
) -> UnsubscribeToken:
    """Check a token's signature (in constant time) and return what it says.

    Args:
        token: The token from the unsubscribe link.
        secret: The HMAC key it was signed with.
        max_age: Refuse tokens issued longer ago than this; None (the default) accepts any age,
            as an unsubscribe link must keep working long after the email was sent.
        now: The current time, for ``max_age``; default: the clock.

    Returns:
        The member id, issue time and address tag.

    Raises:
        InvalidUnsubscribeTokenError: The token is malformed, its signature does not match, or
            it is older than ``max_age``.
        ConfigurationError: The secret is empty.
    """
    try:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise ValueError("too long")
        payload_part, signature_part = token.split(".")
        payload = _b64decode(payload_part)
        signature = _b64decode(signature_part)
    except (ValueError, binascii.Error, UnicodeEncodeError, AttributeError, TypeError) as exc:
        raise InvalidUnsubscribeTokenError(
            "unsubscribe token: expected '<payload>.<signature>' in URL-safe base64, "
            f"found {token!r:.80}"
        ) from exc
    if not hmac.compare_digest(signature, _signature(payload, secret)):
        raise InvalidUnsubscribeTokenError("unsubscribe token: signature does not match")
    try:
        member_text, issued_text, *rest = payload.decode("ascii").split(":")
        if len(rest) > 1:
            raise ValueError("too many fields")
        member_id, issued_ts = int(member_text), int(issued_text)
        issued_at = dt.datetime.fromtimestamp(issued_ts, dt.UTC)
    except (ValueError, UnicodeDecodeError, OverflowError, OSError) as exc:
        # Signed but unreadable: another format.
        raise InvalidUnsubscribeTokenError("unsubscribe token: unreadable payload") from exc
    if max_age is not None:
        current = now or dt.datetime.now(dt.UTC)
        if current - issued_at > max_age:
            raise InvalidUnsubscribeTokenError(
                f"unsubscribe token: issued {issued_at.isoformat()}, older than {max_age}"
            )
    return UnsubscribeToken(member_id, issued_at, rest[0] if rest else None)


def verify_unsubscribe_token(
    token: str,
    secret: str,
    max_age: dt.timedelta | None = None,
    *,
    now: dt.datetime | None = None,
    email: str | None = None,
) -> int:
    """Check a token's signature (in constant time) and return the member id it names.

    Args:
        token: The token from the unsubscribe link.
        secret: The HMAC key it was signed with.
        max_age: Refuse tokens issued longer ago than this; None (the default) accepts any age.
        now: The current time, for ``max_age``; default: the clock.
        email: When given, the token must also have been made for this address.

    Returns:
        The member id.

    Raises:
        InvalidUnsubscribeTokenError: The token is malformed, its signature does not match, it
            is older than ``max_age``, or it was not made for ``email``.
        ConfigurationError: The secret is empty.
    """
    found = read_unsubscribe_token(token, secret, max_age, now=now)
    if email is not None:
        _check_address(found, email, secret)
    return found.member_id


def _check_address(token: UnsubscribeToken, email: str, secret: str) -> None:
    if token.address_tag is None:
        raise InvalidUnsubscribeTokenError("unsubscribe token: made without an address")
    if not hmac.compare_digest(token.address_tag, unsubscribe_address_tag(email, secret)):
        raise InvalidUnsubscribeTokenError(
            "unsubscribe token: made for another address than the member's"
        )


def find_token_member(
    session: Session,
    token: str,
    secret: str,
    max_age: dt.timedelta | None = None,
    *,
    now: dt.datetime | None = None,
) -> Member:
    """The member a token acts on: the one it names, if their address is still the one it tags.

    Args:
        session: The database session.
        token: The token from the unsubscribe or preference link.
        secret: The HMAC key it was signed with.
        max_age: Refuse tokens issued longer ago than this; None accepts any age.
        now: The current time, for ``max_age``; default: the clock.

    Returns:
        The member.

    Raises:
        InvalidUnsubscribeTokenError: The token is invalid (see ``read_unsubscribe_token``),
            carries no address tag, names no member (erased), or a member whose address is not
            the one it was made for (an id reused after an erasure, a changed address).
        ConfigurationError: The secret is empty.
    """
    found = read_unsubscribe_token(token, secret, max_age, now=now)
    member = session.get(Member, found.member_id)
    if member is None:
        raise InvalidUnsubscribeTokenError(
            f"unsubscribe token: member {found.member_id} does not exist (any more)"
        )
    _check_address(found, member.email, secret)
    return member
