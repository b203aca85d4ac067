"""Move the members still in other versions of a journey onto its current version.

Enrolled members finish the version they started, unless the marketer migrates them:
``migrate_enrollments`` moves the active enrollments of every other version of a journey to the
version of its definition, where they carry on from the step with the same id. An enrollment
whose step the current version lacks is listed and left where it is. Progress stays as it was
(step, next action time, what it waits on), and so do the emails already queued: a step that
already got its email never gets a second one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.journeys.models import JourneyDefinition
from nurture.journeys.versions import find_version, register_journeys
from nurture.storage.models import Enrollment, EnrollmentState, Journey

__all__ = ["EnrollmentMove", "MigrationReport", "migrate_enrollments"]


@dataclasses.dataclass(frozen=True)
class EnrollmentMove:
    """An active enrollment of another version, moved or left alone.

    Attributes:
        enrollment_id: The enrollment.
        member_id: Its member.
        from_version: The version it is in.
        step: The step it is at (carries on there in the current version).
    """

    enrollment_id: int
    member_id: int
    from_version: int
    step: str

    def to_dict(self) -> dict[str, Any]:
        """The move as JSON-ready values."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class MigrationReport:
    """What a migration did, or would do on a dry run.

    Attributes:
        journey_key: The journey's id.
        to_version: The current version: the definition's (a dry run of a definition that never
            ran gives the number it will get).
        to_journey_id: The id of its ``Journey`` row; None on a dry run when it has none yet.
        dry_run: Whether nothing was changed.
        moved: The enrollments moved (to move, on a dry run), by version then id.
        left: The enrollments left alone: the current version has no step with their step's id.
    """

    journey_key: str
    to_version: int
    to_journey_id: int | None
    dry_run: bool
    moved: tuple[EnrollmentMove, ...]
    left: tuple[EnrollmentMove, ...]

    @property
    def from_versions(self) -> list[int]:
        """The versions members are moved from."""
        return sorted({move.from_version for move in self.moved})

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "journey": self.journey_key,
            "to_version": self.to_version,
            "dry_run": self.dry_run,
            "moved": [move.to_dict() for move in self.moved],
            "left": [move.to_dict() for move in self.left],
        }


def migrate_enrollments(
    session: Session,
    definition: JourneyDefinition,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> MigrationReport:
    """Move a journey's members in progress from its other versions to the definition's version.

    "Other versions" are the older ones, and the newer ones too when the definition went back
    to an earlier version. Only active enrollments move, and only those whose step the
    definition has; finished enrollments keep the version they went through.

    Args:
        session: The database session; the caller commits (nothing is written on a dry run).
        definition: The journey's current definition (its workspace file).
        dry_run: Only say what would move.
        now: Creation time of the version row, when the definition never ran; default: the
            database default (the current time).

    Returns:
        The enrollments moved and those left alone.
    """
    rows = list(session.scalars(select(Journey).where(Journey.key == definition.id)))
    target = find_version(rows, definition)
    if target is None and not dry_run:
        target = register_journeys(session, [definition], now=now)[definition.id]
    if target is not None:
        to_version, to_id = target.version, target.id
    else:
        to_version, to_id = max((r.version for r in rows), default=0) + 1, None
    versions = {row.id: row.version for row in rows}
    steps = {step.id for step in definition.steps}
    entry = definition.entry_step.id

    query = (
        select(Enrollment.id, Enrollment.member_id, Enrollment.journey_id, Enrollment.current_step)
        .where(
            Enrollment.journey_key == definition.id,
            Enrollment.state == EnrollmentState.ACTIVE,
        )
        .order_by(Enrollment.id)
    )
    if to_id is not None:
        query = query.where(Enrollment.journey_id != to_id)
    if not dry_run:
        query = query.with_for_update()
    moved: list[EnrollmentMove] = []
    left: list[EnrollmentMove] = []
    for enrollment_id, member_id, journey_id, step in session.execute(query).tuples():
        move = EnrollmentMove(enrollment_id, member_id, versions.get(journey_id, 0), step or entry)
        (moved if move.step in steps else left).append(move)
    moved.sort(key=lambda m: (m.from_version, m.enrollment_id))
    left.sort(key=lambda m: (m.from_version, m.enrollment_id))

    if moved and not dry_run:
        for chunk in chunked([move.enrollment_id for move in moved], 500):
            session.execute(
                update(Enrollment)
                .where(
                    Enrollment.id.in_(chunk),
                    Enrollment.state == EnrollmentState.ACTIVE,
                    or_(Enrollment.current_step.is_(None), Enrollment.current_step.in_(steps)),
                )
                .values(journey_id=to_id)
                .execution_options(synchronize_session="fetch")
            )
        session.flush()
    return MigrationReport(
        journey_key=definition.id,
        to_version=to_version,
        to_journey_id=to_id,
        dry_run=dry_run,
        moved=tuple(moved),
        left=tuple(left),
    )
