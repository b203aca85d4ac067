import datetime as dt

from sqlalchemy import select

from nurture.ingest import import_members
from nurture.storage.models import Member
from tests.ingest.ingest_helpers import read_rejects, write

HEADER = (
    "external_id,email,first_name,last_name,language,time_zone,birthday,joined_at,"
    "consent_status,consent_source,company\n"
)
GOOD_ADA = (
    "m1,Ada@Example.org,Ada,Lovelace,EN,Europe/London,1990-12-10,"
    '2025-01-02T10:00:00+01:00,granted,signup_form,"Acme, Inc."\n'
)
MIXED = (
    HEADER
    + GOOD_ADA  # line 2
    + "m2,not-an-email,Bob,B,en,UTC,,2025-01-01,granted,,\n"  # 3 email
    + "m3,c@example.org,Cy,C,en,Mars/Olympus,,2025-01-01,granted,,\n"  # 4 time_zone
    + "m4,d@example.org,Di,D,en,UTC,1990-13-01,2025-01-01,granted,,\n"  # 5 birthday
    + "m5,e@example.org,Ed,E,en,UTC,,2025-01-02T10:00:00,granted,,\n"  # 6 joined_at (no offset)
    + "m6,f@example.org,Fa,F,en,UTC,,2025-01-01,granted,,,extra\n"  # 7 column count
    + "m7,g@example.org,Gil,G,de,UTC,,2025-01-01,granted,,\n"  # 8 language
    + "m8,h@example.org,Hu,H,en,UTC,,2025-01-01,maybe,,\n"  # 9 consent_status
    + "\n"  # 10 blank: skipped
    + "m9,Jean.Dupont@example.com,Jean,Dupont,fr,Europe/Paris,,2024-06-30,,,\n"  # 11 good
    + "m10,ada@example.org,Other,Ada,en,UTC,,2025-01-01,granted,,\n"  # 12 email taken by m1
    + ",k@example.org,,,,,,,,,\n"  # 13 good, no external id, defaults
)


def test_good_rows_are_stored_and_bad_rows_rejected_with_line_and_reason(session, tmp_path):
    path = write(tmp_path / "members.csv", MIXED)
    rejects_path = tmp_path / "out" / "rejects.csv"

    summary = import_members(session, path, rejects_path)

    assert (summary.read, summary.stored, summary.refused) == (11, 3, 8)
    assert summary.rejects_path == rejects_path
    rejects = read_rejects(rejects_path)
    assert [(r["line"], r["field"]) for r in rejects] == [
        ("3", "email"),
        ("4", "time_zone"),
        ("5", "birthday"),
        ("6", "joined_at"),
        ("7", ""),
        ("8", "language"),
        ("9", "consent_status"),
        ("12", "email"),
    ]
    by_line = {r["line"]: r for r in rejects}
    assert "not-an-email" in by_line["3"]["reason"]
    assert "Mars/Olympus" in by_line["4"]["reason"]
    assert "YYYY-MM-DD" in by_line["5"]["reason"]
    assert "no UTC offset" in by_line["6"]["reason"]
    assert "expected 11 columns" in by_line["7"]["reason"]
    assert "de" in by_line["8"]["reason"]
    assert "maybe" in by_line["9"]["reason"]
    assert "already belongs" in by_line["12"]["reason"]
    assert by_line["3"]["raw"] == "m2,not-an-email,Bob,B,en,UTC,,2025-01-01,granted,,"
    assert summary.problems[0].line == 3 and summary.problems[0].field == "email"

    members = {m.email: m for m in session.scalars(select(Member))}
    assert set(members) == {"ada@example.org", "jean.dupont@example.com", "k@example.org"}
    ada = members["ada@example.org"]
    assert ada.external_id == "m1" and ada.language == "en" and ada.time_zone == "Europe/London"
    assert ada.birthday == dt.date(1990, 12, 10)
    assert ada.joined_at == dt.datetime(2025, 1, 2, 9, 0, tzinfo=dt.UTC)
    assert ada.attributes == {"company": "Acme, Inc."}
    assert ada.consent_status == "granted" and ada.consent_source == "signup_form"
    jean = members["jean.dupont@example.com"]
    assert jean.joined_at == dt.datetime(2024, 6, 30, tzinfo=dt.UTC)
    assert jean.consent_status == "unknown" and jean.attributes == {}
    k = members["k@example.org"]
    assert k.external_id is None and k.language == "en" and k.time_zone == "UTC"


def test_reimport_adds_nothing(session, tmp_path):
    path = write(tmp_path / "members.csv", MIXED)
    import_members(session, path)

    again = import_members(session, path, tmp_path / "rejects.csv")

    assert (again.stored, again.updated, again.unchanged, again.refused) == (0, 0, 3, 8)
    assert session.scalar(select(Member).where(Member.external_id == "m1")) is not None
    assert len(session.scalars(select(Member)).all()) == 3


def test_upsert_by_external_id_then_by_email(session, tmp_path):
    import_members(session, write(tmp_path / "a.csv", HEADER + GOOD_ADA))
    import_members(session, write(tmp_path / "b.csv", "email,first_name\nk@example.org,K\n"))
    update = (
        "external_id,email,time_zone,plan\n"
        "m1,ada.lovelace@example.org,Europe/Paris,pro\n"  # found by external id: new e-mail
        "k9,K@EXAMPLE.ORG,,free\n"  # found by e-mail: gets the external id
    )

    summary = import_members(session, write(tmp_path / "c.csv", update))

    assert (summary.stored, summary.updated, summary.refused) == (0, 2, 0)
    session.expire_all()
    ada = session.scalars(select(Member).where(Member.external_id == "m1")).one()
    assert ada.email == "ada.lovelace@example.org" and ada.time_zone == "Europe/Paris"
    assert ada.first_name == "Ada"  # missing fields keep their value
    assert ada.attributes == {"company": "Acme, Inc.", "plan": "pro"}
    k = session.scalars(select(Member).where(Member.email == "k@example.org")).one()
    assert k.external_id == "k9" and k.attributes == {"plan": "free"}


def test_jsonl_members_with_extra_fields(session, tmp_path):
    text = (
        '{"external_id": 17, "email": "z@example.com", "language": "fr", '
        '"time_zone": "America/Montreal", "joined_at": "2025-03-01T08:00:00Z", "score": 3}\n'
        '{"email": "y@example.com", "first_name": ["not", "text"]}\n'
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, write(tmp_path / "m.ndjson", text), rejects_path)

    assert (summary.stored, summary.refused) == (1, 1)
    member = session.scalars(select(Member)).one()
    assert member.external_id == "17" and member.attributes == {"score": 3}
    assert member.joined_at == dt.datetime(2025, 3, 1, 8, tzinfo=dt.UTC)
    [reject] = read_rejects(rejects_path)
    assert (reject["line"], reject["field"]) == ("2", "first_name")
