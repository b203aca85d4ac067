import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError

from nurture.embedding import HashingEmbedder, embed_texts_cached, start_embedding_cached
from nurture.storage import open_session
from nurture.storage.database import (
    among,
    array_text,
    compares_as_text,
    driver_rows,
    integer_rows,
    plain_rows,
)
from nurture.storage.models import (
    EmbeddingCacheEntry,
    Enrollment,
    Journey,
    Member,
    Message,
    MessageStatus,
)

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def _member(email: str = "ada@example.org", **fields: object) -> Member:
    return Member(email=email, first_name="Ada", joined_at=NOW, time_zone="Europe/Paris", **fields)


def test_datetimes_come_back_timezone_aware(session):
    session.add(_member())
    session.commit()
    session.expire_all()
    member = session.scalars(select(Member)).one()
    assert member.joined_at == NOW
    assert member.joined_at.tzinfo is not None


def test_naive_datetime_is_refused(session):
    session.add(Member(email="naive@example.org", joined_at=dt.datetime(2026, 1, 1)))
    with pytest.raises(Exception, match="naive datetime"):
        session.commit()


def test_one_message_per_enrollment_step(session):
    member = _member()
    journey = Journey(key="welcome", version=1, definition_hash="h", definition={}, source_path="x")
    session.add_all([member, journey])
    session.flush()
    enrollment = Enrollment(journey_id=journey.id, journey_key="welcome", member_id=member.id)
    session.add(enrollment)
    session.flush()

    def message() -> Message:
        return Message(
            enrollment_id=enrollment.id,
            step_id="hello",
            member_id=member.id,
            journey_key="welcome",
            template="t",
            subject="s",
            scheduled_at=NOW,
        )

    session.add(message())
    session.commit()
    assert session.scalars(select(Message)).one().status is MessageStatus.QUEUED
    session.add(message())
    with pytest.raises(IntegrityError):
        session.commit()


def test_embedding_cache_embeds_each_text_once(session):
    embedder = HashingEmbedder(16)
    first = embed_texts_cached(session, embedder, ["grow a community", "grow a community", "x"])
    session.commit()
    assert first.shape == (3, 16)
    assert session.query(EmbeddingCacheEntry).count() == 2
    again = embed_texts_cached(session, embedder, ["x", "grow a community"])
    assert session.query(EmbeddingCacheEntry).count() == 2
    np.testing.assert_allclose(again[1], first[0], rtol=1e-6)


def test_texts_the_cache_misses_are_embedded_in_the_background_and_cached_when_waited_for(
    session,
):
    class ThreadNoting(HashingEmbedder):
        def embed(self, texts):
            self.calls.append((threading.current_thread().name, list(texts)))
            return super().embed(texts)

    embedder = ThreadNoting(16)
    embedder.calls = []
    cached = embed_texts_cached(session, embedder, ["x"])
    embedder.calls.clear()
    with ThreadPoolExecutor(1, thread_name_prefix="background") as background:
        started = start_embedding_cached(session, embedder, ["x", "grow", "grow"], background)
        vectors = started.result()
    assert [(name.startswith("background"), texts) for name, texts in embedder.calls] == [
        (True, ["grow"])  # the one text the cache missed, once
    ]
    np.testing.assert_array_equal(
        vectors, embed_texts_cached(session, HashingEmbedder(16), ["x", "grow", "grow"])
    )
    np.testing.assert_array_equal(vectors[0], cached[0])
    assert session.query(EmbeddingCacheEntry).count() == 2


def test_vectors_being_embedded_are_not_cached_before_they_are_waited_for(session):
    release = threading.Event()

    class Waiting(HashingEmbedder):
        def embed(self, texts):
            release.wait(5)
            return super().embed(texts)

    with ThreadPoolExecutor(1) as background:
        started = start_embedding_cached(session, Waiting(16), ["grow"], background)
        assert session.query(EmbeddingCacheEntry).count() == 0
        release.set()
        assert started.result().shape == (1, 16)
    assert session.query(EmbeddingCacheEntry).count() == 1


def test_an_error_embedding_in_the_background_reaches_who_waits_and_caches_nothing(session):
    class Failing(HashingEmbedder):
        def embed(self, texts):
            raise RuntimeError("the model is gone")

    with ThreadPoolExecutor(1) as background:
        started = start_embedding_cached(session, Failing(16), ["grow"], background)
        with pytest.raises(RuntimeError, match="the model is gone"):
            started.result()
    assert session.query(EmbeddingCacheEntry).count() == 0


def test_embedding_cache_tolerates_a_concurrent_worker(session, engine):
    """Another worker caches the same text between this one's lookup and its insert."""

    class RacingEmbedder(HashingEmbedder):
        def embed(self, texts):
            vectors = super().embed(texts)
            with open_session(engine) as other:  # the other worker commits first
                embed_texts_cached(other, HashingEmbedder(16), texts)
                other.commit()
            return vectors

    vectors = embed_texts_cached(session, RacingEmbedder(16), ["grow a community"])
    session.commit()
    assert vectors.shape == (1, 16)
    assert session.query(EmbeddingCacheEntry).count() == 1


def _waits_for_a_lock(session, backends: list[int]) -> bool:
    """Whether the PostgreSQL backend in ``backends`` waits for a lock (SQLite: after 0.2 s)."""
    import time

    if session.get_bind().dialect.name != "postgresql":
        time.sleep(0.2)  # SQLite tells no one which connection waits for its write lock
        return True
    if not backends:
        return False
    query = text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
    waiting = session.execute(query, {"pid": backends[0]}).scalar() == "Lock"
    session.rollback()  # the activity a transaction reads is a snapshot taken once
    return waiting


def test_two_chunks_caching_the_same_new_texts_in_other_orders_do_not_deadlock(session, engine):
    """Another chunk stores two texts, one of which this chunk has stored but not committed.

    It waits for this chunk, which then stores the other text and commits. Rows stored in one
    order (by hash), neither chunk holds a row the other waits for while it waits itself; in
    the order given (PostgreSQL) the two would deadlock.
    """
    import time

    from nurture.embedding.cache import text_hash

    first, second = sorted(["grow a community", "run a meetup"], key=text_hash)
    embedder = HashingEmbedder(16)
    postgres = engine.dialect.name == "postgresql"
    embed_texts_cached(session, embedder, [first])  # this chunk holds ``first``, uncommitted
    backend: list[int] = []

    def other_chunk() -> None:
        with open_session(engine) as other:
            if postgres:
                backend.append(other.execute(text("SELECT pg_backend_pid()")).scalar_one())
            embed_texts_cached(other, embedder, [second, first])  # waits for this chunk
            other.commit()

    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(other_chunk)
        deadline = time.monotonic() + 10
        with open_session(engine) as watcher:
            while not _waits_for_a_lock(watcher, backend):
                assert time.monotonic() < deadline, "the other chunk never waited"
                assert not done.done(), done.exception()
                time.sleep(0.02)
        embed_texts_cached(session, embedder, [second])  # would wait for the other: a cycle
        session.commit()
        done.result(timeout=30)
    assert session.query(EmbeddingCacheEntry).count() == 2


def test_transient_database_errors_are_told_from_those_that_would_come_again():
    import sqlite3

    import psycopg.errors
    from sqlalchemy.exc import OperationalError

    from nurture.storage.database_errors import is_transient

    def wrapped(error: Exception, invalidated: bool = False) -> OperationalError:
        return OperationalError("SELECT 1", {}, error, connection_invalidated=invalidated)

    assert is_transient(wrapped(psycopg.errors.DeadlockDetected("deadlock detected")))
    assert is_transient(wrapped(psycopg.errors.SerializationFailure("could not serialize")))
    assert is_transient(wrapped(psycopg.OperationalError("server closed"), invalidated=True))
    assert not is_transient(wrapped(psycopg.errors.UndefinedTable("no table")))
    assert not is_transient(wrapped(sqlite3.OperationalError("database is locked")))
    assert not is_transient(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))
    assert not is_transient(ValueError("deadlock detected"))


def test_an_insert_ignoring_conflicts_tells_which_rows_it_wrote(session):
    from nurture.storage import inserted_ignoring_conflicts
    from nurture.storage.models import Suppression, table_of

    table = table_of(Suppression)
    first = [{"email_hash": "a" * 64, "reason": "manual"}]
    (kept,) = inserted_ignoring_conflicts(session, table, first, ("id", "email_hash"))
    rows = [
        {"email_hash": "b" * 64, "reason": "manual"},
        {"email_hash": "a" * 64, "reason": "bounced"},  # taken: skipped
        {"email_hash": "c" * 64, "reason": "manual"},
    ]
    written = inserted_ignoring_conflicts(session, table, rows, ("email_hash",), chunk_size=2)
    assert sorted(written) == [("b" * 64,), ("c" * 64,)]
    stored = dict(session.execute(select(Suppression.email_hash, Suppression.id)).tuples().all())
    assert stored["a" * 64] == kept[0] and len(stored) == 3


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["ada@example.org", "grace@example.org", "nobody@example.org"],
        ["ada@example.org", 'quote"and\\slash@example.org', "ünïcode@example.org"],
    ],
)
def test_among_texts_finds_the_rows_in_values(session, values):
    emails = ["ada@example.org", "grace@example.org", 'quote"and\\slash@example.org']
    emails.append("ünïcode@example.org")
    session.add_all(_member(email) for email in emails)
    session.commit()
    found = session.scalars(select(Member.email).where(among(session, Member.email, values)))
    assert sorted(found) == sorted(set(values) & set(emails))


AWKWARD_TEXTS = ["a,b", "{braces}", "NULL", " spaced ", "", 'q"uo\\te', "tab\there", "é😀"]
"""Texts an array's text must quote: separators, braces, the word NULL, spaces, escapes."""


def test_array_text_quotes_texts_and_joins_integers():
    assert array_text([3, -1, 20]) == "{3,-1,20}"
    assert array_text([]) == "{}"
    assert array_text(["a,b", 'q"x', "back\\slash", "NULL"]) == (
        '{"a,b","q\\"x","back\\\\slash","NULL"}'
    )


def test_text_columns_and_enums_stored_as_text_compare_as_text():
    import enum

    from sqlalchemy import DateTime, Enum, Integer, String, Text

    class Colour(enum.StrEnum):
        RED = "red"

    assert compares_as_text(String(20)) and compares_as_text(Text())
    assert compares_as_text(Enum(Colour, native_enum=False))
    assert not compares_as_text(Enum(Colour))  # a database enum type: not compared with TEXT
    assert not compares_as_text(Integer()) and not compares_as_text(DateTime())


def test_among_texts_on_a_status_column_finds_its_rows(session):
    session.add_all(
        [_member("ada@example.org"), _member("grace@example.org", consent_status="denied")]
    )
    session.commit()
    query = select(Member.email).where(among(session, Member.consent_status, ["denied", "x"]))
    assert list(session.scalars(query)) == ["grace@example.org"]


def test_among_texts_matches_awkward_texts_exactly(session):
    session.add_all(
        _member(f"m{index}@example.org", external_id=text)
        for index, text in enumerate(AWKWARD_TEXTS)
    )
    session.commit()
    for wanted in AWKWARD_TEXTS:
        query = select(Member.external_id).where(among(session, Member.external_id, [wanted]))
        assert list(session.scalars(query)) == [wanted]
    query = select(Member.external_id).where(among(session, Member.external_id, AWKWARD_TEXTS))
    assert sorted(session.scalars(query)) == sorted(AWKWARD_TEXTS)


def test_among_texts_longer_than_the_column_match_nothing(session):
    stored = "x" * 200  # the longest external id the column holds
    session.add(_member(external_id=stored))
    session.commit()
    query = select(Member.id).where(among(session, Member.external_id, [stored + "y"]))
    assert list(session.scalars(query)) == []  # not cut to the column's length, then equal


def test_among_texts_go_as_one_array_text_on_postgresql(session):
    session.add(_member())
    session.commit()
    bound: list[object] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        bound.extend(parameters.values() if isinstance(parameters, dict) else parameters)

    event.listen(session.get_bind(), "before_cursor_execute", record)
    try:
        for _ in range(7):  # psycopg prepares a statement run often (after five)
            query = select(Member.email).where(
                among(session, Member.email, ["ada@example.org", 'b"@example.org'])
            )
            assert list(session.scalars(query)) == ["ada@example.org"]
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", record)
    if session.get_bind().dialect.name == "postgresql":
        assert '{"ada@example.org","b\\"@example.org"}' in bound


def test_among_ids_finds_the_rows_in_values(session):
    session.add_all(_member(f"m{index}@example.org") for index in range(1200))
    session.commit()
    ids = sorted(session.scalars(select(Member.id)))
    wanted = [*ids[::3], max(ids) + 10]  # more ids than one statement's usual
    found = session.scalars(select(Member.id).where(among(session, Member.id, wanted)))
    assert sorted(found) == ids[::3]


def test_among_integers_go_as_one_array_text_on_postgresql(session):
    hours = [None, 0, 5, 23]
    session.add_all(
        _member(f"m{index}@example.org", best_hour=hour) for index, hour in enumerate(hours)
    )
    session.commit()
    ids = sorted(session.scalars(select(Member.id)))
    bound: list[object] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        bound.extend(parameters.values() if isinstance(parameters, dict) else parameters)

    event.listen(session.get_bind(), "before_cursor_execute", record)
    try:
        # Again and again: the driver prepares a statement run often (psycopg after five).
        for _ in range(7):
            found = session.scalars(select(Member.id).where(among(session, Member.id, [-1, *ids])))
            assert sorted(found) == ids
        query = select(Member.email).where(among(session, Member.best_hour, [23, 0, -4]))
        assert sorted(session.scalars(query)) == ["m1@example.org", "m3@example.org"]
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", record)
    if session.get_bind().dialect.name == "postgresql":
        assert "{-1," + ",".join(map(str, ids)) + "}" in bound
        assert "{23,0,-4}" in bound


def test_among_other_values_finds_the_rows_in_values(session):
    later = NOW + dt.timedelta(days=1)
    session.add_all([_member("ada@example.org"), _member("grace@example.org")])
    session.flush()
    session.scalars(
        select(Member).where(Member.email == "grace@example.org")
    ).one().joined_at = later
    session.commit()
    query = select(Member.email).where(among(session, Member.joined_at, [later, NOW]))
    assert sorted(session.scalars(query)) == ["ada@example.org", "grace@example.org"]
    query = select(Member.email).where(among(session, Member.joined_at, [later]))
    assert list(session.scalars(query)) == ["grace@example.org"]


def test_plain_rows_flush_pending_changes_and_give_typed_values(session):
    session.add(_member())  # pending: the query must see it, as the session's own would
    rows = plain_rows(session, select(Member.email, Member.joined_at)).all()
    assert [tuple(row) for row in rows] == [("ada@example.org", NOW)]
    assert rows[0].joined_at.tzinfo is not None  # the column's type is applied
    assert plain_rows(session, select(Member.id)).scalars().all() == [
        session.scalars(select(Member.id)).one()
    ]


def test_integer_rows_give_the_pending_rows_as_an_array_of_their_width(session):
    session.add(_member())  # pending: read as the session's own query would
    ids = integer_rows(session, select(Member.id, Member.id + 1), 2)
    member_id = session.scalars(select(Member.id)).one()
    assert ids.dtype == np.int64
    assert ids.tolist() == [[member_id, member_id + 1]]
    assert integer_rows(session, select(Member.id).where(Member.id < 0), 1).shape == (0, 1)


def test_driver_rows_give_the_pending_rows_and_convert_only_when_a_type_does(session):
    session.add(_member())  # pending: read as the session's own query would
    rows = driver_rows(session, select(Member.id, Member.email, Member.first_name))
    member_id = session.scalars(select(Member.id)).one()
    assert [tuple(row) for row in rows] == [(member_id, "ada@example.org", "Ada")]
    # A column whose type converts its values (a timezone-aware datetime) is converted.
    (row,) = driver_rows(session, select(Member.joined_at))
    assert row[0] == NOW
    assert row[0].tzinfo is not None
    assert list(driver_rows(session, select(Member.id).where(Member.id < 0))) == []


def _counted_members(session) -> float:
    from sqlalchemy import text

    return float(
        session.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('members')")
        ).scalar_one()
    )


def _add_members(session, count: int, start: int) -> None:
    from sqlalchemy import text

    session.add_all(_member(f"m{start + index}@example.org") for index in range(count))
    session.flush()
    session.execute(text("SELECT pg_stat_force_next_flush()"))  # counted once committed
    session.commit()


def test_statistics_are_refreshed_only_once_stale_when_asked(session):
    import time

    from nurture.storage import refresh_statistics
    from nurture.storage.database import rows_changed_since_analyze

    if session.get_bind().dialect.name != "postgresql":
        refresh_statistics(session, (Member,), stale_share=0.1)  # nothing to do elsewhere
        return
    _add_members(session, 10, 0)
    refresh_statistics(session, (Member,))  # always analysed: the ten rows counted
    session.commit()
    assert _counted_members(session) == 10
    assert rows_changed_since_analyze(session, "members") == (0, 10.0)

    _add_members(session, 1, 10)  # one row more: under 50 + 10% of the rows
    refresh_statistics(session, (Member,), stale_share=0.1)
    session.commit()
    assert _counted_members(session) == 10  # skipped: the statistics still say ten

    _add_members(session, 60, 11)
    deadline = time.monotonic() + 5
    while (rows_changed_since_analyze(session, "members")[0] or 0) < 61:
        assert time.monotonic() < deadline, "the server never counted the rows inserted"
        session.commit()  # a new snapshot of the statistics
        time.sleep(0.05)
    refresh_statistics(session, (Member,), stale_share=0.1)
    session.commit()
    assert _counted_members(session) == 71  # stale: analysed again
