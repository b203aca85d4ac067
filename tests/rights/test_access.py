"""Export: every table that holds member data appears, as plain JSON, and nothing of others."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import ForeignKey
from sqlalchemy.orm import Session

from nurture.delivery import suppress_address
from nurture.errors import MemberNotFoundError
from nurture.rights import (
    DERIVED_TABLES,
    EXPORT_FORMAT,
    EXPORT_SECTIONS,
    MEMBER_TABLES,
    OTHER_TABLES,
    erase_member,
    export_member,
    format_export,
    member_keyed_tables,
)
from nurture.rights.access import SECTION_OF_TABLE
from nurture.storage.models import Base

from .conftest import EMAIL, FIRST_NAME, LAST_NAME, NOW, SALT, Seeded


def _sections() -> list[str]:
    explicit = [name for name in EXPORT_SECTIONS if name != "suppression"]
    return [*explicit, *(table.name for table in member_keyed_tables()), "suppression"]


def test_every_table_is_classified_once() -> None:
    found = {table.name for table in member_keyed_tables()}
    groups = [set(MEMBER_TABLES), found, set(DERIVED_TABLES), set(OTHER_TABLES)]
    assert set().union(*groups) == set(Base.metadata.tables)
    assert sum(len(group) for group in groups) == len(Base.metadata.tables)


def test_every_table_keyed_by_member_is_a_member_table() -> None:
    keyed = {
        table.name
        for table in Base.metadata.sorted_tables
        if any(
            isinstance(fk, ForeignKey) and fk.column.table.name == "members"
            for column in table.columns
            for fk in column.foreign_keys
        )
    }
    assert keyed  # answers, activity_events...
    assert keyed <= set(MEMBER_TABLES) | {table.name for table in member_keyed_tables()}


def test_every_member_table_has_its_section() -> None:
    assert set(SECTION_OF_TABLE) == set(MEMBER_TABLES)
    assert set(SECTION_OF_TABLE.values()) == set(EXPORT_SECTIONS)


def test_export_holds_a_row_of_every_member_table(session: Session, seeded: Seeded) -> None:
    document = export_member(session, EMAIL, salt=SALT, now=NOW)

    assert list(document) == ["format", "exported_at", "email", "about", *_sections()]
    assert document["format"] == EXPORT_FORMAT
    assert document["exported_at"] == "2026-11-02T09:00:00+00:00"
    assert document["email"] == EMAIL
    assert list(document["about"]) == _sections()
    assert all(document["about"][name] == text for name, text in EXPORT_SECTIONS.items())
    for table, section in SECTION_OF_TABLE.items():
        assert document[section], f"section {section} ({table}) is empty"

    [member] = document["members"]
    assert (member["email"], member["first_name"], member["last_name"]) == (
        EMAIL,
        FIRST_NAME,
        LAST_NAME,
    )
    assert member["consent_status"] == "granted"
    assert member["consent_source"] == "signup_form"
    assert (member["unsubscribed_categories"], member["paused_until"]) == ([], None)
    assert member["attributes"] == {"country": "FR", "nickname": FIRST_NAME}
    assert member["birthday"] == "1990-05-17"
    assert [a["question"] for a in document["answers"]] == ["expectations", "goals", "role"]
    assert document["activity"][0]["properties"]["title"].startswith("Hello from Zephyrine")
    [profile] = document["profiles"]
    assert profile["lifecycle_stage"] == "active"
    assert profile["features"] == [0.5, 1.0, 0.0]
    assert profile["interest"] == pytest.approx([0.6, 0.8])
    [membership] = document["segment_memberships"]
    assert membership["segment_key"] == "seg-1"
    assert membership["segment_label"].startswith("Founder")
    [recommendation] = document["recommendations"]
    assert recommendation["content_key"] == "meetup-checklist"
    assert recommendation["reason"].startswith("Popular with members like you (Founder")
    [enrollment] = document["enrollments"]
    assert (enrollment["journey"], enrollment["state"]) == ("welcome", "active")
    [message] = document["messages"]
    assert message["subject"] == "Welcome, {{ member.first_name }}!"
    assert message["context"]["items"][0]["key"] == "meetup-checklist"
    assert message["status"] == "failed"
    assert sorted(e["event_id"] for e in document["provider_events"]) == [
        "ev-bounce",
        "ev-delivered",
    ]
    assert document["suppression"] == {
        "suppressed": False,
        "reason": None,
        "source": None,
        "since": None,
    }


def test_export_is_plain_json_with_iso_times(session: Session, seeded: Seeded) -> None:
    document = export_member(session, EMAIL, salt=SALT, now=NOW)
    assert json.loads(json.dumps(document)) == document
    times = [document["exported_at"], document["members"][0]["joined_at"]]
    times += [event["occurred_at"] for event in document["activity"]]
    times += [message["scheduled_at"] for message in document["messages"]]
    for value in times:
        assert dt.datetime.fromisoformat(value).utcoffset() == dt.timedelta(0)


def test_export_holds_nothing_of_other_members(session: Session, seeded: Seeded) -> None:
    text = json.dumps(export_member(session, EMAIL, salt=SALT, now=NOW))
    assert "ada@example.org" not in text
    assert "Lovelace" not in text
    assert "ev-other" not in text
    assert "crm-7" not in text


def test_export_finds_the_member_whatever_the_case(session: Session, seeded: Seeded) -> None:
    document = export_member(session, f"  {EMAIL.upper()} ", salt=SALT, now=NOW)
    assert document["members"][0]["id"] == seeded.member_id


def test_export_says_when_the_address_is_suppressed(session: Session, seeded: Seeded) -> None:
    suppress_address(session, EMAIL, SALT, "unsubscribed", "one-click", now=NOW)
    session.commit()
    suppression = export_member(session, EMAIL, salt=SALT, now=NOW)["suppression"]
    assert suppression == {
        "suppressed": True,
        "reason": "unsubscribed",
        "source": "one-click",
        "since": "2026-11-02T09:00:00+00:00",
    }


def test_export_of_an_unknown_address_names_it(session: Session, seeded: Seeded) -> None:
    with pytest.raises(MemberNotFoundError, match=r"nobody@example\.org.*check the spelling"):
        export_member(session, "nobody@example.org", salt=SALT)


def test_export_after_erasure_says_only_a_hash_is_left(session: Session, seeded: Seeded) -> None:
    erase_member(session, EMAIL, salt=SALT, now=NOW)
    session.commit()
    with pytest.raises(MemberNotFoundError, match=r"salted hash.*reason: erased") as error:
        export_member(session, EMAIL, salt=SALT)
    assert EMAIL in str(error.value)


def test_format_export_keeps_vectors_on_one_line(session: Session, seeded: Seeded) -> None:
    document = export_member(session, EMAIL, salt=SALT, now=NOW)
    text = format_export(document)
    assert json.loads(text) == document
    assert text.endswith("}\n")
    assert '"features": [0.5, 1.0, 0.0],' in text
    assert '"goals"' in text and '"run_events"' in text
