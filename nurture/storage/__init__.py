"""Storage: the typed ORM models, engines, sessions and migrations."""

from nurture.storage.database import (
    among,
    create_database_engine,
    driver_rows,
    insert_ignoring_conflicts,
    inserted_ignoring_conflicts,
    integer_rows,
    migrate_database,
    open_session,
    plain_connection,
    plain_rows,
    refresh_statistics,
    session_scope,
)
from nurture.storage.models import *  # noqa: F403
from nurture.storage.models import __all__ as _models_all

__all__ = [
    "among",
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
    "session_scope",
    *_models_all,
]
