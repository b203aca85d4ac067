"""Erase a member (right to be forgotten), and never mail the address again.

Erasure deletes every row about the member (see ``MEMBER_TABLES``), scrubs what was computed
from them with others (their id and name in segment cards and labels, and where other members'
recommendation reasons and messages quote such a label; the cached embeddings of their free-text
answers), and puts a salted hash of the address on the suppression list with the
reason ``erased``. The hash is all that is left: when a later import brings the address back,
enrolment leaves the member out and delivery suppresses any message, transactional or not.

Erasing an address twice is harmless: the second time deletes nothing and finds the hash there.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.delivery.suppression import (
    SuppressionReason,
    find_suppression,
    normalise_address,
    suppress_address,
)
from nurture.embedding.cache import text_hash
from nurture.errors import MemberNotFoundError
from nurture.rights.member_data import (
    find_members,
    member_key,
    member_keyed_tables,
    provider_events_of,
)
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    EmbeddingCacheEntry,
    Enrollment,
    EnrollmentState,
    Member,
    MemberProfile,
    Message,
    ProviderEvent,
    Recommendation,
    Segment,
    SegmentMembership,
)

__all__ = ["ERASURE_SOURCE", "ErasureSummary", "erase_member"]

logger = logging.getLogger(__name__)

ERASURE_SOURCE = "erasure request"
"""``Suppression.source`` of the hash an erasure leaves."""

REDACTED = "[erased]"
"""What replaces an erased member's name in a segment label or description."""

_BATCH = 500
# The words the segment labeller keeps from free texts (labels.top_terms): letters, 2 or more.
_WORD = re.compile(r"[^\W\d_]{2,}")


@dataclass(frozen=True)
class ErasureSummary:
    """What one erasure did.

    Attributes:
        members: Member rows erased (one, or none when the address was erased before).
        deleted: Rows deleted per table, in a fixed order (``members`` first).
        enrollments_stopped: Active enrollments among the deleted ones: journeys stopped.
        segments_scrubbed: Segments whose card or label named the member.
        labels_rewritten: Rows about other members (recommendation reasons, message contexts)
            that quoted the label of a scrubbed segment, now quoting the scrubbed label.
        newly_suppressed: True when this erasure put the address on the suppression list;
            False when it was there already (erased, unsubscribed or bounced before).
    """

    members: int
    deleted: dict[str, int] = field(default_factory=dict)
    enrollments_stopped: int = 0
    segments_scrubbed: int = 0
    labels_rewritten: int = 0
    newly_suppressed: bool = False

    @property
    def held_nothing(self) -> bool:
        """True when nurture held nothing about the address any more (a repeated erasure)."""
        return not (any(self.deleted.values()) or self.segments_scrubbed or self.labels_rewritten)


def erase_member(
    session: Session, email: str, *, salt: str, now: dt.datetime | None = None
) -> ErasureSummary:
    """Delete everything nurture holds about the member with address ``email``; suppress it.

    The caller commits: nothing is erased until then, and everything is at once.

    Args:
        session: The database session.
        email: The member's address, in any case.
        salt: Salt of the suppression list (``Settings.suppression_salt``): the one delivery
            and enrolment use, or the hash would not stop them.
        now: Time of the suppression entry; default: the clock.

    Returns:
        What was deleted and whether the address was newly suppressed.

    Raises:
        MemberNotFoundError: No member has that address and it is not on the suppression list
            (a typo, most likely: nothing is done).
    """
    address = normalise_address(email)
    members = find_members(session, address)
    if not members and (not address or find_suppression(session, address, salt) is None):
        raise MemberNotFoundError(
            f"no member with e-mail {address!r} and the address is not on the suppression list: "
            "nothing erased; check the spelling"
        )
    ids = [member.id for member in members]
    names = _name_words(members, address)

    stopped = _count_active_enrollments(session, ids)
    texts = _answer_text_hashes(session, ids)
    events = [event.id for event in provider_events_of(session, ids, address)]
    # Children first; provider events before messages, whose deletion would only unlink them.
    deleted = {
        "answers": _delete(session, Answer, Answer.member_id, ids),
        "activity_events": _delete(session, ActivityEvent, ActivityEvent.member_id, ids),
        "member_profiles": _delete(session, MemberProfile, MemberProfile.member_id, ids),
        "segment_memberships": _delete(
            session, SegmentMembership, SegmentMembership.member_id, ids
        ),
        "recommendations": _delete(session, Recommendation, Recommendation.member_id, ids),
        "provider_events": _delete(session, ProviderEvent, ProviderEvent.id, events),
        "messages": _delete(session, Message, Message.member_id, ids),
        "enrollments": _delete(session, Enrollment, Enrollment.member_id, ids),
        "embedding_cache": _delete(
            session, EmbeddingCacheEntry, EmbeddingCacheEntry.text_hash, texts
        ),
    }
    for table in member_keyed_tables():  # tables added since, without a section of their own
        deleted[table.name] = _delete(session, table, member_key(table), ids)
    deleted = {"members": _delete(session, Member, Member.id, ids), **deleted}
    scrubbed, labels = _scrub_segments(session, set(ids), names) if ids else (0, {})
    rewritten = _rewrite_labels(session, labels)

    added = suppress_address(
        session, address, salt, SuppressionReason.ERASED, ERASURE_SOURCE, now=now
    )
    session.flush()
    session.expire_all()  # objects of the deleted rows must not be used again
    summary = ErasureSummary(
        members=len(ids),
        deleted=deleted,
        enrollments_stopped=stopped,
        segments_scrubbed=scrubbed,
        labels_rewritten=rewritten,
        newly_suppressed=added,
    )
    logger.info(
        "erased %d member rows (%d rows in all); address %s suppressed",
        summary.members,
        sum(deleted.values()),
        "newly" if added else "already",
    )
    return summary


def _delete(session: Session, model: Any, column: Any, values: Sequence[Any]) -> int:
    """Delete the rows of ``model`` (a model or a table) whose ``column`` is in ``values``."""
    total = 0
    values = list(values)
    for batch in chunked(values, _BATCH):
        result = session.execute(
            delete(model).where(column.in_(batch)).execution_options(synchronize_session=False)
        )
        total += result.rowcount or 0  # type: ignore[attr-defined]
    return total


def _count_active_enrollments(session: Session, ids: Sequence[int]) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Enrollment)
            .where(Enrollment.member_id.in_(ids), Enrollment.state == EnrollmentState.ACTIVE)
        )
        or 0
    )


def _answer_text_hashes(session: Session, ids: Sequence[int]) -> list[str]:
    """Hashes of the member's text answers, as the embedding cache keys them."""
    hashes: set[str] = set()
    for value in session.scalars(select(Answer.value).where(Answer.member_id.in_(ids))):
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and text.strip():
                hashes.add(text_hash(text.strip()))
    return sorted(hashes)


def _name_words(members: Sequence[Member], address: str) -> set[str]:
    """The words of the members' names and of the address's local part, in lower case."""
    local_part = address.rpartition("@")[0]
    texts = [local_part, *(f"{m.first_name or ''} {m.last_name or ''}" for m in members)]
    return {word for text in texts for word in _WORD.findall(text.lower())}


def _scrub_segments(session: Session, ids: set[int], names: set[str]) -> tuple[int, dict[str, str]]:
    """Remove the members' ids and name words from segment cards, labels and descriptions.

    A segment's terms come from its members' free texts, so a name someone wrote about
    themselves can be one; it gives way to ``REDACTED`` until the next segmentation run.

    Returns:
        How many segments changed, and each changed label with its scrubbed version.
    """
    scrubbed = 0
    labels: dict[str, str] = {}
    for segment in session.scalars(select(Segment).order_by(Segment.id)):
        card = copy.deepcopy(segment.card or {})
        examples = card.get("examples")
        if isinstance(examples, list):
            card["examples"] = [e for e in examples if not (isinstance(e, int) and e in ids)]
        terms = card.get("top_terms")
        named: set[str] = set()
        if isinstance(terms, list):
            named = {t for t in terms if isinstance(t, str) and t.lower() in names}
            card["top_terms"] = [t for t in terms if t not in named]
        label, description = segment.label, segment.description
        if named:
            pattern = re.compile(
                r"(?<!\w)(?:"
                + "|".join(re.escape(t) for t in sorted(named, key=len, reverse=True))
                + r")(?!\w)",
                re.IGNORECASE,
            )
            label = pattern.sub(REDACTED, label)
            description = pattern.sub(REDACTED, description or "")
        if (card, label, description) != (segment.card or {}, segment.label, segment.description):
            if label != segment.label:
                labels[segment.label] = label
            segment.card = card
            segment.label = label
            segment.description = description
            scrubbed += 1
    return scrubbed, labels


def _rewrite_labels(session: Session, labels: dict[str, str]) -> int:
    """Replace each old segment label by its scrubbed version where other members' rows quote it.

    Recommendation reasons quote labels ("Popular with members like you (<label>)"), and the
    items of message contexts carry those reasons.

    Returns:
        How many rows changed.
    """
    changed: set[tuple[str, int]] = set()
    for old, new in sorted(labels.items()):
        for recommendation in session.scalars(
            select(Recommendation).where(Recommendation.reason.contains(old, autoescape=True))
        ):
            recommendation.reason = recommendation.reason.replace(old, new)
            changed.add(("recommendations", recommendation.id))
        # The JSON text of a context holds the label escaped (non-ASCII as \uXXXX) or as is.
        context_text = cast(Message.context, Text)
        forms = {old, json.dumps(old)[1:-1]}
        for message in session.scalars(
            select(Message).where(
                or_(*(context_text.contains(form, autoescape=True) for form in forms))
            )
        ):
            context = _replace_in(message.context, old, new)
            if context != message.context:
                message.context = context
                changed.add(("messages", message.id))
    return len(changed)


def _replace_in(value: Any, old: str, new: str) -> Any:
    """A copy of a JSON value with ``old`` replaced by ``new`` in every string."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {key: _replace_in(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_in(item, old, new) for item in value]
    return value
