import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from nurture.ingest import MAX_RECORD_LINES, ImportFileError, import_activity, import_members
from nurture.ingest import members as members_module
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


def test_a_file_mixing_encodings_is_refused_whole_naming_file_and_line(session, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        "email,first_name\nada@example.org,Zoë\n".encode()
        + "zoe@example.org,Zoé\n".encode("latin-1")
    )
    rejects_path = tmp_path / "rejects.csv"

    with pytest.raises(ImportFileError, match=r"mixed\.csv, line 3: not UTF-8 text") as caught:
        import_members(session, path, rejects_path)

    assert caught.value.line == 3 and caught.value.path == path
    assert "byte 0xe9 at column 19, while line 2 is UTF-8" in str(caught.value)
    assert _emails(session) == []
    assert not rejects_path.exists()  # nothing is written for a file that cannot be read


def test_a_json_lines_file_that_is_not_utf8_is_refused_whole(session, tmp_path):
    path = write(
        tmp_path / "m.jsonl",
        '{"email": "ada@example.org"}\n{"email": "zoe@example.org", "first_name": "Zoé"}\n',
        encoding="latin-1",
    )

    with pytest.raises(ImportFileError, match=r"m\.jsonl, line 2: not UTF-8 text: byte 0xe9"):
        import_members(session, path)
    assert _emails(session) == []


def test_utf16_file_with_its_byte_order_mark_is_read(session, tmp_path):
    path = write(tmp_path / "m.csv", "email,first_name\nada@example.org,Zoé\n", encoding="utf-16")

    summary = import_members(session, path)

    assert (summary.stored, summary.layout.encoding) == (1, "utf-16")
    assert session.scalars(select(Member.first_name)).one() == "Zoé"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.txt", "email\n", r"m\.txt: cannot tell the format from the suffix '\.txt'"),
        (
            "m.csv",
            "first_name\nAda\n",
            r"m\.csv, line 1: bad CSV header: the required column email is missing "
            r"\(found: first_name\)",
        ),
        (
            "m.csv",
            "\n\nfirst_name,last_name\n",
            r"m\.csv, line 3: .*the required column email is missing",
        ),
        ("m.csv", "email,email\na@example.org,b@example.org\n", "duplicate columns email"),
        ("m.csv", "email,,note\n", "column 2 has no name"),
        (
            "m.csv",
            "",
            r"m\.csv: the file is empty; .*header line naming its columns \(at least email",
        ),
        ("m.csv", "\n  \n", r"m\.csv: the file is empty"),
    ],
)
def test_unusable_files_raise_naming_the_file(session, tmp_path, name, text, message):
    with pytest.raises(ImportFileError, match=message):
        import_members(session, write(tmp_path / name, text))


def test_unknown_activity_column_is_refused(session, tmp_path):
    path = write(tmp_path / "a.csv", "member,type,occurred_at,colour\n")
    with pytest.raises(ImportFileError, match="unknown columns colour"):
        import_activity(session, path)


def test_header_only_csv_and_empty_jsonl_import_nothing(session, tmp_path):
    for path in (
        write(tmp_path / "m.csv", "email,first_name\n"),
        write(tmp_path / "m.jsonl", ""),
        write(tmp_path / "n.jsonl", "\n\n"),
    ):
        summary = import_members(session, path, tmp_path / "rejects.csv")
        assert (summary.read, summary.stored, summary.refused) == (0, 0, 0)
    assert _emails(session) == []


def test_blank_lines_and_rows_of_empty_fields_are_skipped(session, tmp_path):
    text = "email,first_name\n\nada@example.org,Ada\n,\n , \n\r\nbob@example.org,Bob\n"

    summary = import_members(session, write(tmp_path / "m.csv", text))

    assert (summary.read, summary.stored, summary.refused) == (2, 2, 0)


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


STRAY = (
    "external_id,email,first_name\n"
    'm1,"ada@example.org,Ada\n'  # 2: a stray quote opens a field...
    "m2,bob@example.org,Bob\n"  # 3
    'm3,cy@example.org,"Cy"\n'  # 4: ...that this quote closes: 2 columns over 3 lines
    "m4,dee@example.org,Dee\n"  # 5
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (STRAY, "expected 3 columns as in the header, found 2 in a record running over 3 lines"),
        (STRAY.replace('"Cy"', "Cy"), "a quoted field opened on this line is never closed"),
    ],
)
def test_a_stray_quote_costs_one_record_not_the_lines_it_joins(session, tmp_path, text, reason):
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, write(tmp_path / "m.csv", text), rejects_path)

    assert (summary.read, summary.stored, summary.refused) == (4, 3, 1)
    [reject] = read_rejects(rejects_path)
    assert (reject["line"], reject["raw"]) == ("2", 'm1,"ada@example.org,Ada')
    assert reason in reject["reason"] and "lines after this one are read again" in reject["reason"]
    assert _emails(session) == ["bob@example.org", "cy@example.org", "dee@example.org"]


def test_a_quoted_field_open_for_too_many_lines_is_refused(session, tmp_path):
    later = "".join(f"m{i},user{i}@example.org,U{i}\n" for i in range(3, 3 + MAX_RECORD_LINES))
    text = 'external_id,email,first_name\nm1,"ada@example.org,Ada\n' + later
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, write(tmp_path / "m.csv", text), rejects_path)

    assert (summary.stored, summary.refused) == (MAX_RECORD_LINES, 1)
    [reject] = read_rejects(rejects_path)
    assert (
        reject["line"] == "2" and f"still open {MAX_RECORD_LINES} lines later" in reject["reason"]
    )


def test_a_quoted_field_with_line_breaks_at_the_end_of_the_file_is_kept(session, tmp_path):
    text = 'email,note\nada@example.org,"one\ntwo ""quoted""\nthree"'  # no final line break

    summary = import_members(session, write(tmp_path / "m.csv", text))

    assert (summary.stored, summary.refused) == (1, 0)
    note = session.scalars(select(Member)).one().attributes["note"]
    assert note == 'one\ntwo "quoted"\nthree'


def _members_csv(tmp_path, n):
    rows = "".join(f"m{i},user{i}@example.org\n" for i in range(n))
    return write(tmp_path / "m.csv", "external_id,email\n" + rows)


def _failing_insert(monkeypatch, error):
    """New members are written by ``write_rows``: it raises ``error`` when writing user3."""
    real = members_module.write_rows

    def write_rows(session, table, columns, rows, **options):
        if any("user3@example.org" in row for row in rows):
            raise error
        return real(session, table, columns, rows, **options)

    monkeypatch.setattr(members_module, "write_rows", write_rows)


def test_database_refusal_of_a_batch_refuses_only_the_guilty_record(session, tmp_path, monkeypatch):
    _failing_insert(
        monkeypatch, IntegrityError("INSERT", {}, Exception("simulated unique violation"))
    )

    rejects_path = tmp_path / "rejects.csv"
    summary = import_members(session, _members_csv(tmp_path, 6), rejects_path, batch_size=2)

    assert (summary.stored, summary.refused) == (5, 1)
    [reject] = read_rejects(rejects_path)
    assert reject["line"] == "5" and "simulated unique violation" in reject["reason"]
    assert len(_emails(session)) == 5


def test_failed_batch_keeps_earlier_batches(session, tmp_path, monkeypatch):
    _failing_insert(
        monkeypatch, OperationalError("INSERT", {}, Exception("server closed the connection"))
    )

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
