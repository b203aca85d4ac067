"""Journey versions: one ``Journey`` row per distinct definition of a journey.

A definition is known by its ``definition_hash`` (SHA-256 of its canonical JSON, see
:attr:`JourneyDefinition.definition_hash`): the same definition keeps its row, a changed one
gets a new row with the next version number, and going back to an earlier definition makes
that earlier row current again. Enrollments point at the version they started on, so a change
never moves members already on their way (``migrate_enrollments`` does, on request).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from nurture.errors import JourneyValidationError, Problem
from nurture.journeys.models import JourneyDefinition
from nurture.storage import insert_ignoring_conflicts
from nurture.storage.models import Journey, table_of

__all__ = ["find_version", "load_versions", "register_journeys"]

logger = logging.getLogger(__name__)

_REGISTER_ATTEMPTS = 3
"""Tries at inserting a new version when concurrent registrations take the number first."""


def find_version(rows: Iterable[Journey], definition: JourneyDefinition) -> Journey | None:
    """The version row among ``rows`` that holds exactly ``definition`` (same hash), if any.

    Args:
        rows: Version rows of the definition's journey.
        definition: A journey definition.

    Returns:
        The matching row, or None when the definition never ran.
    """
    wanted = definition.definition_hash
    return next((row for row in rows if row.definition_hash == wanted), None)


def register_journeys(
    session: Session,
    definitions: Sequence[JourneyDefinition],
    *,
    now: dt.datetime | None = None,
) -> dict[str, Journey]:
    """Make sure each definition has its ``Journey`` version row.

    A definition seen before (same key and ``definition_hash``) keeps its row; a changed one gets
    a new row with version + 1. Reverting to an earlier definition makes that earlier row current
    again.

    Args:
        session: The database session; the caller commits.
        definitions: The journey definitions in force.
        now: Creation time of new rows; default: the database default (the current time).

    Returns:
        The current version row of each journey, by journey id.

    Raises:
        JourneyValidationError: Two definitions share one id.
    """
    _check_unique_ids(definitions)
    keys = [definition.id for definition in definitions]
    rows_by_key: dict[str, list[Journey]] = defaultdict(list)
    if keys:
        for row in session.scalars(select(Journey).where(Journey.key.in_(keys))):
            rows_by_key[row.key].append(row)

    current: dict[str, Journey] = {}
    for definition in definitions:
        rows = rows_by_key[definition.id]
        match = find_version(rows, definition)
        current[definition.id] = match or _insert_version(session, definition, rows, now)
    return current


def load_versions(
    session: Session, journey_ids: Iterable[int], versions: dict[int, JourneyDefinition]
) -> None:
    """Read into ``versions`` the definition of each version row not read yet (one query).

    Args:
        session: The database session.
        journey_ids: Ids of ``Journey`` version rows.
        versions: Definitions already read, by version row id; completed in place.
    """
    missing = sorted(set(journey_ids) - versions.keys())
    if not missing:
        return
    for row in session.scalars(select(Journey).where(Journey.id.in_(missing))):
        definition = JourneyDefinition.model_validate(row.definition)
        versions[row.id] = definition.with_source(row.source_path)


def _check_unique_ids(definitions: Sequence[JourneyDefinition]) -> None:
    seen: dict[str, JourneyDefinition] = {}
    problems = []
    for definition in definitions:
        if definition.id in seen:
            problems.append(
                Problem(
                    definition.source_path or "<definitions>",
                    f"journey id {definition.id!r} is also used by "
                    f"{seen[definition.id].source_path or 'another definition'}; "
                    "expected a unique id",
                    field="id",
                )
            )
        seen.setdefault(definition.id, definition)
    if problems:
        raise JourneyValidationError(problems)


def _insert_version(
    session: Session,
    definition: JourneyDefinition,
    known_rows: list[Journey],
    now: dt.datetime | None,
) -> Journey:
    """Insert the next version of a journey; a concurrent registration is read back instead."""
    by_hash = select(Journey).where(
        Journey.key == definition.id, Journey.definition_hash == definition.definition_hash
    )
    for _ in range(_REGISTER_ATTEMPTS):
        latest = session.scalar(
            select(func.max(Journey.version)).where(Journey.key == definition.id)
        )
        version = max([latest or 0, *(row.version for row in known_rows)]) + 1
        values: dict[str, Any] = {
            "key": definition.id,
            "version": version,
            "definition_hash": definition.definition_hash,
            "definition": definition.model_dump(mode="json"),
            "source_path": definition.source_path,
        }
        if now is not None:
            values["created_at"] = now
        insert_ignoring_conflicts(session, _journey_table(), [values])
        row = session.scalars(by_hash).one_or_none()
        if row is not None:
            logger.info("journey %s: registered version %s", definition.id, row.version)
            return row
    raise RuntimeError(
        f"journey {definition.id!r}: could not register a new version after "
        f"{_REGISTER_ATTEMPTS} attempts"
    )


def _journey_table() -> Table:
    return table_of(Journey)
