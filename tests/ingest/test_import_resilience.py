"""An import streams in constant memory, and an interrupted one leaves whole batches that a
re-run completes to the state of a clean import."""

import tracemalloc

import pytest
from sqlalchemy import delete, func, select

from nurture.ingest import activity, answers, import_activity, import_answers, import_members
from nurture.ingest import members as members_module
from nurture.storage.models import ActivityEvent, Answer, Member
from tests.ingest.ingest_helpers import read_rejects, snapshot, write

SEED = "external_id,email\nm1,ada@example.org\nm2,bob@example.org\nm3,cy@example.org\n"
SEED += "m4,dee@example.org\n"

# With batch_size=3, records 7-9 (lines 8-10) are the third batch: the one interrupted.
FILES = {
    "members": (
        "external_id,email,first_name,joined_at,plan\n"
        "m1,ada@example.org,Ada,2025-01-01,\n"
        "m2,bob@example.org,Bob,2025-01-02,\n"
        "x1,not-an-address,X,2025-01-03,\n"  # refused
        "m3,cy@example.org,Cy,2025-01-04,\n"
        "m4,dee@example.org,Dee,2025-01-05,\n"
        "m1,ada@example.org,Ada,2025-01-01,pro\n"  # updates a member of batch 1
        "m5,eve@example.org,Eve,2025-01-06,\n"  # batch 3
        "m2,bob@example.org,Bobby,2025-01-02,\n"  # an update the interruption undoes
        "m6,fay@example.org,Fay,2025-01-07,\n"
        "m7,gus@example.org,Gus,2025-01-08,\n"
        "x2,,Nobody,2025-01-09,\n"  # refused
        "m5,eve@example.org,Eve,2025-01-06,gold\n"
        "m8,hal@example.org,Hal,2025-01-10,\n"
    ),
    "answers": (
        "member,question,value,answered_at\n"
        "m1,role,founder,2025-01-01T10:00:00Z\n"
        "m1,experience,3,2025-01-01T10:00:00Z\n"
        "m9,role,founder,2025-01-01T10:00:00Z\n"  # refused: no such member
        "m2,role,marketer,2025-01-01T10:00:00Z\n"
        "m2,goals,grow_members|run_events,2025-01-01T10:00:00Z\n"
        "m1,experience,4,2025-02-01T10:00:00Z\n"  # a newer answer
        "m3,role,developer_advocate,2025-01-01T10:00:00Z\n"  # batch 3
        "m2,role,founder,2025-02-01T10:00:00Z\n"
        "m3,experience,9,2025-01-01T10:00:00Z\n"  # refused
        "m4,role,internal_comms,2025-01-01T10:00:00Z\n"
        "m4,formats,webinar|article,2025-01-01T10:00:00Z\n"
        "m3,goals,run_events,2025-01-01T10:00:00Z\n"
        "m4,experience,5,2025-01-01T10:00:00Z\n"
    ),
    "activity": (
        "member,type,occurred_at,content_key,properties,idempotency_key\n"
        "m1,post,2025-01-01T10:00:00Z,,,\n"
        "m1,content_view,2025-01-01T10:05:00Z,grow-b2b-community-first-100,,\n"
        "m1,dance,2025-01-01T10:06:00Z,,,\n"  # refused
        'm2,comment,2025-01-01T11:00:00Z,,"{""channel"": ""general""}",\n'
        "m2,email_open,2025-01-02T08:00:00Z,,,open-1\n"
        "m1,post,2025-01-01T10:00:00Z,,,\n"  # the event of line 2 again
        "m3,post,2025-01-03T09:00:00Z,,,\n"  # batch 3
        "m2,email_open,2025-01-02T08:00:00Z,,,open-1\n"  # the key of line 6 again
        "m3,email_click,2025-01-03T09:30:00Z,event-june-meetup-berlin,,click-1\n"
        "m9,post,2025-01-03T10:00:00Z,,,\n"  # refused: no such member
        "m3,comment,2025-01-03T10:00:00Z,,,\n"
        "m3,post,2025-01-03T09:00:00Z,,,\n"  # the event of line 8 again
        "m1,event_attended,2025-01-04T18:00:00Z,event-june-meetup-berlin,,\n"
    ),
}
APPLY = {
    "members": (members_module, "_apply_members", Member),
    "answers": (answers, "_apply_answers", Answer),
    "activity": (activity, "_apply_activity", ActivityEvent),
}


def _import(kind, session, path, questionnaire, rejects_path=None, batch_size=3):
    if kind == "members":
        return import_members(session, path, rejects_path, batch_size=batch_size)
    if kind == "answers":
        return import_answers(session, path, questionnaire, rejects_path, batch_size=batch_size)
    return import_activity(session, path, rejects_path, batch_size=batch_size)


def _wipe(session, model):
    session.execute(delete(model))
    session.commit()


@pytest.mark.parametrize("kind", ["members", "answers", "activity"])
def test_an_interrupted_import_keeps_whole_batches_and_a_rerun_finishes_the_job(
    session, tmp_path, monkeypatch, questionnaire, kind
):
    if kind != "members":
        import_members(session, write(tmp_path / "seed.csv", SEED))
    text = FILES[kind]
    path = write(tmp_path / f"{kind}.csv", text)
    first_two_batches = write(tmp_path / "two.csv", "".join(text.splitlines(True)[:7]))
    module, name, model = APPLY[kind]
    apply_batch = getattr(module, name)
    batches = []

    def apply_then_interrupt(batch_session, rows, **options):
        batches.append([row.line for row in rows])
        outcomes = apply_batch(batch_session, rows, **options)
        if len(batches) == 3:
            batch_session.flush()  # the third batch is in the database's transaction...
            raise KeyboardInterrupt  # ...when Ctrl-C arrives
        return outcomes

    rejects_path = tmp_path / "rejects.csv"
    with monkeypatch.context() as patch:
        patch.setattr(module, name, apply_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            _import(kind, session, path, questionnaire, rejects_path)
    assert batches[2][0] == 8  # batches count records, refused ones included
    interrupted, interrupted_rejects = snapshot(session), read_rejects(rejects_path)

    rerun = _import(kind, session, path, questionnaire, rejects_path)
    finished, rerun_rejects = snapshot(session), read_rejects(rejects_path)

    _wipe(session, model)
    two = _import(kind, session, first_two_batches, questionnaire, tmp_path / "two.rejects.csv")
    assert interrupted == snapshot(session)  # the first two batches, whole; none of the third
    assert interrupted_rejects == read_rejects(tmp_path / "two.rejects.csv")
    _wipe(session, model)
    clean = _import(kind, session, path, questionnaire, tmp_path / "clean.rejects.csv")
    assert finished == snapshot(session)  # nothing missing, nothing twice
    assert rerun_rejects == read_rejects(tmp_path / "clean.rejects.csv")
    assert (rerun.read, rerun.refused) == (clean.read, clean.refused) == (13, 2)
    assert rerun.stored == clean.stored - two.stored
    assert rerun.read == rerun.stored + rerun.updated + rerun.unchanged + rerun.refused


def _activity_csv(path, n):
    """``n`` events of 50 members, one in a hundred refused (an unknown type), new to each file."""
    with path.open("w", encoding="utf-8") as out:
        out.write("member,type,occurred_at,content_key,properties\n")
        for i in range(n):
            kind = "dance" if i % 100 == 99 else ("post", "comment", "content_view")[i % 3]
            day, second = divmod(i, 86_400)
            stamp = f"2025-01-{1 + day % 28:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:"
            properties = f'"{{""file"": ""{path.stem}"", ""n"": {i}}}"'
            out.write(f"m{i % 50},{kind},{stamp}{second % 60:02d}Z,,{properties}\n")
    return path


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # memory is the library's
def test_memory_does_not_grow_with_the_file(session, tmp_path):
    people = "".join(f"m{i},user{i}@example.org\n" for i in range(50))
    import_members(session, write(tmp_path / "m.csv", "external_id,email\n" + people))
    import_activity(session, _activity_csv(tmp_path / "warm.csv", 600), batch_size=500)

    def peak(n):
        path = _activity_csv(tmp_path / f"a{n}.csv", n)
        tracemalloc.start()
        try:
            summary = import_activity(session, path, tmp_path / f"r{n}.csv", batch_size=500)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (summary.read, summary.stored, summary.refused) == (n, n - n // 100, n // 100)
        return peak

    small, large = peak(5_000), peak(50_000)

    assert large < 2 * small, f"peak {large} bytes for 50 000 events, {small} for 5 000"


def test_a_failure_validating_a_batch_keeps_the_batches_before_it_and_their_rejects(
    session, tmp_path, monkeypatch
):
    import_members(session, write(tmp_path / "seed.csv", SEED))
    path = write(tmp_path / "activity.csv", "".join(FILES["activity"].splitlines(True)[:7]))
    parse = activity.parse_activities
    calls = []

    def parse_then_fail(records, now=None):
        calls.append(len(records))
        if len(calls) == 2:
            raise RuntimeError("validating the second batch failed")
        return parse(records, now)

    monkeypatch.setattr(activity, "parse_activities", parse_then_fail)
    rejects_path = tmp_path / "rejects.csv"
    with pytest.raises(RuntimeError, match="second batch"):
        import_activity(session, path, rejects_path, batch_size=3)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ActivityEvent)) == 2  # lines 2, 3
    assert [row["line"] for row in read_rejects(rejects_path)] == ["4"]  # the unknown type


def test_an_import_reads_one_batch_ahead_of_the_one_it_stores_and_no_further(
    session, tmp_path, monkeypatch
):
    import_members(session, write(tmp_path / "seed.csv", SEED))
    path = write(tmp_path / "activity.csv", FILES["activity"])  # 13 records: 5 batches of 3
    parse, apply_batch = activity.parse_activities, activity._apply_activity
    parsed, stored = [], []

    def counted_parse(records, now=None):
        parsed.append(len(records))
        return parse(records, now)

    def apply_then_fail(batch_session, rows):
        stored.append(len(rows))
        if len(stored) == 2:
            raise KeyboardInterrupt
        return apply_batch(batch_session, rows)

    monkeypatch.setattr(activity, "parse_activities", counted_parse)
    monkeypatch.setattr(activity, "_apply_activity", apply_then_fail)
    with pytest.raises(KeyboardInterrupt):
        import_activity(session, path, tmp_path / "rejects.csv", batch_size=3)

    assert len(stored) == 2
    assert len(parsed) <= 3  # the two batches stored and, at most, the one after them
