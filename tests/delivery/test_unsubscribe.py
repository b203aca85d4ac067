import datetime as dt

import pytest

from nurture.delivery import (
    InvalidUnsubscribeTokenError,
    make_unsubscribe_token,
    verify_unsubscribe_token,
)
from nurture.errors import ConfigurationError

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
