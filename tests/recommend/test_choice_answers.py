"""The compact choice answers a match run holds: the same answers as the dicts, as codes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from nurture.recommend.run_state import choice_answers, load_choice_answers
from nurture.storage.models import Answer, Member

QUESTIONS = ("role", "country")
START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def _answered(session: Session) -> list[int]:
    answers = [  # (member, question, value), in the order they were given
        (0, "role", "moderator"),
        (1, "country", "FR"),
        (1, "role", "member"),
        (2, "role", ["not", "a", "choice"]),  # a list: no choice answer
        (2, "country", ""),  # empty: none either
        (3, "role", "moderator"),
        (3, "country", "BE"),
        (4, "goals", "ignored: not a choice question"),
    ]
    members = [Member(email=f"m{index}@example.org", joined_at=START) for index in range(6)]
    session.add_all(members)
    session.flush()
    for minute, (member, key, value) in enumerate(answers):
        session.add(
            Answer(
                member_id=members[member].id,
                question_key=key,
                value=value,
                answered_at=START + dt.timedelta(minutes=minute),
            )
        )
    session.flush()
    return [member.id for member in members]


def test_compact_answers_hold_what_the_dicts_hold(session: Session) -> None:
    ids = _answered(session)

    compact = load_choice_answers(session, QUESTIONS)
    dicts = choice_answers(session, QUESTIONS)

    codes = compact.of(ids)
    decoded = [
        {
            key: next(value for value, code in compact.values[position].items() if code == found)
            for position, key in enumerate(QUESTIONS)
            if (found := int(codes[row, position])) >= 0
        }
        for row in range(len(ids))
    ]
    assert decoded == [dicts.get(member_id, {}) for member_id in ids]
    assert compact.member_ids.tolist() == sorted(dicts)


def test_values_are_numbered_in_the_order_members_first_answered(session: Session) -> None:
    ids = _answered(session)

    compact = load_choice_answers(session, QUESTIONS)

    assert compact.values == ({"moderator": 0, "member": 1}, {"FR": 0, "BE": 1})
    assert compact.of([ids[3], 10_000]).tolist() == [[0, 1], [-1, -1]]
    assert compact.of([]).shape == (0, 2)
