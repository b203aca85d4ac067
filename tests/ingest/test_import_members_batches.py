"""Members are matched a batch at a time and written in bulk: new, changed, unchanged and refused
records mix in one batch, a member named twice in a file is stored once, and external ids win
over e-mail addresses."""

import datetime as dt
import json

import pytest
from sqlalchemy import select

from nurture.ingest import import_members
from nurture.storage.models import ConsentStatus, Member
from tests.ingest.ingest_helpers import read_rejects, write

SEED = (
    "external_id,email,first_name,language,joined_at,plan\n"
    "m1,ada@example.org,Ada,en,2025-01-01T10:00:00Z,free\n"
    "m2,bob@example.org,Bob,en,2025-01-01T10:00:00Z,free\n"
    ",cy@example.org,Cy,en,2025-01-01T10:00:00Z,\n"
)


def _members(session):
    session.expire_all()
    return {member.email: member for member in session.scalars(select(Member))}


@pytest.mark.parametrize("batch_size", [2, 100])
def test_a_batch_mixing_new_changed_unchanged_and_bad_records(session, tmp_path, batch_size):
    import_members(session, write(tmp_path / "seed.csv", SEED))
    before = _members(session)
    stamps = {email: member.updated_at for email, member in before.items()}
    text = (
        "external_id,email,first_name,language,joined_at,plan\n"
        "m1,ada@example.org,Ada,en,2025-01-01T10:00:00Z,free\n"  # 2 unchanged
        "m2,bob@example.org,Robert,,,\n"  # 3 changed: first name
        "m3,dee@example.org,Dee,fr,2025-02-01,pro\n"  # 4 new
        "m4,not-an-email,Eve,en,,\n"  # 5 bad e-mail
        ",CY@example.org,,,,pro\n"  # 6 changed by e-mail: an attribute
        "m5,fay@example.org,Fay,de,,\n"  # 7 bad language
        ",gil@example.org,,,,\n"  # 8 new, defaults
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(
        session, write(tmp_path / "m.csv", text), rejects_path, batch_size=batch_size
    )

    assert (summary.read, summary.stored, summary.updated, summary.unchanged) == (7, 2, 2, 1)
    assert summary.refused == 2
    assert [(r["line"], r["field"]) for r in read_rejects(rejects_path)] == [
        ("5", "email"),
        ("7", "language"),
    ]
    members = _members(session)
    assert set(members) == {
        "ada@example.org",
        "bob@example.org",
        "cy@example.org",
        "dee@example.org",
        "gil@example.org",
    }
    assert members["ada@example.org"].updated_at == stamps["ada@example.org"]  # not rewritten
    bob = members["bob@example.org"]
    assert bob.first_name == "Robert" and bob.attributes == {"plan": "free"}
    assert bob.joined_at == dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
    assert bob.updated_at > stamps["bob@example.org"]
    assert members["cy@example.org"].attributes == {"plan": "pro"}
    dee = members["dee@example.org"]
    assert (dee.external_id, dee.language, dee.attributes) == ("m3", "fr", {"plan": "pro"})
    assert dee.joined_at == dt.datetime(2025, 2, 1, tzinfo=dt.UTC)
    gil = members["gil@example.org"]
    assert (gil.external_id, gil.first_name, gil.language, gil.time_zone) == (None, "", "en", "UTC")
    assert gil.consent_status == ConsentStatus.UNKNOWN and gil.unsubscribed_categories == []
    assert gil.paused_until is None and gil.best_hour is None and gil.attributes == {}
    assert gil.created_at is not None and gil.created_at.tzinfo is not None

    again = import_members(session, write(tmp_path / "m.csv", text), batch_size=batch_size)

    assert (again.stored, again.updated, again.unchanged, again.refused) == (0, 0, 5, 2)


@pytest.mark.parametrize("batch_size", [1, 100])
def test_a_member_named_twice_in_a_file_is_stored_once(session, tmp_path, batch_size):
    text = (
        "external_id,email,first_name,time_zone,plan,team\n"
        "m1,ada@example.org,Ada,UTC,free,\n"  # 2 new
        "m1,ada@example.org,Ada,UTC,free,\n"  # 3 the same again
        "m1,ada.l@example.org,,Europe/Paris,,core\n"  # 4 new e-mail, time zone, attribute
        ",ada.l@example.org,Ada L.,,,\n"  # 5 found by the new e-mail
        ",ada@example.org,Other,,,\n"  # 6 the old e-mail is free again: a new member
    )

    summary = import_members(session, write(tmp_path / "m.csv", text), batch_size=batch_size)

    assert (summary.stored, summary.updated, summary.unchanged, summary.refused) == (2, 2, 1, 0)
    members = _members(session)
    assert set(members) == {"ada.l@example.org", "ada@example.org"}
    ada = members["ada.l@example.org"]
    assert (ada.external_id, ada.first_name, ada.time_zone) == ("m1", "Ada L.", "Europe/Paris")
    assert ada.attributes == {"plan": "free", "team": "core"}
    other = members["ada@example.org"]
    assert (other.external_id, other.first_name) == (None, "Other")


def test_external_ids_win_over_email_addresses(session, tmp_path):
    import_members(session, write(tmp_path / "seed.csv", SEED))
    text = (
        "external_id,email,first_name\n"
        "m1,bob@example.org,Ada\n"  # 2 m1 found, but bob's e-mail is m2's: refused
        "m9,ada@example.org,Ada\n"  # 3 ada's e-mail, another external id: refused
        "m9,cy@example.org,Cy\n"  # 4 cy has no external id: found by e-mail, takes m9
        "m2,b@example.org,\n"  # 5 m2 found by external id: takes a free e-mail
        ",bob@example.org,Newcomer\n"  # 6 bob's e-mail is free now: a new member
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, write(tmp_path / "m.csv", text), rejects_path)

    assert (summary.stored, summary.updated, summary.unchanged, summary.refused) == (1, 2, 0, 2)
    rejects = read_rejects(rejects_path)
    assert [(r["line"], r["field"]) for r in rejects] == [("2", "email"), ("3", "email")]
    assert "already belongs to another member (external id 'm2')" in rejects[0]["reason"]
    assert "already belongs to another member (external id 'm1')" in rejects[1]["reason"]
    members = _members(session)
    assert members["cy@example.org"].external_id == "m9"
    assert members["b@example.org"].external_id == "m2"
    assert members["b@example.org"].first_name == "Bob"
    assert (members["bob@example.org"].external_id, members["bob@example.org"].first_name) == (
        None,
        "Newcomer",
    )
    assert members["ada@example.org"].external_id == "m1"


def test_fields_are_checked_in_order_and_attributes_as_each_record_gives_them(session, tmp_path):
    records = [
        {"external_id": " m1 ", "email": " Zoe@Example.org ", "language": "FR", "note": "  hi  "},
        {"email": "bad", "time_zone": "Mars/Olympus"},  # 3 the first bad field is reported
        {"email": "x@example.org", "time_zone": "Mars/Olympus", "birthday": "1800-01-01"},  # 4
        {"email": "y@example.org", "birthday": "1800-01-01"},  # 5
        {"email": "z@example.org", "bad\tkey": "v"},  # 6 an attribute's name
        {"email": "w@example.org", "note": "a\u0000b"},  # 7 an attribute's value
        {"email": "v@example.org", "tags": ["a", {"b": 1}], "blank": "  ", "none": None},  # 8
        {"email": "u@example.org", "first_name": "Ünal", "consent_status": "Granted"},  # 9
    ]
    text = "\n".join(json.dumps(record) for record in records)
    path = write(tmp_path / "m.jsonl", '{"email": "first@example.org"}\n' + text + "\n")
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, path, rejects_path)

    assert [(r["line"], r["field"]) for r in read_rejects(rejects_path)] == [
        ("3", "email"),
        ("4", "time_zone"),
        ("5", "birthday"),
        ("6", "'bad\\tkey'"),
        ("7", "note"),
    ]
    assert (summary.stored, summary.refused) == (4, 5)
    members = _members(session)
    zoe = members["zoe@example.org"]
    assert (zoe.external_id, zoe.language, zoe.attributes) == ("m1", "fr", {"note": "hi"})
    assert members["v@example.org"].attributes == {"tags": ["a", {"b": 1}]}
    unal = members["u@example.org"]
    assert unal.first_name == "Ünal" and unal.consent_status == ConsentStatus.GRANTED


def test_values_equal_in_python_but_of_other_types_are_each_refused_as_themselves(
    session, tmp_path
):
    records = [
        {"email": "a@example.org", "consent_status": 1},
        {"email": "b@example.org", "consent_status": True},
        {"email": "c@example.org", "consent_status": 1.0},
        {"email": "d@example.org", "consent_status": ["granted"]},
    ]
    text = "".join(json.dumps(record) + "\n" for record in records)
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, write(tmp_path / "m.jsonl", text), rejects_path)

    assert summary.refused == 4
    reasons = [reject["reason"] for reject in read_rejects(rejects_path)]
    assert "found '1'" in reasons[0]
    assert "JSON bool" in reasons[1]
    assert "found '1.0'" in reasons[2]
    assert "JSON list" in reasons[3]
