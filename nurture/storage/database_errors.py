"""Database failures in words an operator can act on.

The driver's and Alembic's exceptions are translated here, at the boundary, into one
:class:`~nurture.errors.DatabaseError` (or :class:`~nurture.errors.ConfigurationError` for a
URL that is not one) whose message names the database, never its password, says what went
wrong and what to do about it.
"""

from __future__ import annotations

import re

from nurture.errors import ConfigurationError, DatabaseError

__all__ = ["database_error", "driver_reason", "is_transient", "safe_database_url"]

URL_SETTING = "NURTURE_DATABASE_URL"
REASON_LENGTH = 200
"""Characters of the driver's own reason kept in a message."""

_UNREACHABLE = re.compile(
    r"connection refused|could not translate host name|name or service not known|"
    r"no route to host|timeout expired|timed out|network is unreachable|"
    r"could not connect|server closed the connection|no such host|"
    r"temporary failure in name resolution",
    re.IGNORECASE,
)
_LOGIN = re.compile(
    r"password authentication failed|authentication failed|role \"[^\"]*\" does not exist|"
    r"no password supplied|password is required|access denied",
    re.IGNORECASE,
)
_NO_DATABASE = re.compile(r"database \"([^\"]+)\" does not exist", re.IGNORECASE)
_UNKNOWN_REVISION = re.compile(r"can't locate revision identified by '([^']+)'", re.IGNORECASE)
_PERMISSION = re.compile(r"permission denied|must be owner|readonly database", re.IGNORECASE)
_RETRYABLE_STATES = frozenset({"40001", "40P01"})
"""PostgreSQL's serialization_failure and deadlock_detected: it aborted this transaction so that
another could go on, and the same work run again normally succeeds."""


def safe_database_url(url: str) -> str:
    """``url`` with its password masked (``***``); the URL as given if it cannot be parsed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(a URL that cannot be parsed)"


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a passing failure of the database, so that the work may run again.

    A deadlock or a serialization failure (PostgreSQL aborted the transaction for another's
    sake) and a lost connection are; anything else (a constraint, a bad value, a missing table,
    SQLite still locked after its busy timeout) is not.
    """
    from sqlalchemy.exc import DBAPIError

    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    return getattr(error.orig, "sqlstate", None) in _RETRYABLE_STATES


def driver_reason(error: BaseException) -> str:
    """The driver's own words: the original exception's first meaningful line, shortened."""
    original = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("(Background on this error")]
    text = lines[0] if lines else type(original).__name__
    text = re.sub(r"^\([\w.]+\)\s*", "", text)  # "(sqlite3.OperationalError) ..."
    text = text.removeprefix("connection failed: ").strip()
    text = re.sub(r"^connection to server (at|on) .*? failed:\s*", "", text)  # named already
    text = re.sub(r"^FATAL:\s*", "", text)
    return text if len(text) <= REASON_LENGTH else text[: REASON_LENGTH - 3] + "..."


def database_error(url: str | None, error: BaseException) -> DatabaseError | ConfigurationError:
    """The error to raise for ``error``, met while opening or migrating the database ``url``.

    Args:
        url: The database URL in force (its password never shows in the message); None when
            unknown.
        error: What SQLAlchemy, the driver or Alembic raised.

    Returns:
        A :class:`~nurture.errors.ConfigurationError` when the URL is not a database URL, else
        a :class:`~nurture.errors.DatabaseError`; both say what to do.
    """
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if isinstance(error, ImportError):
        return ConfigurationError(
            f"{URL_SETTING} needs a database driver that is not installed "
            f"({driver_reason(error)}): "
            "nurture works with PostgreSQL (postgresql://user:password@host:5432/name) and "
            "SQLite (sqlite:///path/to/nurture.db)"
        )
    if isinstance(error, OSError):
        return DatabaseError(
            f"cannot create the folder of the database {safe_database_url(url or '')} "
            f"({error.strerror or driver_reason(error)}: {error.filename}): check NURTURE_DATA_DIR "
            f"and {URL_SETTING}."
        )
    if isinstance(error, NoSuchModuleError | ArgumentError):
        return ConfigurationError(
            f"{URL_SETTING} is not a database URL nurture can use "
            f"({driver_reason(error)}): expected "
            "postgresql://user:password@host:5432/name or sqlite:///path/to/nurture.db"
        )
    where = safe_database_url(url) if url else "(the configured database)"
    reason = driver_reason(error)
    sqlite = bool(url) and str(url).startswith("sqlite")
    if (found := _UNKNOWN_REVISION.search(reason)) is not None:
        return DatabaseError(
            f"the database {where} is at schema revision {found.group(1)!r}, which this version "
            "of nurture does not know: a newer nurture migrated it. Install that version of "
            f"nurture (or newer), or set {URL_SETTING} to another database."
        )
    if sqlite and "unable to open database file" in reason:
        return DatabaseError(
            f"cannot open the SQLite database {where}: check that its folder exists and is "
            f"writable (NURTURE_DATA_DIR, or {URL_SETTING})."
        )
    if (found := _NO_DATABASE.search(reason)) is not None:
        return DatabaseError(
            f"the database server answered, but the database {found.group(1)!r} does not exist "
            f"({where}): create it (createdb {found.group(1)}) or fix the name in {URL_SETTING}."
        )
    if _LOGIN.search(reason):
        return DatabaseError(
            f"the database server refused the login ({reason}) for {where}: check the user name "
            f"and password in {URL_SETTING}."
        )
    if _UNREACHABLE.search(reason):
        return DatabaseError(
            f"cannot reach the database server of {where} ({reason}): is it running, and "
            f"reachable from here? Check the host and port in {URL_SETTING}."
        )
    if _PERMISSION.search(reason):
        return DatabaseError(
            f"the database {where} refused a change of schema ({reason}): nurture brings the "
            "schema up to date when it starts, so its user must own the tables (or run it once "
            "as their owner)."
        )
    return DatabaseError(f"cannot open the database {where}: {reason}")
