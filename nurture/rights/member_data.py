"""Where nurture keeps data about a member, and how to find it from an e-mail address.

Every table is classified here: ``MEMBER_TABLES`` hold rows about one member (exported, then
deleted on erasure), ``DERIVED_TABLES`` hold data computed from many members that an erasure
scrubs, ``OTHER_TABLES`` hold no member data. A table added later with a foreign key to
``members`` is found by ``member_keyed_tables`` and exported and erased as it is, column by
column, until it gets a section of its own. A test checks that these cover the schema, so any
other new table cannot be added without deciding what the rights functions do with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Table, Text, cast, func, or_, select
from sqlalchemy.orm import Session

from nurture.delivery.suppression import normalise_address
from nurture.storage.models import Base, Member, Message, ProviderEvent

__all__ = [
    "DERIVED_TABLES",
    "MEMBER_TABLES",
    "OTHER_TABLES",
    "find_members",
    "member_key",
    "member_keyed_tables",
    "mentions_address",
    "provider_events_of",
]

MEMBER_TABLES: tuple[str, ...] = (
    "members",
    "answers",
    "activity_events",
    "member_profiles",
    "segment_memberships",
    "recommendations",
    "enrollments",
    "messages",
    "provider_events",
    "suppressions",
)
"""Tables with rows about one member: each has a section in the export; erasure deletes the rows
(the suppression list keeps only a salted hash of the address)."""

DERIVED_TABLES: tuple[str, ...] = ("segments", "embedding_cache")
"""Tables computed from many members: erasure removes the member's id and name from segment cards
and labels, and the cached embeddings of their free-text answers."""

OTHER_TABLES: tuple[str, ...] = (
    "api_keys",
    "api_requests",  # an API call's idempotency key, body hash and counts answered, no record
    "community_milestones",
    "content_items",
    "journeys",
    "match_runs",
    "segmentation_runs",
)
"""Tables that hold no member data."""

_BATCH = 500


def member_key(table: Table) -> Column[Any] | None:
    """The column of ``table`` that references ``members.id``, if it has one."""
    for column in table.columns:
        if any(fk.column.table.name == Member.__tablename__ for fk in column.foreign_keys):
            return column
    return None


def member_keyed_tables() -> list[Table]:
    """The tables with a foreign key to ``members`` that ``MEMBER_TABLES`` does not name.

    Returns:
        The tables, by name: exported and erased generically (every column, by member key).
    """
    return [
        table
        for name, table in sorted(Base.metadata.tables.items())
        if name not in MEMBER_TABLES and member_key(table) is not None
    ]


def find_members(session: Session, email: str) -> list[Member]:
    """The members whose address is ``email``, whatever its case, in id order.

    Imports store addresses in lower case, so there is at most one, unless rows were written
    some other way with the same address in another case.

    Args:
        session: The database session.
        email: The address.

    Returns:
        The members (often one, possibly none).
    """
    address = normalise_address(email)
    if not address:
        return []
    rows = session.scalars(
        select(Member)
        .where(or_(Member.email == address, func.lower(Member.email) == address))
        .order_by(Member.id)
    )
    return [member for member in rows if normalise_address(member.email) == address]


def mentions_address(value: Any, address: str) -> bool:
    """Whether a JSON value (a provider payload...) contains ``address`` in any string or key.

    Args:
        value: A JSON value: dict, list, string, number, bool or None.
        address: A normalised address (``normalise_address``).

    Returns:
        True when some string holds the address, in any case.
    """
    if isinstance(value, str):
        return address in value.lower()
    if isinstance(value, dict):
        return any(
            mentions_address(key, address) or mentions_address(item, address)
            for key, item in value.items()
        )
    if isinstance(value, list | tuple):
        return any(mentions_address(item, address) for item in value)
    return False


def provider_events_of(
    session: Session, member_ids: Sequence[int], email: str
) -> list[ProviderEvent]:
    """The provider events about a member.

    Those of their messages, and any whose payload names their address (a bounce for an address
    that has no message any more, say).

    Args:
        session: The database session.
        member_ids: The member's ids (``find_members``); may be empty.
        email: Their address.

    Returns:
        The events, in id order.
    """
    address = normalise_address(email)
    found: dict[int, ProviderEvent] = {}
    if member_ids:
        of_messages = select(Message.id).where(Message.member_id.in_(list(member_ids)))
        for event in session.scalars(
            select(ProviderEvent).where(ProviderEvent.message_id.in_(of_messages))
        ):
            found[event.id] = event
    query = select(ProviderEvent).order_by(ProviderEvent.id)
    if address.isascii() and '"' not in address and "\\" not in address:
        # The JSON text holds an ASCII address as it is: let the database narrow the scan.
        payload_text = func.lower(cast(ProviderEvent.payload, Text))
        query = query.where(payload_text.contains(address, autoescape=True))
    for event in session.scalars(query.execution_options(yield_per=_BATCH)):
        if event.id not in found and mentions_address(event.payload, address):
            found[event.id] = event
    return [found[event_id] for event_id in sorted(found)]
