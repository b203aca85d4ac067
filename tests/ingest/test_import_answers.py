import datetime as dt
import json

import pytest
from sqlalchemy import select

from nurture.ingest import import_answers, import_members
from nurture.storage.models import Answer, Member
from tests.ingest.ingest_helpers import read_rejects, write


@pytest.fixture
def members(session, tmp_path):
    text = "external_id,email\nm1,ada@example.org\nm2,bob@example.org\n"
    import_members(session, write(tmp_path / "members.csv", text))
    return {m.external_id: m.id for m in session.scalars(select(Member))}


def _answers(session):
    return {(a.member_id, a.question_key): a.value for a in session.scalars(select(Answer))}


def test_jsonl_answers_good_and_bad(session, tmp_path, members, questionnaire):
    lines = [
        {
            "member": "m1",
            "question": "role",
            "value": "founder",
            "answered_at": "2025-02-01T10:00:00+00:00",
        },  # 1
        {"member": "ADA@example.org", "question": "goals", "value": ["grow_members", "run_events"]},
        {"member": "m1", "question": "experience", "value": 4},  # 3
        {"member": "m2", "question": "expectations", "value": "Meet peers | learn"},  # 4
        {"member": "nobody", "question": "role", "value": "founder"},  # 5 member
        {"member": "m2", "question": "role", "value": "astronaut"},  # 6 value
        {"member": "m2", "question": "favourite_colour", "value": "blue"},  # 7 question
        {"member": "m2", "question": "experience", "value": 9},  # 8 value
        {"member": "m2", "question": "formats", "value": "webinar"},  # 9 value (not a list)
        {"member": "m2", "question": "role", "value": "marketer", "answered_at": "yesterday"},
    ]
    text = "\n".join(json.dumps(line) for line in lines)
    text += '\n{"member": "m2", "question": \n["not", "an", "object"]\n'  # 11 JSON, 12 object
    rejects_path = tmp_path / "rejects.csv"

    summary = import_answers(
        session, write(tmp_path / "answers.jsonl", text), questionnaire, rejects_path
    )

    assert (summary.read, summary.stored, summary.refused) == (12, 4, 8)
    rejects = read_rejects(rejects_path)
    assert [(r["line"], r["field"]) for r in rejects] == [
        ("5", "member"),
        ("6", "value"),
        ("7", "question"),
        ("8", "value"),
        ("9", "value"),
        ("10", "answered_at"),
        ("11", ""),
        ("12", ""),
    ]
    assert "invalid JSON" in rejects[6]["reason"]
    assert "JSON object" in rejects[7]["reason"]
    m1, m2 = members["m1"], members["m2"]
    assert _answers(session) == {
        (m1, "role"): "founder",
        (m1, "goals"): ["grow_members", "run_events"],
        (m1, "experience"): 4,
        (m2, "expectations"): "Meet peers | learn",
    }


def test_csv_answers_split_choices_and_numbers(session, tmp_path, members, questionnaire):
    text = (
        "member,question,value,answered_at\n"
        "m1,goals,grow_members|run_events,\n"
        "m1,formats,webinar,\n"
        "m1,experience,3,\n"
        "m1,expectations,I want a | b,\n"
        "m2,goals,grow_members|fly,\n"
        "m2,experience,,\n"
    )
    rejects_path = tmp_path / "rejects.csv"

    summary = import_answers(session, write(tmp_path / "a.csv", text), questionnaire, rejects_path)

    assert (summary.stored, summary.refused) == (4, 2)
    m1 = members["m1"]
    assert _answers(session) == {
        (m1, "goals"): ["grow_members", "run_events"],
        (m1, "formats"): ["webinar"],
        (m1, "experience"): 3,
        (m1, "expectations"): "I want a | b",
    }
    assert [(r["line"], r["field"]) for r in read_rejects(rejects_path)] == [
        ("6", "value"),
        ("7", "value"),
    ]


def test_answers_upsert_newest_wins_and_reimport_adds_nothing(
    session, tmp_path, members, questionnaire
):
    first = write(
        tmp_path / "1.csv",
        "member,question,value,answered_at\nm1,role,founder,2025-02-01T10:00:00Z\n",
    )
    assert import_answers(session, first, questionnaire).stored == 1
    again = import_answers(session, first, questionnaire)
    assert (again.stored, again.updated, again.unchanged) == (0, 0, 1)

    newer = write(
        tmp_path / "2.csv",
        "member,question,value,answered_at\n"
        "m1,role,marketer,2025-03-01T10:00:00Z\n"
        "m1,role,founder,2025-01-01T10:00:00Z\n",  # older than what is stored: ignored
    )
    summary = import_answers(session, newer, questionnaire)

    assert (summary.updated, summary.unchanged) == (1, 1)
    answer = session.scalars(select(Answer)).one()
    assert answer.value == "marketer"
    assert answer.answered_at == dt.datetime(2025, 3, 1, 10, tzinfo=dt.UTC)
