"""Event times as the match stage reads them in bulk, and reads of a chunk's ids."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.recommend.run_state import microseconds, occurred_at_column
from nurture.storage import among
from nurture.storage.models import ActivityEvent, Member

_MOMENTS = (
    dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC),
    dt.datetime(2026, 4, 30, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    dt.datetime(1999, 12, 31, 12, 0, 0, 1, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 29, 3, 30, 0, 123_456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
)


def _events(session: Session) -> list[int]:
    joined = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    members = [Member(email=f"m{index}@example.org", joined_at=joined) for index in range(3)]
    session.add_all(members)
    session.flush()
    for index, moment in enumerate(_MOMENTS):
        session.add(
            ActivityEvent(
                member_id=members[index % 3].id,
                type="content_view",
                occurred_at=moment,
                content_key=f"item-{index}",
                idempotency_key=f"event-{index}",
            )
        )
    session.flush()
    return [member.id for member in members]


def test_event_times_read_in_bulk_are_the_exact_microseconds(session: Session) -> None:
    _events(session)
    query = select(ActivityEvent.content_key, occurred_at_column(session)).order_by(
        ActivityEvent.content_key
    )
    read = session.execute(query).all()
    expected = microseconds(list(_MOMENTS))
    assert microseconds([moment for _, moment in read]).tolist() == expected.tolist()


def test_among_finds_the_rows_in_of_the_ids_given(session: Session) -> None:
    ids = _events(session)
    query = select(ActivityEvent.content_key).order_by(ActivityEvent.content_key)
    chosen = session.scalars(query.where(among(session, ActivityEvent.member_id, ids[:2])))
    assert list(chosen) == ["item-0", "item-1", "item-3"]
    assert list(session.scalars(query.where(among(session, ActivityEvent.member_id, [])))) == []
    keys = ["item-2", "item-9"]
    assert list(session.scalars(query.where(among(session, ActivityEvent.content_key, keys)))) == [
        "item-2"
    ]
