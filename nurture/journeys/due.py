"""Enrollments as a pass moves them: read in bulk, moved on in memory, written back in bulk.

A pass moves thousands of enrollments a step or two each. ``DueEnrollment`` holds what the
engine reads and changes of one enrollment, as plain values; ``load_enrollments`` reads a chunk
of them in one query, and ``write_progress`` writes back what changed with one ``UPDATE``
executemany per set of changed columns (an enrollment left as it was is not written), as the
ORM's flush would, without an object and its bookkeeping per row. An ``Enrollment`` object
the session already holds for one of them is expired, so that it is read again when used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.storage.models import (
    Enrollment,
    EnrollmentState,
    ExitReason,
    WaitReason,
    table_of,
)

__all__ = ["PROGRESS_COLUMNS", "DueEnrollment", "load_enrollments", "write_progress"]

PROGRESS_COLUMNS = (
    "state",
    "current_step",
    "next_action_at",
    "finished_at",
    "exit_reason",
    "waiting_on",
    "arm",
)
"""The columns of an enrollment the engine changes."""

_READ_CHUNK = 500
"""Enrollments read per query."""


@dataclasses.dataclass(slots=True, eq=False)
class DueEnrollment:
    """What the engine reads and changes of one enrollment (the columns of its row).

    Attributes:
        id: The enrollment's id.
        journey_id: The journey version it runs.
        member_id: The member.
        context: What its trigger recorded.
        next_action_at: When it runs next (None once finished).
        state: Active, completed or exited.
        current_step: The step it runs next.
        finished_at: When it finished.
        exit_reason: Why it exited.
        waiting_on: Why it waits at a send step.
        arm: The experiment arm.
    """

    id: int
    journey_id: int
    member_id: int
    context: dict[str, Any]
    next_action_at: dt.datetime | None
    state: EnrollmentState
    current_step: str | None
    finished_at: dt.datetime | None
    exit_reason: ExitReason | None
    waiting_on: WaitReason | None
    arm: str | None
    _read: tuple[Any, ...] = dataclasses.field(default=(), repr=False)

    def __post_init__(self) -> None:
        self._read = self._progress()

    def _progress(self) -> tuple[Any, ...]:
        return (
            self.state,
            self.current_step,
            self.next_action_at,
            self.finished_at,
            self.exit_reason,
            self.waiting_on,
            self.arm,
        )

    def changes(self) -> dict[str, Any]:
        """The columns of :data:`PROGRESS_COLUMNS` changed since it was read, with their values."""
        now = self._progress()
        return {
            name: value
            for name, value, read in zip(PROGRESS_COLUMNS, now, self._read, strict=True)
            if value != read
        }

    def finish(
        self, state: EnrollmentState, now: dt.datetime, reason: ExitReason | None = None
    ) -> None:
        """End it (completed, or exited for ``reason``) at ``now``."""
        self.state = state
        self.next_action_at = None
        self.finished_at = now
        self.exit_reason = reason
        self.waiting_on = None


def load_enrollments(session: Session, enrollment_ids: Collection[int]) -> list[DueEnrollment]:
    """The enrollments of ``enrollment_ids`` that exist, in id order (a query per 500)."""
    table = table_of(Enrollment)
    columns = [table.c[field.name] for field in dataclasses.fields(DueEnrollment)[:-1]]
    found: list[DueEnrollment] = []
    for batch in chunked(sorted(set(enrollment_ids)), _READ_CHUNK):
        rows = session.execute(select(*columns).where(table.c.id.in_(batch)).order_by(table.c.id))
        found += [DueEnrollment(*row) for row in rows]
    return found


def write_progress(session: Session, enrollments: Sequence[DueEnrollment]) -> int:
    """Write what changed of ``enrollments`` (one executemany per set of changed columns).

    Args:
        session: The database session; the caller commits.
        enrollments: Enrollments read by :func:`load_enrollments`, changed since.

    Returns:
        How many enrollments were written.
    """
    groups: defaultdict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for enrollment in enrollments:
        changes = enrollment.changes()
        if changes:
            groups[tuple(changes)].append({"enrollment_id": enrollment.id, **changes})
            enrollment._read = enrollment._progress()
    table = table_of(Enrollment)
    written: set[int] = set()
    for rows in groups.values():
        session.execute(update(table).where(table.c.id == bindparam("enrollment_id")), rows)
        written.update(row["enrollment_id"] for row in rows)
    _expire_held(session, written)
    return len(written)


def _expire_held(session: Session, enrollment_ids: set[int]) -> None:
    """Expire the ``Enrollment`` objects the session holds for these ids (written in bulk)."""
    if not enrollment_ids:
        return
    for key in list(session.identity_map.keys()):
        if key[0] is Enrollment and key[1][0] in enrollment_ids:
            held = session.identity_map.get(key)
            if held is not None:
                session.expire(held)
