"""Suppressions: addresses that must never be mailed again, kept only as salted hashes.

The list survives the deletion of a member (right to be forgotten) without keeping the address
itself: ``suppression_hash`` is SHA-256 of a salt and the normalised address. The salt is
``Settings.suppression_salt``, the same wherever a hash is made (erasure, enrolment, delivery):
changing it orphans the existing list.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.errors import ConfigurationError
from nurture.storage.models import ConsentStatus, Suppression, SuppressionReason

__all__ = [
    "CONSENT_GRANTED",
    "ConsentHolder",
    "SuppressionReason",
    "consent_refusal",
    "find_suppressed_hashes",
    "find_suppression",
    "is_suppressed",
    "normalise_address",
    "resubscribe_address",
    "suppress_address",
    "suppression_hash",
]


CONSENT_GRANTED: Final = ConsentStatus.GRANTED
"""The only ``Member.consent_status`` that allows marketing (non-transactional) emails."""


class ConsentHolder(Protocol):
    """What ``consent_refusal`` reads of a member: a ``Member``, or a row of those columns."""

    @property
    def consent_status(self) -> ConsentStatus:
        """``Member.consent_status``."""
        ...

    @property
    def unsubscribed_categories(self) -> Sequence[Any] | None:
        """``Member.unsubscribed_categories``."""
        ...


def consent_refusal(member: ConsentHolder, category: str | None) -> str | None:
    """Why a member's consent or preferences refuse the emails of a non-transactional journey.

    Args:
        member: The member (or the row of its consent columns).
        category: The journey's category (``care``, ``promotion``).

    Returns:
        The reason (consent not granted, or unsubscribed from the category), or None.
    """
    if member.consent_status != ConsentStatus.GRANTED:
        return f"consent is {str(member.consent_status)!r}, not {str(ConsentStatus.GRANTED)!r}"
    if category and category in (member.unsubscribed_categories or []):
        return f"member unsubscribed from {category!r} emails"
    return None


def normalise_address(email: str) -> str:
    """The form of an address that is hashed: surrounding spaces removed, lower case."""
    return email.strip().lower()


def suppression_hash(email: str, salt: str) -> str:
    """The salted hash stored in ``Suppression.email_hash`` for ``email``.

    Args:
        email: The address, in any case, with or without surrounding spaces.
        salt: The salt (``Settings.suppression_salt``).

    Returns:
        64 lowercase hex digits.

    Raises:
        ConfigurationError: The salt is empty.
    """
    if not salt:
        raise ConfigurationError("suppression salt: expected a non-empty string, found ''")
    data = salt.encode("utf-8") + b"\x00" + normalise_address(email).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def find_suppressed_hashes(session: Session, hashes: Iterable[str]) -> set[str]:
    """Those of ``hashes`` that are in the suppression list.

    Args:
        session: The database session.
        hashes: Hashes made by ``suppression_hash``.

    Returns:
        The suppressed subset.
    """
    wanted = list(set(hashes))
    found: set[str] = set()
    for batch in chunked(wanted, 500):
        found.update(
            session.scalars(select(Suppression.email_hash).where(Suppression.email_hash.in_(batch)))
        )
    return found


def find_suppression(session: Session, email: str, salt: str) -> Suppression | None:
    """The suppression list entry of ``email``, if it has one.

    Args:
        session: The database session.
        email: The address.
        salt: The salt the list is hashed with.

    Returns:
        The entry (reason, source, time), or None when the address may be mailed.
    """
    return session.scalar(
        select(Suppression).where(Suppression.email_hash == suppression_hash(email, salt))
    )


def is_suppressed(session: Session, email: str, salt: str) -> bool:
    """Whether ``email`` is in the suppression list.

    Args:
        session: The database session.
        email: The address.
        salt: The salt the list is hashed with.

    Returns:
        True when the address must not be mailed.
    """
    return bool(find_suppressed_hashes(session, [suppression_hash(email, salt)]))


def suppress_address(
    session: Session,
    email: str,
    salt: str,
    reason: SuppressionReason,
    source: str | None = None,
    *,
    now: dt.datetime | None = None,
) -> bool:
    """Add ``email`` to the suppression list unless it is there already (the caller commits).

    Args:
        session: The database session.
        email: The address.
        salt: The salt the list is hashed with.
        reason: Why (a ``SuppressionReason`` or its value).
        source: Where the request came from (``one-click``, ``sendgrid:bounce``...).
        now: When the address was suppressed; default: the clock.

    Returns:
        True when a row was added, False when the address was already suppressed.

    Raises:
        ValueError: ``reason`` is not a ``SuppressionReason``.
    """
    reason = SuppressionReason(reason)
    email_hash = suppression_hash(email, salt)
    if find_suppressed_hashes(session, [email_hash]):
        return False
    row = Suppression(email_hash=email_hash, reason=reason, source=source)
    if now is not None:
        row.created_at = now
    session.add(row)
    session.flush()
    return True


def resubscribe_address(session: Session, email: str, salt: str) -> bool:
    """Take ``email`` off the suppression list, if the member themselves unsubscribed it.

    Only an entry with reason ``unsubscribed`` is removed: a bounce, a spam complaint, an
    erasure or an operator's entry stays, whoever asks.

    Args:
        session: The database session (the caller commits).
        email: The address.
        salt: The salt the list is hashed with.

    Returns:
        True when an entry was removed.
    """
    entry = find_suppression(session, email, salt)
    if entry is None or entry.reason != SuppressionReason.UNSUBSCRIBED:
        return False
    session.delete(entry)
    session.flush()
    return True
