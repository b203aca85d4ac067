import base64
import datetime as dt

import pytest

from nurture.delivery import (
    InvalidUnsubscribeTokenError,
    make_unsubscribe_token,
    verify_unsubscribe_token,
)
from nurture.delivery.unsubscribe import (
    UnsubscribeToken,
    find_token_member,
    read_unsubscribe_token,
    unsubscribe_address_tag,
)
from nurture.errors import ConfigurationError
from nurture.storage.models import Member

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def test_round_trip():
    token = make_unsubscribe_token(42, "secret", NOW)
    assert verify_unsubscribe_token(token, "secret") == 42
    assert all(c.isalnum() or c in "-_." for c in token)


def test_wrong_secret_is_refused():
    token = make_unsubscribe_token(42, "secret", NOW)
    with pytest.raises(InvalidUnsubscribeTokenError, match="signature"):
        verify_unsubscribe_token(token, "other")


def _flip(text: str, index: int) -> str:
    char = text[index]
    return text[:index] + ("A" if char != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize("index", [0, 3, -1, -5])
def test_tampered_token_is_refused(index):
    token = make_unsubscribe_token(42, "secret", NOW)
    with pytest.raises(InvalidUnsubscribeTokenError):
        verify_unsubscribe_token(_flip(token, index), "secret")


def test_swapped_payload_is_refused():
    mine = make_unsubscribe_token(42, "secret", NOW)
    theirs = make_unsubscribe_token(43, "secret", NOW)
    forged = theirs.split(".")[0] + "." + mine.split(".")[1]
    with pytest.raises(InvalidUnsubscribeTokenError, match="signature"):
        verify_unsubscribe_token(forged, "secret")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.???", "é.é"])
def test_malformed_token_is_refused(token):
    with pytest.raises(InvalidUnsubscribeTokenError):
        verify_unsubscribe_token(token, "secret")


def test_max_age():
    token = make_unsubscribe_token(42, "secret", NOW)
    later = NOW + dt.timedelta(days=40)
    assert verify_unsubscribe_token(token, "secret", dt.timedelta(days=60), now=later) == 42
    with pytest.raises(InvalidUnsubscribeTokenError, match="older than"):
        verify_unsubscribe_token(token, "secret", dt.timedelta(days=30), now=later)


def test_bad_inputs():
    with pytest.raises(ConfigurationError):
        make_unsubscribe_token(42, "", NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        make_unsubscribe_token(42, "secret", dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="positive integer"):
        make_unsubscribe_token(0, "secret", NOW)


# --- tokens bound to the member's address ----------------------------------------------------


def test_token_with_address_round_trip():
    token = make_unsubscribe_token(42, "secret", NOW, email="Ada@Example.org ")
    found = read_unsubscribe_token(token, "secret")
    assert found == UnsubscribeToken(42, NOW, unsubscribe_address_tag("ada@example.org", "secret"))
    assert verify_unsubscribe_token(token, "secret") == 42
    assert verify_unsubscribe_token(token, "secret", email="ada@example.org") == 42
    assert verify_unsubscribe_token(token, "secret", email=" ADA@example.ORG") == 42
    assert all(c.isalnum() or c in "-_." for c in token)
    assert len(token) < 100


def test_token_for_another_address_is_refused():
    token = make_unsubscribe_token(42, "secret", NOW, email="ada@example.org")
    with pytest.raises(InvalidUnsubscribeTokenError, match="another address"):
        verify_unsubscribe_token(token, "secret", email="grace@example.org")


def test_token_without_address_is_refused_when_an_address_is_checked():
    token = make_unsubscribe_token(42, "secret", NOW)
    assert read_unsubscribe_token(token, "secret").address_tag is None
    with pytest.raises(InvalidUnsubscribeTokenError, match="without an address"):
        verify_unsubscribe_token(token, "secret", email="ada@example.org")


def test_address_tag_is_keyed_and_hides_the_address():
    tag = unsubscribe_address_tag("ada@example.org", "secret")
    assert tag == unsubscribe_address_tag(" ADA@example.org", "secret")
    assert tag != unsubscribe_address_tag("ada@example.org", "other")
    assert tag != unsubscribe_address_tag("grace@example.org", "secret")
    assert "ada" not in tag and len(tag) == 12
    token = make_unsubscribe_token(42, "secret", NOW, email="ada@example.org")
    assert b"ada" not in base64.urlsafe_b64decode(token.split(".")[0] + "==")


def test_tag_cannot_be_moved_to_another_token():
    mine = make_unsubscribe_token(42, "secret", NOW, email="ada@example.org")
    theirs = make_unsubscribe_token(42, "secret", NOW, email="grace@example.org")
    forged = theirs.split(".")[0] + "." + mine.split(".")[1]
    with pytest.raises(InvalidUnsubscribeTokenError, match="signature"):
        verify_unsubscribe_token(forged, "secret")


def test_overlong_token_is_refused():
    with pytest.raises(InvalidUnsubscribeTokenError, match="expected"):
        verify_unsubscribe_token("a" * 600 + ".b", "secret")


def _member(session, email: str) -> Member:
    member = Member(email=email, joined_at=NOW)
    session.add(member)
    session.commit()
    return member


def test_find_token_member(session):
    member = _member(session, "ada@example.org")
    token = make_unsubscribe_token(member.id, "secret", NOW, email=member.email)
    assert find_token_member(session, token, "secret") is member


def test_find_token_member_refuses_a_reused_id(session):
    """An erased member's id given to a new member: the old link must not act on the new one."""
    erased = _member(session, "ada@example.org")
    token = make_unsubscribe_token(erased.id, "secret", NOW, email=erased.email)
    member_id = erased.id
    session.delete(erased)
    session.commit()
    with pytest.raises(InvalidUnsubscribeTokenError, match="does not exist"):
        find_token_member(session, token, "secret")
    newcomer = Member(id=member_id, email="grace@example.org", joined_at=NOW)
    session.add(newcomer)
    session.commit()
    with pytest.raises(InvalidUnsubscribeTokenError, match="another address"):
        find_token_member(session, token, "secret")


def test_find_token_member_refuses_tokens_without_address(session):
    member = _member(session, "ada@example.org")
    with pytest.raises(InvalidUnsubscribeTokenError, match="without an address"):
        find_token_member(session, make_unsubscribe_token(member.id, "secret", NOW), "secret")
