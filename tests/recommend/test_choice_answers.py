"""The compact choice answers a match run holds: the same answers as the dicts, as codes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from nurture.recommend import run_state
from nurture.recommend.run_state import ChoiceAnswers, choice_answers, load_choice_answers
from nurture.storage.models import ActivityEvent, Answer, Member

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


def _same(found: ChoiceAnswers, expected: ChoiceAnswers) -> None:
    assert found.questions == expected.questions and found.values == expected.values
    assert found.member_ids.dtype == expected.member_ids.dtype
    assert found.codes.dtype == expected.codes.dtype
    assert np.array_equal(found.member_ids, expected.member_ids)
    assert np.array_equal(found.codes, expected.codes)


def test_answers_stored_on_disk_are_read_back_as_a_fresh_read_gives_them(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answered(session)
    key = ("database", QUESTIONS, run_state._answers_fingerprint(session, QUESTIONS))
    fresh = load_choice_answers(session, QUESTIONS)
    _same(run_state._answers_or_read(session, QUESTIONS, key, tmp_path), fresh)
    assert len(list(tmp_path.glob("choice-answers-*.npz"))) == 1

    def unread(*_: object) -> ChoiceAnswers:
        raise AssertionError("read from the database again")

    # The next process reads the file; other questions (another key) read the database.
    monkeypatch.setattr(run_state, "load_choice_answers", unread)
    _same(run_state._answers_or_read(session, QUESTIONS, key, tmp_path), fresh)
    with pytest.raises(AssertionError, match="again"):
        run_state._answers_or_read(session, ("role",), ("database", ("role",), 0), tmp_path)


def test_the_engagement_fingerprint_moves_with_each_engagement_up_to_now(
    session: Session,
) -> None:
    member = Member(email="e@example.org", joined_at=START)
    session.add(member)
    session.flush()
    now = START + dt.timedelta(days=1)
    moves: list[bool] = []
    for index, (kind, key, minutes) in enumerate(
        [
            ("content_view", "item-1", 5),  # an engagement: moves
            ("post", None, 6),  # no engagement: stays
            ("email_click", "item-2", 2 * 24 * 60),  # after now: stays
            ("event_attended", "event-1", 7),  # moves
        ]
    ):
        before = run_state._engagement_fingerprint(session, now)
        session.add(
            ActivityEvent(
                member_id=member.id,
                type=kind,
                occurred_at=START + dt.timedelta(minutes=minutes),
                content_key=key,
                idempotency_key=f"fingerprint-{index}",
            )
        )
        session.flush()
        moves.append(run_state._engagement_fingerprint(session, now) != before)
    assert moves == [True, False, False, True]
