"""Engines, sessions and schema migrations."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    ColumnElement,
    Engine,
    Enum,
    Integer,
    Select,
    String,
    Table,
    Text,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, CursorResult, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable
from sqlalchemy.types import UserDefinedType

from nurture.chunks import chunked

__all__ = [
    "among",
    "array_text",
    "array_text_type",
    "compares_as_text",
    "create_database_engine",
    "driver_rows",
    "insert_ignoring_conflicts",
    "inserted_ignoring_conflicts",
    "integer_rows",
    "migrate_database",
    "open_session",
    "plain_connection",
    "plain_rows",
    "refresh_statistics",
    "rows_changed_since_analyze",
    "session_scope",
]

logger = logging.getLogger(__name__)


def among(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(:values)``, in one array parameter.

    A statement over a chunk's ids then reads the same whatever their number: SQLAlchemy
    renders it, and the driver parses it, once, instead of a statement of hundreds of
    placeholders each time (PostgreSQL plans ``IN`` as ``= ANY`` anyway).

    Args:
        session: The session the statement runs in (its database decides).
        column: The column compared (its type types the array's elements).
        values: The values.
    """
    values = list(values)
    dialect = session.get_bind().dialect.name
    whole = bool(values) and all(type(value) is int for value in values)
    if dialect == "postgresql":
        # A typed array parameter: the planner then sees the values as a constant and tests a
        # row against them with one hash lookup. A parameter typed as text and cast to an array
        # is cast at run time and the row compared with every value in turn, which made a
        # sequential scan of a large table cost seconds per chunk (500 comparisons a row).
        # Integers and texts go as the array's text with no type of its own (psycopg sends a
        # ``str`` as "unknown"), which the statement's ``::INTEGER[]`` (``::TEXT[]``) types
        # (``_ArrayText``): the same typed parameter, the same constant in the plan, made by
        # one join rather than the driver's dump of each element.
        item_type = array_text_type(column.type, values, session.get_bind().dialect)
        array_type = ARRAY(column.type) if item_type is None else _ArrayText(item_type)
        return column == any_(bindparam(None, values, type_=array_type))
    if dialect == "sqlite" and (whole or (values and all(type(v) is str for v in values))):
        # One JSON array parameter: SQLite reads ``IN (SELECT value FROM json_each(?))`` as it
        # reads an ``IN`` list (an index lookup per value), and the statement stays the same.
        each: Select[tuple[Any]] = select(literal_column("value")).select_from(
            func.json_each(bindparam(None, json.dumps(values), type_=Text))
        )
        return column.in_(each.scalar_subquery())
    # One expanding parameter of the column's type: the same ``IN (?, ?, ...)`` as
    # ``column.in_(values)``, without coercing each value into a literal of its own first.
    return column.in_(bindparam(None, values, expanding=True, type_=column.type))


def array_text_type(column_type: Any, values: Sequence[Any], dialect: Any) -> str | None:
    """The SQL type of the elements of ``values`` sent as their :func:`array_text`, if they can be.

    Integers against an integer column go as the column's type (``INTEGER``); texts against a
    text column (:func:`compares_as_text`) as ``TEXT``, not the column's ``VARCHAR(n)``, whose
    cast would cut a longer value to n characters that might then equal a stored one. None:
    other values, sent as a list of the column's type.
    """
    if not values:
        return None
    if isinstance(column_type, Integer) and all(type(value) is int for value in values):
        return str(column_type.compile(dialect=dialect))
    if compares_as_text(column_type) and all(type(value) is str for value in values):
        return "TEXT"
    return None


def compares_as_text(column_type: Any) -> bool:
    """Whether a column of ``column_type`` compares with ``TEXT`` values: a text column.

    A ``VARCHAR`` or ``TEXT``, or an enum stored as one (not a database's own enum type).
    """
    return isinstance(column_type, String) and not (
        isinstance(column_type, Enum) and column_type.native_enum
    )


def array_text(values: Sequence[int] | Sequence[str]) -> str:
    """The text of a PostgreSQL array of ``values``, integers or texts: ``{1,2}``, ``{"a","b"}``.

    Cast in the statement (``%s::INTEGER[]``, ``%s::TEXT[]``), it is the array parameter a
    list gives, made at a fraction of the cost of psycopg's dump of each element. The values
    are all integers or all texts, as the first one is.
    """
    if values and isinstance(values[0], str):
        texts = cast("Sequence[str]", values)
        return "{" + ",".join(['"' + _escaped(text) + '"' for text in texts]) + "}"
    return "{" + ",".join(map(str, values)) + "}"


def _escaped(text: str) -> str:
    """``text`` inside the double quotes of an array element: backslash and quote escaped."""
    if "\\" in text or '"' in text:
        return text.replace("\\", "\\\\").replace('"', '\\"')
    return text


class _ArrayText(UserDefinedType[list[Any]]):
    """A PostgreSQL array of integers or texts bound as its text (:func:`array_text`).

    The driver sends a text of unknown type, which ``::INTEGER[]`` (or the column's integer
    type, or ``::TEXT[]``) makes the array parameter itself: what the server sees is what a
    bound list gives. Joining the values' text costs a fraction of psycopg's dump of a list,
    element by element (a fifth for integers).
    """

    cache_ok = True
    render_bind_cast = True

    def __init__(self, item_type: str) -> None:
        # The SQL name of the elements' type (``INTEGER``, ``SMALLINT``, ``TEXT``).
        self.item_type = item_type

    def get_col_spec(self, **_: Any) -> str:
        """The array type the parameter is cast to (``INTEGER[]``)."""
        return f"{self.item_type}[]"

    def bind_processor(self, dialect: Any) -> Callable[[list[Any] | None], str | None]:
        """Make the array's text of a list of integers or texts."""

        def process(values: list[Any] | None) -> str | None:
            return None if values is None else array_text(values)

        return process


def plain_connection(session: Session) -> Connection:
    """The session's connection, for Core statements run without the ORM.

    The session's pending changes are flushed first, as its own ``execute`` would (autoflush).
    A column query run through the session pays the ORM's work on each row (its loading
    machinery); thousands of rows read on the connection cost less than the query itself.

    Args:
        session: The session whose transaction the statements join.

    Returns:
        Its connection.
    """
    if session.autoflush:
        session.flush()
    return session.connection()


def plain_rows(session: Session, statement: Executable) -> CursorResult[Any]:
    """The rows of a Core ``statement`` run on the session's connection (:func:`plain_connection`).

    Args:
        session: The session whose transaction the query joins.
        statement: A Core statement (a ``select`` of columns, not of ORM entities).

    Returns:
        Its result, rows as tuples of the columns' Python values (their types applied).
    """
    return plain_connection(session).execute(statement)


def driver_rows(session: Session, statement: Select[Any]) -> Sequence[Sequence[Any]]:
    """Every row of a Core ``select`` as the driver gives it (:func:`plain_connection`).

    For a large read whose columns SQLAlchemy does not convert (integers, texts, bytes): a
    result row made of each driver row costs more than the read itself. When a column's type
    does convert its values, the rows are converted as :func:`plain_rows` would.

    Args:
        session: The session whose transaction the query joins.
        statement: A Core ``select`` of columns.

    Returns:
        The rows, each a tuple of the columns' values.
    """
    connection = plain_connection(session)
    dialect = connection.dialect
    converted = any(
        column.type.dialect_impl(dialect).result_processor(dialect, None) is not None
        for column in statement.selected_columns
    )
    result = connection.execute(statement)
    if converted:
        return result.all()
    rows: Sequence[Sequence[Any]] = result.cursor.fetchall()
    result.close()
    return rows


def integer_rows(session: Session, statement: Executable, width: int) -> np.ndarray:
    """The integer rows of ``statement`` as an ``(n, width)`` int64 array (:func:`plain_rows`).

    The values go straight into the array: numpy probing each row for an array interface, or
    the ORM's work on each, would cost more than the read.
    """
    rows = plain_rows(session, statement)
    return np.fromiter((value for row in rows for value in row), dtype=np.int64).reshape(-1, width)


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_database_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout.

    Args:
        url: A SQLAlchemy database URL. A ``postgresql://`` URL uses the psycopg 3 driver.
        **kwargs: Passed on to ``sqlalchemy.create_engine``.

    Returns:
        The engine. For a SQLite file, its folder is created if missing.
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
    return engine


def migrate_database(engine: Engine, revision: str = "head") -> None:
    """Bring the schema of ``engine``'s database up to ``revision`` with the Alembic migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def open_session(engine: Engine) -> Session:
    """A new session on ``engine``; objects stay usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with open_session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def insert_ignoring_conflicts(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], *, chunk_size: int = 500
) -> int:
    """Insert rows, skipping any that break a unique constraint; returns how many were written.

    SQLite and PostgreSQL use ``ON CONFLICT DO NOTHING`` (the check and the insert are one
    statement, so concurrent writers store a row once); other databases insert in a savepoint
    and, on a conflict, row by row.

    Args:
        session: The session; the caller commits.
        table: The table.
        rows: The rows, as column values.
        chunk_size: Rows per statement.

    Returns:
        How many rows were written.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        dialect_insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
        statement = dialect_insert(table).on_conflict_do_nothing().returning(table.c.id)
        written = 0
        for chunk in chunked(list(rows), chunk_size):
            written += len(session.execute(statement, chunk).all())
        return written
    try:
        with session.begin_nested():
            session.execute(insert(table), list(rows))
        return len(rows)
    except IntegrityError:
        written = 0
        for row in rows:
            try:
                with session.begin_nested():
                    session.execute(insert(table), [row])
                written += 1
            except IntegrityError:
                logger.info("%s: row already written by another run, skipped", table.name)
        return written


def inserted_ignoring_conflicts(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    chunk_size: int = 500,
) -> list[tuple[Any, ...]]:
    """Insert rows, skipping any that break a unique constraint; returns what those written hold.

    As ``insert_ignoring_conflicts`` (on other databases than SQLite and PostgreSQL, row by
    row in savepoints), with ``RETURNING``: the caller learns which of its rows were written.

    Args:
        session: The session; the caller commits.
        table: The table.
        rows: The rows, as column values.
        columns: The columns to return (``RETURNING``), such as the id and a unique key.
        chunk_size: Rows per statement.

    Returns:
        The values of ``columns`` of each row written (those skipped for a conflict are not).
    """
    if not rows:
        return []
    returned = [table.c[name] for name in columns]
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        dialect_insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
        statement = dialect_insert(table).on_conflict_do_nothing().returning(*returned)
        written: list[tuple[Any, ...]] = []
        for chunk in chunked(list(rows), chunk_size):
            written += [tuple(row) for row in session.execute(statement, chunk)]
        return written
    statement = insert(table).returning(*returned)
    written = []
    for row in rows:
        try:
            with session.begin_nested():
                written.append(tuple(session.execute(statement, [row]).one()))
        except IntegrityError:
            logger.info("%s: row already written by another run, skipped", table.name)
    return written


def refresh_statistics(
    session: Session, tables: Iterable[type[Any]], *, stale_share: float | None = None
) -> None:
    """After a bulk write, have PostgreSQL's planner count the tables' rows again (``ANALYZE``).

    A table just filled in the same run still has the statistics of its empty self until
    autovacuum comes, and the planner then scans it whole for each chunk's lookup (as the rule
    segments' reads of the effective cluster segments did). ``ANALYZE`` counts the rows of the
    session's own transaction too. Other databases are left alone.

    Args:
        session: Database session.
        tables: The mapped classes whose tables were written.
        stale_share: When given, a table is analysed only when its statistics are stale by
            autovacuum's own rule: never analysed, or more than ``50 + stale_share`` x its
            rows inserted, updated or deleted since (the server's counts of committed
            changes, :func:`rows_changed_since_analyze`); an incremental run that rewrote a
            few rows of a large table then skips an ``ANALYZE`` that reads it all. None:
            always analysed.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in tables:
        name = table.__tablename__
        if stale_share is not None:
            changed, rows = rows_changed_since_analyze(session, name)
            if changed is not None and changed <= _ANALYZE_BASE_ROWS + stale_share * rows:
                continue
        session.execute(text(f"ANALYZE {name}"))


_ANALYZE_BASE_ROWS = 50
"""Changed rows a table may have over its share before it counts as stale (as autovacuum's
``autovacuum_analyze_threshold``)."""


def rows_changed_since_analyze(session: Session, table: str) -> tuple[int | None, float]:
    """PostgreSQL's count of a table's rows changed since its last ``ANALYZE``, and its rows.

    Args:
        session: Database session (on PostgreSQL).
        table: The table's name.

    Returns:
        ``(changed, rows)``: the committed inserts, updates and deletes since the table was
        last analysed (None when it never was, or the server keeps no count), and the rows
        its statistics hold (0 when unknown).
    """
    found = session.execute(
        text(
            "SELECT s.n_mod_since_analyze, "
            "s.last_analyze IS NULL AND s.last_autoanalyze IS NULL, c.reltuples "
            "FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE c.oid = to_regclass(:name)"
        ),
        {"name": table},
    ).first()
    if found is None:
        return None, 0.0
    changed, never, rows = found
    if changed is None or never:
        return None, max(float(rows or 0), 0.0)
    return int(changed), max(float(rows or 0), 0.0)
