from nurture.delivery import is_suppressed, suppress_address, suppression_hash
from nurture.storage.models import Suppression


def test_hash_is_salted_and_normalised():
    assert suppression_hash(" Ada@Example.org ", "s") == suppression_hash("ada@example.org", "s")
    assert suppression_hash("ada@example.org", "s") != suppression_hash("ada@example.org", "t")
    assert len(suppression_hash("ada@example.org", "s")) == 64


def test_suppress_address_is_idempotent(session):
    assert suppress_address(session, "ada@example.org", "s", "unsubscribed", "one-click")
    assert not suppress_address(session, "ADA@example.org", "s", "unsubscribed")
    session.commit()
    assert session.query(Suppression).count() == 1
    assert is_suppressed(session, "ada@example.org", "s")
    assert not is_suppressed(session, "ada@example.org", "other-salt")
    assert not is_suppressed(session, "bob@example.org", "s")
