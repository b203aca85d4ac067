"""Bulk writes (executemany on SQLite, COPY on PostgreSQL) store what the ORM would store, skip
or merge duplicates in the database, and a row the database refuses refuses only its record."""

import datetime as dt

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from nurture.ingest import activity, bulk, import_activity, import_members
from nurture.ingest.bulk import inserted_rows, write_columns, write_rows
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    Enrollment,
    EnrollmentState,
    ExitReason,
    Journey,
    Member,
)
from tests.ingest.ingest_helpers import write

PARIS = dt.timezone(dt.timedelta(hours=2))
MOMENTS = [
    dt.datetime(2026, 6, 11, 19, 0, tzinfo=PARIS),
    dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 29, 1, 30, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=-7))),
]
PROPERTIES = [{}, {"title": "Zoé’s “notes” 😀", "n": 3, "x": 2.5}, {"tags": ["a", {"b": None}]}]


@pytest.fixture
def member_id(session):
    member = Member(email="ada@example.org", joined_at=MOMENTS[0])
    session.add(member)
    session.commit()
    return member.id


@pytest.fixture
def journey(session):
    welcome = Journey(
        key="welcome", version=1, definition_hash="h", definition={}, source_path="welcome.yaml"
    )
    session.add(welcome)
    session.flush()
    return welcome


ENROLLMENT_COLUMNS = (
    "journey_id",
    "journey_key",
    "member_id",
    "occurrence",
    "state",
    "enrolled_at",
    "context",
)
"""The columns of an enrollment the ``inserted_rows`` tests write."""


def test_bulk_rows_read_back_as_the_orm_writes_them(session, member_id):
    columns = ("member_id", "type", "occurred_at", "content_key", "properties", "idempotency_key")
    bulk = [
        (member_id, "post", moment, None, properties, f"bulk-{index}")
        for index, (moment, properties) in enumerate(zip(MOMENTS, PROPERTIES, strict=True))
    ]
    written = write_rows(
        session, ActivityEvent.__table__, columns, bulk, conflict=("idempotency_key",)
    )
    for index, (moment, properties) in enumerate(zip(MOMENTS, PROPERTIES, strict=True)):
        session.add(
            ActivityEvent(
                member_id=member_id,
                type="post",
                occurred_at=moment,
                properties=properties,
                idempotency_key=f"orm-{index}",
            )
        )
    session.commit()
    session.expire_all()

    assert written == 3
    stored = {e.idempotency_key: e for e in session.scalars(select(ActivityEvent))}
    for index, (moment, properties) in enumerate(zip(MOMENTS, PROPERTIES, strict=True)):
        bulk_event, orm_event = stored[f"bulk-{index}"], stored[f"orm-{index}"]
        assert bulk_event.occurred_at == orm_event.occurred_at == moment
        assert bulk_event.properties == orm_event.properties == properties
    raw = session.execute(
        text("SELECT idempotency_key, occurred_at FROM activity_events ORDER BY id")
    ).all()
    by_key = dict(raw)
    for index in range(3):  # the same stored form: comparisons and indexes see one format
        assert by_key[f"bulk-{index}"] == by_key[f"orm-{index}"]
    # Between bulk and ORM rows, ordering by time in SQL is the time order.
    ordered = session.scalars(
        select(ActivityEvent.idempotency_key).order_by(ActivityEvent.occurred_at)
    ).all()
    assert ordered[:2] == ["bulk-1", "orm-1"] or ordered[:2] == ["orm-1", "bulk-1"]


def test_conflicts_are_skipped_or_merged_by_the_database(session, member_id):
    columns = ("member_id", "question_key", "value", "answered_at")
    first = [(member_id, "role", "founder", MOMENTS[1]), (member_id, "goals", ["a"], MOMENTS[1])]
    again = [(member_id, "role", "marketer", MOMENTS[0])]

    assert write_rows(session, Answer.__table__, columns, first, conflict=columns[:2]) == 2
    assert write_rows(session, Answer.__table__, columns, again, conflict=columns[:2]) == 0
    merged = write_rows(
        session, Answer.__table__, columns, again, conflict=columns[:2], update=columns[2:]
    )
    session.commit()

    assert merged == 1
    answers = {a.question_key: a for a in session.scalars(select(Answer))}
    assert answers["role"].value == "marketer" and answers["role"].answered_at == MOMENTS[0]
    assert answers["goals"].value == ["a"]


def test_without_a_conflict_target_a_conflicting_row_fails_the_batch(session, member_id):
    columns = ("member_id", "question_key", "value", "answered_at")
    row = (member_id, "role", "founder", MOMENTS[1])
    assert write_rows(session, Answer.__table__, columns, [row], conflict=()) == 1
    session.commit()

    with pytest.raises(IntegrityError):
        write_rows(session, Answer.__table__, columns, [row], conflict=())
    session.rollback()

    assert session.scalars(select(Answer.value)).all() == ["founder"]


def test_a_batch_partly_stored_adds_only_its_new_rows_and_keeps_the_transactions_rows(
    session, member_id
):
    # On PostgreSQL the first batch is copied straight into the table; the second conflicts,
    # so its copy is rolled back to its savepoint (the first batch stays) and goes through
    # the staging table, as does the third, from a session that already met a conflict.
    columns = ("member_id", "type", "occurred_at", "content_key", "properties", "idempotency_key")

    def event(key: str) -> tuple[object, ...]:
        return (member_id, "post", MOMENTS[0], None, {}, key)

    table = ActivityEvent.__table__
    conflict = ("idempotency_key",)
    assert write_rows(session, table, columns, [event("a"), event("b")], conflict=conflict) == 2
    assert write_rows(session, table, columns, [event("b"), event("c")], conflict=conflict) == 1
    assert (
        write_columns(
            session,
            table,
            columns,
            [[member_id], ["post"], [MOMENTS[1]], [None], [{}], ["d"]],
            conflict=conflict,
        )
        == 1
    )
    session.commit()

    keys = session.scalars(select(ActivityEvent.idempotency_key).order_by(ActivityEvent.id))
    assert keys.all() == ["a", "b", "c", "d"]


def test_a_row_the_database_refuses_refuses_only_its_record(session, tmp_path, monkeypatch):
    import_members(session, write(tmp_path / "m.csv", "external_id,email\nm1,a@example.org\n"))
    real = activity.resolve_member_refs

    def gone(batch_session, refs):  # m2 resolves to a member erased meanwhile
        found = real(batch_session, refs)
        return {**found, "m2": 999_999} if "m2" in refs else found

    monkeypatch.setattr(activity, "resolve_member_refs", gone)
    rows = "".join(
        f"{member},post,2026-01-05T10:0{index}:00Z\n"
        for index, member in enumerate(("m1", "m2", "m1", "m1"))
    )

    summary = import_activity(
        session, write(tmp_path / "a.csv", "member,type,occurred_at\n" + rows)
    )

    assert (summary.stored, summary.refused) == (3, 1)
    assert summary.problems[0].line == 3
    assert summary.problems[0].message.startswith("the database refused the record")


def test_inserted_rows_store_what_the_orm_stores_and_return_only_the_rows_written(
    session, member_id
):
    journey = Journey(
        key="welcome", version=1, definition_hash="h", definition={}, source_path="welcome.yaml"
    )
    other = Member(email="grace@example.org", joined_at=MOMENTS[0])
    session.add_all([journey, other])
    session.flush()
    columns = ("journey_id", "journey_key", "member_id", "occurrence", "state", "next_action_at")
    columns += ("enrolled_at", "context", "exit_reason")
    context = {"event": {"title": "Zoé’s “notes” 😀", "at": None}, "n": [1, 2.5]}

    def row(member: int, occurrence: int) -> tuple[object, ...]:
        state, reason = EnrollmentState.EXITED, ExitReason.HOLDOUT
        return (journey.id, "welcome", member, occurrence, state, None, MOMENTS[0], context, reason)

    session.add(
        Enrollment(
            journey_id=journey.id,
            journey_key="orm",
            member_id=member_id,
            occurrence=1,
            state=EnrollmentState.EXITED,
            enrolled_at=MOMENTS[0],
            context=context,
            exit_reason=ExitReason.HOLDOUT,
        )
    )
    table = Enrollment.__table__
    returning = ("member_id", "occurrence")
    first = inserted_rows(session, table, columns, [row(other.id, 1), row(member_id, 1)], returning)
    # One row already written (by this call or a concurrent one) is skipped; the new one is not.
    again = inserted_rows(
        session, table, columns, [row(member_id, 1), row(member_id, 2)], returning
    )
    session.commit()

    assert sorted(first) == sorted([(other.id, 1), (member_id, 1)])
    assert again == [(member_id, 2)]
    stored = session.execute(
        text(
            "SELECT journey_key, member_id, occurrence, state, enrolled_at, CAST(context AS TEXT), "
            "exit_reason "
            "FROM enrollments ORDER BY id"
        )
    ).all()
    # The ids follow the rows' order; each value is stored as the ORM stores it.
    assert [(key, member, n) for key, member, n, *_ in stored] == [
        ("orm", member_id, 1),
        ("welcome", other.id, 1),
        ("welcome", member_id, 1),
        ("welcome", member_id, 2),
    ]
    assert {tuple(values[3:]) for values in stored} == {tuple(stored[0][3:])}


def test_inserted_rows_written_straight_until_a_conflict_then_staged(
    session, member_id, journey, monkeypatch
):
    monkeypatch.setattr(bulk, "_STRAIGHT_VARIABLES", 1)  # SQLite: one statement per row
    columns = ENROLLMENT_COLUMNS
    table = Enrollment.__table__

    def row(occurrence: int) -> tuple[object, ...]:
        return (
            journey.id,
            "welcome",
            member_id,
            occurrence,
            EnrollmentState.ACTIVE,
            MOMENTS[0],
            {},
        )

    returning = ("member_id", "occurrence")
    assert inserted_rows(session, table, columns, [row(2)], returning) == [(member_id, 2)]
    # The first row goes straight in (SQLite) or the whole batch is staged (PostgreSQL): the
    # row already stored is skipped either way, the others written once, in their order.
    written = inserted_rows(session, table, columns, [row(1), row(2), row(3)], returning)
    session.commit()

    assert sorted(written) == [(member_id, 1), (member_id, 3)]
    stored = session.execute(text("SELECT occurrence FROM enrollments ORDER BY id")).scalars()
    assert list(stored) == [2, 1, 3]


def test_inserted_rows_leave_nothing_staged_for_the_next_call_after_a_refused_batch(
    session, member_id, journey
):
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("PostgreSQL aborts the transaction: nothing runs after a refused batch")
    columns = ENROLLMENT_COLUMNS
    table = Enrollment.__table__

    def row(key: str, member: int) -> tuple[object, ...]:
        return (journey.id, key, member, 1, EnrollmentState.ACTIVE, MOMENTS[0], {})

    with pytest.raises(IntegrityError):  # a member that does not exist: the insert fails
        inserted_rows(session, table, columns, [row("left", member_id + 99)], ("id",))
    written = inserted_rows(session, table, columns, [row("next", member_id)], ("journey_key",))
    session.commit()

    assert written == [("next",)]
    assert session.scalars(select(Enrollment.journey_key)).all() == ["next"]


def test_rows_copied_as_text_read_back_as_the_orm_writes_them(session, member_id):
    keys = ["tab\there", "line\nbreak\\back\r\x0bslash", None]
    columns = ("member_id", "type", "occurred_at", "content_key", "properties", "idempotency_key")
    values = [
        [member_id] * 3,
        ["post"] * 3,
        MOMENTS,
        keys,
        PROPERTIES,
        [f"bulk-{index}" for index in range(3)],
    ]
    assert write_columns(session, ActivityEvent.__table__, columns, values, conflict=()) == 3
    for index, (moment, key, properties) in enumerate(zip(MOMENTS, keys, PROPERTIES, strict=True)):
        session.add(
            ActivityEvent(
                member_id=member_id,
                type="post",
                occurred_at=moment,
                content_key=key,
                properties=properties,
                idempotency_key=f"orm-{index}",
            )
        )
    session.commit()
    session.expire_all()

    stored = {e.idempotency_key: e for e in session.scalars(select(ActivityEvent))}
    for index in range(3):
        bulk_event, orm_event = stored[f"bulk-{index}"], stored[f"orm-{index}"]
        assert bulk_event.occurred_at == orm_event.occurred_at == MOMENTS[index]
        assert bulk_event.content_key == orm_event.content_key == keys[index]
        assert bulk_event.properties == orm_event.properties == PROPERTIES[index]


def test_copy_text_writes_plain_values_and_leaves_others_to_the_driver():
    from nurture.ingest.bulk import copy_text

    moment = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
    assert copy_text([[1, None], [0.1, float("-inf")], ["a\tb", "c\\"], [moment, moment]]) == (
        "1\t0.1\ta\\tb\t2026-05-01T09:00:00+00:00\n\\N\t-Infinity\tc\\\\\t2026-05-01T09:00:00+00:00\n"
    )
    assert copy_text([[None, None]]) == "\\N\n\\N\n"
    # Texts without a character to escape pass as they are; times that do not repeat each
    # converted, with their own offsets.
    later = dt.datetime(2026, 5, 1, 11, 30, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert copy_text([["k1", "k2"], [None, '{"a": 1}'], [moment, later]]) == (
        'k1\t\\N\t2026-05-01T09:00:00+00:00\nk2\t{"a": 1}\t2026-05-01T11:30:00.000005+02:00\n'
    )
    assert copy_text([[None, "x\ny"]]) == "\\N\nx\\ny\n"
    assert copy_text([[True, False]]) is None  # a bool is no int here
    assert copy_text([[1, 2.5]]) is None  # two types in a column
    # Dates (a birthday) as psycopg writes them; a date and a datetime are two types.
    assert copy_text([[dt.date(1990, 2, 28), None]]) == "1990-02-28\n\\N\n"
    assert copy_text([[dt.date(1990, 2, 28), moment]]) is None
    assert copy_text([[EnrollmentState.ACTIVE]]) is None  # an enum: the driver's dumper


def test_select_where_in_finds_rows_by_texts_and_by_integers(session):
    awkward = ["a,b", "{braces}", "NULL", " spaced ", 'q"uo\\te', "é😀"]
    members = [
        Member(email=f"m{index}@example.org", external_id=text, joined_at=MOMENTS[0])
        for index, text in enumerate(awkward)
    ]
    session.add_all(members)
    session.commit()
    table = Member.__table__
    found = bulk.select_where_in(session, table, ("external_id", "id"), "external_id", awkward)
    assert sorted(found) == sorted((member.external_id, member.id) for member in members)
    longer = [awkward[0] + "x" * 200]  # longer than the column: matches nothing, not a prefix
    assert bulk.select_where_in(session, table, ("id",), "external_id", longer) == []
    ids = [members[1].id, members[3].id, -5]
    found = bulk.select_where_in(session, table, ("id", "external_id"), "id", ids)
    assert sorted(found) == sorted([(members[1].id, "{braces}"), (members[3].id, " spaced ")])
