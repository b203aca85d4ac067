"""Write a batch of rows at the database's own speed (``executemany``, or ``COPY``).

On SQLite a batch is one ``executemany``, on PostgreSQL one ``COPY``; either way ``ON CONFLICT``
decides what a duplicate does. The ORM builds an object per row and the Core ``insert()``
processes every value in Python: for the millions of rows of an activity import, both cost many
times the insert itself. Here a batch goes to the driver as plain tuples, each value converted
once to what its column stores (date-times as SQLAlchemy writes them, JSON as compact text read
back as the same value; checked by a test), inside the session's transaction: the caller commits
or rolls back as for any other statement. On PostgreSQL the rows are copied (``COPY``, psycopg
3) straight into the table, inside a savepoint: a batch of new rows costs the bare bulk insert.
COPY alone cannot skip or update duplicates: when a row conflicts with a stored one, the
savepoint is rolled back (the transaction's earlier rows stay) and the batch, and the session's
next batches into that table, are copied into a temporary table dropped at commit, then moved
with one ``INSERT ... SELECT ... ON CONFLICT``. Lookups by a key (:func:`select_where_in`) are
plain driver queries too.

Database errors are raised as SQLAlchemy's (``IntegrityError``, ``DataError``...), as any
statement of the session would raise them.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
import math
import operator
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import JSON, Enum, Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from nurture.storage.database import array_text, array_text_type, plain_connection
from nurture.storage.models import UTCDateTime

__all__ = ["copy_text", "inserted_rows", "select_where_in", "write_columns", "write_rows"]

_Convert = Callable[[Any], Any] | None
_CONFLICTED = "nurture.bulk.conflicted"
"""``session.info`` key: the tables whose rows conflicted with stored ones (PostgreSQL)."""
_orjson_dumps = orjson.dumps
_tzinfo = operator.attrgetter("tzinfo")
_isoformat = dt.datetime.isoformat
_isoformat_microseconds = operator.methodcaller("isoformat", " ", "microseconds")
_without_offset = operator.itemgetter(slice(None, 26))
"""``YYYY-MM-DD HH:MM:SS.ffffff+00:00`` without its offset (a year >= 1900 has 4 digits)."""


def write_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    conflict: Sequence[str],
    update: Sequence[str] = (),
) -> int:
    """Insert ``rows`` into ``table``; a row conflicting with a stored one is skipped or merged.

    Args:
        session: The session whose transaction the rows join; the caller commits.
        table: The table.
        columns: The columns each row gives, in order.
        rows: The rows: Python values as the ORM would take them (aware datetimes, dicts and
            lists for JSON columns).
        conflict: The columns of the unique constraint that makes two rows the same; with
            none, a conflicting row makes the database refuse the batch (``IntegrityError``).
        update: Columns a conflicting row replaces in the stored one; with none, a conflicting
            row is skipped. Two rows of one batch must not conflict with each other when
            ``update`` is given.

    Returns:
        How many rows were inserted or updated (skipped rows are not counted).

    Raises:
        sqlalchemy.exc.DBAPIError: The database refused the batch (``IntegrityError`` for a
            constraint, ``DataError`` for a value, ``OperationalError`` for a lost connection).
    """
    if not rows:
        return 0
    values = list(zip(*rows, strict=True))
    return write_columns(session, table, columns, values, conflict=conflict, update=update)


def write_columns(
    session: Session,
    table: Table,
    columns: Sequence[str],
    values: Sequence[Sequence[Any]],
    *,
    conflict: Sequence[str],
    update: Sequence[str] = (),
) -> int:
    """:func:`write_rows` of rows given column by column: ``values[i]`` holds ``columns[i]``.

    A caller that has its rows' values by column (as the importers validate them) saves turning
    them into rows and back.

    Returns:
        How many rows were inserted or updated (skipped rows are not counted).

    Raises:
        sqlalchemy.exc.DBAPIError: As :func:`write_rows`.
    """
    if len(values) != len(columns):
        raise ValueError(f"{len(values)} columns of values for {len(columns)} columns")
    if not values or not values[0]:
        return 0
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql":
        conflicted = session.info.setdefault(_CONFLICTED, set())
        return _copy_rows(
            connection, table, tuple(columns), values, tuple(conflict), tuple(update), conflicted
        )
    statement, converters = _insert_statement(
        dialect.name, table, tuple(columns), tuple(conflict), tuple(update)
    )
    converted = _convert(values, converters)
    result = connection.exec_driver_sql(statement, converted)
    return int(result.rowcount)


@functools.cache
def _insert_statement(
    dialect: str,
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...],
    update: tuple[str, ...],
) -> tuple[str, tuple[_Convert, ...]]:
    placeholders = ", ".join("?" for _ in columns)
    statement = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders}) "
        f"{_on_conflict(conflict, update)}"
    )
    return statement, tuple(_sqlite_converter(table.c[name].type) for name in columns)


def _convert(values: Sequence[Sequence[Any]], converters: Sequence[_Convert]) -> list[Any]:
    """The rows of the columns ``values``, each value converted by its column's converter."""
    columns: list[Any] = list(values)
    for index, convert in enumerate(converters):
        if convert is _sqlite_datetime:
            columns[index] = _sqlite_datetimes(columns[index])
        elif convert is _json_text:
            columns[index] = _json_texts(columns[index])
        elif convert is not None:
            columns[index] = list(map(convert, columns[index]))
    return list(zip(*columns, strict=True))


def _sqlite_datetimes(values: Sequence[dt.datetime]) -> list[str]:
    """:func:`_sqlite_datetime` of each value."""
    if set(map(_tzinfo, values)) == {dt.UTC}:  # the common case: times the import took to UTC
        distinct = set(values)
        if len(distinct) * 2 < len(values):  # times repeat (a member's answers): each once
            texts = dict(zip(distinct, _utc_texts(distinct), strict=True))
            return list(map(texts.__getitem__, values))
        return _utc_texts(values)
    return list(map(_sqlite_datetime, values))


def _utc_texts(values: Iterable[dt.datetime]) -> list[str]:
    """:func:`_sqlite_datetime` of each value, all in UTC."""
    return list(map(_without_offset, map(_isoformat_microseconds, values)))


def _json_texts(values: Sequence[Any]) -> list[str]:
    """:func:`_json_text` of each value."""
    return list(map(bytes.decode, map(_orjson_dumps, values)))


def _on_conflict(conflict: tuple[str, ...], update: tuple[str, ...]) -> str:
    if not conflict:
        return ""
    target = f"ON CONFLICT ({', '.join(conflict)})"
    if not update:
        return f"{target} DO NOTHING"
    return f"{target} DO UPDATE SET " + ", ".join(f"{name} = excluded.{name}" for name in update)


def _sqlite_converter(column_type: Any) -> _Convert:
    """What a value becomes in SQLite: as SQLAlchemy's own bind processors write it."""
    if isinstance(column_type, UTCDateTime):
        return _sqlite_datetime
    if isinstance(column_type, JSON):
        return _json_text
    return None


def _sqlite_datetime(value: dt.datetime) -> str:
    # SQLAlchemy's SQLite DATETIME: "YYYY-MM-DD HH:MM:SS.ffffff", here in UTC (UTCDateTime).
    if value.tzinfo is not dt.UTC:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: nurture stores timezone-aware times")
        value = value.astimezone(dt.UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _json_text(value: Any) -> str:
    return _orjson_dumps(value).decode()


def _copy_rows(
    connection: Any,
    table: Table,
    columns: tuple[str, ...],
    values: Sequence[Sequence[Any]],
    conflict: tuple[str, ...],
    update: tuple[str, ...],
    conflicted: set[str],
) -> int:
    """COPY the rows straight into ``table``, or through a staging table when they conflict.

    Without ``conflict``, the rows are copied into the table itself: a conflicting row fails the
    batch, as a plain insert would. Otherwise a batch of new rows (a first import) is copied into
    the table itself, inside a savepoint: the database's bare bulk insert. When a row conflicts
    with a stored one (a re-import), the savepoint is rolled back, the table's name added to
    ``conflicted`` (the session's next batches go straight to the staging table), and the rows
    go through the staging table, whose ``INSERT ... ON CONFLICT`` skips or merges them.
    """
    dialect = connection.dialect
    stage = f"nurture_import_{table.name}"
    names = ", ".join(columns)
    definition = ", ".join(
        f"{name} {table.c[name].type.compile(dialect=dialect)}" for name in columns
    )
    json_columns = {
        index for index, name in enumerate(columns) if isinstance(table.c[name].type, JSON)
    }
    statements = (
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ({definition}) ON COMMIT DROP",
        f"COPY {stage} ({names}) FROM STDIN",
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {stage} "
        f"{_on_conflict(conflict, update)}",
        f"TRUNCATE {stage}",
    )
    columns_values = list(values)
    for index in json_columns:  # JSON as text, converted a column at a time
        columns_values[index] = _json_texts(columns_values[index])
    driver = connection.connection.driver_connection
    statement = "SAVEPOINT nurture_bulk_copy"
    try:
        with driver.cursor() as cursor:
            # The rows' text is built once: a staging table after a conflict takes it too.
            data = copy_text(columns_values)
            if not conflict:  # a conflict fails the batch either way: no savepoint needed
                statement = f"COPY {table.name} ({names}) FROM STDIN"
                _copy_columns(cursor, statement, columns_values, data)
                return len(columns_values[0])
            if table.name not in conflicted:
                cursor.execute(statement)
                statement = f"COPY {table.name} ({names}) FROM STDIN"
                try:
                    _copy_columns(cursor, statement, columns_values, data)
                except dialect.dbapi.IntegrityError:
                    statement = "ROLLBACK TO SAVEPOINT nurture_bulk_copy"
                    cursor.execute(statement)
                    conflicted.add(table.name)
                else:
                    statement = "RELEASE SAVEPOINT nurture_bulk_copy"
                    cursor.execute(statement)
                    return len(columns_values[0])
            statement = statements[0]
            cursor.execute(statement)
            statement = statements[1]
            _copy_columns(cursor, statement, columns_values, data)
            statement = statements[2]
            cursor.execute(statement)
            written = cursor.rowcount
            statement = statements[3]
            cursor.execute(statement)
    except dialect.dbapi.Error as exc:
        raise DBAPIError.instance(
            statement, None, exc, dialect.dbapi.Error, dialect=dialect
        ) from exc
    return int(written)


_COPY_ESCAPES = str.maketrans(
    {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r", "\\": "\\\\"}
)
"""COPY's text format: what psycopg escapes in a value (the server reads each back)."""
_COPY_NULL = "\\N"
_COPY_CONTROLS = tuple(
    (chr(code), str(text)) for code, text in _COPY_ESCAPES.items() if code != ord("\\")
)
"""The control characters COPY's text format escapes, and their escapes."""


def _copy_escaped(value: str) -> str:
    """``value.translate(_COPY_ESCAPES)``, the same text.

    A search of the text for each escaped character costs far less than ``translate``'s
    lookup of each of its characters: a long text (a message's JSON) 15 times less.
    """
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    for char, text in _COPY_CONTROLS:
        if char in value:
            value = value.replace(char, text)
    return value


_COPY_SPECIAL = tuple(map(chr, _COPY_ESCAPES))
"""Every character COPY's text format escapes."""


def _needs_escapes(values: Sequence[Any], nullable: bool) -> bool:
    """Whether a text of ``values`` holds a character COPY's text format escapes."""
    joined = "".join([value for value in values if value is not None] if nullable else values)
    return any(character in joined for character in _COPY_SPECIAL)


def _float_text(value: float) -> str:
    if math.isfinite(value):
        return repr(value)  # the shortest text that reads back as the same double
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _copy_texts(values: Sequence[Any]) -> list[str] | None:
    """A column's values as COPY text, or None when they are not all of one plain type."""
    kinds = set(map(type, values))
    nullable = type(None) in kinds
    kinds.discard(type(None))
    if len(kinds) > 1:
        return None
    kind = kinds.pop() if kinds else type(None)
    convert: Callable[[Any], str]
    if kind is type(None):
        return [_COPY_NULL] * len(values)
    if kind is int:
        convert = str
    elif kind is float:
        convert = _float_text
    elif kind is str and not _needs_escapes(values, nullable):
        # The common case (keys, names, JSON of plain text): the texts are their COPY text.
        if nullable:
            return [_COPY_NULL if value is None else value for value in values]
        return list(values)
    elif kind is dt.datetime and not nullable and len(set(values)) * 2 > len(values):
        return list(map(_isoformat, values))  # times seldom repeat (events): no lookup
    elif kind is str or kind is dt.datetime or kind is dt.date:
        # Texts, times and dates repeat (a reason, a run's time, a birthday): each converted once.
        distinct = set(values)
        distinct.discard(None)
        texts = {
            value: _copy_escaped(value) if kind is str else value.isoformat() for value in distinct
        }
        convert = texts.__getitem__
    else:
        return None
    if nullable:
        return [_COPY_NULL if value is None else convert(value) for value in values]
    return list(map(convert, values))


def copy_text(columns: Sequence[Sequence[Any]]) -> str | None:
    """The rows of ``columns`` in COPY's text format, as psycopg's ``write_row`` writes them.

    Only for plain values: each column's values all ``int``, all ``float``, all ``str``, all
    ``datetime`` or all ``date`` (and ``None``); the server reads back the same values (an
    ``int``, a ``datetime`` or a ``date`` as its text, a ``float`` as its shortest exact
    text). Built a column at a time, each repeated text or time converted once: ``write_row``
    converts every value of every row in Python, which costs more than the ``COPY``.

    Args:
        columns: The values of each column, all of the same length.

    Returns:
        The rows, one line each; None when a column holds another type (a ``bool``, an enum,
        a ``Decimal``...) or two types: those rows go through ``write_row``.
    """
    texts: list[list[str]] = []
    for values in columns:
        converted = _copy_texts(values)
        if converted is None:
            return None
        texts.append(converted)
    if not texts or not texts[0]:
        return ""
    return "\n".join(map("\t".join, zip(*texts, strict=True))) + "\n"


def _copy_columns(
    cursor: Any, statement: str, columns: Sequence[Sequence[Any]], text: str | None
) -> None:
    """COPY the rows of ``columns``: ``text``, their :func:`copy_text`, at once.

    When ``text`` is None (a value that text cannot hold), row by row through ``write_row``.
    """
    if text is None:
        _copy(cursor, statement, list(zip(*columns, strict=True)))
        return
    with cursor.copy(statement) as copy:  # the plain values' text at once, not row by row
        copy.write(text)


def _copy(cursor: Any, statement: str, rows: Sequence[tuple[Any, ...]]) -> None:
    with cursor.copy(statement) as copy:
        write_row = copy.write_row
        for row in rows:
            write_row(row)


def inserted_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` in their order, skipping those a unique constraint refuses; what was written.

    When every column of ``returning`` is one the rows give, the rows go straight into
    ``table``, as one bulk insert that a conflict undoes whole (``COPY`` inside a savepoint on
    PostgreSQL, multi-row ``INSERT`` statements on SQLite): new rows, the common case, cost the
    bare bulk insert, and what was written is the rows themselves. Otherwise, or when a row
    conflicts with a stored one, the rows go to a temporary staging table in bulk, then into
    ``table`` with one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING``: the database
    decides, row by row, which are new, so a concurrent writer's rows are skipped, never written
    twice. Values are stored as SQLAlchemy's own binds store them (the same date-time text on
    SQLite, JSON written by ``json.dumps``, enums as their value), and the ids are given in the
    order of ``rows``, as a plain ``INSERT`` would give them. Pending changes of the session are
    flushed first, as a query of the session would flush them.

    Args:
        session: The session whose transaction the rows join; the caller commits.
        table: The table (SQLite or PostgreSQL).
        columns: The columns each row gives, in order.
        rows: The rows: Python values as the ORM would take them.
        returning: The columns to return of each row written (such as its id and a unique key).

    Returns:
        The values of ``returning`` of each row written, in no particular order (as given,
        for the rows written straight into the table).

    Raises:
        sqlalchemy.exc.DBAPIError: The database refused the rows (a ``DataError`` for a value).
    """
    if not rows:
        return []
    connection = plain_connection(session)  # the session's pending rows go first
    dialect = connection.dialect
    dbapi: Any = dialect.dbapi
    if dialect.name not in ("sqlite", "postgresql"):
        raise ValueError(f"inserted_rows: expected SQLite or PostgreSQL, found {dialect.name}")
    names = ", ".join(columns)
    # One staging table per set of columns: the table's columns, then the rows' order.
    stage = f"nurture_stage_{table.name}_{zlib.crc32(names.encode()):08x}"
    staged = _staged_values(dialect.name, table, columns, rows)
    written: list[tuple[Any, ...]] = []
    if set(returning) <= set(columns):
        left = _written_straight(connection, table, columns, staged)
        picked = [list(columns).index(name) for name in returning]
        pick = operator.itemgetter(*picked)  # of one index, the value; of more, a tuple
        head = rows[: len(rows) - left]
        written = [(pick(row),) for row in head] if len(picked) == 1 else list(map(pick, head))
        if not left:
            return written
        staged = staged[len(staged) - left :]
    inserted = (
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {stage} WHERE true "
        f"ORDER BY nurture_order ON CONFLICT DO NOTHING RETURNING {', '.join(returning)}"
    )
    if dialect.name == "postgresql":
        definition = ", ".join(
            f"{name} {table.c[name].type.compile(dialect=dialect)}" for name in columns
        )
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} "
            f"(nurture_order integer, {definition}) ON COMMIT DROP"
        )
        connection.exec_driver_sql(f"DELETE FROM {stage}")  # what a failed call left
        statement = f"COPY {stage} (nurture_order, {names}) FROM STDIN"
        driver: Any = connection.connection.driver_connection
        try:
            with driver.cursor() as cursor:
                _copy_staged(cursor, statement, staged, ordered=True)
        except dbapi.Error as exc:
            raise DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=dialect) from exc
    else:
        # Columns without a type: values are staged as given, then take the table's
        # affinities as a plain insert's would.
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (nurture_order, {names})"
        )
        connection.exec_driver_sql(f"DELETE FROM {stage}")  # what a failed call left
        placeholders = ", ".join("?" * (len(columns) + 1))
        connection.exec_driver_sql(f"INSERT INTO {stage} VALUES ({placeholders})", staged)
    # Through the connection, not the driver alone: its events see the insert (and logs).
    written += [tuple(row) for row in connection.exec_driver_sql(inserted).fetchall()]
    connection.exec_driver_sql(f"DELETE FROM {stage}")
    return written


_STRAIGHT_VARIABLES = 5_000
"""Bound values per multi-row ``INSERT`` into a SQLite table (SQLite allows 32 766; larger
statements cost no less time, and SQLite keeps each prepared one in its cache)."""


def _written_straight(
    connection: Any, table: Table, columns: Sequence[str], staged: Sequence[tuple[Any, ...]]
) -> int:
    """Insert the staged rows straight into ``table``, all or (from a conflict on) none.

    On PostgreSQL one ``COPY`` inside a savepoint; on SQLite multi-row ``INSERT`` statements,
    each of which a conflict undoes whole. Returns how many rows, at the end of ``staged``,
    were not written (a row of them conflicted): they go through the staging table.
    """
    dialect = connection.dialect
    dbapi: Any = dialect.dbapi
    names = ", ".join(columns)
    if dialect.name == "postgresql":
        driver: Any = connection.connection.driver_connection
        statement = "SAVEPOINT nurture_inserted_rows"
        try:
            with driver.cursor() as cursor:
                cursor.execute(statement)
                statement = f"COPY {table.name} ({names}) FROM STDIN"
                try:
                    _copy_staged(cursor, statement, staged, ordered=False)
                except dbapi.IntegrityError:
                    statement = "ROLLBACK TO SAVEPOINT nurture_inserted_rows"
                    cursor.execute(statement)
                    return len(staged)
                statement = "RELEASE SAVEPOINT nurture_inserted_rows"
                cursor.execute(statement)
        except dbapi.Error as exc:
            raise DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=dialect) from exc
        return 0
    size = max(1, _STRAIGHT_VARIABLES // len(columns))
    row = "(" + ", ".join("?" * len(columns)) + ")"
    done = 0
    for start in range(0, len(staged), size):
        chunk = staged[start : start + size]
        statement = f"INSERT INTO {table.name} ({names}) VALUES " + ", ".join([row] * len(chunk))
        try:
            # One statement: a conflict undoes its rows, not those of the statements before.
            connection.exec_driver_sql(statement, tuple(v for r in chunk for v in r[1:]))
        except DBAPIError as exc:
            if not isinstance(exc.orig, dbapi.IntegrityError):
                raise
            return len(staged) - done
        done += len(chunk)
    return 0


def _copy_staged(
    cursor: Any, statement: str, staged: Sequence[tuple[Any, ...]], *, ordered: bool
) -> None:
    """COPY staged rows, their place first when ``ordered``, as one text when it can be."""
    columns = list(zip(*staged, strict=True))
    if not ordered:
        columns = columns[1:]
    _copy_columns(cursor, statement, columns, copy_text(columns))


def _staged_values(
    dialect: str, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """The rows as the driver takes them, each led by its place in ``rows``."""
    values: list[Any] = [range(len(rows))]
    for name, given in zip(columns, zip(*rows, strict=True), strict=True):
        column: Sequence[Any] = given
        column_type = table.c[name].type
        if isinstance(column_type, JSON):
            column = _json_dumps(column)
        elif isinstance(column_type, UTCDateTime) and dialect == "sqlite":
            # Rows share their times (the pass's now): each distinct time is written once.
            texts: dict[Any, str | None] = {None: None}
            texts.update((value, _sqlite_datetime(value)) for value in set(column) - {None})
            column = list(map(texts.__getitem__, column))
        elif isinstance(column_type, Enum):
            column = [value.value if isinstance(value, enum.Enum) else value for value in column]
        values.append(column)
    return list(zip(*values, strict=True))


def _json_dumps(values: Sequence[Any]) -> list[str]:
    """``json.dumps`` of each value, as SQLAlchemy's JSON type writes it; once per object.

    Rows often share one value object (the context of a trigger's run): it is written once.
    """
    texts: dict[int, str] = {}
    dumped: list[str] = []
    for value in values:
        text = texts.get(id(value))
        if text is None:
            text = texts[id(value)] = json.dumps(value)
        dumped.append(text)
    return dumped


def _any_of(
    dialect: Any, table: Table, key: str, keys: Sequence[Any], selected: str
) -> tuple[str, tuple[Any, ...]]:
    """``selected`` where ``key`` is one of ``keys``, on PostgreSQL: one array parameter.

    Integers and texts go as the array's text, cast in the statement (:func:`array_text`);
    other values as a list, which the driver dumps element by element.
    """
    item_type = array_text_type(table.c[key].type, keys, dialect)
    if item_type is None:
        return f"{selected} = ANY(%s)", (list(keys),)
    return f"{selected} = ANY(%s::{item_type}[])", (array_text(keys),)


def select_where_in(
    session: Session, table: Table, columns: Sequence[str], key: str, keys: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """The ``columns`` of the rows of ``table`` whose ``key`` is one of ``keys``, as stored.

    A plain query to the driver, whose values come back as the driver reads them (text, numbers;
    no type of SQLAlchemy converts them): for looking up thousands of rows by a key, as imports
    do batch after batch. Pending changes of the session are flushed first, as a query of the
    session would flush them.

    Args:
        session: The session whose transaction the query joins.
        table: The table.
        columns: The columns wanted, in order.
        key: The column to match.
        keys: The values to match; at most a few thousand (SQLite binds each).

    Returns:
        The rows found, in no particular order.
    """
    if not keys:
        return []
    connection = plain_connection(session)
    dialect = connection.dialect
    dbapi: Any = dialect.dbapi
    selected = f"SELECT {', '.join(columns)} FROM {table.name} WHERE {key}"
    if dialect.name == "postgresql":
        statement, parameters = _any_of(dialect, table, key, keys, selected)
    else:
        placeholders = ", ".join("?" * len(keys))
        statement, parameters = f"{selected} IN ({placeholders})", tuple(keys)
    result = connection.exec_driver_sql(statement, parameters)
    try:
        # The driver's own tuples: building a Row for each cost more than the query.
        return list(result.cursor.fetchall())
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, parameters, exc, dbapi.Error, dialect=dialect) from exc
    finally:
        result.close()
