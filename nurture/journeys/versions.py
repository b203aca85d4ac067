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
    new: list[JourneyDefinition] = []
    for definition in definitions:
        match = find_version(rows_by_key[definition.id], definition)
        if match is not None:
            current[definition.id] = match
        else:
            new.append(definition)
    if new:
        current |= _insert_versions(session, new, rows_by_key, now)
    return {definition.id: current[definition.id] for definition in definitions}


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


def _insert_versions(
    session: Session,
    definitions: Sequence[JourneyDefinition],
    rows_by_key: dict[str, list[Journey]],
    now: dt.datetime | None,
) -> dict[str, Journey]:
    """Insert the next version of each journey in one statement, read back in one query.

    A definition whose row a concurrent registration took the version number of (its row is
    not there on reading back) is registered on its own, as ``_insert_version`` does.
    """
    values = [
        _version_values(
            definition, 1 + max((row.version for row in rows_by_key[definition.id]), default=0), now
        )
        for definition in definitions
    ]
    insert_ignoring_conflicts(session, _journey_table(), values)
    wanted = {(row["key"], row["definition_hash"]) for row in values}
    found: dict[str, Journey] = {}
    for row in session.scalars(select(Journey).where(Journey.key.in_([d.id for d in definitions]))):
        if (row.key, row.definition_hash) in wanted:
            found[row.key] = row
            logger.info("journey %s: registered version %s", row.key, row.version)
    for definition in definitions:
        if definition.id not in found:
            found[definition.id] = _insert_version(
                session, definition, rows_by_key[definition.id], now
            )
    return found


def _version_values(
    definition: JourneyDefinition, version: int, now: dt.datetime | None
) -> dict[str, Any]:
    """The column values of a new version row of ``definition``."""
    values: dict[str, Any] = {
        "key": definition.id,
        "version": version,
        "definition_hash": definition.definition_hash,
        "definition": definition.model_dump(mode="json"),
        "source_path": definition.source_path,
    }
    if now is not None:
        values["created_at"] = now
    return values


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
        values = _version_values(definition, version, now)
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
