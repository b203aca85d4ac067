"""What one engine pass reads about members, read once per member for the whole pass.

A pass of ``advance_journeys`` looks at the same members journey after journey: at enrolment
(their row for consent and address, the facts an audience reads), then again for each chunk of
due enrollments (rows, facts for goals and branches, what templates read). None of that changes
during a pass (the pass writes enrollments and messages only), so ``MemberReads`` loads each
member's once, in bulk queries for the members not read yet, and hands out the same values to
every later journey and chunk. A pass over the whole community, when the community fits in the
bound, reads all the members' rows in one query, and the suppression list whole when it fits
too (rather than an ``IN`` list per chunk). What it keeps is bounded, not the whole community:
once a kind of read holds ``capacity`` members, it lets go of them all and starts again (a
community larger than that is read again, a chunk at a time, by the journeys after).
Condition facts are read for what the conditions asking for them read (``fact_parts``): an
audience reading ``lifecycle`` alone reads the members' lifecycle stages and nothing else,
and no condition naming ``activity``, no activity is summarised. What a pass does change
(messages already queued, the budget, the enrollments) is not kept here and is read again where
it is needed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import Dialect, Select, String, Text, cast, func, select, type_coerce
from sqlalchemy.orm import Session

from nurture.delivery.suppression import find_suppressed_hashes, suppression_hash
from nurture.journeys.content import MemberFacts, member_profiles, members_who_answered
from nurture.journeys.facts import ConditionFacts, fact_parts
from nurture.storage import among, driver_rows
from nurture.storage.models import ConsentStatus, Member, Suppression, table_of
from nurture.storage.stored_json import JsonTexts, stored_values

__all__ = ["HELD_MEMBERS", "MemberReads", "MemberRow", "member_rows"]

HELD_MEMBERS = 20_000
"""Members whose reads a pass keeps at most (of each kind), unless told otherwise."""


@dataclasses.dataclass(frozen=True, slots=True)
class MemberRow:
    """What the engine reads of a member's row (the columns of ``Member`` it names)."""

    id: int
    email: str
    language: str | None
    time_zone: str | None
    best_hour: int | None
    consent_status: ConsentStatus
    unsubscribed_categories: list[Any] | None


_MEMBER_COLUMNS = (
    *(getattr(Member, field.name) for field in dataclasses.fields(MemberRow)[:-2]),
    # Both as stored text, each distinct text made a value once (``member_rows``): most
    # members store the same, and the rows then come as the driver gives them.
    type_coerce(Member.consent_status, String).label("consent_status"),
    cast(Member.unsubscribed_categories, Text),
)
"""The columns of ``MemberRow``, in its order, its last two (status, JSON) as stored text."""


def member_rows(rows: Iterable[Sequence[Any]], dialect: Dialect) -> dict[int, MemberRow]:
    """``MemberRow`` by id of rows of :data:`_MEMBER_COLUMNS`, their stored texts made values.

    Each distinct text is made a value once: a consent status as its column's type reads it,
    the ``unsubscribed_categories`` JSON decoded. Members who store the same categories text
    share one decoded list: read it, do not change it.

    Args:
        rows: The rows, as the driver of ``dialect`` gives them.
        dialect: The database's dialect (the status column's type reads its values for it).
    """
    decoded = JsonTexts()
    statuses = stored_values(table_of(Member).c.consent_status, dialect)
    return {
        member_id: MemberRow(
            member_id, email, language, zone, hour, statuses[status], decoded(categories)
        )
        for member_id, email, language, zone, hour, status, categories in rows
    }


def _read_member_rows(session: Session, query: Select[Any]) -> dict[int, MemberRow]:
    """``member_rows`` of a select of :data:`_MEMBER_COLUMNS` (rows as the driver gives them)."""
    return member_rows(driver_rows(session, query), session.get_bind().dialect)


@dataclasses.dataclass
class _Facts:
    """The condition facts of one set of names (``fact_parts``), for the members read."""

    contexts: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    segments: dict[int, list[str]] = dataclasses.field(default_factory=dict)
    read: set[int] = dataclasses.field(default_factory=set)


class MemberReads:
    """Members' rows, condition facts, template facts and answers, each read once per pass.

    Args:
        now: The time of the pass (condition facts count ages and recency at it).
        capacity: Members kept at most by each kind of read; past it, that kind's reads are
            dropped and made again as asked (memory bounded whatever the community's size).
        whole_community: The pass looks at every member (not a few, as a simulation does):
            when the community fits in ``capacity``, the members' rows are read in one query
            the first time any is asked for, and so is the suppression list when it fits.
    """

    def __init__(
        self, now: dt.datetime, capacity: int = HELD_MEMBERS, *, whole_community: bool = False
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, found {capacity}")
        self.now = now
        self.capacity = capacity
        self._whole = whole_community
        self._all_members: bool | None = None  # None: not tried yet
        self._members: dict[int, MemberRow] = {}
        self._members_read: set[int] = set()
        self._facts: dict[frozenset[str], _Facts] = {}
        self._profiles: dict[int, MemberFacts] = {}
        self._profiles_read: set[int] = set()
        self._answered: set[int] = set()
        self._answered_read: set[int] = set()
        self._salt: str | None = None
        self._suppressed: set[int] = set()
        self._suppression_read: set[int] = set()
        self._suppression_list: set[str] | None = None  # the whole list's hashes, when kept
        self._suppression_list_tried = False

    def members(self, session: Session, member_ids: Collection[int]) -> dict[int, MemberRow]:
        """The members of ``member_ids`` that exist, by id (one query for those not read yet)."""
        wanted = set(member_ids)
        if self._all_members is None and self._whole and wanted:
            self._all_members = self._read_all_members(session)
        if self._all_members:
            return {
                member_id: self._members[member_id] for member_id in wanted & self._members.keys()
            }
        missing = sorted(wanted - self._members_read)
        if missing and self._full(self._members_read, missing):
            self._members, self._members_read = {}, set()
            missing = sorted(wanted)
        if missing:
            query = select(*_MEMBER_COLUMNS).where(among(session, Member.id, missing))
            self._members.update(_read_member_rows(session, query))
            self._members_read.update(missing)
        return {member_id: self._members[member_id] for member_id in wanted & self._members.keys()}

    def _read_all_members(self, session: Session) -> bool:
        """Read every member's row, if the community fits in ``capacity``; whether it did."""
        count = session.scalar(select(func.count()).select_from(Member)) or 0
        if count > self.capacity:
            return False
        self._members = _read_member_rows(session, select(*_MEMBER_COLUMNS))
        self._members_read = set(self._members)
        return True

    def facts(
        self, session: Session, member_ids: Collection[int], names: Collection[str]
    ) -> ConditionFacts:
        """What conditions reading ``names`` read of ``member_ids`` (loaded where missing).

        Args:
            session: The database session.
            member_ids: The members.
            names: The names the conditions read (``condition_reads``).

        Returns:
            The facts (of more members than asked, possibly).
        """
        parts = fact_parts(names)
        facts = self._facts.setdefault(parts, _Facts())
        missing = sorted(set(member_ids) - facts.read)
        if missing and self._full(facts.read, missing):
            # A new holder: facts handed out before keep theirs.
            facts = self._facts[parts] = _Facts()
            missing = sorted(set(member_ids))
        if missing and parts:
            loaded = ConditionFacts(session, missing, self.now, parts)
            facts.contexts.update(loaded.contexts)
            facts.segments.update(loaded.segments)
        facts.read.update(missing)
        return ConditionFacts.of(facts.contexts, facts.segments)

    def profiles(self, session: Session, member_ids: Collection[int]) -> dict[int, MemberFacts]:
        """What templates read of ``member_ids`` (``member_profiles``), by existing member."""
        wanted = set(member_ids)
        missing = sorted(wanted - self._profiles_read)
        if missing and self._full(self._profiles_read, missing):
            self._profiles, self._profiles_read = {}, set()
            missing = sorted(wanted)
        if missing:
            self._profiles.update(member_profiles(session, missing))
            self._profiles_read.update(missing)
        return {
            member_id: self._profiles[member_id] for member_id in wanted & self._profiles.keys()
        }

    def answered(self, session: Session, member_ids: Collection[int]) -> set[int]:
        """Which of ``member_ids`` answered the questionnaire (``members_who_answered``)."""
        wanted = set(member_ids)
        missing = wanted - self._answered_read
        if missing and self._full(self._answered_read, missing):
            self._answered, self._answered_read = set(), set()
            missing = wanted
        if missing:
            self._answered.update(members_who_answered(session, missing))
            self._answered_read.update(missing)
        return wanted & self._answered

    def suppressed(self, session: Session, members: Collection[MemberRow], salt: str) -> set[int]:
        """Which of ``members`` have their address in the suppression list (``salt``'s hashes).

        Args:
            session: The database session.
            members: The members (their rows: the address is hashed).
            salt: The suppression salt (``Settings.suppression_salt``).

        Returns:
            Their ids, each member's hash made and looked up once per pass.
        """
        missing = [member.id for member in members if member.id not in self._suppression_read]
        if salt != self._salt or (missing and self._full(self._suppression_read, missing)):
            self._salt = salt
            self._suppressed, self._suppression_read = set(), set()
        unread = [member for member in members if member.id not in self._suppression_read]
        if unread and self._whole_list(session) == set():
            # An empty list, kept whole: no address is in it, none needs its hash made.
            self._suppression_read.update(member.id for member in unread)
        hashes = {
            member.id: suppression_hash(member.email, salt)
            for member in unread
            if member.id not in self._suppression_read
        }
        if hashes:
            found = self._find_suppressed(session, hashes.values())
            self._suppressed.update(member_id for member_id, h in hashes.items() if h in found)
            self._suppression_read.update(hashes)
        return {member.id for member in members if member.id in self._suppressed}

    def _whole_list(self, session: Session) -> set[str] | None:
        """The suppression list's hashes, when the pass keeps it whole (read the first time)."""
        if self._whole and not self._suppression_list_tried:
            self._suppression_list_tried = True
            count = session.scalar(select(func.count()).select_from(Suppression)) or 0
            if count <= self.capacity:
                self._suppression_list = set(session.scalars(select(Suppression.email_hash)))
        return self._suppression_list

    def _find_suppressed(self, session: Session, hashes: Collection[str]) -> set[str]:
        """Those of ``hashes`` in the suppression list: looked up, or in the whole list kept."""
        kept = self._whole_list(session)
        if kept is not None:
            return {h for h in hashes if h in kept}
        return find_suppressed_hashes(session, hashes)

    def _full(self, read: set[int], missing: Collection[int]) -> bool:
        """Whether reading ``missing`` too would keep more than ``capacity`` members."""
        return len(read) + len(missing) > self.capacity
