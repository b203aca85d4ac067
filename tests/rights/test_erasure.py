"""Erasure: nothing of the member is left in any table, only a salted hash of the address."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, Table, TypeDecorator, func, insert, select
from sqlalchemy.orm import Session

from nurture.delivery import is_suppressed, suppress_address, suppression_hash
from nurture.errors import MemberNotFoundError
from nurture.rights import (
    ERASURE_SOURCE,
    ErasureSummary,
    erase_member,
    export_member,
    find_members,
    member_keyed_tables,
)
from nurture.rights.member_data import member_key
from nurture.storage.models import (
    Base,
    EmbeddingCacheEntry,
    Member,
    Message,
    ProviderEvent,
    Recommendation,
    Segment,
    Suppression,
)

from .conftest import EMAIL, FIRST_NAME, LAST_NAME, NOW, SALT, Seeded, find_mentions


def _rows_of_member(engine: Engine, member_id: int) -> dict[str, int]:
    counts = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if "member_id" in table.c:
                query = select(func.count()).select_from(table)
                counts[table.name] = connection.scalar(query.where(table.c.member_id == member_id))
    return counts


def test_erasure_leaves_no_email_or_name_in_any_table(
    session: Session, engine: Engine, seeded: Seeded
) -> None:
    assert find_mentions(engine, [EMAIL, FIRST_NAME, LAST_NAME])  # the scan sees them

    erase_member(session, EMAIL, salt=SALT, now=NOW)
    session.commit()

    assert find_mentions(engine, [EMAIL, FIRST_NAME, LAST_NAME]) == []
    assert set(_rows_of_member(engine, seeded.member_id).values()) == {0}
    assert session.get(Member, seeded.member_id) is None


def test_erasure_deletes_every_row_about_the_member(session: Session, seeded: Seeded) -> None:
    summary = erase_member(session, EMAIL, salt=SALT, now=NOW)

    assert summary == ErasureSummary(
        members=1,
        deleted={
            "members": 1,
            "answers": 3,
            "activity_events": 1,
            "member_profiles": 1,
            "segment_memberships": 1,
            "recommendations": 1,
            "provider_events": 2,
            "messages": 1,
            "enrollments": 1,
            "embedding_cache": 1,
            **{table.name: 0 for table in member_keyed_tables()},
        },
        enrollments_stopped=1,
        segments_scrubbed=1,
        labels_rewritten=2,  # the other member's reason and message quoted the label
        newly_suppressed=True,
    )
    assert not summary.held_nothing


def test_erasure_keeps_other_members_data(session: Session, engine: Engine, seeded: Seeded) -> None:
    before = _rows_of_member(engine, seeded.other_id)
    erase_member(session, EMAIL, salt=SALT, now=NOW)
    session.commit()

    assert _rows_of_member(engine, seeded.other_id) == before
    assert set(before.values()) != {0}
    assert session.scalar(select(ProviderEvent.event_id)) == "ev-other"
    segment = session.get(Segment, seeded.segment_id)
    assert segment is not None
    assert segment.card["examples"] == [seeded.other_id]
    assert segment.card["top_terms"] == ["meetups", "grow"]
    assert segment.label == "Founder · '[erased], meetups, grow'"
    assert "[erased], meetups" in segment.description
    other_reason = session.scalar(
        select(Recommendation.reason).where(Recommendation.member_id == seeded.other_id)
    )
    assert other_reason == f"Popular with members like you ({segment.label})"
    other_context = session.scalar(
        select(Message.context).where(Message.member_id == seeded.other_id)
    )
    assert other_context["items"][0]["reason"] == other_reason
    assert is_suppressed(session, "someone-else@example.org", SALT)


def test_erasure_suppresses_a_salted_hash_of_the_address(session: Session, seeded: Seeded) -> None:
    erase_member(session, EMAIL.upper(), salt=SALT, now=NOW)
    session.commit()

    row = session.scalar(
        select(Suppression).where(Suppression.email_hash == suppression_hash(EMAIL, SALT))
    )
    assert row is not None
    assert (row.reason, row.source, row.created_at) == ("erased", ERASURE_SOURCE, NOW)
    assert not is_suppressed(session, EMAIL, "another salt")


def test_erasure_is_idempotent(session: Session, seeded: Seeded) -> None:
    erase_member(session, EMAIL, salt=SALT, now=NOW)
    session.commit()

    again = erase_member(session, EMAIL, salt=SALT, now=NOW)
    session.commit()

    assert again.held_nothing
    assert again.members == 0
    assert not again.newly_suppressed
    assert set(again.deleted.values()) == {0}
    assert session.scalar(select(func.count()).select_from(Suppression)) == 2


def test_erasing_an_unknown_address_is_refused(session: Session, seeded: Seeded) -> None:
    with pytest.raises(MemberNotFoundError, match=r"nobody@example\.org.*nothing erased"):
        erase_member(session, "nobody@example.org", salt=SALT)
    assert not is_suppressed(session, "nobody@example.org", SALT)
    with pytest.raises(MemberNotFoundError):
        erase_member(session, "   ", salt=SALT)


def test_erasing_an_unsubscribed_member_keeps_the_first_reason(
    session: Session, seeded: Seeded
) -> None:
    suppress_address(session, EMAIL, SALT, "unsubscribed", "one-click")
    summary = erase_member(session, EMAIL, salt=SALT, now=NOW)
    session.commit()

    assert summary.members == 1
    assert not summary.newly_suppressed
    assert session.scalar(select(Suppression.reason).where(Suppression.source == "one-click")) == (
        "unsubscribed"
    )


def test_erasure_covers_rows_with_the_address_in_another_case(
    session: Session, seeded: Seeded
) -> None:
    twin = Member(email=EMAIL.title(), first_name="Z", joined_at=NOW)
    session.add(twin)
    session.commit()
    assert len(find_members(session, EMAIL)) == 2

    assert erase_member(session, EMAIL, salt=SALT, now=NOW).members == 2
    session.commit()
    assert find_members(session, EMAIL) == []


def test_erasure_drops_cached_embeddings_of_the_members_texts(
    session: Session, seeded: Seeded
) -> None:
    assert session.scalar(select(func.count()).select_from(EmbeddingCacheEntry)) == 1
    erase_member(session, EMAIL, salt=SALT, now=NOW)
    session.commit()
    assert session.scalar(select(func.count()).select_from(EmbeddingCacheEntry)) == 0


def test_nothing_is_erased_until_the_caller_commits(session: Session, seeded: Seeded) -> None:
    erase_member(session, EMAIL, salt=SALT, now=NOW)
    session.rollback()
    assert [m.id for m in find_members(session, EMAIL)] == [seeded.member_id]
    assert not is_suppressed(session, EMAIL, SALT)


def _insert_row(session: Session, table: Table, member_id: int) -> None:
    """A row of ``table`` about ``member_id``, other columns filled as their types allow."""
    fillers = {dt.datetime: NOW, int: 0, float: 0.0, str: "x", bool: False, dict: {}, list: []}
    values: dict[str, Any] = {}
    for column in table.columns:
        if column is member_key(table):
            values[column.name] = member_id
        elif column.foreign_keys:
            target = next(iter(column.foreign_keys)).column
            values[column.name] = session.scalar(select(target).limit(1))
        elif not (column.nullable or column.default is not None or column.autoincrement is True):
            kind = column.type
            kind = kind.impl_instance if isinstance(kind, TypeDecorator) else kind
            values[column.name] = fillers[kind.python_type]
    session.execute(insert(table).values(values))


def test_tables_found_by_their_member_key_are_exported_and_erased(
    session: Session, seeded: Seeded
) -> None:
    tables = member_keyed_tables()
    if not tables:
        pytest.skip("every member-keyed table has a section of its own")
    for table in tables:
        _insert_row(session, table, seeded.member_id)
        _insert_row(session, table, seeded.other_id)
    session.commit()

    document = export_member(session, EMAIL, salt=SALT, now=NOW)
    summary = erase_member(session, EMAIL, salt=SALT, now=NOW)
    session.commit()

    for table in tables:
        key = member_key(table)
        assert key is not None
        assert [row[key.name] for row in document[table.name]] == [seeded.member_id]
        assert summary.deleted[table.name] == 1
        remaining = session.scalars(select(key)).all()
        assert remaining == [seeded.other_id]
