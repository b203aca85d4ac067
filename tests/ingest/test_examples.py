"""examples/: the good files import whole, the bad ones refuse what docs/imports.md says."""

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.ingest import ImportFileError, import_activity, import_answers, import_members
from nurture.storage.models import ActivityEvent, Answer, Member
from nurture.workspace import load_questionnaire
from tests.ingest.ingest_helpers import read_rejects, snapshot

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
KINDS = ("members", "answers", "activity")


@pytest.fixture(scope="module")
def real_questionnaire():
    return load_questionnaire(REPO / "content" / "questionnaire.yaml")


def _records(path: Path) -> list[dict]:
    """The records of a good example file, as written (CSV cells are text, empty ones dropped)."""
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix == ".csv":
            return [{k: v for k, v in row.items() if v} for row in csv.DictReader(handle)]
        return [json.loads(line) for line in handle if line.strip()]


def _import(session, kind, path, questionnaire, rejects_path=None):
    if kind == "members":
        return import_members(session, path, rejects_path)
    if kind == "answers":
        return import_answers(session, path, questionnaire, rejects_path)
    return import_activity(session, path, rejects_path)


def _counts(summary):
    return (summary.read, summary.stored, summary.updated, summary.unchanged, summary.refused)


def _utc(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:  # a date alone: midnight UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_every_record_of_every_example_is_stored(session, real_questionnaire, fmt):
    for kind in KINDS:
        path = EXAMPLES / f"{kind}.{fmt}"
        n = len(_records(path))
        summary = _import(session, kind, path, real_questionnaire)
        assert _counts(summary) == (n, n, 0, 0, 0), path

    members = {m.email: m for m in session.scalars(select(Member))}
    ref = {m.external_id: email for email, m in members.items() if m.external_id}
    for record in _records(EXAMPLES / f"members.{fmt}"):
        member = members[record["email"]]
        assert member.external_id == record.get("external_id")
        assert (member.first_name, member.last_name) == (record["first_name"], record["last_name"])
        assert member.consent_source == record.get("consent_source")
        assert member.language == record.get("language", "en")
        assert member.time_zone == record.get("time_zone", "UTC")
        assert member.consent_status == record.get("consent_status", "unknown")
        if "joined_at" in record:
            assert member.joined_at == _utc(record["joined_at"])
        if "birthday" in record:
            assert member.birthday.isoformat() == record["birthday"]
        assert member.attributes == {
            key: value for key, value in record.items() if key in ("company", "country")
        }
    assert members["ada.lovelace@example.org"].attributes["company"] == "Analytical Engines, Ltd."

    # Answers and events, compared with the JSON Lines files (values in canonical form).
    stored_answers = {
        (m.email, a.question_key): (a.value, a.answered_at)
        for a, m in session.execute(select(Answer, Member).join(Member))
    }
    expected_answers = {}
    for record in _records(EXAMPLES / "answers.jsonl"):
        email = ref.get(record["member"], record["member"])
        expected_answers[(email, record["question"])] = record["value"]
        if "answered_at" in record:
            assert stored_answers[(email, record["question"])][1] == _utc(record["answered_at"])
    assert {key: value for key, (value, _) in stored_answers.items()} == expected_answers

    stored_events = {
        (m.email, e.type, e.occurred_at): (e.content_key, e.properties, e.idempotency_key)
        for e, m in session.execute(select(ActivityEvent, Member).join(Member))
    }
    expected_events = {}
    for record in _records(EXAMPLES / "activity.jsonl"):
        key = (ref.get(record["member"], record["member"]), record["type"])
        expected_events[(*key, _utc(record["occurred_at"]))] = (
            record.get("content_key"),
            record.get("properties", {}),
            record.get("idempotency_key"),
        )
    assert stored_events.keys() == expected_events.keys()
    for event, (content_key, properties, key) in expected_events.items():
        assert stored_events[event][:2] == (content_key, properties)
        assert stored_events[event][2] == key or (
            key is None and len(stored_events[event][2]) == 64
        )


@pytest.mark.parametrize(("first", "second"), [("csv", "jsonl"), ("jsonl", "csv"), ("csv", "csv")])
def test_example_formats_hold_the_same_records_and_reimports_add_nothing(
    session, real_questionnaire, first, second
):
    for kind in KINDS:
        _import(session, kind, EXAMPLES / f"{kind}.{first}", real_questionnaire)
    before = snapshot(session)

    for kind in KINDS:
        path = EXAMPLES / f"{kind}.{second}"
        summary = _import(session, kind, path, real_questionnaire)
        assert _counts(summary) == (summary.read, 0, 0, summary.read, 0), path

    assert snapshot(session) == before


def test_examples_use_the_keys_of_the_questionnaire_and_the_library(real_questionnaire):
    questions = {question.key for question in real_questionnaire.questions}
    library = {path.stem for path in (REPO / "content" / "library").glob("*.md")}
    for fmt in ("csv", "jsonl"):
        assert {r["question"] for r in _records(EXAMPLES / f"answers.{fmt}")} == questions
        events = _records(EXAMPLES / f"activity.{fmt}")
        assert {r["content_key"] for r in events if "content_key" in r} <= library
        assert {r["type"] for r in events} == {
            "post",
            "comment",
            "event_attended",
            "content_view",
            "email_open",
            "email_click",
        }


BAD = [
    (
        "members.csv",
        (16, 3, 0, 0, 13),
        [
            ("3", "email"),
            ("4", "email"),
            ("5", "time_zone"),
            ("6", "birthday"),
            ("7", "birthday"),
            ("8", "joined_at"),
            ("9", "joined_at"),
            ("10", "language"),
            ("11", "consent_status"),
            ("12", ""),
            ("13", ""),
            ("16", ""),
            ("18", "email"),
        ],
    ),
    (
        "members.jsonl",
        (15, 3, 0, 0, 12),
        [
            ("3", "first_name"),
            ("4", "email"),
            ("5", "time_zone"),
            ("6", "birthday"),
            ("7", "joined_at"),
            ("8", "language"),
            ("9", "consent_status"),
            ("10", ""),
            ("11", ""),
            ("12", ""),
            ("13", ""),
            ("15", "email"),
        ],
    ),
    (
        "answers.csv",
        (13, 3, 0, 0, 10),
        [
            ("3", "member"),
            ("4", "question"),
            ("5", "value"),
            ("6", "value"),
            ("7", "value"),
            ("8", "value"),
            ("9", "value"),
            ("10", "answered_at"),
            ("11", ""),
            ("13", "member"),
        ],
    ),
    (
        "answers.jsonl",
        (12, 2, 0, 0, 10),
        [
            ("2", "member"),
            ("3", "question"),
            ("4", "value"),
            ("5", "value"),
            ("6", "value"),
            ("7", "value"),
            ("8", "mood"),
            ("9", "value"),
            ("10", "answered_at"),
            ("11", ""),
        ],
    ),
    (
        "activity.csv",
        (12, 2, 0, 1, 9),
        [
            ("3", "type"),
            ("4", "occurred_at"),
            ("5", "occurred_at"),
            ("6", "occurred_at"),
            ("7", "properties"),
            ("8", "properties"),
            ("9", "member"),
            ("10", ""),
            ("12", "member"),
        ],
    ),
    (
        "activity.jsonl",
        (13, 2, 0, 1, 10),
        [
            ("2", "type"),
            ("3", "occurred_at"),
            ("4", "occurred_at"),
            ("5", "properties"),
            ("6", "properties"),
            ("7", "channel"),
            ("8", "member"),
            ("9", ""),
            ("10", ""),
            ("11", ""),
        ],
    ),
]


@pytest.mark.parametrize(("name", "counts", "refused"), BAD)
def test_bad_examples_store_the_good_records_and_refuse_each_bad_one(
    session, tmp_path, real_questionnaire, name, counts, refused
):
    import_members(session, EXAMPLES / "members.csv")
    path = EXAMPLES / "bad" / name
    rejects_path = tmp_path / "rejects.csv"

    summary = _import(session, name.split(".")[0], path, real_questionnaire, rejects_path)

    assert _counts(summary) == counts
    assert summary.read == summary.stored + summary.updated + summary.unchanged + summary.refused
    rejects = read_rejects(rejects_path)
    assert [(r["line"], r["field"]) for r in rejects] == refused
    lines = path.read_text(encoding="utf-8").splitlines()
    for reject in rejects:
        assert reject["raw"] == lines[int(reject["line"]) - 1]
        assert reject["reason"]
    assert [(p.line, p.field or "") for p in summary.problems] == [
        (int(line), field) for line, field in refused
    ]


def test_bad_members_example_stores_exactly_its_good_records(session):
    import_members(session, EXAMPLES / "bad" / "members.csv")
    import_members(session, EXAMPLES / "bad" / "members.jsonl")

    members = {m.email: m for m in session.scalars(select(Member))}
    assert set(members) == {
        "grace.hopper@example.org",
        "ned@example.org",  # after the stray quote of line 16
        "pia@example.org",  # updated by members.jsonl
        "alan.turing@example.org",
        "bob.stone@example.org",
    }
    assert members["bob.stone@example.org"].external_id == "3002"
    assert members["bob.stone@example.org"].attributes == {"plan": {"tier": "pro", "seats": 5}}
    assert members["pia@example.org"].language == "fr"


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        (
            "members-mixed-encodings.csv",
            "members",
            r"members-mixed-encodings\.csv, line 4: not UTF-8 text: byte 0xe9 at column 27, "
            r"while line 3 is UTF-8: the file mixes encodings",
        ),
        (
            "members-no-email-column.csv",
            "members",
            r"members-no-email-column\.csv, line 1: bad CSV header: the required column email "
            r"is missing \(found: external_id, first_name, last_name\)",
        ),
        (
            "activity-unknown-column.csv",
            "activity",
            r"activity-unknown-column\.csv, line 1: bad CSV header: unknown columns channel",
        ),
        ("empty.csv", "members", r"empty\.csv: the file is empty; .*\(at least email\)"),
        ("empty.csv", "answers", r"the file is empty; .*\(at least member, question, value\)"),
        ("empty.csv", "activity", r"the file is empty; .*\(at least member, occurred_at, type\)"),
    ],
)
def test_bad_example_files_refused_whole(
    session, tmp_path, real_questionnaire, name, kind, message
):
    import_members(session, EXAMPLES / "members.csv")
    before = snapshot(session)
    rejects_path = tmp_path / "rejects.csv"

    with pytest.raises(ImportFileError, match=message) as caught:
        _import(session, kind, EXAMPLES / "bad" / name, real_questionnaire, rejects_path)

    assert caught.value.path == EXAMPLES / "bad" / name
    assert snapshot(session) == before
    assert not rejects_path.exists()


def test_french_spreadsheet_exports_import_without_loss(session, real_questionnaire):
    """Semicolon-separated Windows-1252 files, as a French spreadsheet saves CSV."""
    members = import_members(session, EXAMPLES / "members-fr.csv")
    answers = import_answers(session, EXAMPLES / "answers-fr.csv", real_questionnaire)

    assert _counts(members) == (3, 3, 0, 0, 0) and _counts(answers) == (4, 4, 0, 0, 0)
    assert (members.layout.encoding, members.layout.delimiter) == ("cp1252", ";")
    people = {m.external_id: m for m in session.scalars(select(Member))}
    assert [(m.first_name, m.last_name) for m in people.values()] == [
        ("Hélène", "Lefèvre"),
        ("François", "Noël"),
        ("Anaïs", "Bégué"),
    ]
    assert [m.attributes["company"] for m in people.values()] == [
        "Société d’Études Économiques",
        "Cœur & Co; Lyon",
        "Œuvres à 5 €",
    ]
    said = {(a.member_id, a.question_key): a.value for a in session.scalars(select(Answer))}
    assert said[(people["m-1101"].id, "expectations")] == (
        "Rencontrer d’autres responsables ; échanger sur l’animation « en présentiel »"
    )
    assert said[(people["m-1102"].id, "expectations")] == (
        "Être mieux outillé pour mesurer l’impact (coût en €)"
    )
    assert said[(people["m-1103"].id, "goals")] == ["run_events", "create_content"]
    again = import_members(session, EXAMPLES / "members-fr.csv")
    assert _counts(again) == (3, 0, 0, 3, 0)
