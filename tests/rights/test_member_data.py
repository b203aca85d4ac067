"""Finding a member's rows from an address: members in any case, provider events that name it."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from nurture.rights import find_members, provider_events_of
from nurture.rights.member_data import mentions_address
from nurture.storage.models import Member, ProviderEvent

from .conftest import EMAIL, NOW, Seeded


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ZEPHYRINE.Q@example.org", True),
        ({"to": [{"address": f"<{EMAIL}>"}]}, True),
        ({EMAIL: 1}, True),
        ({"email": "zephyrine@example.org", "count": 3, "ok": None}, False),
        (["x", 1, 2.5, True], False),
    ],
)
def test_mentions_address(value: object, expected: bool) -> None:
    assert mentions_address(value, EMAIL) is expected


def test_find_members_ignores_case_and_spaces(session: Session, seeded: Seeded) -> None:
    assert [m.id for m in find_members(session, f" {EMAIL.upper()} ")] == [seeded.member_id]
    assert find_members(session, "zephyrine@example.org") == []
    assert find_members(session, "") == []


def test_provider_events_of_a_member(session: Session, seeded: Seeded) -> None:
    events = provider_events_of(session, [seeded.member_id], EMAIL)
    assert [event.event_id for event in events] == ["ev-delivered", "ev-bounce"]
    assert [e.event_id for e in provider_events_of(session, [], EMAIL)] == ["ev-bounce"]


def test_provider_events_naming_a_non_ascii_address(session: Session) -> None:
    address = "élodie+news@exämple.fr"
    session.add(Member(email=address, joined_at=NOW))
    session.add_all(
        [
            ProviderEvent(
                provider="sendgrid",
                event_id=f"ev-{n}",
                type="bounce",
                occurred_at=NOW + dt.timedelta(minutes=n),
                payload=payload,
            )
            for n, payload in enumerate(
                [{"email": address.upper()}, {"email": "elodie+news@example.fr"}, {"n": 1}]
            )
        ]
    )
    session.commit()
    assert [e.event_id for e in provider_events_of(session, [], address)] == ["ev-0"]


def test_like_wildcards_in_an_address_match_only_themselves(session: Session) -> None:
    session.add_all(
        [
            ProviderEvent(
                provider="sendgrid",
                event_id=event_id,
                type="bounce",
                occurred_at=NOW,
                payload={"email": email},
            )
            for event_id, email in [("ev-a", "a_b%c@example.org"), ("ev-b", "axbyc@example.org")]
        ]
    )
    session.commit()
    found = provider_events_of(session, [], "A_B%C@example.org")
    assert [event.event_id for event in found] == ["ev-a"]
