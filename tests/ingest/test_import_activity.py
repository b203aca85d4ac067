import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from nurture.ingest import import_activity, import_members
from nurture.storage.models import ActivityEvent
from tests.ingest.ingest_helpers import read_rejects, write


@pytest.fixture(autouse=True)
def members(session, tmp_path):
    text = "external_id,email\nm1,ada@example.org\nm2,bob@example.org\n"
    import_members(session, write(tmp_path / "members.csv", text))


def _count(session):
    return session.scalar(select(func.count()).select_from(ActivityEvent))


CSV = (
    "member,type,occurred_at,content_key,properties,idempotency_key\n"
    'm1,post,2025-05-01T10:00:00+02:00,,"{""channel"": ""general""}",\n'  # 2
    "m1,content_view,2025-05-02T10:00:00Z,grow-b2b,,\n"  # 3
    "m2,email_open,2025-05-03T10:00:00Z,,{},open-42\n"  # 4
    'ada@example.org,post,2025-05-01T08:00:00Z,,"{""channel"":""general""}",\n'  # 5: same as 2
    "m2,dance,2025-05-03T10:00:00Z,,,\n"  # 6 type
    "m2,comment,2025-05-03T10:00:00,,,\n"  # 7 occurred_at without offset
    "m2,comment,2025-05-03T10:00:00Z,,{not json},\n"  # 8 properties
    'm2,comment,2025-05-03T10:00:00Z,,"[1, 2]",\n'  # 9 properties not an object
    "ghost,comment,2025-05-03T10:00:00Z,,,\n"  # 10 member
    "m2,comment,2025-05-03T10:00:00Z,,\n"  # 11 column count
    "m2,email_click,2025-05-04T10:00:00Z,grow-b2b,{},open-42\n"  # 12 key already used
)


def test_activity_good_bad_and_duplicates(session, tmp_path):
    rejects_path = tmp_path / "rejects.csv"

    summary = import_activity(session, write(tmp_path / "activity.csv", CSV), rejects_path)

    assert (summary.read, summary.stored, summary.unchanged, summary.refused) == (11, 3, 2, 6)
    assert [(r["line"], r["field"]) for r in read_rejects(rejects_path)] == [
        ("6", "type"),
        ("7", "occurred_at"),
        ("8", "properties"),
        ("9", "properties"),
        ("10", "member"),
        ("11", ""),
    ]
    events = {e.type: e for e in session.scalars(select(ActivityEvent))}
    assert events["post"].properties == {"channel": "general"}
    assert events["post"].occurred_at == dt.datetime(2025, 5, 1, 8, tzinfo=dt.UTC)
    assert len(events["post"].idempotency_key) == 64
    assert events["content_view"].content_key == "grow-b2b"
    assert events["email_open"].idempotency_key == "open-42"


def test_activity_reimport_adds_nothing(session, tmp_path):
    path = write(tmp_path / "activity.csv", CSV)
    import_activity(session, path)

    again = import_activity(session, path, batch_size=2)

    assert (again.stored, again.unchanged, again.refused) == (0, 5, 6)
    assert _count(session) == 3


def test_activity_jsonl(session, tmp_path):
    lines = [
        {
            "member": "m1",
            "type": "event_attended",
            "occurred_at": "2025-05-01T10:00:00+02:00",
            "content_key": "meetup-paris",
            "properties": {"seats": 2},
        },
        {
            "member": "m1",
            "type": "comment",
            "occurred_at": "2025-05-01T10:00:00Z",
            "properties": "not an object",
        },
        {"member": "m1", "type": "comment", "occurred_at": "2025-05-01T10:00:00Z", "colour": 1},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    rejects_path = tmp_path / "rejects.csv"

    summary = import_activity(session, write(tmp_path / "a.jsonl", text), rejects_path)

    assert (summary.stored, summary.refused) == (1, 2)
    assert [(r["line"], r["field"]) for r in read_rejects(rejects_path)] == [
        ("2", "properties"),
        ("3", "colour"),
    ]
    event = session.scalars(select(ActivityEvent)).one()
    assert event.properties == {"seats": 2} and event.content_key == "meetup-paris"
