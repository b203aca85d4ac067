"""The workspace's own data, split in time: what happened before a cut-off trains, the rest tests.

Interactions are the activity events that name a content item (``content_view``,
``email_click``, ``event_attended``: :data:`nurture.recommend.CONSUMING_EVENT_TYPES`). A sandbox
receives every member and their questionnaire answers (what a member says on joining counts as
known, whatever its date), every activity event before the cut-off and the embedding cache of the
model in use; nothing that happened at or after the cut-off.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.orm import Session

from nurture.errors import Problem
from nurture.evaluation.data import EvaluationData, EvaluationDataError, Interactions
from nurture.recommend import CONSUMING_EVENT_TYPES, item_available
from nurture.storage import ActivityEvent, Answer, ContentItem, EmbeddingCacheEntry, Member
from nurture.storage.models import table_of

__all__ = ["WorkspaceInteraction", "load_interactions", "split_in_time", "stage_workspace"]

_BATCH = 1000


@dataclass(frozen=True)
class WorkspaceInteraction:
    """One activity event naming a content item.

    Attributes:
        member_id: The member's database id.
        content_key: The content item's key.
        occurred_at: When it happened.
        event_id: The activity event's database id, when known.
    """

    member_id: int
    content_key: str
    occurred_at: dt.datetime
    event_id: int | None = None


def load_interactions(session: Session) -> list[WorkspaceInteraction]:
    """Every consuming activity event that names a content item, oldest first.

    Args:
        session: A session on the workspace's database.

    Returns:
        The interactions.
    """
    rows = session.execute(
        select(
            ActivityEvent.member_id,
            ActivityEvent.content_key,
            ActivityEvent.occurred_at,
            ActivityEvent.id,
        )
        .where(
            ActivityEvent.type.in_(CONSUMING_EVENT_TYPES),
            ActivityEvent.content_key.is_not(None),
        )
        .order_by(ActivityEvent.occurred_at, ActivityEvent.id)
    )
    return [
        WorkspaceInteraction(member_id, str(content_key), occurred_at, event_id)
        for member_id, content_key, occurred_at, event_id in rows.tuples()
    ]


def _copy_rows(source: Session, target: Session, table: Table, *where: Any) -> int:
    copied = 0
    result = source.execute(select(table).where(*where)).mappings()
    while batch := result.fetchmany(_BATCH):
        target.execute(insert(table), [dict(row) for row in batch])
        copied += len(batch)
    return copied


def stage_workspace(
    source: Session,
    sandbox: Session,
    cutoff: dt.datetime,
    models: Collection[str],
    *,
    leave_out: Collection[int] = (),
) -> dict[str, int]:
    """Copy what was known before ``cutoff`` from the workspace's database into a sandbox.

    Members keep their ids. The sandbox must be empty; the caller commits.

    Args:
        source: A session on the workspace's database.
        sandbox: A session on the sandbox's database.
        cutoff: Events at or after this time stay out.
        models: The names whose cached vectors are copied (nothing is embedded twice):
            :func:`nurture.embedding.cached_vector_names`.
        leave_out: Ids of activity events that stay out too (a validation split's).

    Returns:
        Rows copied per table (activity events: those kept).
    """
    copied = {
        "members": _copy_rows(source, sandbox, table_of(Member)),
        "answers": _copy_rows(source, sandbox, table_of(Answer)),
        "activity_events": _copy_rows(
            source, sandbox, table_of(ActivityEvent), ActivityEvent.occurred_at < cutoff
        ),
        "embedding_cache": _copy_rows(
            source,
            sandbox,
            table_of(EmbeddingCacheEntry),
            EmbeddingCacheEntry.model.in_(sorted(models)),
        ),
    }
    ids = sorted(leave_out)
    for start in range(0, len(ids), _BATCH):
        removed = sandbox.execute(
            delete(ActivityEvent).where(ActivityEvent.id.in_(ids[start : start + _BATCH]))
        )
        copied["activity_events"] -= int(getattr(removed, "rowcount", 0) or 0)
    return copied


def _language(code: str | None) -> str:
    return (code or "en")[:2].lower()


def _answer_groups(sandbox: Session, row: dict[int, int], questions: Sequence[str]) -> np.ndarray:
    """``(m, q)`` each member's answer code to each single-choice question, ``-1`` unanswered."""
    out = np.full((len(row), len(questions)), -1, dtype=np.int64)
    column = {key: index for index, key in enumerate(questions)}
    codes: list[dict[str, int]] = [{} for _ in questions]
    if not questions:
        return out
    answers = sandbox.execute(
        select(Answer.member_id, Answer.question_key, Answer.value)
        .where(Answer.question_key.in_(list(questions)))
        .order_by(Answer.answered_at, Answer.id)
    )
    for member_id, key, value in answers:  # the latest answer wins
        if member_id in row and isinstance(value, str):
            code = codes[column[key]].setdefault(value, len(codes[column[key]]))
            out[row[member_id], column[key]] = code
    return out


def split_in_time(
    sandbox: Session,
    interactions: Sequence[WorkspaceInteraction],
    cutoff: dt.datetime,
    *,
    test_share: float | None = None,
    choice_questions: Sequence[str] = (),
    held_out: Collection[int] | None = None,
) -> EvaluationData:
    """The evaluation data of a temporal split, members and items as the sandbox holds them.

    Every interaction weighs 1; an interaction with an item missing from the library is dropped.
    Items are candidates when the matcher could recommend them at the cut-off (published, not
    expired, not a past event: :func:`nurture.recommend.item_available`), in the member's
    language.

    Args:
        sandbox: A session on the sandbox, once its content library is synced.
        interactions: Every interaction of the workspace.
        cutoff: Interactions before it train, the others test.
        test_share: The share of interactions the cut-off was chosen to hold out, when it was.
        choice_questions: Keys of the single-choice questions: their answers are the members'
            groups (for the answer-group baseline).
        held_out: Ids of the events that test, instead of those at or after ``cutoff`` (a
            validation split of the training events: ``interactions`` are then those).

    Returns:
        The evaluation data.

    Raises:
        EvaluationDataError: The library is empty, or no interaction names one of its items.
    """
    items = list(sandbox.scalars(select(ContentItem).order_by(ContentItem.key)))
    members = sandbox.execute(select(Member.id, Member.language).order_by(Member.id)).all()
    if not items:
        raise EvaluationDataError([Problem("library", "the content library has no item")])
    column = {item.key: index for index, item in enumerate(items)}
    row = {member.id: index for index, member in enumerate(members)}
    known = [
        event for event in interactions if event.content_key in column and event.member_id in row
    ]
    if not known:
        raise EvaluationDataError(
            [
                Problem(
                    "activity",
                    "no activity event names a content item of the library "
                    f"({', '.join(CONSUMING_EVENT_TYPES)} with a content_key): nothing to "
                    "evaluate on; import activity first",
                )
            ]
        )
    members_of = np.array([row[event.member_id] for event in known], dtype=np.int64)
    items_of = np.array([column[event.content_key] for event in known], dtype=np.int64)
    if held_out is None:
        before = np.array([event.occurred_at < cutoff for event in known], dtype=bool)
        split: dict[str, Any] = {"kind": "temporal", "cutoff": cutoff.isoformat()}
    else:
        before = np.array([event.event_id not in held_out for event in known], dtype=bool)
        split = {"kind": "validation", "ranked_at": cutoff.isoformat()}
    if test_share is not None:
        split["test_share"] = test_share
    return EvaluationData.build(
        member_keys=[str(member.id) for member in members],
        item_keys=[item.key for item in items],
        train=Interactions.of(members_of[before], items_of[before]),
        test=Interactions.of(members_of[~before], items_of[~before]),
        now=cutoff,
        item_ok=item_available(items, cutoff),
        member_language=[_language(member.language) for member in members],
        item_language=[_language(item.language) for item in items],
        member_groups=_answer_groups(sandbox, row, choice_questions),
        split=split,
        counts={"interactions_with_unknown_items": len(interactions) - len(known)},
    )
