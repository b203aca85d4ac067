"""Shared fixtures: a migrated database per test (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from nurture.storage import create_database_engine, migrate_database, open_session
from nurture.storage.models import Base

POSTGRES_URL = os.environ.get("NURTURE_TEST_POSTGRES_URL")

_DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture(scope="session")
def _postgres_engine() -> Iterator[Engine | None]:
    if not POSTGRES_URL:
        yield None
        return
    engine = create_database_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    migrate_database(engine)
    yield engine
    engine.dispose()


def _truncate_postgres(engine: Engine) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=_DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A URL of an empty, migrated database: SQLite, and PostgreSQL when configured."""
    if request.param == "postgresql":
        engine = request.getfixturevalue("_postgres_engine")
        _truncate_postgres(engine)
        return str(POSTGRES_URL)
    path = tmp_path_factory.mktemp("db") / "nurture.db"
    url = f"sqlite:///{path}"
    sqlite_engine = create_database_engine(url)
    migrate_database(sqlite_engine)
    sqlite_engine.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty, migrated database."""
    engine = create_database_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on an empty, migrated database; the test commits as it needs."""
    with open_session(engine) as session:
        yield session
