"""The fast paths of imports (whole chunks of JSON read by orjson, checks column by column,
answers checked once per distinct value) give what reading each record with care gives."""

import json

import pytest
from sqlalchemy import func, select

from nurture.ingest import import_activity, import_answers, import_members
from nurture.ingest.fields import load_json, load_json_texts
from nurture.storage.models import ActivityEvent, Answer, Member
from tests.ingest.ingest_helpers import read_rejects, write

PLAIN_TEXTS = [
    '{"member": "m1", "properties": {"words": 120, "title": "Été: « bilan »"}}',
    '{"a": "x:\\"y", "b" : {"c": [1, 2.5, -0.0, null, true]}, "l": ["q", 2]}',
    '{"n": 999999999999999999, "m": -999999999999999999, "f": 1.5e15}',
    '{"deep": [[[[{"k": "v"}]]]], "empty": {}, "none": []}',
    '"just text"',
    "[1, 2, 3]",
]
DOUBTFUL_TEXTS = [
    '{"a": 1, "a": 2}',  # a key named twice
    '{"p": {"b": "x:y", "b": "z"}}',  # a key named twice, one level down
    '{"a": "q", "a": "\\u003a"}',  # a key named twice, a colon hidden as an escape
    '{"a": 9223372036854775807}',  # 19 digits: may not fit in 64 bits, read with care
    '{"a": 9223372036854775808}',  # beyond 64 bits (orjson reads it)
    '{"a": -9223372036854775808}',
    '{"a": 18446744073709551616}',  # orjson reads it as a float
    '{"a": 1e999}',
    '{"a": NaN}',
    '{"a": "\\ud800"}',  # a lone surrogate
    '{"a": 1',  # not JSON
    '{"id": "1234567890123456789012"}',  # a 19-digit run in a text: read with care, to be safe
]


@pytest.mark.parametrize("text", PLAIN_TEXTS)
def test_plain_json_texts_read_fast_as_load_json_reads_them(text):
    [fast] = load_json_texts([text])

    assert fast == load_json(text)
    assert json.dumps(fast, sort_keys=True) == json.dumps(load_json(text), sort_keys=True)


@pytest.mark.parametrize("text", DOUBTFUL_TEXTS)
def test_json_texts_in_doubt_are_left_to_load_json(text):
    assert load_json_texts([text]) is None
    assert load_json_texts([PLAIN_TEXTS[0], text, PLAIN_TEXTS[1]]) is None


@pytest.fixture
def members(session, tmp_path):
    text = "external_id,email\nm1,ada@example.org\nm2,bob@example.org\n"
    import_members(session, write(tmp_path / "members.csv", text))
    return {m.external_id: m.id for m in session.scalars(select(Member))}


def _event(number: int) -> dict:
    return {
        "member": "m1" if number % 2 else "m2",
        "type": "post",
        "occurred_at": f"2025-05-01T{number % 24:02d}:{number % 60:02d}:00+02:00",
        "properties": {"channel": "général", "words": number, "ref": f"r:{number}"},
        "idempotency_key": f"event-{number}",
    }


BAD_LINES = {
    # line: (text, field, words of the reason)
    300: ('{"member": "m1", "type": "post"', "", "invalid JSON"),
    1500: (
        '{"member": "m1", "type": "post", "type": "comment", '
        '"occurred_at": "2025-05-01T10:00:00Z"}',
        "type",
        "appears twice",
    ),
    2100: (
        '{"member": "m1", "type": "post", "occurred_at": "2025-05-01T10:00:00Z", '
        '"properties": {"big": 9223372036854775808}}',
        "",
        "does not fit in 64 bits",
    ),
    2101: (
        '{"member": "m1", "type": "post", "occurred_at": "2025-05-01T10:00:00Z", '
        '"properties": {"text": "a\\u0000b"}}',
        "properties",
        "NUL",
    ),
    2400: (
        '{"member": "ghost", "type": "post", "occurred_at": "2025-05-01T10:00:00Z"}',
        "member",
        "ghost",
    ),
}
BLANK_LINES = {1200, 1201}


def _activity_lines(count: int) -> tuple[str, int]:
    lines, good = [], 0
    for number in range(1, count + 1):
        if number in BAD_LINES:
            lines.append(BAD_LINES[number][0])
        elif number in BLANK_LINES:
            lines.append("   " if number % 2 else "")
        else:
            lines.append(json.dumps(_event(number), ensure_ascii=number % 3 == 0))
            good += 1
    return "\n".join(lines) + "\n", good


def _events(session) -> int:
    return session.scalar(select(func.count()).select_from(ActivityEvent))


def test_bad_lines_among_chunks_of_good_ones_are_refused_by_their_line(session, tmp_path, members):
    text, good = _activity_lines(2500)
    path = write(tmp_path / "activity.jsonl", text)
    rejects_path = tmp_path / "rejects.csv"

    summary = import_activity(session, path, rejects_path, batch_size=700)

    assert (summary.read, summary.stored, summary.refused) == (2498, good, len(BAD_LINES))
    rejects = read_rejects(rejects_path)
    assert [(int(r["line"]), r["field"]) for r in rejects] == [
        (line, field) for line, (_, field, _) in sorted(BAD_LINES.items())
    ]
    for reject, (_, (_, _, words)) in zip(rejects, sorted(BAD_LINES.items()), strict=True):
        assert words in reject["reason"]
    assert _events(session) == good
    stored = session.scalars(
        select(ActivityEvent).where(ActivityEvent.idempotency_key == "event-999")
    ).one()
    assert stored.properties == {"channel": "général", "words": 999, "ref": "r:999"}
    assert stored.member_id == members["m1"]


def test_reimporting_a_file_of_many_chunks_stores_nothing_twice(session, tmp_path, members):
    text, good = _activity_lines(2500)
    path = write(tmp_path / "activity.jsonl", text)
    import_activity(session, path, batch_size=700)

    again = import_activity(session, path, tmp_path / "again.csv", batch_size=1000)

    assert (again.stored, again.unchanged, again.refused) == (0, good, len(BAD_LINES))
    assert _events(session) == good
    assert [int(r["line"]) for r in read_rejects(tmp_path / "again.csv")] == sorted(BAD_LINES)


def test_the_same_event_twice_in_a_batch_is_stored_once(session, tmp_path, members):
    event = {"member": "m1", "type": "post", "occurred_at": "2025-05-01T10:00:00Z"}
    same = dict(event, member="ada@example.org", occurred_at="2025-05-01T12:00:00+02:00")
    text = "\n".join(json.dumps(line) for line in (event, same, event)) + "\n"

    summary = import_activity(session, write(tmp_path / "activity.jsonl", text))

    assert (summary.stored, summary.unchanged, summary.refused) == (1, 2, 0)
    assert _events(session) == 1


def test_csv_properties_read_fast_or_with_care_alike(session, tmp_path, members):
    text = (
        "member,type,occurred_at,properties,idempotency_key\n"
        'm1,post,2025-05-01T10:00:00Z,"{""id"": ""1234567890123456789012""}",a\n'  # 2
        'm1,post,2025-05-01T10:00:00Z,"{""n"": 2, ""n"": 3}",b\n'  # 3 key twice
        'm1,post,2025-05-01T10:00:00Z,"{""title"": ""Été""}",c\n'  # 4
        "m1,post,2025-05-01T10:00:00Z,,d\n"  # 5
        'm1,post,2025-05-01T10:00:00Z,"{""deep"": {""list"": [1, {""x"": null}]}}",e\n'  # 6
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_activity(session, write(tmp_path / "activity.csv", text), rejects_path)

    assert (summary.stored, summary.refused) == (4, 1)
    [reject] = read_rejects(rejects_path)
    assert (reject["line"], reject["field"]) == ("3", "properties")
    assert "'n' appears twice" in reject["reason"]
    stored = {e.idempotency_key: e.properties for e in session.scalars(select(ActivityEvent))}
    assert stored == {
        "a": {"id": "1234567890123456789012"},
        "c": {"title": "Été"},
        "d": {},
        "e": {"deep": {"list": [1, {"x": None}]}},
    }


@pytest.mark.parametrize("batch_size", [5000, 3, 1])  # answers remembered across batches too
def test_answers_checked_once_per_value_still_checked_per_question_and_type(
    session, tmp_path, members, questionnaire, batch_size
):
    lines = [
        {"member": "m1", "question": "experience", "value": 1},  # 1
        {"member": "m2", "question": "experience", "value": True},  # 2 a boolean (== 1) no number
        {"member": "m2", "question": "expectations", "value": "founder"},  # 3
        {"member": "m1", "question": "role", "value": "founder"},  # 4
        {"member": "m2", "question": "role", "value": "founder", "answered_at": "soon"},  # 5
        {"member": "m2", "question": "goals", "value": ["run_events"]},  # 6
        {"member": "m1", "question": "formats", "value": ["run_events"]},  # 7 not its option
        {"member": "m1", "question": "goals", "value": ["run_events"]},  # 8
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    rejects_path = tmp_path / "rejects.csv"

    summary = import_answers(
        session,
        write(tmp_path / "answers.jsonl", text),
        questionnaire,
        rejects_path,
        batch_size=batch_size,
    )

    assert (summary.stored, summary.refused) == (5, 3)
    assert [(r["line"], r["field"]) for r in read_rejects(rejects_path)] == [
        ("2", "value"),
        ("5", "answered_at"),
        ("7", "value"),
    ]
    stored = {(a.member_id, a.question_key): a.value for a in session.scalars(select(Answer))}
    m1, m2 = members["m1"], members["m2"]
    assert stored == {
        (m1, "experience"): 1,
        (m2, "expectations"): "founder",
        (m1, "role"): "founder",
        (m2, "goals"): ["run_events"],
        (m1, "goals"): ["run_events"],
    }
