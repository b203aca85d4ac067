import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from nurture.errors import ImportRecordError
from nurture.ingest import import_activity, import_members
from nurture.storage.models import Member
from tests.ingest.ingest_helpers import read_rejects, write


def _emails(session):
    return sorted(session.scalars(select(Member.email)))


def test_byte_order_mark_is_accepted(session, tmp_path):
    csv_path = write(tmp_path / "m.csv", "\ufeffemail,first_name\nada@example.org,Ada\n")
    jsonl_path = write(tmp_path / "m.jsonl", '\ufeff{"email": "bob@example.org"}\n')

    assert import_members(session, csv_path).stored == 1
    assert import_members(session, jsonl_path).stored == 1
    assert _emails(session) == ["ada@example.org", "bob@example.org"]


def test_non_utf8_file_is_refused_whole_naming_file_and_line(session, tmp_path):
    path = write(
        tmp_path / "latin1.csv",
        "email,first_name\nada@example.org,Ada\nzoe@example.org,Zoé\n",
        encoding="latin-1",
    )

    with pytest.raises(ImportRecordError, match=r"latin1\.csv is not UTF-8") as caught:
        import_members(session, path)

    assert caught.value.line == 3
    assert _emails(session) == []


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.txt", "email\n", "suffix '.txt'"),
        ("m.csv", "first_name\nAda\n", "missing columns email"),
        ("m.csv", "email,email\na@example.org,b@example.org\n", "duplicate columns email"),
    ],
)
def test_unusable_files_raise(session, tmp_path, name, text, message):
    with pytest.raises(ImportRecordError, match=message):
        import_members(session, write(tmp_path / name, text))


def test_unknown_activity_column_is_refused(session, tmp_path):
    path = write(tmp_path / "a.csv", "member,type,occurred_at,colour\n")
    with pytest.raises(ImportRecordError, match="unknown columns colour"):
        import_activity(session, path)


def test_multiline_csv_records_keep_their_line_numbers(session, tmp_path):
    text = (
        "email,first_name,note\n"
        'ada@example.org,Ada,"two\nlines"\n'  # lines 2-3
        "bad-address,Bob,x\n"  # line 4
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, write(tmp_path / "m.csv", text), rejects_path)

    assert (summary.stored, summary.refused) == (1, 1)
    [reject] = read_rejects(rejects_path)
    assert (reject["line"], reject["raw"]) == ("4", "bad-address,Bob,x")
    assert session.scalars(select(Member)).one().attributes == {"note": "two\nlines"}


def _members_csv(tmp_path, n):
    rows = "".join(f"m{i},user{i}@example.org\n" for i in range(n))
    return write(tmp_path / "m.csv", "external_id,email\n" + rows)


def test_database_refusal_of_a_batch_refuses_only_the_guilty_record(session, tmp_path):
    @event.listens_for(session, "before_flush")
    def refuse_user3(flush_session, _context, _instances):
        if any(getattr(o, "email", None) == "user3@example.org" for o in flush_session.new):
            raise IntegrityError("INSERT", {}, Exception("simulated unique violation"))

    rejects_path = tmp_path / "rejects.csv"
    summary = import_members(session, _members_csv(tmp_path, 6), rejects_path, batch_size=2)

    assert (summary.stored, summary.refused) == (5, 1)
    [reject] = read_rejects(rejects_path)
    assert reject["line"] == "5" and "simulated unique violation" in reject["reason"]
    assert len(_emails(session)) == 5


def test_failed_batch_keeps_earlier_batches(session, tmp_path):
    @event.listens_for(session, "before_flush")
    def lose_connection(flush_session, _context, _instances):
        if any(getattr(o, "email", None) == "user3@example.org" for o in flush_session.new):
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    with pytest.raises(OperationalError):
        import_members(session, _members_csv(tmp_path, 6), batch_size=2)

    session.rollback()
    assert session.scalar(select(func.count()).select_from(Member)) == 2


def test_values_only_one_database_could_store_are_refused_on_every_database(session, tmp_path):
    """NUL in text and non-finite numbers: PostgreSQL refuses them, SQLite would not."""
    lines = [
        '{"email": "nul@example.org", "first_name": "A\\u0000da"}',  # line 1
        '{"email": "big@example.org", "score": 1e999}',  # line 2: infinity once read
        '{"email": "early@example.org", "joined_at": "0001-01-01T00:30:00+01:00"}',  # line 3
        '{"email": "ok@example.org", "note": "fine"}',  # line 4
    ]
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, write(tmp_path / "m.jsonl", "\n".join(lines)), rejects_path)

    assert (summary.stored, summary.refused) == (1, 3)
    reasons = {(p.line, p.field): p.message for p in summary.problems}
    assert "NUL" in reasons[(1, "first_name")]
    assert "too large" in reasons[(2, None)]
    assert "out of range" in reasons[(3, "joined_at")]
    assert _emails(session) == ["ok@example.org"]


def test_non_finite_json_in_a_csv_cell_is_refused(session, tmp_path):
    import_members(session, write(tmp_path / "m.csv", "email\nada@example.org\n"))
    path = write(
        tmp_path / "a.csv",
        "member,type,occurred_at,properties\n"
        'ada@example.org,post,2026-01-01T10:00:00Z,"{""n"": -1e999}"\n',
    )

    summary = import_activity(session, path)

    assert (summary.stored, summary.refused) == (0, 1)
    assert summary.problems[0].field == "properties"
    assert "too large" in summary.problems[0].message
