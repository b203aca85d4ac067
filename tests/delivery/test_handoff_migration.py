"""Migration 0005_delivery_handoff on SQLite and PostgreSQL: a claim already out counts as
handed over (never re-queued blindly), the head matches the models, the downgrade runs."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect, select, text

from nurture.delivery import RecoverySummary, recover_stale_messages
from nurture.storage import create_database_engine, migrate_database, open_session
from nurture.storage.database import MIGRATIONS_DIR
from nurture.storage.models import Base, Message, MessageStatus
from tests.conftest import POSTGRES_URL, _with_own_schema

CLAIMED = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
DUE = dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not POSTGRES_URL, reason="NURTURE_TEST_POSTGRES_URL not set"),
            ],
        ),
    ]
)
def blank_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """An engine on an empty database (a schema of its own on PostgreSQL), not migrated."""
    if request.param == "sqlite":
        engine = create_database_engine(f"sqlite:///{tmp_path / 'nurture.db'}")
        yield engine
        engine.dispose()
        return
    assert POSTGRES_URL is not None
    schema = f"nurture_migration_{secrets.token_hex(4)}"
    admin = create_database_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    engine = create_database_engine(_with_own_schema(POSTGRES_URL, schema))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _seed_at_0004(engine: Engine) -> dict[str, int]:
    """One message per status of interest, written as 0004's schema knows them."""
    tables = MetaData()
    tables.reflect(engine)
    members, journeys = tables.tables["members"], tables.tables["journeys"]
    enrollments, messages = tables.tables["enrollments"], tables.tables["messages"]
    ids = {}
    with engine.begin() as connection:
        journey_id = connection.execute(
            journeys.insert().returning(journeys.c.id),
            {
                "key": "welcome",
                "version": 1,
                "definition_hash": "h",
                "definition": {},
                "source_path": "welcome.yaml",
                "created_at": DUE,
            },
        ).scalar_one()
        for n, (status, claimed_at) in enumerate(
            (("sending", CLAIMED), ("sending", None), ("unknown", CLAIMED), ("queued", None))
        ):
            member_id = connection.execute(
                members.insert().returning(members.c.id),
                {
                    "email": f"m{n}@example.org",
                    "first_name": "M",
                    "last_name": "",
                    "language": "en",
                    "time_zone": "UTC",
                    "joined_at": DUE,
                    "consent_status": "granted",
                    "attributes": {},
                    "created_at": DUE,
                    "updated_at": DUE,
                },
            ).scalar_one()
            enrollment_id = connection.execute(
                enrollments.insert().returning(enrollments.c.id),
                {
                    "journey_id": journey_id,
                    "journey_key": "welcome",
                    "member_id": member_id,
                    "occurrence": 1,
                    "state": "active",
                    "enrolled_at": DUE,
                },
            ).scalar_one()
            ids[f"{status}-{'claimed' if claimed_at else 'unclaimed'}"] = connection.execute(
                messages.insert().returning(messages.c.id),
                {
                    "enrollment_id": enrollment_id,
                    "step_id": "hello",
                    "member_id": member_id,
                    "journey_key": "welcome",
                    "template": "welcome",
                    "subject": "Hi",
                    "context": {},
                    "status": status,
                    "scheduled_at": DUE,
                    "created_at": DUE,
                    "attempts": 0,
                    "claimed_at": claimed_at,
                },
            ).scalar_one()
    return ids


def test_0005_counts_claims_already_out_as_handed_over(blank_engine: Engine) -> None:
    migrate_database(blank_engine, "0004_delivery")
    ids = _seed_at_0004(blank_engine)
    migrate_database(blank_engine, "0005_delivery_handoff")

    with open_session(blank_engine) as session:
        handed = dict(session.execute(select(Message.id, Message.handed_over_at)).tuples().all())
        assert handed == {
            ids["sending-claimed"]: CLAIMED,
            ids["sending-unclaimed"]: DUE,  # no claim time: the due time stands in
            ids["unknown-claimed"]: CLAIMED,
            ids["queued-unclaimed"]: None,
        }
        # So recovery never re-queues a message an older worker may have sent.
        later = CLAIMED + dt.timedelta(days=1)
        summary = recover_stale_messages(session, later, dt.timedelta(minutes=30))
        session.commit()
        assert summary == RecoverySummary(unknown=2)
        statuses = dict(session.execute(select(Message.id, Message.status)).tuples().all())
        assert statuses[ids["queued-unclaimed"]] is MessageStatus.QUEUED
        assert {statuses[i] for k, i in ids.items() if k != "queued-unclaimed"} == {
            MessageStatus.UNKNOWN
        }

    migrate_database(blank_engine)  # later migrations apply on top, and the head matches
    with blank_engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with blank_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004_delivery")
    columns = {column["name"] for column in inspect(blank_engine).get_columns("messages")}
    assert "handed_over_at" not in columns
    assert "claimed_at" in columns
    migrate_database(blank_engine)
