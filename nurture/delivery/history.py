"""What each member was already sent: the content items listed in their stored messages.

A ``Message`` row stores the context its templates saw (``Message.context``, JSON, written by
``nurture.journeys.content.MessageContext``): the content picks and the named slots. Journeys
(never the same item twice), previews and matching (never recommend what was just sent) read it
here, in one way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import String, select, type_coerce
from sqlalchemy.orm import Session

from nurture.storage.database import among
from nurture.storage.models import Message, MessageStatus

__all__ = ["content_keys_in", "sent_item_keys"]


def content_keys_in(stored: Any) -> set[str]:
    """The keys of the content items a stored message context lists (items and slots).

    The one reader of "items already sent". It takes rows written by any version: a
    context that is not a mapping lists nothing, an entry may be a key or an item with a
    ``key``, and anything else is skipped.

    Args:
        stored: A ``Message.context`` value.

    Returns:
        The content keys it lists.
    """
    if not isinstance(stored, Mapping):
        return set()
    slots = stored.get("slots")
    lists = [stored.get("items"), *(slots.values() if isinstance(slots, Mapping) else ())]
    keys: set[str] = set()
    for listed in lists:
        if isinstance(listed, Mapping):
            listed = list(listed.values())
        for entry in listed if isinstance(listed, list | tuple) else ():
            key = entry.get("key") if isinstance(entry, Mapping) else entry
            if isinstance(key, str) and key:
                keys.add(key)
    return keys


def sent_item_keys(
    session: Session,
    member_ids: Collection[int],
    *,
    statuses: Collection[MessageStatus] | None = None,
) -> dict[int, set[str]]:
    """The content keys already in each member's messages, of any journey.

    Args:
        session: The database session.
        member_ids: The members.
        statuses: Only messages in these statuses; None: every message (queued ones too).

    Returns:
        ``{member id: keys}``; a member with none is absent.
    """
    sent: dict[int, set[str]] = defaultdict(set)
    if not member_ids:
        return sent
    query = select(Message.member_id, Message.context).where(
        among(session, Message.member_id, sorted(set(member_ids)))
    )
    if statuses is not None:
        # ``status || ''``: the same test, which SQLite cannot answer from the index on
        # ``status`` (its planner prefers it to the members', with no statistics, and would
        # read every member's messages in those statuses for each chunk).
        values = [MessageStatus(status).value for status in statuses]
        query = query.where(type_coerce(Message.status, String).concat("").in_(values))
    for member_id, stored in session.execute(query).tuples().all():  # fetchall: faster
        keys = content_keys_in(stored)
        if keys:
            sent[member_id].update(keys)
    return sent
