"""Spreadsheet exports as people have them: ';'-separated, Windows-1252, with a byte order mark
(issue 14, point 9). Detected from the file, or given (``--delimiter`` / ``--encoding``); line
numbers in the rejects file stay those of the file."""

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from nurture.cli import app
from nurture.ingest import ImportFileError, import_activity, import_members
from nurture.storage.models import ActivityEvent, Member
from tests.ingest.ingest_helpers import read_rejects, write
from tests.pipeline_helpers import CONTENT

FRENCH = (
    "external_id;email;first_name;last_name;company\r\n"
    "m1;helene@example.fr;Hélène;Lefèvre;Société d’Études\r\n"
    "m2;not-an-address;Zoé;Noël;Cœur & Co\r\n"  # refused: line 3
    'm3;francois@example.fr;François;"D\'Œuf; père";L’Atelier à 5 €\r\n'
)


def _people(session):
    return {m.external_id: m for m in session.scalars(select(Member))}


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("cp1252", "cp1252"), ("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16")],
)
def test_semicolon_files_in_each_encoding_import_without_loss(
    session, tmp_path, encoding, expected
):
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(
        session, write(tmp_path / "m.csv", FRENCH, encoding=encoding), rejects_path
    )

    assert (summary.layout.encoding, summary.layout.delimiter) == (expected, ";")
    assert (summary.stored, summary.refused) == (2, 1)
    people = _people(session)
    assert (people["m1"].first_name, people["m1"].last_name) == ("Hélène", "Lefèvre")
    assert people["m1"].attributes == {"company": "Société d’Études"}
    assert (people["m3"].first_name, people["m3"].last_name) == ("François", "D'Œuf; père")
    assert people["m3"].attributes == {"company": "L’Atelier à 5 €"}
    [reject] = read_rejects(rejects_path)
    assert (reject["line"], reject["field"]) == ("3", "email")
    assert reject["raw"] == "m2;not-an-address;Zoé;Noël;Cœur & Co"  # decoded, as in the file


def test_latin1_bytes_windows_1252_leaves_undefined_are_refused_per_record(session, tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(
        b"email;first_name\r\nada@example.org;Zo\xe9\r\nbob@example.org;B\x81b\r\n"
    )  # 0x81 has no Windows-1252 character: the file is read as Latin-1

    summary = import_members(session, path)

    assert summary.layout.encoding == "latin-1"
    assert (summary.stored, summary.refused) == (1, 1)
    assert summary.problems[0].line == 3 and "control character (U+0081)" in (
        summary.problems[0].message
    )
    assert session.scalars(select(Member.first_name)).one() == "Zoé"


@pytest.mark.parametrize(
    ("delimiter", "given"),
    [("\t", None), ("|", None), (",", None), (";", ";"), ("\t", "tab"), ("|", "|")],
)
def test_the_delimiter_is_found_from_the_header_or_given(session, tmp_path, delimiter, given):
    text = (
        delimiter.join(("member", "type", "occurred_at", "properties"))
        + "\n"
        + delimiter.join(("ada@example.org", "comment", "2026-01-05T10:00:00Z", '{"a": "b,c;d"}'))
        + "\n"
    ).replace('{"a": "b,c;d"}', '"{""a"": ""b,c;d""}"')
    import_members(session, write(tmp_path / "m.csv", "email\nada@example.org\n"))

    summary = import_activity(session, write(tmp_path / "a.csv", text), delimiter=given)

    assert summary.layout.delimiter == delimiter and summary.stored == 1
    assert session.scalars(select(ActivityEvent.properties)).one() == {"a": "b,c;d"}


def test_a_given_encoding_is_used_and_checked(session, tmp_path):
    text = "email;first_name\nada@example.org;Zoé\n"
    path = write(tmp_path / "m.csv", text, encoding="cp1252")

    with pytest.raises(ImportFileError, match=r"m\.csv, line 2: not UTF-8 text: byte 0xe9"):
        import_members(session, path, encoding="utf-8")
    with pytest.raises(ImportFileError, match="unknown encoding 'klingon'"):
        import_members(session, path, encoding="klingon")
    with pytest.raises(ImportFileError, match="cannot use 'ab' as the CSV delimiter"):
        import_members(session, path, delimiter="ab")

    summary = import_members(session, path, encoding="latin-1", delimiter=";")

    assert (summary.layout.encoding, summary.stored) == ("iso8859-1", 1)
    assert session.scalars(select(Member.first_name)).one() == "Zoé"


def test_a_byte_order_mark_is_not_part_of_the_first_column(session, tmp_path):
    text = "\ufeffexternal_id;email\r\nm1;ada@example.org\r\n"

    summary = import_members(session, write(tmp_path / "m.csv", text))

    assert (summary.layout.encoding, summary.stored) == ("utf-8-sig", 1)
    assert _people(session)["m1"].email == "ada@example.org"


def test_a_header_in_another_delimiter_says_so(session, tmp_path):
    path = write(tmp_path / "m.csv", "email;first_name\nada@example.org;Ada\n")

    with pytest.raises(ImportFileError, match="is the file semicolon-separated"):
        import_members(session, path, delimiter=",")


def test_the_import_command_takes_the_delimiter_and_the_encoding(tmp_path, monkeypatch):
    monkeypatch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")
    path = write(tmp_path / "m.csv", FRENCH.replace(";", "|"), encoding="cp1252")
    data = tmp_path / "data"

    result = CliRunner().invoke(
        app,
        [
            "--workspace",
            str(CONTENT),
            "--data-dir",
            str(data),
            "import",
            "members",
            str(path),
            "--delimiter",
            "|",
            "--encoding",
            "cp1252",
        ],
    )

    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "3 read, 2 new" in output and "1 refused" in output
    [reject] = read_rejects(data / "rejects" / "m.csv.rejects.csv")
    assert reject["raw"] == "m2|not-an-address|Zoé|Noël|Cœur & Co"
