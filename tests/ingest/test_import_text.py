"""Valid text everywhere: a bad value refuses its record, never its batch (issue 15).

Lone surrogates (a JSON escape such as \\ud800 alone), control characters and line breaks
where they cannot belong, duplicate JSON keys, huge integers, deep nesting and impossible dates
are refused record by record, with the field and the reason in the rejects file; the good
records of the same batch are stored, and what is stored can be exported and read again.
"""

import datetime as dt
import json
import re

import pytest
from sqlalchemy import select

from nurture.ingest import (
    MAX_JSON_DEPTH,
    check_json_value,
    clean_text,
    import_activity,
    import_answers,
    import_members,
)
from nurture.rights import export_member, format_export
from nurture.storage.models import ActivityEvent, Answer, Member
from tests.ingest.ingest_helpers import read_rejects, write

SURROGATE = "\\ud800"  # as written in a JSON file: a lone high surrogate once read
LOW_SURROGATE = "\\udfff"


def _jsonl(*records: str) -> str:
    return "".join(record + "\n" for record in records)


def _refusals(rejects_path):
    return {(int(r["line"]), r["field"]): r["reason"] for r in read_rejects(rejects_path)}


# --- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "multiline", "found"),
    [
        ("Ada\ud800", False, "lone surrogate (U+D800) at character 4"),
        ("\udfffAda", True, "lone surrogate (U+DFFF) at character 1"),
        ("Ada\nLovelace", False, "line break (U+000A) at character 4"),
        ("Ada\rLovelace", False, "line break (U+000D) at character 4"),
        ("Ada\u2028Lovelace", False, "line break (U+2028) at character 4"),
        ("Ada\x00", False, "NUL character (U+0000) at character 4"),
        ("Ada\x00", True, "NUL character (U+0000) at character 4"),
        ("Ada\tLovelace", False, "tab (U+0009) at character 4"),
        ("A\x07da", True, "control character (U+0007) at character 2"),
        ("A\x1bda", False, "control character (U+001B) at character 2"),
        ("Zo\x92e", True, "control character (U+0092) at character 3"),  # a C1 control
        ("A\x7fda", False, "control character (U+007F) at character 2"),
    ],
)
def test_clean_text_refuses_what_cannot_be_text(text, multiline, found):
    with pytest.raises(ValueError, match=re.escape(found)):
        clean_text(text, multiline=multiline)


def test_clean_text_keeps_valid_text_and_makes_line_breaks_lf():
    assert clean_text("Zoé Ørsted 😀 ’quoted’") == "Zoé Ørsted 😀 ’quoted’"
    assert clean_text("first\r\nsecond\rthird\n\tfourth", multiline=True) == (
        "first\nsecond\nthird\n\tfourth"
    )


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({"title": "x\ud800"}, "at ['title']: holds a lone surrogate"),
        ({"tags": ["ok", "n\x00"]}, "at ['tags'][1]: holds a NUL"),
        ({"bad\nkey": 1}, "key 'bad\\nkey' holds a line break"),
        ({"n": 2**63}, "does not fit in 64 bits"),
        ({"n": -(2**64)}, "does not fit in 64 bits"),
        ({"x": float("nan")}, "not finite"),
        ({"x": {"y": [1, {"z": "\x1b"}]}}, "at ['x']['y'][1]['z']: holds a control"),
    ],
)
def test_check_json_value_names_where_the_fault_is(value, found):
    with pytest.raises(ValueError, match=re.escape(found)):
        check_json_value(value)


def test_check_json_value_refuses_deep_nesting_and_keeps_the_rest():
    deep: object = "leaf"
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match=f"nested more than {MAX_JSON_DEPTH} levels"):
        check_json_value(deep)
    check_json_value({"a": ["b", 1, 2.5, None, True, {"c": "multi\nline\ttext é"}]})


# --- members ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "field", "found"),
    [
        (f'"external_id": "m{SURROGATE}"', "external_id", "lone surrogate"),
        (f'"first_name": "Ad{SURROGATE}a"', "first_name", "lone surrogate"),
        (f'"last_name": "{LOW_SURROGATE}"', "last_name", "lone surrogate"),
        (f'"consent_source": "form{SURROGATE}"', "consent_source", "lone surrogate"),
        (f'"company": "Acme{SURROGATE}"', "company", "lone surrogate"),
        (f'"plan": {{"tier": "pro{SURROGATE}"}}', "plan", "at ['tier']: holds a lone surrogate"),
        (f'"note{SURROGATE}": "x"', "'note\\ud800'", "the attribute's name holds a lone"),
        ('"first_name": "Ada\\r\\nLovelace"', "first_name", "line break (U+000D)"),
        ('"last_name": "Love\\nlace"', "last_name", "line break (U+000A)"),
        ('"first_name": "A\\u0000da"', "first_name", "NUL character"),
        ('"external_id": "m\\t1"', "external_id", "tab (U+0009)"),
        ('"company": "Acme\\u001b[31m"', "company", "control character (U+001B)"),
    ],
)
def test_a_bad_member_value_refuses_its_record_not_its_batch(
    session, tmp_path, record, field, found
):
    text = _jsonl(
        '{"email": "ada@example.org", "first_name": "Ada"}',
        '{"email": "bad@example.org", ' + record + "}",
        '{"email": "bob@example.org", "company": "Multi\\nline is fine in an attribute"}',
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, write(tmp_path / "m.jsonl", text), rejects_path)

    assert (summary.read, summary.stored, summary.refused) == (3, 2, 1)
    [(where, reason)] = _refusals(rejects_path).items()
    assert where == (2, field) and found in reason
    stored = {m.email: m for m in session.scalars(select(Member))}
    assert set(stored) == {"ada@example.org", "bob@example.org"}
    assert stored["bob@example.org"].attributes["company"] == "Multi\nline is fine in an attribute"
    for email in stored:  # what is stored exports (the export crashed on a surrogate)
        format_export(export_member(session, email, salt="s")).encode("utf-8")


def test_line_breaks_in_a_csv_name_are_refused_with_the_reason(session, tmp_path):
    text = (
        "email,first_name,last_name\n"
        'ada@example.org,"Ada\nLovelace",L\n'  # a spreadsheet cell with Alt+Enter
        'bob@example.org,Bob,"Stone\r"\n'  # stripped: a trailing line break is not a fault
        'cy@example.org,"C\ry",Ng\n'  # line 6: the quoted line breaks above count as lines
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_members(session, write(tmp_path / "m.csv", text), rejects_path)

    assert (summary.stored, summary.refused) == (1, 2)
    refusals = _refusals(rejects_path)
    assert (
        "line break (U+000A) at character 4; this field is one line" in refusals[(2, "first_name")]
    )
    assert "line break (U+000D)" in refusals[(6, "first_name")]
    assert session.scalars(select(Member.last_name)).one() == "Stone"


# --- answers ----------------------------------------------------------------------------------


@pytest.fixture
def members(session, tmp_path):
    text = "external_id,email\nm1,ada@example.org\nm2,bob@example.org\n"
    import_members(session, write(tmp_path / "members.csv", text))


@pytest.mark.parametrize(
    ("record", "field", "found"),
    [
        (f'"member": "m1", "question": "expectations", "value": "Meet{SURROGATE}"', "value", ""),
        (f'"member": "m1", "question": "goals", "value": ["run_events{SURROGATE}"]', "value", ""),
        (f'"member": "m{SURROGATE}", "question": "role", "value": "founder"', "member", ""),
        ('"member": "m1", "question": "expectations", "value": "A\\u0000B"', "value", "NUL"),
        ('"member": "m1", "question": "expectations", "value": "bell\\u0007"', "value", "U+0007"),
    ],
)
def test_a_bad_answer_value_refuses_its_record_not_its_batch(
    session, tmp_path, members, questionnaire, record, field, found
):
    text = _jsonl(
        '{"member": "m1", "question": "role", "value": "founder"}',
        "{" + record + "}",
        '{"member": "m2", "question": "expectations", "value": "Line one\\r\\nline two"}',
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_answers(
        session, write(tmp_path / "a.jsonl", text), questionnaire, rejects_path
    )

    assert (summary.stored, summary.refused) == (2, 1)
    [(where, reason)] = _refusals(rejects_path).items()
    assert where == (2, field) and found in reason
    values = {a.question_key: a.value for a in session.scalars(select(Answer))}
    assert values == {"role": "founder", "expectations": "Line one\nline two"}


# --- activity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "field", "found"),
    [
        (f'"member": "m{SURROGATE}"', "member", "lone surrogate"),
        (f'"member": "m1", "properties": {{"t": "x{SURROGATE}"}}', "properties", "surrogate"),
        (f'"member": "m1", "properties": {{"k{SURROGATE}": 1}}', "properties", "surrogate"),
        (f'"member": "m1", "idempotency_key": "k{SURROGATE}"', "idempotency_key", "surrogate"),
        (f'"member": "m1", "content_key": "c{LOW_SURROGATE}"', "content_key", "surrogate"),
        ('"member": "m1", "idempotency_key": "k\\nk"', "idempotency_key", "line break"),
        ('"member": "m1", "properties": {"n": 123456789012345678901234}', "", "64 bits"),
        ('"member": "m1", "properties": {"n": 1, "n": 2}', "n", "appears twice"),
        ('"member": "m1", "member": "m2"', "member", "appears twice"),
    ],
)
def test_a_bad_event_value_refuses_its_record_not_its_batch(
    session, tmp_path, members, record, field, found
):
    common = '"type": "post", "occurred_at": "2026-01-05T10:00:00Z"'
    text = _jsonl(
        '{"member": "m1", ' + common + ', "idempotency_key": "good-1"}',
        "{" + record + ", " + common + "}",
        '{"member": "m2", ' + common + ', "properties": {"excerpt": "two\\nlines\\ttab"}}',
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_activity(session, write(tmp_path / "a.jsonl", text), rejects_path)

    assert (summary.stored, summary.refused) == (2, 1)
    [(where, reason)] = _refusals(rejects_path).items()
    assert where == (2, field) and found in reason
    excerpt = session.scalars(select(ActivityEvent.properties)).all()
    assert {"excerpt": "two\nlines\ttab"} in excerpt


def test_duplicate_keys_and_huge_integers_in_csv_cells_are_refused(
    session, tmp_path, members, questionnaire
):
    events = write(
        tmp_path / "a.csv",
        "member,type,occurred_at,properties\n"
        'm1,post,2026-01-05T10:00:00Z,"{""channel"": ""a"", ""channel"": ""b""}"\n'
        'm1,post,2026-01-05T10:01:00Z,"{""n"": 99999999999999999999}"\n'
        'm1,post,2026-01-05T10:02:00Z,"{""n"": 9223372036854775807}"\n',
    )
    answers = write(
        tmp_path / "q.csv",
        "member,question,value\n"
        f"m1,experience,{'9' * 5000}\n"  # int() of so many digits raises in Python itself
        "m1,experience,99999999999999999999\n"
        "m2,experience,3\n",
    )

    activity = import_activity(session, events)
    scale = import_answers(session, answers, questionnaire)

    assert (activity.stored, activity.refused) == (1, 2)
    assert [(p.line, p.field) for p in activity.problems] == [(2, "properties"), (3, "properties")]
    assert "the key 'channel' appears twice" in activity.problems[0].message
    assert (scale.stored, scale.refused) == (1, 2)
    assert {p.field for p in scale.problems} == {"value"}


def test_deep_nesting_is_refused_per_record(session, tmp_path, members):
    common = '"member": "m1", "type": "post", "occurred_at": "2026-01-05T10:00:00Z"'
    deep = "[" * 100_000 + "]" * 100_000  # more than the JSON reader itself can nest
    text = _jsonl(
        "{" + common + ', "properties": {"x": ' + "[" * 40 + "]" * 40 + "}}",
        "{" + common + ', "properties": {"x": ' + deep + "}}",
        "{" + common + ', "properties": {"x": [[1]]}}',
    )

    summary = import_activity(session, write(tmp_path / "a.jsonl", text))

    assert (summary.stored, summary.refused) == (1, 2)
    assert all("nested more than" in p.message for p in summary.problems)


# --- dates ------------------------------------------------------------------------------------


def test_dates_beyond_a_sane_horizon_are_refused(session, tmp_path, members, questionnaire):
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=20)).isoformat()
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    events = _jsonl(
        *(
            json.dumps({"member": "m1", "type": "post", "occurred_at": when})
            for when in ("2999-01-01T00:00:00Z", later, "1899-12-31T23:00:00Z", "0025-06-01", soon)
        )
    )
    people = _jsonl(
        json.dumps({"email": "eve@example.org", "joined_at": "2999-01-01"}),
        json.dumps({"email": "fay@example.org", "joined_at": "1850-01-01"}),
        json.dumps({"email": "gus@example.org", "birthday": "2999-01-01"}),
    )
    answers = _jsonl(
        json.dumps({"member": "m1", "question": "role", "value": "founder", "answered_at": later})
    )

    activity = import_activity(session, write(tmp_path / "a.jsonl", events))
    joined = import_members(session, write(tmp_path / "m.jsonl", people))
    answered = import_answers(session, write(tmp_path / "q.jsonl", answers), questionnaire)

    assert (activity.stored, activity.refused) == (1, 4)  # a few hours ahead: clocks differ
    assert [p.field for p in activity.problems] == ["occurred_at"] * 4
    assert "in the future" in activity.problems[0].message
    assert "before 1900-01-01" in activity.problems[2].message
    assert (joined.stored, joined.refused) == (0, 3)
    assert [p.field for p in joined.problems] == ["joined_at", "joined_at", "birthday"]
    assert (answered.stored, answered.refused) == (0, 1)
    assert answered.problems[0].field == "answered_at"
