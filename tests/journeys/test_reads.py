"""``MemberReads``: a pass reads each member's row, facts and answers once."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import event

from nurture.journeys.reads import MemberReads, MemberRow
from nurture.storage.models import Answer, Member

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def _members(session, count):
    members = [
        Member(email=f"m{n}@example.org", first_name=f"M{n}", joined_at=NOW) for n in range(count)
    ]
    session.add_all(members)
    session.flush()
    session.add(Answer(member_id=members[0].id, question_key="role", value="founder"))
    session.commit()
    return [member.id for member in members]


def _statements(session, action):
    seen = []

    def count(*_):
        seen.append(1)

    bind = session.get_bind()
    event.listen(bind, "before_cursor_execute", count)
    try:
        result = action()
    finally:
        event.remove(bind, "before_cursor_execute", count)
    return result, len(seen)


def test_each_member_is_read_once_per_pass(session):
    first, second, third = _members(session, 3)
    reads = MemberReads(NOW)

    found, queries = _statements(session, lambda: reads.members(session, [first, second]))
    assert sorted(found) == [first, second] and queries == 1

    found, queries = _statements(session, lambda: reads.members(session, [second, 999_999]))
    assert sorted(found) == [second] and queries == 1  # only the ones not read yet

    found, queries = _statements(session, lambda: reads.members(session, [second, 999_999]))
    assert sorted(found) == [second] and queries == 0  # an absent member is not asked again

    answered, _ = _statements(session, lambda: reads.answered(session, [first, third]))
    assert answered == {first}
    answered, queries = _statements(session, lambda: reads.answered(session, [first, third]))
    assert answered == {first} and queries == 0


def test_condition_facts_are_those_of_a_fresh_read(session):
    from nurture.journeys.facts import ConditionFacts

    ids = _members(session, 3)
    reads = MemberReads(NOW)
    names = {"member", "answers", "lifecycle", "activity", "segment", "segments"}
    reads.facts(session, ids[:1], names)
    shared = reads.facts(session, ids, names)
    fresh = ConditionFacts(session, ids, NOW)
    for member_id in ids:
        assert shared.names(member_id, {"x": 1}) == fresh.names(member_id, {"x": 1})
    _, queries = _statements(session, lambda: reads.facts(session, ids, names))
    assert queries == 0


def test_condition_facts_read_only_what_the_conditions_name(session):
    ids = _members(session, 3)
    reads = MemberReads(NOW)

    facts, queries = _statements(session, lambda: reads.facts(session, ids, {"answers"}))
    assert queries == 2  # the members, their answers: no activity, no profile, no segment
    assert facts.names(ids[0], None)["answers"] == {"role": "founder"}
    assert "activity" not in facts.names(ids[0], None)

    facts, queries = _statements(session, lambda: reads.facts(session, ids, {"language"}))
    assert queries == 1 and facts.names(ids[1], None)["language"] == "en"
    assert facts.names(ids[1], None)["member"]["first_name"] == "M1"

    _, queries = _statements(session, lambda: reads.facts(session, ids, {"trigger"}))
    assert queries == 0  # what the trigger recorded is not read from members


def test_each_address_is_looked_up_once_per_pass(session):
    from nurture.delivery import suppress_address

    first, second, _ = _members(session, 3)
    suppress_address(session, "m1@example.org", "salt", reason="manual")
    reads = MemberReads(NOW)
    rows = reads.members(session, [first, second])

    found, queries = _statements(session, lambda: reads.suppressed(session, rows.values(), "salt"))
    assert found == {second} and queries == 1
    found, queries = _statements(session, lambda: reads.suppressed(session, [rows[second]], "salt"))
    assert found == {second} and queries == 0


def test_reads_are_kept_up_to_the_capacity_then_read_again(session):
    first, second, third = _members(session, 3)
    reads = MemberReads(NOW, capacity=2)

    found, queries = _statements(session, lambda: reads.members(session, [first, second]))
    assert sorted(found) == [first, second] and queries == 1
    _, queries = _statements(session, lambda: reads.members(session, [first]))
    assert queries == 0

    found, queries = _statements(session, lambda: reads.members(session, [third]))
    assert sorted(found) == [third] and queries == 1  # past the capacity: the others let go
    found, queries = _statements(session, lambda: reads.members(session, [first]))
    assert sorted(found) == [first] and queries == 1  # read again

    answered, _ = _statements(session, lambda: reads.answered(session, [first, second]))
    answered, queries = _statements(session, lambda: reads.answered(session, [first, third]))
    assert answered == {first} and queries == 1


def test_facts_handed_out_keep_theirs_when_the_reads_are_let_go(session):
    ids = _members(session, 3)
    reads = MemberReads(NOW, capacity=2)
    before = reads.facts(session, ids[:2], {"language"})
    after = reads.facts(session, ids[2:], {"language"})
    assert before.names(ids[0], None)["member"]["first_name"] == "M0"
    assert after.names(ids[2], None)["member"]["first_name"] == "M2"


def test_a_capacity_below_one_is_refused():
    import pytest

    with pytest.raises(ValueError, match="capacity"):
        MemberReads(NOW, capacity=0)


def test_a_pass_over_the_whole_community_reads_it_in_one_query_when_it_fits(session):
    from nurture.delivery import suppress_address

    first, second, third = _members(session, 3)
    suppress_address(session, "m1@example.org", "salt", reason="manual")
    reads = MemberReads(NOW, whole_community=True)

    found, queries = _statements(session, lambda: reads.members(session, [first]))
    assert sorted(found) == [first] and queries == 2  # the count, then every member
    found, queries = _statements(session, lambda: reads.members(session, [second, third, 999]))
    assert sorted(found) == [second, third] and queries == 0

    rows = reads.members(session, [first, second, third])
    found, queries = _statements(session, lambda: reads.suppressed(session, rows.values(), "salt"))
    assert found == {second} and queries == 2  # the count, then the whole list
    found, queries = _statements(session, lambda: reads.suppressed(session, [rows[third]], "salt"))
    assert found == set() and queries == 0


def test_an_empty_suppression_list_kept_whole_makes_no_hash(session, monkeypatch):
    import nurture.journeys.reads as reads_module

    first, second = _members(session, 2)
    reads = MemberReads(NOW, whole_community=True)
    rows = reads.members(session, [first, second])
    hashed = []
    monkeypatch.setattr(
        reads_module, "suppression_hash", lambda email, salt: hashed.append(email) or email
    )

    found, queries = _statements(session, lambda: reads.suppressed(session, rows.values(), "salt"))
    assert found == set() and queries == 2  # the count, then the whole (empty) list
    found, queries = _statements(session, lambda: reads.suppressed(session, [rows[first]], "salt"))
    assert found == set() and queries == 0
    assert hashed == []


def test_a_community_larger_than_the_capacity_is_read_a_chunk_at_a_time(session):
    from nurture.delivery import suppress_address

    first, second, third = _members(session, 3)
    suppress_address(session, "m1@example.org", "salt", reason="manual")
    suppress_address(session, "m2@example.org", "salt", reason="manual")
    suppress_address(session, "gone@example.org", "salt", reason="manual")
    reads = MemberReads(NOW, capacity=2, whole_community=True)

    found, queries = _statements(session, lambda: reads.members(session, [first, second]))
    assert sorted(found) == [first, second] and queries == 2  # the count, then those asked
    found, queries = _statements(session, lambda: reads.members(session, [third]))
    assert sorted(found) == [third] and queries == 1

    rows = reads.members(session, [second, third])
    found, queries = _statements(session, lambda: reads.suppressed(session, rows.values(), "salt"))
    assert found == {second, third} and queries == 2  # the count, then those looked up


def test_member_rows_decode_each_stored_categories_text_once(session):
    first, second, third = _members(session, 3)
    members = {member.id: member for member in session.query(Member)}
    members[first].unsubscribed_categories = ["promotion"]
    members[second].unsubscribed_categories = ["promotion"]
    members[third].unsubscribed_categories = []
    session.commit()

    rows = MemberReads(NOW).members(session, [first, second, third])  # ``member_rows``

    assert sorted(rows) == [first, second, third]
    assert rows[second].unsubscribed_categories == ["promotion"]
    assert rows[first].unsubscribed_categories is rows[second].unsubscribed_categories
    assert rows[third].unsubscribed_categories == []
    # The same values as the ORM reads.
    for member_id, row in rows.items():
        member = session.get(Member, member_id)
        fields = [field.name for field in dataclasses.fields(MemberRow)]
        assert row == MemberRow(*(getattr(member, name) for name in fields))
    assert rows[first].unsubscribed_categories == ["promotion"]
