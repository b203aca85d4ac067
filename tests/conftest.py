"""Shared fixtures: a migrated database per test (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from nurture.embedding import embedders
from nurture.storage import create_database_engine, migrate_database, open_session
from nurture.storage.models import Base

POSTGRES_URL = os.environ.get("NURTURE_TEST_POSTGRES_URL")

_DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def _with_own_schema(url: str, schema: str) -> str:
    """``url`` with ``schema`` first on the search path (kept in ``options`` for libpq)."""
    parsed = make_url(url)
    options = parsed.query.get("options", "")
    if isinstance(options, tuple):
        options = " ".join(options)
    options = f"{options} -csearch_path={schema}".strip()
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Send every test marked ``model`` to one pytest-xdist worker, so the model loads once.

    ``make test`` runs the suite on several workers (``--dist loadgroup``): the tests that
    load the real embedding model share the group ``model``, the others go wherever a worker
    is free. Without pytest-xdist's ``-n`` the group changes nothing.
    """
    for item in items:
        if item.get_closest_marker("model"):
            item.add_marker(pytest.mark.xdist_group("model"))


@pytest.fixture(autouse=True)
def _real_model_only_in_model_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail a test that loads the real embedding model without the ``model`` mark.

    Unmarked, it would run on any worker and load the model there a second time.
    """
    if request.node.get_closest_marker("model"):
        return
    load = embedders._load_embedder

    def refuse(model: str, *args: object) -> embedders.Embedder:
        if not model.startswith("hashing-"):
            raise AssertionError(
                f"{request.node.nodeid} loads the embedding model {model!r}: mark it "
                "pytest.mark.model, so that the one worker that runs such tests loads it"
            )
        return load(model, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(embedders, "_load_embedder", refuse)


@pytest.fixture(scope="session", autouse=True)
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This run's folder of built encoders (``NURTURE_MODELS_DIR``), shared by every runtime.

    The bundled model's ONNX int8 export is built once per run, whichever test needs it first,
    instead of once per test's data folder.
    """
    folder = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NURTURE_MODELS_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def _postgres_url() -> Iterator[str | None]:
    """The PostgreSQL URL tests use: a schema of this run's own, dropped at the end.

    Each run (several engineers, CI jobs) works in its own schema, so runs on one database
    never drop or empty each other's tables.
    """
    if not POSTGRES_URL:
        yield None
        return
    schema = f"nurture_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_database_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _with_own_schema(POSTGRES_URL, schema)
    finally:
        try:
            with admin.begin() as connection:
                # A connection left in a transaction must not hang the end of the run.
                connection.execute(text("SET LOCAL lock_timeout = '10s'"))
                connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        except OperationalError:
            pass  # the schema stays behind; it is harmless and named after this run
        admin.dispose()


@pytest.fixture(scope="session")
def _postgres_engine(_postgres_url: str | None) -> Iterator[Engine | None]:
    if _postgres_url is None:
        yield None
        return
    engine = create_database_engine(_postgres_url)
    migrate_database(engine)
    yield engine
    engine.dispose()


def _empty_postgres(engine: Engine) -> None:
    """Delete every row and restart the id sequences, in one round trip.

    ``DELETE`` is ~30 times faster than ``TRUNCATE`` on the few rows a test leaves.
    """
    tables = list(reversed(Base.metadata.sorted_tables))  # children first
    restarts = ", ".join(
        f"setval(pg_get_serial_sequence('{table.name}', 'id'), 1, false)"
        for table in tables
        if "id" in table.c and table.c.id.primary_key
    )
    deletes = "; ".join(f"DELETE FROM {table.name}" for table in tables)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"{deletes}; SELECT {restarts}")


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database file, copied for each test (migrating takes ~40 ms)."""
    path = tmp_path_factory.mktemp("template") / "nurture.db"
    engine = create_database_engine(f"sqlite:///{path}")
    migrate_database(engine)
    engine.dispose()  # the last connection closed checkpoints the WAL into the file
    return path


@pytest.fixture(params=_DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A URL of an empty, migrated database: SQLite, and PostgreSQL when configured."""
    if request.param == "postgresql":
        _empty_postgres(request.getfixturevalue("_postgres_engine"))
        return str(request.getfixturevalue("_postgres_url"))
    path = tmp_path_factory.mktemp("db") / "nurture.db"
    shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
    return f"sqlite:///{path}"


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
